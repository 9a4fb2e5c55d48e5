"""The API in OpenAPI 3.1, built at start-up from the model and its contract.

    spec = build_spec(model, app.config)  # a dict: the brief's routes, ids and answers
    text = as_yaml(spec)                  # what GET /openapi.yaml serves

Why built, not written: the routes, the ids, the shape of the body and of every answer are
the brief's (contract.py, from api.toml), and the columns and their JSON types are the
model's (columns.json, dtypes.pickle). A document written by hand describes one model and
goes wrong with the next; this one is made from the objects the service validates with,
so it cannot disagree with them. What every model shares (/stats, /metrics, the errors) is
data at the end of this file.

The rules it writes down are those of app.py and contract.py: an integer or boolean column
is required, any other may be missing (null, NaN or left out); an integer id is 64-bit, a
string id 1 to 200 characters, and an id without id_type either; an answer holds exactly
the keys its contract names, each of the type its source gives (a decision is a boolean, a
label one of the classes...).
"""

import inspect
import json
import re
import textwrap

import numpy as np

from contract import ANY_ID, MAX_STRING_ID


def text(docstring):
    """A description written as an indented block: its paragraphs, filled to 88 columns
    (the values put into an f-string would make some lines long)."""
    paragraphs = inspect.cleandoc(docstring).split("\n\n")
    return "\n\n".join(textwrap.fill(" ".join(p.split()), 88) for p in paragraphs)


REF = "#/components/schemas/"
INT64 = {"type": "integer", "format": "int64", "minimum": -(2**63), "maximum": 2**63 - 1}
DEFAULT_LIMITS = {
    "MAX_CONTENT_LENGTH": 64 * 1024,
    "PREDICT_BATCH_MAX_BYTES": 4 * 1024 * 1024,
    "PREDICT_BATCH_MAX_OBSERVATIONS": 1000,
}


def ref(name):
    return {"$ref": REF + name}


def build_spec(model, settings=None):
    """The OpenAPI document of the service that serves `model` (app.LoadedModel).

    `settings` (app.config) gives the size limits in force; without it, their defaults.
    """
    limits = {name: (settings or {}).get(name, value) for name, value in DEFAULT_LIMITS.items()}
    return {
        "openapi": "3.1.0",
        "info": info(model, limits),
        "servers": [{"url": "/"}],
        "paths": paths(model, limits),
        "components": {
            "securitySchemes": SECURITY_SCHEMES,
            "schemas": {**model_schemas(model, limits), **STATS_SCHEMAS, **SHARED_SCHEMAS},
            "responses": responses(limits),
        },
    }


def info(model, limits):
    contract, task = model.contract, model.task
    return {
        "title": f"{TASK_NAMES[task.name].capitalize()} model API",
        "version": model.version,  # the document changes with the model it describes
        "description": text(
            f"""
            A scikit-learn model, a {TASK_NAMES[task.name]}, behind an HTTP API. Every
            prediction is stored under the id the client gives it ({id_words(contract)}), so
            that the true outcome can be attached later with POST {contract.update_path}.

            POST {contract.predict_path} takes {contract.body_example()}: {body_words(model)}
            It answers {answer_words(predict_sources(model))}.

            Request bodies are read as JSON whatever their Content-Type. A missing value may
            be sent as null, as the raw token NaN (what pandas and Python's json.dumps
            write), or left out. Integral fractions such as 2.0 are accepted wherever an
            integer is expected. Bodies larger than MAX_REQUEST_BYTES
            ({limits["MAX_CONTENT_LENGTH"]} bytes) get 413. The POST routes are also served
            with a final slash ({contract.predict_path}/ as well as {contract.predict_path}).

            Every error is a JSON object {{"error": "<what is wrong>"}}; a 409 adds the answer.
            """
        ),
    }


TASK_NAMES = {
    "binary": "binary classifier",
    "multiclass": "multiclass classifier",
    "regression": "regressor",
}


def id_words(contract):
    kinds = [f"{field}, {contract.id_kinds[field]}" for field in contract.id_fields]
    if len(kinds) == 1:
        return kinds[0]
    return "a composite key: " + "; ".join(kinds)


def body_words(model):
    if model.contract.observation_field:
        return f"the features are the fields of {model.contract.observation_field}."
    return "the features are the body's own fields, next to the id."


def answer_words(sources):
    return ", ".join(f"{key} ({source})" for key, source in sources.items())


def predict_sources(model):
    return model.contract.predict_sources or model.task.answer_sources


# ---------------------------------------------------------------------------------------
# The paths: the contract's three routes, then the service's own
# ---------------------------------------------------------------------------------------


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


def json_content(schema):
    return {"application/json": {"schema": schema}}


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


def error_response(description):
    return {"description": description, "content": json_content(ref("Error"))}


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


# ---------------------------------------------------------------------------------------
# The schemas of this model and contract
# ---------------------------------------------------------------------------------------


def model_schemas(model, limits):
    predict = request_fields(model)
    update = update_fields(model)
    return {
        "Observation": observation_schema(model),
        "PredictRequest": predict_request(model),
        "PredictAnswer": answer_schema(predict_sources(model), model.task, predict),
        "Conflict": conflict_schema(model),
        "PredictBatchRequest": batch_request(limits),
        "BatchResults": {
            "type": "object",
            "required": ["results"],
            "additionalProperties": False,
            "properties": {"results": {"type": "array", "items": ref("BatchResult")}},
        },
        "BatchResult": batch_result(model),
        "UpdateRequest": update_request(model, update),
        "UpdateAnswer": update_answer(model, update),
        "StoredPrediction": stored_prediction(model),
        "Health": health_schema(model),
        **({"Class": class_schema(model.task)} if hasattr(model.task, "classes") else {}),
    }


def column_schema(model, column):
    """A column as app.validate_value reads it: its JSON type, range, and whether missing."""
    kind, dtype = model.kinds[column], model.dtypes[column]
    if kind == "integer":
        bounds = np.iinfo(dtype)
        return {"type": "integer", "minimum": int(bounds.min), "maximum": int(bounds.max)}
    if kind == "boolean":
        return {"type": "boolean"}
    if kind == "float":
        largest = float(np.finfo(dtype).max)  # a float32 column refuses what it cannot hold
        return {"type": ["number", "null"], "minimum": -largest, "maximum": largest}
    return {"type": ["string", "null"]}


def required_columns(model):
    """Integer and boolean columns: a missing value cannot be sent for them (app.py)."""
    return [c for c in model.columns if model.kinds[c] in ("integer", "boolean")]


