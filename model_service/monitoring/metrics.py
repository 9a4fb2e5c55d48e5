"""GET /metrics: counters and histograms for Prometheus, across every gunicorn worker.

    metrics.init_app(app)   # the route, the timing of every request, the signals counted

Nothing else in the service knows these counters: they listen to the signals the request's
steps send (signals.py). The gauges of api.toml's rules are those the last /stats?by= over
every stored row of the model set (count_rules, called by stats.py).
"""

import os
import time
from collections import Counter as Tally

from flask import Blueprint, Response, g, request
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

from model_service.quota import predictions_not_stored, store_measured
from model_service.rate_limits import request_refused
from model_service.signals import (
    batch_scored,
    challenger_scored,
    database_unavailable,
    predictions_answered,
    values_replaced,
)
from model_service.store import current_store
from model_service.tasks import json_key
from model_service.web import require_admin

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
CHALLENGER_SCORINGS = Counter(
    "challenger_scorings",
    "Answered rows the challenger (CHALLENGER_DIR) scored in the shadow, by challenger "
    "version and outcome: scored, failed (its pipeline raised, or the row was not stored), "
    "skipped (its queue was full)",
    ["challenger_version", "outcome"],
    registry=registry,
)
REFUSED = Counter(
    "requests_refused",
    "Requests refused at once (rate_limits.py), by reason: rate_limit (429, past RATE_LIMIT), "
    "overloaded (503, past MAX_QUEUED_PREDICTIONS)",
    ["reason"],
    registry=registry,
)
NOT_STORED = Counter(
    "predictions_not_stored",
    'Predictions answered but not stored: the store was full ([store] when_full = "answer")',
    registry=registry,
)
# The store's size (quota.py), as the last worker to measure it found it.
STORE_BYTES = Gauge(
    "database_store_bytes",
    "The bytes the store takes (SQLite: the file and its WAL; PostgreSQL: its tables)",
    multiprocess_mode="mostrecent",
    registry=registry,
)
STORE_ROWS = Gauge(
    "database_store_rows",
    "The stored predictions (PostgreSQL: its estimate, pg_class.reltuples)",
    multiprocess_mode="mostrecent",
    registry=registry,
)
STORE_QUOTA_BYTES = Gauge(
    "database_quota_bytes",
    "DATABASE_QUOTA_MB in bytes (0: no quota)",
    multiprocess_mode="mostrecent",
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

blueprint = Blueprint("metrics", __name__)


def init_app(app):
    """Register /metrics, time every request, and count what the signals say."""
    app.register_blueprint(blueprint)
    app.before_request(start_timer)
    app.after_request(count_request)
    # Connecting the same function twice is a no-op: many apps (tests) count once.
    predictions_answered.connect(count_predictions)
    batch_scored.connect(count_batch)
    values_replaced.connect(count_replaced)
    challenger_scored.connect(count_challenger)
    database_unavailable.connect(count_database_error)
    request_refused.connect(count_refused)
    predictions_not_stored.connect(count_not_stored)
    store_measured.connect(gauge_store)


@blueprint.get("/metrics")
def serve_metrics():
    require_admin()
    current_store().quota.report()  # the store's size, measured if not for a few seconds
    if MULTIPROCESS:
        collected = CollectorRegistry()
        multiprocess.MultiProcessCollector(collected)
    else:
        collected = registry
    return Response(generate_latest(collected), headers={"Content-Type": CONTENT_TYPE_LATEST})


# ---------------------------------------------------------------------------------------
# What is counted
# ---------------------------------------------------------------------------------------


def count_predictions(model, outcomes, **_):
    """predictions_answered: a dict is an answered output (tasks.py), an ApiError is not."""
    answered = [outcome for outcome in outcomes if isinstance(outcome, dict)]
    PREDICTIONS.labels(model.version).inc(len(answered))
    if model.task.name == "binary":  # the other tasks answer no single probability
        histogram = PROBABILITIES.labels(model.version)
        for output in answered:
            histogram.observe(output["probability"])
    if model.task.name in ("binary", "multiclass"):  # labels of a regressor are numbers
        labels = Tally(json_key(output["label"]) for output in answered)
        for label, count in labels.items():
            PREDICTED_LABELS.labels(model.version, label).inc(count)


def count_replaced(model, replaced):
    """values_replaced: the {field: why} of each answered request with a replaced value."""
    for field, count in Tally(field for fields in replaced for field in fields).items():
        REPLACED_VALUES.labels(model.version, field).inc(count)


def count_challenger(challenger, **outcomes):
    """challenger_scored: scored=, failed=, skipped= rows of a batch (challenger.py)."""
    for outcome, count in outcomes.items():
        CHALLENGER_SCORINGS.labels(challenger.version, outcome).inc(count)


def count_batch(_app, size):
    BATCH_SIZES.observe(size)


def count_database_error(_app, error):
    DATABASE_ERRORS.labels(type(error).__name__).inc()


def count_refused(_app, reason):
    REFUSED.labels(reason).inc()


def count_not_stored(_quota, count):
    NOT_STORED.inc(count)


def gauge_store(_quota, size, rows, quota_bytes):
    if size is not None:
        STORE_BYTES.set(size)
    if rows is not None:
        STORE_ROWS.set(rows)
    STORE_QUOTA_BYTES.set(quota_bytes or 0)


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


def count_rules(version, rules):
    """The gauges of the rules, from what /stats?by= found over every row of the model."""
    if not rules:
        return
    statuses = Tally(rule["status"] for rule in rules)
    for status in RULE_STATUSES:
        RULES.labels(version, status).set(statuses[status])
    RULES_CHECKED.labels(version).set(time.time())
