"""Faults: the database goes away under load, a worker dies, an artifact is broken.

The outage test starts its own PostgreSQL (ThrowawayPostgres: initdb into a temporary
folder, a free port), never the machine's shared server. The servers run with API keys, a
rate limit and load shedding on (reliability_helpers.PUBLIC), as a public deployment does.
Run with `pytest -s` for figures.
"""

import json
import math
import os
import pickle
import shutil
import signal
import subprocess
import sys
import threading
import time

import joblib
import pytest
import requests
import sklearn.base
from conftest import ROOT, TITANIC, LiveServer, free_port, service
from reliability_helpers import (
    ThrowawayPostgres,
    assert_keys_are_required,
    check_against_spec,
    gunicorn_workers,
    predict_bodies,
    public,
    random_observations,
    send_all,
    stored_rows,
    wait_for_workers,
)

from model_service.errors import StartupError

DATABASE_TIMEOUT = 5  # the service's default, seconds
# A request may try the database twice (in_transaction retries once on a fresh connection).
LONGEST_ANSWER = 2 * DATABASE_TIMEOUT + 1

# The frozen-database test runs with a short DATABASE_TIMEOUT and allows three waits of it
# per request: checking a pooled connection, a new connection, and the retry's connection.
FROZEN_TIMEOUT = 1
LONGEST_FROZEN_ANSWER = 3 * FROZEN_TIMEOUT + 2
GUNICORN_TIMEOUT = 30  # gunicorn.conf.py's default: a worker stuck longer is killed
RECOVERY = 5  # seconds from PostgreSQL's return to the first 200


@pytest.fixture
def postgres():
    with ThrowawayPostgres() as server:
        yield server


@pytest.fixture
def live_server():
    """live_server(database_url, **options): a LiveServer with all its workers up; stopped after.

    Its settings are a public deployment's (reliability_helpers.PUBLIC: keys, a rate limit,
    load shedding), and the test's own."""
    servers = []

    def start(database_url, env=None, **options):
        server = LiveServer(database_url, env=public(**(env or {})), **options)
        servers.append(server)
        server.wait_until_ready(seconds=60)
        # /health answers as soon as one worker is up: wait for all of them.
        wait_for_workers(server, options.get("workers", 2))
        return server

    yield start
    for server in servers:
        server.stop()


def rows_missing_for_2xx(outcomes, ids, database_url):
    rows = stored_rows(database_url)
    missing = []
    for outcome in outcomes:
        if outcome.status == 200:
            stored = rows.get(ids[outcome.index])
            if stored is None or stored[0] != outcome.body["proba"]:
                missing.append((ids[outcome.index], outcome.body, stored))
    return rows, missing


# --- The database stops under load ----------------------------------------------------


