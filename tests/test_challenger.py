"""CHALLENGER_DIR: a second model scores every answered prediction in the shadow.

For each task (binary, multiclass, regression, two targets) a challenger is fitted here on
half of the traffic, served beside the example model, and /stats's `challenger` section
is checked against scikit-learn computed on what was sent, with the challenger's own
pipeline. Also: the answers are those of the model alone, bit for bit; a challenger that
raises on some rows leaves every answer right and counts its failures; a full queue skips
rows and counts them; start-up refuses a challenger of other columns or another task in
one sentence; /health reports both; promotion is MODEL_DIR and CHALLENGER_DIR swapped.
"""

import json
import re
import shutil
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from conftest import TITANIC
from reliability_helpers import check_against_spec
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.linear_model import Ridge
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    f1_score,
    log_loss,
    mean_absolute_error,
    precision_score,
    recall_score,
    roc_auc_score,
    root_mean_squared_error,
)
from sklearn.pipeline import Pipeline
from test_stats_tasks import ADMIN, MODELS, assert_close, model_frame, pipeline_of, send, serve

from model_service import challenger as challenger_module
from model_service.errors import StartupError
from model_service.parsing import PredictionRequest


@pytest.fixture(autouse=True)
def quick_shadow(monkeypatch):
    """The shadow gathers rows for a second in service; here, a test waits for it."""
    monkeypatch.setattr(challenger_module, "GATHER_SECONDS", 0.01)


def write_folder(source, folder, pipeline):
    """A model folder: this pipeline, with the source folder's columns and dtypes."""
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(pipeline, folder / "pipeline.pickle")
    for name in ("columns.json", "dtypes.pickle", "targets.json"):
        if (source / name).exists():
            shutil.copy(source / name, folder / name)
    return folder


def truth_frame(truths):
    return pd.DataFrame(truths) if isinstance(truths[0], dict) else pd.Series(truths)


def fitted_challenger(name, tmp_path):
    """(model folder, challenger folder, observations, truths): the challenger is the
    example's pipeline fitted again on every other row of the traffic."""
    model_dir, observations, truths = MODELS[name]()
    frame, target = model_frame(model_dir, observations), truth_frame(truths)
    pipeline = clone(pipeline_of(model_dir)).fit(frame.iloc[::2], target.iloc[::2])
    return (
        model_dir,
        write_folder(model_dir, tmp_path / "challenger", pipeline),
        observations,
        truths,
    )


def shadowed(app):
    assert app.extensions["shadow"].wait_idle(20), "the challenger did not finish"


def expected_binary(pipeline, frame, truth, positive_index=1, threshold=0.5):
    score = pipeline.predict_proba(frame)[:, positive_index]
    decided = score >= threshold
    return {
        "roc_auc": roc_auc_score(truth, score),
        "accuracy": accuracy_score(truth, decided),
        "log_loss": log_loss(truth, score, labels=[False, True]),
        "brier": brier_score_loss(truth, score, pos_label=True),
        "precision": precision_score(truth, decided),
        "recall": recall_score(truth, decided),
        "f1": f1_score(truth, decided),
        "positive_rate": decided.mean(),
    }, decided


