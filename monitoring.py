"""Monitoring: how the model does in production, from the traffic the service stores.

* `GET /stats`: the quality of one model version over the predictions whose true value
  arrived with /update, by the task of the model served (tasks.py), the versions present,
  and the drift of every feature against the training data (drift.py), optionally in a
  time window (?since=...&until=...). Computed from the stored rows.
* `GET /stats?by=<column>[,<column>...]`: the same rows' quality per group, the spreads
  between the groups and the rules of api.toml's [stats] (groups.py: its docstring says
  what each key holds). Its answer replaces the overall figures: model, window, by,
  predictions, then groups.py's keys.
* `GET /metrics`: counters and histograms for Prometheus, across every gunicorn worker;
  the gauges of the rules are those the last /stats?by= over every row set.

Both answer only with `Authorization: Bearer <ADMIN_TOKEN>`, like /list-db-contents.
app.py wires it in create_app with init_app(app); nothing in app.py knows the metrics: they
listen to the signals app.py sends (predictions_answered, batch_scored, database_unavailable).

What /stats reports (`?model_version=`: default the model served now; `unknown` selects the
rows stored before the version was recorded):

* every task: `model` (the served `version`, the `reported_version`, its `task` as
  task.describe() gives it, `columns`, `held_out`), `window`, `versions` (each version in
  the window: its rows, labelled rows, first and last time, whether it is served),
  `predictions`, `labelled`, `labelled_left_out` (labelled rows whose stored prediction or
  true value this task cannot read: rows of a model of another kind), `metrics` (from
  sklearn.metrics; null where undefined, and `metrics.reason` says why), `calibration`,
  `distribution`, `drift`, `drift_note`, `unreadable_observations` (rows with a replaced
  value among them: drift reads observations as invalid = "reject" would),
  `replaced` (rows with values answered as missing, [predict] invalid = "as_missing": how
  many, and how many per field).
* binary: `metrics` holds roc_auc, accuracy, log_loss, brier, precision, recall, f1,
  positive_rate (the share of labelled rows decided positive), the `thresholds` in force and
  the `confusion_matrix` ({labels: [negative, positive], matrix: rows true, columns
  decided}). Each row is decided at the threshold stored with it (0.5 before the upgrade),
  for the positive class stored with it (classes[1] before the upgrade); a row stored for
  the other class is turned round (1 - p) so that every figure is about the model's
  positive class. `calibration` and `distribution`: P(positive class) in 10 bins.
* multiclass: accuracy, macro_f1 (over the classes that occur, true or predicted),
  log_loss (labels: every class of the model), the confusion matrix in the model's class
  order, and `per_class` counts (true and predicted among the labelled rows, predicted
  among all rows) with each class's precision, recall and F1. `calibration` and
  `distribution` are about the top probability (that of the predicted class): calibration
  compares it with the share of rows whose predicted class was right.
* regression: mae, rmse, r2 and `errors` (prediction - truth: mean, quantiles and 10
  equal-width bins from the smallest to the largest, as numpy.histogram cuts them), for a
  single output; for several, the same per target under `metrics.targets`. `calibration`
  and `distribution` are null: there are no probabilities.
"""

import json
import logging
import os
import sys
import time
from array import array
from collections import Counter as Tally
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from itertools import pairwise
from pathlib import Path

import gevent
import numpy as np
from flask import Blueprint, Response, current_app, g, jsonify, request
from gevent import monkey
from peewee import Case, fn
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    log_loss,
    mean_absolute_error,
    precision_recall_fscore_support,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
    root_mean_squared_error,
)

import drift
import groups
import tasks

log = logging.getLogger("monitoring")

# ---------------------------------------------------------------------------------------
# Prometheus metrics
# ---------------------------------------------------------------------------------------

# gunicorn.conf.py sets PROMETHEUS_MULTIPROC_DIR before the app is imported: each worker
# then writes its values to files there, and /metrics adds up the files of all workers.
# Without it (`python app.py`, the tests' Flask client) the values live in this process.
MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
registry = CollectorRegistry()
# The *_created series (when each one started) exist only in-process: leave them out, so
# that /metrics reads the same with and without gunicorn.
disable_created_metrics()

