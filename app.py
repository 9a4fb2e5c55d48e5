"""A scikit-learn model behind an HTTP API.

Read this file top to bottom: it is the service, in the order a request meets it. The
steps of one request (parse, validate, predict, store, answer) are in serving.py, which
every route and every capability shares; this file sets them up and routes to them.

1. Settings come from environment variables, with defaults that work on a laptop.
2. At start-up the three artifacts written by notebook 1 are loaded and checked:
   `pipeline.pickle` (the fitted pipeline), `columns.json` (the feature names, in order)
   and `dtypes.pickle` (the training dtypes); then what the model does (tasks.py) and the
   HTTP contract it is served with (api.toml, contract.py). A mismatch stops the service
   right away, with one sentence that says what to fix, instead of failing later.
3. The database: every prediction is stored in the `Prediction` table (serving.py), so that
   the true outcome can be attached later with /update; the table is created, or upgraded
   in place from an earlier release (migrations.py).
4-7. A request goes through small named steps (serving.py): parse the JSON body, validate
   the observation against the training dtypes, predict, store, format the answer.
   Requests in flight at the same time are predicted and stored together: /predict hands
   its request to a micro-batcher (batching.py), which runs score_and_store on them all.
8. Routes: POST /predict, POST /update (or the brief's own routes, from api.toml), GET
   /health, GET /list-db-contents (admin only), GET /openapi.yaml.
9. Errors: every error of the API is JSON, {"error": "<what is wrong>"}.
10. The factory, create_app, registers each other capability, a module of its own that
   takes its steps from serving.py (never from this file): POST /predict-batch
   (predict_batch.py), GET /stats and GET /metrics (monitoring.py), and the web pages GET
   / and GET /monitor (pages.py).

Run it with `gunicorn app:app` (see gunicorn.conf.py) or `python app.py`.
"""

import hashlib
import json
import logging
import os
import pickle
import platform
import select
import sys
import uuid
import warnings
from dataclasses import dataclass
from functools import partial
from importlib.metadata import version as package_version
from pathlib import Path
from urllib.parse import quote

import gevent
import joblib
import numpy as np
import pandas as pd
import peewee
import psycopg2.extensions
import sklearn
from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from gevent import monkey
from playhouse.db_url import connect
from sklearn.exceptions import InconsistentVersionWarning
from werkzeug.exceptions import HTTPException

import migrations
import monitoring
import openapi_spec
import pages
import predict_batch
from batching import BatchAbandoned, BatchTimeout, MicroBatcher
from contract import ContractError, build_contract, check_against_routes, read_contract_file
from serving import (
    DATABASE_ERRORS,
    ApiError,
    Prediction,
    PredictionRequest,  # noqa: F401 (reached as app.X by tests and monitoring.py)
    StartupError,
    add_route,
    batch_scored,
    check_missing_values,
    database,
    database_unavailable,
    discard_connections,
    in_transaction,
    parse_id,
    parse_prediction_request,
    parse_truth,
    predict_outputs,  # noqa: F401
    prediction_to_dict,
    predictions_answered,  # noqa: F401
    query_integer,
    read_json_body,
    require_admin,
    score_and_store,
    stored_output,
    true_class_of,
    validate_observation,  # noqa: F401
    values_replaced,  # noqa: F401 (monitoring.py listens to it)
)
from tasks import TaskError, read_task

APP_DIR = Path(__file__).resolve().parent
# Reported by /health: a pickle only predicts right under the versions it was made with.
LIBRARY_VERSIONS = {
    "python": platform.python_version(),
    "scikit-learn": sklearn.__version__,
    "pandas": pd.__version__,
    "numpy": np.__version__,
    "flask": package_version("flask"),
    "peewee": peewee.__version__,
}
log = logging.getLogger("app")

# ---------------------------------------------------------------------------------------
# 1. Settings
# ---------------------------------------------------------------------------------------


