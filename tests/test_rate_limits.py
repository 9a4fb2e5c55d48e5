"""Rate limits and load shedding (model_service/rate_limits.py): refused at once, counted.

In process: RATE_LIMIT per client address, per API key, behind a trusted proxy; the counter
exact under threads and forked processes; MAX_QUEUED_PREDICTIONS with a scoring that waits.
Then one gunicorn server with two workers per database: the limit reached exactly across
both, and the load test's clients, under the limit, all answered and stored.
"""

import multiprocessing
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import schemathesis
from conftest import DATABASES, EXAMPLE, POSTGRES_URL, LiveServer, empty_database, service
from reliability_helpers import gunicorn_workers, stored_rows
from test_monitoring import metric_samples, sample

from model_service import openapi
from model_service.batching import BatchOverloaded, MicroBatcher
from model_service.errors import StartupError
from model_service.rate_limits import WindowCounter, parse_rate_limit

ADMIN_TOKEN = "admin-" + "5e1c0d" * 4
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
KEYS = {"alice": "alice-key-" + "3f" * 8, "bob": "bob-key-" + "9a" * 8}


def make_app(database_url, **settings):
    return service.create_app(
        {"DATABASE_URL": database_url, "ADMIN_TOKEN": ADMIN_TOKEN, **settings}
    )


def refused(client, reason):
    """requests_refused_total{reason} as /metrics says it (one registry per test process)."""
    text = client.get("/metrics", headers=ADMIN).get_data(as_text=True)
    return sample(metric_samples(text), "requests_refused_total", reason=reason)


def predict(client, number, **options):
    return client.post("/predict", json={"id": number, "observation": EXAMPLE}, **options)


def assert_refused(response, status, most_seconds):
    assert response.status_code == status
    assert set(response.get_json()) == {"error"}
    assert 1 <= int(response.headers["Retry-After"]) <= most_seconds
    assert response.headers["X-Content-Type-Options"] == "nosniff"  # security_headers.py


# --- RATE_LIMIT: the setting ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("600/minute", (600, 60)),
        ("600/m", (600, 60)),
        ("10/second", (10, 1)),
        ("10/s", (10, 1)),
        ("5000/hour", (5000, 3600)),
        (" 1 / Day ", (1, 86400)),
        ("100000/d", (100000, 86400)),
    ],
)
def test_a_rate_is_a_number_per_period(text, expected):
    assert parse_rate_limit(text) == expected


@pytest.mark.parametrize(
    "text", ["600", "0/minute", "-1/minute", "1.5/minute", "600/week", "600 per minute", "/m"]
)
def test_a_malformed_rate_stops_the_start_up_with_one_sentence(text, tmp_path):
    with pytest.raises(StartupError, match=r"RATE_LIMIT=.* such as 600/minute"):
        make_app(f"sqlite:///{tmp_path / 'p.db'}", RATE_LIMIT=text)


@pytest.mark.parametrize(
    ("name", "value"), [("TRUSTED_PROXIES", -1), ("MAX_QUEUED_PREDICTIONS", 0)]
)
def test_bounds_out_of_range_stop_the_start_up(name, value, tmp_path):
    with pytest.raises(StartupError, match=name):
        make_app(f"sqlite:///{tmp_path / 'p.db'}", RATE_LIMIT="5/minute", **{name: value})


# --- RATE_LIMIT: who is counted, and what is refused ------------------------------------


