"""A scikit-learn model behind an HTTP API: the tutorial's app.py, grown up.

Read it top to bottom; it is the story of one request. The tutorial's parts are all here,
by their names:

1. The model: the three artifacts notebook 1 writes, pipeline.pickle, columns.json and
   dtypes.pickle, loaded and checked at start-up (and api.toml, when a brief needs it).
2. The database: the `Prediction` model, one row per prediction, bound through
   playhouse.db_url to DATABASE_URL (SQLite's predictions.db when it is unset).
3. POST /predict: read the observation, predict, store, answer {"proba": ...}.
4. POST /update: attach the true class to a stored prediction, answer the row.
5. GET /list-db-contents: the stored rows (with ADMIN_TOKEN, a page at a time).
6. create_app: settings, model, database, routes; then each capability of the engine
   (model_service/: /health, /stats and /metrics, /export, /predict-batch, the pages / and
   /monitor, the OpenAPI document), wired in by one call each.

The steps themselves (parse, score, store) live in the package model_service, which a
student never needs to edit: its __init__ says which module does what.

Run it with `make run` (gunicorn, see gunicorn.conf.py) or `python app.py`.
"""

import json
import logging
import os
import sys
from functools import partial

import gevent
from flask import Flask, current_app, jsonify
from gevent import monkey
from peewee import (
    BigAutoField,
    BigIntegerField,
    DatabaseProxy,
    DateTimeField,
    DoubleField,
    IntegerField,
    Model,
    TextField,
)

from model_service import (
    api_keys,
    challenger,
    export,
    health,
    monitoring,
    openapi,
    pages,
    predict_batch,
    privacy,
    quota,
    rate_limits,
    security_headers,
)
from model_service.artifacts import load_model
from model_service.batching import MicroBatcher
from model_service.contract import ContractError, check_against_routes
from model_service.database import DATABASE_ERRORS, open_database
from model_service.errors import ApiError, StartupError, register_error_handlers
from model_service.parsing import parse_id, parse_prediction_request, parse_truth, read_json_body
from model_service.settings import settings_from_environment
from model_service.signals import batch_scored
from model_service.store import Store, prediction_to_dict, score_and_store, stored_output
from model_service.tasks import true_class_of
from model_service.web import add_route, header_list, query_integer, require_admin, tag_requests

log = logging.getLogger("app")

# ---------------------------------------------------------------------------------------
# 2. The database: one row per prediction
# ---------------------------------------------------------------------------------------

# create_app binds it to DATABASE_URL (playhouse.db_url); the proxy lets the model be
# declared before the URL is read, and tests bind it to a database of their own.
database = DatabaseProxy()


class Prediction(Model):
    """One answered request. The tutorial's columns keep their meaning on every row:
    observation_id (an integer id), observation (the body as sent), proba (a binary
    classifier's probability) and true_class (an integer or boolean label, from /update).
    The others let any brief and any model be stored; JSON columns hold any JSON value.
    """

    id = BigAutoField()
    # The client's id as the row's key, in text: '42' (for 42 and "42"), '"abc"', '["a", 3]'.
    observation_key = TextField(unique=True, null=True)
    observation_id = BigIntegerField(unique=True, null=True)  # the tutorial's: an integer id
    observation = TextField()  # the tutorial's: the request body, exactly as received
    model_version = TextField(null=True)  # which model answered (a hash of pipeline.pickle)
    prediction = TextField(null=True)  # JSON: what the model produced (model_service/tasks.py)
    # The tutorial's proba: P(positive class) of a binary classifier, in double precision
    # (PostgreSQL's FloatField would round it), with the rule of its decision.
    proba = DoubleField(null=True)
    threshold = DoubleField(null=True)
    positive_class = TextField(null=True)  # JSON
    # JSON {field: why} of the values treated as missing ([predict] invalid = "as_missing").
    replaced = TextField(null=True)
    true_value = TextField(null=True)  # JSON: the true label or number(s), from /update
    true_class = IntegerField(null=True)  # the tutorial's: the true class, from /update
    created_at = DateTimeField()  # UTC
    # CHALLENGER_DIR: what the challenger said of this row, in the shadow (never answered).
    challenger_version = TextField(null=True)
    challenger_prediction = TextField(null=True)  # JSON, as prediction
    rolled_up = IntegerField(null=True)  # which release of /stats's sums counted it (rollups.py)
    # API_KEYS: the name of the key that wrote the row (api_keys.py); NULL when keys were off.
    api_key_name = TextField(null=True)

    class Meta:
        database = database


