"""The HTTP contract: a brief's routes, ids, body and answers, read from api.toml.

    contract = load_contract(model_dir, task)  # the tutorial's contract without the file
    key, client_id = contract.read_id(payload)  # '42', 42: the identity of a request
    contract.request_value(payload, "Age")      # a field of the body (or its observation's)
    contract.observation_of(payload)            # the fields the model reads
    contract.predict_answer(output, payload)    # {"proba": 0.76}, or the brief's keys

The core (app.py, with parsing, scoring and store) scores and stores requests; this module
turns a brief's JSON into what the core needs, and the core's outputs (tasks.py) back into
the brief's JSON. api.toml, beside the model's artifacts, names the routes, the id (one
field or several), where the features are, and what each answer holds; every key it leaves
out keeps the tutorial's contract. What each key does is in docs/your-brief.md.

    [predict]
    path = "/should_search/"       # served with and without the final slash
    id = "observation_id"          # a field, or a list of fields: one composite key
    id_type = "string"             # "integer" or "string"; left out: either (42 and "42" one id)
    observation = ""               # the field of the features; "" = the body's own fields
    invalid = "as_missing"         # a bad feature value is missing (200), not a 422
    answer = { outcome = "prediction.decision" }

    [update]
    path = "/search_result/"
    true = "outcome"               # several targets: { target = "field", ... }
    answer = { outcome = "request.outcome", predicted_outcome = "prediction.decision" }

    [model]
    threshold = 0.1                # binary classifiers (tasks.py)
    positive_class = true
    targets = ["price_a", "price_b"]

    [store]
    drop = ["name"]                # never written (privacy.py)
    hash = ["date_of_birth"]       # written as an HMAC-SHA256 keyed with STORE_SECRET
    when_full = "refuse"           # past DATABASE_QUOTA_MB: a 507, or "answer" unstored
"""

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from model_service.values import json_type, parse_integer

CONTRACT_FILE = "api.toml"
MAX_STRING_ID = 200  # characters of a string id
KEYS = {
    "predict": {"path", "id", "id_type", "observation", "answer", "invalid"},
    "update": {"path", "true", "answer"},
    "batch": {"path"},
    "model": {"threshold", "positive_class", "targets"},
    "store": {"drop", "hash", "when_full"},
    "stats": None,  # checked by monitoring/rules.py: the groups and rules of a brief's quality
}
ID_TYPES = ("integer", "string")
ANY_ID = "integer or string"  # the kind of an id field when api.toml declares no id_type
ID_WORDS = {"integer": "an integer", "string": "a string", ANY_ID: "an integer or a string"}
# The text of an integer written as JSON writes it: no sign "+", no leading zeros, no spaces.
CANONICAL_INTEGER = re.compile(r"0|-?[1-9][0-9]*")
INT64 = (-(2**63), 2**63 - 1)
INVALID_MODES = ("reject", "as_missing")  # [predict] invalid: what a bad feature value gets
WHEN_FULL = ("refuse", "answer")  # [store] when_full: a new prediction past DATABASE_QUOTA_MB


class ContractError(Exception):
    """api.toml cannot be served: one sentence that names the key and says what to fix."""