def test_past_the_limit_a_client_gets_429_with_retry_after(tmp_path):
    client = make_app(f"sqlite:///{tmp_path / 'p.db'}", RATE_LIMIT="3/minute").test_client()
    before = refused(client, "rate_limit")
    here = {"environ_base": {"REMOTE_ADDR": "192.0.2.1"}}

    admitted = [
        predict(client, 1, **here),
        client.post("/update", json={"id": 1, "true_class": 1}, **here),
    ]
    batch = client.post(
        "/predict-batch", json={"observations": [{"id": 2, "observation": EXAMPLE}]}, **here
    )
    over = [
        predict(client, 3, **here),
        client.post("/update", json={"id": 1, "true_class": 0}, **here),
    ]

    assert [r.status_code for r in [*admitted, batch]] == [200, 200, 200]  # one count for all three
    app = client.application  # the 429s, as the service's document of itself says
    schema = schemathesis.openapi.from_dict(openapi.build_spec(app.config["MODEL"], app.config))
    for response, path in zip(over, ("/predict", "/update"), strict=True):
        assert_refused(response, 429, 60)
        assert "3/minute" in response.get_json()["error"]
        schema[path]["POST"].validate_response(response)
    assert predict(client, 4, environ_base={"REMOTE_ADDR": "192.0.2.2"}).status_code == 200
    assert client.get("/health", **here).status_code == 200  # only the scoring routes count
    assert client.options("/predict", **here).status_code == 200  # nor a browser's preflight
    assert refused(client, "rate_limit") == before + 2


def test_without_rate_limit_nothing_is_counted(tmp_path):
    app = make_app(f"sqlite:///{tmp_path / 'p.db'}")
    client = app.test_client()
    assert "rate_limit" not in app.extensions
    assert all(predict(client, number).status_code == 200 for number in range(5))


def test_with_api_keys_each_key_has_its_own_count_from_any_address(tmp_path):
    keys = ",".join(f"{name}:{key}" for name, key in KEYS.items())
    client = make_app(
        f"sqlite:///{tmp_path / 'p.db'}", RATE_LIMIT="2/hour", API_KEYS=keys
    ).test_client()

    def send(name, number, address):
        headers = {"X-API-Key": KEYS[name]}
        return predict(client, number, headers=headers, environ_base={"REMOTE_ADDR": address})

    statuses = [
        send("alice", 1, "192.0.2.1").status_code,
        send("alice", 2, "192.0.2.2").status_code,
    ]
    assert statuses == [200, 200]
    assert_refused(send("alice", 3, "192.0.2.3"), 429, 3600)
    assert send("bob", 4, "192.0.2.1").status_code == 200  # same address, another key


def test_requests_refused_for_their_key_count_against_their_address(tmp_path):
    """Guessing keys costs the guesser's address its limit; a valid key keeps its own."""
    keys = ",".join(f"{name}:{key}" for name, key in KEYS.items())
    client = make_app(
        f"sqlite:///{tmp_path / 'p.db'}", RATE_LIMIT="3/hour", API_KEYS=keys
    ).test_client()
    guesses = [{}, {"X-API-Key": "guess-" + "0" * 16}, {"Authorization": "Basic x"}]
    statuses = [predict(client, 1, headers=headers).status_code for headers in guesses]
    assert statuses == [401, 401, 401]
    assert_refused(predict(client, 1, headers={"X-API-Key": KEYS["alice"][:-1]}), 429, 3600)
    assert predict(client, 1, headers={"X-API-Key": KEYS["alice"]}).status_code == 200
    other = {"REMOTE_ADDR": "192.0.2.9"}
    assert predict(client, 2, environ_base=other).status_code == 401  # another address


@pytest.mark.parametrize(
    ("trusted_proxies", "same_client"),
    [(0, True), (1, False)],  # without a trusted proxy, X-Forwarded-For is not believed
)
def test_behind_a_trusted_proxy_the_address_it_forwarded_is_counted(
    trusted_proxies, same_client, tmp_path
):
    app = make_app(
        f"sqlite:///{tmp_path / 'p.db'}", RATE_LIMIT="1/hour", TRUSTED_PROXIES=trusted_proxies
    )
    client = app.test_client()

    def through_proxy(number, forwarded):
        return predict(client, number, headers={"X-Forwarded-For": forwarded})

    first = through_proxy(1, "203.0.113.5")
    # What the client wrote itself comes first; the proxy appends the address it saw.
    forged = through_proxy(2, "203.0.113.99, 203.0.113.5")
    other = through_proxy(3, "198.51.100.8")
    assert first.status_code == 200
    assert forged.status_code == 429  # the same client, whatever it forged
    assert other.status_code == (429 if same_client else 200)


# --- The counter: exact when shared -----------------------------------------------------