# ---------------------------------------------------------------------------------------
# 3. POST /predict
# ---------------------------------------------------------------------------------------


def predict():
    """POST /predict (or the brief's route): {"id", "observation"} -> {"proba"}, stored."""
    model = current_app.config["MODEL"]
    body, payload = read_json_body()
    prediction_request = parse_prediction_request(body, payload, model)
    # Requests that arrive together are scored and stored together (model_service/batching).
    outcome = current_app.extensions["batcher"].submit(prediction_request)
    if isinstance(outcome, ApiError):  # 409: the id is stored with another observation
        raise outcome
    response = jsonify(model.contract.predict_answer(outcome, payload, model.task))
    if prediction_request.replaced:  # invalid = "as_missing": the answer keeps the brief's shape
        response.headers["X-Treated-As-Missing"] = header_list(prediction_request.replaced)
    return response


# ---------------------------------------------------------------------------------------
# 4. POST /update
# ---------------------------------------------------------------------------------------


def update():
    """POST /update (or the brief's route): {"id", "true_class"} -> the stored row."""
    model = current_app.config["MODEL"]
    _, payload = read_json_body()
    key, _ = parse_id(payload, model)
    label = parse_truth(payload, model)
    # A classifier's integer or boolean label goes to the tutorial's true_class too; a
    # regressor's number (even 3) does not. A corrected label replaces both.
    true_class = true_class_of(label) if model.task.name != "regression" else None

    store = current_app.extensions["store"]
    prediction = store.label(key, true_value=json.dumps(label), true_class=true_class)
    if prediction is None:
        raise ApiError(404, f"Observation ID {key} does not exist")
    row = prediction_to_dict(prediction, model)
    return jsonify(model.contract.update_answer(row, stored_output(prediction, model), payload))


# ---------------------------------------------------------------------------------------
# 5. GET /list-db-contents
# ---------------------------------------------------------------------------------------


