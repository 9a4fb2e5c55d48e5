"""Micro-batching in a real gunicorn server: many clients at once, faults mid-batch, slow
clients. Run with `pytest -s` to see the figures."""

import json
import os
import pickle
import signal
import socket
import threading
import time
from collections import Counter

import joblib
import numpy as np
import pandas as pd
import pytest
import requests
from conftest import LiveServer, probabilities
from playhouse.db_url import connect
from reliability_helpers import (
    ThrowawayPostgres,
    predict_bodies,
    random_observations,
    send_all,
    stored_rows,
    wait_for_workers,
)
from sklearn.compose import make_column_transformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from model_service import artifacts, parsing

pytestmark = pytest.mark.slow

CLIENTS = 32


def numbered_bodies(count, seed):
    """Ids 1..count and one varied /predict body for each."""
    ids = list(range(1, count + 1))
    return ids, predict_bodies(ids, random_observations(count, seed=seed))


def batches_of(database_url):
    """How many rows each transaction stored: rows of one batch share their created_at."""
    with connect(database_url) as database:
        cursor = database.execute_sql("SELECT created_at FROM prediction")
        return sorted(Counter(row[0] for row in cursor.fetchall()).values())


def write_strict_model(folder):
    """A model on the Titanic columns whose encoder refuses an unseen Embarked at predict
    time (handle_unknown="error"): a row that passes validation but that the model refuses,
    as a user's own pipeline may."""
    frame = pd.DataFrame(random_observations(300, seed=5)).astype(
        {"Pclass": "int64", "SibSp": "int64", "Parch": "int64", "Age": "float64",
         "Fare": "float64", "Sex": "str", "Cabin": "str", "Embarked": "str"}
    )  # fmt: skip
    target = np.random.default_rng(5).integers(0, 2, len(frame))
    numeric = ["Pclass", "Age", "SibSp", "Parch", "Fare"]
    pipeline = make_pipeline(
        make_column_transformer(
            (SimpleImputer(), numeric),
            (OneHotEncoder(handle_unknown="error"), ["Embarked"]),
        ),
        LogisticRegression(max_iter=1000),
    )
    pipeline.fit(frame, target)
    columns = list(frame.columns)
    (folder / "columns.json").write_text(json.dumps(columns))
    with open(folder / "dtypes.pickle", "wb") as file:
        pickle.dump(frame.dtypes, file)
    joblib.dump(pipeline, folder / "pipeline.pickle")
    return folder


@pytest.fixture
def strict_model(tmp_path):
    return write_strict_model(tmp_path)


def as_key(observation):
    return json.dumps(observation, sort_keys=True)


def test_concurrent_traffic_gets_one_row_answers_retries_conflicts_and_422s(
    start_server, database_url, strict_model
):
    """Requests in flight together: new ids, identical retries and conflicting observations
    on the same ids, rows the model refuses mixed in. Each gets what it would get alone."""
    server = start_server(database_url, env={"MODEL_DIR": str(strict_model)})
    wait_for_workers(server, 2)
    model = artifacts.load_model(strict_model)
    count = 900
    observations = random_observations(count, seed=11)
    for index, observation in enumerate(observations):
        # Valid text, but refused by the encoder: every 9th row and any missing port.
        observation["Embarked"] = "X" if index % 9 == 0 else observation["Embarked"] or "S"
    ids = list(range(1, count + 1))
    # Every 10th id is sent three times at once: twice the same (a retry), once changed.
    requests_to_send = list(zip(ids, observations, strict=True))
    for index in range(5, count, 10):
        changed = dict(observations[index], Age=(observations[index]["Age"] or 30) + 1)
        requests_to_send += [(ids[index], observations[index]), (ids[index], changed)]
    bodies = [json.dumps({"id": i, "observation": o}) for i, o in requests_to_send]
    sent = send_all([("POST", f"{server.url}/predict", b) for b in bodies], clients=CLIENTS)

    # What the model answers for each row the encoder takes, scored together here (a row
    # scored in a batch differs from its one-row answer by an ulp at most: rel=1e-12 below).
    refused = {ids[index] for index in range(0, count, 9)}
    scored = [observation for i, observation in requests_to_send if i not in refused]
    values = [parsing.validate_observation(observation, model) for observation in scored]
    expected = dict(zip(map(as_key, scored), probabilities(values, model), strict=True))

    def alone(observation):
        return expected[as_key(observation)]

    rows = stored_rows(database_url)
    by_id = {}
    for outcome in sent.outcomes:
        observation_id, observation = requests_to_send[outcome.index]
        by_id.setdefault(observation_id, []).append((outcome, observation))
    for observation_id, answers in by_id.items():
        statuses = sorted(outcome.status for outcome, _ in answers)
        if observation_id in refused:
            assert statuses == [422] * len(answers)
            assert "The model cannot score" in answers[0][0].body["error"]
            assert observation_id not in rows
            continue
        proba, stored_body = rows[observation_id]
        stored_observation = json.loads(stored_body)["observation"]
        assert proba == pytest.approx(alone(stored_observation), rel=1e-12, abs=0)
        for outcome, observation in answers:
            if observation == stored_observation:
                assert (outcome.status, outcome.body) == (200, {"proba": proba})
            else:  # the changed observation lost the race, or came second: a conflict
                assert outcome.status == 409
                assert outcome.body["proba"] == pytest.approx(alone(observation), rel=1e-12)
        if len(answers) == 3:
            assert statuses == [200, 200, 409]
    assert len(rows) == count - len(refused)
    sizes = batches_of(database_url)
    print(f"\n[batching] {len(bodies)} requests, {len(rows)} rows in {len(sizes)} transactions,")
    print(f"  largest batches {sizes[-5:]}, statuses {sent.statuses()}")
    assert sizes[-1] > 1, "no two requests were ever stored together"


