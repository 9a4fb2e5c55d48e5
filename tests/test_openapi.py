"""The OpenAPI document (model_service/openapi/): built from each model and contract, valid OpenAPI
3.1, served as the app builds it, and matched by every response, route by route.

Each contract of tests/test_smoke_check.py's BRIEFS is checked, in-process: the tutorial's
(examples/titanic), the stop-and-search brief (a flat body, a string id, a decision), a
composite key and a nested body under another field. test_hostile_input.py fuzzes a live
server against the document it serves, with schemathesis.

`check_against_spec` is the helper every test file uses to validate a response.
"""

import json
import shutil

import pytest
import schemathesis
import yaml
from conftest import EXAMPLE, ROOT, TITANIC, free_port, service
from hypothesis import given, settings
from hypothesis import strategies as st
from test_smoke_check import BRIEFS, STOP_AND_SEARCH, TASK_EXAMPLES, brief_dir, example_dir

from model_service import artifacts, database, openapi

ADMIN_TOKEN = "openapi-test-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

# ---------------------------------------------------------------------------------------
# The helper: a response checked against the document of its model
# ---------------------------------------------------------------------------------------

_specs = {}  # id(model) -> (model, its document, schemathesis' reading of it)
_tutorial = []


def tutorial_model():
    """The tutorial's model (examples/titanic), loaded once."""
    if not _tutorial:
        _tutorial.append(artifacts.load_model(TITANIC))
    return _tutorial[0]


def spec_of(model=None):
    """The document of `model` (default: the tutorial's), built once per model."""
    model = model or tutorial_model()
    if id(model) not in _specs:  # the model is kept with it: its id stays its own
        spec = openapi.build_spec(model)
        _specs[id(model)] = (model, spec, schemathesis.openapi.from_dict(spec))
    return _specs[id(model)][1:]


def check_against_spec(response, path, method, model=None):
    """The status is documented for the operation and the body matches its schema.

    `response` may be a requests.Response or a Flask test response; `path` the documented
    one (no final slash); `model` the app's (app.config["MODEL"]), default the tutorial's.
    """
    spec, schema = spec_of(model)
    documented = spec["paths"][path][method.lower()]["responses"]
    status = response.status_code
    assert str(status) in documented, f"{method} {path}: {status} is not in the document"
    schema[path][method.upper()].validate_response(response)


def conforms(name, instance, model=None):
    """Whether `instance` is valid by components/schemas/<name> (JSON Schema 2020-12)."""
    from jsonschema import Draft202012Validator

    spec, _ = spec_of(model)
    return Draft202012Validator({**spec, "$ref": f"#/components/schemas/{name}"}).is_valid(instance)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """{brief: its model}, for every contract of BRIEFS and the tutorial's."""
    folder = tmp_path_factory.mktemp("briefs")
    found = {"tutorial": tutorial_model()}
    for name in BRIEFS:
        found[name] = artifacts.load_model(brief_dir(name, folder))
    return found


def app_of(name, tmp_path, **settings):
    model_dir = TITANIC if name == "tutorial" else brief_dir(name, tmp_path)
    return service.create_app(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}",
            "MODEL_DIR": str(model_dir),
            "ADMIN_TOKEN": ADMIN_TOKEN,
            **settings,
        }
    )


CONTRACTS = ["tutorial", *BRIEFS]

# ---------------------------------------------------------------------------------------
# The document
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CONTRACTS)
def test_the_document_of_every_contract_is_valid_openapi_3_1(models, name):
    # Imported here: without the package (requirements_dev.txt), only this test fails.
    from openapi_spec_validator import validate

    spec = openapi.build_spec(models[name])
    assert spec["openapi"].startswith("3.1")
    validate(spec)
    written = openapi.as_yaml(spec)
    assert yaml.safe_load(written) == spec  # the YAML says the same
    assert "\n  description: |-\n" in written  # info's paragraphs: a literal block