def list_db_contents():
    """Stored rows, newest first: ?limit=100&before_id=<id of the last row seen>.

    The rows hold what clients sent (personal data): only with the admin token.
    """
    require_admin()
    limit = query_integer("limit", 100, low=1, high=1000)
    before_id = query_integer("before_id", None)

    query = Prediction.select().order_by(Prediction.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(Prediction.id < before_id)
    model = current_app.config["MODEL"]
    store = current_app.extensions["store"]
    rows = store.in_transaction(lambda: [prediction_to_dict(p, model) for p in query])
    next_before_id = rows[-1]["id"] if len(rows) == limit else None
    return jsonify(predictions=rows, next_before_id=next_before_id)


# ---------------------------------------------------------------------------------------
# 6. The application factory
# ---------------------------------------------------------------------------------------


def create_app(settings=None):
    """Build the app; tests pass settings (DATABASE_URL, MODEL_DIR...) to override."""
    app = Flask(__name__)
    app.json.sort_keys = False  # answers keep the model's order: its classes, its targets
    app.config.update(settings_from_environment())
    app.config.update(settings or {})
    # 1. The model: pipeline.pickle, columns.json, dtypes.pickle (and api.toml) of MODEL_DIR.
    app.config["MODEL"] = load_model(
        app.config["MODEL_DIR"], app.config["THRESHOLD"], app.config["POSITIVE_CLASS"]
    )
    # 2. The database, and the table: created, or upgraded in place from an earlier release.
    connect_database(app)
    store = app.extensions["store"] = Store(Prediction)
    privacy.init_app(app)  # api.toml's [store]: fields never stored, or stored hashed
    quota.init_app(app)  # DATABASE_QUOTA_MB: a warning at 80 %, [store] when_full at 100 %
    try:
        store.upgrade()
    except DATABASE_ERRORS as error:
        raise StartupError(f"Cannot reach the database to create the table: {error}") from None
    finally:
        store.discard_connections()  # gunicorn forks workers next: they must not share it
    challenger.init_app(app)  # CHALLENGER_DIR: a second model scores every answer, in the shadow
    start_batching(app, store)

    @app.teardown_request
    def close_database(_error):
        if not database.is_closed():
            database.close()  # with a pool: back to the pool

    tag_requests(app)  # X-Request-ID on every answer and log line
    security_headers.init_app(app)  # nosniff, Referrer-Policy; CORS_ORIGINS' preflights
    register_error_handlers(app)  # every error is JSON {"error": ...}, never a traceback
    rate_limits.init_app(app)  # RATE_LIMIT (per API key), MAX_QUEUED_PREDICTIONS: refused at once
    register_routes(app)
    return app


def register_routes(app):
    """The engine's capabilities, one call each; then /predict and /update, where the
    brief's api.toml may name other routes (none may take a route served before)."""
    health.init_app(app)  # GET /health
    monitoring.init_app(app)  # GET /stats and GET /metrics, and the counters behind them
    pages.init_app(app)  # GET / and GET /monitor (templates/, static/)
    openapi.init_app(app)  # GET /openapi.yaml and /openapi.json, from the model and contract
    app.add_url_rule("/list-db-contents", view_func=list_db_contents)
    export.init_app(app)  # GET /export: the stored rows as one table, streamed (CSV, JSON lines)
    contract = app.config["MODEL"].contract
    taken = {rule.rule.rstrip("/") or "/" for rule in app.url_map.iter_rules()}
    try:
        check_against_routes(contract, taken)
    except ContractError as error:
        raise StartupError(str(error)) from None
    add_route(app, contract.predict_path, predict)  # with and without the final slash
    add_route(app, contract.update_path, update)
    predict_batch.init_app(app)  # POST /predict-batch, or [batch] path
    api_keys.init_app(app)  # API_KEYS: the routes above that score or label need a key


def connect_database(app):
    """Bind the Prediction model's database to DATABASE_URL (sqlite:///... or postgresql://)."""
    url = app.config["DATABASE_URL"]
    try:
        database.initialize(open_database(url, app.config["DATABASE_TIMEOUT"]))
    except Exception as error:  # the message says what was wrong, never the URL (password)
        raise StartupError(
            f"DATABASE_URL (scheme {url.split('://')[0]!r}) is not a database URL this service "
            f"can use ({type(error).__name__}: {error}); write it as sqlite:///predictions.db "
            "or postgresql://user:password@host:5432/database."
        ) from None


def start_batching(app, store):
    """The micro-batcher that /predict submits to: one per process.

    Under gunicorn's gevent workers (gunicorn.conf.py patches the standard library), a
    leader lets every greenlet that is ready to run join its batch first (gevent.idle).
    """
    cooperative = monkey.is_module_patched("threading")
    app.extensions["batcher"] = MicroBatcher(
        partial(score_and_store, model=app.config["MODEL"], store=store),
        max_batch_size=app.config["BATCH_MAX_SIZE"],
        gather=gevent.idle if cooperative else None,
        on_batch=lambda size: batch_scored.send(app, size=size),
        wait_timeout=3 * app.config["DATABASE_TIMEOUT"] + 5,  # a batch's database work, retried
    )


def create_app_or_exit():
    """Stop with one clear sentence, not a page of traceback, when start-up fails."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        return create_app()
    except StartupError as error:
        print(f"Cannot start: {error}", file=sys.stderr)
        sys.exit(1)


app = create_app_or_exit()

if __name__ == "__main__":
    # Flask's development server, without the debugger: it would run code for anyone.
    app.run(host="0.0.0.0", port=int(os.environ.get("PORT", 5000)), debug=False)