def test_a_lone_client_is_never_held_back(start_server, tmp_path):
    """One request at a time: each is a batch of one, answered at once."""
    database_url = f"sqlite:///{tmp_path / 'lone.db'}"
    server = start_server(database_url)
    bodies = predict_bodies(range(1, 41), random_observations(40, seed=2))
    with requests.Session() as session:
        for body in bodies:
            assert session.post(f"{server.url}/predict", data=body, timeout=5).status_code == 200
    assert batches_of(database_url) == [1] * 40


def slow_clients(url, count, stop):
    """`count` connections that send a request's headers one line a second, until stop."""
    host, port = url.removeprefix("http://").split(":")
    sockets = []
    for _ in range(count):
        connection = socket.create_connection((host, int(port)), timeout=5)
        connection.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")
        sockets.append(connection)
    dropped_after = {}
    started = time.monotonic()
    line = 0
    while not stop.is_set() and len(dropped_after) < count:
        line += 1
        for index, connection in enumerate(sockets):
            if index in dropped_after:
                continue
            try:
                connection.sendall(f"X-Slow-{line}: {line}\r\n".encode())
            except OSError:  # reset or closed by the server
                dropped_after[index] = time.monotonic() - started
        stop.wait(1)
    for connection in sockets:
        connection.close()
    return dropped_after


def test_a_hundred_slow_clients_neither_starve_a_normal_one_nor_stay_forever(
    start_server, tmp_path
):
    database_url = f"sqlite:///{tmp_path / 'slow.db'}"
    server = start_server(database_url, env={"KEEPALIVE": "3"})
    wait_for_workers(server, 2)
    stop = threading.Event()
    result = {}
    trickle = threading.Thread(
        target=lambda: result.update(dropped=slow_clients(server.url, 100, stop))
    )
    trickle.start()
    try:
        time.sleep(1.5)  # all 100 are connected and sending their headers
        seconds = []
        bodies = predict_bodies(range(1, 6), random_observations(5, seed=3))
        for body in bodies:
            started = time.monotonic()
            response = requests.post(f"{server.url}/predict", data=body, timeout=10)
            seconds.append(time.monotonic() - started)
            assert response.status_code == 200
        trickle.join(timeout=20)  # the server drops them: the thread ends by itself
    finally:
        stop.set()
        trickle.join()
    dropped = result["dropped"]
    print(f"\n[slow clients] normal requests answered in {[round(s, 3) for s in seconds]} s;")
    print(
        f"  {len(dropped)} of 100 slow ones dropped, the last after {max(dropped.values()):.1f} s"
    )
    assert max(seconds) < 1
    assert len(dropped) == 100
    assert max(dropped.values()) < 3 + 3  # KEEPALIVE bounds a request's headers, plus a line


# Requests sent while PostgreSQL freezes after the 100th: some 40 meet it frozen (two or
# three rounds of CLIENTS, each ending in 503 within a few DATABASE_TIMEOUTs).
SENT_FROZEN = 140