@dataclass
class Contract:
    predict_path: str = "/predict"
    update_path: str = "/update"
    batch_path: str = "/predict-batch"
    id_fields: tuple = ("id",)
    id_kinds: dict = None  # id field -> "integer", "string" or ANY_ID
    invalid: str = "reject"  # a bad feature value: a 422, or "as_missing" (parsing.py)
    observation_field: str = "observation"  # "" = the features are the body's own fields
    predict_sources: dict = None  # answer key -> source; None: the task's own answer
    true_fields: object = None  # a field, or {target: field}; None: the task's truth_field
    update_sources: dict = None  # None: the stored row
    model_settings: dict = None  # threshold, positive_class, targets
    stats_settings: dict = None  # [stats]: read by the monitoring package
    stored_drop: tuple = ()  # [store] drop: fields never written (privacy.py)
    stored_hash: tuple = ()  # [store] hash: fields written as a keyed hash (privacy.py)
    when_full: str = "refuse"  # [store] when_full: past DATABASE_QUOTA_MB (quota.py)

    # --- the request ---------------------------------------------------------------

    def read_id(self, payload):
        """(key, id): the text the row is stored under, and the id as the client sent it.

        The key of an integer id is its decimal text (as in releases before contracts), and
        so is the key of a string that is an integer's canonical text ("42", "-7") when no
        id_type is declared: 42 and "42" are one id. Any other string ('"042"', '"E12"', and
        every string of an id_type = "string" field) and a composite key are JSON text:
        '"abc"', '["sku-1", 3]' (each part read by the same rule).
        """
        sent = {name: self.read_id_field(payload, name) for name in self.id_fields}
        parts = [self.key_part(name, value) for name, value in sent.items()]
        if len(parts) == 1:
            [part], [value] = parts, sent.values()
            return (str(part) if isinstance(part, int) else json.dumps(part)), value
        return json.dumps(parts), sent

    def read_id_field(self, payload, name):
        """A field of the id, checked by its kind: an integer (3.0 is read as 3), a string."""
        kind = self.id_kinds[name]
        if name not in payload:
            raise ValueError(
                f"{name} is required: {ID_WORDS[kind]} that identifies the observation"
            )
        value = payload[name]
        if kind == "integer":
            return parse_integer(value, name)
        if kind == ANY_ID and not isinstance(value, str):
            if not is_integral(value):
                raise ValueError(
                    f"{name} must be an integer or a non-empty string, got {json_type(value)}"
                )
            return parse_integer(value, name)
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string, got {json_type(value)}")
        if not value:
            raise ValueError(f"{name} must not be empty")
        if len(value) > MAX_STRING_ID:
            raise ValueError(f"{name} must be at most {MAX_STRING_ID} characters long")
        return value

    def key_part(self, name, value):
        """A field's value as the key holds it: "42" is 42 where the field takes either."""
        if self.id_kinds[name] == ANY_ID and isinstance(value, str):
            return integer_text(value)
        return value

    def client_id(self, key):
        """The id a stored key stands for (listings): 42 for a row stored with 42 or "42"."""
        value = json.loads(key)
        return dict(zip(self.id_fields, value, strict=True)) if len(self.id_fields) > 1 else value

    def request_value(self, payload, name):
        """The field `name` of a request, as the client sent it (None when absent).

        A field of the body itself; when the body nests the features under its observation
        field and has no field of that name, the observation's (request.Age, the age sent).
        """
        if name in payload or not self.observation_field:
            return payload.get(name)
        observation = self.observation_of(payload)
        return observation.get(name) if observation is not None else None

    def observation_of(self, payload):
        """The object whose fields are the features (None when the body has no such object)."""
        if not self.observation_field:
            return payload
        observation = payload.get(self.observation_field)
        return observation if isinstance(observation, dict) else None

    def field_name(self, column):
        """How an error names a feature: observation.Age, or Age in a flat body."""
        return f"{self.observation_field}.{column}" if self.observation_field else column

    def shape(self):
        """What a /predict body must be, in words (for the 422 of a missing observation)."""
        if not self.observation_field:
            return "Request body must be a JSON object of the id and column: value"
        return f"{self.observation_field} must be a JSON object of column: value"

    def body_example(self):
        """A /predict body in outline: {"id": ..., "observation": {...}}."""
        ids = ", ".join(f'"{name}": ...' for name in self.id_fields)
        features = f', "{self.observation_field}": {{...}}' if self.observation_field else ", ..."
        return f"{{{ids}{features}}}"

    # --- the answers ---------------------------------------------------------------

    def predict_answer(self, output, payload, task):
        """The brief's answer to /predict, or the task's own ({"proba": ...})."""
        mapping = self.predict_sources or task.answer_sources
        return {key: self.source_value(source, output, payload) for key, source in mapping.items()}

    def update_answer(self, row, output, payload):
        """The brief's answer to /update, or the stored row (the tutorial's).

        `output` is None for a row this task cannot read (stored by a model of another
        task): what the answer quotes of the prediction is then null.
        """
        if self.update_sources is None:
            return row
        output = output or {}
        return {k: self.source_value(s, output, payload) for k, s in self.update_sources.items()}

    def source_value(self, source, output, payload):
        """The value an answer source names: prediction (all of it), prediction.<output>, or
        request.<field> (request_value: as the client sent it; null when it sent none)."""
        where, _, name = source.partition(".")
        if not name:
            return output
        return output.get(name) if where == "prediction" else self.request_value(payload, name)

    def truth_of(self, payload, task):
        """The true value /update carries: one field, or one field per target."""
        fields = self.true_fields or task.truth_field
        if isinstance(fields, str):
            return task.parse_truth(payload.get(fields), fields)
        return {target: task.parse_target(payload.get(f), f) for target, f in fields.items()}

    def describe(self, task):
        """What /health says of the contract: what a client needs to speak it."""
        return {
            "predict": {
                "path": self.predict_path,
                "id": list(self.id_fields),
                "id_types": self.id_kinds,
                "observation": self.observation_field,
                "answer": self.predict_sources or task.answer_sources,
                "invalid": self.invalid,
            },
            "update": {
                "path": self.update_path,
                "true": self.true_fields or task.truth_field,
                "answer": self.update_sources or "the stored row",
            },
            "batch": {"path": self.batch_path},
        }


