"""The core of the service: one request's steps, from its JSON body to the stored row.

app.py loads the settings and the artifacts, connects the database and routes requests;
every route, and every capability of its own module (predict_batch.py, monitoring.py),
takes its steps from here, so that they all parse, predict, store and answer alike:

1. The table: every prediction is a `Prediction` row (SQLite locally, PostgreSQL in
   production), so that its true outcome can be attached later with /update.
2. Parse and validate: the JSON body, the id and the observation, as the contract says
   (contract.py), checked against the training dtypes.
3. Predict: the rows of several requests in one call of the model (tasks.py).
4. Store: several rows in one transaction, a retry answered with what was stored.
5. Answer: a stored row as JSON.

Requests in flight at the same time go through steps 3 and 4 together: /predict hands its
request to a micro-batcher (batching.py), which runs score_and_store on them all.
"""

import hmac
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import peewee
from blinker import Namespace
from flask import current_app, request
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
from playhouse.pool import MaxConnectionsExceeded
from werkzeug.exceptions import RequestEntityTooLarge

from contract import integer_of_key
from values import is_missing, json_type, parse_integer, parse_number


class StartupError(Exception):
    """Something that must be fixed before the service can start."""


class ApiError(Exception):
    """A request the service must refuse; becomes {"error": message} with the status."""

    def __init__(self, status, message, /, **extra):  # extra may hold a key "status" too
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


# What other modules may listen to (monitoring.py counts them), without this module knowing them.
signals = Namespace()
predictions_answered = signals.signal("predictions-answered")  # outcomes=[output or ApiError]
batch_scored = signals.signal("batch-scored")  # size=<requests scored together>
database_unavailable = signals.signal("database-unavailable")  # error=<the exception>
# [predict] invalid = "as_missing": the values treated as missing in the answered requests.
values_replaced = signals.signal("values-replaced")  # replaced=[{field: why}, ...]

# ---------------------------------------------------------------------------------------
# 1. The table
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
    # JSON {field: why} of the values treated as missing ([predict] invalid = "as_missing"),
    # those "reject" would have refused; NULL when none was.
    replaced = TextField(null=True)
    true_value = TextField(null=True)  # JSON: the true label or number(s), from /update
    true_class = IntegerField(null=True)  # the tutorial's column: see true_class_of
    created_at = DateTimeField()  # UTC

    class Meta:
        database = database


# peewee's IntegerField is PostgreSQL's INTEGER: 32 bits.
TRUE_CLASS_RANGE = range(-(2**31), 2**31)


def true_class_of(label):
    """A classifier's label as the tutorial's true_class column holds it, or None.

    The tutorial's queries (`WHERE true_class IS NOT NULL`) read an integer class: an
    integer label as such, a boolean as 1 or 0. Other labels (strings, fractions) and
    integers beyond 32 bits leave it NULL; true_value holds every label (/update writes both).
    """
    if isinstance(label, int) and int(label) in TRUE_CLASS_RANGE:  # bool is an int: 1 or 0
        return int(label)
    return None


# Errors that mean "the database cannot be reached or is too busy right now": 503.
DATABASE_ERRORS = (peewee.OperationalError, peewee.InterfaceError, MaxConnectionsExceeded)


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
# 2. Parse and validate the request
# ---------------------------------------------------------------------------------------


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
    This is the "reject" mode, whatever the contract says (drift reads observations so).
    """
    values, problems = check_observation(observation, model)
    if problems:
        raise ApiError(422, "; ".join(message for message, _ in problems.values()))
    return values


def read_observation(observation, model):
    """(values, replaced) as api.toml's [predict] invalid says.

    "reject": validate_observation's 422. "as_missing": every value that reject would
    refuse is missing (NaN) instead, for the pipeline's imputers, and replaced says which
    and why: {field: "must be a number, got a string"}. An observation that is not an
    object stays a 422 in both modes.
    """
    if model.contract.invalid == "reject":
        return validate_observation(observation, model), {}
    values, problems = check_observation(observation, model)
    return values, {name: why for name, (_, why) in problems.items()}


def check_observation(observation, model):
    """(values in column order, {field: (error message, why)}), a bad value being NaN."""
    if not isinstance(observation, dict):
        raise ApiError(422, model.contract.shape())
    values, problems = [], {}
    for column in model.columns:  # extra keys are ignored: the model does not use them
        name, value = model.contract.field_name(column), observation.get(column)
        try:
            values.append(validate_value(value, name, model.kinds[column], model.dtypes[column]))
        except ValueError as problem:
            values.append(math.nan)
            problems[name] = (str(problem), why_refused(observation, column, name, problem))
    return values, problems


def why_refused(observation, column, name, problem):
    """What was wrong with a value, without its field's name: "null", "must be a number..."."""
    if column not in observation:
        return "missing"
    if is_missing(observation[column]):
        return "null" if observation[column] is None else "NaN"
    return str(problem).removeprefix(f"{name} ")


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
    values, replaced = read_observation(model.contract.observation_of(payload), model)
    return PredictionRequest(key, client_id, body, values, replaced)


