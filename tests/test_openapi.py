"""openapi.yaml: a valid OpenAPI 3.1 document that matches the app, route by route.

(test_hostile_input.py fuzzes a live server against it with schemathesis.)
"""

import json

import pytest
import yaml
from conftest import EXAMPLE, ROOT, free_port, service
from reliability_helpers import SPEC_PATH, check_against_spec, shipped_model

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
        (rule.rule, method.lower())
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
                    if "allOf" in schema:  # /health's 503: the health body plus error
                        required = set().union(
                            *(resolve(s).get("required", []) for s in schema["allOf"])
                        )
                    else:
                        required = set(schema["required"])
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
    update = SPEC["components"]["schemas"]["UpdateRequest"]["properties"]["true_class"]
    assert update["enum"] == model.classes


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
