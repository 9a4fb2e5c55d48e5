"""Helpers for the reliability tests (test_load, test_faults, test_hostile_input, test_memory).

- `random_observations` / `predict_bodies`: seeded, varied, valid /predict requests.
- `send_all`: many requests from a bounded pool of clients, each with its own session,
  with a deadline; every outcome is recorded, none is raised.
- `post_quickly`: many POSTs over kept-alive connections, at a small cost of the client's
  CPU; only the statuses are recorded.
- `stored_rows`: the table read directly (not through the API).
- `pipeline_probabilities`: what the shipped pipeline says, through the service's own code.
- `gunicorn_workers`, `memory_kib`: the process tree of a LiveServer, from /proc.
- `PID_IN_ACCESS_LOG`, `post_until_both_workers_answer`: requests until each of two
  workers has answered one, told apart by their pids in the access log.
- `ThrowawayPostgres`: a PostgreSQL server of the test's own, in a temporary folder, on a
  free port of 127.0.0.1, that a test may stop and start at will.
"""

import asyncio
import atexit
import json
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import psycopg2
import requests
from conftest import TITANIC, free_port, probabilities, same_probability
from live_server import child_pids
from playhouse.db_url import connect
from test_openapi import check_against_spec  # noqa: F401 (each model: its own document)

from model_service import artifacts, parsing

# ---------------------------------------------------------------------------------------
# A deployment open on the internet: the load, fault and hostile-input tests' servers
# ---------------------------------------------------------------------------------------

# API keys, a rate limit and load shedding switched on (issue 24): what those tests check
# must hold with them, as on a public URL. The limits are far above what a test sends, so
# every request is counted and none refused. (Off, they change nothing: the rest of the
# suite runs without them.)
PUBLIC_KEY = "grader-" + "4be1d07c" * 3
PUBLIC = {
    "API_KEYS": f"grader:{PUBLIC_KEY}",
    "RATE_LIMIT": "1000000/hour",
    "MAX_QUEUED_PREDICTIONS": "512",
}
KEYED = {"Authorization": f"Bearer {PUBLIC_KEY}"}


def public(**env):
    """PUBLIC's settings, and the test's own."""
    return {**PUBLIC, **env}


def assert_keys_are_required(server):
    """The server runs with PUBLIC's keys: a request without one is refused."""
    response = requests.post(f"{server.url}/predict", json={"id": 1}, timeout=10)
    assert response.status_code == 401, response.text


# ---------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------


def random_observations(count, seed):
    """Varied observations a client could send: missing values, unknown cabins, NaN."""
    rng = random.Random(seed)
    observations = []
    for _ in range(count):
        observations.append(
            {
                "Pclass": rng.choice([1, 2, 3]),
                "Sex": rng.choice(["male", "female", None]),
                "Age": rng.choice([None, round(rng.uniform(0.4, 80), 1)]),
                "SibSp": rng.randint(0, 8),
                "Parch": rng.randint(0, 6),
                "Fare": rng.choice([None, round(rng.uniform(0, 512), 4)]),
                "Cabin": rng.choice([None, "", f"{rng.choice('ABCDEFGTZ')}{rng.randint(1, 150)}"]),
                "Embarked": rng.choice(["S", "C", "Q", None]),
            }
        )
    return observations


def predict_bodies(ids, observations):
    """The JSON text of one /predict request per (id, observation)."""
    return [
        json.dumps({"id": observation_id, "observation": observation})
        for observation_id, observation in zip(ids, observations, strict=True)
    ]


@dataclass
class Outcome:
    """What one request got: a status and a JSON body, or the exception it raised."""

    index: int
    started: float  # time.monotonic()
    finished: float
    status: int | None = None  # None: no HTTP answer (connection error, timeout)
    body: object = None  # the parsed JSON, or None when the body is not JSON
    text: str = ""
    content_type: str = ""
    error: str = ""
    response: object = None  # the requests.Response, to validate against the OpenAPI document

    @property
    def seconds(self):
        return self.finished - self.started


