"""A scikit-learn model behind an HTTP API.

Read this file top to bottom: it is the whole service, in the order a request meets it.

1. Settings come from environment variables, with defaults that work on a laptop.
2. At start-up the three artifacts written by notebook 1 are loaded and checked:
   `pipeline.pickle` (the fitted pipeline), `columns.json` (the feature names, in order)
   and `dtypes.pickle` (the training dtypes). A mismatch stops the service right away,
   with one sentence that says what to fix, instead of failing on the first request.
3. Every prediction is stored in a `Prediction` table (SQLite locally, PostgreSQL in
   production) so that the true outcome can be attached later with `/update`.
4. A request goes through small named steps: parse the JSON body, validate the
   observation against the training dtypes, predict, store, format the answer.
   Requests in flight at the same time are predicted and stored together: /predict hands
   its request to a micro-batcher (batching.py), which runs score_and_store on them all.

Routes here: POST /predict, POST /update, GET /health, GET /list-db-contents (admin only),
GET /openapi.yaml. Each other capability has its own module, registered in create_app:
POST /predict-batch (batch_scoring.py), GET /stats and GET /metrics (monitoring.py), and
the web pages GET / and GET /monitor (pages.py). Every error of the API is JSON:
{"error": "<what is wrong>"}.

Run it with `gunicorn app:app` (see gunicorn.conf.py) or `python app.py`.
"""

import hashlib
import hmac
import json
import logging
import math
import os
import pickle
import platform
import select
import sys
import uuid
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from importlib.metadata import version as package_version
from pathlib import Path

import gevent
import joblib
import numpy as np
import pandas as pd
import peewee
import psycopg2.extensions
import sklearn
from blinker import Namespace
from flask import Blueprint, Flask, current_app, g, jsonify, request, send_file
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
from playhouse.db_url import connect
from playhouse.pool import MaxConnectionsExceeded
from sklearn.exceptions import InconsistentVersionWarning
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

import migrations
from batching import BatchAbandoned, BatchTimeout, MicroBatcher
from contract import ContractError, build_contract, check_against_routes, read_contract_file
from tasks import TaskError, read_task
from values import is_missing, json_type, parse_integer, parse_number

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

# What other modules may listen to (monitoring.py counts them), without app.py knowing them.
signals = Namespace()
predictions_answered = signals.signal("predictions-answered")  # outcomes=[output or ApiError]
batch_scored = signals.signal("batch-scored")  # size=<requests scored together>
database_unavailable = signals.signal("database-unavailable")  # error=<the exception>

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
        # POST /predict-batch (batch_scoring.py): larger bodies than /predict's.
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


class StartupError(Exception):
    """Something that must be fixed before the service can start."""


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
    return LoadedModel(pipeline, columns, dtypes, kinds, task, version, contract)


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

# The real database is chosen at start-up (create_app); the proxy lets the model be
# declared before that.
database = DatabaseProxy()


class Prediction(Model):
    """One answered request. JSON columns hold values of any JSON type (labels, numbers).

    Rows stored before the upgrade to any task (migrations.py) have no model_version,
    prediction, threshold or positive_class: their model is "unknown".
    """

    id = BigAutoField()
    # The client's id: the key of the row, as text (contract.py: '42', '"abc"', '["a", 3]'),
    # and an integer id as such too (64-bit), as releases before contracts stored it.
    observation_key = TextField(unique=True, null=True)
    observation_id = BigIntegerField(unique=True, null=True)
    observation = TextField()  # the raw request body, exactly as received
    model_version = TextField(null=True)  # which model answered (LoadedModel.version)
    prediction = TextField(null=True)  # JSON: what the model produced (tasks.py)
    # Binary classifiers: P(positive class), in double precision (PostgreSQL's FloatField
    # would round it), and the rule of the decision in force when it was answered.
    proba = DoubleField(null=True)
    threshold = DoubleField(null=True)
    positive_class = TextField(null=True)  # JSON
    true_value = TextField(null=True)  # JSON: the true label or number(s), from /update
    true_class = IntegerField(null=True)  # written by releases before any task; kept as is
    created_at = DateTimeField()  # UTC

    class Meta:
        database = database


# Errors that mean "the database cannot be reached or is too busy right now": 503.
DATABASE_ERRORS = (peewee.OperationalError, peewee.InterfaceError, MaxConnectionsExceeded)


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