def test_a_frozen_database_fails_whole_batches_with_503_in_bounded_time():
    """PostgreSQL stops answering (SIGSTOP) while 32 clients keep batches in flight: every
    request ends in 503 within a few DATABASE_TIMEOUTs, no worker is killed, and after the
    database comes back every answered prediction is stored."""
    with ThrowawayPostgres() as postgres:
        server = LiveServer(postgres.url, env={"DATABASE_TIMEOUT": "1"}).wait_until_ready()
        try:
            workers = wait_for_workers(server, 2)
            count = 400
            ids, bodies = numbered_bodies(count, seed=7)
            frozen_at = {}

            def freeze_after_100(index):
                if index == 100 and not frozen_at:
                    for pid in postgres.pids():
                        os.kill(pid, signal.SIGSTOP)
                    frozen_at["t"] = time.monotonic()

            try:
                sent = send_all(
                    [("POST", f"{server.url}/predict", b) for b in bodies[:SENT_FROZEN]],
                    clients=CLIENTS,
                    before=freeze_after_100,
                    timeout=(3, 40),
                )
            finally:
                for pid in postgres.pids():
                    os.kill(pid, signal.SIGCONT)
            after = send_all([("POST", f"{server.url}/predict", b) for b in bodies[SENT_FROZEN:]])
            during = [o for o in sent.outcomes if o.started > frozen_at["t"] + 0.1]
            print(f"\n[frozen database] during: {Counter(o.status for o in during)}, slowest "
                  f"{max(o.seconds for o in during):.1f} s; after: {after.statuses()}")  # fmt: skip
            assert during and {o.status for o in during} == {503}
            assert max(o.seconds for o in during) < 3 * 1 + 5  # wait_timeout of the batcher
            assert {o.status for o in after.outcomes} == {200}
            rows = stored_rows(postgres.url)
            for outcome in sent.outcomes + after.outcomes:
                if outcome.status == 200:
                    index = outcome.index + (SENT_FROZEN if outcome in after.outcomes else 0)
                    assert rows[ids[index]][0] == outcome.body["proba"]
            assert wait_for_workers(server, 2) == workers, "a worker was killed"
        finally:
            server.stop()


def test_a_worker_killed_mid_batch_loses_only_its_requests_in_flight(start_server, tmp_path):
    database_url = f"sqlite:///{tmp_path / 'killed.db'}"
    server = start_server(database_url)
    workers = wait_for_workers(server, 2)
    count = 1200
    ids, bodies = numbered_bodies(count, seed=13)
    killed = {}

    def kill_at_400(index):
        if index == 400 and not killed:
            killed["t"] = time.monotonic()
            os.kill(workers[0], signal.SIGKILL)

    sent = send_all(
        [("POST", f"{server.url}/predict", b) for b in bodies], clients=CLIENTS, before=kill_at_400
    )
    failed = [o for o in sent.outcomes if o.status != 200]
    rows = stored_rows(database_url)
    print(f"\n[worker killed mid-batch] {sent.statuses()}, rows {len(rows)}")
    # At most one request per client was in flight on the killed worker; each lost one is a
    # dropped connection (safe to retry: the id makes it idempotent), never an error status.
    assert len(failed) <= CLIENTS and all(o.status is None for o in failed)
    for outcome in sent.outcomes:
        if outcome.status == 200:
            assert rows[ids[outcome.index]][0] == outcome.body["proba"]
    assert len(wait_for_workers(server, 2, exclude=[workers[0]])) == 2


def test_a_graceful_stop_answers_every_request_it_holds(start_server, tmp_path):
    """SIGTERM while 32 clients keep batches in flight: what the server holds is answered
    and stored (or the connection is refused), never a 5xx, and the server exits."""
    database_url = f"sqlite:///{tmp_path / 'stop.db'}"
    server = start_server(database_url)
    wait_for_workers(server, 2)
    count = 1200
    ids, bodies = numbered_bodies(count, seed=17)

    def stop_at_300(index):
        if index == 300:
            server.process.send_signal(signal.SIGTERM)

    sent = send_all(
        [("POST", f"{server.url}/predict", b) for b in bodies], clients=CLIENTS, before=stop_at_300
    )
    assert server.process.wait(15) == 0
    rows = stored_rows(database_url)
    print(f"\n[graceful stop] {sent.statuses()}, rows {len(rows)}")
    assert all(o.status in (200, None) for o in sent.outcomes), sent.statuses()
    assert sent.count(lambda o: o.status == 200) >= 300 - CLIENTS
    for outcome in sent.outcomes:
        if outcome.status == 200:
            assert rows[ids[outcome.index]][0] == outcome.body["proba"]