# ---------------------------------------------------------------------------------------
# 3. Predict: a list of validated observations -> what the model says of each
# ---------------------------------------------------------------------------------------


def predict_outputs(rows, model):
    """Score several observations in one call (its fixed cost is ~9 ms): an output each.

    An output is a dict of JSON values (tasks.py): for a binary classifier the probability
    of the positive class, the decision and the label; for a regressor the number(s).
    """
    try:
        return model.task.predict(model.pipeline, frame_of(rows, model))
    except ValueError as error:  # e.g. a category the pipeline refuses
        raise ApiError(422, f"The model cannot score this observation: {error}") from None


# The kinds of column whose training dtype (int64, bool) cannot hold NaN.
STRICT_KINDS = ("integer", "boolean")


def frame_of(rows, model):
    """The rows as a frame of the training dtypes.

    In "as_missing" mode an integer or boolean column that holds a missing value becomes
    float64 or object instead: NaN fits those, and the pipeline's imputer fills it.
    """
    frame = pd.DataFrame(rows, columns=model.columns)
    if model.contract.invalid != "as_missing":
        return frame.astype(model.dtypes)
    dtypes = dict(model.dtypes)
    for column in model.columns:
        kind, dtype = model.kinds[column], dtypes[column]
        # A pandas extension dtype (Int64, boolean) holds a missing value itself.
        if kind in STRICT_KINDS and isinstance(dtype, np.dtype) and frame[column].isna().any():
            dtypes[column] = np.float64 if kind == "integer" else object
    return frame.astype(dtypes)


def score_each(rows, model):
    """An output or an ApiError per row (score_together), in the order of `rows`.

    In "as_missing" mode, the rows with a missing integer or boolean value are scored apart
    from the others: their frame takes other dtypes (frame_of), which must not change the
    answer of any other row.
    """
    if model.contract.invalid != "as_missing":  # then no such value gets this far
        return score_together(rows, model)
    columns = [i for i, c in enumerate(model.columns) if model.kinds[c] in STRICT_KINDS]
    apart = [any(is_missing(row[i]) for i in columns) for row in rows]
    outcomes = [None] * len(rows)
    for group in (False, True):
        indices = [k for k, flag in enumerate(apart) if flag is group]
        if indices:
            scored = score_together([rows[k] for k in indices], model)
            for k, outcome in zip(indices, scored, strict=True):
                outcomes[k] = outcome
    return outcomes


def score_together(rows, model):
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


def check_missing_values(model, profile):
    """At start-up in "as_missing" mode: can the pipeline take a missing value anywhere?

    A typical row (typical_row) is scored with one column at a time missing: a column where
    the pipeline raises, or answers NaN, is a StartupError naming it. Returns None when
    checked, or why the check was skipped (the typical row itself cannot be scored).
    """
    row, source = typical_row(model, profile)
    problem = scoring_problem(row, model)
    if problem:
        return f"a typical row built from {source} cannot be scored ({problem})"
    for index, column in enumerate(model.columns):
        problem = scoring_problem([*row[:index], math.nan, *row[index + 1 :]], model)
        if problem:
            raise StartupError(
                f'api.toml [predict] invalid = "as_missing": the pipeline cannot score a '
                f"missing {column} ({problem}); add an imputer for it or keep "
                'invalid = "reject".'
            )
    return None


def scoring_problem(row, model):
    """What goes wrong when the pipeline scores this row (one line), or None."""
    try:
        output = model.task.predict(model.pipeline, frame_of([row], model))[0]
    except Exception as error:  # whatever the pipeline raises, it cannot take the row
        lines = str(error).strip().splitlines()
        return f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    if not all_finite(output):
        return "it answers NaN"
    return None


def all_finite(output):
    if isinstance(output, dict):
        return all(all_finite(value) for value in output.values())
    return not isinstance(output, float) or math.isfinite(output)


