"""Your model, whatever it is: the artifacts at the repository root, through their contract.

The template's other tests run on its example models (examples/); these check the model that
`make run`, the Docker image and Railway serve. They load it with the service's own loader,
serve it in-process on a fresh SQLite database, and send it observations through the real
contract (api.toml beside the artifacts, or the tutorial's contract without one):

* each valid observation is answered 200 with the task's JSON types (a decision is a boolean,
  a label one of the classes, a probability in [0, 1], a number finite), and its retry is
  answered identically;
* one bad value per column (a string for a number, a number for a string, null where an
  integer or boolean column cannot be missing) is answered 422, naming the column as the
  contract names it (observation.Age, or Age in a flat body); with [predict] invalid =
  "as_missing", 200, the header X-Treated-As-Missing naming it;
* the same id with another observation is a 409; an update is answered as the contract says
  (its [update] answer, or the stored row with the true value).

The observations come from training_profile.json, when it was written for these columns: for
a numeric column a value inside each of its bins that training rows fell in (an integer for
an integer column), for a string or boolean column each of its categories ("a" when it lists
none), and a missing value where training had some. Without such a profile, one observation
from the dtypes alone: 0, 0.0, "a" and false. Values are never unseen categories, except that
"a": a model that refuses a category it never saw (OneHotEncoder's default) still passes.
"""

import itertools
import json
import math
import re
from itertools import pairwise

import pytest
from conftest import ROOT, service

from model_service import artifacts, tasks, web
from model_service.monitoring import drift

DEFAULTS = {"integer": 0, "float": 0.0, "string": "a", "boolean": False}
# Wrong values for each kind of column, each one the service must refuse.
BAD_VALUES = {"integer": ["a", None], "float": ["a"], "string": [1], "boolean": [None, 1]}


def load_root_model():
    """(the model at the root, None), or (None, the sentence the service would stop with)."""
    try:
        return artifacts.load_model(ROOT), None
    except service.StartupError as error:
        return None, str(error)


def read_profile(model, model_dir=ROOT):
    """The column profiles of training_profile.json, or None without one for these columns."""
    path = model_dir / drift.PROFILE_FILE
    try:
        profile = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if profile.get("written_for", {}).get("columns") != model.columns:
        return None  # left over from another model: its bins say nothing of this one
    return profile["columns"]


# ---------------------------------------------------------------------------------------
# Observations drawn from the training profile
# ---------------------------------------------------------------------------------------


def numeric_values(edges, shares, kind):
    """A value inside each bin that holds training rows: <= e0, (e0, e1], ..., > ek."""
    if not edges:
        return [DEFAULTS[kind]]
    step = edges[-1] - edges[-2] if len(edges) > 1 else 1.0
    # The edges are training values (model_service/monitoring/drift.py cuts at values that
    # occur): the first bin's and every inner bin's upper edge is one; a float column also
    # gets the inner midpoints.
    inner = [hi if kind == "integer" else (lo + hi) / 2 for lo, hi in pairwise(edges)]
    inside = [edges[0], *inner, edges[-1] + step]
    kept = [value for value, share in zip(inside, shares, strict=False) if share > 0]
    return [int(value) if kind == "integer" else float(value) for value in kept]


def categorical_values(categories, kind):
    if kind == "boolean":
        return [category == "true" for category in categories]  # drift.category_key
    return list(categories) or ["a"]


def column_values(kind, column_profile):
    """Valid values of one column, from its profile (None: from its dtype alone)."""
    if column_profile is None:
        return [DEFAULTS[kind]]
    if column_profile["kind"] == "numeric":
        values = numeric_values(column_profile["edges"], column_profile["shares"], kind)
    else:
        values = categorical_values(column_profile["categories"], kind)
    # Missing only where training had some: a pipeline without an imputer refuses NaN.
    if column_profile["missing_bin"] and column_profile["shares"][-1] > 0:
        values.append(None)
    return values or [DEFAULTS[kind]]


def draw_observations(model, profile):
    """Observations that, together, hold every value of every column at least once."""
    values = {
        column: column_values(model.kinds[column], profile and profile.get(column))
        for column in model.columns
    }
    count = max(len(each) for each in values.values())
    return [{column: each[i % len(each)] for column, each in values.items()} for i in range(count)]


# ---------------------------------------------------------------------------------------
# Requests through the contract
# ---------------------------------------------------------------------------------------

IDS = itertools.count(1)


