"""Which stored rows /stats reads, and how: aggregated in SQL, or streamed in small chunks.

    window = Window(current_store(), since, until)   # every version; replace(version=...)
    last_id = window.in_transaction(window.last_id)
    versions = window.in_transaction(partial(window.versions, counted))  # rollups.py's
    for rows in window.chunks(last_id, window.table.observation): ...

Rows are only ever added: every query of one /stats is bounded by the last id seen first,
so that the metrics and the groups describe the same rows. A chunk of
CHUNK_ROWS rows at a time bounds the memory, and lets the other requests of a gevent
worker run between two chunks (let_others_run).
"""

import json
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial

import gevent
from gevent import monkey
from peewee import SqliteDatabase, fn

from model_service.database import unproxied

CHUNK_ROWS = 2000  # observations parsed at a time: bounds memory, and lets others run
UNKNOWN_VERSION = "unknown"  # how /stats names the rows stored with no model_version


@dataclass(frozen=True)
class Window:
    """The stored rows with since <= created_at < until, of one model version (or any),
    and at most the id read first.

    Rows are only ever added, so bounding every query by the last id seen by the first
    one makes the counts, the metrics and the drift describe the same rows.
    """

    store: object  # the Store (store.py): its Prediction table, and its transactions
    since: datetime | None
    until: datetime | None
    version: str | None = None  # None: every version; UNKNOWN_VERSION: model_version NULL
    shadowed_by: str | None = None  # a challenger's version: only the rows it scored too
    api_key_name: str | None = None  # API_KEYS: only the rows written with this key

    @property
    def table(self):
        return self.store.table

    def in_transaction(self, work):
        """work() in a transaction; first, the worker's other requests that are ready run
        (/stats is a few steps of tens of milliseconds each: predictions go in between)."""
        let_others_run()
        return self.store.in_transaction(work)

    def where(self, query, last_id):
        table = self.table
        query = query.where(table.id <= last_id) if last_id is not None else query
        if self.since is not None:
            query = query.where(table.created_at >= self.since)
        if self.until is not None:
            query = query.where(table.created_at < self.until)
        if self.version == UNKNOWN_VERSION:
            query = query.where(table.model_version.is_null())
        elif self.version is not None:
            query = query.where(table.model_version == self.version)
        if self.shadowed_by is not None:
            query = query.where(table.challenger_version == self.shadowed_by)
        if self.api_key_name is not None:
            query = query.where(table.api_key_name == self.api_key_name)
        return query

    def last_id(self):
        """The id of the last row stored (the primary key's index): every later query of one
        /stats reads no row stored after the first."""
        return self.table.select(fn.MAX(self.table.id)).scalar()

    def versions(self, counted):
        """[{version, predictions, labelled, first_stored, last_stored}] of the window, the
        most recently used first: the rows and the labelled rows from the rollups' counts
        (counted: {(version, cell): n}); the times from indexes (rollups.INDEXES)."""
        found = []
        for version in sorted({version for version, cell in counted if cell == "rows"}):
            rows = counted[(version, "rows")]
            if not rows:
                continue
            name = version or UNKNOWN_VERSION
            of_version = replace(self, version=name)
            table = self.table
            # Apart: SQLite reads a MIN or a MAX alone from the index, both at once by a scan.
            first = of_version.where(table.select(fn.MIN(table.created_at)), None).scalar()
            last = of_version.where(table.select(fn.MAX(table.created_at)), None).scalar()
            latest = table.select(table.id).order_by(table.created_at.desc(), table.id.desc())
            found.append(
                {
                    "latest": of_version.where(latest.limit(1), None).scalar(),
                    "version": name,
                    "predictions": rows,
                    "labelled": counted.get((version, "L:n"), 0),
                    "first_stored": iso_or_none(as_datetime(first)),
                    "last_stored": iso_or_none(as_datetime(last)),
                }
            )
        # The version whose latest row was stored last comes first (that row's id).
        return [
            {key: value for key, value in version.items() if key != "latest"}
            for version in sorted(found, key=lambda v: v["latest"], reverse=True)
        ]

    def labelled(self, last_id, *columns):
        """(true_value, *columns) of the labelled rows, as the driver's tuples."""
        if last_id is None:
            return []
        table = self.table
        query = table.select(table.true_value, *columns).where(table.true_value.is_null(False))
        return plain_rows(self.where(query, last_id))

    def chunks(self, last_id, *columns, pause=None):
        """(id, *columns) of the rows, CHUNK_ROWS at a time, each chunk in its own query;
        pause() between two (default let_others_run)."""
        pause = pause or let_others_run
        after = None
        while last_id is not None:
            table = self.table
            query = table.select(table.id, *columns).order_by(table.id).limit(CHUNK_ROWS)
            if after is not None:
                query = query.where(table.id > after)
            rows = self.in_transaction(partial(plain_rows, self.where(query, last_id)))
            if not rows:
                return
            yield rows
            after = rows[-1][0]
            pause()


def plain_rows(query):
    """The rows of a query as the driver's tuples, without building peewee's row objects."""
    return query.model._meta.database.execute(query).fetchall()


def blocking_rows(query):
    """plain_rows(query), read by a thread of gevent's native pool when the worker is a
    gevent one on SQLite.

    SQLite reads in the worker's own thread: a sum over a hundred thousand rows would hold
    every other request of the worker for its whole length. sqlite3 lets go of the GIL while
    SQLite steps, so from a native thread the worker's other requests run meanwhile. The
    query runs on the request's own connection (the same transaction), which waits for
    it. PostgreSQL's reads already let others run (database.wait_for_postgres).
    """
    database = unproxied(query.model._meta.database)
    if not (isinstance(database, SqliteDatabase) and monkey.is_module_patched("threading")):
        return plain_rows(query)
    sql, parameters = query.sql()
    connection = database.connection()  # the greenlet's, opened (or in its transaction)

    def read():
        cursor = connection.cursor()
        try:
            return cursor.execute(sql, parameters).fetchall()
        finally:
            cursor.close()

    return gevent.get_hub().threadpool.apply(read)


def let_others_run():
    """In a gevent worker, let every other request that is ready run before going on.

    A gevent worker runs one greenlet at a time: without this, the predictions that arrive
    while /stats parses 100,000 rows would wait for all of it, not for one chunk.
    """
    if monkey.is_module_patched("threading"):
        gevent.idle()


def parsed(text):
    """A stored JSON value, or None when there is none or it cannot be read."""
    try:
        return json.loads(text)
    except (TypeError, ValueError, RecursionError):
        return None


def iso_or_none(moment):
    return None if moment is None else moment.isoformat() + "Z"


def as_datetime(value):
    """A MIN or MAX of created_at: SQLite answers the stored text, PostgreSQL a datetime."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)