def observation_schema(model):
    where = model.contract.observation_field
    return {
        "description": text(
            f"""
            The columns the model was trained on (columns.json, typed by dtypes.pickle),
            {f"the fields of {where}" if where else "at the top level of the body"}. Integer
            and boolean columns are required; the others may be null, NaN or absent (a
            missing value). Keys the model does not use are ignored.
            """
        ),
        "type": "object",
        "required": required_columns(model),
        "properties": {column: column_schema(model, column) for column in model.columns},
    }


def id_schema(kind):
    """An id field of this kind (contract.py): an integer, a string, or either (ANY_ID)."""
    integer = {"description": "An id: a 64-bit signed integer", **INT64}
    string = {
        "description": f"An id: a string of 1 to {MAX_STRING_ID} characters",
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_STRING_ID,
    }
    if kind != ANY_ID:
        return integer if kind == "integer" else string
    return {
        "description": 'An id: an integer, or a string (42 and "42" are the same id)',
        "oneOf": [integer, string],
    }


def id_properties(model):
    """{field: schema} of the id; a field that is also a column (flat body) is both."""
    contract, found = model.contract, {}
    for field in contract.id_fields:
        found[field] = id_schema(contract.id_kinds[field])
        if field in model.columns and not contract.observation_field:
            found[field] = {"allOf": [found[field], column_schema(model, field)]}
    return found


def request_fields(model):
    """{field: schema} of every field of a /predict body."""
    contract = model.contract
    if contract.observation_field:
        return {**id_properties(model), contract.observation_field: ref("Observation")}
    columns = {column: column_schema(model, column) for column in model.columns}
    return {**columns, **id_properties(model)}


def predict_request(model):
    contract = model.contract
    fields = request_fields(model)
    if contract.observation_field:
        required = [*contract.id_fields, contract.observation_field]
        properties = fields
    else:  # the id first, then the columns, as a client writes them
        required = [*contract.id_fields]
        required += [c for c in required_columns(model) if c not in required]
        properties = {**id_properties(model), **fields}
    return {
        "description": f"One observation and its id: {contract.body_example()}",
        "type": "object",
        "required": required,
        "properties": properties,
    }


def batch_request(limits):
    return {
        "type": "object",
        "required": ["observations"],
        "properties": {
            "observations": {
                "description": "What the predict route takes, once per item",
                "type": "array",
                "minItems": 1,
                "maxItems": limits["PREDICT_BATCH_MAX_OBSERVATIONS"],
                "items": ref("PredictRequest"),
            }
        },
    }


# --- Answers: each key has the type of its source ---------------------------------------


def class_schema(task):
    return {
        "description": "One of the model's classes, of its JSON type (GET /health: classes)",
        "enum": list(task.classes),
    }


def output_schemas(task):
    """{output: schema}: what `prediction.<output>` gives (tasks.py)."""
    probability = {"type": "number", "minimum": 0, "maximum": 1}
    if task.name == "binary":
        return {
            "probability": {"description": f"P(class {task.positive_class})", **probability},
            "decision": {
                "description": f"Whether the probability is at least the threshold "
                f"{task.threshold}: class {json.dumps(task.positive_class)} if true",
                "type": "boolean",
            },
            "label": {"description": "The class decided", **ref("Class")},
        }
    if task.name == "multiclass":
        keys = [label if isinstance(label, str) else json.dumps(label) for label in task.classes]
        return {
            "label": {"description": "The most probable class", **ref("Class")},
            "probabilities": {
                "description": "The probability of each class, named as JSON writes it",
                "type": "object",
                "required": keys,
                "additionalProperties": False,
                "properties": dict.fromkeys(keys, probability),
            },
        }
    return {name: {"type": "number"} for name in task.outputs}


def whole_output(task):
    """What the source `prediction` gives: every output, as an object."""
    outputs = output_schemas(task)
    return {
        "type": "object",
        "required": list(outputs),
        "additionalProperties": False,
        "properties": outputs,
    }


def source_schema(source, task, fields):
    """The schema of an answer's value: prediction.<output>, prediction, request.<field>."""
    where, _, name = source.partition(".")
    if where == "prediction":
        return output_schemas(task)[name] if name else whole_output(task)
    return fields.get(name, {})  # the field as the client sent it: any JSON if unknown


def answer_schema(sources, task, fields):
    """An object of exactly the keys of `sources` (a 409's too: serving.conflict)."""
    properties = {}
    for key, source in sources.items():
        schema = source_schema(source, task, fields)
        properties[key] = {"description": f"From {source}", **schema}
    return {
        "type": "object",
        "required": list(properties),
        "additionalProperties": False,
        "properties": properties,
    }


def conflict_schema(model):
    """/predict's 409: the error, and the answer's keys (an answer key "error" is the error)."""
    answer = answer_schema(predict_sources(model), model.task, request_fields(model))
    properties = {"error": {"type": "string"}}
    properties.update((k, v) for k, v in answer["properties"].items() if k != "error")
    return {
        **answer,
        "description": "The error, and what the observation just sent would have been answered",
        "required": list(properties),
        "properties": properties,
    }


def client_id_schema(model):
    """An id as a batch result or a stored row shows it: one field's value, {field: value}."""
    contract = model.contract
    if len(contract.id_fields) == 1:
        return id_schema(contract.id_kinds[contract.id_fields[0]])
    return {
        "description": "The composite id, field by field",
        "type": "object",
        "required": list(contract.id_fields),
        "additionalProperties": False,
        "properties": {f: id_schema(contract.id_kinds[f]) for f in contract.id_fields},
    }


def batch_result(model):
    """One item's result (predict_batch.to_result): its id, its status, and its answer (the
    predict route's, nested: no key of a brief's answer can meet these) or its error."""
    sent = client_id_schema(model)
    unreadable = {"description": "null when it cannot be read", "anyOf": [sent, {"type": "null"}]}
    answer = {"description": "What the predict route answers for the item", **ref("PredictAnswer")}
    error = {"type": "string"}
    variants = [
        ("The item's answer", {"id": sent, "status": {"const": 200}, "answer": answer}),
        (
            "A conflict",
            {"id": sent, "status": {"const": 409}, "error": error, "answer": answer},
        ),
        (
            "An invalid item",
            {"id": unreadable, "status": {"const": 422}, "error": error},
        ),
    ]
    return {
        "description": "What the predict route would have answered for the item",
        "oneOf": [
            {
                "description": description,
                "type": "object",
                "required": list(properties),
                "additionalProperties": False,
                "properties": properties,
            }
            for description, properties in variants
        ],
    }


# --- /update ------------------------------------------------------------------------------


def truth_schema(task, field):
    if hasattr(task, "classes"):
        return {"description": f"{field}: the true class", **ref("Class")}
    if task.width == 1 or field is None:
        return {"description": "The true value: a finite number", "type": "number"}
    return {
        "description": "The true value of each target: a finite number each",
        "type": "object",
        "required": list(task.targets),
        "properties": dict.fromkeys(task.targets, {"type": "number"}),
    }


