"""End to end: the real gunicorn server, spoken to over HTTP."""

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from conftest import EXAMPLE, POSTGRES_URL, empty_database, service
from playhouse.db_url import connect

pytestmark = pytest.mark.slow


def test_gunicorn_serves_predictions_and_updates(start_server, database_url):
    server = start_server(database_url, workers=2)
    # A pandas client: NaN for a missing value, 2.0 for 2, and no Content-Type header.
    body = json.dumps({"id": 10, "observation": dict(EXAMPLE, Cabin=float("nan"), Pclass=2.0)})

    first = requests.post(f"{server.url}/predict", data=body, timeout=10)
    retry = requests.post(f"{server.url}/predict", data=body, timeout=10)
    update = requests.post(f"{server.url}/update", json={"id": 10, "true_class": 1}, timeout=10)

    assert first.status_code == retry.status_code == 200
    assert 0 <= first.json()["proba"] <= 1
    assert retry.json() == first.json()
    assert update.status_code == 200
    assert (update.json()["proba"], update.json()["true_class"]) == (first.json()["proba"], 1)
    assert requests.get(f"{server.url}/health", timeout=10).json()["status"] == "ok"
    assert '"POST /predict HTTP/1.1" 200' in server.output()  # the access log


def test_workers_creating_the_table_at_once_on_an_empty_postgres_do_not_collide():
    """Replicas and workers that start together all create the table at the same moment."""
    if not POSTGRES_URL:
        pytest.skip("needs TEST_DATABASE_URL")
    store = service.create_app({"DATABASE_URL": POSTGRES_URL}).extensions["store"]
    empty_database(POSTGRES_URL)
    starting_line = threading.Barrier(8)

    def start_up():
        starting_line.wait(timeout=10)
        try:
            store.upgrade()  # each thread has its own connection
        finally:
            service.database.close()

    with ThreadPoolExecutor(8) as pool:
        for started in [pool.submit(start_up) for _ in range(8)]:
            started.result(timeout=60)

    with connect(POSTGRES_URL) as database:
        assert database.get_tables() == ["prediction"]
        indexes = [index.name for index in database.get_indexes("prediction")]
        assert "prediction_observation_id" in indexes
