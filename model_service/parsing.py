"""Step 1 of a request: read its JSON body, its id and its observation, as the contract says.

    body, payload = read_json_body()                              # 400, 413
    request_ = parse_prediction_request(body, payload, model)     # 422 naming each bad field

The observation is checked against the training dtypes (a number where a number was
trained, ...); api.toml's [predict] invalid says whether a bad value is a 422 ("reject") or
a missing value ("as_missing"). The result, a PredictionRequest, is what scoring.py scores.
"""

import json
import math
from dataclasses import dataclass, field

import numpy as np
from flask import g, request
from werkzeug.exceptions import RequestEntityTooLarge

from model_service.contract import integer_of_key
from model_service.errors import ApiError
from model_service.values import is_missing, json_type, parse_integer, parse_number


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
    # API_KEYS: the name of the key this request carries (api_keys.py set it), stored with it.
    return PredictionRequest(key, client_id, body, values, replaced, g.get("api_key_name"))


@dataclass
class PredictionRequest:
    """One validated request to score and store: what /predict and /predict-batch send."""

    key: str  # what the row is stored under (contract.py): '42', '"abc"', '["a", 3]'
    client_id: object  # the id as the client sent it: 42, "42", "abc", {"sku": "a", "week": 3}
    body: str  # the text stored with the row: the request as the client sent it
    values: list  # the observation, validated, in column order
    replaced: dict = field(default_factory=dict)  # {field: why} treated as missing
    api_key_name: str | None = None  # API_KEYS: the key that sent it (None: keys are off)

    @property
    def integer_id(self):
        """The tutorial's observation_id column: 42 for the id 42 or "42" (one key), else None."""
        return integer_of_key(self.key)
