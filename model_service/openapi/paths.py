"""The document's paths: the contract's three routes (predict, batch, update), which take
their paths, bodies and answers from api.toml, then the routes every model shares
(service_paths.py); and the error answers the operations refer to (components/responses).
"""

from model_service.openapi.builders import error_response, json_content, ref, text
from model_service.openapi.service_paths import PAGE_PATHS, SERVICE_PATHS


def paths(model, limits):
    contract = model.contract
    routes = {
        contract.predict_path: {"post": predict_operation(model)},
        contract.batch_path: {"post": batch_operation(model, limits)},
        contract.update_path: {"post": update_operation(model)},
    }
    # The pages name the predict route: the brief's, not /predict.
    page = dict(PAGE_PATHS["/"])
    page["get"] = {
        **page["get"],
        "description": page["get"]["description"].format(predict=contract.predict_path),
    }
    return {**routes, **SERVICE_PATHS, **PAGE_PATHS, "/": page}


def predict_operation(model):
    as_missing = model.contract.invalid == "as_missing"
    answered = {
        "description": "The answer (stored now, or already stored)",
        "content": json_content(ref("PredictAnswer")),
    }
    invalid = {"$ref": "#/components/responses/Invalid"}
    if as_missing:  # api.toml [predict] invalid = "as_missing"
        answered["headers"] = {
            "X-Treated-As-Missing": {
                "description": "The fields whose value was unreadable and scored as missing",
                "schema": {"type": "string", "examples": ["Age, Fare"]},
            }
        }
        invalid = error_response(
            "The id is missing or malformed, or the observation is not an object (a bad "
            "feature value is scored as missing: 200)"
        )
    return {
        "operationId": "predict",
        "summary": "Score one observation and store the prediction under the client's id",
        "description": text(
            """
            The first request with an id stores the request and the model's answer. Sending
            the same id again with the same observation (a retry) returns the stored answer
            and writes nothing; the same id with another observation is a 409 that leaves
            the stored row untouched.
            """
        ),
        "requestBody": {"required": True, "content": json_content(ref("PredictRequest"))},
        "responses": {
            "200": answered,
            "400": {"$ref": "#/components/responses/BadRequest"},
            "409": {
                "description": "The id is stored with another observation; nothing is written",
                "content": json_content(ref("Conflict")),
            },
            "413": {"$ref": "#/components/responses/TooLarge"},
            "422": invalid,
            "503": {"$ref": "#/components/responses/DatabaseUnavailable"},
        },
    }


def batch_operation(model, limits):
    contract = model.contract
    most, size = limits["PREDICT_BATCH_MAX_OBSERVATIONS"], limits["PREDICT_BATCH_MAX_BYTES"]
    shape = f'{{"observations": [{contract.body_example()}, ...]}}'
    return {
        "operationId": "predictBatch",
        "summary": f"Score many observations in one request, each answered as "
        f"{contract.predict_path} would",
        "description": text(
            f"""
            Each item is one {contract.predict_path} body and gets, in order, exactly what
            {contract.predict_path} would answer for it had the items been sent one after
            the other: 200 with its answer (a new id, or a retry of a stored id with the same
            observation), 409 with an error and the answer (the id is stored with another
            observation; nothing is written), 422 with an error (that item is invalid). A
            repeated id inside one request is a retry or a conflict of the first. One bad
            item never fails the others: the valid ones are scored in one call and stored in
            one transaction.

            Each result is {{"id": <the item's id as sent, null if it cannot be read>,
            "status": <200, 409 or 422>}} with "answer" ({contract.predict_path}'s answer,
            nested: any keys the contract gives it) for a 200 and a 409, and "error" for a
            409 and a 422.

            The whole request is refused, storing nothing, only when it cannot be read: 400
            (not JSON, or not {shape}), 413 (larger than PREDICT_BATCH_MAX_BYTES, {size}
            bytes), 422 (no item, or more than PREDICT_BATCH_MAX_OBSERVATIONS, {most}), 503
            (the database is unavailable: send it again, the ids make it safe).
            """
        ),
        "requestBody": {"required": True, "content": json_content(ref("PredictBatchRequest"))},
        "responses": {
            "200": {
                "description": "One result per item, in the order of the request",
                "content": json_content(ref("BatchResults")),
            },
            "400": error_response(f"The body is not JSON, or not {shape}"),
            "413": error_response("The body is larger than PREDICT_BATCH_MAX_BYTES"),
            "422": error_response("No item, or more items than PREDICT_BATCH_MAX_OBSERVATIONS"),
            "503": {"$ref": "#/components/responses/DatabaseUnavailable"},
        },
    }


