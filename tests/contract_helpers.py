"""Serve a brief's contract (api.toml) and hold it to its word, route by route.

Shared by the tests that look outward: test_contract_fuzz.py draws contracts from the whole
key space, test_brief_corpus.py writes them from public capstone apps. Both hand over the
tables of an api.toml and a `Model` (a folder of artifacts, and observations to send):

    contract = read_contract(tables, model)   # what the brief says, read here (the oracle)
    refusal = why_refused(tables, model)      # what a start-up refusal must name, or []
    client = serve(folder, database_url)      # app.create_app, in-process
    Honour(client, model, contract, Requests(model, contract, styles)).run()

The oracle reads the tables and computes each answer from the pipeline's own predict /
predict_proba, never from the code under test: numbers are compared with relative 1e-9,
what must be exact (a retry's answer) exactly.
"""

import functools
import json
import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from conftest import ACROSS_MACHINES, service
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

# The routes the service serves whatever the contract: a brief may not take them.
TAKEN_ROUTES = ("/health", "/stats", "/metrics", "/list-db-contents", "/openapi.yaml", "/monitor")
NOTE = "note"  # a field of every body that the model does not read: answers may quote it
CANONICAL_INTEGER = re.compile(r"0|-?[1-9][0-9]*")  # "42" is 42 where an id takes either
INT64 = (-(2**63), 2**63 - 1)
MAX_STRING_ID = 200

# ---------------------------------------------------------------------------------------
# The model: its artifacts, read here, and what it says of a row
# ---------------------------------------------------------------------------------------


def kind_of(dtype):
    """How JSON carries a column of this training dtype."""
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(dtype):
        return "integer"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    return "string"


def plain(value):
    return value.item() if isinstance(value, np.generic) else value


def json_key(label):
    return label if isinstance(label, str) else json.dumps(label)


class Model:
    """A folder of artifacts, what its pipeline is, and observations with their truths."""

    def __init__(self, folder, observations, truths):
        self.folder = Path(folder)
        self.pipeline = joblib.load(self.folder / "pipeline.pickle")
        self.columns = json.loads((self.folder / "columns.json").read_text())
        dtypes = pd.read_pickle(self.folder / "dtypes.pickle")
        self.dtypes = {column: dtypes[column] for column in self.columns}
        self.kinds = {column: kind_of(dtype) for column, dtype in self.dtypes.items()}
        self.observations, self.truths = observations, truths
        classes = getattr(self.pipeline, "classes_", None)
        if classes is not None and hasattr(self.pipeline, "predict_proba"):
            self.classes = [plain(label) for label in classes]
            self.task = "binary" if len(self.classes) == 2 else "multiclass"
        else:
            self.classes, self.task = None, "regression"
        targets = self.folder / "targets.json"
        self.target_names = json.loads(targets.read_text()) if targets.exists() else None
        self.width = 1 if self.task != "regression" else self.numbers([observations[0]]).shape[1]

    def frame(self, rows):
        """Rows of JSON values (None: missing) as the pipeline takes them: the training
        dtypes, but float64 or object for an integer or boolean column holding a NaN."""
        frame = pd.DataFrame(
            [[math.nan if row.get(c) is None else row[c] for c in self.columns] for row in rows],
            columns=self.columns,
        )
        dtypes = dict(self.dtypes)
        for column, kind in self.kinds.items():
            if kind in ("integer", "boolean") and frame[column].isna().any():
                dtypes[column] = np.float64 if kind == "integer" else object
        return frame.astype(dtypes)

    def numbers(self, rows):
        return np.asarray(self.pipeline.predict(self.frame(rows)), dtype=float).reshape(
            len(rows), -1
        )

    def id_columns(self):
        """The columns an id may also be: integers and strings."""
        return [c for c in self.columns if self.kinds[c] in ("integer", "string")]

    @functools.cached_property
    def intolerant_columns(self):
        """The columns whose missing value the pipeline cannot score (raises, or says NaN)."""
        complete = next(
            (o for o in self.observations if all(o.get(c) is not None for c in self.columns)),
            self.observations[0],
        )
        found = []
        for column in self.columns:
            try:
                row = dict(complete, **{column: None})
                if self.task == "regression":
                    result = self.numbers([row])
                else:
                    result = self.pipeline.predict_proba(self.frame([row]))
                if not np.all(np.isfinite(result)):
                    found.append(column)
            except Exception:  # whatever the pipeline raises, it cannot take the row
                found.append(column)
        return found