@dataclass
class Sent:
    """All outcomes of send_all, in the order of the requests given."""

    outcomes: list = field(default_factory=list)
    skipped: int = 0  # requests not sent because the deadline had passed

    def count(self, predicate):
        return sum(1 for outcome in self.outcomes if predicate(outcome))

    def statuses(self):
        counts = {}
        for outcome in self.outcomes:
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
        return counts


def send_all(
    requests_to_send,
    clients=16,
    deadline_seconds=120.0,
    timeout=(3, 30),
    before=None,
    until=None,
    headers=KEYED,
):
    """Send (method, url, body) requests from `clients` threads, each with its own session.

    Bounded in count (the list) and time (deadline_seconds: what is not sent by then is
    skipped; so is what is not sent once `until()` returns True). `before(index)` runs in
    the client thread before request `index` is sent, e.g. to wait at a barrier. Every
    request carries `headers`: PUBLIC's key, which a server without keys ignores.
    Exceptions are recorded in the outcome, never raised.
    """
    local = threading.local()
    deadline = time.monotonic() + deadline_seconds
    sessions = []
    lock = threading.Lock()

    def session():
        if not hasattr(local, "session"):
            local.session = requests.Session()
            local.session.headers.update(headers)
            with lock:
                sessions.append(local.session)
        return local.session

    def send(index):
        method, url, body = requests_to_send[index]
        if time.monotonic() > deadline or (until is not None and until()):
            return None
        started = time.monotonic()
        outcome = Outcome(index, started, started)
        try:
            if before is not None:
                before(index)
                outcome.started = time.monotonic()
            response = session().request(method, url, data=body, timeout=timeout)
            outcome.status = response.status_code
            outcome.response = response
            outcome.text = response.text
            outcome.content_type = response.headers.get("Content-Type", "")
            try:
                outcome.body = response.json()
            except ValueError:
                outcome.body = None
        except Exception as error:  # a connection error, a timeout, a broken barrier
            outcome.error = f"{type(error).__name__}: {error}"
        outcome.finished = time.monotonic()
        return outcome

    result = Sent()
    try:
        with ThreadPoolExecutor(clients) as pool:
            for outcome in pool.map(send, range(len(requests_to_send))):
                if outcome is None:
                    result.skipped += 1
                else:
                    result.outcomes.append(outcome)
    finally:
        for each in sessions:
            each.close()
    return result


# gunicorn's access lines, each after the pid of the worker that answered ("<1234> ..."):
# which workers served a route. GUNICORN_CMD_ARGS adds to gunicorn.conf.py's settings.
PID_IN_ACCESS_LOG = {
    "GUNICORN_CMD_ARGS": '--access-logformat \'%(p)s %(h)s %(t)s "%(r)s" %(s)s %(b)s "%(a)s"\''
}


def workers_that_answered(server, method_and_path):
    """The pids of the workers whose access lines hold a request such as "POST /predict"."""
    line = rf'^<(\d+)> .*"{re.escape(method_and_path)} HTTP'
    return {int(pid) for pid in re.findall(line, server.output(), re.M)}


def post_until_both_workers_answer(server, path, bodies):
    """POST bodies to path, each on a connection of its own (the two workers take turns
    accepting them, unevenly), until both workers have answered one; the responses.

    Two pids counted, not gunicorn's children: the master forks the second worker up to
    0.1 s after the first, which may have answered /health already."""
    responses = []
    for sent in bodies:
        responses.append(requests.post(f"{server.url}{path}", json=sent, timeout=30))
        answered = workers_that_answered(server, f"POST {path}")
        if len(answered) == 2:
            assert answered == set(gunicorn_workers(server))
            return responses
    raise AssertionError(f"one worker answered all {len(responses)}:\n{server.output()[-3000:]}")