def settings_from_environment():
    """Every setting the service reads, with its default (see .env.example)."""
    return {
        "DATABASE_URL": os.environ.get("DATABASE_URL") or "sqlite:///predictions.db",
        "MODEL_DIR": os.environ.get("MODEL_DIR") or str(APP_DIR),
        "ADMIN_TOKEN": os.environ.get("ADMIN_TOKEN", ""),
        "MAX_CONTENT_LENGTH": number_from_environment("MAX_REQUEST_BYTES", 64 * 1024, int),
        "DATABASE_TIMEOUT": number_from_environment("DATABASE_TIMEOUT", 5, float),
        "BATCH_MAX_SIZE": number_from_environment("BATCH_MAX_SIZE", 64, int),
        # Binary classifiers (tasks.py): the decision is probability >= THRESHOLD, for the
        # class POSITIVE_CLASS. Unset: 0.5, and the greater of the two labels (1, true).
        "THRESHOLD": number_from_environment("THRESHOLD", None, float),
        "POSITIVE_CLASS": os.environ.get("POSITIVE_CLASS") or None,
        # POST /predict-batch (predict_batch.py): larger bodies than /predict's.
        "PREDICT_BATCH_MAX_BYTES": number_from_environment(
            "PREDICT_BATCH_MAX_BYTES", 4 * 1024 * 1024, int
        ),
        "PREDICT_BATCH_MAX_OBSERVATIONS": number_from_environment(
            "PREDICT_BATCH_MAX_OBSERVATIONS", 1000, int
        ),
    }


def number_from_environment(name, default, convert):
    text = os.environ.get(name)
    if not text:
        return default
    try:
        return convert(text)
    except ValueError:
        raise StartupError(f"The environment variable {name}={text!r} must be a number.") from None


# ---------------------------------------------------------------------------------------
# 2. Load and check the artifacts
# ---------------------------------------------------------------------------------------


@dataclass
class LoadedModel:
    """The loaded model and what the service needs to know about its input."""

    pipeline: object
    columns: list  # feature names, in training order
    dtypes: dict  # column -> training dtype
    kinds: dict  # column -> "integer", "float", "boolean" or "string" (how to validate)
    task: object  # what it predicts and how it answers (tasks.py): binary, multiclass...
    version: str  # a short hash of pipeline.pickle: stored with every row it answers
    contract: object  # how it is served over HTTP: routes, ids, answers (contract.py)


def load_model(model_dir, threshold=None, positive_class=None):
    """Load the artifacts and check they agree; read the task, and the contract (api.toml).

    `threshold` and `positive_class` (the settings THRESHOLD and POSITIVE_CLASS) win over
    api.toml's [model] table: a Railway variable changes them without a new commit.
    """
    model_dir = Path(model_dir)
    columns = load_columns(model_dir / "columns.json")
    dtypes = load_dtypes(model_dir / "dtypes.pickle")
    pipeline = load_pipeline(model_dir / "pipeline.pickle")

    if sorted(dtypes) != sorted(columns):
        raise StartupError(
            f"columns.json and dtypes.pickle in {model_dir} name different columns "
            f"({sorted(set(columns) ^ set(dtypes))}); write both again with notebook 1."
        )
    trained_on = list(getattr(pipeline, "feature_names_in_", columns))
    if trained_on != columns:
        raise StartupError(
            f"pipeline.pickle was trained on the columns {trained_on} but columns.json "
            f"lists {columns}; write the three artifacts again with notebook 1."
        )
    kinds = {column: column_kind(column, dtypes[column]) for column in columns}
    try:
        tables = read_contract_file(model_dir)
        brief = tables.get("model", {})
        task = read_task(
            pipeline,
            model_dir,
            threshold=brief.get("threshold") if threshold is None else threshold,
            positive_class=brief.get("positive_class")
            if positive_class is None
            else positive_class,
            targets=brief.get("targets"),
        )
        contract = build_contract(tables, task, columns, kinds)
    except (TaskError, ContractError) as error:
        raise StartupError(str(error)) from None
    version = hashlib.sha256((model_dir / "pipeline.pickle").read_bytes()).hexdigest()[:12]
    dtypes = {c: dtypes[c] for c in columns}
    model = LoadedModel(pipeline, columns, dtypes, kinds, task, version, contract)
    if contract.invalid == "as_missing":
        check_missing_values_are_scored(model, model_dir)
    return model


def check_missing_values_are_scored(model, model_dir):
    """api.toml [predict] invalid = "as_missing": a StartupError naming a column whose
    missing value the pipeline cannot score (serving.check_missing_values)."""
    profile, note = monitoring.load_profile(model_dir, model)
    if profile is None:
        log.info(
            "invalid = as_missing: no usable training profile (%s); missing values are checked "
            "on a row of the pipeline's categories and zeros",
            note,
        )
    skipped = check_missing_values(model, profile)
    if skipped:
        log.warning("invalid = as_missing: missing values not checked: %s", skipped)