def in_transaction(work):
    """Run work() in one transaction and return its result.

    A pooled PostgreSQL connection dies when the server restarts, and the first query on
    it fails. So on a connection error the work runs once more on a fresh connection. That
    is safe because every write here is idempotent (insert-if-absent, set a value).
    """
    try:
        with database.atomic():
            return work()
    except DATABASE_ERRORS:
        discard_connections()
        with database.atomic():
            return work()


def discard_connections():
    """Close this thread's connection and the pool's idle ones: they may all be dead."""
    database.close_idle()
    if not database.is_closed():
        database.manual_close()


# ---------------------------------------------------------------------------------------
# 4. Parse and validate the request
# ---------------------------------------------------------------------------------------


class ApiError(Exception):
    """A request the service must refuse; becomes {"error": message} with the status."""

    def __init__(self, status, message, **extra):
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


def read_body(limit):
    """The body's bytes, or 413 past `limit` without reading the rest of it.

    A declared Content-Length over the limit is refused before anything is read; a chunked
    body declares none, so it is read up to one byte past the limit, at most.
    """
    chunks, size = [], 0
    while size <= limit:
        chunk = request.stream.read(limit + 1 - size)  # may return less: read until the end
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise RequestEntityTooLarge()
    return b"".join(chunks)


def read_json_body():
    """The body as (raw text, parsed object), whatever Content-Type the client sent.

    Its size limit is MAX_CONTENT_LENGTH, unless the route set request.max_content_length.
    """
    raw = read_body(request.max_content_length)
    try:
        text = raw.decode("utf-8")
        # Python's json reads NaN (which pandas and json.dumps write) as float("nan").
        payload = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise ApiError(400, f"Request body is not valid JSON: {error}") from None
    if not isinstance(payload, dict):
        raise ApiError(400, "Request body must be a JSON object")
    return text, payload


def validate_value(value, name, kind, dtype):
    """One observation field, as the pipeline saw it in training (missing -> NaN)."""
    if is_missing(value):
        if kind in ("integer", "boolean"):
            raise ValueError(f"{name} is required: it cannot be missing, null or NaN")
        return math.nan  # never None: encoders would take None for an unseen category
    if kind == "integer":
        info = np.iinfo(dtype)
        return parse_integer(value, name, int(info.min), int(info.max))
    if kind == "float":
        return parse_number(value, name, largest=float(np.finfo(dtype).max))
    if kind == "boolean":
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false, got {json_type(value)}")
        return value
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {json_type(value)}")
    return value


def validate_observation(observation, model):
    """The observation's values in column order, or a 422 that names every bad field.

    `observation` is the object of features: the body's "observation", or under a brief's
    contract another field or the body itself; errors name the fields as the brief does.
    """
    if not isinstance(observation, dict):
        raise ApiError(422, model.contract.shape())
    values, problems = [], []
    for column in model.columns:  # extra keys are ignored: the model does not use them
        try:
            values.append(
                validate_value(
                    observation.get(column),
                    model.contract.field_name(column),
                    model.kinds[column],
                    model.dtypes[column],
                )
            )
        except ValueError as problem:
            problems.append(str(problem))
    if problems:
        raise ApiError(422, "; ".join(problems))
    return values


def parse_id(payload, model):
    """(key, id): the row's key and the client's id (an integer, a string, or several)."""
    try:
        return model.contract.read_id(payload)
    except ValueError as problem:
        raise ApiError(422, str(problem)) from None


def parse_truth(payload, model):
    """The true value sent to /update, in the task's type: a class, a number, or numbers."""
    try:
        return model.contract.truth_of(payload, model.task)
    except ValueError as problem:
        raise ApiError(422, str(problem)) from None


def parse_prediction_request(body, payload, model):
    """A /predict body -> the PredictionRequest to score: its key, id and valid values."""
    key, client_id = parse_id(payload, model)
    values = validate_observation(model.contract.observation_of(payload), model)
    return PredictionRequest(key, client_id, body, values)


# ---------------------------------------------------------------------------------------
# 5. Predict: a list of validated observations -> what the model says of each
# ---------------------------------------------------------------------------------------