@pytest.mark.parametrize("name", ["tutorial", "stop_and_search"])
def test_the_app_serves_the_document_it_builds(name, tmp_path):
    app = app_of(name, tmp_path, PREDICT_BATCH_MAX_OBSERVATIONS=7)
    client = app.test_client()
    response = client.get("/openapi.yaml")
    assert (response.status_code, response.mimetype) == (200, "application/yaml")
    built = openapi.build_spec(app.config["MODEL"], app.config)
    assert yaml.safe_load(response.get_data(as_text=True)) == built
    assert client.get("/openapi.json").json == built
    batch = built["components"]["schemas"]["PredictBatchRequest"]
    assert batch["properties"]["observations"]["maxItems"] == 7  # the limit in force


@pytest.mark.parametrize("name", CONTRACTS)
def test_every_route_is_documented_and_nothing_else(name, tmp_path):
    """The POST routes are served with a final slash too: one path documents both."""
    app = app_of(name, tmp_path)
    served = {
        (rule.rule.rstrip("/") or "/", method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    spec, _ = spec_of(app.config["MODEL"])
    documented = {(path, method) for path, item in spec["paths"].items() for method in item}
    assert served == documented
    contract = app.config["MODEL"].contract
    assert {contract.predict_path, contract.update_path, contract.batch_path} <= set(spec["paths"])


@pytest.mark.parametrize("name", CONTRACTS)
def test_every_error_status_has_an_error_body(models, name):
    spec = openapi.build_spec(models[name])
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    schema = resolve(spec, response)["content"]["application/json"]["schema"]
                    schema = resolve(spec, schema)
                    # /health's 503 is the health body plus error (allOf); a 409 is the
                    # error plus the answer.
                    parts = [schema, *(resolve(spec, s) for s in schema.get("allOf", []))]
                    required = set().union(*(part.get("required", []) for part in parts))
                    assert "error" in required, (path, method, status)


def resolve(spec, node):
    """Follow local references (#/components/...) to the node they name."""
    while "$ref" in node:
        target = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


@pytest.mark.parametrize("name", ["tutorial", "stop_and_search"])
def test_the_body_schema_matches_the_artifacts(models, name):
    """The columns of columns.json, typed by dtypes.pickle, as the validator treats them;
    nested under observation (the tutorial), or next to the id (a flat body)."""
    model = models[name]
    spec, _ = spec_of(model)
    schemas = spec["components"]["schemas"]
    request = schemas["PredictRequest"]
    if model.contract.observation_field:
        assert request["required"] == ["id", "observation"]
        body = schemas["Observation"]
    else:
        body = request
        assert request["required"][0] == "observation_id"
    columns = [c for c in body["properties"] if c in model.columns]
    assert columns == model.columns
    assert body.get("additionalProperties", True) is not False  # extra keys are ignored
    expected_types = {
        "integer": "integer",
        "float": ["number", "null"],
        "string": ["string", "null"],
        "boolean": "boolean",
    }
    for column, kind in model.kinds.items():
        assert body["properties"][column]["type"] == expected_types[kind], column
    required = [c for c, kind in model.kinds.items() if kind in ("integer", "boolean")]
    assert [c for c in body["required"] if c in model.columns] == required


# ---------------------------------------------------------------------------------------
# Schemas that tell right from wrong, per contract
# ---------------------------------------------------------------------------------------

LONG_ID = "x" * 201
WINE_SCORES = {"class_0": 0.9, "class_1": 0.05, "class_2": 0.05}
WINE_ALL = {"label": "class_0", "probabilities": WINE_SCORES}


@pytest.mark.parametrize(
    ("name", "body", "valid"),
    [
        ("tutorial", {"id": 1, "true_class": 1}, True),
        ("tutorial", {"id": 1, "true_class": 0.0}, True),  # 0.0 is the class 0
        ("tutorial", {"id": 1}, False),  # no true outcome
        ("tutorial", {"id": 1, "true_class": None}, False),
        ("tutorial", {"id": 1, "true_class": 2}, False),  # not a class
        ("tutorial", {"id": 1, "true_class": True}, False),  # another type
        ("tutorial", {"id": 1, "true_class": "1"}, False),
        ("tutorial", {"id": 2**63, "true_class": 1}, False),  # beyond 64 bits
        ("tutorial", {"id": "case-1", "true_class": 1}, True),  # no id_type: a string too
        ("tutorial", {"id": "", "true_class": 1}, False),
        ("tutorial", {"id": 1.5, "true_class": 1}, False),
        ("tutorial", {"id": True, "true_class": 1}, False),
        ("tutorial", {"id": None, "true_class": 1}, False),
        ("stop_and_search", {"observation_id": "a", "outcome": False}, True),
        ("stop_and_search", {"observation_id": "a", "outcome": 1}, False),
        ("stop_and_search", {"observation_id": "", "outcome": True}, False),
        ("stop_and_search", {"observation_id": LONG_ID, "outcome": True}, False),
        ("stop_and_search", {"observation_id": 7, "outcome": True}, False),
        ("athletes", {"athlete": "a", "Jumps": 60, "weight": 170, "waist": 35.5}, True),
        ("athletes", {"athlete": "a", "Jumps": 60, "weight": 170}, False),  # no waist
        ("athletes", {"athlete": "a", "weight": 170, "waist": 35.5}, False),  # half an id
        ("wines", {"wine_id": 1, "cultivar": "class_2"}, True),
        ("wines", {"wine_id": 1, "cultivar": "class_3"}, False),
    ],
)
def test_the_update_request_takes_the_contracts_fields_and_types(models, name, body, valid):
    assert conforms("UpdateRequest", body, models[name]) is valid


@pytest.mark.parametrize(
    ("name", "answer", "valid"),
    [
        ("tutorial", {"proba": 0.25}, True),
        ("tutorial", {"proba": 1.25}, False),
        ("tutorial", {"proba": 0.25, "label": 1}, False),  # the contract's keys only
        ("tutorial", {}, False),
        ("stop_and_search", {"outcome": True}, True),
        ("stop_and_search", {"outcome": 0.3}, False),  # a decision is a boolean
        ("stop_and_search", {"outcome": True, "proba": 0.3}, False),
        ("athletes", {"weight": 177.2, "waist": 35.2}, True),
        ("athletes", {"weight": 177.2}, False),
        ("wines", {"cultivar": "class_0", "scores": WINE_SCORES, "all": WINE_ALL, "wine": 3}, True),
        ("wines", {"cultivar": "red", "scores": WINE_SCORES, "all": WINE_ALL, "wine": 3}, False),
        (
            "wines",
            {"cultivar": "class_0", "scores": {"class_0": 1}, "all": WINE_ALL, "wine": 3},
            False,
        ),
    ],
)
def test_the_answer_schema_follows_the_contracts_sources(models, name, answer, valid):
    model = models[name]
    assert conforms("PredictAnswer", answer, model) is valid
    ids = {f: 1 if k == "integer" else "a" for f, k in model.contract.id_kinds.items()}
    sent = next(iter(ids.values())) if len(ids) == 1 else ids
    result = {"id": sent, "status": 200, "answer": answer}
    assert conforms("BatchResult", result, model) is valid
    assert not conforms("BatchResult", {**result, "id": None}, model)  # a 200's id was read
    assert conforms("BatchResult", {**result, "status": 409, "error": "taken"}, model) is valid
    assert conforms("BatchResult", {"id": None, "status": 422, "error": "no id"}, model)
    assert not conforms("BatchResult", {"id": sent, "status": 422, "answer": answer}, model)


@pytest.mark.parametrize(
    ("result", "valid"),
    [
        ({"id": {"athlete": "a", "day": "3"}, "status": 200}, True),
        ({"id": {"athlete": "a", "day": 3}, "status": 200}, True),
        ({"id": {"athlete": "a", "day": 3.5}, "status": 200}, False),
        ({"id": {"athlete": "a"}, "status": 200}, False),
        ({"id": "a", "status": 200}, False),
    ],
)
def test_a_batch_result_of_a_composite_id_gives_it_field_by_field(tmp_path, result, valid):
    folder = tmp_path / "linnerud"
    shutil.copytree(ROOT / "examples" / "linnerud", folder)
    (folder / "api.toml").write_text('[predict]\nid = ["athlete", "day"]\nobservation = ""\n')
    model = artifacts.load_model(folder)
    answer = {"prediction": {"Weight": 170.0, "Waist": 35.0}}
    assert conforms("BatchResult", {**result, "answer": answer}, model) is valid


def test_a_conflict_quotes_its_own_request(models):
    """store.conflict answers as a 200 would: request.<field> is the field sent."""
    model = models["wines"]  # its answer quotes the request's wine_id as wine
    answer = {"cultivar": "class_0", "scores": WINE_SCORES, "all": WINE_ALL, "wine": 1}
    assert conforms("PredictAnswer", answer, model)
    assert conforms("PredictAnswer", dict(answer, wine="w-1"), model)  # no id_type: either
    assert not conforms("PredictAnswer", dict(answer, wine=None), model)
    conflict = {"error": "Observation ID 1 already exists", **answer}
    assert conforms("Conflict", conflict, model)
    assert not conforms("Conflict", dict(conflict, wine=None), model)
    update = spec_of(models["athletes"])[0]["components"]["schemas"]["UpdateAnswer"]
    assert update["properties"]["athlete"]["type"] == "string"  # request.athlete: as sent
    assert update["properties"]["Jumps"]["type"] == "integer"


# ---------------------------------------------------------------------------------------
# Real answers, checked against the document of their model
# ---------------------------------------------------------------------------------------


def test_every_documented_answer_of_the_tutorial_matches_the_document(tmp_path):
    """One request per documented status; each response is validated against the document."""
    client = app_of("tutorial", tmp_path).test_client()
    different = dict(EXAMPLE, Pclass=1)
    calls = [
        ("/predict", "POST", {"data": json.dumps({"id": 1, "observation": EXAMPLE})}, 200),
        ("/predict/", "POST", {"data": json.dumps({"id": 1, "observation": EXAMPLE})}, 200),
        ("/predict", "POST", {"data": json.dumps({"id": 1, "observation": different})}, 409),
        ("/predict", "POST", {"data": "{not json"}, 400),
        ("/predict", "POST", {"data": "[1, 2]"}, 400),
        ("/predict", "POST", {"data": json.dumps({"id": 2, "observation": {}})}, 422),
        ("/predict", "POST", {"data": json.dumps({"id": True, "observation": EXAMPLE})}, 422),
        ("/predict", "POST", {"data": "x" * (64 * 1024 + 1)}, 413),
        ("/update", "POST", {"data": json.dumps({"id": 1, "true_class": 1})}, 200),
        ("/update", "POST", {"data": json.dumps({"id": 3, "true_class": 1})}, 404),
        ("/update", "POST", {"data": json.dumps({"id": 1, "true_class": 7})}, 422),
        ("/update", "POST", {"data": "nope"}, 400),
        ("/update", "POST", {"data": " " * (64 * 1024 + 1)}, 413),
        ("/health", "GET", {}, 200),
        ("/list-db-contents", "GET", {"headers": ADMIN}, 200),
        ("/list-db-contents", "GET", {"headers": ADMIN, "query_string": {"limit": 1}}, 200),
        ("/list-db-contents", "GET", {"headers": ADMIN, "query_string": {"limit": 0}}, 422),
        ("/list-db-contents", "GET", {"headers": ADMIN, "query_string": {"before_id": "x"}}, 422),
        ("/list-db-contents", "GET", {}, 404),
        ("/openapi.yaml", "GET", {}, 200),
        ("/openapi.json", "GET", {}, 200),
    ]
    for path, method, options, status in calls:
        response = client.open(path, method=method, **options)
        assert response.status_code == status, (path, options, response.get_data(as_text=True))
        check_against_spec(response, path.rstrip("/"), method)
    listing = client.get("/list-db-contents", headers=ADMIN).json
    assert listing["predictions"][0]["true_class"] == 1


def test_every_documented_answer_of_the_stop_and_search_brief_matches_the_document(tmp_path):
    app = app_of("stop_and_search", tmp_path)
    client, model = app.test_client(), app.config["MODEL"]
    body = {"observation_id": "2022-005608", **STOP_AND_SEARCH}
    other = dict(body, Latitude=51.0)
    items = [body, other, {"observation_id": "", **STOP_AND_SEARCH}, {"Type": "x"}]
    calls = [
        ("/should_search/", body, 200),
        ("/should_search", body, 200),  # a retry
        ("/should_search", other, 409),
        ("/should_search", {"observation_id": 7, **STOP_AND_SEARCH}, 422),  # not a string
        ("/should_search", dict(body, observation_id="b", Latitude="north"), 422),
        ("/predict-batch", {"observations": items}, 200),
        ("/search_result/", {"observation_id": "2022-005608", "outcome": False}, 200),
        ("/search_result", {"observation_id": "never", "outcome": False}, 404),
        ("/search_result", {"observation_id": "2022-005608", "outcome": "no"}, 422),
    ]
    for path, sent, status in calls:
        response = client.post(path, json=sent)
        assert response.status_code == status, (path, sent, response.get_data(as_text=True))
        check_against_spec(response, path.rstrip("/"), "POST", model)
    assert client.post("/should_search", json=body).json == {"outcome": True}
    assert client.post(
        "/search_result", json={"observation_id": "2022-005608", "outcome": False}
    ).json == {
        "observation_id": "2022-005608",
        "outcome": False,
        "predicted_outcome": True,
    }
    for path in ("/health", "/list-db-contents", "/stats"):
        response = client.get(path, headers=ADMIN)
        assert response.status_code == 200, response.get_data(as_text=True)
        check_against_spec(response, path, "GET", model)
    assert client.get("/health").json["contract"]["predict"]["path"] == "/should_search"


@pytest.mark.parametrize("name", ["athletes", "wines"])
def test_the_answers_of_a_composite_key_and_of_another_observation_field_match(name, tmp_path):
    app = app_of(name, tmp_path)
    client, model = app.test_client(), app.config["MODEL"]
    contract = model.contract
    observation = TASK_EXAMPLES["linnerud" if name == "athletes" else "wine"]
    first = next(c for c in observation if c not in contract.id_fields)
    other = dict(observation, **{first: observation[first] + 1})
    ids = (
        {"athlete": "ann", "Jumps": observation.get("Jumps")}
        if name == "athletes"
        else {"wine_id": 1}
    )

    def body(values):
        if contract.observation_field:
            return {**ids, contract.observation_field: values}
        return {**values, **ids}

    truth = {"weight": 170, "waist": 35.5} if name == "athletes" else {"cultivar": "class_0"}
    calls = [
        (contract.predict_path, body(observation), 200),
        (contract.predict_path, body(other), 409),
        (contract.batch_path, {"observations": [body(observation), body(other), {}]}, 200),
        (contract.update_path, {**ids, **truth}, 200),
    ]
    for path, sent, status in calls:
        response = client.post(path, json=sent)
        assert response.status_code == status, (path, sent, response.get_data(as_text=True))
        check_against_spec(response, path, "POST", model)
    for path in ("/health", "/list-db-contents"):
        check_against_spec(client.get(path, headers=ADMIN), path, "GET", model)


@pytest.mark.parametrize("name", list(TASK_EXAMPLES))
def test_the_answers_of_every_task_match_the_spec(name, tmp_path):
    """The example models (examples/): a multiclass classifier and two regressors."""
    app = service.create_app(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}",
            "MODEL_DIR": example_dir(name),
            "ADMIN_TOKEN": ADMIN_TOKEN,
        }
    )
    client, model = app.test_client(), app.config["MODEL"]
    observation = TASK_EXAMPLES[name]
    first = next(iter(observation))
    different = dict(observation, **{first: observation[first] + 1})
    answer = client.post("/predict", json={"id": 1, "observation": observation}).json
    truth = {"true_class": answer["label"]} if name == "wine" else {"true_value": 0}
    if name == "linnerud":
        truth = {"true_value": {"Weight": 170.0, "Waist": 34}}
    wrong = {"true_value": 1} if name == "wine" else {"true_class": 1}  # the other field
    items = [
        {"id": 1, "observation": observation},  # a retry
        {"id": 1, "observation": different},  # 409, with the answer
        {"id": 2, "observation": different},
        {"id": "x"},
    ]
    calls = [
        ("/predict", "POST", {"id": 1, "observation": observation}, 200),
        ("/predict", "POST", {"id": 1, "observation": different}, 409),
        ("/predict-batch", "POST", {"observations": items}, 200),
        ("/update", "POST", {"id": 1, **truth}, 200),
        ("/update", "POST", {"id": 1, **wrong}, 422),
        ("/health", "GET", None, 200),
        ("/list-db-contents", "GET", None, 200),
        ("/stats", "GET", None, 200),
    ]
    for path, method, body, status in calls:
        response = client.open(path, method=method, json=body, headers=ADMIN)
        assert response.status_code == status, (path, body, response.get_data(as_text=True))
        check_against_spec(response, path, method, model)
    rows = client.get("/list-db-contents", headers=ADMIN).json["predictions"]
    field, value = next(iter(truth.items()))
    assert [row[field] for row in rows] == [None, value]  # id 2, then id 1
    # Another model's document refuses these answers: each is this model's own.
    answer = client.post("/predict", json={"id": 1, "observation": observation}).json
    assert not conforms("PredictAnswer", answer)