REQUESTS = Counter(
    "http_requests",
    "HTTP requests answered, by route (the URL rule), method and status",
    ["route", "method", "status"],
    registry=registry,
)
REQUEST_SECONDS = Histogram(
    "http_request_duration_seconds",
    "Time from the start of a request to its response, by route and method",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=registry,
)
PREDICTIONS = Counter(
    "model_predictions",
    "Predictions answered (by /predict and /predict-batch), by model version",
    ["model_version"],
    registry=registry,
)
PROBABILITIES = Histogram(
    "model_prediction_probability",
    "The probabilities of the positive class answered by a binary classifier",
    ["model_version"],
    buckets=[k / 10 for k in range(1, 11)],
    registry=registry,
)
PREDICTED_LABELS = Counter(
    "model_predicted_labels",
    "A classifier's answers by the label predicted (a binary one's decision at its threshold)",
    ["model_version", "label"],
    registry=registry,
)
REPLACED_VALUES = Counter(
    "predictions_replaced_values",
    'Feature values answered as missing ([predict] invalid = "as_missing"), by model '
    "version and field",
    ["model_version", "field"],
    registry=registry,
)
BATCH_SIZES = Histogram(
    "model_batch_size",
    "Requests scored together in one predict_proba call (micro-batching)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
    registry=registry,
)
DATABASE_ERRORS = Counter(
    "database_errors",
    "Requests answered 503 because the database was unavailable, by exception class",
    ["error"],
    registry=registry,
)
# Set by /stats?by= (which checks every rule) over every stored row of the served model:
# checking them at each scrape would read the whole table every few seconds. Across
# workers, the value written last wins ("mostrecent").
RULES = Gauge(
    "model_rules",
    "The rules of api.toml [stats], by status (met, not_met, undecided), as the last "
    "/stats?by= over every stored row of the model found them",
    ["model_version", "status"],
    multiprocess_mode="mostrecent",
    registry=registry,
)
RULES_CHECKED = Gauge(
    "model_rules_checked_timestamp_seconds",
    "When /stats?by= last checked the rules over every stored row of the model (Unix time)",
    ["model_version"],
    multiprocess_mode="mostrecent",
    registry=registry,
)
RULE_STATUSES = ("met", "not_met", "undecided")


def count_predictions(model, outcomes):
    """predictions_answered: a dict is an answered output (tasks.py), an ApiError is not."""
    answered = [outcome for outcome in outcomes if isinstance(outcome, dict)]
    PREDICTIONS.labels(model.version).inc(len(answered))
    if model.task.name == "binary":  # the other tasks answer no single probability
        histogram = PROBABILITIES.labels(model.version)
        for output in answered:
            histogram.observe(output["probability"])
    if model.task.name in ("binary", "multiclass"):  # labels of a regressor are numbers
        labels = Tally(tasks.json_key(output["label"]) for output in answered)
        for label, count in labels.items():
            PREDICTED_LABELS.labels(model.version, label).inc(count)


def count_replaced(model, replaced):
    """values_replaced: the {field: why} of each answered request with a replaced value."""
    for field, count in Tally(field for fields in replaced for field in fields).items():
        REPLACED_VALUES.labels(model.version, field).inc(count)


def count_batch(_app, size):
    BATCH_SIZES.observe(size)


def count_database_error(_app, error):
    DATABASE_ERRORS.labels(type(error).__name__).inc()


def start_timer():
    g.monitoring_started = time.perf_counter()


def count_request(response):
    # The URL rule, not the path: /anything-a-client-invents must not become a label.
    route = request.url_rule.rule if request.url_rule else "unmatched"
    REQUESTS.labels(route, request.method, str(response.status_code)).inc()
    started = g.get("monitoring_started")
    if started is not None:
        REQUEST_SECONDS.labels(route, request.method).observe(time.perf_counter() - started)
    return response


# ---------------------------------------------------------------------------------------
# Wiring
# ---------------------------------------------------------------------------------------

monitoring = Blueprint("monitoring", __name__)


@dataclass
class Monitoring:
    """What the routes need, kept in app.extensions["monitoring"]."""

    service: object  # the module that built the app: app (or __main__ under `python app.py`)
    profile: dict | None  # training_profile.json, when it was written for this model
    profile_note: str | None  # why there is no usable profile
    groups: groups.Groups  # /stats?by=: the groups and the rules of api.toml [stats]


def init_app(app):
    """Register /stats and /metrics, time every request, and listen to app.py's signals."""
    # The module whose create_app built this app: its Prediction table and its signals are
    # the ones in use, also under `python app.py`, where that module is __main__, not app.
    service = sys.modules[app.import_name]
    model = app.config["MODEL"]
    profile, note = load_profile(Path(app.config["MODEL_DIR"]), model)
    # Tests may pass the setting to create_app; else it comes from the environment.
    min_labelled = app.config.get("GROUP_MIN_LABELLED", os.environ.get("GROUP_MIN_LABELLED"))
    try:
        checked = groups.Groups(
            model.contract.stats_settings or {}, min_labelled, model, profile, note
        )
    except groups.GroupsError as error:
        raise service.StartupError(str(error)) from None
    app.extensions["monitoring"] = Monitoring(service, profile, note, checked)
    app.register_blueprint(monitoring)
    app.before_request(start_timer)
    app.after_request(count_request)
    # Connecting the same function twice is a no-op: many apps (tests) count once.
    service.predictions_answered.connect(count_predictions)
    service.batch_scored.connect(count_batch)
    service.values_replaced.connect(count_replaced)
    service.database_unavailable.connect(count_database_error)


