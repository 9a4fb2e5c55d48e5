"""Counts and sums of the stored rows per hour and per day, kept as the rows are written:
what lets /stats count a window of millions of rows without reading them.

    rollups = Rollups(store, model, profile)   # monitoring.init_app
    rollups.upgrade()                           # at start-up: the tables, filled if new
    counted = rollups.count(window, last_id)    # /stats: {(version, cell): [n, ...]}

Three tables of the same columns, one row per (hour or day, model version, cell): `n` rows
stored then by that version fall in that cell, with the sums `s`, `q` of the labelled cells
and the lowest and highest score `lo`, `hi` of an AUC bin (quality_cells.py):

* prediction_rollup_hour (RollupHour): per hour; prediction_rollup_day (RollupDay): the
  same cells per day; prediction_rollup_auc (RollupAuc): the AUC bins, per day, and for
  the whole store (under the day EVER);
* the cells (a name each): `rows`, `unreadable` (an observation this model would refuse),
  `replaced` and `replaced:<field>` ([predict] invalid = "as_missing"); `d:<column>:<bin>`,
  the readable observations in each bin of the training profile (drift.py); a binary
  classifier's `p:<bin>` (the stored probability in tenths), a multiclass one's
  `c:<class index>` and `t:<bin>`; `L:n` (the labelled rows) and the labelled cells of
  quality_cells.py and group_cells.py (the declared groupings).

Like whylogs' profiles, cells merge by addition. A window is cut into its whole days (a SUM
over prediction_rollup_day: one row per day and cell), the whole hours of the days at its
ends (prediction_rollup_hour) and the parts of hours at its ends, counted from their rows (at
most two hours of them): the cost follows the days a window spans, not its rows. The
service counts the rows it writes in the transaction that writes them (store.py sends
rows_stored inside it, and marks them rolled_up), so the counts never disagree with the
rows; a label moves its row's labelled cells in the transaction of /update (row_labelled).
Rows written otherwise (by an earlier release, by hand) are counted by the next /stats
(catch_up). New tables, or tables made for another model, profile, groupings or release of
these cells (the `signature` kept in prediction_rollup_state), are counted again from every
row at start-up.
"""

import json
import logging
import time
from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta

from peewee import (
    SQL,
    BigIntegerField,
    DateTimeField,
    DoubleField,
    Model,
    PostgresqlDatabase,
    TextField,
    fn,
)

from model_service import migrations
from model_service.database import unproxied
from model_service.monitoring.drift import count_bins, observation_of, readable_observations
from model_service.monitoring.quality_cells import Sums, add_auc_bins, labelled_cells
from model_service.monitoring.reports import REPORTS, MulticlassReport
from model_service.monitoring.window import (
    CHUNK_ROWS,
    UNKNOWN_VERSION,
    as_datetime,
    blocking_rows,
    let_others_run,
    parsed,
    plain_rows,
)
from model_service.signals import row_labelled, rows_stored
from model_service.store import ROLLUPS_RELEASE

log = logging.getLogger("app")

# The release of the cells (store.ROLLUPS_RELEASE): a row counted into these tables is
# marked rolled_up = FORMAT; one marked otherwise is counted again, into these.
FORMAT = ROLLUPS_RELEASE
HOUR, DAY = timedelta(hours=1), timedelta(days=1)
# The "day" of prediction_rollup_auc whose cells are the sums of every day: the AUC bins of
# the whole store, read by /stats without a window (thousands of bins a day, over months).
EVER = datetime(1, 1, 1)
AUC_CELLS = ("A:", "AG\x1f")  # the AUC bins (quality_cells.py, group_cells.py): per day
VACUUM_AFTER_ROWS = 10_000  # a start-up that counted this many rows vacuums the tables
BACKFILL_ROWS = 5000  # rows read at a time when the table is filled from the stored rows
# The columns of a stored row the cells are counted from, in this order.
ROW_COLUMNS = (
    "created_at",
    "model_version",
    "observation",
    "proba",
    "prediction",
    "true_value",
    "replaced",
    "threshold",
    "positive_class",
)


