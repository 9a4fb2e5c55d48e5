"""A database that does not fill up unseen (quota.py): the store's size on /health and
/metrics, DATABASE_QUOTA_MB's warning at 80 %, and [store] when_full at exactly 100 %.

The size is the database's own figure; at the boundary, the test sets it (store_bytes).
"""

import inspect
import logging
import math
import re
import shutil

import pytest
import requests
import schemathesis
from conftest import EXAMPLE, TITANIC, same_probability, service
from playhouse.db_url import connect
from reliability_helpers import PID_IN_ACCESS_LOG, post_until_both_workers_answer, stored_rows
from test_monitoring import metric_samples, sample

from model_service import openapi, quota

TOKEN = "quota-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
QUOTA_MB = 2
QUOTA_BYTES = QUOTA_MB * 1024 * 1024


@pytest.fixture(autouse=True)
def measured_every_time(monkeypatch):
    monkeypatch.setattr(quota, "REFRESH_SECONDS", 0)  # no cached size between requests


def app_with(tmp_path, database_url, when_full=None, **settings):
    folder = tmp_path / "model"
    shutil.copytree(TITANIC, folder)
    if when_full:
        (folder / "api.toml").write_text(inspect.cleandoc(f'[store]\nwhen_full = "{when_full}"'))
    settings = {"MODEL_DIR": str(folder), "DATABASE_URL": database_url, **settings}
    return service.create_app({"ADMIN_TOKEN": TOKEN, **settings})


def body(id_, **changes):
    return {"id": id_, "observation": {**EXAMPLE, **changes}}


def metric(client, name):
    text = client.get("/metrics", headers=ADMIN).get_data(as_text=True)
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(found.group(1)) if found else None


def test_health_and_metrics_say_how_large_the_store_is(tmp_path, database_url):
    client = app_with(tmp_path, database_url).test_client()
    for id_ in range(3):
        assert client.post("/predict", json=body(id_)).status_code == 200
    store = client.get("/health").json["store"]
    assert store["rows"] == 3
    assert store["bytes"] > 0 and store["state"] == "ok"
    assert store["quota_bytes"] is None and store["used_share"] is None
    assert metric(client, "database_store_rows") == 3
    assert metric(client, "database_store_bytes") > 0


@pytest.mark.parametrize("when_full", ["refuse", "answer"])
def test_a_full_store_does_what_when_full_says_at_exactly_its_quota(
    when_full, tmp_path, database_url, monkeypatch, caplog
):
    size = {"bytes": QUOTA_BYTES - 1}
    monkeypatch.setattr(quota, "store_bytes", lambda _database: size["bytes"])
    app = app_with(tmp_path, database_url, when_full, DATABASE_QUOTA_MB=QUOTA_MB)
    client = app.test_client()
    first = client.post("/predict", json=body(1))
    assert first.status_code == 200  # one byte below: a warning, and stored
    health = client.get("/health").json["store"]
    assert (health["state"], health["quota_bytes"]) == ("warning", QUOTA_BYTES)
    assert "of DATABASE_QUOTA_MB" in caplog.text

    size["bytes"] = QUOTA_BYTES  # exactly the quota: full
    not_stored = metric(client, "predictions_not_stored_total") or 0
    new = client.post("/predict", json=body(2))
    if when_full == "refuse":
        assert new.status_code == 507
        assert new.json["error"].startswith("The database is full (DATABASE_QUOTA_MB=2)")
    else:
        assert new.status_code == 200 and new.json == first.json  # the same passenger
        assert metric(client, "predictions_not_stored_total") == not_stored + 1
    assert client.get("/health").json["store"]["state"] == "full"
    # A stored id still answers: its retry, its conflict, its label; a new one is not stored.
    assert client.post("/predict", json=body(1)).json == first.json
    assert client.post("/predict", json=body(1, Age=80)).status_code == 409
    assert client.post("/update", json={"id": 1, "true_class": 1}).status_code == 200
    assert client.post("/update", json={"id": 2, "true_class": 1}).status_code == 404
    batch = client.post("/predict-batch", json={"observations": [body(1), body(3)]})
    statuses = [item["status"] for item in batch.json["results"]]
    assert statuses == [200, 507 if when_full == "refuse" else 200]
    if when_full == "refuse":  # both 507s, as the service's document of itself says
        schema = schemathesis.openapi.from_dict(openapi.build_spec(app.config["MODEL"], app.config))
        schema["/predict"]["POST"].validate_response(new)
        schema["/predict-batch"]["POST"].validate_response(batch)
    assert client.get("/health").json["store"]["rows"] == 1

    size["bytes"] = QUOTA_BYTES - 1  # space freed: new ids are stored again
    assert client.post("/predict", json=body(2)).status_code == 200
    assert client.get("/health").json["store"]["rows"] == 2