def load_profile(model_dir, model):
    """(profile, None) when training_profile.json fits this model, else (None, why not)."""
    path = model_dir / drift.PROFILE_FILE
    if not path.is_file():
        return None, (
            f"drift needs {drift.PROFILE_FILE} beside the model's artifacts: notebook 1 "
            "writes it (make notebooks)"
        )
    try:
        profile = json.loads(path.read_text())
        written_for = profile["written_for"]
        version, columns = written_for["model_version"], written_for["columns"]
        if version != model.version or columns != model.columns:
            note = (
                f"{drift.PROFILE_FILE} was written for another model (version {version}, "
                f"columns {columns}), not for this one (version {model.version}, columns "
                f"{model.columns}): write it again with notebook 1 along with the model"
            )
            log.warning("drift is off: %s", note)
            return None, note
        for column in model.columns:
            check_column_profile(profile["columns"][column])
    except (OSError, ValueError, KeyError, TypeError) as error:
        note = (
            f"{drift.PROFILE_FILE} cannot be read ({type(error).__name__}: {error}): write "
            "it again with notebook 1"
        )
        log.warning("drift is off: %s", note)
        return None, note
    return profile, None


def check_column_profile(column):
    if column["kind"] not in ("numeric", "categorical"):
        raise ValueError(f"unknown kind {column['kind']!r}")
    if len(column["shares"]) != len(drift.bin_labels(column)):
        raise ValueError("a column has more or fewer shares than bins")


# ---------------------------------------------------------------------------------------
# Routes
# ---------------------------------------------------------------------------------------


@monitoring.get("/metrics")
def metrics():
    current_app.extensions["monitoring"].service.require_admin()
    if MULTIPROCESS:
        collected = CollectorRegistry()
        multiprocess.MultiProcessCollector(collected)
    else:
        collected = registry
    return Response(generate_latest(collected), headers={"Content-Type": CONTENT_TYPE_LATEST})


@monitoring.get("/stats")
def stats():
    current_app.extensions["monitoring"].service.require_admin()
    state = current_app.extensions["monitoring"]
    service, model = state.service, current_app.config["MODEL"]
    by = request.args.get("by")
    if by is not None:
        checked_groups(lambda: state.groups.parse_by(by), service)  # 422 before any query
    since, until = window_bound("since", service), window_bound("until", service)
    if since is not None and until is not None and since > until:
        raise service.ApiError(422, "until must not be earlier than since")
    reported = request.args.get("model_version") or model.version
    window = Window(service.Prediction, since, until)

    # The versions first: their last id bounds every later query to the same rows.
    versions, last_id = service.in_transaction(window.versions)
    window = replace(window, version=reported)
    count = sum(v["predictions"] for v in versions if v["version"] == reported)
    head = {
        "model": describe_model(model, reported, state.profile),
        "window": {"since": iso_or_none(since), "until": iso_or_none(until)},
    }
    if by is None:
        return jsonify(**head, **whole_stats(state, model, window, last_id, versions, count))
    answer = checked_groups(lambda: group_stats(state, model, window, last_id, by), service)
    if since is None and until is None and reported == model.version:
        count_rules(model.version, answer["rules"])
    return jsonify(**head, by=answer.pop("by"), predictions=count, **answer)


def whole_stats(state, model, window, last_id, versions, count):
    """/stats without by: the versions, the quality of the task, and the drift."""
    report = REPORTS[model.task.name](model.task)
    counts, readable, unreadable = bin_observations(window, last_id, model, state.profile, report)
    quality = report.summary(window, last_id, state.service)
    drift_by_column, drift_note = drift_report(state, counts, readable, count)
    return {
        "versions": [dict(v, serving=v["version"] == model.version) for v in versions],
        "predictions": count,
        **quality,
        "drift": drift_by_column,
        "drift_note": drift_note,
        "unreadable_observations": unreadable,
        "replaced": state.service.in_transaction(partial(replaced_values, window, last_id)),
    }


def replaced_values(window, last_id):
    """{"rows", "by_field"}: the rows with values answered as missing ([predict] invalid =
    "as_missing"), and how many of them had each field replaced. One GROUP BY: the distinct
    sets of replaced fields are few."""
    rows, by_field = 0, Tally()
    if last_id is not None:
        table = window.table
        query = table.select(table.replaced, fn.COUNT(table.id)).where(
            table.replaced.is_null(False)
        )
        for text, count in plain_rows(window.where(query.group_by(table.replaced), last_id)):
            rows += int(count)
            by_field.update(dict.fromkeys(parsed(text) or {}, int(count)))
    return {"rows": rows, "by_field": dict(sorted(by_field.items()))}