class Rollup(Model):
    """The columns of the three tables of sums: one row per (hour or day, version, cell)."""

    hour = DateTimeField()  # the start of the hour (of the day: RollupDay, RollupAuc), UTC
    model_version = TextField()  # "" for rows stored without a version
    cell = TextField()
    n = BigIntegerField(default=0)
    s = DoubleField(null=True)  # sums of the labelled cells (quality_cells.py)
    q = DoubleField(null=True)
    lo = DoubleField(null=True)  # the lowest and highest score of an AUC bin
    hi = DoubleField(null=True)


# Each table's unique index is named after its class (peewee): not Rollup, whose
# rollup_model_version_hour_cell is the index of prediction_rollup, the table of an earlier
# release's sums. A replica of that release still serving while this one starts keeps
# writing there; nothing reads it.
class RollupHour(Rollup):
    """The cells of one hour: what the parts of days at the ends of a window read."""

    class Meta:
        table_name = "prediction_rollup_hour"
        indexes = ((("model_version", "hour", "cell"), True),)


class RollupDay(Rollup):
    """The same cells per day: a window of whole days reads one row per day and cell."""

    class Meta:
        table_name = "prediction_rollup_day"
        indexes = ((("model_version", "hour", "cell"), True),)


class RollupAuc(Rollup):
    """The AUC bins (quality_cells.py, group_cells.py), per day: thousands of cells a day,
    in a table of their own so that the other sums never read them."""

    class Meta:
        table_name = "prediction_rollup_auc"
        indexes = ((("model_version", "hour", "cell"), True),)


# The levels of the cells, and their tables: cells_of keys its sums (level, ...).
HOURLY, DAILY, AUC = "hour", "day", "auc"
TABLES = {HOURLY: RollupHour, DAILY: RollupDay, AUC: RollupAuc}


class RollupState(Model):
    name = TextField(primary_key=True)
    value = TextField()

    class Meta:
        table_name = "prediction_rollup_state"


def hour_of(moment):
    """The hour a stored time falls in (SQLite's driver answers created_at as text)."""
    return as_datetime(moment).replace(minute=0, second=0, microsecond=0)


def tenth(probability):
    """The bin of a probability in [0, 1]: 0 to 9, 1.0 in the last (as window.py's SQL)."""
    return min(int(probability * 10), 9)