def test_the_stats_schema_tells_the_tasks_apart(tmp_path):
    """Each task's /stats answer conforms; with another task's metrics or charts, it does not
    (a regressor has no probabilities to chart)."""
    truths = {
        "wine": lambda answer: {"true_class": answer["label"]},
        "diabetes": lambda answer: {"true_value": 151.0},
        "linnerud": lambda answer: {"true_value": {"Weight": 170, "Waist": 34}},
    }
    answers = {}
    for name, truth in truths.items():
        (tmp_path / name).mkdir()
        settings_ = {
            "DATABASE_URL": f"sqlite:///{tmp_path / name / 'p.db'}",
            "MODEL_DIR": example_dir(name),
            "ADMIN_TOKEN": ADMIN_TOKEN,
        }
        client = service.create_app(settings_).test_client()
        answer = client.post("/predict", json={"id": 1, "observation": TASK_EXAMPLES[name]}).json
        assert client.post("/update", json={"id": 1, **truth(answer)}).status_code == 200
        answers[name] = client.get("/stats", headers=ADMIN).json
    titanic = app_of("tutorial", tmp_path)
    answers["titanic"] = titanic.test_client().get("/stats", headers=ADMIN).json  # no rows
    for name, answer in answers.items():
        assert conforms("Stats", answer), name
        for other in answers.values():
            if answer["model"]["task"]["task"] != other["model"]["task"]["task"]:
                assert not conforms("Stats", dict(answer, metrics=other["metrics"])), name
            if (answer["calibration"] is None) != (other["calibration"] is None):  # a regressor
                assert not conforms("Stats", dict(answer, calibration=other["calibration"]))
                assert not conforms("Stats", dict(answer, distribution=other["distribution"]))
    assert not conforms("Stats", dict(answers["titanic"], labelled_left_out=None))
    assert not conforms("Stats", dict(answers["wine"], undocumented=1))


