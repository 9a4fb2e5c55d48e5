"""GET /stats: how the model does in production, from the rows the service stores.

* `GET /stats`: the quality of one model version over the predictions whose true value
  arrived with /update, by the task of the model served (reports.py), the versions
  present, and the drift of every feature against the training data (drift.py),
  optionally in a time window (?since=...&until=...).
* `GET /stats?by=<column>[,<column>...]`: the same rows' quality per group, the spreads
  between the groups and the rules of api.toml's [stats] (groups.py: its docstring says
  what each key holds). Its answer replaces the overall figures: model, window, by,
  predictions, then groups.py's keys.

Only with `Authorization: Bearer <ADMIN_TOKEN>`, like /list-db-contents.

What /stats reports (`?model_version=`: default the model served now; `unknown` selects the
rows stored before the version was recorded): `model` (the served `version`, the
`reported_version`, its `task` as task.describe() gives it, `columns`, `held_out`),
`window`, `versions` (each version in the window: its rows, labelled rows, first and last
time, whether it is served), `predictions`, `labelled`, `labelled_left_out` (labelled rows
whose stored prediction or true value this task cannot read: rows of a model of another
kind), `metrics` (reports.py says what each task's hold), `calibration`, `distribution`,
`drift`, `drift_note`, `unreadable_observations` (rows with a replaced value among them:
drift reads observations as invalid = "reject" would), `replaced` (rows with values
answered as missing, [predict] invalid = "as_missing": how many, and how many per field),
`challenger` (CHALLENGER_DIR: comparison.py; null without one). /stats?by= has its own
`challenger`: both models' groups, spreads and rules on the rows both scored.
"""

import json
import time
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial

import numpy as np
from flask import Blueprint, current_app, jsonify, request
from peewee import Cast, fn
from sklearn.metrics import roc_auc_score

from model_service.errors import ApiError
from model_service.monitoring import quality_cells, regression_cells
from model_service.monitoring.comparison import challenger_columns, compare
from model_service.monitoring.drift import drift_report, observation_of
from model_service.monitoring.metrics import count_rules
from model_service.monitoring.reports import REPORTS
from model_service.monitoring.rollups import version_key
from model_service.monitoring.rules import GroupsError
from model_service.monitoring.window import Window, iso_or_none, let_others_run, plain_rows
from model_service.store import current_store
from model_service.web import require_admin

blueprint = Blueprint("stats", __name__)
# Up to this many rows in its window, /stats?by= reads them (groups.py: its bootstrap
# intervals draw rows); beyond, a declared grouping comes from the sums (group_cells.py).
ROW_PATH_ROWS = 20_000
BINS_READ_APART = 1024  # up to this many uncertain AUC bins are read by their numbers


@blueprint.get("/stats")
def serve_stats():
    require_admin()
    state = current_app.extensions["monitoring"]  # monitoring.Monitoring, from init_app
    model = current_app.config["MODEL"]
    by = request.args.get("by")
    if by is not None:
        checked_groups(lambda: state.groups.parse_by(by))  # 422 before any query
    since, until = window_bound("since"), window_bound("until")
    if since is not None and until is not None and since > until:
        raise ApiError(422, "until must not be earlier than since")
    reported = request.args.get("model_version") or model.version
    key_name = api_key_name()
    window = Window(current_store(), since, until, api_key_name=key_name)

    # The counts first (rollups.py): the last id they saw bounds every later query. Rows
    # written by other means than this service's are counted before, in their own transaction.
    state.rollups.catch_up()
    edges = {}  # the cells of the parts of hours at the window's ends, counted once
    last_id, counted = window.in_transaction(partial(count_window, state.rollups, window, edges))
    versions = window.in_transaction(
        partial(window.versions, Counter({k: v[0] for k, v in counted.items()}))
    )
    window = replace(window, version=reported)
    sums = {
        cell: value
        for (version, cell), value in counted.items()
        if version == version_key(reported)
    }
    cells = {cell: value[0] for cell, value in sums.items()}
    count = cells.get("rows", 0)
    head = {
        "model": describe_model(model, reported, state.profile),
        "window": {"since": iso_or_none(since), "until": iso_or_none(until)},
    }
    challenger = current_app.config.get("CHALLENGER")
    shadowed = challenger and replace(window, shadowed_by=challenger.version)
    if by is None:
        labelled = sum(v["labelled"] for v in versions if v["version"] == reported)
        body = whole_stats(state, model, window, last_id, versions, sums, labelled, edges)
        body["challenger"] = shadowed and compare(shadowed, last_id, model, challenger)
        return jsonify(**head, **body)
    by_columns = state.groups.parse_by(by)
    if count > ROW_PATH_ROWS and state.grouped.grouping_of(by_columns) is not None:
        labelled = sum(v["labelled"] for v in versions if v["version"] == reported)
        answer = checked_groups(
            lambda: grouped_from_sums(state, window, last_id, by_columns, sums, labelled)
        )
    else:
        answer = checked_groups(lambda: group_stats(state, model, window, last_id, by))
    if since is None and until is None and reported == model.version and key_name is None:
        count_rules(model.version, answer["rules"])
    answer["challenger"] = shadowed and checked_groups(
        lambda: challenger_groups(state, model, challenger, shadowed, last_id, by)
    )
    return jsonify(**head, by=answer.pop("by"), predictions=count, **answer)