# ---------------------------------------------------------------------------------------
# The contract, as the tables say (the oracle)
# ---------------------------------------------------------------------------------------


@dataclass
class Contract:
    predict_path: str  # without the final slash: served with and without it
    update_path: str
    batch_path: str
    id_kinds: dict  # id field -> "integer", "string" or "any" (an integer or a string)
    observation: str  # "" = the features are the body's own fields
    invalid: str  # "reject" or "as_missing"
    answer: dict  # answer key -> source
    true: object  # the field of the true value, or {target: field}
    update_answer: dict | None  # None: the stored row
    threshold: float = 0.5
    positive: object = None
    targets: list | None = None


def read_contract(tables, model):
    """The contract a brief's tables describe, with every default of the tutorial's."""
    predict, update = tables.get("predict", {}), tables.get("update", {})
    brief = tables.get("model", {})
    ids = predict.get("id", "id")
    ids = [ids] if isinstance(ids, str) else list(ids)
    id_type = predict.get("id_type")
    targets = brief.get("targets", model.target_names)
    contract = Contract(
        predict_path=str(predict.get("path", "/predict")).rstrip("/"),
        update_path=str(update.get("path", "/update")).rstrip("/"),
        batch_path=str(tables.get("batch", {}).get("path", "/predict-batch")).rstrip("/"),
        id_kinds={f: model.kinds.get(f, id_type or "any") for f in ids},
        observation=predict.get("observation", "observation"),
        invalid=predict.get("invalid", "reject"),
        answer=predict.get("answer") or default_answer(model),
        true=update.get("true") or ("true_value" if model.task == "regression" else "true_class"),
        update_answer=update.get("answer"),
        threshold=brief.get("threshold", 0.5),
        targets=targets,
    )
    if model.task == "binary":
        chosen = brief.get("positive_class")
        contract.positive = model.classes[1] if chosen is None else find_class(chosen, model)
    return contract


def default_answer(model):
    if model.task == "binary":
        return {"proba": "prediction.probability"}
    if model.task == "multiclass":
        return {"label": "prediction.label", "probabilities": "prediction.probabilities"}
    return {"prediction": "prediction.value" if model.width == 1 else "prediction"}


def find_class(value, model):
    """The class a setting names: itself (true for true, 1 for 1), or its JSON text."""
    for label in model.classes:
        if isinstance(value, str) and value == json_key(label):
            return label
        numbers = not isinstance(value, str) and not isinstance(label, str)
        if numbers and isinstance(value, bool) is isinstance(label, bool) and value == label:
            return label
    return None


def why_refused(tables, model, problems=()):
    """What a start-up refusal of these tables may name, or [] when they can be served.

    `problems`: the keys a contract broken on purpose gets wrong. Besides, invalid =
    "as_missing" with a pipeline that cannot score a missing value names such a column.
    """
    names = list(problems)
    if tables.get("predict", {}).get("invalid") == "as_missing":
        names += model.intolerant_columns
    return names


def task_outputs(model, targets):
    """The outputs an answer may quote: prediction.<output>."""
    if model.task == "binary":
        return ["probability", "decision", "label"]
    if model.task == "multiclass":
        return ["label", "probabilities"]
    return ["value", *(targets or [])] if model.width == 1 else list(targets)


def outputs(model, contract, rows):
    """What the model says of each row, as model_service/tasks.py promises it: one dict
    per row."""
    if model.task == "regression":
        numbers = model.numbers(rows).tolist()
        if model.width == 1:
            return [{"value": n[0], **dict.fromkeys(contract.targets or [], n[0])} for n in numbers]
        return [dict(zip(contract.targets, n, strict=True)) for n in numbers]
    matrix = model.pipeline.predict_proba(model.frame(rows)).tolist()
    if model.task == "multiclass":
        keys = [json_key(label) for label in model.classes]
        return [
            {
                "label": model.classes[int(np.argmax(row))],
                "probabilities": dict(zip(keys, row, strict=True)),
            }
            for row in matrix
        ]
    positive = contract.positive
    negative = next(label for label in model.classes if label != positive)
    index = model.classes.index(positive)
    return [
        {
            "probability": row[index],
            "decision": row[index] >= contract.threshold,
            "label": positive if row[index] >= contract.threshold else negative,
        }
        for row in matrix
    ]