def checked_groups(work, service):
    """work(), a GroupsError (a column that cannot group rows...) becoming a 422."""
    try:
        return work()
    except groups.GroupsError as error:
        raise service.ApiError(422, str(error)) from None


def group_stats(state, model, window, last_id, by):
    """/stats?by= (groups.py): one pass over the rows, each observation read as the
    contract keeps it, with the true value and the prediction of the labelled ones."""
    report = REPORTS[model.task.name](model.task)
    table = window.table
    columns = [table.observation, table.true_value, *report.stored_columns(table)]
    chunks = (
        [(observation_of(row[1], model.contract), *row[2:]) for row in rows]
        for rows in window.chunks(last_id, state.service, *columns)
    )
    return state.groups.report(by, chunks, report.outcomes, pause=let_others_run)


def count_rules(version, rules):
    """The gauges of the rules, from what /stats?by= found over every row of the model."""
    if not rules:
        return
    statuses = Tally(rule["status"] for rule in rules)
    for status in RULE_STATUSES:
        RULES.labels(version, status).set(statuses[status])
    RULES_CHECKED.labels(version).set(time.time())


def describe_model(model, reported, profile):
    """The model served (its rows are read with its task, whichever version is reported)."""
    return {
        "version": model.version,
        "reported_version": reported,
        "task": model.task.describe(),
        "columns": model.columns,
        "held_out": (profile or {}).get("held_out"),  # the served model's, from notebook 1
    }


def window_bound(name, service):
    """?since= or ?until= as a naive UTC datetime (how created_at is stored), or None."""
    text = request.args.get(name)
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.upper())  # RFC 3339 allows "t" and "z"
        if moment.tzinfo is not None:  # without a zone, the time is taken as UTC
            moment = moment.astimezone(UTC).replace(tzinfo=None)
    except (ValueError, OverflowError):  # not a time, or out of range once in UTC
        raise service.ApiError(
            422, f"{name} must be a date and time in ISO 8601, such as 2026-01-31T12:00:00Z"
        ) from None
    return moment


def iso_or_none(moment):
    return None if moment is None else moment.isoformat() + "Z"


# ---------------------------------------------------------------------------------------
# Reading the rows: aggregated in SQL, or streamed in small chunks
# ---------------------------------------------------------------------------------------

CHUNK_ROWS = 2000  # observations parsed at a time: bounds memory, and lets others run
UNKNOWN_VERSION = "unknown"  # how /stats names the rows stored with no model_version


@dataclass(frozen=True)
class Window:
    """The stored rows with since <= created_at < until, of one model version (or any),
    and at most the id read first.

    Rows are only ever added, so bounding every query by the last id seen by the first
    one makes the counts, the metrics and the drift describe the same rows.
    """

    table: object
    since: datetime | None
    until: datetime | None
    version: str | None = None  # None: every version; UNKNOWN_VERSION: model_version NULL

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

    def chunks(self, last_id, service, *columns):
        """(id, *columns) of the rows, CHUNK_ROWS at a time, each chunk in its own query."""
        after = None
        while last_id is not None:
            table = self.table
            query = table.select(table.id, *columns).order_by(table.id).limit(CHUNK_ROWS)
            if after is not None:
                query = query.where(table.id > after)
            rows = service.in_transaction(partial(plain_rows, self.where(query, last_id)))
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


# ---------------------------------------------------------------------------------------
# Reading the stored values of a task
# ---------------------------------------------------------------------------------------


class ClassCodes:
    """The index in `classes` of a stored JSON class ('1', '"yes"', 'true'), or None.

    Memoised by text: a classifier's stored labels take only a handful of distinct texts,
    so 100,000 of them cost a dictionary lookup each, not a JSON parse.
    """

    def __init__(self, classes):
        self.classes, self.known = classes, {}

    def __call__(self, text):
        if text not in self.known:
            try:
                self.known[text] = self.of_value(json.loads(text))
            except (TypeError, ValueError, RecursionError):
                self.known[text] = None
        return self.known[text]

    def of_value(self, value):
        """A parsed value's index: 1 or 1.0 stand for the class 1, never true (tasks.py)."""
        for index, label in enumerate(self.classes):
            if tasks.same_kind(value, label) and value == label:
                return index
        return None


def parsed(text):
    """A stored JSON value, or None when there is none or it cannot be read."""
    try:
        return json.loads(text)
    except (TypeError, ValueError, RecursionError):
        return None


