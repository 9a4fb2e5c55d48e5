"""Contract fuzzing: api.toml drawn from the whole key space, for every kind of model.

Hypothesis draws a contract (paths with and without the final slash, one or several id
fields of each type, ids that are also model columns, flat and nested bodies, answers that
quote any request field or any output, update answers, thresholds, invalid modes), and
sometimes breaks it in one way that cannot be served. The oracle (contract_helpers.py)
reads the drawn tables, never the code under test: a contract that can be served must start
and be honoured end to end (predict, retry, conflict, update, batch, bad input); one that
cannot must stop the start-up with a sentence that names the key.

`make test` draws a few examples per model, the same ones every run (derandomized);
`make fuzz` draws FUZZ_EXAMPLES of them (500 by default), new ones every run.
"""

import os
import tempfile
from pathlib import Path

import pytest

pytest.register_assert_rewrite("contract_helpers")

from conftest import TITANIC  # noqa: E402
from contract_helpers import (  # noqa: E402
    BAD_VALUES,
    COLUMN_STYLES,
    ID_STYLES,
    TAKEN_ROUTES,
    Honour,
    Model,
    Requests,
    assert_refused,
    json_key,
    model_folder,
    read_contract,
    serve,
    task_outputs,
    to_toml,
    why_refused,
)
from hypothesis import HealthCheck, Phase, event, given, note, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from reliability_helpers import random_observations  # noqa: E402
from test_tasks import diabetes, linnerud, titanic_with_labels, wine  # noqa: E402

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0"))  # 0: make test's few, derandomized
FUZZ = settings(
    max_examples=EXAMPLES or 10,
    derandomize=not EXAMPLES,
    # make test reports a failing contract as drawn: shrinking one costs minutes (an example
    # costs a few pipeline calls of tens of milliseconds). make fuzz shrinks it.
    phases=list(Phase) if EXAMPLES else [Phase.explicit, Phase.generate],
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

TASKS = [
    "binary-integer",
    "binary-boolean",
    "binary-string",
    "multiclass-string",
    "regression",
    "two-targets",
]
# What a brief may name its routes, ids and fields: each pool apart, so that a drawn
# contract collides only where a breakage makes it collide.
PREDICT_PATHS = ["/predict", "/should_search", "/forecast_prices", "/api/v1.0/score",
                 "/will_recidivate", "/Predict-Survival", "/static/predict"]  # fmt: skip
UPDATE_PATHS = ["/update", "/search_result", "/actual_prices", "/v1/truth", "/recidivism_result"]
BATCH_PATHS = ["/predict-batch", "/score_many", "/v1/batch"]
ID_NAMES = ["id", "observation_id", "sku", "time_key", "case id", "unit_id"]
OBSERVATION_FIELDS = ["observation", "data", "features", "payload"]
ANSWER_KEYS = ["proba", "outcome", "prediction", "label", "id", "status", "error", "answer",
               "observation_id", "probabilities", "predicted_outcome", "Age"]  # fmt: skip
TRUE_FIELDS = ["true_class", "true_value", "outcome", "actual", "label"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Each task's model, built once: the examples, and two binary models trained here."""
    built = {}

    def model(task):
        if task not in built:
            built[task] = build(task, tmp_path_factory.mktemp("models") / task)
        return built[task]

    return model


def build(task, folder):
    if task == "binary-integer":
        return Model(TITANIC, random_observations(12, seed=20), [k % 2 for k in range(12)])
    if task in ("binary-boolean", "binary-string"):
        labels = [False, True] if task == "binary-boolean" else ["no", "yes"]
        served = titanic_with_labels(folder, labels, 0.5)
    else:
        served = {"multiclass-string": wine, "regression": diabetes, "two-targets": linnerud}[
            task
        ]()
    return Model(served.model_dir, served.observations[:12], served.truths[:12])


@pytest.mark.parametrize("task", TASKS)
@FUZZ
@given(data=st.data())
def test_a_drawn_contract_is_served_as_it_says_or_refused_naming_its_key(task, models, data):
    model = models(task)
    tables, breakage = data.draw(contracts(model), label="api.toml tables")
    text = to_toml(tables) + breakage.get("text", "")
    note(text)
    with tempfile.TemporaryDirectory() as scratch:
        folder = model_folder(model, Path(scratch) / "model", text)
        database_url = f"sqlite:///{scratch}/predictions.db"
        refusal = why_refused(tables, model, breakage.get("names", []))
        if refusal:
            event(f"refused, naming {refusal[0]}")
            assert_refused(folder, database_url, refusal)
            return
        contract = read_contract(tables, model)
        event("served: " + ("nested" if contract.observation else "flat") + " body")
        event(f"served: ids {sorted(contract.id_kinds.values())}")
        client = serve(folder, database_url)
        styles = data.draw(id_styles(contract, model), label="id styles")
        offset = data.draw(st.integers(0, 10_000), label="id offset")
        bad = data.draw(bad_features(contract, model), label="a value reject refuses")
        Honour(client, model, contract, Requests(model, contract, styles, offset, bad)).run()


@pytest.mark.parametrize("targets", [["a", "b", "c"], "Weight", []])
def test_targets_that_do_not_fit_are_refused_naming_the_key_they_came_from(
    targets, models, tmp_path
):
    """A draw the fuzzing makes, kept: [model] targets is where the names came from (the
    model folder has a targets.json of its own, which the brief's names replace)."""
    model = models("two-targets")
    folder = model_folder(model, tmp_path / "model", to_toml({"model": {"targets": targets}}))
    assert_refused(folder, f"sqlite:///{tmp_path / 'predictions.db'}", ["[model] targets"])


# ---------------------------------------------------------------------------------------
# Drawing a contract
# ---------------------------------------------------------------------------------------


@st.composite
def contracts(draw, model):
    """(tables, breakage): a contract that can be served, broken in one way a quarter of
    the time; the breakage holds what the refusal must name ({"names": [...]})."""
    id_fields = draw(st.lists(st.sampled_from(ID_NAMES + model.id_columns()), min_size=1,
                              max_size=3, unique=True))  # fmt: skip
    observation = draw(st.sampled_from(["", None, "", *OBSERVATION_FIELDS]))  # flat: a third
    model_table = draw(model_tables(model))
    targets = model_table.get("targets") or model.target_names
    predict = {
        "path": draw(paths(PREDICT_PATHS)),
        "id": draw(st.sampled_from(id_forms(id_fields))),
        "id_type": draw(st.sampled_from(["integer", "string", None])),
        "observation": observation,
        "invalid": draw(st.sampled_from(["reject", "as_missing", None])),
    }
    request_fields = [*id_fields, *model.columns, "note", "never_sent"]
    if observation:
        request_fields.append(observation)
    outputs = task_outputs(model, targets)
    predict["answer"] = draw(answers(id_fields, outputs, request_fields))
    true = draw(true_fields(model, targets, id_fields))
    update = {
        "path": draw(paths(UPDATE_PATHS)),
        "true": true,
        "answer": draw(answers(id_fields, outputs, [*id_fields, *true_names(true), "note"])),
    }
    tables = {
        "predict": predict,
        "update": update,
        "batch": {"path": draw(paths(BATCH_PATHS))},
        "model": model_table,
    }
    tables = {name: {k: v for k, v in t.items() if v is not None} for name, t in tables.items()}
    tables = {name: table for name, table in tables.items() if table}
    breakage = {}
    if draw(st.integers(0, 3)) == 0:
        breakage = draw(st.sampled_from(BREAKAGES))(draw, tables, model)
    return tables, breakage


def id_forms(id_fields):
    """How api.toml may write the id fields: a name or a list; left out for the default."""
    forms = [id_fields]
    if len(id_fields) == 1:
        forms.append(id_fields[0])
    if id_fields == ["id"]:
        forms.append(None)
    return forms


def paths(pool):
    """A path of the pool or none (the default), with or without its final slash."""
    return st.one_of(st.none(), st.builds(lambda p, slash: p + slash, st.sampled_from(pool),
                                          st.sampled_from(["", "/"])))  # fmt: skip


def answers(id_fields, outputs, request_fields):
    """None (the default answer), or keys that each quote a request field or an output."""
    sources = ["prediction", *(f"prediction.{o}" for o in outputs)]
    sources += [f"request.{name}" for name in request_fields]
    keys = st.lists(st.sampled_from(ANSWER_KEYS + id_fields), min_size=1, max_size=4, unique=True)
    return st.one_of(
        st.none(),
        keys.flatmap(
            lambda names: st.fixed_dictionaries({name: st.sampled_from(sources) for name in names})
        ),  # fmt: skip
    )


def true_fields(model, targets, id_fields):
    """None (the task's own), a field, or for several targets a field for each."""
    names = st.sampled_from([f for f in TRUE_FIELDS if f not in id_fields])
    if model.task == "regression" and model.width > 1:
        each = st.just({target: f"actual_{target}" for target in targets})
        return st.one_of(st.none(), names, each)
    return st.one_of(st.none(), names)


def true_names(true):
    if true is None:
        return []
    return [true] if isinstance(true, str) else list(true.values())


@st.composite
def model_tables(draw, model):
    if model.task == "binary":
        threshold = st.one_of(st.sampled_from([0, 0.1, 0.3873617971247522, 1]), st.floats(0, 1))
        positive = st.sampled_from([*model.classes, *(json_key(c) for c in model.classes)])
        return {
            "threshold": draw(st.one_of(st.none(), threshold)),
            "positive_class": draw(st.one_of(st.none(), positive)),
        }
    if model.task == "regression":
        names = ["progression"] if model.width == 1 else [f"target_{k}" for k in range(model.width)]
        return {"targets": draw(st.sampled_from([None, names]))}
    return {}


def id_styles(contract, model):
    """How each id field's values are written: by its kind, and values a model reads for
    an id that is also a model column."""
    return st.fixed_dictionaries(
        {
            name: st.sampled_from((COLUMN_STYLES if name in model.columns else ID_STYLES)[kind])
            for name, kind in contract.id_kinds.items()
        }
    )


def bad_features(contract, model):
    """None (a word where a number belongs), or a value of another kind in a column that
    is not an id."""
    columns = [c for c in model.columns if c not in contract.id_kinds]
    bad = [(c, value) for c in columns for value in BAD_VALUES[model.kinds[c]]]
    return st.one_of(st.none(), st.sampled_from(bad)) if bad else st.none()


# ---------------------------------------------------------------------------------------
# Breakages: one way each that a contract cannot be served, and what the refusal names
# ---------------------------------------------------------------------------------------


def taken_route(draw, tables, model):
    path = draw(st.sampled_from(TAKEN_ROUTES)) + draw(st.sampled_from(["", "/"]))
    tables.setdefault("predict", {})["path"] = path
    return {"names": ["[predict] path"]}


def routes_collide(draw, tables, model):
    """Two of the brief's routes are one (the final slash makes no difference)."""
    path = draw(st.sampled_from(PREDICT_PATHS))
    first, second = draw(st.sampled_from([("predict", "update"), ("update", "batch"),
                                          ("predict", "batch")]))  # fmt: skip
    tables.setdefault(first, {})["path"] = path
    tables.setdefault(second, {})["path"] = path + "/"
    return {"names": [f"[{first}] path", f"[{second}] path"]}


def not_a_path(draw, tables, model):
    tables.setdefault("update", {})["path"] = draw(st.sampled_from(["update", "/", "/a b"]))
    return {"names": ["[update] path"]}


def unknown_source(draw, tables, model):
    """An answer quoting what this task does not answer, or no source at all."""
    table = draw(st.sampled_from(["predict", "update"]))
    wrong = {"binary": "prediction.value", "multiclass": "prediction.probability",
             "regression": "prediction.probability"}[model.task]  # fmt: skip
    source = draw(st.sampled_from([wrong, "prediction.nonsense", "model.version", "request", 5]))
    tables.setdefault(table, {})["answer"] = {"outcome": source}
    return {"names": [f"[{table}] answer"]}


def unknown_key(draw, tables, model):
    table, key = draw(st.sampled_from([("predict", "pathh"), ("update", "truth"),
                                       ("batch", "route"), ("model", "thresh")]))  # fmt: skip
    tables.setdefault(table, {})[key] = "x"
    return {"names": [key]}


def unknown_table(draw, tables, model):
    tables["routes"] = {"predict": "/x"}
    return {"names": ["[routes]"]}


def bad_id_type(draw, tables, model):
    tables.setdefault("predict", {})["id_type"] = draw(st.sampled_from(["uuid", "int", 1]))
    return {"names": ["[predict] id_type"]}


def bad_invalid(draw, tables, model):
    tables.setdefault("predict", {})["invalid"] = draw(st.sampled_from(["ignore", "missing", 1]))
    return {"names": ["[predict] invalid"]}


def bad_id(draw, tables, model):
    floats = [c for c in model.columns if model.kinds[c] == "float"]
    tables.setdefault("predict", {})["id"] = draw(st.sampled_from([[], ["a", "a"], 5, *floats]))
    return {"names": ["[predict] id"]}


def observation_is_an_id(draw, tables, model):
    predict = tables.setdefault("predict", {})
    ids = predict.get("id", "id")
    predict["observation"] = ids if isinstance(ids, str) else ids[0]
    return {"names": ["[predict] observation"]}


def bad_toml(draw, tables, model):
    return {"text": draw(st.sampled_from(["[predict\n", "path = \n", "[update]\npath = 1 2\n"])),
            "names": ["api.toml"]}  # fmt: skip


def bad_model_setting(draw, tables, model):
    """A threshold out of [0, 1], a positive class the model does not predict, or either
    for a model that is not a binary classifier."""
    table = tables.setdefault("model", {})
    if model.task == "binary" and draw(st.booleans()):
        table["threshold"] = draw(st.sampled_from([1.5, -0.1, "high"]))
        return {"names": ["threshold"]}
    if model.task == "binary":
        table["positive_class"] = "maybe"
        return {"names": ["positive_class"]}
    table["threshold"] = 0.5
    return {"names": ["threshold"]}


def bad_targets(draw, tables, model):
    """A regressor's [model] targets that do not fit it: their number, or not a list of
    distinct names. (A classifier has no targets: it ignores them.)"""
    if model.task != "regression":
        return unknown_table(draw, tables, model)
    names = [f"target_{k}" for k in range(model.width + 1)]
    tables.setdefault("model", {})["targets"] = draw(st.sampled_from([names, "Weight", []]))
    return {"names": ["[model] targets"]}


def bad_true(draw, tables, model):
    if model.task == "regression" and model.width > 1:
        tables.setdefault("update", {})["true"] = {"Weight": "w"}
    else:
        tables.setdefault("update", {})["true"] = draw(st.sampled_from(["", 5, ["a"]]))
    return {"names": ["[update] true"]}


BREAKAGES = [taken_route, routes_collide, not_a_path, unknown_source, unknown_key,
             unknown_table, bad_id_type, bad_invalid, bad_id, observation_is_an_id, bad_toml,
             bad_model_setting, bad_targets, bad_true]  # fmt: skip