def answer_of(mapping, output, body, observation):
    """The answer a mapping of sources gives: prediction, prediction.<output>, or
    request.<field> (a field of the body, else of its nested observation; null if none)."""
    return {key: source_value(source, output, body, observation) for key, source in mapping.items()}


def source_value(source, output, body, observation):
    where, _, name = source.partition(".")
    if not name:
        return output
    if where == "prediction":
        return output[name]
    if name in body:
        return body[name]
    nested = body.get(observation) if observation else None
    return nested.get(name) if isinstance(nested, dict) else None


def assert_same(actual, expected, what):
    """Equal as JSON, numbers within relative 1e-9; a boolean is never a number."""
    assert same_json(actual, expected), f"{what}:\n  got      {actual!r}\n  expected {expected!r}"


def same_id(actual, expected):
    """Ids compare exactly: 2**62 and 2**62 + 1 are two ids, 42 and "42" two writings; 3.0
    is the number 3 (JSON has one kind of number), read as the integer 3."""
    return json.dumps(as_read(actual)) == json.dumps(as_read(expected))


def as_read(value):
    if isinstance(value, dict):
        return {k: as_read(v) for k, v in value.items()}
    return int(value) if isinstance(value, float) and value.is_integer() else value


def same_json(actual, expected):
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and list(actual) == list(expected)
            and all(same_json(actual[k], expected[k]) for k in expected)
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(expected)
            and all(same_json(a, e) for a, e in zip(actual, expected, strict=True))
        )
    if isinstance(expected, bool) or isinstance(actual, bool):
        return actual is expected
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return math.isclose(actual, expected, rel_tol=ACROSS_MACHINES, abs_tol=0.0)
    return type(actual) is type(expected) and actual == expected


# ---------------------------------------------------------------------------------------
# Ids and bodies
# ---------------------------------------------------------------------------------------

# How an id's values are written, by the kind of id they fit.
ID_STYLES = {
    "integer": ("int", "negative", "big"),
    "string": ("word", "digits", "padded", "unicode", "quoted", "long", "huge"),
}
ID_STYLES["any"] = ID_STYLES["integer"] + ID_STYLES["string"]
COLUMN_STYLES = {"integer": ("int",), "string": ID_STYLES["string"]}  # values a model reads


def id_value(style, number):
    return {
        "int": number,
        "negative": -number - 1,
        "big": 2**62 + number,
        "word": f"case-{number:05d}",
        "digits": str(number),  # the same id as the integer, where an id takes either
        "padded": f"0{number}",  # never an integer's text: an id of its own
        "unicode": f"Zoë {number}",
        "quoted": f'"{number}" \\ {{}} [,]',  # what JSON and the key's text must escape
        "long": f"{number:0{MAX_STRING_ID}d}",  # the longest a string id may be
        "huge": str(10**20 + number),  # an integer's text, but past 64 bits: a string id
    }[style]


def canonical(value, kind):
    """The id as the service keeps it: "42" is 42 where the field takes either."""
    if kind == "any" and isinstance(value, str) and is_integer_text(value):
        return int(value)
    return value


def is_integer_text(text):
    return bool(CANONICAL_INTEGER.fullmatch(text)) and INT64[0] <= int(text) <= INT64[1]


def other_form(value, kind):
    """The same id written otherwise (42 <-> "42", 3 -> 3.0), or None when there is none."""
    if kind == "any" and isinstance(value, int):
        return str(value) if value >= 0 else float(value)  # "42", or -43.0 (pandas's way)
    if kind == "any" and isinstance(value, str) and is_integer_text(value):
        return int(value)
    if kind == "integer" and abs(value) < 2**53:
        return float(value)
    return None


# Values "reject" refuses in a column of each kind (None: an integer or boolean is required).
BAD_VALUES = {
    "float": ["unknown", True, [1.5]],
    "integer": ["unknown", 1.5, None, False],
    "string": [5, True, {"text": "a"}],
    "boolean": ["yes", 1, None],
}


def bad_ids(kind):
    """Values no id field of this kind takes: each is a 422 naming the field."""
    common = [True, None, [1], {"id": 1}]
    if kind == "integer":
        return [*common, 1.5, "17", 2**63]
    if kind == "string":
        return [*common, 17, ""]
    return [*common, 1.5, 2**63, "", "x" * (MAX_STRING_ID + 1)]