def is_number(value):
    return isinstance(value, int | float) and not isinstance(value, bool)


def finite(value):
    """A metric as JSON: a float, or None where scikit-learn found it undefined (NaN)."""
    value = float(value)
    return value if np.isfinite(value) else None


def no_labels_reason(task):
    field = task.truth_field
    return f"no labelled predictions in the window: send {field} with POST /update"


# ---------------------------------------------------------------------------------------
# Binary classifiers
# ---------------------------------------------------------------------------------------

BINARY_METRICS = [
    "roc_auc",
    "accuracy",
    "log_loss",
    "brier",
    "precision",
    "recall",
    "f1",
    "positive_rate",
]


class BinaryReport:
    """A binary classifier's rows: P(positive class) in `proba`, and the rule of the
    decision in force when each was answered in `threshold` and `positive_class`."""

    tallies_predictions = False  # the distribution comes from SQL, on the proba column

    def __init__(self, task):
        self.task, self.codes = task, ClassCodes(task.classes)

    def summary(self, window, last_id, service):
        table = window.table
        distribution = service.in_transaction(lambda: window.probability_bins(last_id))
        rows = service.in_transaction(
            lambda: window.labelled(last_id, table.proba, table.threshold, table.positive_class)
        )
        truth, score, decided, thresholds, _ = self.judge(rows)
        return {
            "labelled": len(rows),
            "labelled_left_out": len(rows) - len(truth),
            "metrics": binary_metrics(truth, score, decided, thresholds, self.task),
            "calibration": calibration(truth, score),
            "distribution": bins_of(distribution),
        }

    def stored_columns(self, table):
        """What a labelled row needs besides its true value (groups.py reads them too)."""
        return [table.proba, table.threshold, table.positive_class]

    def outcomes(self, rows):
        """({truth, score, decided}, kept: whether each row could be read) for groups.py."""
        truth, score, decided, _, kept = self.judge(rows)
        return {"truth": truth, "score": score, "decided": decided}, kept

    def judge(self, rows):
        """(truth, P, decision, threshold) arrays about the model's positive class, and
        whether each row was kept.

        Each row is decided as it was answered: p >= its threshold, for its positive class
        (rows from before the upgrade: 0.5, and P(classes[1]), which they answered).
        """
        true, proba, threshold, positive = array("q"), array("d"), array("d"), array("q")
        kept = []
        for true_text, p, t, positive_text in rows:
            true_index = self.codes(true_text)
            positive_index = 1 if positive_text is None else self.codes(positive_text)
            kept.append(not (true_index is None or positive_index is None or p is None))
            if not kept[-1]:
                continue  # a row of another model, with other classes
            true.append(true_index)
            proba.append(p)
            threshold.append(tasks.DEFAULT_THRESHOLD if t is None else t)
            positive.append(positive_index)
        proba, threshold = np.array(proba, dtype=float), np.array(threshold, dtype=float)
        turned = np.array(positive, dtype=np.int64) != self.task.positive_index
        truth = np.array(true, dtype=np.int64) == self.task.positive_index
        score = np.where(turned, 1 - proba, proba)
        decided = (proba >= threshold) != turned
        return truth, score, decided, threshold, kept


def binary_metrics(truth, score, decided, thresholds, task):
    """scikit-learn's metrics over the labelled rows; null, with the reason, when undefined."""
    names = [task.negative_class, task.positive_class]
    if len(truth) == 0:
        result, reasons = dict.fromkeys(BINARY_METRICS), [no_labels_reason(task)]
        matrix = np.zeros((2, 2), dtype=np.int64)
    else:
        both = len(set(truth.tolist())) == 2
        result = {
            "roc_auc": float(roc_auc_score(truth, score)) if both else None,
            "accuracy": float(accuracy_score(truth, decided)),
            "log_loss": float(log_loss(truth, score, labels=[False, True])),
            "brier": float(brier_score_loss(truth, score, pos_label=True)),
            # zero_division=NaN: undefined (no row decided positive...) rather than 0.
            "precision": finite(precision_score(truth, decided, zero_division=np.nan)),
            "recall": finite(recall_score(truth, decided, zero_division=np.nan)),
            "f1": finite(f1_score(truth, decided, zero_division=np.nan)),
            "positive_rate": float(decided.mean()),
        }
        reasons = undefined_binary(result, names, names[int(truth[0])])
        matrix = confusion_matrix(truth, decided, labels=[False, True])
    return result | {
        "confusion_matrix": {"labels": names, "matrix": matrix.tolist()},
        "thresholds": [
            {"threshold": float(t), "labelled": int(n)}
            for t, n in zip(*np.unique(thresholds, return_counts=True), strict=True)
        ],
        "reason": "; ".join(reasons) or None,
    }


