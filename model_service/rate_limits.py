"""Rate limits and load shedding: what the service refuses at once, rather than fall behind.

    rate_limits.init_app(app)   # RATE_LIMIT, TRUSTED_PROXIES, MAX_QUEUED_PREDICTIONS

RATE_LIMIT ("600/minute"; unset: off): each client may send that many requests to the
routes that score and label (/predict, /update, /predict-batch, or the paths of the brief's
api.toml) per period; past it, they get 429 with Retry-After. A client is the name of
its API key, when keys are on and the request carries a valid one (api_keys.request_key:
this hook runs before api_keys.py's, so that requests refused with 401 count too), else its
address: the connection's, or with TRUSTED_PROXIES=n the one the n-th proxy in front wrote
in X-Forwarded-For (counted from the right: what a client writes there
itself comes first, and is never believed). A client's window opens at its first request
and lasts the period; the next request after it opens a new one.

The counts are exact across the workers of one server: they live in one SQLite file that
every worker updates in one statement (SQLite serialises the writes), in a folder made by
the process that builds the app: gunicorn's master, which preloads it (gunicorn.conf.py),
so every worker it forks shares the file. Each replica counts by itself: N replicas admit
up to N times RATE_LIMIT from one client.

MAX_QUEUED_PREDICTIONS (unset: off): when that many /predict requests already wait for the
micro-batcher (batching.py), /predict and /predict-batch answer 503 with Retry-After at
once, rather than let the request wait into a timeout. Both refusals are counted in
/metrics (requests_refused_total{reason="rate_limit"|"overloaded"}).
"""

import atexit
import math
import os
import re
import shutil
import sqlite3
import tempfile
import threading
import time
from pathlib import Path

from flask import current_app, jsonify, request

from model_service.api_keys import request_key
from model_service.batching import BatchOverloaded
from model_service.errors import StartupError
from model_service.signals import signals

# reason="rate_limit" or "overloaded": a request refused at once (monitoring counts them).
request_refused = signals.signal("request-refused")

# The endpoints that score or label: app.py's predict and update (add_route names them after
# their views, whatever path api.toml gives them), and predict_batch.py's.
LIMITED = ("predict", "update", "predict_batch")
SHED = ("predict", "predict_batch")  # the ones that score, refused while the queue is full
PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
ABBREVIATIONS = {"s": "second", "m": "minute", "h": "hour", "d": "day"}
RATE = re.compile(r"(\d+)/([a-z]+)")


def init_app(app):
    """Check the settings, then refuse what is over the limit, or what the queue cannot take."""
    if app.config["RATE_LIMIT"]:
        limit, period = parse_rate_limit(app.config["RATE_LIMIT"])
        if app.config["TRUSTED_PROXIES"] < 0:
            raise StartupError(
                f"TRUSTED_PROXIES={app.config['TRUSTED_PROXIES']} must be 0 or more."
            )
        app.extensions["rate_limit"] = WindowCounter(private_folder(), limit, period)
        app.before_request(limit_rate)  # before api_keys.py's 401: wrong keys are counted too
    most_waiting = app.config["MAX_QUEUED_PREDICTIONS"]
    if most_waiting is not None:
        if most_waiting < 1:
            raise StartupError(f"MAX_QUEUED_PREDICTIONS={most_waiting} must be at least 1.")
        app.extensions["batcher"].max_waiting = most_waiting  # exact, as /predict joins the queue
        app.before_request(shed_load)  # and before the body is read: a refusal costs nothing
    app.register_error_handler(BatchOverloaded, overloaded)


def parse_rate_limit(text):
    """'600/minute' (or 600/m, 10/second, 5000/hour, 100000/day) -> (600, 60 seconds)."""
    match = RATE.fullmatch(text.strip().lower().replace(" ", ""))
    unit = match and ABBREVIATIONS.get(match[2], match[2])
    if not match or unit not in PERIODS or int(match[1]) < 1:
        raise StartupError(
            f"RATE_LIMIT={text!r} must be a number of requests per second, minute, hour or "
            "day, such as 600/minute (or 600/m)."
        )
    return int(match[1]), PERIODS[unit]


def private_folder():
    """A new temporary folder, removed at exit by the process that made it (not its forks)."""
    folder = tempfile.mkdtemp(prefix="rate-limits-")
    atexit.register(remove_folder, folder, os.getpid())
    return Path(folder)


def remove_folder(folder, owner_pid):
    if os.getpid() == owner_pid:
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------------------------------
# The requests refused
# ---------------------------------------------------------------------------------------


