"""GET /stats for every task (monitoring/reports.py): binary, multiclass, regression, two targets.

Each test serves a model in process, sends it predictions and true values through the API,
then computes what /stats must say on its own: with sklearn.metrics, from what it sent and
from the pipeline's own predict_proba or predict. Also: a threshold or positive class
changed between two runs on the same database (each row keeps its own rule), the
model_version filter and the versions list, and the rows stored before the upgrade
(model_version NULL, reported as "unknown"). Every answer is checked against openapi.yaml.
"""

import json
import math
from datetime import datetime, timedelta
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, TITANIC, service
from reliability_helpers import check_against_spec
from sklearn.datasets import load_diabetes, load_linnerud, load_wine
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    log_loss,
    mean_absolute_error,
    precision_recall_fscore_support,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
    root_mean_squared_error,
)

from clients import replay_traffic

TOKEN = "t"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
RELATIVE = 1e-9  # the service and this test predict in batches of other sizes
EXAMPLES = ROOT / "examples"
OTHER_VERSION = "0123456789ab"  # a model that served before this one


# ---------------------------------------------------------------------------------------
# The models, and traffic for each
# ---------------------------------------------------------------------------------------


def titanic():
    """Notebook 1's held-out passengers, and whether each survived (0 or 1)."""
    passengers = replay_traffic.held_out_passengers()[:160]
    return TITANIC, [o for _, o, _ in passengers], [label for _, _, label in passengers]


def wine():
    """Every wine; one truth in five is another cultivar, so that the model makes mistakes."""
    data = load_wine(as_frame=True)
    names = [str(data.target_names[code]) for code in data.target]
    truths = [
        names[i] if i % 5 else str(data.target_names[(data.target[i] + 1) % 3])
        for i in range(len(names))
    ]
    return EXAMPLES / "wine", records(data.data), truths


def diabetes():
    data = load_diabetes(as_frame=True, scaled=False)
    frame = data.data.astype({"age": "int64", "sex": "int64"}).iloc[:150]
    return EXAMPLES / "diabetes", records(frame), data.target.iloc[:150].tolist()


def linnerud():
    data = load_linnerud(as_frame=True)
    truths = json.loads(data.target[["Weight", "Waist"]].to_json(orient="records"))
    return EXAMPLES / "linnerud", records(data.data.astype("int64")), truths


def records(frame):
    return json.loads(frame.to_json(orient="records"))


MODELS = {"titanic": titanic, "wine": wine, "diabetes": diabetes, "linnerud": linnerud}


def serve(database_url, model_dir, **settings):
    """The app and its test client: a fresh start of the service, with these settings."""
    base = {"DATABASE_URL": database_url, "MODEL_DIR": str(model_dir), "ADMIN_TOKEN": TOKEN}
    app = service.create_app(base | settings)
    return app, app.test_client()


def send(client, first_id, observations, truths, field, labelled=lambda i: i % 4 != 0):
    """Predict every observation in one /predict-batch, then send the truth of those
    labelled(i) picks with /update. Returns the positions of those labelled."""
    items = [{"id": first_id + i, "observation": o} for i, o in enumerate(observations)]
    results = client.post("/predict-batch", json={"observations": items}).json["results"]
    assert [r["status"] for r in results] == [200] * len(items), results[:3]
    sent = [i for i in range(len(observations)) if labelled(i)]
    for i in sent:
        answer = client.post("/update", json={"id": first_id + i, field: truths[i]})
        assert answer.status_code == 200, answer.json
    return sent


def stats(client, **query):
    response = client.get("/stats", headers=ADMIN, query_string=query)
    assert response.status_code == 200, response.get_data(as_text=True)
    check_against_spec(response, "/stats", "GET")  # the form of the task, every key
    return response.json


def model_frame(model_dir, observations):
    """The observations as the pipeline takes them: columns.json order, training dtypes."""
    columns = json.loads((Path(model_dir) / "columns.json").read_text())
    dtypes = pd.read_pickle(Path(model_dir) / "dtypes.pickle")
    rows = [[math.nan if o.get(c) is None else o[c] for c in columns] for o in observations]
    return pd.DataFrame(rows, columns=columns).astype(dtypes)


def pipeline_of(model_dir):
    return joblib.load(Path(model_dir) / "pipeline.pickle")