def undefined_binary(result, names, first_class):
    """Why each null metric of binary_metrics is null."""
    reasons = []
    if result["roc_auc"] is None:
        reasons.append(
            "roc_auc needs labelled rows of both classes; so far every one is of class "
            f"{first_class}"
        )
    if result["precision"] is None:
        reasons.append(f"precision needs a labelled row decided {names[1]}; none is")
    if result["recall"] is None:
        reasons.append(f"recall needs a labelled row of class {names[1]}; none is")
    if result["f1"] is None:
        reasons.append(f"f1 needs a labelled row of class {names[1]} or decided so")
    return reasons


def probability_bins(probabilities):
    """The bin of each probability: floor(p * 10), with 1.0 in the last bin (9)."""
    return np.minimum(np.floor(probabilities * 10), 9).astype(int)


def bins_of(counts):
    return [{"low": k / 10, "high": (k + 1) / 10, "count": int(n)} for k, n in enumerate(counts)]


def calibration(hits, probabilities):
    """Per probability bin: the labelled rows, their mean probability, the observed rate
    (of the positive class, or for a multiclass model of a right top class)."""
    bins = probability_bins(probabilities)
    result = []
    for k in range(10):
        inside = bins == k
        count = int(inside.sum())
        result.append(
            {
                "low": k / 10,
                "high": (k + 1) / 10,
                "count": count,
                "mean_proba": float(probabilities[inside].mean()) if count else None,
                "observed_rate": float(hits[inside].mean()) if count else None,
            }
        )
    return result


# ---------------------------------------------------------------------------------------
# Multiclass classifiers
# ---------------------------------------------------------------------------------------


class MulticlassReport:
    """A multiclass classifier's rows: the label and every class's probability, in the
    `prediction` JSON. The distribution needs every row's, read with the observations."""

    tallies_predictions = True

    def __init__(self, task):
        self.task, self.codes = task, ClassCodes(task.classes)
        self.top_bins = np.zeros(10, dtype=np.int64)  # every row's top probability
        self.predicted = np.zeros(len(task.classes), dtype=np.int64)  # every row's label

    def read(self, text):
        """(index of the label, [probability of each class]) of a stored prediction, or None."""
        output = parsed(text)
        try:
            label = self.codes.of_value(output["label"])
            probabilities = [float(output["probabilities"][key]) for key in self.task.keys]
        except (TypeError, KeyError, ValueError):
            return None
        return None if label is None else (label, probabilities)

    def tally(self, texts):
        """Count a chunk of rows (any, labelled or not) by label and top probability."""
        read = [r for r in map(self.read, texts) if r is not None]
        if read:
            labels, matrix = zip(*read, strict=True)
            self.predicted += np.bincount(labels, minlength=len(self.task.classes))
            top = probability_bins(np.max(np.array(matrix, dtype=float), axis=1))
            self.top_bins += np.bincount(top, minlength=10)

    def stored_columns(self, table):
        return [table.prediction]

    def outcomes(self, rows):
        """({true, predicted, matrix}: class indices and probabilities, kept) of labelled
        rows (true value, prediction)."""
        true, predicted, matrix, kept = [], [], [], []
        for true_text, prediction_text in rows:
            true_index, read = self.codes(true_text), self.read(prediction_text)
            kept.append(true_index is not None and read is not None)
            if kept[-1]:
                true.append(true_index)
                predicted.append(read[0])
                matrix.append(read[1])
        true, predicted = np.array(true, dtype=np.int64), np.array(predicted, dtype=np.int64)
        matrix = np.array(matrix, dtype=float).reshape(len(true), len(self.task.classes))
        return {"true": true, "predicted": predicted, "matrix": matrix}, kept

    def summary(self, window, last_id, service):
        rows = service.in_transaction(lambda: window.labelled(last_id, window.table.prediction))
        found, _ = self.outcomes(rows)
        true, predicted, matrix = found["true"], found["predicted"], found["matrix"]
        return {
            "labelled": len(rows),
            "labelled_left_out": len(rows) - len(true),
            "metrics": self.metrics(true, predicted, matrix),
            "calibration": calibration(predicted == true, matrix.max(axis=1, initial=0)),
            "distribution": bins_of(self.top_bins),
        }

    def metrics(self, true, predicted, matrix):
        """accuracy, macro_f1, log_loss, the confusion matrix, and per class figures."""
        classes = self.task.classes
        everyone = list(range(len(classes)))
        reason = None if len(true) else no_labels_reason(self.task)
        if not len(true):
            result = dict.fromkeys(["accuracy", "macro_f1", "log_loss"])
            scores = np.full((3, len(classes)), np.nan)
            counts = np.zeros((len(classes),) * 2, dtype=np.int64)
        else:
            result = {
                "accuracy": float(accuracy_score(true, predicted)),
                "macro_f1": float(f1_score(true, predicted, average="macro")),
                "log_loss": float(log_loss(true, matrix, labels=everyone)),
            }
            # Per class: NaN (null) where a class is never predicted, or never true.
            scores = precision_recall_fscore_support(
                true, predicted, labels=everyone, zero_division=np.nan
            )[:3]
            counts = confusion_matrix(true, predicted, labels=everyone)
        return result | {
            "confusion_matrix": {"labels": classes, "matrix": counts.tolist()},
            "per_class": [
                {
                    "class": label,
                    "true": int(counts[k].sum()),  # rows: true classes
                    "predicted": int(counts[:, k].sum()),
                    "predicted_all": int(self.predicted[k]),
                    "precision": finite(scores[0][k]),
                    "recall": finite(scores[1][k]),
                    "f1": finite(scores[2][k]),
                }
                for k, label in enumerate(classes)
            ],
            "reason": reason,
        }