def new_ids(contract):
    """{id field: a new value of its type}: 7, or "your-model-7"."""
    number = next(IDS)
    return {
        name: number if contract.id_kinds[name] == "integer" else f"your-model-{number}"
        for name in contract.id_fields
    }


def request_body(contract, ids, observation):
    """A /predict body as the contract reads it: the features nested, or beside the ids."""
    if contract.observation_field:
        return {**ids, contract.observation_field: observation}
    return {**observation, **ids}


def a_true_value(task):
    if task.name in ("binary", "multiclass"):
        return task.classes[0]
    return 1.5 if task.width == 1 else dict.fromkeys(task.targets, 1.5)


def update_body(contract, task, ids, truth):
    """An /update body: the ids and the true value, in one field or one field per target."""
    fields = contract.true_fields or task.truth_field
    if isinstance(fields, str):
        return {**ids, fields: truth}
    return {**ids, **{field: truth[target] for target, field in fields.items()}}


# ---------------------------------------------------------------------------------------
# Answers in the task's JSON types
# ---------------------------------------------------------------------------------------


def is_number(value):
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_output(name, value, task):
    """One output of the model, as an answer quotes it (model_service/tasks.py names
    the outputs)."""
    if name == "probability":
        assert is_number(value) and 0 <= value <= 1, f"{name}: {value!r}"
    elif name == "decision":
        assert isinstance(value, bool), f"{name}: {value!r} is not true or false"
    elif name == "label":
        tasks.parse_class(value, task.classes, name)  # ValueError: not one of the classes
    elif name == "probabilities":
        assert list(value) == task.keys, f"{name}: keyed {list(value)}, not {task.keys}"
        assert all(is_number(p) and 0 <= p <= 1 for p in value.values()), value
        assert math.isclose(sum(value.values()), 1, abs_tol=1e-9), value
    else:  # a regressor's value, or one of its targets
        assert is_number(value) and math.isfinite(value), f"{name}: {value!r}"


def check_answer(answer, sources, payload, task):
    """An answer holds each key its sources name, each value of the type its source gives."""
    assert set(answer) == set(sources), f"answered {sorted(answer)}, not {sorted(sources)}"
    for key, source in sources.items():
        where, _, name = source.partition(".")
        if where == "request":
            assert answer[key] == payload.get(name), f"{key} should echo the request's {name}"
        elif name:
            check_output(name, answer[key], task)
        else:  # "prediction": every output, as an object
            assert set(answer[key]) == set(task.outputs), answer[key]
            for output, value in answer[key].items():
                check_output(output, value, task)


# ---------------------------------------------------------------------------------------
# The model at the root, served once per test process
# ---------------------------------------------------------------------------------------

MODEL, LOAD_ERROR = load_root_model()
OBSERVATIONS = draw_observations(MODEL, read_profile(MODEL)) if MODEL else []
CONTRACT = MODEL.contract if MODEL else None
TASK = MODEL.task if MODEL else None


def refusable_columns():
    """(column, bad value) pairs; in a flat body, a column that is also an id is the id's."""
    if MODEL is None:
        return []
    skipped = set() if CONTRACT.observation_field else set(CONTRACT.id_fields)
    return [
        (column, value)
        for column in MODEL.columns
        if column not in skipped
        for value in BAD_VALUES[MODEL.kinds[column]]
    ]


@pytest.fixture(scope="module")
def root_client(tmp_path_factory):
    database = tmp_path_factory.mktemp("your-model") / "predictions.db"
    settings = {"MODEL_DIR": str(ROOT), "DATABASE_URL": f"sqlite:///{database}", "TESTING": True}
    return service.create_app(settings).test_client()


def predict(client, body, path=None):
    return client.post(path or CONTRACT.predict_path, json=body)


def test_the_model_at_the_root_loads():
    assert LOAD_ERROR is None, f"Cannot start: {LOAD_ERROR}"
    assert OBSERVATIONS


@pytest.mark.parametrize(
    "observation", OBSERVATIONS, ids=[f"observation-{i}" for i in range(len(OBSERVATIONS))]
)
def test_a_valid_observation_is_answered_in_the_tasks_types_and_its_retry_alike(
    root_client, observation
):
    body = request_body(CONTRACT, new_ids(CONTRACT), observation)
    first = predict(root_client, body)
    assert first.status_code == 200, (body, first.json)
    check_answer(first.json, CONTRACT.predict_sources or TASK.answer_sources, body, TASK)
    retry = predict(root_client, body, CONTRACT.predict_path + "/")  # both forms are served
    assert (retry.status_code, retry.json) == (200, first.json)