# ---------------------------------------------------------------------------------------
# Comparing: numbers to a relative 1e-9, everything else exactly
# ---------------------------------------------------------------------------------------


def assert_close(actual, expected, path="stats"):
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and set(actual) == set(expected), (path, actual)
        for key in expected:
            assert_close(actual[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), (path, actual)
        for index, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_close(a, e, f"{path}[{index}]")
    elif isinstance(expected, float) and not isinstance(actual, bool):
        assert isinstance(actual, int | float), (path, actual)
        assert math.isclose(actual, expected, rel_tol=RELATIVE, abs_tol=1e-12), (
            path,
            actual,
            expected,
        )
    else:
        assert actual == expected and type(actual) is type(expected), (path, actual, expected)


def versions_row(version):
    return version["version"], version["predictions"], version["labelled"], version["serving"]


def number(value):
    """A metric as /stats writes it: a float, or None where sklearn says NaN."""
    return None if np.isnan(value) else float(value)


def probability_bins(counts_of):
    return [{"low": k / 10, "high": (k + 1) / 10, "count": counts_of(k)} for k in range(10)]


def bin_of(p):
    return min(math.floor(p * 10), 9)


def expected_calibration(hits, probabilities):
    bins = []
    for k in range(10):
        inside = [i for i, p in enumerate(probabilities) if bin_of(p) == k]
        bins.append(
            {
                "low": k / 10,
                "high": (k + 1) / 10,
                "count": len(inside),
                "mean_proba": float(np.mean([probabilities[i] for i in inside]))
                if inside
                else None,
                "observed_rate": float(np.mean([hits[i] for i in inside])) if inside else None,
            }
        )
    return bins


# ---------------------------------------------------------------------------------------
# What /stats must report, computed here for each task
# ---------------------------------------------------------------------------------------


def expected_binary(truths, probabilities, decided, all_probabilities, positive, negative):
    """truths: the classes sent; probabilities: P(positive) of the labelled rows; decided:
    whether each was answered `positive`; all_probabilities: every row's P(positive)."""
    y = np.array([t == positive for t in truths])
    p, d = np.asarray(probabilities, dtype=float), np.asarray(decided, dtype=bool)
    metrics = {
        "roc_auc": float(roc_auc_score(y, p)),
        "accuracy": float(accuracy_score(y, d)),
        "log_loss": float(log_loss(y, p, labels=[False, True])),
        "brier": float(brier_score_loss(y, p)),
        "precision": float(precision_score(y, d)),
        "recall": float(recall_score(y, d)),
        "f1": float(f1_score(y, d)),
        "positive_rate": float(d.mean()),
        "confusion_matrix": {
            "labels": [negative, positive],
            "matrix": confusion_matrix(y, d, labels=[False, True]).tolist(),
        },
        "reason": None,
    }
    return metrics, {
        "calibration": expected_calibration(y.tolist(), p.tolist()),
        "distribution": probability_bins(lambda k: sum(bin_of(q) == k for q in all_probabilities)),
    }


def expected_multiclass(truths, matrix, all_matrix, classes):
    """truths: the classes sent; matrix: predict_proba of the labelled rows; all_matrix:
    of every row sent."""
    predicted = [classes[k] for k in matrix.argmax(axis=1)]
    everyone = [classes[k] for k in all_matrix.argmax(axis=1)]
    found = precision_recall_fscore_support(truths, predicted, labels=classes, zero_division=np.nan)
    top = matrix.max(axis=1)
    return {
        "metrics": {
            "accuracy": float(accuracy_score(truths, predicted)),
            "macro_f1": float(f1_score(truths, predicted, average="macro")),
            "log_loss": float(log_loss(truths, matrix, labels=classes)),
            "confusion_matrix": {
                "labels": classes,
                "matrix": confusion_matrix(truths, predicted, labels=classes).tolist(),
            },
            "per_class": [
                {
                    "class": label,
                    "true": truths.count(label),
                    "predicted": predicted.count(label),
                    "predicted_all": everyone.count(label),
                    "precision": number(found[0][k]),
                    "recall": number(found[1][k]),
                    "f1": number(found[2][k]),
                }
                for k, label in enumerate(classes)
            ],
            "reason": None,
        },
        "calibration": expected_calibration(
            [t == p for t, p in zip(truths, predicted, strict=True)], top.tolist()
        ),
        "distribution": probability_bins(
            lambda k: sum(bin_of(q) == k for q in all_matrix.max(axis=1))
        ),
    }


def expected_regression(truth, prediction):
    errors = prediction - truth
    counts, edges = np.histogram(errors, bins=10)
    quantiles = [0, 0.05, 0.25, 0.5, 0.75, 0.95, 1]
    return {
        "mae": float(mean_absolute_error(truth, prediction)),
        "rmse": float(root_mean_squared_error(truth, prediction)),
        "r2": float(r2_score(truth, prediction)),
        "errors": {
            "mean": float(errors.mean()),
            "quantiles": [{"q": q, "value": float(np.quantile(errors, q))} for q in quantiles],
            "bins": [
                {"low": float(edges[k]), "high": float(edges[k + 1]), "count": int(counts[k])}
                for k in range(10)
            ],
        },
    }


# ---------------------------------------------------------------------------------------
# Every task: /stats equals sklearn on what was sent
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(MODELS))
def test_stats_equal_sklearn_on_what_was_sent(name, database_url):
    model_dir, observations, truths = MODELS[name]()
    app, client = serve(database_url, model_dir)
    model = app.config["MODEL"]
    empty = stats(client)  # before any row: the task's form, with null metrics
    assert (empty["predictions"], empty["labelled"], empty["versions"]) == (0, 0, [])
    assert "no labelled predictions" in empty["metrics"]["reason"]
    labelled = send(client, 0, observations, truths, model.task.truth_field)

    result = stats(client)

    assert result["model"]["version"] == result["model"]["reported_version"] == model.version
    assert result["model"]["task"] == model.task.describe()
    assert (result["predictions"], result["labelled"]) == (len(observations), len(labelled))
    assert result["labelled_left_out"] == 0
    assert [versions_row(v) for v in result["versions"]] == [
        (model.version, len(observations), len(labelled), True)
    ]
    assert result["drift"] is not None and result["unreadable_observations"] == 0

    predicted = predicted_by_the_pipeline(model_dir, observations)
    sent = [truths[i] for i in labelled]
    CHECKS[model.task.name](result, model.task, predicted, labelled, sent)