def update_fields(model):
    """{field: schema} of an update body: the id, and the true value in one field or one
    field per target."""
    contract = model.contract
    fields = {field: id_schema(contract.id_kinds[field]) for field in contract.id_fields}
    true = contract.true_fields or model.task.truth_field
    if isinstance(true, str):
        fields[true] = truth_schema(model.task, true)
    else:
        for target, field in true.items():
            fields[field] = {"description": f"The true {target}", "type": "number"}
    return fields


def update_request(model, fields):
    return {
        "description": "The id of a stored prediction and its true outcome",
        "type": "object",
        "required": list(fields),
        "properties": fields,
    }


def update_answer(model, fields):
    if model.contract.update_sources is None:
        return ref("StoredPrediction")
    return answer_schema(model.contract.update_sources, model.task, fields)


def stored_prediction(model):
    """A stored row (app.prediction_to_dict): the answer of the tutorial's /update, and the
    rows of /list-db-contents."""
    truth = {
        "description": "The true outcome once /update has set it, else null",
        "anyOf": [ref("ClassLabel") if hasattr(model.task, "classes") else ref("Prediction")]
        + [{"type": "null"}],
    }
    properties = {"id": STORED_ROW["id"], "observation_id": client_id_schema(model), **STORED_ROW}
    properties[model.task.truth_field] = truth
    properties["created_at"] = properties.pop("created_at")  # in the order of the row
    return {
        "description": STORED_ROW_DESCRIPTION,
        "type": "object",
        "required": list(properties),
        "additionalProperties": False,
        "properties": properties,
    }


# --- /health ------------------------------------------------------------------------------


def health_schema(model):
    """What GET /health answers for this model: its description and its contract, exactly."""
    described = {
        "version": model.version,
        **model.task.describe(),
        "columns": model.columns,
        "dtypes": {column: str(dtype) for column, dtype in model.dtypes.items()},
    }
    contract = model.contract.describe(model.task)
    return {
        "type": "object",
        "required": ["status", "database", "model", "contract", "versions"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "unavailable"]},
            "database": HEALTH_DATABASE,
            "model": constants(described, MODEL_WORDS),
            "contract": {
                "description": "The routes and fields the service speaks (api.toml)",
                **constants(
                    {name: constants(part, CONTRACT_WORDS) for name, part in contract.items()},
                    CONTRACT_PARTS,
                    nested=True,
                ),
            },
            "versions": HEALTH_VERSIONS,
            "error": {"description": "Why the status is unavailable", "type": "string"},
        },
    }


def constants(values, words, nested=False):
    """An object whose every key has exactly this value (nested: these schemas)."""
    return {
        "type": "object",
        "required": list(values),
        "additionalProperties": False,
        "properties": {
            key: {"description": words[key], **(value if nested else {"const": value})}
            for key, value in values.items()
        },
    }


MODEL_WORDS = {
    "version": "The first 12 hex digits of the SHA-256 of pipeline.pickle",
    "task": "What the model predicts, which shapes its answers",
    "classes": "Its classes, in the model's order (classes_)",
    "threshold": "The decision is probability >= threshold (THRESHOLD)",
    "positive_class": "The class the probability is of (POSITIVE_CLASS)",
    "targets": "The names of its numbers (targets.json), or null without the file",
    "columns": "The features, in training order (columns.json)",
    "dtypes": "The pandas dtype each column was trained with",
}
CONTRACT_PARTS = {
    "predict": "The route that scores and stores an observation",
    "update": "The route that takes the true outcome",
    "batch": "The route of many observations in one request",
}
CONTRACT_WORDS = {
    "path": "Its path (served with a final slash too)",
    "id": "The field(s) of the id: several make one composite key",
    "id_types": 'The JSON type of each id field ("integer or string": either, 42 and "42" one id)',
    "observation": 'The field of the features; "" when they are the body\'s own fields',
    "answer": "Each key of the answer and its source: prediction.<output>, request.<field>",
    "invalid": 'A bad feature value: "reject" (422) or "as_missing" (scored as missing, 200)',
    "true": "The field of the true outcome, or one field per target",
}


# ---------------------------------------------------------------------------------------
# YAML, without a YAML library: the spec is plain data (dicts, lists, text, numbers)
# ---------------------------------------------------------------------------------------

# Text that YAML reads back as text when written bare: no indicator first, no ": " or " #"
# inside, and none of the words YAML 1.1 reads as booleans or null.
PLAIN = re.compile(r"[A-Za-z/$_][A-Za-z0-9_./$() -]*(?<! )")
NOT_TEXT = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}


def as_yaml(spec):
    """The spec as YAML: block style, descriptions as literal blocks, the rest quoted as
    needed; yaml.safe_load reads back exactly `spec` (the tests check it)."""
    return "\n".join(block(spec, 0)) + "\n"


def block(value, indent):
    pad = " " * indent
    if isinstance(value, dict):
        for key, item in value.items():
            yield from node(f"{pad}{scalar(str(key))}:", item, indent)
        return
    for item in value:
        if isinstance(item, dict | list) and item:  # "- key: value", the rest below it
            lines = list(block(item, indent + 2))
            yield f"{pad}- {lines[0][indent + 2 :]}"
            yield from lines[1:]
        else:
            yield from node(f"{pad}-", item, indent)


def node(head, value, indent):
    """`head` (a key or a dash) and its value: on the same line, or as lines below it."""
    if is_short_list(value):  # [string, "null"]: one line
        yield f"{head} [{', '.join(scalar(item) for item in value)}]"
    elif isinstance(value, dict | list) and value:
        yield head
        yield from block(value, indent + 2)
    elif isinstance(value, str) and is_literal_block(value):
        yield head + " |-"
        yield from (f"{' ' * (indent + 2)}{line}" if line else "" for line in value.split("\n"))
    else:
        yield f"{head} {scalar(value)}"


def is_short_list(value):
    return (
        isinstance(value, list)
        and not any(isinstance(item, dict | list) for item in value)
        and len(json.dumps(value)) <= 60
    )


def is_literal_block(value):
    """Several lines that a literal block keeps exactly as they are."""
    lines = value.split("\n")
    return (
        len(lines) > 1
        and lines[0][:1] not in ("", " ")
        and lines[-1] != ""
        and all(line.isprintable() for line in lines)
    )