@dataclass
class Requests:
    """The bodies a client of the contract sends: request k has ids of its own."""

    model: Model
    contract: Contract
    styles: dict  # id field -> style (ID_STYLES)
    offset: int = 0  # added to every id's number
    bad: tuple | None = None  # (column, value) that "reject" refuses; None: bad_feature's

    def ids(self, k):
        return {f: id_value(self.styles[f], self.offset + k) for f in self.contract.id_kinds}

    def features(self, k, source=None):
        """Observation `source` (k by default), with the values of request k's id columns."""
        observations = self.model.observations
        features = dict(observations[(k if source is None else source) % len(observations)])
        ids = self.ids(k)
        features.update({f: v for f, v in ids.items() if f in self.model.columns})
        return features

    def body(self, k, features=None, ids=None):
        ids = self.ids(k) if ids is None else ids
        features = self.features(k) if features is None else features
        if not self.contract.observation:
            return {**features, **ids, NOTE: f"request {k}"}
        return {**ids, self.contract.observation: features, NOTE: f"request {k}"}

    def sent_id(self, body):
        """The id of a body as the client sent it: a value, or {field: value}."""
        fields = list(self.contract.id_kinds)
        return body[fields[0]] if len(fields) == 1 else {f: body[f] for f in fields}

    def kept_id(self, k):
        """Request k's id as the service keeps and lists it ("42" is 42 where either fits)."""
        ids = {f: canonical(v, self.contract.id_kinds[f]) for f, v in self.ids(k).items()}
        return next(iter(ids.values())) if len(ids) == 1 else ids

    def other_ids(self, k):
        """Request k's ids written otherwise where a field allows it, or None."""
        ids = self.ids(k)
        changed = {f: other_form(v, self.contract.id_kinds[f]) for f, v in ids.items()}
        changed = {f: v for f, v in changed.items() if v is not None}
        return {**ids, **changed} if changed else None

    def non_id_columns(self):
        return [c for c in self.model.columns if c not in self.contract.id_kinds]

    def differing(self, k):
        """Features of another observation with request k's ids, differing in a column."""
        mine = self.features(k)
        for source in range(k + 1, k + len(self.model.observations)):
            other = self.features(k, source)
            if any(other[c] != mine[c] for c in self.non_id_columns()):
                return other
        return None

    def bad_feature(self):
        """(column, value): a value "reject" refuses in a column that is not an id; by
        default a word where a number belongs. None when every column is an id."""
        if self.bad is not None:
            return self.bad
        columns = self.non_id_columns()
        for kind in ("float", "integer"):
            found = [c for c in columns if self.model.kinds[c] == kind]
            if found:
                return found[0], "unknown"
        return None

    def with_bad_value(self, k):
        """Request k's features with the bad value, and with that value missing instead."""
        column, value = self.bad_feature()
        features = self.features(k)
        return dict(features, **{column: value}), dict(features, **{column: None})

    def truth_fields(self, truth):
        """The fields of /update that carry a true value."""
        true, targets = self.contract.true, self.contract.targets
        if isinstance(truth, dict):  # several targets: their values in the model's order
            truth = dict(zip(targets, truth.values(), strict=True))
        if isinstance(true, str):
            return {true: truth}
        return {name: truth[target] for target, name in true.items()}


def parsed_truth(model, contract, truth):
    """The true value as the service keeps it: a class, a float, or {target: float}."""
    if model.task != "regression":
        return truth
    if isinstance(truth, dict):  # the model's targets, in order, under the contract's names
        return {t: float(v) for t, v in zip(contract.targets, truth.values(), strict=True)}
    return float(truth)


# ---------------------------------------------------------------------------------------
# Serving a folder
# ---------------------------------------------------------------------------------------


def model_folder(model, folder, toml_text):
    """A copy of the model's artifacts in `folder`, with this api.toml beside them."""
    shutil.copytree(model.folder, folder, ignore=shutil.ignore_patterns("api.toml"))
    (Path(folder) / "api.toml").write_text(toml_text)
    return Path(folder)


ADMIN_TOKEN = "contract-fuzz-token"