def predicted_by_the_pipeline(model_dir, observations):
    """predict_proba for a classifier, predict (one column per target) for a regressor."""
    pipeline, frame = pipeline_of(model_dir), model_frame(model_dir, observations)
    if hasattr(pipeline, "predict_proba"):
        return pipeline.predict_proba(frame)
    return np.asarray(pipeline.predict(frame), dtype=float).reshape(len(frame), -1)


def check_binary(result, task, probabilities, labelled, truths):
    every = probabilities[:, task.classes.index(task.positive_class)]
    p = every[labelled]
    metrics, charts = expected_binary(truths, p, p >= 0.5, every, 1, 0)
    metrics["thresholds"] = [{"threshold": 0.5, "labelled": len(labelled)}]
    assert_close(result["metrics"], metrics)
    assert_close(result["calibration"], charts["calibration"])
    assert_close(result["distribution"], charts["distribution"])


def check_multiclass(result, task, probabilities, labelled, truths):
    expected = expected_multiclass(truths, probabilities[labelled], probabilities, task.classes)
    assert result["metrics"]["accuracy"] < 1  # the wrong truths were counted
    for key in ["metrics", "calibration", "distribution"]:
        assert_close(result[key], expected[key], key)


def check_regression(result, task, prediction, labelled, truths):
    several = task.width > 1
    truth = np.array([[t[name] for name in task.targets] if several else [t] for t in truths])
    per_target = [
        expected_regression(truth[:, k], prediction[labelled, k]) for k in range(task.width)
    ]
    if several:
        expected = {"targets": dict(zip(task.targets, per_target, strict=True)), "reason": None}
    else:
        expected = per_target[0] | {"reason": None}
    assert_close(result["metrics"], expected)
    assert result["calibration"] is None and result["distribution"] is None


CHECKS = {"binary": check_binary, "multiclass": check_multiclass, "regression": check_regression}