@pytest.mark.parametrize("name", list(MODELS))
def test_stats_compare_the_two_models_on_the_rows_both_scored(name, database_url, tmp_path):
    model_dir, folder, observations, truths = fitted_challenger(name, tmp_path)
    app, client = serve(database_url, model_dir, CHALLENGER_DIR=str(folder))
    field = app.config["MODEL"].task.truth_field
    sent = send(client, 1, observations, truths, field)
    shadowed(app)
    answer = client.get("/stats", headers=ADMIN)
    check_against_spec(answer, "/stats", "GET")  # every key, as openapi.yaml describes it
    stats = answer.json
    section = stats["challenger"]
    assert section["version"] == app.config["CHALLENGER"].version
    assert (section["rows"], section["labelled"]) == (len(observations), len(sent))
    # The model's figures on the rows both scored are /stats's own: every row was shadowed.
    assert_close(section["model_metrics"], stats["metrics"])

    frame = model_frame(model_dir, [observations[i] for i in sent])
    mine, theirs = pipeline_of(model_dir), joblib.load(folder / "pipeline.pickle")
    task = app.config["MODEL"].task.name
    if task == "binary":
        truth = np.array([truths[i] for i in sent]) == 1
        expected, their_decided = expected_binary(theirs, frame, truth)
        _, my_decided = expected_binary(mine, frame, truth)
        for metric, value in expected.items():
            assert section["metrics"][metric] == pytest.approx(value, rel=1e-9), metric
            difference = section["differences"][metric]
            assert difference["value"] == pytest.approx(
                value - stats["metrics"][metric], rel=1e-9, abs=1e-12
            ), metric
            assert difference["low"] <= difference["high"]
        my_right, their_right = my_decided == truth, their_decided == truth
        every = model_frame(model_dir, observations)
        changed = (mine.predict_proba(every)[:, 1] >= 0.5) != (
            theirs.predict_proba(every)[:, 1] >= 0.5
        )
        assert section["decisions_changed"] == int(changed.sum())
        assert section["paired_test"]["challenger_better"] == int((their_right & ~my_right).sum())
        assert section["paired_test"]["model_better"] == int((my_right & ~their_right).sum())
    elif task == "multiclass":
        truth = [truths[i] for i in sent]
        predicted = theirs.predict(frame)
        assert section["metrics"]["accuracy"] == pytest.approx(accuracy_score(truth, predicted))
        expected_loss = log_loss(truth, theirs.predict_proba(frame), labels=theirs.classes_)
        assert section["metrics"]["log_loss"] == pytest.approx(expected_loss, rel=1e-9)
        every = model_frame(model_dir, observations)
        changed = int((mine.predict(every) != theirs.predict(every)).sum())
        assert section["decisions_changed"] == changed
        assert section["paired_test"]["test"] == "mcnemar_exact"
    else:
        truth = truth_frame([truths[i] for i in sent]).to_numpy(dtype=float).reshape(len(sent), -1)
        predicted = theirs.predict(frame).reshape(truth.shape)
        figures = section["metrics"]
        per_target = figures.get("targets") or {"value": figures}
        for k, figure in enumerate(per_target.values()):
            assert figure["mae"] == pytest.approx(
                mean_absolute_error(truth[:, k], predicted[:, k]), rel=1e-9
            )
            assert figure["rmse"] == pytest.approx(
                root_mean_squared_error(truth[:, k], predicted[:, k]), rel=1e-9
            )
        assert section["decisions_changed"] is None
        assert section["paired_test"]["test"] == "wilcoxon_signed_rank"

    # The answers never quote the challenger, and a retry is not scored twice.
    assert "challenger" not in json.dumps(
        client.post("/predict", json={"id": 1, "observation": observations[0]}).json
    )
    shadowed(app)
    assert client.get("/stats", headers=ADMIN).json["challenger"]["rows"] == len(observations)


RULE_NAMES = ["recall of each sex", "positive rates level between the classes"]
RULES = f"""
[stats]
min_labelled = 5

[[stats.rules]]
name = "{RULE_NAMES[0]}"
metric = "recall"
by = "Sex"
at_least = 0.5

[[stats.rules]]
name = "{RULE_NAMES[1]}"
metric = "positive_rate"
by = "Pclass"
spread_at_most = 0.2
"""


def test_by_group_judges_both_models_and_checks_the_rules_for_both(tmp_path):
    _, folder, observations, truths = fitted_challenger("titanic", tmp_path)
    model_dir = shutil.copytree(TITANIC, tmp_path / "model")
    (model_dir / "api.toml").write_text(RULES)
    url = f"sqlite:///{tmp_path / 'p.db'}"
    app, client = serve(url, model_dir, CHALLENGER_DIR=str(folder))
    send(client, 1, observations, truths, "true_class")
    shadowed(app)
    answer = client.get("/stats?by=Sex", headers=ADMIN)
    check_against_spec(answer, "/stats", "GET")
    stats = answer.json
    section = stats["challenger"]
    assert section["predictions"] == len(observations)
    # The model's side equals /stats?by= itself: the challenger scored every row.
    assert section["model"]["groups"] == stats["groups"]
    theirs = joblib.load(folder / "pipeline.pickle")
    for group in section["challenger"]["groups"]:
        rows = [
            i
            for i, o in enumerate(observations)
            if o["Sex"] == group["group"]["Sex"] and i % 4 != 0
        ]
        truth = np.array([truths[i] for i in rows]) == 1
        decided = (
            theirs.predict_proba(model_frame(model_dir, [observations[i] for i in rows]))[:, 1]
            >= 0.5
        )
        assert group["labelled"] == len(rows)
        recall = group["metrics"]["recall"]["value"]
        assert recall == pytest.approx(recall_score(truth, decided), rel=1e-9)
    rules = [rule["name"] for rule in section["challenger"]["rules"]]
    assert rules == [rule["name"] for rule in section["model"]["rules"]] == RULE_NAMES


class RefuseOldPassengers(BaseEstimator, TransformerMixin):
    """A pipeline step that raises on a passenger older than 60 (and passes the rest)."""

    def fit(self, frame, _y=None):
        self.feature_names_in_ = np.array(frame.columns, dtype=object)
        return self

    def transform(self, frame):
        if (frame["Age"] > 60).any():
            raise RuntimeError("too old for this challenger")
        return frame