class Rollups:
    """The counts of one service's table: written with the rows, read by /stats."""

    def __init__(self, store, model, profile, grouped=None):
        self.store, self.model, self.profile = store, model, profile
        self.grouped = grouped  # group_cells.GroupCells: the declared groupings' cells
        # api.toml's [store] drop and hash: features whose stored values are not those the
        # model scored (privacy.py), so they have no drift.
        self.unstored = sorted(set(model.columns) & store.stored_form.private)
        database = store.database
        self.tables = [*TABLES.values(), RollupState]
        for table in self.tables:
            table.bind(database)  # the store's DatabaseProxy: the same connection
        self.signature = json.dumps(
            {
                "format": FORMAT,
                "task": model.task.name,
                "classes": getattr(model.task, "classes", None),
                "columns": model.columns,
                "unstored": self.unstored,
                "profile": profile and {c: profile["columns"][c] for c in model.columns},
                "groupings": grouped and grouped.describe(),
            },
            sort_keys=True,
        )
        self.multiclass = MulticlassReport(model.task) if model.task.name == "multiclass" else None
        self.report = REPORTS[model.task.name](model.task)
        rows_stored.connect(self.on_rows_stored, sender=store)
        row_labelled.connect(self.on_row_labelled, sender=store)

    # --- counting rows --------------------------------------------------------------

    def cells_of(self, rows, labels_only=False):
        """Sums {(level, hour or day, version, cell): [n, s, q, lo, hi]} of rows, tuples of
        ROW_COLUMNS: each cell under its hour (HOURLY) and its day (DAILY), but the AUC
        cells A:..., under their day only (AUC)."""
        found = Sums()
        by_bucket = {}
        for row in rows:
            key = (hour_of(row[0]), row[1] or "")
            by_bucket.setdefault(key, []).append(row)
        for (hour, version), bucket in by_bucket.items():
            observations = [observation_of(row[2], self.model.contract) for row in bucket]
            if not labels_only:
                for cell, n in self.bucket_cells(bucket, observations).items():
                    if n:
                        found.add((HOURLY, hour, version, cell), n)
            at = [i for i, row in enumerate(bucket) if row[5] is not None]
            sums, outcomes, kept = labelled_cells(self.report, [self.stored(bucket[i]) for i in at])
            if at:  # every labelled row, read by this task or not: /stats's versions
                sums.add("L:n", len(at))
            if self.grouped is not None and self.grouped.groupings:
                keys = self.grouped.keys_of(observations=[o or {} for o in observations])
                read = [position for position, taken in zip(at, kept, strict=True) if taken]
                self.grouped.cells(sums, keys, read, outcomes)
            for cell, (n, s, q, lo, hi) in sums.items():
                level = AUC if cell.startswith(AUC_CELLS) else HOURLY
                found.add((level, hour, version, cell), n, s, q, lo, hi)
        return with_days(found)

    def stored(self, row):
        """(true value, *the columns reports.py reads) of a row of ROW_COLUMNS."""
        if self.model.task.name == "binary":
            return (row[5], row[3], row[7], row[8])
        return (row[5], row[4])

    def bucket_cells(self, rows, observations):
        """Counter {cell: n} of rows of one hour and version (observations: theirs, read)."""
        cells = Counter(rows=len(rows))
        columns, unreadable = readable_observations(observations, self.model, self.unstored)
        cells["unreadable"] = unreadable
        if self.profile and len(rows) > unreadable:
            for column, values in columns.items():
                counts = count_bins(self.profile["columns"][column], values)
                for index, count in enumerate(counts.tolist()):
                    cells[f"d:{column}:{index}"] = count
        for row in rows:
            fields = parsed(row[6])
            if fields:
                cells["replaced"] += 1
                cells.update(f"replaced:{field}" for field in fields)
        self.count_predictions(rows, cells)
        return cells

    def count_predictions(self, rows, cells):
        """The distribution of the answers: as reports.py reads the stored outputs."""
        if self.model.task.name == "binary":
            cells.update(f"p:{tenth(row[3])}" for row in rows if row[3] is not None)
        elif self.model.task.name == "multiclass":
            for row in rows:
                read = self.multiclass.read(row[4])
                if read is not None:
                    cells[f"c:{read[0]}"] += 1
                    cells[f"t:{tenth(max(read[1]))}"] += 1

    # --- writing --------------------------------------------------------------------

    def add(self, cells):
        """Add the sums to the table, in the transaction of the rows they count.

        INSERT ... ON CONFLICT DO UPDATE, its rows in key order: two workers that count the
        same cells lock them in the same order, and never deadlock. Written as SQL (the same
        on both databases): peewee's query builder costs more than the statement.
        """
        database = unproxied(self.store.database)
        statements = []  # (SQL, parameters)
        for level, table in TABLES.items():
            rows = [
                (hour, version, cell, n, s, q, lo, hi)
                for (found, hour, version, cell), (n, s, q, lo, hi) in sorted(cells.items())
                if found == level and (n or s or q)
            ]
            for start in range(0, len(rows), 500):
                chunk = rows[start : start + 500]
                mark = "(" + ", ".join([database.param] * 8) + ")"
                values = ", ".join([mark] * len(chunk))
                sql = UPSERT.format(table=table._meta.table_name, values=values)
                statements.append((sql, [v for row in chunk for v in row]))
        if isinstance(database, PostgresqlDatabase) and len(statements) > 1:
            # One round trip for the three tables: psycopg2 sends parameters in the text of
            # the statements, and PostgreSQL runs the statements of one text in turn.
            sql = "; ".join(statement for statement, _ in statements)
            statements = [(sql, [v for _, parameters in statements for v in parameters])]
        for sql, parameters in statements:
            database.execute_sql(sql, parameters)

    def on_rows_stored(self, _store, rows):
        """store.py: new rows (peewee instances), in the transaction that inserts them."""
        self.add(self.cells_of([tuple(getattr(row, c) for c in ROW_COLUMNS) for row in rows]))

    def on_row_labelled(self, _store, before, after):
        """store.py: a row's true value set or corrected: its labelled cells move."""
        if before.rolled_up != FORMAT:  # not counted yet: catch_up counts it with this label
            return
        cells = self.cells_of([tuple(getattr(after, c) for c in ROW_COLUMNS)], labels_only=True)
        earlier = self.cells_of([tuple(getattr(before, c) for c in ROW_COLUMNS)], True)
        for key, (n, s, q, _, _) in earlier.items():
            cells.add(key, -n, -s, -q)  # lo and hi stay: they only ever widen
        self.add(cells)

    # --- start-up: the table, filled from the rows when it is new -------------------

    def upgrade(self):
        """Create the tables; fill the counts from every stored row when they are new or
        were made for another model (signature). Returns what it did, for the log."""
        database = self.store.database
        # A table of sums created now is empty: every row must be counted into it.
        created = [migrations.upgrade(database, table) for table in self.tables]
        created = any(change.startswith("created") for changes in created for change in changes)
        started = time.monotonic()
        with migrations.exclusive_transaction(unproxied(database)):
            # Under the lock: PostgreSQL's IF NOT EXISTS is no guard against a second replica
            # creating the same index at the same moment.
            for statement in INDEXES:  # what /stats's lookups of the rows need
                database.execute_sql(statement.format(table=self.store.table._meta.table_name))
            state = RollupState.get_or_none(RollupState.name == "signature")
            table = self.store.table
            emptied = not plain_rows(table.select(table.id).limit(1))  # a new or emptied table
            if emptied or created or state is None or state.value != self.signature:  # again
                for rollup in TABLES.values():
                    rollup.delete().execute()
                table.update(rolled_up=None).where(table.rolled_up == FORMAT).execute()
                RollupState.insert(name="signature", value=self.signature).on_conflict(
                    conflict_target=[RollupState.name], update={RollupState.value: self.signature}
                ).execute()
        rows = self.catch_up()
        if not rows:
            return None
        if rows >= VACUUM_AFTER_ROWS and isinstance(unproxied(database), PostgresqlDatabase):
            # Every row's rolled_up just changed: as many dead rows, and statistics that say
            # no row is counted. Until autovacuum gets there (never, where it is off), each
            # /stats's lookup of the rows not counted yet would scan the whole table, and
            # its reads of the labelled rows visit twice the pages. What autovacuum would do,
            # now (outside any transaction, as VACUUM must be).
            for table in (self.store.table, *TABLES.values()):
                database.execute_sql(f'VACUUM (ANALYZE) "{table._meta.table_name}"')
        seconds = time.monotonic() - started
        return f"counted {rows} stored rows into the rollup tables in {seconds:.1f} s"

    def catch_up(self):
        """Count the rows these tables do not count yet (rolled_up NULL, or another release's
        mark): rows written by a release before this one, or by hand. The service's own
        rows are counted as it writes them. A few thousand at a time, each chunk in a
        transaction that two processes take in turns, so that no row is counted twice.
        Returns how many it counted."""
        table, total = self.store.table, 0
        # The partial index's own condition, with the number written out: SQLite uses a
        # partial index only for a query whose WHERE names the same constant.
        not_counted = SQL(f'("rolled_up" IS NULL OR "rolled_up" <> {FORMAT})')
        uncounted = table.select(table.id).where(not_counted).limit(1)
        if not plain_rows(uncounted):  # the usual case: one lookup in a partial index
            return 0
        columns = [table.id, *(getattr(table, name) for name in ROW_COLUMNS)]
        while True:
            with migrations.exclusive_transaction(unproxied(self.store.database)):
                query = table.select(*columns).where(not_counted).order_by(table.id)
                if isinstance(unproxied(self.store.database), PostgresqlDatabase):
                    query = query.for_update()  # an /update of these rows waits for the count
                rows = plain_rows(query.limit(BACKFILL_ROWS))
                if not rows:
                    return total
                self.add(self.cells_of([row[1:] for row in rows]))
                ids = [row[0] for row in rows]
                table.update(rolled_up=FORMAT).where(table.id.in_(ids)).execute()
            total += len(rows)

    # --- reading --------------------------------------------------------------------

    def count(self, window, last_id, edges=None):
        """Sums {(version, cell): [n, s, q, lo, hi]} over the window but the AUC cells: its
        whole days from RollupDay, the whole hours at its ends from RollupHour, and the parts
        of hours from their rows (up to last_id; edges: a dict that keeps their cells for
        daily). Rows nobody counted yet: catch_up, which /stats calls first, outside the
        transaction of its reads (counting writes)."""
        found = Sums()
        for level, start, end in pieces_of(window):
            if level is None:
                for (_, version, cell), value in self.edge_cells(
                    window, last_id, start, end, edges
                ):
                    if window.version is None or version == version_key(window.version):
                        found.add((version, cell), *value)
                continue
            for key, value in self.sum_table(window, level, start, end).items():
                found.add(key, *value)
        return found

    def count_auc(self, window, last_id, groups=True):
        """Sums {(version, cell)} of the AUC cells A:<bin>:<truth> of the window (and of the
        declared groupings' AG... unless not groups): kept per day, so the parts of days at
        its ends come from their labelled rows; the whole store's, under EVER."""
        found = Sums()
        if window.api_key_name is not None:  # the rows of one key: counted from the rows
            parts = [(window.since, window.until)]
        else:
            days = whole(window.since, window.until, DAY)
            if window.since is None and window.until is None:
                span = (EVER, EVER + DAY)  # a row per bin, not a row per bin and day
            else:
                span = (days[0] or EVER + DAY, days[1])  # the days, not EVER's sums
            for key, value in self.sum_table(window, AUC, *span).items():
                if groups or key[1].startswith("A:"):
                    found.add(key, *value)
            parts = edges(window.since, window.until, *days)
        for start, end in parts:
            if not groups:  # the model's bins alone: no observation to read
                self.count_auc_rows(found, window, last_id, start, end)
                continue
            for (level, day, version, cell), value in self.count_rows(
                window, last_id, start, end, True
            ):
                if level == AUC and day != EVER:  # each once: under its day
                    found.add((version, cell), *value)
        return found

    def count_auc_rows(self, found, window, last_id, start, end):
        """Add to found the A:<bin>:<truth> cells of the labelled rows stored in [start,
        end): their scores and truths only, as quality_cells.binary_sums counts them."""
        if self.model.task.name != "binary":
            return  # only a binary classifier's answers have a ROC AUC
        table = self.store.table
        columns = (table.model_version, table.true_value, table.proba)
        query = table.select(*columns, table.threshold, table.positive_class)
        query = window.where(
            between(query.where(table.true_value.is_null(False)), start, end), last_id
        )
        by_version = {}
        for version, *stored in blocking_rows(query):
            by_version.setdefault(version or "", []).append(stored)
        for version, rows in by_version.items():
            truth, score, *_ = self.report.judge(rows)
            cells = Sums()
            add_auc_bins(cells, "A:", truth, score)
            for cell, value in cells.items():
                found.add((version, cell), *value)

    def daily(self, window, last_id, edges=None):
        """{day: {cell: [n, s, q, lo, hi]}} of the window's version: the rows, and the
        labelled rows' matrix or errors, by day (what /stats's `daily` and /monitor's chart
        of quality read; edges: count's, when it counted the same window)."""

        def wanted(table):
            return (table.cell == "rows") | table.cell.startswith("L:m:") | (table.cell == "L:ra:0")

        found = {}
        for level, start, end in pieces_of(window):
            if level is None:
                counted = [
                    (key, value)
                    for key, value in self.edge_cells(window, last_id, start, end, edges)
                    if key[1] == version_key(window.version)
                ]
            else:
                counted = self.sum_table(window, level, start, end, wanted, by_hour=True).items()
            for (hour, _, cell), value in counted:
                if cell == "rows" or cell.startswith(("L:m:", "L:ra:0")):
                    found.setdefault(as_datetime(hour).date(), Sums()).add(cell, *value)
        return found

    def sum_table(self, window, level, first, end, cells=None, by_hour=False):
        """Sums {(version, cell)} (by_hour: {(hour, version, cell)}) of the table of a level
        (TABLES) with first <= hour < end (None: open), of the window's version, and of
        the cells chosen (cells(table): a condition on its columns)."""
        table = TABLES[level]
        query = table.select(
            table.model_version,
            table.cell,
            fn.SUM(table.n),
            fn.SUM(table.s),
            fn.SUM(table.q),
            fn.MIN(table.lo),
            fn.MAX(table.hi),
        )
        if cells is not None:
            query = query.where(cells(table))
        if first is not None:
            query = query.where(table.hour >= first)
        if end is not None:
            query = query.where(table.hour < end)
        if window.version is not None:
            query = query.where(table.model_version == version_key(window.version))
        if by_hour:  # {(hour, version, cell)}
            query = query.select_extend(table.hour).group_by(
                table.hour, table.model_version, table.cell
            )
        else:
            query = query.group_by(table.model_version, table.cell)
        found = Sums()
        for number, (version, cell, n, s, q, lo, hi, *hour) in enumerate(blocking_rows(query)):
            key = (as_datetime(hour[0]), version, cell) if by_hour else (version, cell)
            found.add(key, int(n), s or 0.0, q or 0.0, lo, hi)
            if number % 10_000 == 9_999:
                let_others_run()  # tens of thousands of AUC bins: predictions go in between
        return found

    def edge_cells(self, window, last_id, start, end, edges=None):
        """[((hour, version, cell), value)] of the HOURLY cells of the rows stored in [start,
        end) of every version (the window's since and until alone), counted once per edges."""
        key = (start, end, last_id)
        if edges is None or key not in edges:
            every_version = replace(window, version=None)
            counted = self.count_rows(every_version, last_id, start, end)
            found = [((h, v, c), value) for (level, h, v, c), value in counted if level == HOURLY]
            if edges is None:
                return found
            edges[key] = found
        return edges[key]

    def count_rows(self, window, last_id, start, end, labelled=False):
        table = self.store.table
        query = table.select(*(getattr(table, name) for name in ROW_COLUMNS))
        query = window.where(between(query, start, end), last_id)
        if labelled:
            query = query.where(table.true_value.is_null(False))
        if window.api_key_name is None:  # parts of hours at a window's ends: few rows
            return self.cells_of(plain_rows(query), labels_only=labelled).items()
        # One API key's rows, the whole window (pieces_of): a chunk at a time, the worker's
        # other requests in between, in the order of the ids (the primary key's index).
        found, after = Sums(), None
        query = query.select_extend(table.id).order_by(table.id).limit(CHUNK_ROWS)
        while True:
            rows = plain_rows(query if after is None else query.where(table.id > after))
            for key, value in self.cells_of([row[:-1] for row in rows], labelled).items():
                found.add(key, *value)
            if len(rows) < CHUNK_ROWS:
                return found.items()
            after = rows[-1][-1]
            let_others_run()