def typical_row(model, profile):
    """(values, where they come from): a valid row the pipeline should score.

    From training_profile.json (drift.py) when there is one: a numeric column's middle bin
    edge, a categorical one's most common category. Else, or where the profile has none:
    the first category the pipeline's fitted encoders know, 0, false or "".
    """
    known = fitted_categories(model.pipeline)
    fallback = {"integer": 0, "float": 0.0, "boolean": False, "string": ""}
    values = []
    for column in model.columns:
        kind = model.kinds[column]
        described = profile["columns"][column] if profile else {}
        value = profile_value(described, kind)
        if value is None:
            value = known.get(column, "") if kind == "string" else fallback[kind]
        values.append(value)
    return values, ("training_profile.json" if profile else "the pipeline's categories and zeros")


def profile_value(described, kind):
    """A column's typical value from its training profile, in its kind, or None."""
    edges, categories = described.get("edges") or [], described.get("categories") or []
    if kind in ("integer", "float") and edges:
        middle = edges[len(edges) // 2]
        return int(middle) if kind == "integer" else float(middle)
    if kind == "boolean" and categories:
        return categories[0] == "true"  # drift.category_key writes booleans so
    if kind == "string" and categories:
        return categories[0]
    return None


def fitted_categories(estimator):
    """{column: its first known string category} from the fitted encoders (categories_) of
    a pipeline's column transformers, as far as they can be matched to columns."""
    found = {}
    for _, transformer, columns in getattr(estimator, "transformers_", []):
        categories = encoder_categories(transformer)
        names = list(columns) if isinstance(columns, list | tuple | np.ndarray) else []
        if categories is not None and len(categories) == len(names):
            for name, known in zip(names, categories, strict=True):
                strings = [category for category in known if isinstance(category, str)]
                if strings:
                    found[str(name)] = strings[0]
    for _, step in getattr(estimator, "steps", []):
        found.update(fitted_categories(step))
    return found


def encoder_categories(transformer):
    """The categories_ of a transformer, or of the first step of it that has them."""
    if hasattr(transformer, "categories_"):
        return transformer.categories_
    for _, step in getattr(transformer, "steps", []):
        categories = encoder_categories(step)
        if categories is not None:
            return categories
    return None


# ---------------------------------------------------------------------------------------
# 4. Store: several rows in one transaction
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
        stored_values, _ = read_observation(model.contract.observation_of(stored_payload), model)
    except (ValueError, KeyError, TypeError, AttributeError, ApiError):
        return False
    # json.dumps writes NaN as NaN, so two missing values compare equal here.
    return json.dumps(stored_values) == json.dumps(values)


@dataclass
class PredictionRequest:
    """One validated request to score and store: what /predict and /predict-batch send."""

    key: str  # what the row is stored under (contract.py): '42', '"abc"', '["a", 3]'
    client_id: object  # the id as the client sent it: 42, "42", "abc", {"sku": "a", "week": 3}
    body: str  # the text stored with the row: the request as the client sent it
    values: list  # the observation, validated, in column order
    replaced: dict = field(default_factory=dict)  # {field: why} treated as missing

    @property
    def integer_id(self):
        """The tutorial's observation_id column: 42 for the id 42 or "42" (one key), else None."""
        return integer_of_key(self.key)


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
            outcomes.append(conflict(request_, output, model))
    predictions_answered.send(model, outcomes=outcomes)
    replaced = [
        r.replaced
        for r, outcome in zip(requests, outcomes, strict=True)
        if r.replaced and not isinstance(outcome, ApiError)
    ]
    if replaced:
        values_replaced.send(model, replaced=replaced)
    return outcomes


def new_row(request_, output, model, now):
    """The columns of a new row: the request, what the model said, and which model said it."""
    return {
        "observation_key": request_.key,
        "observation_id": request_.integer_id,
        "observation": request_.body,
        "model_version": model.version,
        "prediction": json.dumps(output),  # repr of each float: it reads back bit for bit
        "replaced": json.dumps(request_.replaced) if request_.replaced else None,
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


def conflict(request_, output, model):
    """409: the id is stored with another observation. It carries what this request would
    have been answered (its request.<field> sources quote this request, as a 200 does)."""
    return ApiError(
        409,
        f"Observation ID {request_.key} already exists with a different observation; "
        "send it with a new id",
        **model.contract.predict_answer(output, json.loads(request_.body), model.task),
    )


# ---------------------------------------------------------------------------------------
# 5. Answer: a stored row as JSON
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
# Route helpers: the admin token, a query's integers, a POST route with and without a slash
# ---------------------------------------------------------------------------------------


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


def add_route(app, path, view):
    """A POST route served with and without the final slash, as briefs write it both ways."""
    for rule in (path, path + "/"):
        app.add_url_rule(rule, view.__name__, view, methods=["POST"])