def is_integral(value):
    """A JSON integer, or a float with no fraction (3.0: pandas writes integers so)."""
    if isinstance(value, float):
        return value.is_integer()
    return isinstance(value, int) and not isinstance(value, bool)


def integer_text(text):
    """The integer a string writes canonically ("42", "-7", within 64 bits), else the string."""
    if CANONICAL_INTEGER.fullmatch(text) and INT64[0] <= int(text) <= INT64[1]:
        return int(text)
    return text


def integer_of_key(key):
    """The integer a stored key stands for (the tutorial's observation_id column), or None."""
    return int(key) if CANONICAL_INTEGER.fullmatch(key) else None


# ---------------------------------------------------------------------------------------
# Reading and checking api.toml
# ---------------------------------------------------------------------------------------


def read_contract_file(model_dir):
    """The tables of api.toml beside the artifacts ({} without the file), keys checked."""
    path = Path(model_dir) / CONTRACT_FILE
    if not path.is_file():
        return {}
    try:
        tables = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ContractError(f"Cannot read {path}: {error}; fix its TOML syntax.") from None
    for name, table in tables.items():
        if name not in KEYS:
            raise ContractError(
                f"api.toml has an unknown table [{name}]; the tables are "
                f"{', '.join(f'[{t}]' for t in KEYS)}."
            )
        if not isinstance(table, dict):
            raise ContractError(f"api.toml: {name} must be a table, written [{name}].")
        for key in table:
            if KEYS[name] is not None and key not in KEYS[name]:
                raise ContractError(
                    f"api.toml [{name}] has an unknown key {key!r}; its keys are "
                    f"{', '.join(sorted(KEYS[name]))}."
                )
    return tables


def model_settings(tables):
    """threshold, positive_class and targets from [model], for tasks.read_task."""
    return dict(tables.get("model", {}))


def build_contract(tables, task, columns, kinds):
    """The Contract of api.toml's tables, checked against the task and the model's columns."""
    predict, update = tables.get("predict", {}), tables.get("update", {})
    id_fields = tuple(names_of(predict.get("id", "id"), "[predict] id"))
    # Without id_type, an id takes an integer or a string; id_type narrows it to one.
    id_type = predict.get("id_type")
    if id_type is not None and id_type not in ID_TYPES:
        raise ContractError(
            f'api.toml [predict] id_type must be "integer" or "string", not {id_type!r}.'
        )
    # An id field that is also a model column has that column's type.
    id_kinds = {}
    for name in id_fields:
        kind = kinds.get(name, id_type or ANY_ID)
        if kind not in (*ID_TYPES, ANY_ID):
            raise ContractError(
                f"api.toml [predict] id: the column {name} is {kind}; an id is an integer or "
                "a string."
            )
        id_kinds[name] = kind
    observation = text_key(predict.get("observation", "observation"), "[predict] observation")
    if observation in id_fields:
        raise ContractError(
            f"api.toml [predict] observation {observation!r} is also an id field; name "
            'another field, or "" for the body\'s own fields.'
        )
    contract = Contract(
        predict_path=route(predict.get("path", "/predict"), "[predict] path"),
        update_path=route(update.get("path", "/update"), "[update] path"),
        batch_path=route(tables.get("batch", {}).get("path", "/predict-batch"), "[batch] path"),
        id_fields=id_fields,
        id_kinds=id_kinds,
        invalid=invalid_mode(predict.get("invalid", "reject")),
        observation_field=observation,
        predict_sources=sources(predict.get("answer"), "[predict] answer", task),
        true_fields=true_fields(update.get("true"), task),
        update_sources=sources(update.get("answer"), "[update] answer", task),
        model_settings=model_settings(tables),
        stats_settings=dict(tables.get("stats", {})),
    )
    check_routes_differ(contract)
    store = tables.get("store", {})
    contract.stored_drop = private_fields(store.get("drop", []), "drop", contract, columns)
    contract.stored_hash = private_fields(store.get("hash", []), "hash", contract, columns)
    both = set(contract.stored_drop) & set(contract.stored_hash)
    if both:
        raise ContractError(
            f"api.toml [store] lists {sorted(both)[0]} in both drop and hash; keep it in one."
        )
    contract.when_full = store.get("when_full", "refuse")
    if contract.when_full not in WHEN_FULL:
        raise ContractError(
            f'api.toml [store] when_full must be "refuse" or "answer", not {contract.when_full!r}.'
        )
    return contract


def invalid_mode(value):
    if value not in INVALID_MODES:
        raise ContractError(
            f'api.toml [predict] invalid must be "reject" or "as_missing", not {value!r}.'
        )
    return value