@pytest.mark.parametrize("settings_", [{"THRESHOLD": 0.9}, {"POSITIVE_CLASS": "0"}])
def test_a_binary_model_with_other_decision_settings_matches_its_document(settings_, tmp_path):
    app = app_of("tutorial", tmp_path, **settings_)
    client, model = app.test_client(), app.config["MODEL"]
    response = client.get("/health")
    check_against_spec(response, "/health", "GET", model)
    described = response.json["model"]
    assert (described["threshold"], described["positive_class"]) == (
        settings_.get("THRESHOLD", 0.5),
        0 if "POSITIVE_CLASS" in settings_ else 1,
    )
    assert not conforms("Health", response.json)  # the tutorial's document: 0.5 and 1
    response = client.post("/predict", json={"id": 1, "observation": EXAMPLE})
    check_against_spec(response, "/predict", "POST", model)
    response = client.post("/update", json={"id": 1, "true_class": 0})
    check_against_spec(response, "/update", "POST", model)
    assert response.json["threshold"] == described["threshold"]


@pytest.mark.parametrize("name", ["tutorial", "stop_and_search"])
def test_answers_while_the_database_is_unreachable_match_the_spec(name, tmp_path):
    app = app_of(name, tmp_path)
    client, model = app.test_client(), app.config["MODEL"]
    contract = model.contract
    if name == "tutorial":
        predict_body, update_body = {"id": 1, "observation": EXAMPLE}, {"id": 1, "true_class": 0}
    else:
        predict_body = {"observation_id": "a", **STOP_AND_SEARCH}
        update_body = {"observation_id": "a", "outcome": True}
    nowhere = database.open_database(f"postgresql://postgres@127.0.0.1:{free_port()}/x", 1)
    reachable = service.database.obj
    service.database.initialize(nowhere)
    try:
        calls = [
            (contract.predict_path, "POST", {"json": predict_body}),
            (contract.batch_path, "POST", {"json": {"observations": [predict_body]}}),
            (contract.update_path, "POST", {"json": update_body}),
            ("/health", "GET", {}),
            ("/list-db-contents", "GET", {"headers": ADMIN}),
        ]
        for path, method, options in calls:
            response = client.open(path, method=method, **options)
            assert response.status_code == 503, (path, response.get_data(as_text=True))
            check_against_spec(response, path, method, model)
    finally:
        service.database.initialize(reachable)


