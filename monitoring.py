"""Monitoring: how the model does in production, from the traffic the service stores.

* `GET /stats`: the model's quality (ROC AUC, accuracy, log loss, Brier score) over the
  predictions whose true class arrived with /update, its calibration, the distribution of
  its probabilities, and the drift of every feature against the training data (drift.py),
  optionally in a time window (?since=...&until=...). Computed from the stored rows.
* `GET /metrics`: counters and histograms for Prometheus, across every gunicorn worker.

Both answer only with `Authorization: Bearer <ADMIN_TOKEN>`, like /list-db-contents.
app.py wires it in create_app with init_app(app); nothing in app.py knows the metrics: they
listen to the signals app.py sends (predictions_answered, batch_scored, database_unavailable).
"""

import json
import logging
import os
import sys
import time
from array import array
from dataclasses import dataclass
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
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss, roc_auc_score

import drift

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
    "Predictions answered with a probability (by /predict and /predict-batch)",
    ["model_version"],
    registry=registry,
)
PROBABILITIES = Histogram(
    "model_prediction_probability",
    "The probabilities answered",
    ["model_version"],
    buckets=[k / 10 for k in range(1, 11)],
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


def count_predictions(model, outcomes):
    """predictions_answered: a float is an answered probability, an ApiError is not."""
    probabilities = [outcome for outcome in outcomes if isinstance(outcome, float)]
    PREDICTIONS.labels(model.version).inc(len(probabilities))
    histogram = PROBABILITIES.labels(model.version)
    for probability in probabilities:
        histogram.observe(probability)


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


def init_app(app):
    """Register /stats and /metrics, time every request, and listen to app.py's signals."""
    # The module whose create_app built this app: its Prediction table and its signals are
    # the ones in use, also under `python app.py`, where that module is __main__, not app.
    service = sys.modules[app.import_name]
    profile, note = load_profile(Path(app.config["MODEL_DIR"]), app.config["MODEL"])
    app.extensions["monitoring"] = Monitoring(service, profile, note)
    app.register_blueprint(monitoring)
    app.before_request(start_timer)
    app.after_request(count_request)
    # Connecting the same function twice is a no-op: many apps (tests) count once.
    service.predictions_answered.connect(count_predictions)
    service.batch_scored.connect(count_batch)
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
    since, until = window_bound("since", service), window_bound("until", service)
    if since is not None and until is not None and since > until:
        raise service.ApiError(422, "until must not be earlier than since")
    window = Window(service.Prediction, since, until)

    count, last_id, distribution = service.in_transaction(window.count_and_distribution)
    labels, probabilities = service.in_transaction(lambda: window.labelled(last_id))
    counts, readable, unreadable = bin_observations(window, last_id, model, state.profile)
    drift_by_column, drift_note = drift_report(state, counts, readable, count)
    return jsonify(
        model={
            "version": model.version,
            "columns": model.columns,
            "held_out": (state.profile or {}).get("held_out"),
        },
        window={"since": iso_or_none(since), "until": iso_or_none(until)},
        predictions=count,
        labelled=len(labels),
        metrics=quality_metrics(labels, probabilities, model.classes),
        calibration=calibration(labels == model.classes[1], probabilities),
        distribution=[
            {"low": k / 10, "high": (k + 1) / 10, "count": n} for k, n in enumerate(distribution)
        ],
        drift=drift_by_column,
        drift_note=drift_note,
        unreadable_observations=unreadable,
    )


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


class Window:
    """The stored rows with since <= created_at < until, and at most the id read first.

    Rows are only ever added, so bounding every query by the last id seen by the first
    one makes the counts, the metrics and the drift describe the same rows.
    """

    def __init__(self, table, since, until):
        self.table, self.since, self.until = table, since, until

    def where(self, query, last_id):
        table = self.table
        query = query.where(table.id <= last_id) if last_id is not None else query
        if self.since is not None:
            query = query.where(table.created_at >= self.since)
        if self.until is not None:
            query = query.where(table.created_at < self.until)
        return query

    def count_and_distribution(self):
        """(rows, their last id, rows per probability bin [k/10, (k+1)/10)), in one query.

        SQL counts the rows below each bin's upper edge (proba * 10 < k, which is
        floor(proba * 10) < k); the bins are the differences. 1.0 falls in the last bin.
        """
        proba = self.table.proba
        below = [fn.SUM(Case(None, [(proba * 10 < k, 1)], 0)) for k in range(1, 10)]
        query = self.where(
            self.table.select(fn.COUNT(self.table.id), fn.MAX(self.table.id), *below), None
        )
        count, last_id, *cumulative = query.tuples().get()
        cumulative = [0, *(int(c or 0) for c in cumulative), int(count)]
        return int(count), last_id, [high - low for low, high in pairwise(cumulative)]

    def labelled(self, last_id):
        """(true classes, probabilities) of the labelled rows, as two compact arrays."""
        if last_id is None:
            return np.array([], dtype=np.int64), np.array([], dtype=float)
        table = self.table
        query = self.where(
            table.select(table.true_class, table.proba).where(table.true_class.is_null(False)),
            last_id,
        )
        labels, probabilities = array("q"), array("d")
        for label, probability in plain_rows(query):
            labels.append(label)
            probabilities.append(probability)
        return np.array(labels, dtype=np.int64), np.array(probabilities, dtype=float)

    def observation_chunks(self, last_id, service):
        """The stored request bodies, CHUNK_ROWS at a time, each chunk in its own query."""
        after = None
        while last_id is not None:
            table = self.table
            query = table.select(table.id, table.observation).order_by(table.id).limit(CHUNK_ROWS)
            if after is not None:
                query = query.where(table.id > after)
            rows = service.in_transaction(partial(plain_rows, self.where(query, last_id)))
            if not rows:
                return
            yield [body for _, body in rows]
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
# Quality metrics and calibration
# ---------------------------------------------------------------------------------------


def quality_metrics(labels, probabilities, classes):
    """scikit-learn's metrics over the labelled rows; null, with the reason, when undefined.

    `probabilities` are those of the model's second class, classes[1] (what the service
    answers). Accuracy counts a probability above 0.5 as that class, as predict does.
    """
    if len(labels) == 0:
        reason = "no labelled predictions in the window: send true classes with POST /update"
        return dict.fromkeys(["roc_auc", "accuracy", "log_loss", "brier"]) | {"reason": reason}
    positive = (labels == classes[1]).astype(int)
    result = {
        "roc_auc": None,
        "accuracy": float(accuracy_score(positive, (probabilities > 0.5).astype(int))),
        "log_loss": float(log_loss(positive, probabilities, labels=[0, 1])),
        "brier": float(brier_score_loss(positive, probabilities, pos_label=1)),
        "reason": None,
    }
    if len(set(positive.tolist())) < 2:
        result["reason"] = (
            "roc_auc needs labelled rows of both classes; so far every one is of class "
            f"{classes[positive[0]]}"
        )
    else:
        result["roc_auc"] = float(roc_auc_score(positive, probabilities))
    return result


def probability_bins(probabilities):
    """The bin of each probability: floor(p * 10), with 1.0 in the last bin (9)."""
    return np.minimum(np.floor(probabilities * 10), 9).astype(int)


def calibration(positive, probabilities):
    """Per probability bin: the labelled rows, their mean probability, the observed rate."""
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
                "observed_rate": float(positive[inside].mean()) if count else None,
            }
        )
    return result


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


