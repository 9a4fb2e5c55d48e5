"""The schemas of this model and contract: the body of each route (the columns, the id,
the true outcome), each answer (a key of the type of its source), the stored row, and
GET /health's description of the model and the contract, exactly.

The rules they write down are those of the service: an integer or boolean column is
required, any other may be missing (null, NaN or left out); an integer id is 64-bit, a
string id 1 to 200 characters, and an id without id_type either; an answer holds exactly
the keys its contract names, each of the type its source gives (a decision is a boolean, a
label one of the classes...).
"""

import json

import numpy as np

from model_service.contract import ANY_ID, MAX_STRING_ID
from model_service.openapi.builders import INT64, ref, text
from model_service.openapi.shared_schemas import STORED_ROW, STORED_ROW_DESCRIPTION


def predict_sources(model):
    """{answer key: its source} of the predict route: the contract's, else the task's."""
    return model.contract.predict_sources or model.task.answer_sources


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
    """A column as parsing.validate_value reads it: its JSON type, range, and whether missing."""
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
    """Integer and boolean columns: a missing value cannot be sent for them (parsing.py)."""
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
    """An object of exactly the keys of `sources` (a 409's too: store.conflict)."""
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
        (
            'A new id in a full store (DATABASE_QUOTA_MB, [store] when_full = "refuse")',
            {"id": sent, "status": {"const": 507}, "error": error},
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
    """A stored row (store.prediction_to_dict): the answer of the tutorial's /update, and the
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

MODEL_WORDS_VERSION = "The first 12 hex digits of the SHA-256 of pipeline.pickle"
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
HEALTH_FOLDER = {
    "description": "The model folder (MODEL_DIR, CHALLENGER_DIR), relative to the repository",
    "type": "string",
}
HEALTH_CHALLENGER = {
    "description": "CHALLENGER_DIR's model, scoring every answer in the shadow; null without",
    "type": ["object", "null"],
    "required": ["version", "folder", "task"],
    "properties": {
        "version": {"description": MODEL_WORDS_VERSION, "type": "string"},
        "folder": HEALTH_FOLDER,
        "task": {"type": "string", "enum": ["binary", "multiclass", "regression"]},
    },
}


def health_schema(model):
    """What GET /health answers for this model: its description and its contract, exactly."""
    described = {
        "version": model.version,
        **model.task.describe(),
        "columns": model.columns,
        "dtypes": {column: str(dtype) for column, dtype in model.dtypes.items()},
    }
    contract = model.contract.describe(model.task)
    served = constants(described, MODEL_WORDS)
    served["required"].append("folder")
    served["properties"]["folder"] = HEALTH_FOLDER
    return {
        "type": "object",
        "required": ["status", "database", "model", "contract", "challenger", "versions"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "unavailable"]},
            "database": HEALTH_DATABASE,
            "model": served,
            "challenger": HEALTH_CHALLENGER,
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
    "version": MODEL_WORDS_VERSION,
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
