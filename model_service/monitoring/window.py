"""Which stored rows /stats reads, and how: aggregated in SQL, or streamed in small chunks.

    window = Window(current_store(), since, until)   # every version; replace(version=...)
    versions, last_id = window.in_transaction(window.versions)
    for rows in window.chunks(last_id, window.table.observation): ...

Rows are only ever added: every query after the first is bounded by the last id the first
one saw, so that the counts, the metrics and the drift describe the same rows. A chunk of
CHUNK_ROWS rows at a time bounds the memory, and lets the other requests of a gevent
worker run between two chunks (let_others_run).
"""

import json
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from itertools import pairwise

import gevent
from gevent import monkey
from peewee import Case, fn

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

    @property
    def table(self):
        return self.store.table

    def in_transaction(self, work):
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
        return query

    def versions(self):
        """([{version, predictions, labelled, first_stored, last_stored}], the last id), in
        one GROUP BY: the most recently used version first."""
        table = self.table
        query = self.where(
            table.select(
                table.model_version,
                fn.COUNT(table.id),
                fn.COUNT(table.true_value),
                fn.MIN(table.created_at),
                fn.MAX(table.created_at),
                fn.MAX(table.id),
            ).group_by(table.model_version),
            None,
        )
        groups = sorted(query.tuples(), key=lambda group: group[-1], reverse=True)
        versions = [
            {
                "version": UNKNOWN_VERSION if version is None else version,
                "predictions": int(rows),
                "labelled": int(labelled),
                "first_stored": iso_or_none(first),
                "last_stored": iso_or_none(last),
            }
            for version, rows, labelled, first, last, _ in groups
        ]
        return versions, (groups[0][-1] if groups else None)

    def probability_bins(self, last_id):
        """Rows per bin [k/10, (k+1)/10) of the stored probability, in one query.

        SQL counts the rows below each bin's upper edge (proba * 10 < k, which is
        floor(proba * 10) < k); the bins are the differences. 1.0 falls in the last bin,
        and a row without a probability in none.
        """
        if last_id is None:
            return [0] * 10
        proba = self.table.proba
        below = [fn.SUM(Case(None, [(proba * 10 < k, 1)], 0)) for k in range(1, 10)]
        query = self.where(self.table.select(fn.COUNT(proba), *below), last_id)
        count, *cumulative = query.tuples().get()
        cumulative = [0, *(int(c or 0) for c in cumulative), int(count)]
        return [high - low for low, high in pairwise(cumulative)]

    def labelled(self, last_id, *columns):
        """(true_value, *columns) of the labelled rows, as the driver's tuples."""
        if last_id is None:
            return []
        table = self.table
        query = table.select(table.true_value, *columns).where(table.true_value.is_null(False))
        return plain_rows(self.where(query, last_id))

    def chunks(self, last_id, *columns):
        """(id, *columns) of the rows, CHUNK_ROWS at a time, each chunk in its own query."""
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
            let_others_run()


def plain_rows(query):
    """The rows of a query as the driver's tuples, without building peewee's row objects."""
    return query.model._meta.database.execute(query).fetchall()


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