def with_days(cells):
    """The cells of cells_of, each HOURLY one under its day (DAILY) too; AUC ones per day,
    and under EVER: the whole store's, which /stats without a window reads."""
    found = Sums()
    for (level, hour, version, cell), (n, s, q, lo, hi) in cells.items():
        day = hour.replace(hour=0)
        if level == AUC:
            found.add((AUC, day, version, cell), n, s, q, lo, hi)
            found.add((AUC, EVER, version, cell), n, s, q, lo, hi)
        else:
            found.add((HOURLY, hour, version, cell), n, s, q, lo, hi)
            found.add((DAILY, day, version, cell), n, s, q, lo, hi)
    return found


def between(query, start, end):
    """The query's rows stored in [start, end) (None: open)."""
    table = query.model
    query = query if start is None else query.where(table.created_at >= start)
    return query if end is None else query.where(table.created_at < end)


def pieces_of(window):
    """pieces of the window; for the rows of one API key, the whole window as one piece
    counted from its rows: the tables keep sums per version and time, not per key."""
    if window.api_key_name is not None:
        return [(None, window.since, window.until)]
    return pieces(window.since, window.until)


def pieces(since, until):
    """The window [since, until) (None: open) as [(level, start, end)]: its whole days
    (DAILY), the whole hours of the days at its ends (HOURLY), and the parts of hours at
    its ends (None: counted from their rows)."""
    first_day, end_day = whole(since, until, DAY)
    if since is not None and until is not None and first_day >= end_day:
        return hours_of(since, until)  # within a day, or two days' parts
    found = [(DAILY, first_day, end_day)]
    if since is not None and since < first_day:
        found += hours_of(since, first_day)
    if until is not None and end_day < until:
        found += hours_of(end_day, until)
    return found