@pytest.mark.slow
def test_a_database_outage_under_load_is_503_and_the_same_workers_recover(postgres, live_server):
    server = live_server(postgres.url, workers=2, env={"DATABASE_TIMEOUT": str(DATABASE_TIMEOUT)})
    workers = gunicorn_workers(server)
    count = 8000  # an upper bound: the deadline ends the run first
    ids = list(range(1, count + 1))
    bodies = predict_bodies(ids, random_observations(count, seed=21))
    timeline = {}
    during = {}

    def outage():
        time.sleep(2)
        timeline["down"] = time.monotonic()
        postgres.stop("fast")  # terminates every session, as a restart or failover does
        time.sleep(1)
        health = requests.get(f"{server.url}/health", timeout=LONGEST_ANSWER + 5)
        during["health"] = health
        time.sleep(3)
        postgres.start()
        timeline["up"] = time.monotonic()
        # The run goes on a few seconds past the recovery /health sees (or RECOVERY).
        while time.monotonic() < timeline["up"] + RECOVERY:
            if requests.get(f"{server.url}/health", timeout=LONGEST_ANSWER).status_code == 200:
                break
            time.sleep(0.1)
        timeline["recovered"] = time.monotonic()

    controller = threading.Thread(target=outage)
    controller.start()
    try:
        sent = send_all(
            [("POST", f"{server.url}/predict", body) for body in bodies],
            clients=8,
            deadline_seconds=60,
            timeout=(3, LONGEST_ANSWER + 10),
            # Until some seconds past the recovery: requests after it too.
            until=lambda: time.monotonic() > timeline.get("recovered", math.inf) + 3,
        )
    finally:
        controller.join(timeout=60)
    assert "up" in timeline, f"PostgreSQL did not come back:\n{postgres.log()[-3000:]}"
    down, up = timeline["down"], timeline["up"]
    outcomes = sent.outcomes

    # During the outage: 503 JSON, quickly; never a hang, a dropped connection or a 500.
    statuses = sent.statuses()
    unexpected = [(o.status, o.error, o.text[:200]) for o in outcomes if o.status not in (200, 503)]
    assert unexpected == [], f"statuses {statuses}, e.g. {unexpected[:5]}"
    unavailable = [o for o in outcomes if o.status == 503]
    assert unavailable, "no request saw the outage"
    for outcome in unavailable:
        assert outcome.content_type == "application/json"
        assert set(outcome.body) == {"error"}
        assert outcome.response.headers.get("Retry-After") == "1"
    check_against_spec(unavailable[0].response, "/predict", "POST")
    slowest = max(outcome.seconds for outcome in outcomes)
    assert slowest <= LONGEST_ANSWER, f"a request took {slowest:.1f} s"
    health = during["health"]
    assert health.status_code == 503
    assert health.json()["database"]["status"] == "unavailable"
    check_against_spec(health, "/health", "GET")

    # After the outage: 200 again within seconds, from the same processes.
    recovered = [o for o in outcomes if o.status == 200 and o.started >= up]
    assert recovered, f"no 200 after PostgreSQL came back; statuses {statuses}"
    recovery = min(o.finished for o in recovered) - up
    assert recovery < RECOVERY, f"recovery took {recovery:.1f} s"
    late = [o for o in outcomes if o.started >= up + recovery + 1]
    assert late, "no request was sent a second after the recovery"
    assert [o.text for o in late if o.status != 200] == []
    assert server.process.poll() is None
    assert gunicorn_workers(server) == workers, "a worker was restarted"
    assert requests.get(f"{server.url}/health", timeout=10).status_code == 200

    # No 2xx without its row; a client that retries its 503s loses nothing.
    rows, missing = rows_missing_for_2xx(outcomes, ids, postgres.url)
    assert missing == []
    stored_despite_503 = sum(1 for o in unavailable if ids[o.index] in rows)
    retried = send_all(
        [("POST", f"{server.url}/predict", bodies[o.index]) for o in unavailable],
        clients=8,
        deadline_seconds=120,
    )
    assert {o.status for o in retried.outcomes} == {200}
    rows = stored_rows(postgres.url)
    assert sorted(rows) == sorted(ids[o.index] for o in outcomes)
    print(
        f"\n[outage] requests sent={len(outcomes)} 2xx={statuses.get(200, 0)} "
        f"503={len(unavailable)} other={len(unexpected)} rows stored={len(rows)} "
        f"(of which answered 503 but committed: {stored_despite_503}) "
        f"outage={up - down:.1f} s recovery={recovery:.2f} s "
        f"slowest answer={slowest:.2f} s, 503s retried -> all 200"
    )


@pytest.mark.slow
def test_a_database_that_stops_answering_is_503_within_the_timeout(postgres, live_server):
    """A PostgreSQL that hangs (frozen, or cut off by the network) rather than refusing.

    Its processes are stopped with SIGSTOP: connections stay open, but nothing answers.
    A request must still end in a 503 after a few DATABASE_TIMEOUTs, not hang until
    gunicorn kills the worker (GUNICORN_TIMEOUT, 30 s) and drops the connection.
    """
    server = live_server(postgres.url, workers=2, env={"DATABASE_TIMEOUT": str(FROZEN_TIMEOUT)})
    workers = gunicorn_workers(server)
    observations = random_observations(40, seed=41)
    bodies = predict_bodies(range(1, 41), observations)
    # Both workers now hold pooled connections, as they do in production.
    warm = send_all([("POST", f"{server.url}/predict", b) for b in bodies[:20]], clients=4)
    assert {outcome.status for outcome in warm.outcomes} == {200}

    postgres_pids = postgres.pids()
    try:
        for pid in postgres_pids:
            os.kill(pid, signal.SIGSTOP)
        # Two rounds of one request per worker: first on pooled connections, then on
        # whatever the first round left. Each request is timed on its own.
        frozen = []
        for first in (20, 22):
            frozen += send_all(
                [("POST", f"{server.url}/predict", b) for b in bodies[first : first + 2]],
                clients=2,
                timeout=(3, GUNICORN_TIMEOUT + 3),  # long enough to see what gunicorn does
            ).outcomes
    finally:
        for pid in postgres_pids:
            os.kill(pid, signal.SIGCONT)
    after = send_all([("POST", f"{server.url}/predict", b) for b in bodies[26:]], clients=4)
    answers = [(o.status, o.error or o.text[:80], round(o.seconds, 1)) for o in frozen]
    print(f"\n[frozen database] answers while frozen: {answers}")

    assert all(o.status == 503 for o in frozen), answers
    assert max(o.seconds for o in frozen) <= LONGEST_FROZEN_ANSWER, answers
    assert {outcome.status for outcome in after.outcomes} == {200}
    assert gunicorn_workers(server) == workers, "a worker was killed by the gunicorn timeout"
    assert "WORKER TIMEOUT" not in server.output()