def update_operation(model):
    stored_row = model.contract.update_sources is None
    return {
        "operationId": "update",
        "summary": "Attach the true outcome (a class, or a number) to a stored prediction",
        "description": "Sent again, the true outcome replaces the one stored.",
        "requestBody": {"required": True, "content": json_content(ref("UpdateRequest"))},
        "responses": {
            "200": {
                "description": "The stored row, with its true outcome"
                if stored_row
                else "The answer the contract names, from the request and the stored prediction",
                "content": json_content(ref("UpdateAnswer")),
            },
            "400": {"$ref": "#/components/responses/BadRequest"},
            "404": {"$ref": "#/components/responses/NotFound"},
            "413": {"$ref": "#/components/responses/TooLarge"},
            "422": {"$ref": "#/components/responses/Invalid"},
            "503": {"$ref": "#/components/responses/DatabaseUnavailable"},
        },
    }


def with_api_keys(routes, contract):
    """API_KEYS set (api_keys.py): the contract's three routes need a key, a 401 without
    one; an /update of a row that another key wrote is a 403."""
    not_yours = error_response(
        "The row was stored by another API key (or before keys were on): only that key, or "
        "a key marked * in API_KEYS, may label it"
    )
    for path in (contract.predict_path, contract.batch_path, contract.update_path):
        operation = routes[path]["post"]
        operation["security"] = [{"apiKey": []}, {"apiKeyHeader": []}]
        answers = {**operation["responses"], "401": {"$ref": "#/components/responses/NoApiKey"}}
        if path == contract.update_path:
            answers["403"] = not_yours
        operation["responses"] = dict(sorted(answers.items()))
    return routes


def with_rate_limit(routes, contract):
    """RATE_LIMIT set (rate_limits.py): past it, the contract's three routes answer 429."""
    for path in (contract.predict_path, contract.batch_path, contract.update_path):
        operation = routes[path]["post"]
        too_many = error_response(
            "More requests than RATE_LIMIT allows this API key (or this client address, "
            "without keys): send it again after Retry-After seconds"
        )
        too_many["headers"] = {
            "Retry-After": {
                "description": "Seconds until the limit lets a request through",
                "schema": {"type": "integer", "minimum": 1},
            }
        }
        operation["responses"] = dict(sorted({**operation["responses"], "429": too_many}.items()))
    return routes


def with_quota(routes, contract):
    """DATABASE_QUOTA_MB with [store] when_full = "refuse" (quota.py): the predict route's
    new id in a full store is a 507 (a batch's item too: its result says so)."""
    full = error_response(
        "The database is full (DATABASE_QUOTA_MB): a new id is not stored, so it is refused; "
        "retries of stored ids and labels still work"
    )
    operation = routes[contract.predict_path]["post"]
    operation["responses"] = dict(sorted({**operation["responses"], "507": full}.items()))
    return routes


# API_KEYS set: the two ways to send a key, and the 401 without a valid one.
API_KEY_SCHEMES = {
    "apiKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "A key of API_KEYS (its part after name:), as Authorization: Bearer",
    },
    "apiKeyHeader": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "A key of API_KEYS, in the header X-API-Key",
    },
}


def no_api_key():
    answer = error_response("No API key, another scheme than Bearer, or a key not in API_KEYS")
    answer["headers"] = {
        "WWW-Authenticate": {
            "description": 'Bearer realm="predictions" (and error="invalid_token" for a bad key)',
            "schema": {"type": "string"},
        }
    }
    return answer


def responses(limits):
    found = {name: error_response(description) for name, description in ERRORS.items()}
    found["TooLarge"]["description"] += f" ({limits['MAX_CONTENT_LENGTH']} bytes)"
    found["DatabaseUnavailable"]["headers"] = {
        "Retry-After": {
            "description": "Seconds to wait before retrying",
            "schema": {"type": "integer"},
        }
    }
    return found


ERRORS = {
    "BadRequest": "The body is not JSON, or not a JSON object",
    "NotFound": "No such id (or, for the admin routes, no valid admin token)",
    "TooLarge": "The body is larger than MAX_REQUEST_BYTES",
    "Invalid": "A field is missing or has the wrong type or range; the error names it",
    "DatabaseUnavailable": "The database cannot be reached or is too busy; retry after a second",
}
