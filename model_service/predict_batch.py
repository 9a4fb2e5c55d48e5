"""POST /predict-batch: many observations in one request, each answered as /predict would.

    {"observations": [{"id": 1, "observation": {...}}, {"id": 2, "observation": {...}}]}
    -> {"results": [{"id": 1, "status": 200, "answer": {"proba": 0.76}},
                    {"id": 2, "status": 422, "error": "observation.Age must be a number..."}]}

Every item gets, in order, exactly what /predict would have answered for it, had the items
been sent one after the other: 200 with its answer (new, or a retry of a stored id with the
same observation), 409 with an error and the answer (the id is stored with another
observation), 422 with an error (that item is invalid). One bad item never fails the others.

Each result is {"id", "status"} and "answer" (200, 409) and/or "error" (409, 422). "answer"
is exactly /predict's answer for the item, whatever keys the contract gives it ({"proba"}
for the tutorial's binary classifier; a brief's {"id", "outcome"}...): nested, it can never
meet the result's own keys. "id" is the item's id as the client sent it: a value, or
{field: value} for a composite id; null when it cannot be read.

The valid items are scored in one predict_proba call and stored in one transaction, by the
same function that /predict's micro-batcher calls (store.score_and_store). The whole request
is refused, storing nothing, only when it cannot be read: 400 (not JSON, not that shape),
413 (over PREDICT_BATCH_MAX_BYTES), 422 (empty, or over PREDICT_BATCH_MAX_OBSERVATIONS
items), 503 (the database is down: safe to send again, the ids make it idempotent).
"""

import json

from flask import current_app, jsonify, request

from model_service.errors import ApiError, StartupError
from model_service.parsing import PredictionRequest, parse_prediction_request, read_json_body
from model_service.store import current_store, score_and_store
from model_service.web import add_route

MOST_OBSERVATIONS = 10_000


def init_app(app):
    """Check this route's two limits (app.settings_from_environment), then register it."""
    for name in ("PREDICT_BATCH_MAX_BYTES", "PREDICT_BATCH_MAX_OBSERVATIONS"):
        if app.config[name] < 1:
            raise StartupError(f"{name}={app.config[name]} must be at least 1.")
    # One INSERT stores the batch: PostgreSQL takes at most 65,535 values per statement.
    if app.config["PREDICT_BATCH_MAX_OBSERVATIONS"] > MOST_OBSERVATIONS:
        raise StartupError(
            f"PREDICT_BATCH_MAX_OBSERVATIONS={app.config['PREDICT_BATCH_MAX_OBSERVATIONS']} "
            f"must be at most {MOST_OBSERVATIONS}."
        )
    add_route(app, app.config["MODEL"].contract.batch_path, predict_batch)


def predict_batch():
    model = current_app.config["MODEL"]
    items = read_items()
    parsed = [parse_item(item, model) for item in items]  # (id or None, request or ApiError)
    valid = [outcome for _, outcome in parsed if isinstance(outcome, PredictionRequest)]
    # One predict_proba call and one transaction; a database error raises: 503, nothing stored.
    scored = iter(score_and_store(valid, model, current_store()) if valid else [])
    results = []
    for item, (client_id, outcome) in zip(items, parsed, strict=True):
        if isinstance(outcome, PredictionRequest):
            outcome = next(scored)
        results.append(to_result(client_id, outcome, model, item))
    return jsonify(results=results)


def read_items():
    """The list of items, or the error that refuses the whole request."""
    # Flask applies MAX_CONTENT_LENGTH (the /predict limit) to every request; this route's
    # own limit replaces it, before anything reads the body.
    request.max_content_length = current_app.config["PREDICT_BATCH_MAX_BYTES"]
    _, payload = read_json_body()
    items = payload.get("observations")
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        shape = f'{{"observations": [{current_app.config["MODEL"].contract.body_example()}]}}'
        raise ApiError(400, f"Request body must be a JSON object {shape}")
    most = current_app.config["PREDICT_BATCH_MAX_OBSERVATIONS"]
    if not items:
        raise ApiError(422, "observations is empty: send at least one")
    if len(items) > most:
        raise ApiError(
            422, f"observations holds {len(items)} items, more than {most}: send fewer at once"
        )
    return items


def parse_item(item, model):
    """(its id or None, a PredictionRequest) for a valid item, (id or None, ApiError) if not.

    An item is what one /predict body would be; it is stored as that body's JSON, so that
    a later /predict of the same id and observation is a retry.
    """
    try:
        prediction_request = parse_prediction_request(json.dumps(item), item, model)
    except ApiError as error:
        return readable_id(item, model), error
    return prediction_request.client_id, prediction_request


def readable_id(item, model):
    """The item's id when it can be read: a 422 for its observation still names it."""
    try:
        return model.contract.read_id(item)[1]
    except ValueError:
        return None


def to_result(client_id, outcome, model, item):
    """{"id", "status", "answer"} of an answered item; {"id", "status", "error"} of a refused
    one, and its "answer" too for a 409 (the answer /predict's 409 carries)."""
    if not isinstance(outcome, ApiError):
        answer = model.contract.predict_answer(outcome, item, model.task)
        return {"id": client_id, "status": 200, "answer": answer}
    result = {"id": client_id, "status": outcome.status, "error": outcome.message}
    if outcome.status == 409:
        result["answer"] = outcome.extra
    return result