def settings(folder, database_url):
    return {
        "MODEL_DIR": str(folder),
        "DATABASE_URL": database_url,
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "TESTING": True,
    }


def serve(folder, database_url):
    return service.create_app(settings(folder, database_url)).test_client()


def assert_refused(folder, database_url, names):
    """The start-up stops with a StartupError whose sentence names one of `names`."""
    with pytest.raises(service.StartupError) as refused:
        service.create_app(settings(folder, database_url))
    message = str(refused.value)
    assert any(names_it(message, name) for name in names), (
        f"the refusal {message!r} names none of {names}"
    )


def names_it(message, name):
    """Whether the message names it as a whole: "age" is not in "message"; a setting may be
    named as its environment variable (threshold: THRESHOLD)."""
    return any(
        re.search(rf"(?<![\w-]){re.escape(form)}(?![\w-])", message)
        for form in (name, name.upper())
    )


def to_toml(tables):
    """api.toml's text for tables of strings, numbers, booleans, lists and inline tables."""
    lines = []
    for name, table in tables.items():
        lines.append(f"[{name}]")
        lines += [f"{json.dumps(key)} = {toml_value(value)}" for key, value in table.items()]
        lines.append("")
    return "\n".join(lines)


def toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # TOML's basic strings escape as JSON does
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }"


# ---------------------------------------------------------------------------------------
# Honouring a served contract, route by route
# ---------------------------------------------------------------------------------------


