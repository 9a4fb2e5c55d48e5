"""Load and concurrency: many clients at once lose nothing and store exactly what they answer.

Every server runs as a public deployment would (reliability_helpers.PUBLIC): API keys, a
rate limit and load shedding on; every request carries the key. Run with `pytest -s` to see
the figures (requests sent, 2xx, rows stored, 5xx).
"""

import json
import math
import random
import sqlite3
import threading
import time

import pytest
from conftest import POSTGRES_URL, LiveServer, empty_database
from playhouse.db_url import connect
from reliability_helpers import (
    PUBLIC,
    assert_keys_are_required,
    check_against_spec,
    close_enough,
    pipeline_probabilities,
    predict_bodies,
    random_observations,
    send_all,
    stored_rows,
)

pytestmark = pytest.mark.slow

CLIENTS = 16
REQUESTS = 1200  # per database


def unique_ids(count, seed):
    """Distinct ids over the whole 64-bit range, as clients that hash their keys send."""
    rng = random.Random(seed)
    ids = {2**63 - 1, -(2**63)}
    while len(ids) < count:  # bounded: a collision among 64-bit draws is all but impossible
        ids.add(rng.getrandbits(64) - 2**63)
    return sorted(ids, key=lambda _: rng.random())


def report(name, sent, rows):
    statuses = sent.statuses()
    print(
        f"\n[{name}] requests sent={len(sent.outcomes)} skipped={sent.skipped} "
        f"2xx={sent.count(lambda o: o.status is not None and 200 <= o.status < 300)} "
        f"5xx={sent.count(lambda o: o.status is not None and o.status >= 500)} "
        f"no answer={statuses.get(None, 0)} rows stored={len(rows)} statuses={statuses}"
    )


def assert_every_answer_is_stored(sent, ids, bodies, database_url):
    """Every 2xx has exactly one row with the same proba and the request as sent."""
    rows = stored_rows(database_url)
    answered = [outcome for outcome in sent.outcomes if outcome.status == 200]
    for outcome in answered:
        observation_id = ids[outcome.index]
        assert observation_id in rows, f"id {observation_id} answered 200 but is not stored"
        proba, observation = rows[observation_id]
        assert proba == outcome.body["proba"], f"id {observation_id}: stored {proba}"
        assert observation == bodies[outcome.index]
    return rows, answered


def test_sixteen_clients_get_every_prediction_stored(start_server, database_url):
    server = start_server(database_url, workers=2, env=PUBLIC)
    observations = random_observations(REQUESTS, seed=1)
    ids = unique_ids(REQUESTS, seed=2)
    bodies = predict_bodies(ids, observations)
    url = f"{server.url}/predict"

    started = time.monotonic()
    sent = send_all([("POST", url, body) for body in bodies], CLIENTS, deadline_seconds=240)
    seconds = time.monotonic() - started
    rows, answered = assert_every_answer_is_stored(sent, ids, bodies, database_url)
    report(f"load {database_url.split(':')[0]}", sent, rows)
    print(f"  {len(sent.outcomes) / seconds:.0f} requests/s, slowest {max_seconds(sent):.2f} s")

    assert sent.skipped == 0
    failed = [(o.status, o.error, o.text[:200]) for o in sent.outcomes if o.status != 200]
    assert failed == [], f"{len(failed)} requests failed, e.g. {failed[:5]}"
    assert len(rows) == len(answered) == REQUESTS
    # What was answered is what the pipeline says (the server scored one row at a time).
    expected = pipeline_probabilities(observations)
    wrong = [o.index for o in answered if not close_enough(o.body["proba"], expected[o.index])]
    assert wrong == []
    check_against_spec(answered[0].response, "/predict", "POST")
    assert "Traceback" not in server.output()
    assert_keys_are_required(server)


def max_seconds(sent):
    return max((outcome.seconds for outcome in sent.outcomes), default=0.0)


# --- Two replicas on one PostgreSQL --------------------------------------------------


