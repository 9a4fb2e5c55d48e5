"""openapi.yaml: a valid OpenAPI 3.1 document that matches the app, route by route.

(test_hostile_input.py fuzzes a live server against it with schemathesis.)
"""

import json

import pytest
import yaml
from conftest import EXAMPLE, ROOT, free_port, service
from reliability_helpers import SPEC_PATH, check_against_spec, shipped_model
from test_smoke_check import TASK_EXAMPLES

ADMIN_TOKEN = "openapi-test-token"
SPEC = yaml.safe_load(SPEC_PATH.read_text())


def test_the_document_is_valid_openapi_3_1():
    # Imported here: without the package (requirements_dev.txt), only this test fails.
    from openapi_spec_validator import validate

    assert SPEC["openapi"].startswith("3.1")
    validate(SPEC)


def test_the_app_serves_the_document(client):
    response = client.get("/openapi.yaml")
    assert response.status_code == 200
    assert response.mimetype == "application/yaml"
    assert response.get_data() == (ROOT / "openapi.yaml").read_bytes()


def test_every_route_is_documented_and_nothing_else(app):
    served = {
        (rule.rule.rstrip("/") or "/", method.lower())  # a route's twin with a final slash
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    documented = {(path, method) for path, item in SPEC["paths"].items() for method in item}
    assert served == documented


def test_every_error_status_has_an_error_body():
    for path, item in SPEC["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    schema = resolve(response)["content"]["application/json"]["schema"]
                    schema = resolve(schema)
                    # /health's 503 is the health body plus error (allOf); a 409 is the
                    # error plus the answer.
                    parts = [schema, *(resolve(s) for s in schema.get("allOf", []))]
                    required = set().union(*(part.get("required", []) for part in parts))
                    assert "error" in required, (path, method, status)


def resolve(node):
    """Follow local references (#/components/...) to the node they name."""
    while "$ref" in node:
        target = SPEC
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def test_the_observation_schema_matches_the_artifacts():
    """The columns of columns.json, typed by dtypes.pickle, as the validator treats them."""
    model = shipped_model()
    observation = SPEC["components"]["schemas"]["Observation"]
    assert list(observation["properties"]) == model.columns
    assert observation.get("additionalProperties", True) is not False  # extra keys are ignored
    expected_types = {
        "integer": "integer",
        "float": ["number", "null"],
        "string": ["string", "null"],
    }
    for column, kind in model.kinds.items():
        schema = resolve(observation["properties"][column])
        assert schema["type"] == expected_types[kind], column
    required = [c for c, kind in model.kinds.items() if kind in ("integer", "boolean")]
    assert sorted(observation["required"]) == sorted(required)


def conforms(name, instance):
    """Whether `instance` is valid by components/schemas/<name> (JSON Schema 2020-12)."""
    from jsonschema import Draft202012Validator

    return Draft202012Validator({**SPEC, "$ref": f"#/components/schemas/{name}"}).is_valid(instance)


@pytest.mark.parametrize(
    ("body", "valid"),
    [
        ({"id": 1, "true_class": 1}, True),
        ({"id": 1, "true_class": "class_0"}, True),
        ({"id": 1, "true_class": False}, True),
        ({"id": 1, "true_value": 151.5}, True),
        ({"id": 1, "true_value": {"Weight": 170, "Waist": 35.5}}, True),
        ({"id": 1}, False),  # no true outcome
        ({"id": 1, "true_class": None}, False),
        ({"id": 1, "true_class": [1]}, False),
        ({"id": 1, "true_value": "151"}, False),
        ({"id": 1, "true_value": {"Weight": "heavy"}}, False),
    ],
)
def test_the_update_request_takes_a_class_or_a_number(body, valid):
    assert conforms("UpdateRequest", body) is valid


@pytest.mark.parametrize(
    ("answer", "valid"),
    [
        ({"proba": 0.25}, True),
        ({"label": "class_0", "probabilities": {"class_0": 0.5, "class_1": 0.3, "c": 0.2}}, True),
        ({"label": 2, "probabilities": {"0": 0.1, "1": 0.1, "2": 0.8}}, True),
        ({"prediction": 151.2}, True),
        ({"prediction": {"Weight": 178.1, "Waist": 35.2}}, True),
        ({"proba": 1.25}, False),
        ({"proba": 0.25, "label": 1}, False),  # the keys of one task only
        ({"label": "a", "probabilities": {"a": 0.5, "b": 0.5}}, False),  # two: a binary one
        ({"prediction": "151"}, False),
        ({"prediction": {}}, False),
        ({}, False),
    ],
)
def test_the_answer_schema_tells_the_tasks_apart(answer, valid):
    assert conforms("PredictAnswer", answer) is valid
    conflict = {"error": "Observation ID 1 already exists", **answer}
    assert conforms("Conflict", conflict) is valid
    batch = {"id": 1, "status": 200, **answer}
    assert conforms("BatchResult", batch) is valid


@pytest.fixture
def admin_app(database_url):
    return service.create_app({"DATABASE_URL": database_url, "ADMIN_TOKEN": ADMIN_TOKEN})


def test_every_documented_answer_matches_the_spec(admin_app):
    """One request per documented status; each response is validated against openapi.yaml."""
    client = admin_app.test_client()
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    example = SPEC["components"]["schemas"]["Observation"]["example"]
    assert example == EXAMPLE
    different = dict(example, Pclass=1)
    calls = [
        ("/predict", "POST", {"data": json.dumps({"id": 1, "observation": example})}, 200),
        ("/predict", "POST", {"data": json.dumps({"id": 1, "observation": example})}, 200),
        ("/predict", "POST", {"data": json.dumps({"id": 1, "observation": different})}, 409),
        ("/predict", "POST", {"data": "{not json"}, 400),
        ("/predict", "POST", {"data": "[1, 2]"}, 400),
        ("/predict", "POST", {"data": json.dumps({"id": 2, "observation": {}})}, 422),
        ("/predict", "POST", {"data": json.dumps({"id": "two", "observation": example})}, 422),
        ("/predict", "POST", {"data": "x" * (64 * 1024 + 1)}, 413),
        ("/update", "POST", {"data": json.dumps({"id": 1, "true_class": 1})}, 200),
        ("/update", "POST", {"data": json.dumps({"id": 3, "true_class": 1})}, 404),
        ("/update", "POST", {"data": json.dumps({"id": 1, "true_class": 7})}, 422),
        ("/update", "POST", {"data": "nope"}, 400),
        ("/update", "POST", {"data": " " * (64 * 1024 + 1)}, 413),
        ("/health", "GET", {}, 200),
        ("/list-db-contents", "GET", {"headers": admin}, 200),
        ("/list-db-contents", "GET", {"headers": admin, "query_string": {"limit": 1}}, 200),
        ("/list-db-contents", "GET", {"headers": admin, "query_string": {"limit": 0}}, 422),
        ("/list-db-contents", "GET", {"headers": admin, "query_string": {"before_id": "x"}}, 422),
        ("/list-db-contents", "GET", {}, 404),
        ("/openapi.yaml", "GET", {}, 200),
    ]
    for path, method, options, status in calls:
        response = client.open(path, method=method, **options)
        assert response.status_code == status, (path, options, response.get_data(as_text=True))
        check_against_spec(response, path, method)
    listing = client.get("/list-db-contents", headers=admin).json
    assert listing["predictions"][0]["true_class"] == 1


def example_app(name, tmp_path, **settings):
    settings = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}",
        "MODEL_DIR": ROOT / "examples" / name,
        "ADMIN_TOKEN": ADMIN_TOKEN,
        **settings,
    }
    return service.create_app(settings)