def predict_outputs(rows, model):
    """Score several observations in one call (its fixed cost is ~9 ms): an output each.

    An output is a dict of JSON values (tasks.py): for a binary classifier the probability
    of the positive class, the decision and the label; for a regressor the number(s).
    """
    frame = pd.DataFrame(rows, columns=model.columns).astype(model.dtypes)
    try:
        return model.task.predict(model.pipeline, frame)
    except ValueError as error:  # e.g. a category the pipeline refuses
        raise ApiError(422, f"The model cannot score this observation: {error}") from None


def score_each(rows, model):
    """An output or an ApiError per row: one call for all, row by row if it fails.

    The model refuses a whole frame when one row is bad; scoring that batch again one row
    at a time gives every good row its answer and the bad one its 422.
    """
    try:
        return predict_outputs(rows, model)
    except ApiError as error:
        if len(rows) == 1:
            return [error]
    outcomes = []
    for row in rows:
        try:
            outcomes.append(predict_outputs([row], model)[0])
        except ApiError as error:
            outcomes.append(error)
    return outcomes


# ---------------------------------------------------------------------------------------
# 6. Store: several rows in one transaction
# ---------------------------------------------------------------------------------------


def save_predictions(rows):
    """Insert rows whose key is new; return the stored row for every key.

    A key that is already stored is left untouched (a retry, or a conflict the caller
    reports), and the insert never fails on it, even when two servers race.
    """
    keys = [row["observation_key"] for row in rows]

    def insert_then_read():
        Prediction.insert_many(rows).on_conflict_ignore().execute()
        stored = Prediction.select().where(Prediction.observation_key.in_(keys))
        return {prediction.observation_key: prediction for prediction in stored}

    return in_transaction(insert_then_read)


def same_observation(stored_body, values, model):
    """Whether a stored request carried the same observation (after validation)."""
    try:
        stored_payload = json.loads(stored_body)
        stored_values = validate_observation(model.contract.observation_of(stored_payload), model)
    except (ValueError, KeyError, TypeError, AttributeError, ApiError):
        return False
    # json.dumps writes NaN as NaN, so two missing values compare equal here.
    return json.dumps(stored_values) == json.dumps(values)


@dataclass
class PredictionRequest:
    """One validated request to score and store: what /predict and /predict-batch send."""

    key: str  # what the row is stored under (contract.py): '42', '"abc"', '["a", 3]'
    client_id: object  # the id as the client sent it: 42, "abc", {"sku": "a", "week": 3}
    body: str  # the text stored with the row: the request as the client sent it
    values: list  # the observation, validated, in column order


def score_and_store(requests, model):
    """Score requests together and store them in one transaction (group commit).

    Returns, in order, the output to answer (a dict, see tasks.py) or the ApiError to
    raise for each request: exactly what /predict answers when they come one at a time. A
    database error raises and stores nothing: every request of the batch gets its 503.
    """
    scored = score_each([r.values for r in requests], model)
    now = utc_now()
    new_rows = [
        new_row(r, output, model, now)
        for r, output in zip(requests, scored, strict=True)
        if not isinstance(output, ApiError)
    ]
    stored = save_predictions(new_rows) if new_rows else {}
    outcomes = []
    for request_, output in zip(requests, scored, strict=True):
        if isinstance(output, ApiError):
            outcomes.append(output)
            continue
        row = stored[request_.key]
        answered = stored_output(row, model)
        if answered is not None and (
            row.observation == request_.body
            or same_observation(row.observation, request_.values, model)
        ):
            outcomes.append(answered)  # a new row, or a client retrying: the same answer
        else:
            outcomes.append(conflict(request_.key, output, model))
    predictions_answered.send(model, outcomes=outcomes)
    return outcomes


def new_row(request_, output, model, now):
    """The columns of a new row: the request, what the model said, and which model said it."""
    client_id = request_.client_id
    return {
        "observation_key": request_.key,
        "observation_id": client_id if isinstance(client_id, int) else None,
        "observation": request_.body,
        "model_version": model.version,
        "prediction": json.dumps(output),  # repr of each float: it reads back bit for bit
        "created_at": now,
        **model.task.columns(output),  # a binary classifier's proba, threshold, positive class
    }


def stored_output(row, model):
    """The output a stored row was answered with, or None if this task cannot answer it.

    A row stored before the upgrade has only its proba (a binary classifier's); a row from
    a model of another task (swapped since) lacks this task's outputs: the id is taken.
    """
    if row.prediction is not None:
        output = json.loads(row.prediction)
        return output if all(key in output for key in model.task.outputs) else None
    if row.proba is not None and model.task.name == "binary":
        return model.task.output(row.proba)
    return None