def test_a_window_opens_at_the_first_hit_and_lasts_the_period(tmp_path):
    counter = WindowCounter(tmp_path, limit=2, period=60)
    assert [counter.hit("a", now) for now in (1000, 1010)] == [0, 0]
    assert counter.hit("a", 1020) == 40  # the window opened at 1000
    assert counter.hit("a", 1059.5) == 1  # half a second: still at least 1
    assert counter.hit("b", 1059.5) == 0  # another key, another window
    assert [counter.hit("a", now) for now in (1060, 1061, 1062)] == [0, 0, 58]  # from 1060


def test_ended_windows_are_removed(tmp_path):
    counter = WindowCounter(tmp_path, limit=5, period=60)
    counter.PRUNE_EVERY = 3
    counter.hit("old", 0)
    counter.hit("new", 100)
    counter.hit("new", 101)  # the third hit: windows that started before 41 go
    with sqlite3.connect(counter.path) as connection:
        assert connection.execute("SELECT key FROM windows").fetchall() == [("new",)]
    connection.close()


def test_threads_of_one_process_are_never_admitted_one_too_many(tmp_path):
    counter = WindowCounter(tmp_path, limit=123, period=3600)
    with ThreadPoolExecutor(8) as pool:
        waits = list(pool.map(lambda _: counter.hit("client"), range(400)))
    assert waits.count(0) == 123


def test_forked_processes_sharing_the_file_are_never_admitted_one_too_many(tmp_path):
    counter = WindowCounter(tmp_path, limit=250, period=3600)
    counter.hit("warm-up")  # this process's connection: the children must open their own
    fork = multiprocessing.get_context("fork")
    start, admitted = fork.Barrier(4), fork.Queue()

    def hammer():
        start.wait(10)
        admitted.put(sum(counter.hit("client") == 0 for _ in range(100)))

    processes = [fork.Process(target=hammer) for _ in range(4)]
    for process in processes:
        process.start()
    counts = [admitted.get(timeout=30) for _ in processes]
    for process in processes:
        process.join(10)
    assert sum(counts) == 250
    assert all(process.exitcode == 0 for process in processes)


def test_a_hit_costs_well_under_a_millisecond(tmp_path):
    counter = WindowCounter(tmp_path, limit=10**9, period=60)
    started = time.perf_counter()
    for number in range(2000):
        counter.hit(f"client {number % 100}")
    assert (time.perf_counter() - started) / 2000 < 0.001


# --- MAX_QUEUED_PREDICTIONS: load shedding ----------------------------------------------


class HeldScoring:
    """Wraps the batcher's process: the first batch waits until the test releases it."""

    def __init__(self, process):
        self.process, self.started, self.release = process, threading.Event(), threading.Event()

    def __call__(self, items):
        self.started.set()
        assert self.release.wait(10), "the test never released the batch"
        return self.process(items)


def wait_until(condition, seconds=5):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.001)


def test_the_bound_is_exact_and_refuses_at_once():
    held = HeldScoring(lambda items: [item * 2 for item in items])
    batcher = MicroBatcher(held, max_waiting=2)
    results = {}

    def submit(item):
        try:
            results[item] = batcher.submit(item)
        except BatchOverloaded as error:
            results[item] = error

    leader = threading.Thread(target=submit, args=(0,))
    leader.start()
    assert held.started.wait(5)
    waiting = [threading.Thread(target=submit, args=(item,)) for item in range(1, 6)]
    for thread in waiting:
        thread.start()
    wait_until(lambda: len(results) == 3)  # three refused while the batch still runs
    assert batcher.overloaded()
    held.release.set()
    for thread in [leader, *waiting]:
        thread.join(5)
    answered = sorted(item for item, result in results.items() if result == item * 2)
    assert len(answered) == 3 and 0 in answered  # the leader and the two that waited
    assert sum(isinstance(result, BatchOverloaded) for result in results.values()) == 3
    assert not batcher.overloaded()