# ---------------------------------------------------------------------------------------
# Regressors
# ---------------------------------------------------------------------------------------

ERROR_QUANTILES = [0, 0.05, 0.25, 0.5, 0.75, 0.95, 1]


class RegressionReport:
    """A regressor's rows: its number(s) in the `prediction` JSON ({"value"} or one key per
    target), the truth in `true_value` (a number, or an object of them)."""

    tallies_predictions = False

    def __init__(self, task):
        self.task = task
        self.names = task.targets if task.width > 1 else ["value"]

    def numbers(self, value, keys):
        """The row's numbers, in target order, or None when they are not all there."""
        if keys is None:  # a single truth is a bare number
            return [float(value)] if is_number(value) else None
        if not isinstance(value, dict):
            return None
        found = [value.get(key) for key in keys]
        return [float(v) for v in found] if all(is_number(v) for v in found) else None

    def stored_columns(self, table):
        return [table.prediction]

    def outcomes(self, rows):
        """({truth, prediction}: rows x targets, kept) of labelled rows (truth, prediction)."""
        truths, predictions, kept = [], [], []
        truth_keys = None if self.task.width == 1 else self.task.targets
        for true_text, prediction_text in rows:
            truth = self.numbers(parsed(true_text), truth_keys)
            prediction = self.numbers(parsed(prediction_text), self.names)
            kept.append(truth is not None and prediction is not None)
            if kept[-1]:
                truths.append(truth)
                predictions.append(prediction)
        shape = (len(truths), len(self.names))
        truth = np.array(truths, dtype=float).reshape(shape)
        prediction = np.array(predictions, dtype=float).reshape(shape)
        return {"truth": truth, "prediction": prediction}, kept

    def summary(self, window, last_id, service):
        rows = service.in_transaction(lambda: window.labelled(last_id, window.table.prediction))
        found, _ = self.outcomes(rows)
        truth, prediction = found["truth"], found["prediction"]
        return {
            "labelled": len(rows),
            "labelled_left_out": len(rows) - len(truth),
            "metrics": self.metrics(truth, prediction),
            "calibration": None,  # no probabilities
            "distribution": None,
        }

    def metrics(self, truth, prediction):
        per_target = {
            name: regression_metrics(truth[:, k], prediction[:, k])
            for k, name in enumerate(self.names)
        }
        undefined = [name for name, found in per_target.items() if found["r2"] is None]
        reason = None
        if not len(truth):
            reason = no_labels_reason(self.task)
        elif undefined:
            reason = "r2 needs two labelled rows with different true values"
            if self.task.width > 1:
                reason += f" (so r2 is null for {', '.join(undefined)})"
        if self.task.width == 1:
            return per_target["value"] | {"reason": reason}
        return {"targets": per_target, "reason": reason}


def regression_metrics(truth, prediction):
    if not len(truth):
        return dict.fromkeys(["mae", "rmse", "r2", "errors"])
    r2 = None  # undefined on one row, or when every true value is the same
    if len(truth) >= 2 and np.ptp(truth) > 0:
        r2 = finite(r2_score(truth, prediction))
    return {
        "mae": float(mean_absolute_error(truth, prediction)),
        "rmse": float(root_mean_squared_error(truth, prediction)),
        "r2": r2,
        "errors": error_distribution(prediction - truth),
    }


