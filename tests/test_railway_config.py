"""railway.json, Railway's config as code: it parses, it names only the keys Railway
documents, and it says what the README says: build with the Dockerfile, check /health,
restart on failure.

The keys are those of https://docs.railway.com/config-as-code/reference (build: builder,
watchPatterns, buildCommand, dockerfilePath, railpackVersion, nixpacks*; deploy:
startCommand, preDeployCommand, multiRegionConfig, healthcheckPath, healthcheckTimeout,
restartPolicyType, restartPolicyMaxRetries, cronSchedule, overlapSeconds, drainingSeconds;
and per-environment overrides under "environments").
"""

import json
import re

import pytest
from conftest import ROOT
from test_readme import README, read_blocks

SCHEMA = "https://railway.com/railway.schema.json"
BUILD_KEYS = {
    "builder",
    "watchPatterns",
    "buildCommand",
    "dockerfilePath",
    "railpackVersion",
    "nixpacksConfigPath",
    "nixpacksPlan",
    "nixpacksVersion",
}
DEPLOY_KEYS = {
    "startCommand",
    "preDeployCommand",
    "multiRegionConfig",
    "healthcheckPath",
    "healthcheckTimeout",
    "restartPolicyType",
    "restartPolicyMaxRetries",
    "cronSchedule",
    "overlapSeconds",
    "drainingSeconds",
}
BUILDERS = {"RAILPACK", "DOCKERFILE", "NIXPACKS"}
RESTART_POLICIES = {"ON_FAILURE", "ALWAYS", "NEVER"}


@pytest.fixture(scope="module")
def config():
    return json.loads((ROOT / "railway.json").read_text())


def check_sections(config, where):
    assert set(config) <= {"build", "deploy"}, f"{where}: unknown keys {set(config)}"
    assert set(config.get("build", {})) <= BUILD_KEYS, f"{where}.build"
    assert set(config.get("deploy", {})) <= DEPLOY_KEYS, f"{where}.deploy"


def test_railway_json_names_only_documented_keys(config):
    assert config.pop("$schema") == SCHEMA
    for name, override in config.pop("environments", {}).items():
        check_sections(override, f"environments.{name}")
    check_sections(config, "railway.json")


def test_it_builds_with_the_dockerfile(config):
    assert config["build"]["builder"] in BUILDERS
    assert config["build"]["builder"] == "DOCKERFILE"
    assert (ROOT / config["build"]["dockerfilePath"]).is_file()


def test_the_dockerfile_starts_gunicorn_on_port(config):
    """No startCommand: the Dockerfile's CMD starts the service, on $PORT."""
    assert "startCommand" not in config["deploy"]
    dockerfile = (ROOT / config["build"]["dockerfilePath"]).read_text()
    assert re.search(
        r'^CMD \["gunicorn", "--config", "gunicorn.conf.py", "app:app"\]', dockerfile, re.M
    )
    assert "os.environ.get('PORT'" in (ROOT / "gunicorn.conf.py").read_text()


def test_the_health_check_is_the_health_route(config, client):
    deploy = config["deploy"]
    assert deploy["healthcheckPath"] == "/health"
    assert client.get(deploy["healthcheckPath"]).status_code == 200
    assert (
        isinstance(deploy["healthcheckTimeout"], int) and 30 <= deploy["healthcheckTimeout"] <= 300
    )


def test_it_restarts_on_failure_within_the_free_plan_limit(config):
    deploy = config["deploy"]
    assert deploy["restartPolicyType"] in RESTART_POLICIES
    assert deploy["restartPolicyType"] == "ON_FAILURE"
    # Railway's free and trial plans allow at most 10 restarts with ON_FAILURE.
    assert isinstance(deploy["restartPolicyMaxRetries"], int)
    assert 1 <= deploy["restartPolicyMaxRetries"] <= 10


def test_the_readme_shows_railway_json_as_it_is():
    text = (ROOT / "railway.json").read_text()
    assert any(b.language == "json" and b.text == text for b in read_blocks(README.read_text()))