def load_columns(path):
    try:
        columns = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise StartupError(f"Cannot read {path} ({error}); write it with notebook 1.") from None
    if not (isinstance(columns, list) and columns and all(isinstance(c, str) for c in columns)):
        raise StartupError(f"{path} must hold a JSON list of column names; see notebook 1.")
    if len(set(columns)) != len(columns):
        raise StartupError(f"{path} names a column twice; write it again with notebook 1.")
    return columns


def load_dtypes(path):
    try:
        with open(path, "rb") as file:
            dtypes = pickle.load(file)
        return {
            str(column): pd.api.types.pandas_dtype(dtype) for column, dtype in dict(dtypes).items()
        }
    except Exception as error:  # a missing, truncated or foreign file: all mean "write it again"
        raise StartupError(
            f"Cannot read {path} ({type(error).__name__}: {error}); "
            "write it again with notebook 1 (pickle.dump(X.dtypes, file))."
        ) from None


def load_pipeline(path):
    """joblib.load, turning the usual failures into one sentence that says what to do."""
    if not path.is_file():
        raise StartupError(f"{path} does not exist; create it with notebook 1.")
    try:
        with warnings.catch_warnings():
            # A pickle from another scikit-learn version may load but predict wrongly.
            warnings.simplefilter("error", InconsistentVersionWarning)
            pipeline = joblib.load(path)
    except InconsistentVersionWarning as warning:
        raise StartupError(
            f"{path} was written by scikit-learn {warning.original_sklearn_version} but "
            f"scikit-learn {warning.current_sklearn_version} is installed; pin "
            f"scikit-learn=={warning.original_sklearn_version} in requirements_prod.txt "
            "or retrain the model with notebook 1."
        ) from None
    except ModuleNotFoundError as error:
        raise StartupError(
            f"{path} needs the module '{error.name}', which cannot be imported; keep the "
            "package that defines your custom transformers next to app.py and install what "
            "it needs."
        ) from None
    except Exception as error:
        raise StartupError(
            f"Cannot load {path} ({type(error).__name__}: {error}); the file is damaged or "
            "not a joblib pickle: write it again with notebook 1."
        ) from None
    if not hasattr(pipeline, "predict"):
        raise StartupError(f"{path} is not a fitted scikit-learn model (it has no predict).")
    return pipeline


def column_kind(column, dtype):
    """How a JSON value for this column is validated: by the dtype it was trained with."""
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(dtype):
        return "integer"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if pd.api.types.is_string_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype):
        return "string"
    raise StartupError(
        f"Column {column!r} has the dtype {dtype}, which JSON cannot carry; convert it to a "
        "number or a string before training."
    )


# ---------------------------------------------------------------------------------------
# 3. The database
# ---------------------------------------------------------------------------------------


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
        return connect(f"sqlite+pool://{rest}", pragmas=pragmas, check_same_thread=False, **pool)
    psycopg2.extensions.set_wait_callback(partial(wait_for_postgres, timeout=timeout))
    return connect(f"{scheme}+pool://{rest}", connect_timeout=max(1, round(timeout)), **pool)


def wait_for_postgres(connection, timeout):
    """psycopg2 calls this whenever it waits for PostgreSQL (set in open_database).

    A server that is down refuses at once; one that hangs (frozen, or cut off by the
    network) would block the worker until gunicorn kills it. So give up after `timeout`.
    """
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


def create_or_upgrade_table():
    """Create the table, or bring one of an earlier release up to date (migrations.py)."""
    try:
        changes = migrations.upgrade(database, Prediction)
    except migrations.MigrationError as error:
        raise StartupError(str(error)) from None
    for change in changes:
        log.info("database upgraded: %s", change)


# ---------------------------------------------------------------------------------------
# 4-7. Parse and validate, predict, store, answer: the steps of serving.py, shared by every
#      route (score_and_store for /predict, through the micro-batcher; see below)
# ---------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------
# 8. Routes
# ---------------------------------------------------------------------------------------

api = Blueprint("api", __name__)