def post_quickly(url, bodies, connections=32, timeout=30.0):
    """POST every body to url over `connections` kept-alive connections at once.

    Returns the HTTP status of each request, in order (None: no answer). A lean client for
    tests that need many requests rather than a record of each (send_all): asyncio streams
    and HTTP/1.1 written by hand cost a small share of what `requests` costs per request,
    so the server, not the client, sets the pace. A connection the server closes (gunicorn
    closes some on purpose, see gunicorn.conf.py) is opened again.
    """
    target = urlsplit(url)
    head = (
        f"POST {target.path or '/'} HTTP/1.1\r\nHost: {target.netloc}\r\n"
        "Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
    statuses = [None] * len(bodies)
    pending = iter(range(len(bodies)))

    async def one_connection():
        reader = writer = None
        for index in pending:  # shared by all connections: each takes the next request
            body = bodies[index].encode()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(target.hostname, target.port)
                writer.write(head.format(length=len(body)).encode() + body)
                status, keep_alive = await asyncio.wait_for(read_response(reader), timeout)
                statuses[index] = status
            except (OSError, asyncio.IncompleteReadError, TimeoutError):
                keep_alive = False  # recorded as None: no answer
            if not keep_alive and writer is not None:
                writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    async def read_response(reader):
        lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
        await reader.readexactly(int(headers["content-length"]))
        return int(lines[0].split()[1]), headers.get("connection") != "close"

    async def all_connections():
        await asyncio.gather(*(one_connection() for _ in range(connections)))

    asyncio.run(all_connections())
    return statuses


# ---------------------------------------------------------------------------------------
# The table and the model
# ---------------------------------------------------------------------------------------


def stored_rows(database_url):
    """{observation_id: (proba, observation text)} read straight from the table."""
    database = connect(database_url)
    with database:
        cursor = database.execute_sql("SELECT observation_id, proba, observation FROM prediction")
        return {int(row[0]): (float(row[1]), row[2]) for row in cursor.fetchall()}


_model = None


def shipped_model():
    """The tutorial's model (examples/titanic), loaded by the service's own loader (once)."""
    global _model
    if _model is None:
        _model = artifacts.load_model(TITANIC)
    return _model


def pipeline_probabilities(observations):
    """P(class 1) for each observation, through the service's validate + predict code."""
    model = shipped_model()
    rows = [parsing.validate_observation(observation, model) for observation in observations]
    return probabilities(rows, model)


def close_enough(a, b):
    """A probability from the server (another process, scoring other batches) and the one
    computed here: the same up to the last digits (conftest.same_probability)."""
    return same_probability(a, b)


# ---------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------


def gunicorn_workers(server):
    """The worker pids of a LiveServer (`python -m gunicorn` is the master itself)."""
    return child_pids(server.process.pid)


def wait_for_workers(server, count, seconds=30, exclude=()):
    """Wait until the master has `count` workers none of which is in `exclude`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        workers = gunicorn_workers(server)
        if len(workers) == count and not set(workers) & set(exclude):
            return workers
        time.sleep(0.05)
    raise AssertionError(
        f"gunicorn has workers {gunicorn_workers(server)}, not {count} new ones, "
        f"after {seconds} s:\n{server.output()[-3000:]}"
    )


def process_exists(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's
    return True


def memory_kib(pid, field_name="Pss"):
    """Pss (shared pages split among the processes that map them) or Rss, in KiB."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(f"{field_name}:"):
            return int(line.split()[1])
    raise AssertionError(f"/proc/{pid}/smaps_rollup has no {field_name}")


def server_memory_kib(server):
    """{"pss", "anonymous", "rss", "processes"}, summed over the master and its workers.

    "anonymous" is the PSS of the heap and the other pages no file backs: only the server's
    own processes share those (by forking), so it does not depend on what else runs. The
    rest of the PSS, the pages of files such as libpython and numpy's libraries, is split
    with every process on the machine that maps the same files: it drops while other
    servers or tests run (by ~10 MiB here, with tests in parallel) and rises when they stop.
    """
    pids = [server.process.pid, *gunicorn_workers(server)]
    return {
        "pss": sum(memory_kib(pid, "Pss") for pid in pids),
        "anonymous": sum(
            memory_kib(pid, "Pss_Anon") + memory_kib(pid, "Pss_Shmem") for pid in pids
        ),
        "rss": sum(memory_kib(pid, "Rss") for pid in pids),
        "processes": len(pids),
    }


# ---------------------------------------------------------------------------------------
# A PostgreSQL server of the test's own
# ---------------------------------------------------------------------------------------

POSTGRES_BIN = Path(os.environ.get("POSTGRES_BIN", "/usr/lib/postgresql/15/bin"))


class ThrowawayPostgres:
    """initdb into a temporary folder and serve it on a free port of 127.0.0.1.

    Connections over TCP need a password (scram-sha-256): `url` holds the role `app` and
    its random password, so that tests can check that it never leaks. The superuser
    `postgres` connects through the Unix socket in the folder without one (`admin_sql`).
    As root, the server runs as the `postgres` OS user (postgres refuses to run as root).
    Use it as a context manager: the server is stopped and the folder removed on exit,
    and at the latest when the test process exits. Servers left behind by a test process
    that was killed (by a timeout, say) are stopped by the next one that starts.
    """

    PREFIX = "throwaway-postgres-"
    OWNER = "owner.pid"  # the pid of the test process, to find servers it left behind

    def __init__(self):
        self.folder = Path(tempfile.mkdtemp(prefix=self.PREFIX))
        (self.folder / self.OWNER).write_text(str(os.getpid()))
        self.data = self.folder / "data"
        self.logfile = self.folder / "postgres.log"
        self.port = free_port()
        self.password = "pw" + secrets.token_hex(12)
        self.url = f"postgresql://app:{self.password}@127.0.0.1:{self.port}/app"
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            shutil.chown(self.folder, "postgres", "postgres")
        self.folder.chmod(0o700)

    def run(self, *command, timeout=60):
        if self.as_postgres:
            command = ("runuser", "-u", "postgres", "--", *command)
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=True)

    @classmethod
    def stop_orphans(cls):
        """Stop and remove the servers of test processes that no longer exist."""
        for folder in Path(tempfile.gettempdir()).glob(cls.PREFIX + "*"):
            try:
                owner = int((folder / cls.OWNER).read_text())
            except (OSError, ValueError):
                continue
            if not process_exists(owner):
                orphan = cls.__new__(cls)
                orphan.folder, orphan.data = folder, folder / "data"
                orphan.as_postgres = os.geteuid() == 0
                orphan.close()

    def __enter__(self):
        self.stop_orphans()
        atexit.register(self.close)
        try:
            self.run(
                str(POSTGRES_BIN / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-sync",
                "-E",
                "UTF8",
            )
            self.start()
            self.admin_sql(
                f"CREATE ROLE app LOGIN PASSWORD '{self.password}'",
                "CREATE DATABASE app OWNER app",
            )
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_exc):
        self.close()

    def admin_sql(self, *statements, database="postgres"):
        """Run statements as the superuser, through the Unix socket, outside a transaction."""
        connection = psycopg2.connect(
            host=str(self.folder), port=self.port, user="postgres", dbname=database
        )
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                for statement in statements:
                    cursor.execute(statement)
                return cursor.fetchall() if cursor.description else None
        finally:
            connection.close()

    def start(self):
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self.folder} -c fsync=off "
            "-c max_connections=100"
        )
        self.run(
            str(POSTGRES_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.logfile),
            "-o",
            options,
            "-w",
            "-t",
            "30",
            "start",
        )

    def stop(self, mode="fast"):
        self.run(str(POSTGRES_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def pids(self):
        """The postmaster and every process it started (backends, checkpointer...)."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        return [postmaster, *child_pids(postmaster)]

    def is_running(self):
        return (self.data / "postmaster.pid").exists()

    def close(self):
        atexit.unregister(self.close)
        try:
            if self.is_running():
                try:
                    for pid in self.pids():  # a test may have frozen it with SIGSTOP
                        os.kill(pid, signal.SIGCONT)
                    self.stop("immediate")
                except (subprocess.SubprocessError, OSError, ValueError):
                    pid = int((self.data / "postmaster.pid").read_text().split()[0])
                    os.kill(pid, signal.SIGKILL)
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def log(self):
        try:
            return self.logfile.read_text(errors="replace")
        except OSError:
            return ""