def error_distribution(errors):
    """prediction - truth: its mean, quantiles, and 10 equal-width bins (numpy.histogram:
    from the smallest error to the largest, each [low, high) but the last [low, high])."""
    counts, edges = np.histogram(errors, bins=10)
    return {
        "mean": float(errors.mean()),
        "quantiles": [
            {"q": q, "value": float(v)}
            for q, v in zip(ERROR_QUANTILES, np.quantile(errors, ERROR_QUANTILES), strict=True)
        ],
        "bins": [
            {"low": float(low), "high": float(high), "count": int(n)}
            for low, high, n in zip(edges[:-1], edges[1:], counts, strict=True)
        ],
    }


REPORTS = {"binary": BinaryReport, "multiclass": MulticlassReport, "regression": RegressionReport}


# ---------------------------------------------------------------------------------------
# Drift
# ---------------------------------------------------------------------------------------

# The Python types a value of each kind (app.column_kind) may have in a stored body.
ALLOWED_TYPES = {
    "integer": {int},
    "float": {int, float, type(None)},
    "string": {str, type(None)},
    "boolean": {bool},
}


def bin_observations(window, last_id, model, profile, report):
    """Bin counts per column over the readable observations of the window.

    Returns (counts by column or None without a profile, readable rows, unreadable rows).
    An observation is readable when this model would accept it (app.validate_observation).
    Checking that is the cost of /stats, so a chunk whose columns all hold plain values of
    the right types (the usual case) is checked per column; any other chunk row by row.
    A report that tallies every row's prediction (multiclass) reads it in the same pass.
    """
    service = current_app.extensions["monitoring"].service
    counts = (
        {c: np.zeros(len(profile["columns"][c]["shares"]), dtype=np.int64) for c in model.columns}
        if profile
        else None
    )
    readable = unreadable = 0
    table = window.table
    extra = [table.prediction] if report.tallies_predictions else []
    for rows_read in window.chunks(last_id, service, table.observation, *extra):
        if extra:
            report.tally([row[2] for row in rows_read])
        columns, bad = readable_columns([row[1] for row in rows_read], model, service)
        unreadable += bad
        rows = len(next(iter(columns.values()))) if columns else 0
        readable += rows
        if counts is not None and rows:
            for column, values in columns.items():
                counts[column] += drift.count_bins(profile["columns"][column], values)
    return counts, readable, unreadable


def readable_columns(bodies, model, service):
    """({column: values of the readable rows}, number of unreadable rows) for a chunk."""
    observations = [observation_of(body, model.contract) for body in bodies]
    bad = sum(observation is None for observation in observations)
    observations = [observation for observation in observations if observation is not None]
    columns = {c: [obs.get(c) for obs in observations] for c in model.columns}
    if all(plain_values(values, model.kinds[c], model.dtypes[c]) for c, values in columns.items()):
        return columns, bad
    # Some value needs a closer look: validate row by row, exactly as /predict does.
    rows = []
    for observation in observations:
        try:
            rows.append(service.validate_observation(observation, model))
        except service.ApiError:
            bad += 1
    return {c: [row[i] for row in rows] for i, c in enumerate(model.columns)}, bad


def observation_of(body, contract):
    """The object of features of a stored body, wherever the contract keeps it, or None
    (not JSON, not an object)."""
    try:
        payload = json.loads(body)
    except (TypeError, ValueError, RecursionError):
        return None
    observation = contract.observation_of(payload) if isinstance(payload, dict) else None
    return observation if isinstance(observation, dict) else None


def plain_values(values, kind, dtype):
    """Whether validate_value would accept every value unchanged (a quick, sufficient test)."""
    if not {type(value) for value in values} <= ALLOWED_TYPES[kind]:
        return False
    if kind == "integer" and values:
        info = np.iinfo(dtype)
        return info.min <= min(values) and max(values) <= info.max
    if kind == "float":
        try:
            numbers = np.array(values, dtype=float)
        except OverflowError:  # an integer too large for a float
            return False
        return not (np.abs(numbers[~np.isnan(numbers)]) > np.finfo(dtype).max).any()
    return True


def drift_report(state, counts, readable, count):
    """({column: {"psi", "bins"}} or None, None or why there is no drift)."""
    if state.profile is None:
        return None, state.profile_note
    if count == 0:
        return None, "no predictions in the window"
    if readable == 0:
        return None, "no readable observations in the window"
    report = {}
    for column, column_counts in counts.items():
        profile = state.profile["columns"][column]
        shares = column_counts / readable
        report[column] = {
            "psi": drift.population_stability_index(
                profile["shares"], shares, state.profile.get("share_floor", drift.SHARE_FLOOR)
            ),
            "bins": [
                {"bin": label, "training": training, "window": float(share), "count": int(n)}
                for label, training, share, n in zip(
                    drift.bin_labels(profile), profile["shares"], shares, column_counts, strict=True
                )
            ],
        }
    return report, None