def predict():
    """POST /predict, or the brief's route (contract.py): score, store, answer."""
    model = current_app.config["MODEL"]
    body, payload = read_json_body()
    prediction_request = parse_prediction_request(body, payload, model)
    # Requests that arrive together are scored and stored together (batching.py).
    outcome = current_app.extensions["batcher"].submit(prediction_request)
    if isinstance(outcome, ApiError):
        raise outcome
    response = jsonify(model.contract.predict_answer(outcome, payload, model.task))
    if prediction_request.replaced:  # invalid = "as_missing": the answer keeps the brief's shape
        response.headers["X-Treated-As-Missing"] = header_list(prediction_request.replaced)
    return response


# What a header may hold as it is: printable ASCII, but the list's comma and the escape's %.
HEADER_SAFE = "".join(chr(code) for code in range(32, 127) if chr(code) not in "%,")


def header_list(names):
    """Field names as a header's list: "Age, Fare" (any other character %-escaped)."""
    return ", ".join(quote(name, safe=HEADER_SAFE) for name in names)


def update():
    """POST /update, or the brief's route: the true value of a stored prediction."""
    model = current_app.config["MODEL"]
    _, payload = read_json_body()
    key, _ = parse_id(payload, model)
    label = parse_truth(payload, model)
    # A classifier's integer or boolean label goes to the tutorial's true_class too; a
    # regressor's number (even 3) does not. A corrected label replaces both.
    true_class = true_class_of(label) if model.task.name != "regression" else None

    def set_true_value():
        query = Prediction.update(true_value=json.dumps(label), true_class=true_class)
        if query.where(Prediction.observation_key == key).execute() == 0:
            return None
        return Prediction.get(Prediction.observation_key == key)

    prediction = in_transaction(set_true_value)
    if prediction is None:
        raise ApiError(404, f"Observation ID {key} does not exist")
    row = prediction_to_dict(prediction, model)
    return jsonify(model.contract.update_answer(row, stored_output(prediction, model), payload))


@api.get("/health")
def health():
    model = current_app.config["MODEL"]
    try:
        in_transaction(lambda: database.execute_sql("SELECT 1"))
        database_status = "ok"
    except DATABASE_ERRORS as error:
        log.warning("health check: database unavailable: %s", type(error).__name__)
        database_status = "unavailable"
    body = {
        "status": "ok" if database_status == "ok" else "unavailable",
        "database": {"engine": type(database.obj).__name__, "status": database_status},
        "model": {
            "version": model.version,
            **model.task.describe(),  # task, and its classes, threshold... or targets
            "columns": model.columns,
            "dtypes": {column: str(dtype) for column, dtype in model.dtypes.items()},
        },
        "contract": model.contract.describe(model.task),  # the routes and fields it speaks
        "versions": LIBRARY_VERSIONS,
    }
    if database_status != "ok":
        return jsonify(error="The database is unavailable", **body), 503
    return jsonify(body)