# ---------------------------------------------------------------------------------------
# A binary model whose rule changed between two runs
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [{"THRESHOLD": 0.3}, {"POSITIVE_CLASS": "0"}, {"THRESHOLD": 0.3, "POSITIVE_CLASS": "0"}],
)
def test_each_row_is_judged_by_the_rule_in_force_when_it_was_answered(change, database_url):
    _, observations, truths = titanic()
    first, second = slice(0, 80), slice(80, 160)
    _, client = serve(database_url, TITANIC)
    send(client, 0, observations[first], truths[first], "true_class", lambda i: True)
    app, client = serve(database_url, TITANIC, **change)  # restarted with another rule
    send(client, 80, observations[second], truths[second], "true_class", lambda i: True)

    result = stats(client)

    task = app.config["MODEL"].task
    assert result["model"]["task"]["threshold"] == change.get("THRESHOLD", 0.5)
    assert result["labelled"] == 160 and len(result["versions"]) == 1  # one model, two runs
    # Every figure is about the positive class of the model served now.
    positive, negative = task.positive_class, task.negative_class
    p = pipeline_of(TITANIC).predict_proba(model_frame(TITANIC, observations))
    p_positive = p[:, positive]
    rules = [(0.5, 1)] * 80 + [(task.threshold, positive)] * 80  # (threshold, positive class)
    answered = [
        row_positive if p[i, row_positive] >= threshold else 1 - row_positive
        for i, (threshold, row_positive) in enumerate(rules)
    ]
    decided = [label == positive for label in answered]
    metrics, charts = expected_binary(
        truths, p_positive.tolist(), decided, p_positive.tolist(), positive, negative
    )
    metrics["thresholds"] = sorted(
        [{"threshold": 0.5, "labelled": 80}, {"threshold": task.threshold, "labelled": 80}]
        if task.threshold != 0.5
        else [{"threshold": 0.5, "labelled": 160}],
        key=lambda t: t["threshold"],
    )
    assert_close(result["metrics"], metrics)
    assert_close(result["calibration"], charts["calibration"])
    # Judged at one rule for all, the precision would differ: the test tells them apart.
    one_rule = precision_score(
        [t == positive for t in truths], p_positive >= task.threshold, zero_division=np.nan
    )
    if "THRESHOLD" in change:
        assert not math.isclose(result["metrics"]["precision"], one_rule, rel_tol=RELATIVE)


# ---------------------------------------------------------------------------------------
# Model versions, and the rows stored before the upgrade
# ---------------------------------------------------------------------------------------


def insert_rows(rows):
    with service.database.atomic():
        service.Prediction.insert_many(rows).execute()
    service.database.close()


def legacy_rows(observations, probabilities, truths, first_id, created_at):
    """Rows as the release before any task stored them, then upgraded
    (model_service/migrations.py)."""
    return [
        {
            "observation_id": first_id + i,
            "observation": json.dumps({"id": first_id + i, "observation": o}),
            "proba": float(probabilities[i]),
            "true_class": truths[i],
            "true_value": json.dumps(truths[i]),  # what the upgrade copies
            "created_at": created_at + timedelta(seconds=i),
        }
        for i, o in enumerate(observations)
    ]