def test_a_full_queue_answers_503_at_once_and_is_counted(tmp_path):
    app = make_app(f"sqlite:///{tmp_path / 'p.db'}", MAX_QUEUED_PREDICTIONS=1)
    batcher = app.extensions["batcher"]
    held = batcher.process = HeldScoring(batcher.process)
    before = refused(app.test_client(), "overloaded")
    with ThreadPoolExecutor(2) as pool:
        leading = pool.submit(predict, app.test_client(), 1)
        assert held.started.wait(5)
        queued = pool.submit(predict, app.test_client(), 2)
        wait_until(batcher.overloaded)

        client = app.test_client()
        started = time.monotonic()
        shed = [predict(client, 3), client.post("/predict-batch", json={"observations": []})]
        seconds = time.monotonic() - started
        not_shed = [client.post("/update", json={"id": 1, "true_class": 1}), client.get("/health")]
        held.release.set()
        answered = [leading.result(10), queued.result(10)]

    for response in shed:
        assert_refused(response, 503, 1)
    assert seconds < 1  # at once, not after the queue's wait
    assert [response.status_code for response in not_shed] == [404, 200]  # 1 not stored yet
    assert [response.status_code for response in answered] == [200, 200]
    assert predict(client, 3).status_code == 200  # the queue is empty again
    assert refused(client, "overloaded") == before + 2


# --- Two gunicorn workers ---------------------------------------------------------------

LIMIT = 30  # per hour: the test never crosses a window's end


@pytest.fixture(scope="module", params=DATABASES)
def server(request, tmp_path_factory):
    """One server per database: two workers, RATE_LIMIT, behind a (pretended) proxy."""
    folder = tmp_path_factory.mktemp("server")
    if request.param == "sqlite":
        database_url = f"sqlite:///{folder / 'predictions.db'}"
    else:
        database_url = empty_database(POSTGRES_URL)
    env = {
        "RATE_LIMIT": f"{LIMIT}/hour",
        "TRUSTED_PROXIES": "1",
        "MAX_QUEUED_PREDICTIONS": "500",
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "PROMETHEUS_MULTIPROC_DIR": str(folder / "metrics"),
    }
    live = LiveServer(database_url, workers=2, env=env)
    try:
        live.wait_until_ready()
        live.database_url, live.metrics_folder = database_url, folder / "metrics"
        yield live
    finally:
        live.stop()


def post_as(server, client_address, number):
    """A new connection each time: the two workers take turns accepting them."""
    body = {"id": number, "observation": EXAMPLE}
    headers = {"X-Forwarded-For": client_address}
    return requests.post(f"{server.url}/predict", json=body, headers=headers, timeout=30)


@pytest.mark.slow
def test_the_limit_is_reached_exactly_across_two_workers(server):
    numbers = range(10_000, 10_100)
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda number: post_as(server, "198.51.100.7", number), numbers))

    statuses = [answer.status_code for answer in answers]
    assert statuses.count(200) == LIMIT and statuses.count(429) == len(numbers) - LIMIT
    refusal = next(answer for answer in answers if answer.status_code == 429)
    assert set(refusal.json()) == {"error"} and 1 <= int(refusal.headers["Retry-After"]) <= 3600
    # Both workers answered some: each writes its counts to files named after its pid.
    counted = {path.stem.rsplit("_", 1)[1] for path in server.metrics_folder.glob("*_*.db")}
    assert {str(pid) for pid in gunicorn_workers(server)} <= counted
    metrics = requests.get(f"{server.url}/metrics", headers=ADMIN, timeout=10).text
    assert sample(metric_samples(metrics), "requests_refused_total", reason="rate_limit") == 70


@pytest.mark.slow
def test_clients_under_the_limit_are_all_answered_and_stored(server):
    """The load test's shape with the limits on: 16 clients, each under its limit."""

    def client(number):
        address = f"192.0.2.{number}"
        return [
            post_as(server, address, 20_000 + number * 100 + k).status_code for k in range(LIMIT)
        ]

    with ThreadPoolExecutor(16) as pool:
        statuses = [status for answers in pool.map(client, range(16)) for status in answers]
    assert statuses == [200] * 16 * LIMIT
    stored = [key for key in stored_rows(server.database_url) if 20_000 <= key < 30_000]
    assert len(stored) == 16 * LIMIT
    assert "Traceback" not in server.output()
