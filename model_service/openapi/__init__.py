"""The API in OpenAPI 3.1, built at start-up from the model and its contract, and served.

    openapi.init_app(app)                # GET /openapi.yaml and /openapi.json serve it
    spec = build_spec(model, app.config)  # the document, a dict
    text = as_yaml(spec)                  # as YAML, with PyYAML

Why built, not written: the routes, the ids, the shape of the body and of every answer are
the brief's (contract.py, from api.toml), and the columns and their JSON types are the
model's (columns.json, dtypes.pickle). A document written by hand describes one model and
goes wrong with the next; this one is made from the objects the service validates with,
so it cannot disagree with them.

Its parts, in the order of the document:
- paths.py: the contract's three routes (predict, batch, update) and the error answers;
- service_paths.py: the routes every model shares (/health, /stats, /metrics... the pages);
- schemas.py: the schemas of this model and contract (bodies, answers, stored row, /health);
- stats_schemas.py, metrics_schemas.py, groups_schemas.py: GET /stats's answer, each task's
  metrics, and GET /stats?by='s answer;
- shared_schemas.py: the schemas every model's document holds the same (an error...);
- builders.py: the small pieces they are all made of (a description's text, a reference).
"""

import yaml
from flask import Blueprint, Response, current_app, jsonify

from model_service.openapi.builders import text
from model_service.openapi.challenger_schemas import CHALLENGER_SCHEMAS
from model_service.openapi.groups_schemas import GROUPS_SCHEMAS
from model_service.openapi.metrics_schemas import METRICS_SCHEMAS
from model_service.openapi.paths import (
    API_KEY_SCHEMES,
    no_api_key,
    paths,
    responses,
    with_api_keys,
    with_quota,
    with_rate_limit,
)
from model_service.openapi.schemas import model_schemas, predict_sources
from model_service.openapi.service_paths import SECURITY_SCHEMES
from model_service.openapi.shared_schemas import SHARED_SCHEMAS
from model_service.openapi.stats_schemas import STATS_SCHEMAS

DEFAULT_LIMITS = {
    "MAX_CONTENT_LENGTH": 64 * 1024,
    "PREDICT_BATCH_MAX_BYTES": 4 * 1024 * 1024,
    "PREDICT_BATCH_MAX_OBSERVATIONS": 1000,
}


def init_app(app):
    """Build the document of app's model (app.config["MODEL"]) with the limits in force, and
    serve it at GET /openapi.yaml and GET /openapi.json."""
    app.extensions["openapi"] = build_spec(app.config["MODEL"], app.config)
    app.register_blueprint(blueprint)


def build_spec(model, settings=None):
    """The OpenAPI document of the service that serves `model` (artifacts.LoadedModel).

    `settings` (app.config) gives the size limits in force; without it, their defaults.
    """
    limits = {name: (settings or {}).get(name, value) for name, value in DEFAULT_LIMITS.items()}
    schemas = {
        **model_schemas(model, limits),
        **STATS_SCHEMAS,
        **METRICS_SCHEMAS,
        **GROUPS_SCHEMAS,
        **CHALLENGER_SCHEMAS,
        **SHARED_SCHEMAS,
    }
    spec = {
        "openapi": "3.1.0",
        "info": info(model, limits),
        "servers": [{"url": "/"}],
        "paths": paths(model, limits),
        "components": {
            "securitySchemes": SECURITY_SCHEMES,
            "schemas": schemas,
            "responses": responses(limits),
        },
    }
    if (settings or {}).get("API_KEYS") or (settings or {}).get("API_KEYS_FILE"):
        with_api_keys(spec["paths"], model.contract)  # api_keys.py: 401 without a key
        components = spec["components"]
        components["securitySchemes"] = {**SECURITY_SCHEMES, **API_KEY_SCHEMES}
        components["responses"]["NoApiKey"] = no_api_key()
    if (settings or {}).get("RATE_LIMIT"):
        with_rate_limit(spec["paths"], model.contract)  # rate_limits.py: a 429 past it
    if (settings or {}).get("DATABASE_QUOTA_MB") and model.contract.when_full == "refuse":
        with_quota(spec["paths"], model.contract)  # quota.py: a new id in a full store
    return spec


# ---------------------------------------------------------------------------------------
# The document's title and description
# ---------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------
# The document as YAML, and its routes
# ---------------------------------------------------------------------------------------


# libyaml's emitter, in C, when PyYAML was built with it (its wheels are): ten times faster
# than the pure-Python one, and every app built (each test's too) writes the document.
SafeDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class LiteralBlockDumper(SafeDumper):
    """yaml.SafeDumper that writes text of several lines (the descriptions) as a literal
    block, as it reads; PyYAML quotes it instead where a block cannot hold it exactly."""


def represent_text(dumper, value):
    """Text of several lines as a literal block. Text holding NEL (U+0085) double-quoted:
    with allow_unicode, PyYAML would write it raw in single quotes, where it reads back as
    a line break (the escape \\N of double quotes keeps it)."""
    if "\x85" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


LiteralBlockDumper.add_representer(str, represent_text)


def as_yaml(spec):
    """The document as YAML: yaml.safe_load reads back exactly `spec` (the tests check it).
    Wide lines, so that a one-line description stays on one line."""
    return yaml.dump(
        spec, Dumper=LiteralBlockDumper, sort_keys=False, allow_unicode=True, width=120
    )


blueprint = Blueprint("openapi", __name__)


@blueprint.get("/openapi.yaml")
def document():
    """The OpenAPI document, built at start-up (init_app) from the model and its contract;
    written as YAML at its first request (tens of milliseconds), then kept."""
    extensions = current_app.extensions
    if "openapi.yaml" not in extensions:
        extensions["openapi.yaml"] = as_yaml(extensions["openapi"])
    return Response(extensions["openapi.yaml"], mimetype="application/yaml")


@blueprint.get("/openapi.json")
def document_json():
    return jsonify(current_app.extensions["openapi"])