def count_window(rollups, window, edges):
    """(the last id, the window's sums {(version, cell): [n, s, q, lo, hi]}: rollups.py)."""
    last_id = window.last_id()
    return last_id, rollups.count(window, last_id, edges)


def whole_stats(state, model, window, last_id, versions, sums, labelled, edges=None):
    """/stats without by: the versions, the quality of the task, and the drift, from the
    rollups' sums of the window. The metrics: from the labelled rows themselves while there
    are at most READ_LABELLED_ROWS (reading them is cheap); beyond, from the sums too."""
    report = REPORTS[model.task.name](model.task)
    cells = {cell: value[0] for cell, value in sums.items()}
    count, unreadable = cells.get("rows", 0), cells.get("unreadable", 0)
    if labelled > quality_cells.READ_LABELLED_ROWS:
        quality = summary_of_many(report, window, last_id, state.rollups, sums, labelled)
    else:
        quality = report.summary(window, last_id, cells)
    counts = drift_counts(state.profile, model, cells, state.rollups.unstored)
    drift_by_column, drift_note = drift_report(
        state.profile, state.profile_note, counts, count - unreadable, count
    )
    return {
        "versions": [dict(v, serving=v["version"] == model.version) for v in versions],
        "predictions": count,
        **quality,
        "drift": drift_by_column,
        "drift_note": drift_note,
        "unreadable_observations": unreadable,
        "replaced": replaced_values(cells),
        "daily": quality_cells.daily_of(
            model.task,
            window.in_transaction(partial(state.rollups.daily, window, last_id, edges)),
        ),
    }


def summary_of_many(report, window, last_id, rollups, sums, labelled):
    """The quality keys from the sums (quality_cells.py). ROC AUC comes from the score
    bins, with the bound of its error. It is made exact while the window holds at most
    EXACT_LABELLED_ROWS labelled rows, or past AUC_ERROR_LIMIT: by the rows of the bins
    whose order the sums do not know, when they are few, or else by every labelled row.
    A regressor's: regression_cells.py, or every labelled row when its sums cannot answer."""
    if report.task.name == "regression":
        quality = regression_cells.summary_of_many(report, window, last_id, sums)
        return quality or report.summary(window, last_id, None)
    auc = window.in_transaction(partial(rollups.count_auc, window, last_id, groups=False))
    version = version_key(window.version)
    auc = {cell: value for (found, cell), value in auc.items() if found == version}
    cells = {cell: value[0] for cell, value in sums.items()}
    quality = quality_cells.summary_from_cells(report, sums, auc, cells)
    metrics = quality["metrics"]
    bound = metrics.get("roc_auc_error_bound") or 0
    if bound <= quality_cells.AUC_ERROR_LIMIT and (
        bound == 0 or labelled > quality_cells.EXACT_LABELLED_ROWS
    ):
        return quality
    bins = quality_cells.uncertain_bins(auc)
    bins_rows = sum(n for (n, *_rest) in (auc.get(f"A:{b}:{t}", [0]) for b in bins for t in (0, 1)))
    # The rows of the uncertain bins, by their numbers; past that many, every labelled row.
    if bins_rows <= quality_cells.EXACT_LABELLED_ROWS and len(bins) <= BINS_READ_APART:
        truth, score, _ = labelled_in_bins(window, last_id, report, bins, bodies=False)
        wins = quality_cells.wins_within(truth, score, bins)
        metrics["roc_auc"], metrics["roc_auc_error_bound"] = quality_cells.auc_of(auc, wins)
    else:
        table = window.table
        rows = window.in_transaction(
            lambda: window.labelled(last_id, table.proba, table.threshold, table.positive_class)
        )
        truth, score, *_ = report.judge(rows)
        metrics["roc_auc"], metrics["roc_auc_error_bound"] = float(roc_auc_score(truth, score)), 0.0
    return quality