@pytest.fixture
def two_replicas():
    """Two gunicorn servers (2 workers each) started together on one empty PostgreSQL."""
    if not POSTGRES_URL:
        pytest.skip("needs TEST_DATABASE_URL")
    empty_database(POSTGRES_URL)
    servers = []
    try:
        # Both start at once: both create the table at the same moment.
        servers = [LiveServer(POSTGRES_URL, workers=2, env=PUBLIC) for _ in range(2)]
        for server in servers:
            server.wait_until_ready(seconds=60)
        yield servers
    finally:
        for server in servers:
            server.stop()


def spellings(observation, rng):
    """The same observation written another way: key order, 2.0 for 2, NaN or absent for null."""
    variant = {}
    for key in rng.sample(list(observation), len(observation)):
        value = observation[key]
        if value is None:
            choice = rng.choice(["null", "nan", "absent"])
            if choice == "absent":
                continue
            value = None if choice == "null" else float("nan")
        elif isinstance(value, int) and rng.random() < 0.5:
            value = float(value)
        variant[key] = value
    return variant


ROUNDS = 150  # ids; each is sent CLIENTS times at the same moment


def race_plan(seed):
    """For each id: CLIENTS requests, identical, equivalent, or two different observations."""
    rng = random.Random(seed)
    base = random_observations(ROUNDS, seed=seed)
    others = random_observations(ROUNDS, seed=seed + 1)
    plan = []  # (id, kind, [(observation, body)] * CLIENTS)
    for number in range(ROUNDS):
        observation_id = 10_000 + number
        kind = ("identical", "equivalent", "different")[number % 3]
        first = base[number]
        second = others[number]
        if kind == "different" and first == second:
            second = dict(second, Pclass=first["Pclass"] % 3 + 1)
        sends = []
        for client in range(CLIENTS):
            if kind == "identical":
                observation = first
            elif kind == "equivalent":
                observation = spellings(first, rng) if client else first
            else:
                observation = first if client % 2 == 0 else second
            body = json.dumps({"id": observation_id, "observation": observation})
            sends.append((observation, body))
        plan.append((observation_id, kind, sends))
    return plan


COLUMNS = ["Pclass", "Sex", "Age", "SibSp", "Parch", "Fare", "Cabin", "Embarked"]


def canonical(observation):
    """The observation as the service compares them: 2.0 is 2, null, NaN and absent are alike."""
    return [comparable(observation.get(column)) for column in COLUMNS]