# --- A worker dies ----------------------------------------------------------------------


@pytest.mark.slow
def test_a_killed_worker_is_replaced_and_only_its_request_fails(live_server, tmp_path):
    database_url = f"sqlite:///{tmp_path / 'predictions.db'}"
    server = live_server(database_url, workers=2)
    workers = gunicorn_workers(server)
    assert len(workers) == 2
    count = 1600
    ids = list(range(1, count + 1))
    bodies = predict_bodies(ids, random_observations(count, seed=31))
    started = []
    lock = threading.Lock()
    timeline = {}

    def count_started(_index):
        with lock:
            started.append(1)

    def kill_one():
        deadline = time.monotonic() + 60
        while len(started) < 600 and time.monotonic() < deadline:
            time.sleep(0.01)
        timeline["killed"] = time.monotonic()
        os.kill(workers[0], signal.SIGKILL)
        timeline["new_workers"] = wait_for_workers(server, 2, seconds=30, exclude=[workers[0]])
        timeline["replaced"] = time.monotonic()

    killer = threading.Thread(target=kill_one)
    killer.start()
    try:
        sent = send_all(
            [("POST", f"{server.url}/predict", body) for body in bodies],
            clients=16,
            deadline_seconds=180,
            before=count_started,
        )
    finally:
        killer.join(timeout=90)
    assert "replaced" in timeline, "no replacement worker appeared"
    failed = [o for o in sent.outcomes if o.status != 200]
    after_kill = [o for o in sent.outcomes if o.started > timeline["replaced"]]
    rows, missing = rows_missing_for_2xx(sent.outcomes, ids, database_url)
    print(
        f"\n[worker killed] requests sent={len(sent.outcomes)} "
        f"2xx={sent.count(lambda o: o.status == 200)} failed={len(failed)} "
        f"rows stored={len(rows)} replaced in {timeline['replaced'] - timeline['killed']:.2f} s "
        f"({len(after_kill)} requests after that)"
    )
    # Only the requests in flight on the killed worker may be lost (its batch and the
    # connections it held): at most one per client, since each waits for its answer.
    assert len(failed) <= 16, [(o.status, o.error) for o in failed]
    assert all(o.status is None for o in failed)  # a dropped connection, not an error status
    assert after_kill and all(o.status == 200 for o in after_kill)
    assert missing == []
    assert server.process.poll() is None
    assert set(timeline["new_workers"]) & set(workers) == {workers[1]}
    assert requests.get(f"{server.url}/health", timeout=10).status_code == 200
    assert_keys_are_required(server)  # and the new worker counts on the same limits


# --- Start-up with broken artifacts -----------------------------------------------------

ARTIFACTS = ("pipeline.pickle", "columns.json", "dtypes.pickle")


def copy_artifacts(folder):
    for name in ARTIFACTS:
        shutil.copy(TITANIC / name, folder / name)


def remove(name):
    def breaker(folder):
        (folder / name).unlink()

    return breaker


def overwrite(name, data):
    def breaker(folder):
        (folder / name).write_bytes(data)

    return breaker


def truncate_pipeline(folder):
    path = folder / "pipeline.pickle"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def rename_a_column_in_columns_json(folder):
    columns = json.loads((folder / "columns.json").read_text())
    (folder / "columns.json").write_text(json.dumps([c.lower() for c in columns]))


def drop_a_column_from_dtypes(folder):
    with open(folder / "dtypes.pickle", "rb") as file:
        dtypes = pickle.load(file)
    with open(folder / "dtypes.pickle", "wb") as file:
        pickle.dump(dtypes.iloc[:-1], file)


def reorder_columns_and_dtypes(folder):
    """columns.json and dtypes.pickle agree with each other but not with the pipeline."""
    columns = json.loads((folder / "columns.json").read_text())
    (folder / "columns.json").write_text(json.dumps(columns[::-1]))


def pickle_from_another_scikit_learn(folder):
    """The shipped pipeline as scikit-learn 0.0.1 would have written it."""
    pipeline = joblib.load(TITANIC / "pipeline.pickle")
    original = sklearn.base.__version__
    sklearn.base.__version__ = "0.0.1"  # what BaseEstimator.__getstate__ records
    try:
        joblib.dump(pipeline, folder / "pipeline.pickle")
    finally:
        sklearn.base.__version__ = original