def drift_counts(profile, model, cells, unstored):
    """{column: counts per bin of its profile} from the cells d:<column>:<bin>, but for the
    columns whose values are not stored (api.toml's [store]: rollups.py's `unstored`)."""
    if profile is None:
        return None
    counts = {}
    for column in model.columns:
        if column in unstored:
            continue
        size = len(profile["columns"][column]["shares"])
        counts[column] = np.array([cells.get(f"d:{column}:{k}", 0) for k in range(size)])
    return counts


def replaced_values(cells):
    """{"rows", "by_field"}: the rows with values answered as missing ([predict] invalid =
    "as_missing"), and how many of them had each field replaced."""
    by_field = {
        cell.split(":", 1)[1]: n for cell, n in cells.items() if cell.startswith("replaced:") and n
    }
    return {"rows": cells.get("replaced", 0), "by_field": dict(sorted(by_field.items()))}


def checked_groups(work):
    """work(), a GroupsError (a column that cannot group rows...) becoming a 422."""
    try:
        return work()
    except GroupsError as error:
        raise ApiError(422, str(error)) from None


class TimeLimit(Exception):
    """/stats?by= ran out of STATS_TIME_LIMIT seconds."""


def grouped_from_sums(state, window, last_id, by, sums, labelled):
    """/stats?by= on a declared grouping (group_cells.py): from the window's sums."""
    auc = window.in_transaction(partial(state.rollups.count_auc, window, last_id))
    version = version_key(window.version)
    auc = {cell: value for (found, cell), value in auc.items() if found == version}
    rows_in_bins = partial(labelled_in_bins, window, last_id, state.rollups.report)
    return state.grouped.report(by, sums, auc, labelled, let_others_run, rows_in_bins)


def labelled_in_bins(window, last_id, report, bins, bodies=True):
    """(truth, score, bodies) of the window's labelled rows whose score (about the model's
    positive class) falls in these AUC bins {bin: (lowest, highest score)}: the few rows
    that make an AUC from bins exact (quality_cells.py). bodies=False: no observation read.

    The database picks them by the bin of p, or of 1 - p (a row answered about the other
    class), with a bin either side (auc_bin_of rounds on PostgreSQL; 1 - p may round
    across an edge); the exact bins are taken here."""
    table = window.table
    near = sorted({b + step for b in bins for step in (-1, 0, 1)})
    condition = auc_bin_of(table.proba).in_(near) | auc_bin_of(1 - table.proba).in_(near)
    judged = [table.true_value, table.proba, table.threshold, table.positive_class]
    if bodies:
        query = table.select(*judged, table.observation)
    else:  # a row per distinct (label, score, rule), and how many: a model's scores repeat
        query = table.select(*judged, fn.COUNT(table.id)).group_by(*judged)
    query = query.where(table.true_value.is_null(False), condition)
    rows = window.in_transaction(lambda: plain_rows(window.where(query, last_id)))
    truth, score, _, _, kept = report.judge([row[:4] for row in rows])
    found = [row[4] for row, taken in zip(rows, kept, strict=True) if taken]
    if not bodies:  # each distinct row as many times as it is stored
        times = np.array(found, dtype=np.int64)
        truth, score, found = np.repeat(truth, times), np.repeat(score, times), [None] * sum(found)
    inside = np.isin(quality_cells.auc_bin(score), list(bins))
    return truth[inside], score[inside], [b for b, i in zip(found, inside, strict=True) if i]