def names_of(value, key):
    names = [value] if isinstance(value, str) else value
    if not (
        isinstance(names, list)
        and names
        and all(isinstance(n, str) and n for n in names)
        and len(set(names)) == len(names)
    ):
        raise ContractError(f"api.toml {key} must be a field name, or a list of distinct names.")
    return names


def text_key(value, key):
    if not isinstance(value, str):
        raise ContractError(f"api.toml {key} must be a string.")
    return value


def route(path, key):
    """A path as Flask serves it: one leading slash, no trailing slash (both are served)."""
    if not isinstance(path, str) or not path.startswith("/") or path.rstrip("/") == "":
        raise ContractError(f"api.toml {key} must be a path such as /should_search/, not {path!r}.")
    if any(part in path for part in ("<", ">", "?", "#", " ")):
        raise ContractError(
            f"api.toml {key} {path!r} must be a plain path (no <, >, ?, #, spaces)."
        )
    return path.rstrip("/")


def sources(mapping, key, task):
    """{answer key: source}, each source one the task can give, or None for the default."""
    if mapping is None:
        return None
    if not isinstance(mapping, dict) or not mapping:
        raise ContractError(
            f'api.toml {key} must be a table such as {{ outcome = "prediction.decision" }}.'
        )
    for name, source in mapping.items():
        where, _, field = source.partition(".") if isinstance(source, str) else ("", "", "")
        if where == "request" and field:
            continue
        if where == "prediction" and (field in task.outputs or source == "prediction"):
            continue
        offered = ", ".join(["prediction", *(f"prediction.{o}" for o in task.outputs)])
        raise ContractError(
            f"api.toml {key}: {name} = {source!r} is not something this {task.name} model "
            f"answers; use one of {offered}, or request.<field>."
        )
    return dict(mapping)


def true_fields(value, task):
    if value is None:
        return None
    if isinstance(value, str) and value:
        return value
    targets = getattr(task, "targets", None) or []
    if isinstance(value, dict) and targets:
        unknown = sorted(set(value) - set(targets))
        missing = [t for t in targets if t not in value]
        if unknown or missing:
            raise ContractError(
                f"api.toml [update] true must name a field for each target ({', '.join(targets)})"
                + (f"; {', '.join(unknown)} is not a target" if unknown else "")
                + "."
            )
        return {target: text_key(value[target], "[update] true") for target in targets}
    raise ContractError(
        "api.toml [update] true must be the field that carries the true value"
        + (", or { target = field, ... } for each target." if targets else ".")
    )


def private_fields(value, key, contract, columns):
    """[store] drop or hash: fields of the /predict body the contract knows, checked.

    A field is known when the model reads it (a feature), an answer of /predict echoes it
    (request.<field>) or /stats groups by it ([stats] extra_columns). The id is the row's
    key and the observation field holds the others: neither can be kept out of the store,
    so both are refused with a reason.
    """
    if not isinstance(value, list) or not all(isinstance(n, str) and n for n in value):
        raise ContractError(f'api.toml [store] {key} must be a list of field names, ["name"].')
    echoed = [
        source.partition(".")[2]
        for source in (contract.predict_sources or {}).values()
        if source.startswith("request.")
    ]
    extra = (contract.stats_settings or {}).get("extra_columns", [])
    grouped = [name for name in extra if isinstance(name, str)] if isinstance(extra, list) else []
    known = {*columns, *echoed, *grouped}
    for name in value:
        if name in contract.id_fields:
            raise ContractError(
                f"api.toml [store] {key}: {name} is the id, which the row is stored under; "
                "send a pseudonymous id instead, and remove it from the list."
            )
        if name == contract.observation_field:
            raise ContractError(
                f"api.toml [store] {key}: {name} holds the features; list its fields instead."
            )
        if name not in known:
            raise ContractError(
                f"api.toml [store] {key}: {name} is not a field this contract knows (a feature "
                "of columns.json, a request.<field> of [predict] answer, or one of [stats] "
                "extra_columns); check its spelling."
            )
    return tuple(dict.fromkeys(value))


def check_routes_differ(contract):
    paths = {
        "[predict] path": contract.predict_path,
        "[update] path": contract.update_path,
        "[batch] path": contract.batch_path,
    }
    seen = {}
    for key, path in paths.items():
        if path in seen:
            raise ContractError(
                f"api.toml {key} {path} is also the {seen[path]}; give each its own."
            )
        seen[path] = key


def check_against_routes(contract, taken):
    """ContractError when a route of the contract is one the service already serves."""
    for key, path in (
        ("[predict] path", contract.predict_path),
        ("[update] path", contract.update_path),
        ("[batch] path", contract.batch_path),
    ):
        if path in taken:
            raise ContractError(
                f"api.toml {key} {path} is a route the service already serves ({path}); "
                "choose another path."
            )