@pytest.mark.parametrize("name", list(TASK_EXAMPLES))
def test_the_answers_of_every_task_match_the_spec(name, tmp_path):
    """The example models (examples/): a multiclass classifier and two regressors."""
    client = example_app(name, tmp_path).test_client()
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
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
        response = client.open(path, method=method, json=body, headers=admin)
        assert response.status_code == status, (path, body, response.get_data(as_text=True))
        check_against_spec(response, path, method)
    rows = client.get("/list-db-contents", headers=admin).json["predictions"]
    field, value = next(iter(truth.items()))
    assert [row[field] for row in rows] == [None, value]  # id 2, then id 1
    assert client.get("/health").json["model"]["task"] in ("multiclass", "regression")


def test_the_stats_schema_tells_the_tasks_apart(tmp_path):
    """Each task's /stats answer conforms; with another task's metrics or charts, it does not
    (a regressor has no probabilities to chart)."""
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    truths = {
        "wine": lambda answer: {"true_class": answer["label"]},
        "diabetes": lambda answer: {"true_value": 151.0},
        "linnerud": lambda answer: {"true_value": {"Weight": 170, "Waist": 34}},
    }
    answers = {}
    for name, truth in truths.items():
        (tmp_path / name).mkdir()
        client = example_app(name, tmp_path / name).test_client()
        answer = client.post("/predict", json={"id": 1, "observation": TASK_EXAMPLES[name]}).json
        assert client.post("/update", json={"id": 1, **truth(answer)}).status_code == 200
        answers[name] = client.get("/stats", headers=admin).json
    titanic = service.create_app(
        {"DATABASE_URL": f"sqlite:///{tmp_path / 't.db'}", "ADMIN_TOKEN": ADMIN_TOKEN}
    )
    answers["titanic"] = titanic.test_client().get("/stats", headers=admin).json  # no rows
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


@pytest.mark.parametrize("settings", [{"THRESHOLD": 0.9}, {"POSITIVE_CLASS": "0"}])
def test_a_binary_model_with_other_decision_settings_matches_the_spec(settings, tmp_path):
    app = service.create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}", **settings})
    client = app.test_client()
    response = client.get("/health")
    check_against_spec(response, "/health", "GET")
    model = response.json["model"]
    assert (model["threshold"], model["positive_class"]) == (
        settings.get("THRESHOLD", 0.5),
        0 if "POSITIVE_CLASS" in settings else 1,
    )
    response = client.post("/predict", json={"id": 1, "observation": EXAMPLE})
    check_against_spec(response, "/predict", "POST")
    response = client.post("/update", json={"id": 1, "true_class": 0})
    check_against_spec(response, "/update", "POST")
    assert response.json["threshold"] == model["threshold"]


def test_answers_while_the_database_is_unreachable_match_the_spec(admin_app):
    client = admin_app.test_client()
    nowhere = service.open_database(f"postgresql://postgres@127.0.0.1:{free_port()}/x", 1)
    reachable = service.database.obj
    service.database.initialize(nowhere)
    try:
        calls = [
            ("/predict", "POST", {"data": json.dumps({"id": 1, "observation": EXAMPLE})}),
            ("/update", "POST", {"data": json.dumps({"id": 1, "true_class": 0})}),
            ("/health", "GET", {}),
            ("/list-db-contents", "GET", {"headers": {"Authorization": f"Bearer {ADMIN_TOKEN}"}}),
        ]
        for path, method, options in calls:
            response = client.open(path, method=method, **options)
            assert response.status_code == 503, (path, response.get_data(as_text=True))
            check_against_spec(response, path, method)
    finally:
        service.database.initialize(reachable)