def scalar(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        written = repr(value)
        # YAML 1.1 (PyYAML) reads 1e-06 as text: its floats need a dot.
        return written.replace("e", ".0e", 1) if "e" in written and "." not in written else written
    if isinstance(value, dict | list):
        return "{}" if isinstance(value, dict) else "[]"
    if PLAIN.fullmatch(value) and value.lower() not in NOT_TEXT:
        return value
    return quoted(value)


def quoted(value):
    """A double-quoted scalar: JSON's escapes, and every other character but printable
    ASCII escaped too (YAML takes some of them, such as U+2028, for line breaks)."""
    inner = json.dumps(value, ensure_ascii=False)[1:-1]
    return '"' + "".join(c if " " <= c <= "~" else escape(c) for c in inner) + '"'


def escape(character):
    code = ord(character)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


# ---------------------------------------------------------------------------------------
# What every model shares: /health's frame, the stored row, /list-db-contents, /stats...
# ---------------------------------------------------------------------------------------

SECURITY_SCHEMES = {
    "adminToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "The value of the ADMIN_TOKEN environment variable",
    }
}

HEALTH_DATABASE = {
    "type": "object",
    "required": ["engine", "status"],
    "properties": {
        "engine": {
            "description": "The peewee database class, e.g. SqliteDatabase",
            "type": "string",
        },
        "status": {"type": "string", "enum": ["ok", "unavailable"]},
    },
}
HEALTH_VERSIONS = {
    "description": "The versions of Python and the libraries a pickle depends on",
    "type": "object",
    "required": ["python", "scikit-learn", "pandas", "numpy", "flask", "peewee"],
    "additionalProperties": {"type": "string"},
}

SERVICE_PATHS = {
    "/health": {
        "get": {
            "operationId": "health",
            "summary": (
                "Whether the service and its database work, and which model and versions run"
            ),
            "responses": {
                "200": {
                    "description": "The service and its database work",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Health"}}
                    },
                },
                "503": {
                    "description": (
                        "The database cannot be reached; the body also says which model runs"
                    ),
                    "content": {
                        "application/json": {
                            "schema": {
                                "allOf": [
                                    {"$ref": "#/components/schemas/Health"},
                                    {
                                        "type": "object",
                                        "required": ["error"],
                                        "properties": {
                                            "error": {"type": "string"},
                                            "status": {"const": "unavailable"},
                                        },
                                    },
                                ]
                            }
                        }
                    },
                },
            },
        }
    },
    "/list-db-contents": {
        "get": {
            "operationId": "listDbContents",
            "summary": "Stored predictions, newest first, one page at a time (admin only)",
            "description": text(
                """
                Answers only with `Authorization: Bearer <ADMIN_TOKEN>`; without it, or when
                ADMIN_TOKEN is not set, the route answers 404 as if it did not exist.
                """
            ),
            "security": [{"adminToken": []}],
            "parameters": [
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "description": "Rows per page",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                },
                {
                    "name": "before_id",
                    "in": "query",
                    "required": False,
                    "description": (
                        "Only rows with a smaller id (next_before_id of the previous page)"
                    ),
                    "schema": {
                        "type": "integer",
                        "format": "int64",
                        "minimum": -9223372036854775808,
                        "maximum": 9223372036854775807,
                    },
                },
            ],
            "responses": {
                "200": {
                    "description": "One page of stored rows",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["predictions", "next_before_id"],
                                "additionalProperties": False,
                                "properties": {
                                    "predictions": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/StoredPrediction"},
                                    },
                                    "next_before_id": {
                                        "description": (
                                            "Pass as before_id to get the next page; null on the "
                                            "last page"
                                        ),
                                        "type": ["integer", "null"],
                                    },
                                },
                            }
                        }
                    },
                },
                "404": {"$ref": "#/components/responses/NotFound"},
                "422": {"$ref": "#/components/responses/Invalid"},
                "503": {"$ref": "#/components/responses/DatabaseUnavailable"},
            },
        }
    },
    "/stats": {
        "get": {
            "operationId": "stats",
            "summary": (
                "Model quality, calibration and drift, from the stored predictions (admin only)"
            ),
            "description": text(
                """
                Computed from the stored rows when asked, for one model version (model_version): the
                metrics of its task over the rows whose true outcome arrived with /update (a binary
                or multiclass classifier's true_class, a regressor's true_value), the calibration
                and the distribution of a classifier's probabilities, the versions that stored rows
                in the window, and the drift of each feature against training_profile.json (written
                by notebook 1). The rows are read with the task of the model served now, whichever
                version is reported. Answers only with `Authorization: Bearer <ADMIN_TOKEN>`;
                without it, or when ADMIN_TOKEN is not set, the route answers 404.
                """
            ),
            "security": [{"adminToken": []}],
            "parameters": [
                {
                    "name": "since",
                    "in": "query",
                    "required": False,
                    "description": (
                        "Only rows stored at or after this time (ISO 8601; UTC unless it names a "
                        "zone)"
                    ),
                    "schema": {"type": "string", "format": "date-time"},
                },
                {
                    "name": "until",
                    "in": "query",
                    "required": False,
                    "description": (
                        "Only rows stored before this time (ISO 8601; UTC unless it names a zone)"
                    ),
                    "schema": {"type": "string", "format": "date-time"},
                },
                {
                    "name": "model_version",
                    "in": "query",
                    "required": False,
                    "description": text(
                        """
                        The model version whose rows are reported (one of `versions`); by default
                        the model served now (/health's model.version). `unknown` selects the rows
                        stored before the version was recorded. A version with no rows is no error:
                        it reports zero rows and null metrics.
                        """
                    ),
                    "schema": {"type": "string"},
                },
                {
                    "name": "by",
                    "in": "query",
                    "required": False,
                    "description": text(
                        """
                        Group the rows: up to 3 columns separated by commas; empty: one group
                        of every row. With `by`, the answer is StatsGroups: each group's
                        metrics with their intervals, the spreads between groups, and the
                        brief's rules.
                        """
                    ),
                    "schema": {"type": "string"},
                },
            ],
            "responses": {
                "200": {
                    "description": (
                        "The statistics of the window (zero counts and null metrics when it is "
                        "empty)"
                    ),
                    "content": json_content({"oneOf": [ref("Stats"), ref("StatsGroups")]}),
                },
                "404": {"$ref": "#/components/responses/NotFound"},
                "422": {"$ref": "#/components/responses/Invalid"},
                "503": {"$ref": "#/components/responses/DatabaseUnavailable"},
            },
        }
    },
    "/metrics": {
        "get": {
            "operationId": "metrics",
            "summary": "Counters and histograms for Prometheus, over every worker (admin only)",
            "description": text(
                """
                The Prometheus text format. Answers only with `Authorization: Bearer <ADMIN_TOKEN>`
                (Prometheus sends it with the `authorization` setting of its scrape config); without
                it, or when ADMIN_TOKEN is not set, the route answers 404.
                """
            ),
            "security": [{"adminToken": []}],
            "responses": {
                "200": {
                    "description": "The metrics, in the Prometheus text exposition format",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                "404": {"$ref": "#/components/responses/NotFound"},
            },
        }
    },
    "/openapi.yaml": {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "responses": {
                "200": {
                    "description": "The OpenAPI document of this API",
                    "content": {"application/yaml": {}},
                }
            },
        }
    },
    "/openapi.json": {
        "get": {
            "operationId": "openapiJson",
            "summary": "This document, as JSON",
            "responses": {
                "200": {
                    "description": "The OpenAPI document of this API",
                    "content": {"application/json": {}},
                }
            },
        }
    },
}