class VanishedTransformer(sklearn.base.TransformerMixin, sklearn.base.BaseEstimator):
    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return X


def pickle_needing_a_missing_module(folder):
    """A pipeline whose custom transformer lives in a module the server cannot import."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    module = type(sys)("student_transformers")
    module.VanishedTransformer = VanishedTransformer
    VanishedTransformer.__module__ = "student_transformers"
    sys.modules["student_transformers"] = module
    try:
        pipeline = make_pipeline(VanishedTransformer(), LogisticRegression())
        joblib.dump(pipeline, folder / "pipeline.pickle")
    finally:
        del sys.modules["student_transformers"]
        VanishedTransformer.__module__ = __name__


BROKEN = {
    "missing pipeline": (remove("pipeline.pickle"), "pipeline.pickle", "notebook 1"),
    "missing columns": (remove("columns.json"), "columns.json", "notebook 1"),
    "missing dtypes": (remove("dtypes.pickle"), "dtypes.pickle", "notebook 1"),
    "garbage pipeline": (
        overwrite("pipeline.pickle", b"\x80\x04not a pickle\x00\xff"),
        "pipeline.pickle",
        "notebook 1",
    ),
    "truncated pipeline": (truncate_pipeline, "pipeline.pickle", "notebook 1"),
    "garbage dtypes": (overwrite("dtypes.pickle", b"garbage"), "dtypes.pickle", "notebook 1"),
    "garbage columns": (overwrite("columns.json", b"{not json"), "columns.json", "notebook 1"),
    "columns.json names other columns": (
        rename_a_column_in_columns_json,
        "columns.json",
        "notebook 1",
    ),
    "dtypes.pickle names other columns": (drop_a_column_from_dtypes, "dtypes.pickle", "notebook 1"),
    "columns in another order than the pipeline": (
        reorder_columns_and_dtypes,
        "pipeline.pickle",
        "notebook 1",
    ),
    "pickle from another scikit-learn": (
        pickle_from_another_scikit_learn,
        "pipeline.pickle",
        "pin scikit-learn==0.0.1",
    ),
    "custom transformer module missing": (
        pickle_needing_a_missing_module,
        "pipeline.pickle",
        "student_transformers",
    ),
}

COMMANDS = {
    "gunicorn": [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "app:app"],
    "python app.py": [sys.executable, "app.py"],
}


def start_and_wait_for_exit(command, model_dir, tmp_path):
    environment = {
        **os.environ,
        "MODEL_DIR": str(model_dir),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'predictions.db'}",
        "PORT": str(free_port()),
        "WEB_CONCURRENCY": "2",
    }
    try:
        finished = subprocess.run(
            COMMANDS[command],
            cwd=ROOT,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=60,  # subprocess.run kills the process when it does not exit in time
        )
    except subprocess.TimeoutExpired as expired:
        pytest.fail(f"{command} kept running on broken artifacts:\n{expired.output}")
    return finished.returncode, finished.stdout


def broken_folder(case, tmp_path):
    """A copy of the model's artifacts, broken as BROKEN[case] says."""
    breaker, _, _ = BROKEN[case]
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    copy_artifacts(model_dir)
    breaker(model_dir)
    return model_dir


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_artifacts_stop_the_start_with_one_sentence_naming_the_file(case, tmp_path):
    _, file_name, fix = BROKEN[case]
    settings = {
        "MODEL_DIR": str(broken_folder(case, tmp_path)),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'predictions.db'}",
    }
    with pytest.raises(StartupError) as error:
        service.create_app(settings)
    sentence = str(error.value)
    assert "\n" not in sentence and file_name in sentence and fix in sentence, sentence


# The commands print that sentence and exit, whatever the case (app.create_app_or_exit):
# under gunicorn (as Railway runs it) and `python app.py`, a few cases each, as a user sees.
STARTS = [
    ("missing pipeline", "gunicorn"),
    ("custom transformer module missing", "gunicorn"),
    ("columns in another order than the pipeline", "gunicorn"),
    ("missing pipeline", "python app.py"),
    ("pickle from another scikit-learn", "python app.py"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("case", "command"), STARTS)
def test_broken_artifacts_stop_the_server_with_one_sentence(case, command, tmp_path):
    _, file_name, fix = BROKEN[case]
    code, output = start_and_wait_for_exit(command, broken_folder(case, tmp_path), tmp_path)

    sentences = [line for line in output.splitlines() if line.startswith("Cannot start:")]
    assert code != 0, output
    assert len(sentences) == 1, output
    assert file_name in sentences[0] and fix in sentences[0], sentences[0]
    assert "Traceback" not in output, output
    assert len(output.strip().splitlines()) <= 3, output  # a sentence, not a page