def limit_rate():
    if request.endpoint not in LIMITED or request.method == "OPTIONS":  # preflights are free
        return None
    counter = current_app.extensions["rate_limit"]
    wait = counter.hit(client_key())
    if not wait:
        return None
    request_refused.send(current_app._get_current_object(), reason="rate_limit")
    limit = current_app.config["RATE_LIMIT"]
    return refusal(429, f"Rate limit of {limit} reached; retry in {wait} s", wait)


def shed_load():
    scores = request.endpoint in SHED and request.method != "OPTIONS"
    if scores and current_app.extensions["batcher"].overloaded():
        raise BatchOverloaded("MAX_QUEUED_PREDICTIONS requests already wait")


def overloaded(_error):
    request_refused.send(current_app._get_current_object(), reason="overloaded")
    return refusal(503, "The service is busy with the requests before this one; retry it", 1)


def refusal(status, message, retry_after):
    response = jsonify(error=message)
    response.status_code = status
    response.headers["Retry-After"] = str(retry_after)
    return response


def client_key():
    """The name of the request's API key when it carries a valid one, else its address."""
    key = request_key()
    if key is not None:
        return f"key {key.name}"
    return f"address {client_address(current_app.config['TRUSTED_PROXIES'])}"


def client_address(trusted_proxies):
    """The connection's address; behind n trusted proxies, the one the n-th wrote for it.

    Each proxy appends the address it was reached from to X-Forwarded-For: the last n
    entries are the proxies' own words, anything before them the client's (forgeable).
    """
    if trusted_proxies:
        header = request.headers.get("X-Forwarded-For", "")
        hops = [hop.strip() for hop in header.split(",") if hop.strip()]
        if len(hops) >= trusted_proxies:
            return hops[-trusted_proxies]
    return request.remote_addr or "unknown"


# ---------------------------------------------------------------------------------------
# The counts, shared by the processes of one server
# ---------------------------------------------------------------------------------------


class WindowCounter:
    """At most `limit` hits per key in each window of `period` seconds, opened by its first.

    One SQLite file in `folder`; each hit is one atomic statement, so processes and threads
    that share the file never admit one request too many. Each process (a forked worker)
    opens a connection of its own, at its first hit.
    """

    PRUNE_EVERY = 1000  # hits of one process between the removals of ended windows

    def __init__(self, folder, limit, period):
        self.path, self.limit, self.period = Path(folder) / "windows.sqlite", limit, period
        self._lock = threading.Lock()  # one statement at a time on a process's connection
        self._connection, self._pid, self._hits = None, None, 0
        with sqlite3.connect(self.path) as connection:
            # The write-ahead log: a hit appends a page, readers never wait for writers.
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute(
                "CREATE TABLE IF NOT EXISTS windows "
                "(key TEXT PRIMARY KEY, started REAL NOT NULL, hits INTEGER NOT NULL)"
            )
        connection.close()

    def hit(self, key, now=None):
        """Count one request of `key`: 0 if admitted, else the whole seconds to wait (>= 1)."""
        now = time.time() if now is None else now
        with self._lock:
            connection = self._connect()
            # A new window when the last one ended; else one more hit in it (refused too:
            # what matters is only whether the count passed the limit).
            [(started, hits)] = connection.execute(
                "INSERT INTO windows (key, started, hits) VALUES (?1, ?2, 1) "
                "ON CONFLICT (key) DO UPDATE SET "
                "started = CASE WHEN ?2 >= started + ?3 THEN ?2 ELSE started END, "
                "hits = CASE WHEN ?2 >= started + ?3 THEN 1 ELSE hits + 1 END "
                "RETURNING started, hits",
                (key, now, self.period),
            ).fetchall()  # fetched to the end: the statement, and its lock, are done
            self._hits += 1
            if self._hits % self.PRUNE_EVERY == 0:
                connection.execute("DELETE FROM windows WHERE started < ?", (now - self.period,))
        if hits <= self.limit:
            return 0
        return max(1, math.ceil(started + self.period - now))

    def _connect(self):
        if self._pid != os.getpid():  # a new process: the parent's connection is not ours
            # The writes are serialised by SQLite's lock; a few microseconds each.
            self._connection = sqlite3.connect(
                self.path, timeout=10, isolation_level=None, check_same_thread=False
            )
            # Counts that die with the server: no need to wait for the disk.
            self._connection.execute("PRAGMA synchronous=OFF")
            self._pid = os.getpid()
        return self._connection