def comparable(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "missing"
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def test_two_replicas_racing_on_the_same_ids_keep_one_row_each(two_replicas):
    plan = race_plan(seed=7)
    flat = []  # (id, observation, body, server url)
    for observation_id, _kind, sends in plan:
        for client, (observation, body) in enumerate(sends):
            server = two_replicas[client % 2]
            flat.append((observation_id, observation, body, f"{server.url}/predict"))
    # Every CLIENTS consecutive requests (one id) leave together: a barrier per round.
    barrier = threading.Barrier(CLIENTS, timeout=60)
    sent = send_all(
        [("POST", url, body) for _, _, body, url in flat],
        CLIENTS,
        deadline_seconds=240,
        before=lambda _index: barrier.wait(),
    )
    rows = stored_rows(POSTGRES_URL)
    report("replicas postgresql", sent, rows)

    assert sent.skipped == 0
    assert len(sent.outcomes) == len(flat)
    assert sorted(rows) == sorted(observation_id for observation_id, _, _ in plan)
    with_duplicates = LiveQuery(POSTGRES_URL).one_row_per_id()
    assert with_duplicates == []

    probabilities = pipeline_probabilities([observation for _, observation, _, _ in flat])
    counts = {"200": 0, "409": 0}
    for outcome in sent.outcomes:
        observation_id, observation, body, _ = flat[outcome.index]
        stored_proba, stored_body = rows[observation_id]
        stored_observation = json.loads(stored_body)["observation"]
        assert outcome.status in (200, 409), (outcome.status, outcome.error, outcome.text)
        if canonical(observation) == canonical(stored_observation):
            assert outcome.status == 200, f"id {observation_id}: a retry got {outcome.text}"
            assert outcome.body == {"proba": stored_proba}
        else:
            assert outcome.status == 409, f"id {observation_id}: a conflict got {outcome.text}"
            assert set(outcome.body) == {"error", "proba"}
            assert close_enough(outcome.body["proba"], probabilities[outcome.index])
        counts[str(outcome.status)] += 1
    # The stored row is one of the requests sent, scored right.
    for observation_id, _kind, sends in plan:
        proba, body = rows[observation_id]
        assert body in [sent_body for _, sent_body in sends]
        assert close_enough(proba, pipeline_probabilities([json.loads(body)["observation"]])[0])
    check_against_spec(
        next(o.response for o in sent.outcomes if o.status == 409), "/predict", "POST"
    )
    print(f"  200={counts['200']} 409={counts['409']} ids={len(plan)}")

    # Nothing is overwritten: every request sent once more, then the table is unchanged.
    before = LiveQuery(POSTGRES_URL).snapshot()
    again = send_all(
        [("POST", url, body) for _, _, body, url in flat[:: CLIENTS // 4]], 8, deadline_seconds=120
    )
    assert {outcome.status for outcome in again.outcomes} <= {200, 409}
    assert LiveQuery(POSTGRES_URL).snapshot() == before
    for server in two_replicas:
        assert "Traceback" not in server.output()


class LiveQuery:
    """Queries on the table, straight to the database."""

    def __init__(self, url):
        self.database = connect(url)

    def rows(self, sql):
        with self.database:
            return [tuple(row) for row in self.database.execute_sql(sql).fetchall()]

    def one_row_per_id(self):
        return self.rows(
            "SELECT observation_id, COUNT(*) FROM prediction GROUP BY observation_id "
            "HAVING COUNT(*) > 1"
        )

    def snapshot(self):
        return self.rows(
            "SELECT id, observation_id, observation, proba, true_value, created_at "
            "FROM prediction ORDER BY id"
        )


# --- SQLite under concurrent writers --------------------------------------------------


def test_sqlite_with_many_writers_never_reports_a_locked_database(tmp_path):
    """Two servers (4 worker processes) and an outside writer share one SQLite file."""
    database_url = f"sqlite:///{tmp_path / 'shared.db'}"
    servers = []
    stop_writer = threading.Event()
    writer_errors = []

    def outside_writer():
        """Hold the write lock 0.3 s at a time, like a migration or a backup would."""
        connection = sqlite3.connect(tmp_path / "shared.db", timeout=30, isolation_level=None)
        try:
            for _ in range(100):  # bounded: 100 x ~0.5 s
                if stop_writer.wait(0.2):
                    break
                connection.execute("BEGIN IMMEDIATE")
                time.sleep(0.3)
                connection.execute("COMMIT")
        except sqlite3.Error as error:
            writer_errors.append(error)
        finally:
            connection.close()

    writer = threading.Thread(target=outside_writer)
    try:
        servers = [LiveServer(database_url, workers=2, env=PUBLIC) for _ in range(2)]  # together
        for server in servers:
            server.wait_until_ready(seconds=60)
        writer.start()
        count = 350  # some seconds of traffic: the outside writer holds the lock twice a second
        observations = random_observations(count, seed=11)
        ids = list(range(1, count + 1))
        bodies = predict_bodies(ids, observations)
        sent = send_all(
            [("POST", f"{servers[i % 2].url}/predict", body) for i, body in enumerate(bodies)],
            CLIENTS,
            deadline_seconds=180,
        )
    finally:
        stop_writer.set()
        if writer.is_alive() or writer.ident is not None:
            writer.join(timeout=30)
        logs = [server.output() for server in servers]
        for server in servers:
            server.stop()

    rows, answered = assert_every_answer_is_stored(sent, ids, bodies, database_url)
    report("sqlite many writers", sent, rows)
    assert writer_errors == []
    assert sent.skipped == 0
    failed = [(o.status, o.error, o.text[:200]) for o in sent.outcomes if o.status != 200]
    assert failed == [], f"{len(failed)} requests failed, e.g. {failed[:5]}"
    assert len(rows) == len(answered) == count
    for log in logs:
        assert "locked" not in log.lower()
        assert "Traceback" not in log