def conflict(key, output, model):
    return ApiError(
        409,
        f"Observation ID {key} already exists with a different observation; send it with a new id",
        # What this observation would have been answered (the contract's answer may quote
        # the request: the 409 has only the model's part of it).
        **model.contract.predict_answer(output, {}, model.task),
    )


# ---------------------------------------------------------------------------------------
# 7. Format the answer
# ---------------------------------------------------------------------------------------


def prediction_to_dict(prediction, model):
    """A stored row as JSON; the true value under the name /update takes (true_class...)."""
    return {
        "id": prediction.id,
        "observation_id": model.contract.client_id(prediction.observation_key),
        "observation": prediction.observation,
        "model_version": prediction.model_version,  # null: stored before the upgrade
        "prediction": from_json(prediction.prediction),
        "proba": prediction.proba,
        "threshold": prediction.threshold,
        "positive_class": from_json(prediction.positive_class),
        model.task.truth_field: true_value(prediction),
        "created_at": prediction.created_at.isoformat() + "Z",
    }


def from_json(text):
    return None if text is None else json.loads(text)


def true_value(prediction):
    """The true value from /update; rows labelled before the upgrade have only true_class."""
    if prediction.true_value is not None:
        return json.loads(prediction.true_value)
    return prediction.true_class


def utc_now():
    return datetime.now(UTC).replace(tzinfo=None)  # stored naive, always UTC


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
    return jsonify(model.contract.predict_answer(outcome, payload, model.task))


def update():
    """POST /update, or the brief's route: the true value of a stored prediction."""
    model = current_app.config["MODEL"]
    _, payload = read_json_body()
    key, _ = parse_id(payload, model)
    truth = json.dumps(parse_truth(payload, model))

    def set_true_value():
        query = Prediction.update(true_value=truth)
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


def require_admin():
    """A 404, as if the route did not exist, unless the request carries the admin token.

    The admin routes show personal data (the stored observations): without ADMIN_TOKEN
    set they are off. The token is compared in constant time.
    """
    token = current_app.config["ADMIN_TOKEN"]
    offered = request.headers.get("Authorization", "").removeprefix("Bearer ")
    if not token or not hmac.compare_digest(offered.encode(), token.encode()):
        raise ApiError(404, f"Not found: {request.path}")


def query_integer(name, default, low=-(2**63), high=2**63 - 1):
    """An integer from the query string (?name=...), or a 422 naming it."""
    text = request.args.get(name)
    if text is None:
        return default
    try:
        return parse_integer(int(text), name, low, high)
    except ValueError:
        raise ApiError(422, f"{name} must be an integer from {low} to {high}") from None


@api.get("/openapi.yaml")
def openapi():
    return send_file(APP_DIR / "openapi.yaml", mimetype="application/yaml")


# ---------------------------------------------------------------------------------------
# 9. Errors: every one is JSON {"error": ...}, never a traceback
# ---------------------------------------------------------------------------------------


def register_error_handlers(app):
    @app.errorhandler(ApiError)
    def api_error(error):
        return jsonify(error=error.message, **error.extra), error.status

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
    """This file's routes, then each capability's own module (they import from app.py)."""
    app.register_blueprint(api)
    # `python app.py` runs this file as __main__: let `from app import ...` find it there
    # rather than load a second copy of it.
    sys.modules.setdefault("app", sys.modules[__name__])
    import batch_scoring  # POST /predict-batch
    import monitoring  # GET /stats and GET /metrics, and the counters behind them
    import pages  # GET / and GET /monitor: the web pages (templates/, static/)

    monitoring.init_app(app)
    app.register_blueprint(pages.pages)
    # Last, the routes a brief names (api.toml): none may take a route served above.
    contract = app.config["MODEL"].contract
    taken = {rule.rule.rstrip("/") or "/" for rule in app.url_map.iter_rules()}
    try:
        check_against_routes(contract, taken)
    except ContractError as error:
        raise StartupError(str(error)) from None
    add_route(app, contract.predict_path, predict)
    add_route(app, contract.update_path, update)
    batch_scoring.init_app(app)  # POST /predict-batch, or [batch] path


def add_route(app, path, view):
    """A POST route served with and without the final slash, as briefs write it both ways."""
    for rule in (path, path + "/"):
        app.add_url_rule(rule, view.__name__, view, methods=["POST"])


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