def hours_of(since, until):
    """[since, until) as its whole hours (HOURLY) and the parts of hours at its ends."""
    first, end = whole(since, until, HOUR)
    found = [(HOURLY, first, end)] if first < end else []
    return found + [(None, start, stop) for start, stop in edges(since, until, first, end)]


def whole(since, until, size):
    """(the first whole bucket of `size` in the window, the end of the last), None: open."""
    first = None if since is None else floor(since + size - _TICK, size)
    end = None if until is None else floor(until, size)
    return first, end


def floor(moment, size):
    moment = as_datetime(moment)
    if size == DAY:
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return moment.replace(minute=0, second=0, microsecond=0)


_TICK = timedelta(microseconds=1)
# Rollups.add's statement: the lowest and highest score by CASE, for SQLite's MIN(a, b) is
# PostgreSQL's LEAST.
UPSERT = (
    'INSERT INTO {table} ("hour", "model_version", "cell", "n", "s", "q", "lo", "hi") '
    "VALUES {values} "
    'ON CONFLICT ("model_version", "hour", "cell") DO UPDATE SET '
    '"n" = {table}."n" + excluded."n", '
    '"s" = COALESCE({table}."s", 0) + COALESCE(excluded."s", 0), '
    '"q" = COALESCE({table}."q", 0) + COALESCE(excluded."q", 0), '
    '"lo" = CASE WHEN {table}."lo" IS NULL OR excluded."lo" < {table}."lo" '
    'THEN excluded."lo" ELSE {table}."lo" END, '
    '"hi" = CASE WHEN {table}."hi" IS NULL OR excluded."hi" > {table}."hi" '
    'THEN excluded."hi" ELSE {table}."hi" END'
)
# The first and last time of each version (window.versions), the rows at the ends of a
# window (count_rows), and the labelled rows of a window (reports.py): each a range of an
# index, not a scan of the table. IF NOT EXISTS: both databases; two replicas at once too.
INDEXES = (
    "CREATE INDEX IF NOT EXISTS {table}_created_at ON {table} (created_at)",
    "CREATE INDEX IF NOT EXISTS {table}_version_created_at ON {table} (model_version, created_at)",
    "CREATE INDEX IF NOT EXISTS {table}_labelled ON {table} (model_version, created_at) "
    "WHERE true_value IS NOT NULL",
    f"CREATE INDEX IF NOT EXISTS {{table}}_not_counted_{FORMAT} ON {{table}} (id) "
    f"WHERE rolled_up IS NULL OR rolled_up <> {FORMAT}",
)


def edges(since, until, first_whole, end_whole):
    """The parts of hours at the ends of [since, until) that whole hours do not cover."""
    if since is not None and until is not None and first_whole >= end_whole:
        return [(since, until)]  # within one hour, or two hours' parts
    found = []
    if since is not None and since < first_whole:
        found.append((since, first_whole))
    if until is not None and end_whole < until:
        found.append((end_whole, until))
    return found


def version_key(version):
    """How the table names a version: "" for the rows stored without one."""
    return "" if version == UNKNOWN_VERSION else version