def store_bytes_as_the_server_measures(database_url):
    """quota.store_bytes on a connection of its own; SQLite's WAL first written into the
    file and emptied, so that no checkpoint can later shrink the figure below this one."""
    database = connect(database_url)
    with database:
        if database_url.startswith("sqlite:///"):
            busy, _, _ = database.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            assert busy == 0, "a connection kept the WAL from being emptied"
        return quota.store_bytes(database)


@pytest.mark.slow
@pytest.mark.parametrize("when_full", ["refuse", "answer"])
def test_two_workers_hold_a_store_at_exactly_its_quota(
    when_full, tmp_path, database_url, start_server
):
    ages = {1: 22.0, 2: 38.0, 3: 54.0}  # three stored passengers, answered apart
    app = app_with(tmp_path, database_url, when_full)  # no quota yet: stored
    client = app.test_client()
    stored = {id_: client.post("/predict", json=body(id_, Age=age)) for id_, age in ages.items()}
    assert {answer.status_code for answer in stored.values()} == {200}
    app.extensions["store"].database.close_all()  # its idle connections would hold the WAL
    size = store_bytes_as_the_server_measures(database_url)
    megabytes = repr(size / quota.MIB)  # MiB: exact, the divisor being a power of two
    assert int(float(megabytes) * quota.MIB) == size  # the server's quota_bytes: the size

    env = {
        "MODEL_DIR": str(tmp_path / "model"),  # app_with's copy, with [store] when_full
        "DATABASE_QUOTA_MB": megabytes,
        "ADMIN_TOKEN": TOKEN,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),  # /metrics: both workers
        **PID_IN_ACCESS_LOG,
    }
    server = start_server(database_url, workers=2, env=env)
    health = requests.get(f"{server.url}/health", timeout=30).json()["store"]
    assert (health["bytes"], health["quota_bytes"], health["state"]) == (size, size, "full")

    # New ids, each worker measuring at its first request: full in both.
    new_ids = (body(100 + n, Age=ages[1]) for n in range(50))
    new = post_until_both_workers_answer(server, "/predict", new_ids)
    for answer in new:
        if when_full == "refuse":
            assert answer.status_code == 507, answer.text
            assert answer.json()["error"].startswith("The database is full (DATABASE_QUOTA_MB=")
        else:
            assert answer.status_code == 200, answer.text
            assert same_probability(answer.json()["proba"], stored[1].json["proba"])
    # Stored ids answer as ever: their retries (the stored answer, bit for bit), a label.
    for id_, age in ages.items():
        retry = requests.post(f"{server.url}/predict", json=body(id_, Age=age), timeout=30)
        assert retry.status_code == 200 and retry.json() == stored[id_].json, id_
    label = requests.post(f"{server.url}/update", json={"id": 2, "true_class": 1}, timeout=30)
    assert label.status_code == 200, label.text
    both = {"observations": [body(3, Age=ages[3]), body(200, Age=ages[3])]}
    batch = requests.post(f"{server.url}/predict-batch", json=both, timeout=30).json()
    statuses = [item["status"] for item in batch["results"]]
    assert statuses == [200, 507 if when_full == "refuse" else 200]
    assert batch["results"][0]["answer"] == stored[3].json

    assert requests.get(f"{server.url}/health", timeout=30).json()["store"]["state"] == "full"
    metrics = requests.get(f"{server.url}/metrics", headers=ADMIN, timeout=30).text
    answered_unstored = len(new) + 1 if when_full == "answer" else 0  # and the batch's
    assert sample(metric_samples(metrics), "predictions_not_stored_total") == answered_unstored
    assert stored_rows(database_url).keys() == ages.keys()
    assert "of DATABASE_QUOTA_MB" in server.output()


def test_the_warning_is_logged_once_per_state(tmp_path, database_url, monkeypatch, caplog):
    size = {"bytes": math.ceil(0.8 * QUOTA_BYTES) - 1}
    monkeypatch.setattr(quota, "store_bytes", lambda _database: size["bytes"])
    client = app_with(tmp_path, database_url, DATABASE_QUOTA_MB=QUOTA_MB).test_client()
    caplog.set_level(logging.WARNING, logger="app")
    assert client.get("/health").json["store"]["state"] == "ok"
    size["bytes"] += 1  # 80 %: a warning, logged once
    for _ in range(3):
        assert client.get("/health").json["store"]["state"] == "warning"
    assert caplog.text.count("80 % of DATABASE_QUOTA_MB") == 1


@pytest.mark.parametrize("megabytes", [0, -5, float("nan")])
def test_a_quota_that_is_not_a_size_stops_the_start(tmp_path, megabytes):
    with pytest.raises(service.StartupError, match="must be a positive number of megabytes"):
        app_with(tmp_path, f"sqlite:///{tmp_path / 'p.db'}", DATABASE_QUOTA_MB=megabytes)