def bin_observations(window, last_id, model, profile):
    """Bin counts per column over the readable observations of the window.

    Returns (counts by column or None without a profile, readable rows, unreadable rows).
    An observation is readable when this model would accept it (app.validate_observation).
    Checking that is the cost of /stats, so a chunk whose columns all hold plain values of
    the right types (the usual case) is checked per column; any other chunk row by row.
    """
    service = current_app.extensions["monitoring"].service
    counts = (
        {c: np.zeros(len(profile["columns"][c]["shares"]), dtype=np.int64) for c in model.columns}
        if profile
        else None
    )
    readable = unreadable = 0
    for bodies in window.observation_chunks(last_id, service):
        columns, bad = readable_columns(bodies, model, service)
        unreadable += bad
        rows = len(next(iter(columns.values()))) if columns else 0
        readable += rows
        if counts is not None and rows:
            for column, values in columns.items():
                counts[column] += drift.count_bins(profile["columns"][column], values)
    return counts, readable, unreadable


def readable_columns(bodies, model, service):
    """({column: values of the readable rows}, number of unreadable rows) for a chunk."""
    observations, bad = [], 0
    for body in bodies:
        try:
            observation = json.loads(body)["observation"]
        except (ValueError, KeyError, TypeError, RecursionError):
            bad += 1
            continue
        if isinstance(observation, dict):
            observations.append(observation)
        else:
            bad += 1
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