def auc_bin_of(score):
    """quality_cells.auc_bin of a score in SQL, give or take one: CAST truncates on SQLite
    and rounds on PostgreSQL (labelled_in_bins asks for the bins either side too)."""
    return Cast(score * quality_cells.AUC_BINS, "INTEGER")


def within_time_limit():
    """pause() for a /stats?by=: lets the worker's other requests run, as let_others_run,
    and raises TimeLimit once STATS_TIME_LIMIT seconds have passed since it was made."""
    deadline = time.monotonic() + current_app.config["STATS_TIME_LIMIT"]

    def pause():
        let_others_run()
        if time.monotonic() > deadline:
            raise TimeLimit

    return pause


def group_stats(state, model, window, last_id, by, stored=None):
    """/stats?by= (groups.py): one pass over the rows, each observation read as the
    contract keeps it, with the true value and the prediction of the labelled ones.

    stored(row) -> the prediction columns of a row (default: the model's own, as read);
    the challenger's comparison passes the columns of the challenger's output instead.
    """
    report = REPORTS[model.task.name](model.task)
    table = window.table
    own = report.stored_columns(table)
    columns = [table.observation, table.true_value, table.challenger_prediction, *own]
    stored = stored or (lambda row: row[4:])
    pause = within_time_limit()
    chunks = (
        [(observation_of(row[1], model.contract), row[2], *stored(row)) for row in rows]
        for rows in window.chunks(last_id, *columns, pause=pause)
    )
    by_columns = state.groups.parse_by(by)
    try:
        return state.groups.report(by, chunks, report.outcomes, pause=pause)
    except TimeLimit:
        limit = current_app.config["STATS_TIME_LIMIT"]
        raise ApiError(
            503,
            f"/stats?by= read the rows of its window and stopped after {limit:g} s "
            "(STATS_TIME_LIMIT), so as not to hold a worker that serves predictions: declare "
            f"the grouping in api.toml, [stats] groups = [{json.dumps(list(by_columns))}], "
            "to have it counted as rows arrive; or ask for a shorter window (?since=)",
        ) from None


def challenger_groups(state, model, challenger, shadowed, last_id, by):
    """/stats?by='s `challenger`: the groups and rules of both models on the rows both
    scored (comparison.py's rows), each judged with its own predictions."""
    theirs = partial(challenger_columns, challenger=challenger)
    mine = group_stats(state, model, shadowed, last_id, by)
    their = group_stats(state, model, shadowed, last_id, by, lambda row: theirs(row[3]))
    keys = ("labelled", "groups", "spreads", "rules")
    return {
        "version": challenger.version,
        "predictions": sum(group["predictions"] for group in mine["groups"]),
        "model": {key: mine[key] for key in keys},
        "challenger": {key: their[key] for key in keys},
    }


def describe_model(model, reported, profile):
    """The model served (its rows are read with its task, whichever version is reported)."""
    return {
        "version": model.version,
        "reported_version": reported,
        "task": model.task.describe(),
        "columns": model.columns,
        "held_out": (profile or {}).get("held_out"),  # the served model's, from notebook 1
    }


def api_key_name():
    """?api_key_name= of /stats and /export: the rows of one API key (API_KEYS), or None.
    /stats counts them as it reads them: the rollup tables keep sums per version and time,
    not per key."""
    name = request.args.get("api_key_name")
    if name == "":
        raise ApiError(422, "api_key_name must name a key of API_KEYS (the part before its :)")
    return name


def window_bound(name):
    """?since= or ?until= as a naive UTC datetime (how created_at is stored), or None."""
    text = request.args.get(name)
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.upper())  # RFC 3339 allows "t" and "z"
        if moment.tzinfo is not None:  # without a zone, the time is taken as UTC
            moment = moment.astimezone(UTC).replace(tzinfo=None)
    except (ValueError, OverflowError):  # not a time, or out of range once in UTC
        raise ApiError(
            422, f"{name} must be a date and time in ISO 8601, such as 2026-01-31T12:00:00Z"
        ) from None
    return moment