PAGE_PATHS = {
    "/": {
        "get": {
            "operationId": "tryTheModel",
            "summary": 'The "try the model" web page',
            "description": text(
                """
                A form built from the loaded model, one field per column; it sends the observation
                to POST {predict} and shows the answer. For people, in a browser.
                """
            ),
            "responses": {"200": {"description": "The HTML page", "content": {"text/html": {}}}},
        }
    },
    "/monitor": {
        "get": {
            "operationId": "monitor",
            "summary": "The monitoring web page",
            "description": text(
                """
                A dashboard of GET /stats: the page asks for the admin token and calls /stats with
                it. For people, in a browser.
                """
            ),
            "responses": {"200": {"description": "The HTML page", "content": {"text/html": {}}}},
        }
    },
}

SHARED_SCHEMAS = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "additionalProperties": False,
        "properties": {"error": {"type": "string"}},
    },
    "ClassLabel": {
        "description": text(
            """
            A class of a model, as JSON carries it: 0 and 1, false and true, "no" and "yes"...
            (stored rows and /stats may hold the classes of a model served before this one)
            """
        ),
        "type": ["string", "number", "boolean"],
    },
    "Prediction": {
        "description": "A regressor's number, or an object with a number for each target",
        "oneOf": [
            {"type": "number"},
            {"type": "object", "minProperties": 1, "additionalProperties": {"type": "number"}},
        ],
    },
    "OptionalNumber": {
        "description": "A finite number, or null (also NaN or absent) for a missing value",
        "type": ["number", "null"],
    },
}
STORED_ROW_DESCRIPTION = text(
    """
    A stored row. The true outcome is under the name the model's task gives it: true_class
    (classifiers) or true_value (regressors). Rows stored before the upgrade to any task
    have a null model_version, prediction, threshold and positive_class.
    """
)
# The columns of a stored row that do not depend on the contract (stored_prediction adds
# the id and the true outcome).
STORED_ROW = {
    "id": {"description": "The row's own id, in insertion order", "type": "integer"},
    "observation": {
        "description": "The body of the predict request, exactly as received",
        "type": "string",
    },
    "model_version": {
        "description": "The model that answered (model.version of GET /health at the time)",
        "type": ["string", "null"],
    },
    "prediction": {
        "description": text(
            """
            What the model produced, as stored: a binary classifier's probability, decision
            and label; a multiclass classifier's label and probabilities; a regressor's
            value, or one number per target under the target's name
            """
        ),
        "type": ["object", "null"],
    },
    "proba": {
        "description": "A binary classifier's probability of the positive class, else null",
        "type": ["number", "null"],
        "minimum": 0,
        "maximum": 1,
    },
    "threshold": {
        "description": "A binary classifier's threshold when it answered, else null",
        "type": ["number", "null"],
        "minimum": 0,
        "maximum": 1,
    },
    "positive_class": {
        "description": "A binary classifier's positive class when it answered, else null",
        "anyOf": [{"$ref": "#/components/schemas/ClassLabel"}, {"type": "null"}],
    },
    "created_at": {
        "description": "When the prediction was stored, in UTC",
        "type": "string",
        "format": "date-time",
    },
}
STATS_SCHEMAS = {
    "Stats": {
        "description": text(
            """
            The reported version's rows in the window, judged by the task of the model served now
            (model.task.task): each task has its own form of metrics, calibration and distribution.
            """
        ),
        "type": "object",
        "required": [
            "model",
            "window",
            "versions",
            "predictions",
            "labelled",
            "labelled_left_out",
            "metrics",
            "calibration",
            "distribution",
            "drift",
            "drift_note",
            "unreadable_observations",
            "replaced",
        ],
        "additionalProperties": False,
        "properties": {
            "model": {"$ref": "#/components/schemas/StatsModel"},
            "window": {
                "type": "object",
                "required": ["since", "until"],
                "additionalProperties": False,
                "properties": {
                    "since": {
                        "description": "The since parameter, in UTC; null without it",
                        "type": ["string", "null"],
                        "format": "date-time",
                    },
                    "until": {
                        "description": "The until parameter, in UTC; null without it",
                        "type": ["string", "null"],
                        "format": "date-time",
                    },
                },
            },
            "versions": {
                "description": text(
                    """
                    Every model version with rows in the window (whichever is reported), the most
                    recently used first
                    """
                ),
                "type": "array",
                "items": {"$ref": "#/components/schemas/StatsVersion"},
            },
            "predictions": {
                "description": "Rows of the reported version stored in the window",
                "type": "integer",
                "minimum": 0,
            },
            "labelled": {
                "description": "Those of them with a true outcome (true_class or true_value)",
                "type": "integer",
                "minimum": 0,
            },
            "labelled_left_out": {
                "description": text(
                    """
                    Labelled rows left out of the metrics and the calibration because this model's
                    task cannot read their stored prediction or true outcome (rows of a model of
                    another kind, or with other classes)
                    """
                ),
                "type": "integer",
                "minimum": 0,
            },
            "metrics": {
                "description": text(
                    """
                    Over the labelled rows, with sklearn.metrics, in the form of the task; a metric
                    is null where it is undefined, and reason says why
                    """
                ),
                "oneOf": [
                    {"$ref": "#/components/schemas/BinaryMetrics"},
                    {"$ref": "#/components/schemas/MulticlassMetrics"},
                    {"$ref": "#/components/schemas/RegressionMetrics"},
                    {"$ref": "#/components/schemas/RegressionTargetsMetrics"},
                ],
            },
            "calibration": {
                "description": text(
                    """
                    Classifiers: the labelled rows in 10 equal-width probability bins (a binary
                    classifier's probability of its positive class; a multiclass classifier's top
                    probability, that of its predicted class). Regressors: null
                    """
                ),
                "oneOf": [{"$ref": "#/components/schemas/CalibrationBins"}, {"type": "null"}],
            },
            "distribution": {
                "description": text(
                    """
                    Classifiers: every row of the reported version in the window, in the same 10
                    probability bins. Regressors: null
                    """
                ),
                "oneOf": [{"$ref": "#/components/schemas/ProbabilityBins"}, {"type": "null"}],
            },
            "drift": {
                "description": (
                    "Per model column, its PSI and its bins; null when drift_note says why"
                ),
                "type": ["object", "null"],
                "additionalProperties": {
                    "type": "object",
                    "required": ["psi", "bins"],
                    "additionalProperties": False,
                    "properties": {
                        "psi": {"type": "number", "minimum": 0},
                        "bins": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["bin", "training", "window", "count"],
                                "additionalProperties": False,
                                "properties": {
                                    "bin": {"type": "string"},
                                    "training": {
                                        "description": "The share of the training rows in the bin",
                                        "type": "number",
                                    },
                                    "window": {
                                        "description": (
                                            "The share of the window's readable rows in the bin"
                                        ),
                                        "type": "number",
                                    },
                                    "count": {
                                        "description": "The window's readable rows in the bin",
                                        "type": "integer",
                                        "minimum": 0,
                                    },
                                },
                            },
                        },
                    },
                },
            },
            "drift_note": {
                "description": (
                    "Why drift is null (no profile, a profile of another model, no rows)"
                ),
                "type": ["string", "null"],
            },
            "unreadable_observations": {
                "description": (
                    "Stored rows whose observation this model cannot read; left out of drift"
                ),
                "type": "integer",
                "minimum": 0,
            },
            "replaced": {
                "description": (
                    'Rows with values answered as missing ([predict] invalid = "as_missing"): '
                    "how many, and how many had each field replaced"
                ),
                "type": "object",
                "required": ["rows", "by_field"],
                "additionalProperties": False,
                "properties": {
                    "rows": {"type": "integer", "minimum": 0},
                    "by_field": {
                        "type": "object",
                        "additionalProperties": {"type": "integer", "minimum": 1},
                    },
                },
            },
        },
        "oneOf": [
            {
                "description": "A binary classifier",
                "properties": {
                    "model": {
                        "properties": {"task": {"properties": {"task": {"const": "binary"}}}}
                    },
                    "metrics": {"$ref": "#/components/schemas/BinaryMetrics"},
                    "calibration": {"type": "array"},
                    "distribution": {"type": "array"},
                },
            },
            {
                "description": "A multiclass classifier",
                "properties": {
                    "model": {
                        "properties": {"task": {"properties": {"task": {"const": "multiclass"}}}}
                    },
                    "metrics": {"$ref": "#/components/schemas/MulticlassMetrics"},
                    "calibration": {"type": "array"},
                    "distribution": {"type": "array"},
                },
            },
            {
                "description": (
                    "A regressor (several targets answer one set of metrics per target)"
                ),
                "properties": {
                    "model": {
                        "properties": {"task": {"properties": {"task": {"const": "regression"}}}}
                    },
                    "metrics": {
                        "oneOf": [
                            {"$ref": "#/components/schemas/RegressionMetrics"},
                            {"$ref": "#/components/schemas/RegressionTargetsMetrics"},
                        ]
                    },
                    "calibration": {"type": "null"},
                    "distribution": {"type": "null"},
                },
            },
        ],
    },
    "StatsModel": {
        "description": "The model served now, and the version reported",
        "type": "object",
        "required": ["version", "reported_version", "task", "columns", "held_out"],
        "additionalProperties": False,
        "properties": {
            "version": {
                "description": "The model that answers now (/health's model.version)",
                "type": "string",
                "pattern": "^[0-9a-f]{12}$",
            },
            "reported_version": {
                "description": text(
                    """
                    The version whose rows are reported: the model_version parameter, else version
                    (`unknown`: the rows stored before the version was recorded)
                    """
                ),
                "type": "string",
            },
            "task": {"$ref": "#/components/schemas/TaskDescription"},
            "columns": {"type": "array", "items": {"type": "string"}},
            "held_out": {
                "description": text(
                    """
                    What notebook 1 measured on held-out rows (from the training profile of the
                    model served); null without a usable profile
                    """
                ),
                "type": ["object", "null"],
            },
        },
    },
    "TaskDescription": {
        "description": (
            "The task of the model served, and what shapes its answers (/health's model)"
        ),
        "oneOf": [
            {
                "type": "object",
                "required": ["task", "classes", "threshold", "positive_class"],
                "additionalProperties": False,
                "properties": {
                    "task": {"const": "binary"},
                    "classes": {
                        "description": "Its two classes, in the model's order (classes_)",
                        "type": "array",
                        "minItems": 2,
                        "maxItems": 2,
                        "items": {"$ref": "#/components/schemas/ClassLabel"},
                    },
                    "threshold": {
                        "description": "The decision is proba >= threshold (THRESHOLD)",
                        "type": "number",
                        "minimum": 0,
                        "maximum": 1,
                    },
                    "positive_class": {
                        "description": "The class proba is the probability of (POSITIVE_CLASS)",
                        "$ref": "#/components/schemas/ClassLabel",
                    },
                },
            },
            {
                "type": "object",
                "required": ["task", "classes"],
                "additionalProperties": False,
                "properties": {
                    "task": {"const": "multiclass"},
                    "classes": {
                        "description": "Its classes, in the model's order (classes_)",
                        "type": "array",
                        "minItems": 3,
                        "items": {"$ref": "#/components/schemas/ClassLabel"},
                    },
                },
            },
            {
                "type": "object",
                "required": ["task", "targets"],
                "additionalProperties": False,
                "properties": {
                    "task": {"const": "regression"},
                    "targets": {
                        "description": (
                            "The names of its numbers (targets.json), or null without the file"
                        ),
                        "type": ["array", "null"],
                        "minItems": 1,
                        "items": {"type": "string"},
                    },
                },
            },
        ],
    },
    "StatsVersion": {
        "description": "A model version's rows in the window",
        "type": "object",
        "required": [
            "version",
            "predictions",
            "labelled",
            "first_stored",
            "last_stored",
            "serving",
        ],
        "additionalProperties": False,
        "properties": {
            "version": {
                "description": (
                    "The model_version stored with the rows; `unknown` for those stored without"
                ),
                "type": "string",
            },
            "predictions": {"description": "Its rows", "type": "integer", "minimum": 1},
            "labelled": {
                "description": "Its rows with a true outcome",
                "type": "integer",
                "minimum": 0,
            },
            "first_stored": {
                "description": "When its first row in the window was stored, in UTC",
                "type": "string",
                "format": "date-time",
            },
            "last_stored": {
                "description": "When its last row in the window was stored, in UTC",
                "type": "string",
                "format": "date-time",
            },
            "serving": {"description": "Whether it is the model served now", "type": "boolean"},
        },
    },
    "Reason": {
        "description": "Why some metrics are null; null when none is",
        "type": ["string", "null"],
    },
    "ConfusionMatrix": {
        "description": text(
            """
            The labelled rows by true class (rows) and decided or predicted class (columns), both in
            the order of labels
            """
        ),
        "type": "object",
        "required": ["labels", "matrix"],
        "additionalProperties": False,
        "properties": {
            "labels": {
                "type": "array",
                "minItems": 2,
                "items": {"$ref": "#/components/schemas/ClassLabel"},
            },
            "matrix": {
                "type": "array",
                "items": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            },
        },
    },
    "BinaryMetrics": {
        "description": text(
            """
            A binary classifier's metrics, about its positive class. Each row is decided at the
            threshold and for the positive class stored with it (0.5 and classes[1] for the rows
            stored before those were recorded); a row stored for the other class counts with 1 -
            proba. Every number is null when no row is labelled.
            """
        ),
        "type": "object",
        "required": [
            "roc_auc",
            "accuracy",
            "log_loss",
            "brier",
            "precision",
            "recall",
            "f1",
            "positive_rate",
            "confusion_matrix",
            "thresholds",
            "reason",
        ],
        "additionalProperties": False,
        "properties": {
            "roc_auc": {
                "description": "Null also when the labelled rows are all of one class",
                "$ref": "#/components/schemas/OptionalNumber",
            },
            "accuracy": {"$ref": "#/components/schemas/OptionalNumber"},
            "log_loss": {"$ref": "#/components/schemas/OptionalNumber"},
            "brier": {"$ref": "#/components/schemas/OptionalNumber"},
            "precision": {
                "description": "Null also when no labelled row is decided positive",
                "$ref": "#/components/schemas/OptionalNumber",
            },
            "recall": {
                "description": "Null also when no labelled row is of the positive class",
                "$ref": "#/components/schemas/OptionalNumber",
            },
            "f1": {
                "description": (
                    "Null also when no labelled row is of the positive class or decided so"
                ),
                "$ref": "#/components/schemas/OptionalNumber",
            },
            "positive_rate": {
                "description": "The share of the labelled rows decided positive",
                "type": ["number", "null"],
                "minimum": 0,
                "maximum": 1,
            },
            "confusion_matrix": {
                "description": "labels is [negative class, positive class]; the matrix is 2 by 2",
                "allOf": [{"$ref": "#/components/schemas/ConfusionMatrix"}],
                "properties": {"labels": {"maxItems": 2}},
            },
            "thresholds": {
                "description": "The thresholds the labelled rows were decided at, smallest first",
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["threshold", "labelled"],
                    "additionalProperties": False,
                    "properties": {
                        "threshold": {"type": "number", "minimum": 0, "maximum": 1},
                        "labelled": {
                            "description": "The labelled rows decided at it",
                            "type": "integer",
                            "minimum": 1,
                        },
                    },
                },
            },
            "reason": {"$ref": "#/components/schemas/Reason"},
        },
    },
    "MulticlassMetrics": {
        "description": text(
            """
            A multiclass classifier's metrics: the predicted class is the stored label. Every number
            is null when no row is labelled.
            """
        ),
        "type": "object",
        "required": ["accuracy", "macro_f1", "log_loss", "confusion_matrix", "per_class", "reason"],
        "additionalProperties": False,
        "properties": {
            "accuracy": {"$ref": "#/components/schemas/OptionalNumber"},
            "macro_f1": {
                "description": "The mean F1 over the classes that occur, true or predicted",
                "$ref": "#/components/schemas/OptionalNumber",
            },
            "log_loss": {
                "description": "Over every class of the model",
                "$ref": "#/components/schemas/OptionalNumber",
            },
            "confusion_matrix": {
                "description": "labels is the model's classes, in its order",
                "$ref": "#/components/schemas/ConfusionMatrix",
            },
            "per_class": {
                "description": "One entry per class, in the model's order",
                "type": "array",
                "items": {
                    "type": "object",
                    "required": [
                        "class",
                        "true",
                        "predicted",
                        "predicted_all",
                        "precision",
                        "recall",
                        "f1",
                    ],
                    "additionalProperties": False,
                    "properties": {
                        "class": {"$ref": "#/components/schemas/ClassLabel"},
                        "true": {
                            "description": "Labelled rows of this true class",
                            "type": "integer",
                            "minimum": 0,
                        },
                        "predicted": {
                            "description": "Labelled rows predicted this class",
                            "type": "integer",
                            "minimum": 0,
                        },
                        "predicted_all": {
                            "description": (
                                "Rows of the window predicted this class, labelled or not"
                            ),
                            "type": "integer",
                            "minimum": 0,
                        },
                        "precision": {
                            "description": "Null when no labelled row is predicted this class",
                            "$ref": "#/components/schemas/OptionalNumber",
                        },
                        "recall": {
                            "description": "Null when no labelled row is of this class",
                            "$ref": "#/components/schemas/OptionalNumber",
                        },
                        "f1": {
                            "description": (
                                "Null when no labelled row is of this class or predicted so"
                            ),
                            "$ref": "#/components/schemas/OptionalNumber",
                        },
                    },
                },
            },
            "reason": {"$ref": "#/components/schemas/Reason"},
        },
    },
    "RegressionTargetMetrics": {
        "description": text(
            """
            A regressor's metrics for one number, over the labelled rows; all null when no row is
            labelled
            """
        ),
        "type": "object",
        "required": ["mae", "rmse", "r2", "errors"],
        "properties": {
            "mae": {"$ref": "#/components/schemas/OptionalNumber"},
            "rmse": {"$ref": "#/components/schemas/OptionalNumber"},
            "r2": {
                "description": "Null also on one row, or when every true value is the same",
                "$ref": "#/components/schemas/OptionalNumber",
            },
            "errors": {
                "description": "The errors, prediction - truth; null when no row is labelled",
                "oneOf": [{"$ref": "#/components/schemas/RegressionErrors"}, {"type": "null"}],
            },
        },
    },
    "RegressionErrors": {
        "type": "object",
        "required": ["mean", "quantiles", "bins"],
        "additionalProperties": False,
        "properties": {
            "mean": {"type": "number"},
            "quantiles": {
                "description": "The quantiles 0, 0.05, 0.25, 0.5, 0.75, 0.95 and 1",
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["q", "value"],
                    "additionalProperties": False,
                    "properties": {
                        "q": {"type": "number", "minimum": 0, "maximum": 1},
                        "value": {"type": "number"},
                    },
                },
            },
            "bins": {
                "description": text(
                    """
                    10 equal-width bins from the smallest error to the largest (numpy.histogram):
                    each [low, high), the last [low, high]
                    """
                ),
                "type": "array",
                "minItems": 10,
                "maxItems": 10,
                "items": {
                    "type": "object",
                    "required": ["low", "high", "count"],
                    "additionalProperties": False,
                    "properties": {
                        "low": {"type": "number"},
                        "high": {"type": "number"},
                        "count": {"type": "integer", "minimum": 0},
                    },
                },
            },
        },
    },
    "RegressionMetrics": {
        "description": "A regressor of one number (/health's model.targets is null or names one)",
        "allOf": [{"$ref": "#/components/schemas/RegressionTargetMetrics"}],
        "required": ["reason"],
        "properties": {"reason": {"$ref": "#/components/schemas/Reason"}},
        "unevaluatedProperties": False,
    },
    "RegressionTargetsMetrics": {
        "description": "A regressor of several numbers, one set of metrics per target",
        "type": "object",
        "required": ["targets", "reason"],
        "additionalProperties": False,
        "properties": {
            "targets": {
                "description": "One entry per target of model.task.targets",
                "type": "object",
                "minProperties": 2,
                "additionalProperties": {
                    "allOf": [{"$ref": "#/components/schemas/RegressionTargetMetrics"}],
                    "unevaluatedProperties": False,
                },
            },
            "reason": {"$ref": "#/components/schemas/Reason"},
        },
    },
    "ProbabilityBin": {
        "type": "object",
        "required": ["low", "high", "count"],
        "properties": {
            "low": {"type": "number", "minimum": 0, "maximum": 0.9},
            "high": {"type": "number", "minimum": 0.1, "maximum": 1},
            "count": {"type": "integer", "minimum": 0},
        },
    },
    "ProbabilityBins": {
        "description": "Rows per probability bin [k/10, (k+1)/10), 1 falling in the last one",
        "type": "array",
        "minItems": 10,
        "maxItems": 10,
        "items": {
            "allOf": [{"$ref": "#/components/schemas/ProbabilityBin"}],
            "unevaluatedProperties": False,
        },
    },
    "CalibrationBins": {
        "description": "The labelled rows per probability bin, with what happened to them",
        "type": "array",
        "minItems": 10,
        "maxItems": 10,
        "items": {
            "allOf": [{"$ref": "#/components/schemas/ProbabilityBin"}],
            "required": ["mean_proba", "observed_rate"],
            "properties": {
                "mean_proba": {
                    "description": "The mean probability of the bin's rows; null when it has none",
                    "type": ["number", "null"],
                    "minimum": 0,
                    "maximum": 1,
                },
                "observed_rate": {
                    "description": text(
                        """
                        The share of the bin's rows whose true class is the positive one (binary),
                        or whose predicted class was right (multiclass); null when it has none
                        """
                    ),
                    "type": ["number", "null"],
                    "minimum": 0,
                    "maximum": 1,
                },
            },
            "unevaluatedProperties": False,
        },
    },
}