def test_a_challenger_that_raises_costs_the_answers_nothing_and_is_counted(tmp_path):
    model_dir, observations, truths = MODELS["titanic"]()
    guard = RefuseOldPassengers().fit(model_frame(model_dir, observations))
    raising = Pipeline([("guard", guard), ("model", pipeline_of(model_dir))])
    folder = write_folder(model_dir, tmp_path / "raising", raising)
    url = f"sqlite:///{tmp_path / 'p.db'}"
    app, client = serve(url, model_dir, CHALLENGER_DIR=str(folder))
    alone_app, alone = serve(f"sqlite:///{tmp_path / 'alone.db'}", model_dir)
    old = [i for i, o in enumerate(observations) if (o.get("Age") or 0) > 60]
    assert old, "the traffic needs a passenger older than 60"
    for i, observation in enumerate(observations[:40] + [observations[old[0]]]):
        body = {"id": i, "observation": observation}
        answer = client.post("/predict", json=body)
        assert answer.status_code == 200
        assert answer.get_data() == alone.post("/predict", json=body).get_data()  # bit for bit
    shadowed(app)
    older = sum((o.get("Age") or 0) > 60 for o in observations[:40]) + 1
    metrics = client.get("/metrics", headers=ADMIN).get_data(as_text=True)
    version = app.config["CHALLENGER"].version
    assert counted(metrics, version, "failed") == older
    assert counted(metrics, version, "scored") == 41 - older
    assert client.get("/stats", headers=ADMIN).json["challenger"]["rows"] == 41 - older


def counted(metrics, version, outcome):
    pattern = (
        rf'challenger_scorings_total{{challenger_version="{version}",outcome="{outcome}"}} (\S+)'
    )
    found = re.search(pattern, metrics)
    return float(found.group(1)) if found else 0


def test_a_full_queue_skips_rows_and_counts_them(tmp_path, monkeypatch):
    model_dir, folder, observations, truths = fitted_challenger("titanic", tmp_path)
    app, client = serve(f"sqlite:///{tmp_path / 'p.db'}", model_dir, CHALLENGER_DIR=str(folder))
    shadow = app.extensions["shadow"]
    monkeypatch.setattr(challenger_module, "MAX_PENDING", 3)
    model = app.config["MODEL"]
    requests = [PredictionRequest(str(i), i, "{}", [None] * 8, {}) for i in range(10)]
    before = counted(metrics_text(client), app.config["CHALLENGER"].version, "skipped")
    monkeypatch.setattr(shadow, "_start_worker", lambda: None)  # keep the queue as it is
    shadow.submit(model, requests=requests, outcomes=[{}] * 10)
    assert len(shadow._pending) == 3
    after = counted(metrics_text(client), app.config["CHALLENGER"].version, "skipped")
    assert after - before == 7


def metrics_text(client):
    return client.get("/metrics", headers=ADMIN).get_data(as_text=True)


def test_start_up_refuses_a_challenger_of_other_columns_or_another_task(tmp_path):
    url = f"sqlite:///{tmp_path / 'p.db'}"
    wine = TITANIC.parent / "wine"
    with pytest.raises(StartupError, match=r"^CHALLENGER_DIR=.* other columns .*\(not in both: "):
        serve(url, TITANIC, CHALLENGER_DIR=str(wine))
    model_dir, observations, truths = MODELS["titanic"]()
    regressor = clone(pipeline_of(model_dir)).set_params(classifier=Ridge())
    regressor.fit(model_frame(model_dir, observations), np.array(truths, dtype=float))
    folder = write_folder(model_dir, tmp_path / "regressor", regressor)
    with pytest.raises(StartupError, match=r"predicts another task \(regression\) .*\(binary\)"):
        serve(url, TITANIC, CHALLENGER_DIR=str(folder))
    with pytest.raises(StartupError, match="is not a folder"):
        serve(url, TITANIC, CHALLENGER_DIR=str(tmp_path / "missing"))


def test_promotion_and_rollback_are_one_variable_each(tmp_path):
    model_dir, folder, observations, truths = fitted_challenger("titanic", tmp_path)
    url = f"sqlite:///{tmp_path / 'p.db'}"
    first, client = serve(url, model_dir, CHALLENGER_DIR=str(folder))
    answer = client.get("/health")
    check_against_spec(answer, "/health", "GET")
    health = answer.json
    old, new = health["model"]["version"], health["challenger"]["version"]
    assert old != new and health["challenger"]["task"] == "binary"
    send(client, 1, observations[:20], truths[:20], "true_class")
    shadowed(first)

    # Promote: MODEL_DIR names the challenger's folder, the old model becomes the challenger.
    promoted, client = serve(url, folder, CHALLENGER_DIR=str(model_dir))
    health = client.get("/health").json
    assert (health["model"]["version"], health["challenger"]["version"]) == (new, old)
    send(client, 100, observations[20:40], truths[20:40], "true_class")
    shadowed(promoted)
    stats = client.get("/stats", headers=ADMIN).json
    assert {v["version"]: v["predictions"] for v in stats["versions"]} == {new: 20, old: 20}
    assert stats["challenger"]["rows"] == 20  # the new model's rows, scored by the old

    # Roll back: MODEL_DIR names the old folder again, with no challenger.
    _, client = serve(url, model_dir)
    health = client.get("/health").json
    assert (health["model"]["version"], health["challenger"]) == (old, None)
    assert client.get("/stats", headers=ADMIN).json["challenger"] is None
    retry = client.post("/predict", json={"id": 100, "observation": observations[20]})
    assert retry.status_code == 200  # a row the promoted model answered: its answer again
    assert Path(health["model"]["folder"]).name == Path(model_dir).name