# ---------------------------------------------------------------------------------------
# The YAML: PyYAML, text of several lines as literal blocks (openapi.as_yaml)
# ---------------------------------------------------------------------------------------

json_data = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


@given(data=st.dictionaries(st.text(max_size=12), json_data, min_size=1, max_size=5))
@settings(max_examples=150, deadline=None, database=None, derandomize=True)
def test_any_json_data_is_written_as_yaml_that_reads_back_the_same(data):
    """Text YAML 1.1 would read as a number, a boolean or null, keys such as "200", control
    and astral characters, nested lists: yaml.safe_load reads back exactly what was written."""
    assert yaml.safe_load(openapi.as_yaml(data)) == data


@pytest.mark.parametrize(
    "text",
    ["no", "On", "~", "null", "1e3", "0x1f", "12:30", "- a", "a: b", "a #b", "[x]", "", " a",
     "a\n", "line one\nline two", "\u2028", "\U0001f600", "tab\there", "trailing ", "a\x85b",
     "line one\nNEL\x85", "line one \nline two", "\tline one\nline two"],
)  # fmt: skip
def test_tricky_text_reads_back_as_text(text):
    """Including what a literal block cannot hold exactly (PyYAML then quotes it), and NEL,
    which PyYAML writes raw in single quotes with allow_unicode (as_yaml double-quotes it)."""
    data = {"k": text, "list": [text], text: 1}
    assert yaml.safe_load(openapi.as_yaml(data)) == data
