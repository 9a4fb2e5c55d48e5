"""A database that does not fill up unseen: the store's size, and DATABASE_QUOTA_MB.

    quota.init_app(app)     # store.quota (without DATABASE_QUOTA_MB: measured, never full)
    store.quota.full()      # whether a new row may no longer be written (store.py asks)
    store.quota.report()    # /health's "store": rows, bytes, quota_bytes, used_share, state

The size is what the database says of itself: SQLite, its file (page_count * page_size) and
its write-ahead log; PostgreSQL, pg_total_relation_size (indexes and TOAST included) of
every table of the schema: prediction and the rollups. A measure costs a query, so each
process measures at most every REFRESH_SECONDS: /predict never pays one per request. The
rows: PostgreSQL's estimate (pg_class.reltuples, which autovacuum keeps), or else the largest
id (ids only grow), never a count of every row.

With DATABASE_QUOTA_MB (MiB of 1,048,576 bytes): from 80 % (WARNING_SHARE) the service logs
a warning and /health's store says "warning"; at 100 % api.toml's [store] when_full decides
what a new prediction gets: "refuse", a 507; "answer", its answer, not stored, counted by
predictions_not_stored_total. A retry of a stored id and /update work as ever: only an
insert is refused.
"""

import logging
import math
import os
import time

import peewee

from model_service.database import DATABASE_ERRORS, unproxied
from model_service.errors import ApiError, StartupError
from model_service.signals import signals

REFRESH_SECONDS = 5.0
WARNING_SHARE = 0.8
MIB = 1024 * 1024

log = logging.getLogger("app")
store_measured = signals.signal("store-measured")  # size=, rows=, quota_bytes=
predictions_not_stored = signals.signal("predictions-not-stored")  # count=


def init_app(app):
    """Give the store its Quota: DATABASE_QUOTA_MB and api.toml's [store] when_full."""
    megabytes = app.config["DATABASE_QUOTA_MB"]
    if megabytes is not None and not (math.isfinite(megabytes) and megabytes > 0):
        raise StartupError(
            f"DATABASE_QUOTA_MB={megabytes} must be a positive number of megabytes (MiB), "
            "such as 400 for a volume of 500 MB."
        )
    store = app.extensions["store"]
    quota_bytes = None if megabytes is None else int(megabytes * MIB)
    store.quota = Quota(store, quota_bytes, app.config["MODEL"].contract.when_full)


class Quota:
    """The store's size, measured now and then, against DATABASE_QUOTA_MB (None: no quota)."""

    def __init__(self, store, quota_bytes=None, when_full="refuse"):
        self.store, self.quota_bytes, self.when_full = store, quota_bytes, when_full
        self.bytes = self.rows = None
        self.bytes_at = self.rows_at = -math.inf  # time.monotonic() of the last measures
        self.logged_state = "ok"

    def full(self):
        """Whether a new row must not be written: the store has reached its quota."""
        if self.quota_bytes is None:
            return False
        self.measure_bytes()
        return self.state() == "full"

    def unstored(self, output):
        """What a new prediction gets when the store is full: [store] when_full says."""
        if self.when_full == "answer":
            predictions_not_stored.send(self, count=1)
            return output
        return ApiError(
            507,
            f"The database is full (DATABASE_QUOTA_MB={self.quota_bytes / MIB:g}): new "
            "predictions are not stored, so they are refused; labels and retries of stored "
            "ids still work. Raise the quota, or free space",
        )

    def state(self):
        if self.quota_bytes is None or self.bytes is None:
            return "ok"
        if self.bytes >= self.quota_bytes:
            return "full"
        return "warning" if self.bytes >= WARNING_SHARE * self.quota_bytes else "ok"

    def report(self, measure=True):
        """/health's and /metrics' figures; measure=False (the database is down): the last."""
        if measure:
            try:
                self.measure_bytes()
                self.measure_rows()
            except DATABASE_ERRORS:
                pass  # /health says the database is unavailable; the figures are the last
        measured = self.quota_bytes is not None and self.bytes is not None
        share = self.bytes / self.quota_bytes if measured else None
        return {
            "rows": self.rows,
            "bytes": self.bytes,
            "quota_bytes": self.quota_bytes,
            "used_share": None if share is None else round(share, 4),
            "state": self.state(),
        }

    def measure_bytes(self):
        if time.monotonic() - self.bytes_at < REFRESH_SECONDS:
            return
        self.bytes = self.store.in_transaction(lambda: store_bytes(self.store.database))
        self.bytes_at = time.monotonic()
        store_measured.send(self, size=self.bytes, rows=self.rows, quota_bytes=self.quota_bytes)
        self.log_state()

    def measure_rows(self):
        if time.monotonic() - self.rows_at < REFRESH_SECONDS:
            return
        self.rows = self.store.in_transaction(lambda: store_rows(self.store))
        self.rows_at = time.monotonic()
        store_measured.send(self, size=self.bytes, rows=self.rows, quota_bytes=self.quota_bytes)

    def log_state(self):
        """A warning whenever the state becomes "warning" or "full", in each process."""
        state = self.state()
        if state != self.logged_state and state != "ok":
            log.warning(
                "the database holds %d bytes, %.0f %% of DATABASE_QUOTA_MB (%d bytes): %s",
                self.bytes,
                100 * self.bytes / self.quota_bytes,
                self.quota_bytes,
                "full, new predictions are "
                + ("answered and not stored" if self.when_full == "answer" else "refused (507)")
                if state == "full"
                else "raise the quota, or free space, before it is full",
            )
        self.logged_state = state


def is_sqlite(database):
    return isinstance(unproxied(database), peewee.SqliteDatabase)  # pooled or not


def store_bytes(database):
    """The bytes the store takes: SQLite's file and WAL, or PostgreSQL's schema's tables."""
    if is_sqlite(database):
        pages = database.execute_sql("PRAGMA page_count").fetchone()[0]
        page_size = database.execute_sql("PRAGMA page_size").fetchone()[0]
        wal = f"{unproxied(database).database}-wal"
        return pages * page_size + (os.path.getsize(wal) if os.path.exists(wal) else 0)
    return int(
        database.execute_sql(
            "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'm') AND n.nspname = current_schema()"
        ).fetchone()[0]
    )


def store_rows(store):
    """The prediction table's rows: PostgreSQL's estimate, or else the largest id (ids only
    grow: a row deleted by hand still counts). Not COUNT(*): at ten million rows, SQLite
    takes a second to count them, and the worker serves nothing meanwhile."""
    database, table = store.database, store.table._meta.table_name
    if not is_sqlite(database):
        (estimate,) = database.execute_sql(
            "SELECT reltuples FROM pg_class WHERE oid = to_regclass(%s)", (table,)
        ).fetchone()
        if estimate is not None and estimate >= 0:  # -1: never analysed yet (a new table)
            return int(estimate)
    return database.execute_sql(f'SELECT MAX(id) FROM "{table}"').fetchone()[0] or 0