@pytest.mark.parametrize(
    ("column", "value"),
    refusable_columns(),
    ids=[f"{column}={json.dumps(value)}" for column, value in refusable_columns()],
)
def test_a_bad_value_is_refused_naming_its_column(root_client, column, value):
    observation = {**OBSERVATIONS[0], column: value}
    response = predict(root_client, request_body(CONTRACT, new_ids(CONTRACT), observation))
    field = CONTRACT.field_name(column)
    if CONTRACT.invalid == "as_missing":  # api.toml: answered, the value scored as missing
        assert response.status_code == 200, response.json
        named = response.headers.get("X-Treated-As-Missing", "").split(", ")
        assert web.header_list([field]) in named, f"the header should name {field}"
        return
    assert response.status_code == 422, response.json
    assert re.match(rf"{re.escape(field)} (must|is required)", response.json["error"]), (
        f"the 422 should name {field}: {response.json['error']}"
    )


def another_observation():
    """A valid observation that differs from the first one (a conflict, sent with its id)."""
    if len(OBSERVATIONS) > 1:
        return OBSERVATIONS[1]
    kinds = MODEL.kinds
    column = min(MODEL.columns, key=lambda c: kinds[c] == "string")  # a number if any
    value = OBSERVATIONS[0][column]
    shifted = {
        "boolean": lambda: not value,
        "string": lambda: f"{value}-other",
        "integer": lambda: value + 1,
        "float": lambda: value + 1.0,
    }[kinds[column]]()
    return {**OBSERVATIONS[0], column: shifted}


@pytest.mark.skipif(MODEL is None, reason="the model at the root does not load")
def test_the_same_id_with_another_observation_is_a_409_and_the_first_answer_stands(root_client):
    ids = new_ids(CONTRACT)
    first = predict(root_client, request_body(CONTRACT, ids, OBSERVATIONS[0]))
    conflict = predict(root_client, request_body(CONTRACT, ids, another_observation()))
    again = predict(root_client, request_body(CONTRACT, ids, OBSERVATIONS[0]))
    assert first.status_code == 200, first.json
    assert conflict.status_code == 409, conflict.json
    assert "already exists" in conflict.json["error"]
    assert (again.status_code, again.json) == (200, first.json)


def check_stored_row(row, ids, body, truth):
    """The tutorial's /update answer: the stored row, with the true value under its name."""
    assert row["observation_id"] == (next(iter(ids.values())) if len(ids) == 1 else ids)
    assert json.loads(row["observation"]) == body
    assert row["model_version"] == MODEL.version
    assert row[TASK.truth_field] == truth
    assert set(TASK.outputs) <= set(row["prediction"])


@pytest.mark.skipif(MODEL is None, reason="the model at the root does not load")
def test_an_update_is_answered_as_the_contract_says(root_client):
    ids = new_ids(CONTRACT)
    body = request_body(CONTRACT, ids, OBSERVATIONS[0])
    predicted = predict(root_client, body)
    truth = a_true_value(TASK)
    update = update_body(CONTRACT, TASK, ids, truth)
    response = root_client.post(CONTRACT.update_path, json=update)
    assert predicted.status_code == 200, predicted.json
    assert response.status_code == 200, (update, response.json)
    if CONTRACT.update_sources is None:
        check_stored_row(response.json, ids, body, truth)
        return
    check_answer(response.json, CONTRACT.update_sources, update, TASK)
    # What the update quotes of the prediction is what /predict answered.
    answered = {s: predicted.json[k] for k, s in (CONTRACT.predict_sources or {}).items()}
    for key, source in CONTRACT.update_sources.items():
        if source in answered:
            assert response.json[key] == answered[source], key


@pytest.mark.skipif(MODEL is None, reason="the model at the root does not load")
def test_an_update_of_another_type_or_an_unknown_id_is_refused(root_client):
    ids = new_ids(CONTRACT)
    assert predict(root_client, request_body(CONTRACT, ids, OBSERVATIONS[0])).status_code == 200
    fields = CONTRACT.true_fields or TASK.truth_field
    names = [fields] if isinstance(fields, str) else list(fields.values())
    wrong = root_client.post(CONTRACT.update_path, json={**ids, **dict.fromkeys(names, [])})
    assert wrong.status_code == 422, wrong.json
    assert wrong.json["error"].startswith(tuple(names)), wrong.json  # it names the field
    truth = a_true_value(TASK)
    unknown = update_body(CONTRACT, TASK, new_ids(CONTRACT), truth)
    assert root_client.post(CONTRACT.update_path, json=unknown).status_code == 404
