"""Connecting to DATABASE_URL, and running work in a transaction that survives a restart.

    database.initialize(open_database(url, timeout))  # app.py's DatabaseProxy
    in_transaction(database, work)                   # work() in one transaction, retried once

SQLite (a file, locally) or PostgreSQL (Railway's), through playhouse.db_url, with pooled
connections and a bound on every wait.
"""

import select
import sqlite3
from contextlib import contextmanager
from functools import partial

import peewee
import psycopg2.extensions
from playhouse.db_url import connect
from playhouse.pool import MaxConnectionsExceeded

# How long a statement may take at start-up: building an index or counting every row of a
# table of millions (migrations.py, monitoring/rollups.py) takes minutes, not a request's
# seconds. gunicorn loads the app once, before any request (preload_app).
START_UP_TIMEOUT = 900
_start_up = {"timeout": None}  # set by unhurried(), read by wait_for_postgres

# Errors that mean "the database cannot be reached or is too busy right now": 503.
DATABASE_ERRORS = (peewee.OperationalError, peewee.InterfaceError, MaxConnectionsExceeded)


def open_database(url, timeout):
    """Connect peewee to DATABASE_URL: sqlite:///file.db, postgres:// or postgresql://.

    Connections are pooled (kept open between requests): opening one costs more than the
    insert it is opened for. `timeout` bounds every wait for the database, in seconds.
    """
    scheme, rest = url.split("://", 1)
    if scheme not in ("sqlite", "postgres", "postgresql"):
        raise ValueError("only SQLite and PostgreSQL are supported")
    pool = {"max_connections": 32, "stale_timeout": 300, "timeout": timeout}
    if scheme == "sqlite":
        # WAL lets readers and a writer work at once; the busy timeout makes a writer wait
        # for the lock instead of failing with "database is locked".
        pragmas = {"journal_mode": "wal", "busy_timeout": int(timeout * 1000)}
        # A pooled connection may serve another thread later (never two at once).
        # RETURNING tells which rows an insert wrote (store.py); SQLite has it from 3.35.
        returning = sqlite3.sqlite_version_info >= (3, 35)
        return connect(
            f"sqlite+pool://{rest}",
            pragmas=pragmas,
            check_same_thread=False,
            returning_clause=returning,
            **pool,
        )
    psycopg2.extensions.set_wait_callback(partial(wait_for_postgres, timeout=timeout))
    return connect(f"{scheme}+pool://{rest}", connect_timeout=max(1, round(timeout)), **pool)


def wait_for_postgres(connection, timeout):
    """psycopg2 calls this whenever it waits for PostgreSQL (set in open_database).

    A server that is down refuses at once; one that hangs (frozen, or cut off by the
    network) would block the worker until gunicorn kills it. So give up after `timeout`
    (at start-up, inside unhurried(), after START_UP_TIMEOUT).
    """
    timeout = _start_up["timeout"] or timeout
    while True:
        state = connection.poll()
        if state == psycopg2.extensions.POLL_OK:
            return
        reading = state == psycopg2.extensions.POLL_READ
        socket = [connection.fileno()]
        readable, writable, _ = select.select(
            socket if reading else [], [] if reading else socket, [], timeout
        )
        if not (readable or writable):
            raise psycopg2.OperationalError(f"PostgreSQL did not answer within {timeout} s")


@contextmanager
def unhurried():
    """Start-up's work on the database: each wait for PostgreSQL may take START_UP_TIMEOUT
    seconds instead of DATABASE_TIMEOUT (SQLite's statements are not bounded anyway)."""
    _start_up["timeout"] = START_UP_TIMEOUT
    try:
        yield
    finally:
        _start_up["timeout"] = None


def unproxied(database):
    """The database behind app.py's DatabaseProxy (or the database itself)."""
    return getattr(database, "obj", database)


def in_transaction(database, work):
    """Run work() in one transaction and return its result.

    A pooled PostgreSQL connection dies when the server restarts, and the first query on
    it fails. So on a connection error the work runs once more on a fresh connection. That
    is safe because every write here is idempotent (insert-if-absent, set a value).
    """
    try:
        with database.atomic():
            return work()
    except DATABASE_ERRORS:
        discard_connections(database)
        with database.atomic():
            return work()


def discard_connections(database):
    """Close this thread's connection and the pool's idle ones: they may all be dead."""
    database.close_idle()
    if not database.is_closed():
        database.manual_close()