class Honour:
    """Each route of a served contract, checked against the oracle: call run()."""

    def __init__(self, client, model, contract, requests):
        self.client, self.model, self.contract, self.requests = client, model, contract, requests
        self.outputs = {}  # the oracle's output of each row, by the row's JSON text

    def run(self):
        self.foresee()
        answers = self.predictions()
        self.retries(answers)
        self.own_ids()
        self.conflict()
        self.bad_value()
        self.bad_ids()
        self.update(answers)
        self.batch(answers)
        self.unreadable()

    def foresee(self):
        """The oracle's outputs of every row the checks send, in one call of the pipeline
        (a call costs tens of milliseconds: one per row would make the fuzzing slow)."""
        requests = self.requests
        rows = [requests.features(k) for k in range(10)]
        rows += [f for f in (requests.differing(k) for k in (0, 1, 2, 9)) if f is not None]
        if requests.bad_feature() is not None and self.contract.invalid == "as_missing":
            rows += [requests.with_bad_value(k)[1] for k in (3, 8)]
        for row, output in zip(rows, outputs(self.model, self.contract, rows), strict=True):
            self.outputs[json.dumps(row, sort_keys=True)] = output

    def output(self, features):
        key = json.dumps(features, sort_keys=True)
        if key not in self.outputs:
            self.outputs[key] = outputs(self.model, self.contract, [features])[0]
        return self.outputs[key]

    def post(self, path, body, k=0):
        """Every other request to the path with its final slash: both are served."""
        return self.client.post(path + ("/" if k % 2 else ""), json=body)

    def expected(self, body, features):
        output = self.output(features)
        return answer_of(self.contract.answer, output, body, self.contract.observation)

    def predict(self, k, body, features, what):
        response = self.post(self.contract.predict_path, body, k)
        assert response.status_code == 200, f"{what}: {response.status_code} {response.json}"
        assert_same(response.json, self.expected(body, features), what)
        return response.json

    def predictions(self):
        return [
            self.predict(k, self.requests.body(k), self.requests.features(k), f"/predict {k}")
            for k in range(3)
        ]

    def retries(self, answers):
        """The same request answers the same, bit for bit; so does its id written otherwise
        (42 as "42" where an id takes either, 3 as 3.0)."""
        again = self.post(self.contract.predict_path, self.requests.body(0), 1)
        assert again.status_code == 200 and again.json == answers[0], f"retry: {again.json}"
        other_ids = self.requests.other_ids(0)
        if other_ids is None:
            return
        body = self.requests.body(0, ids=other_ids)
        answer = self.predict(0, body, self.requests.features(0), f"retry as {other_ids}")
        for key, source in self.contract.answer.items():
            if source.startswith("prediction"):
                assert answer[key] == answers[0][key], f"retry as {other_ids}: {key} differs"
        features = self.requests.differing(0)
        if features is not None:  # one id: another observation under it is a conflict
            response = self.post(
                self.contract.predict_path, self.requests.body(0, features, other_ids)
            )
            assert response.status_code == 409, f"{other_ids} is not the id of request 0"

    def own_ids(self):
        """ "042" is an id of its own, even where "42" is 42: another observation is new."""
        ids = self.requests.ids(0)
        padded = {
            f: f"0{v}"
            for f, v in ids.items()
            if self.contract.id_kinds[f] == "any" and isinstance(v, int) and v >= 0
        }
        features = self.requests.differing(0)
        if padded and features is not None:
            body = self.requests.body(0, features, {**ids, **padded})
            self.predict(0, body, features, f"a new id {padded}")

    def conflict(self):
        features = self.requests.differing(1)
        if features is None:  # every column is an id: another observation is another id
            return
        body = self.requests.body(1, features, self.requests.ids(1))
        response = self.post(self.contract.predict_path, body, 1)
        assert response.status_code == 409, f"conflict: {response.status_code} {response.json}"
        assert isinstance(response.json.get("error"), str), response.json
        expected = self.expected(body, features)
        for key in expected.keys() - {"error"}:  # it carries what it would have answered
            assert_same(response.json.get(key), expected[key], f"409's {key}")

    def bad_value(self):
        """A value "reject" refuses (a word where a number belongs...): a 422 naming the
        field, or with invalid = "as_missing" answered as if missing, and recorded so."""
        for body, status, answer in self.bad_value_item(3):
            response = self.post(self.contract.predict_path, body, 3)
            column = self.requests.bad_feature()[0]
            name = f"{self.contract.observation}.{column}" if self.contract.observation else column
            what = f"{name}={body.get(column, body.get(self.contract.observation))!r}"
            assert response.status_code == status, f"{what}: {response.status_code} {response.json}"
            if status == 422:
                assert name in response.json["error"], f"{what}: {response.json}"
                continue
            assert_same(response.json, answer, f"{what}, answered as missing")
            rows = service.Prediction.select().where(service.Prediction.replaced.is_null(False))
            replaced = [json.loads(row.replaced) for row in rows]
            assert len(replaced) == 1 and any(column in key for key in replaced[0]), replaced

    def unreadable(self):
        """What cannot be answered stays an error, in either invalid mode: a body that is
        not a JSON object (400), a nested observation that is not one (422), a batch of no
        items (422) or not a list (400)."""
        contract = self.contract
        for path in (contract.predict_path, contract.update_path, contract.batch_path):
            for data in ("{", "[1, 2]", '"text"'):
                response = self.client.post(path, data=data, content_type="application/json")
                assert response.status_code == 400, f"{path} {data}: {response.status_code}"
        if contract.observation:
            for value in ("<absent>", "text", [1]):
                body = {k: v for k, v in self.requests.body(5).items() if k != contract.observation}
                if value != "<absent>":
                    body[contract.observation] = value
                response = self.post(contract.predict_path, body, 5)
                assert response.status_code == 422, f"observation {value!r}: {response.json}"
        for items, status in (([], 422), ({"a": 1}, 400), ([1], 400)):
            response = self.post(contract.batch_path, {"observations": items})
            assert response.status_code == status, f"batch of {items}: {response.json}"

    def bad_ids(self):
        for name, kind in self.contract.id_kinds.items():
            body = self.requests.body(4)
            for value in [*bad_ids(kind), "<absent>"]:
                sent = {k: v for k, v in body.items() if k != name or value != "<absent>"}
                if value != "<absent>":
                    sent[name] = value
                response = self.post(self.contract.predict_path, sent, 4)
                assert response.status_code == 422, f"id {name}={value!r}: {response.json}"
                assert name in response.json["error"], f"id {name}={value!r}: {response.json}"

    def update(self, answers):
        contract, requests = self.contract, self.requests
        truth = self.model.truths[0]
        ids = requests.other_ids(0) or requests.ids(0)
        body = {**ids, **requests.truth_fields(truth), NOTE: "update"}
        response = self.post(contract.update_path, body, 1)
        assert response.status_code == 200, f"/update: {response.status_code} {response.json}"
        output = self.output(requests.features(0))
        if contract.update_answer is not None:
            expected = answer_of(contract.update_answer, output, body, contract.observation)
            assert_same(response.json, expected, "/update's answer")
        else:
            self.check_row(response.json, output, truth)
        self.check_tutorial_columns(output, truth)
        self.check_listing(truth)
        again = self.post(contract.predict_path, requests.body(0))
        assert again.json == answers[0], f"a retry after /update: {again.json}"
        unknown = {**requests.ids(99), **requests.truth_fields(truth)}
        missing = self.post(contract.update_path, unknown)
        assert missing.status_code == 404, f"/update of an unknown id: {missing.json}"
        self.bad_truth(ids, truth)

    def check_row(self, row, output, truth):
        """The tutorial's /update answer: the stored row, with the true value in it."""
        truth_key = "true_value" if self.model.task == "regression" else "true_class"
        kept = self.requests.kept_id(0)
        assert same_id(row["observation_id"], kept), f"the row's id {row['observation_id']!r}"
        truth = parsed_truth(self.model, self.contract, truth)
        assert_same(row[truth_key], truth, f"the row's {truth_key}")
        assert_same(row["prediction"], output, "the row's prediction")

    def check_tutorial_columns(self, output, truth):
        """observation_id for an integer id, proba for a binary classifier, true_class for
        an integer or boolean label: the tutorial's queries read them."""
        row = service.Prediction.get(service.Prediction.true_value.is_null(False))
        kept = self.requests.kept_id(0)
        integer_id = kept if isinstance(kept, int) and not isinstance(kept, bool) else None
        assert row.observation_id == integer_id, f"observation_id {row.observation_id}"
        if self.model.task == "binary":
            assert_same(row.proba, output["probability"], "the proba column")
        labelled = isinstance(truth, int) and self.model.task != "regression"
        assert row.true_class == (int(truth) if labelled else None), f"true_class {row.true_class}"

    def check_listing(self, truth):
        """/list-db-contents shows the updated row under the id as the service keeps it."""
        listed = self.client.get(
            "/list-db-contents?limit=1000", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        assert listed.status_code == 200, listed.json
        truth_key = "true_value" if self.model.task == "regression" else "true_class"
        kept = self.requests.kept_id(0)
        rows = [r for r in listed.json["predictions"] if same_id(r["observation_id"], kept)]
        assert len(rows) == 1, f"rows listed under {kept!r}: {rows}"
        truth = parsed_truth(self.model, self.contract, truth)
        assert_same(rows[0][truth_key], truth, f"the listed row's {truth_key}")

    def bad_truth(self, ids, truth):
        fields = self.requests.truth_fields(truth)
        name = next(iter(fields))
        response = self.post(self.contract.update_path, {**ids, **fields, name: "unknown"})
        assert response.status_code == 422, f"/update {name}='unknown': {response.json}"
        assert name in response.json["error"], response.json

    def batch(self, answers):
        """Results in order: {"id", "status", "answer"} or {"id", "status", "error"}, and
        both for a 409; the id as the client sent it, null when it cannot be read."""
        items = [
            (self.requests.body(0), 200, answers[0]),  # a retry
            self.new_item(6),
            (dict(self.requests.body(7), **{next(iter(self.contract.id_kinds)): True}), 422, None),
            *self.conflicting_item(2),
            *self.bad_value_item(8),
            *self.same_id_items(9),
        ]
        bodies = [body for body, _, _ in items]
        response = self.post(self.contract.batch_path, {"observations": bodies})
        assert response.status_code == 200, f"batch: {response.status_code} {response.json}"
        results = response.json["results"]
        assert len(results) == len(items), results
        for index, ((body, status, answer), result) in enumerate(zip(items, results, strict=True)):
            what = f"batch item {index} ({status})"
            assert result.get("status") == status, f"{what}: {result}"
            expected_id = None if index == 2 else self.requests.sent_id(body)
            assert same_id(result.get("id"), expected_id), f"{what}'s id: {result}"
            if status in (200, 409):
                assert_same(result.get("answer"), answer, f"{what}'s answer")
            assert isinstance(result.get("error"), str) is (status != 200), f"{what}: {result}"
        assert results[0]["answer"] == answers[0], "a retry in a batch answers bit for bit"

    def new_item(self, k):
        body = self.requests.body(k)
        return body, 200, self.expected(body, self.requests.features(k))

    def conflicting_item(self, k):
        features = self.requests.differing(k)
        if features is None:
            return []
        body = self.requests.body(k, features)
        return [(body, 409, self.expected(body, features))]

    def same_id_items(self, k):
        """A new id three times in one batch: stored, its retry (written otherwise where it
        may be), then another observation under it: 200, 200, 409, as one after the other."""
        first = self.new_item(k)
        again = self.requests.body(k, ids=self.requests.other_ids(k))
        items = [first, (again, 200, self.expected(again, self.requests.features(k)))]
        features = self.requests.differing(k)
        if features is not None:
            other = self.requests.body(k, features)
            items.append((other, 409, self.expected(other, features)))
        return items

    def bad_value_item(self, k):
        """[(body, status, answer)] of request k with the bad value, or [] without one."""
        if self.requests.bad_feature() is None:
            return []
        features, missing = self.requests.with_bad_value(k)
        body = self.requests.body(k, features)
        if self.contract.invalid == "reject":
            return [(body, 422, None)]
        return [(body, 200, self.expected(body, missing))]


# ---------------------------------------------------------------------------------------
# Small models trained in the test: a brief's feature names and types, made-up rows
# ---------------------------------------------------------------------------------------


def train_model(folder, columns, target, rows=48, seed=0, targets=None):
    """Train a small pipeline on made-up rows and write its artifacts into `folder`.

    `columns`: {name: values to draw from}; the kind follows the first value (int, float,
    str, bool), None values are missing. `target`: the classes of a classifier (a list), or
    "regression". `targets`: the names of a regressor's outputs (targets.json) when several.
    Returns (observations, truths): rows the model was not trained on, and a truth each.
    """
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            name: [values[i] for i in rng.integers(0, len(values), 2 * rows)]
            for name, values in columns.items()
        }  # fmt: skip
    )
    dtypes = {name: dtype_of(values) for name, values in columns.items()}
    frame = frame.astype(dtypes)
    if target == "regression":
        numeric = frame.select_dtypes("number").fillna(0).sum(axis=1).to_numpy()
        width = len(targets or [None])
        y = np.column_stack(
            [numeric * (k + 1) + rng.normal(0, 1, len(frame)) for k in range(width)]
        )
        y = y[:, 0] if width == 1 else y
        estimator = Ridge()
    else:
        y = np.array([target[k % len(target)] for k in rng.permutation(len(frame))], dtype=object)
        y = y.astype(type(target[0]))
        estimator = LogisticRegression(max_iter=1000)
    pipeline = make_pipeline(preprocessing(dtypes), estimator)
    pipeline.fit(frame.iloc[:rows], y[:rows])
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(pipeline, folder / "pipeline.pickle")
    (folder / "columns.json").write_text(json.dumps(list(columns)))
    pd.Series(frame.dtypes).to_pickle(folder / "dtypes.pickle")
    if targets and len(targets) > 1:
        (folder / "targets.json").write_text(json.dumps(targets))
    held_out = frame.iloc[rows:].astype(object).where(frame.iloc[rows:].notna(), None)
    observations = [{k: plain(v) for k, v in row.items()} for row in held_out.to_dict("records")]
    truths = [truth_of(value, targets) for value in y[rows:]]
    return Model(folder, observations, truths)


def dtype_of(values):
    sample = next(v for v in values if v is not None)
    if isinstance(sample, bool):
        return "bool"
    if isinstance(sample, int):
        return "int64"
    if isinstance(sample, float):
        return "float64"
    return "str"


def preprocessing(dtypes):
    """Numbers imputed and scaled, strings imputed and one-hot encoded, booleans imputed:
    a missing value of any column is scored (invalid = "as_missing" needs that)."""
    numbers = [c for c, d in dtypes.items() if d in ("int64", "float64")]
    strings = [c for c, d in dtypes.items() if d == "str"]
    booleans = [c for c, d in dtypes.items() if d == "bool"]
    return ColumnTransformer(
        [
            ("numbers", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numbers),
            (
                "strings",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value="missing"),
                    OneHotEncoder(handle_unknown="ignore"),
                ),
                strings,
            ),
            (
                "booleans",
                make_pipeline(
                    FunctionTransformer(np.asarray, kw_args={"dtype": float}),  # NaN: missing
                    SimpleImputer(strategy="most_frequent"),
                ),
                booleans,
            ),
        ]
    )


def truth_of(value, targets):
    if isinstance(value, np.ndarray):
        return dict(zip(targets, value.tolist(), strict=True))
    return plain(value)