# GET /stats?by=: each group's metrics, the spreads between groups, the brief's rules.
STATS_SCHEMAS |= {
    "StatsGroups": {
        "type": "object",
        "required": [
            "model",
            "window",
            "by",
            "predictions",
            "labelled",
            "labelled_left_out",
            "min_labelled",
            "confidence",
            "metrics",
            "columns",
            "groups",
            "spreads",
            "rules",
        ],
        "additionalProperties": False,
        "properties": {
            "model": {"$ref": "#/components/schemas/StatsModel"},
            "window": {
                "type": "object",
                "required": ["since", "until"],
                "properties": {
                    "since": {"type": ["string", "null"], "format": "date-time"},
                    "until": {"type": ["string", "null"], "format": "date-time"},
                },
            },
            "by": {"type": "array", "maxItems": 3, "items": {"type": "string"}},
            "predictions": {"type": "integer", "minimum": 0},
            "labelled": {"type": "integer", "minimum": 0},
            "labelled_left_out": {"type": "integer", "minimum": 0},
            "min_labelled": {"type": "integer", "minimum": 1},
            "confidence": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
            "metrics": {"type": "array", "items": {"type": "string"}},
            "columns": {"type": "array", "items": {"type": "string"}},
            "groups": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["group", "predictions", "labelled", "metrics", "reason"],
                    "additionalProperties": False,
                    "properties": {
                        "group": {"type": "object", "additionalProperties": {"type": "string"}},
                        "predictions": {"type": "integer", "minimum": 0},
                        "labelled": {"type": "integer", "minimum": 0},
                        "metrics": {
                            "type": "object",
                            "additionalProperties": {
                                "anyOf": [
                                    {"$ref": "#/components/schemas/GroupFigure"},
                                    {"type": "null"},
                                ]
                            },
                        },
                        "reason": {"type": ["string", "null"]},
                    },
                },
            },
            "spreads": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "required": ["groups", "lowest", "highest", "difference", "ratio"],
                    "additionalProperties": False,
                    "properties": {
                        "groups": {"type": "integer", "minimum": 0},
                        "lowest": {
                            "anyOf": [{"$ref": "#/components/schemas/GroupEnd"}, {"type": "null"}]
                        },
                        "highest": {
                            "anyOf": [{"$ref": "#/components/schemas/GroupEnd"}, {"type": "null"}]
                        },
                        "difference": {
                            "anyOf": [
                                {"$ref": "#/components/schemas/GroupFigure"},
                                {"type": "null"},
                            ]
                        },
                        "ratio": {"type": ["number", "null"]},
                    },
                },
            },
            "rules": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": [
                        "name",
                        "metric",
                        "by",
                        "within",
                        "status",
                        "judged",
                        "failing",
                        "undecided",
                        "reason",
                    ],
                    "properties": {
                        "name": {"type": "string"},
                        "metric": {"type": "string"},
                        "by": {"type": "array", "items": {"type": "string"}},
                        "within": {"type": "array", "items": {"type": "string"}},
                        "at_least": {"type": "number"},
                        "at_most": {"type": "number"},
                        "spread_at_most": {"type": "number"},
                        "ratio_at_least": {"type": "number"},
                        "status": {"type": "string", "enum": ["met", "not_met", "undecided"]},
                        "judged": {"type": "integer", "minimum": 0},
                        "failing": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["beyond_noise"],
                                "properties": {"beyond_noise": {"type": "boolean"}},
                            },
                        },
                        "undecided": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["group", "labelled", "reason"],
                                "properties": {
                                    "group": {
                                        "type": "object",
                                        "additionalProperties": {"type": "string"},
                                    },
                                    "labelled": {"type": "integer", "minimum": 0},
                                    "reason": {"type": "string"},
                                },
                            },
                        },
                        "reason": {"type": ["string", "null"]},
                    },
                },
            },
        },
    },
    "GroupFigure": {
        "type": "object",
        "required": ["value", "low", "high"],
        "additionalProperties": False,
        "properties": {
            "value": {"type": "number"},
            "low": {"type": "number"},
            "high": {"type": "number"},
        },
    },
    "GroupEnd": {
        "type": "object",
        "required": ["group", "value"],
        "additionalProperties": False,
        "properties": {
            "group": {"type": "object", "additionalProperties": {"type": "string"}},
            "value": {"type": "number"},
        },
    },
}