@api.get("/list-db-contents")
def list_db_contents():
    """Stored rows, newest first: ?limit=100&before_id=<id of the last row seen>."""
    require_admin()
    limit = query_integer("limit", 100, low=1, high=1000)
    before_id = query_integer("before_id", None)

    query = Prediction.select().order_by(Prediction.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(Prediction.id < before_id)
    model = current_app.config["MODEL"]
    rows = in_transaction(lambda: [prediction_to_dict(p, model) for p in query])
    next_before_id = rows[-1]["id"] if len(rows) == limit else None
    return jsonify(predictions=rows, next_before_id=next_before_id)


@api.get("/openapi.yaml")
def openapi():
    """The OpenAPI description, built at start-up from the model and its contract."""
    return Response(current_app.extensions["openapi.yaml"], mimetype="application/yaml")


@api.get("/openapi.json")
def openapi_json():
    return jsonify(current_app.extensions["openapi"])


# ---------------------------------------------------------------------------------------
# 9. Errors: every one is JSON {"error": ...}, never a traceback
# ---------------------------------------------------------------------------------------


def register_error_handlers(app):
    @app.errorhandler(ApiError)
    def api_error(error):
        body = {"error": error.message, **error.extra}  # a 409 adds the answer it would give
        body["error"] = error.message  # first, and never hidden by an answer key "error"
        return jsonify(body), error.status

    @app.errorhandler(HTTPException)
    def http_error(error):  # 404, 405, 413 ... raised by Flask itself
        messages = {
            404: f"Not found: {request.path}",
            405: f"Method {request.method} is not allowed for {request.path}",
            413: f"Request body is larger than {request.max_content_length} bytes",
        }
        response = jsonify(error=messages.get(error.code, error.description))
        response.status_code = error.code
        if error.code == 405:
            response.headers["Allow"] = ", ".join(error.valid_methods or [])
        return response

    def database_error(error):
        log.warning("request %s: database unavailable: %s", g.get("request_id"), error)
        database_unavailable.send(current_app._get_current_object(), error=error)
        return retry_later("The database is unavailable; retry in a few seconds")

    for error_class in DATABASE_ERRORS:
        app.register_error_handler(error_class, database_error)

    @app.errorhandler(BatchTimeout)
    @app.errorhandler(BatchAbandoned)
    def not_scored(error):  # batches stuck behind a slow database, or one that was killed
        log.warning("request %s: not scored: %s", g.get("request_id"), error)
        return retry_later("The service could not score this request in time; retry it")

    def retry_later(message):
        response = jsonify(error=message)
        response.headers["Retry-After"] = "1"
        return response, 503

    @app.errorhandler(Exception)
    def unexpected_error(error):
        log.exception("request %s failed", g.get("request_id"))
        return jsonify(error=f"Internal server error (request id {g.get('request_id')})"), 500


# ---------------------------------------------------------------------------------------
# 10. The application factory
# ---------------------------------------------------------------------------------------


def create_app(settings=None):
    """Build the app; tests pass settings (DATABASE_URL, MODEL_DIR...) to override."""
    app = Flask(__name__)
    app.json.sort_keys = False  # answers keep the model's order: its classes, its targets
    app.config.update(settings_from_environment())
    app.config.update(settings or {})
    app.config["MODEL"] = load_model(
        app.config["MODEL_DIR"], app.config["THRESHOLD"], app.config["POSITIVE_CLASS"]
    )
    # The API's description, from the model and its contract (openapi_spec.py).
    app.extensions["openapi"] = openapi_spec.build_spec(app.config["MODEL"], app.config)
    app.extensions["openapi.yaml"] = openapi_spec.as_yaml(app.extensions["openapi"])
    connect_database(app)
    try:
        create_or_upgrade_table()
    except DATABASE_ERRORS as error:
        raise StartupError(f"Cannot reach the database to create the table: {error}") from None
    finally:
        discard_connections()  # gunicorn forks workers next: they must not share it
    start_batching(app)

    @app.before_request
    def tag_request():
        given = request.headers.get("X-Request-ID", "")
        g.request_id = given if given.isalnum() and len(given) <= 64 else uuid.uuid4().hex

    @app.after_request
    def add_request_id(response):
        response.headers["X-Request-ID"] = g.get("request_id", "")
        return response

    @app.teardown_request
    def close_database(_error):
        if not database.is_closed():
            database.close()  # with a pool: back to the pool

    register_error_handlers(app)
    register_routes(app)
    return app


def register_routes(app):
    """This file's routes, then each capability's own module (each imports serving.py)."""
    app.register_blueprint(api)
    monitoring.init_app(app)  # GET /stats and GET /metrics, and the counters behind them
    app.register_blueprint(pages.pages)  # GET / and GET /monitor (templates/, static/)
    # Last, the routes a brief names (api.toml): none may take a route served above.
    contract = app.config["MODEL"].contract
    taken = {rule.rule.rstrip("/") or "/" for rule in app.url_map.iter_rules()}
    try:
        check_against_routes(contract, taken)
    except ContractError as error:
        raise StartupError(str(error)) from None
    add_route(app, contract.predict_path, predict)
    add_route(app, contract.update_path, update)
    predict_batch.init_app(app)  # POST /predict-batch, or [batch] path


def connect_database(app):
    url = app.config["DATABASE_URL"]
    try:
        database.initialize(open_database(url, app.config["DATABASE_TIMEOUT"]))
    except Exception as error:  # the message says what was wrong, never the URL (password)
        raise StartupError(
            f"DATABASE_URL (scheme {url.split('://')[0]!r}) is not a database URL this service "
            f"can use ({type(error).__name__}: {error}); write it as sqlite:///predictions.db "
            "or postgresql://user:password@host:5432/database."
        ) from None


def start_batching(app):
    """The micro-batcher that /predict submits to: one per process.

    Under gunicorn's gevent workers (gunicorn.conf.py patches the standard library), a
    leader lets every greenlet that is ready to run join its batch first (gevent.idle).
    """
    cooperative = monkey.is_module_patched("threading")
    app.extensions["batcher"] = MicroBatcher(
        partial(score_and_store, model=app.config["MODEL"]),
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