def test_model_version_selects_the_rows_and_versions_lists_them(database_url):
    _, observations, truths = titanic()
    p = pipeline_of(TITANIC).predict_proba(model_frame(TITANIC, observations))[:, 1]
    app, client = serve(database_url, TITANIC)
    version = app.config["MODEL"].version
    day = datetime(2026, 3, 1, 12)
    insert_rows(legacy_rows(observations[:50], p[:50], truths[:50], 10_000, day))
    other = legacy_rows(observations[50:90], 1 - p[50:90], truths[50:90], 20_000, day)
    for row in other:  # another model, stored after the upgrade
        row |= {"model_version": OTHER_VERSION, "threshold": 0.6, "positive_class": "1"}
    insert_rows(other)
    send(client, 0, observations[90:], truths[90:], "true_class")

    served = stats(client)
    legacy = stats(client, model_version="unknown")
    older = stats(client, model_version=OTHER_VERSION)
    nobody = stats(client, model_version="no-such-model")

    assert [versions_row(v) for v in served["versions"]] == [
        (version, 70, 70 - len(range(0, 70, 4)), True),
        (OTHER_VERSION, 40, 40, False),
        ("unknown", 50, 50, False),
    ]
    for answer in (served, legacy, older, nobody):
        assert answer["versions"] == served["versions"]  # whichever version is reported
    assert served["predictions"] == 70 and served["model"]["reported_version"] == version
    assert (legacy["predictions"], legacy["labelled"]) == (50, 50)
    assert legacy["model"]["reported_version"] == "unknown"
    assert legacy["model"]["version"] == version  # the model served, whose task reads them

    # Legacy rows: decided at 0.5, for the model's classes[1]; their true_value is '0'/'1'.
    metrics, _ = expected_binary(truths[:50], p[:50], p[:50] >= 0.5, p[:50], 1, 0)
    metrics["thresholds"] = [{"threshold": 0.5, "labelled": 50}]
    assert_close(legacy["metrics"], metrics)
    q = 1 - p[50:90]
    metrics, _ = expected_binary(truths[50:90], q, q >= 0.6, q, 1, 0)
    metrics["thresholds"] = [{"threshold": 0.6, "labelled": 40}]
    assert_close(older["metrics"], metrics)
    assert (older["predictions"], older["labelled"]) == (40, 40)

    # A version with no rows is no error: zero rows, and the versions there are.
    assert (nobody["predictions"], nobody["labelled"]) == (0, 0)
    assert nobody["metrics"]["roc_auc"] is None and "no labelled" in nobody["metrics"]["reason"]
    assert nobody["drift"] is None and "no predictions" in nobody["drift_note"]
    assert [b["count"] for b in nobody["distribution"]] == [0] * 10

    # The window bounds the versions too.
    assert [v["version"] for v in stats(client, until="2026-03-02T00:00:00Z")["versions"]] == [
        OTHER_VERSION,
        "unknown",
    ]


def test_rows_another_task_cannot_read_are_counted_not_used(database_url):
    """A multiclass model swapped in over a binary one's rows: those are left out."""
    model_dir, observations, truths = wine()
    app, client = serve(database_url, model_dir)
    day = datetime(2026, 3, 1, 12)
    binary_rows = [{"alcohol": "a binary model's observation"}] * 5
    insert_rows(legacy_rows(binary_rows, [0.5] * 5, [1, 0, 1, 1, 0], 10_000, day))
    send(client, 0, observations[:20], truths[:20], "true_class", lambda i: True)

    legacy = stats(client, model_version="unknown")
    served = stats(client)

    assert (legacy["predictions"], legacy["labelled"], legacy["labelled_left_out"]) == (5, 5, 5)
    assert legacy["metrics"]["accuracy"] is None and legacy["metrics"]["reason"]
    assert legacy["unreadable_observations"] == 5  # another model's columns
    assert (served["labelled"], served["labelled_left_out"]) == (20, 0)
    assert served["metrics"]["accuracy"] is not None


@pytest.mark.parametrize("contract", ["flat", "renamed"])
def test_the_drift_reads_the_features_wherever_the_contract_keeps_them(
    contract, database_url, tmp_path
):
    """A flat body (the stop-and-search brief) or one whose features are under another
    field: /stats reads each stored body as the contract does, not as {"observation"}."""
    if contract == "flat":
        folder = EXAMPLES / "stop_and_search"
        frame = pd.read_csv(folder / "traffic.csv").iloc[:60].drop(columns="outcome")
        items = json.loads(frame.to_json(orient="records"))
        column, values = "station", frame["station"].tolist()
    else:
        folder = tmp_path / "renamed"
        folder.mkdir()
        for name in ["pipeline.pickle", "columns.json", "dtypes.pickle", "training_profile.json"]:
            (folder / name).write_bytes((TITANIC / name).read_bytes())
        (folder / "api.toml").write_text('[predict]\nobservation = "passenger"\n')
        passengers = [o for _, o, _ in replay_traffic.held_out_passengers()[:60]]
        items = [{"id": i, "passenger": o} for i, o in enumerate(passengers)]
        column, values = "Sex", [o["Sex"] for o in passengers]
    _, client = serve(database_url, folder)
    results = client.post("/predict-batch", json={"observations": items}).json["results"]
    assert [r["status"] for r in results] == [200] * len(items)

    result = stats(client)

    assert (result["predictions"], result["unreadable_observations"]) == (len(items), 0)
    assert result["drift_note"] is None
    counts = {b["bin"]: b["count"] for b in result["drift"][column]["bins"]}
    assert {k: n for k, n in counts.items() if n} == dict(pd.Series(values).value_counts())
