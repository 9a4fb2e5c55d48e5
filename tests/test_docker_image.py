"""The Docker image, without a Docker engine: this test plays the image's part.

It copies the build context as .dockerignore defines it, installs requirements_prod.txt
into a fresh virtual environment (Python 3.12 like the image, when this machine has it),
runs the Dockerfile's exact CMD with $PORT set, and calls the service. (It runs as the
current user: this machine's Pythons live in root's home, out of reach of another user;
the USER line of the Dockerfile is checked instead.)

The image holds the model at the root, whatever it is: what Railway deploys. So the image is
checked against that model (tests/test_your_model.py reads it): /health reports its version
and its contract, and one observation drawn from its training profile, sent through that
contract, is answered.
"""

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from conftest import ROOT, free_port
from repository_files import repository_files
from test_your_model import (
    CONTRACT,
    MODEL,
    OBSERVATIONS,
    TASK,
    check_answer,
    new_ids,
    request_body,
)

pytestmark = pytest.mark.slow

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions(name):
    """The arguments of every `NAME ...` line of the Dockerfile (continuations joined)."""
    text = DOCKERFILE.replace("\\\n", " ")
    return [line.split(None, 1)[1] for line in text.splitlines() if line.startswith(name + " ")]


def dockerignore_pattern(pattern):
    """A .dockerignore pattern as a regex: * stays within a folder, ** crosses folders."""
    parts = re.split(r"(\*\*|\*|\?)", pattern.strip("/"))
    wildcards = {"**": ".*", "*": "[^/]*", "?": "[^/]"}
    return re.compile("".join(wildcards.get(part, re.escape(part)) for part in parts))


def build_context():
    """Files Docker would send: the last matching rule wins, and a rule on a folder
    applies to everything inside it."""
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rules.append((line.startswith("!"), dockerignore_pattern(line.lstrip("!"))))
    context = []
    for name in sorted(repository_files(ROOT)):
        prefixes = ["/".join(name.split("/")[: i + 1]) for i in range(name.count("/") + 1)]
        included = True
        for keep, pattern in rules:
            if any(pattern.fullmatch(prefix) for prefix in prefixes):
                included = keep
        if included and (ROOT / name).is_file():
            context.append(name)
    return context


def test_the_dockerfile_follows_the_rules():
    assert instructions("FROM") == ["python:3.12-slim"]
    copies = instructions("COPY")
    assert copies[0] == "requirements_prod.txt ."  # installed before the code is copied
    user = instructions("USER")[-1]
    assert user not in ("root", "0")
    # The user owns /app, where the default SQLite file is created.
    assert any(f"chown {user}:{user} /app" in line for line in instructions("RUN"))
    assert json.loads(instructions("CMD")[0])[0] == "gunicorn"


def test_the_build_context_holds_what_the_service_needs_and_nothing_else():
    context = build_context()
    for needed in (
        "app.py",
        "gunicorn.conf.py",
        "requirements_prod.txt",
        "pipeline.pickle",
        "columns.json",
        "dtypes.pickle",
        "custom_transformers/__init__.py",
    ):
        assert needed in context
    assert not [name for name in context if name.startswith(("tests/", "notebooks/", ".venv"))]
    assert not [name for name in context if "__pycache__" in name or name.endswith(".db")]


def test_the_build_context_holds_every_file_of_the_model_at_the_root():
    """Its optional files too: without api.toml the image would serve another contract."""
    context = build_context()
    present = [name for name in MODEL_FILES if (ROOT / name).is_file()]
    assert [name for name in present if name not in context] == []


MODEL_FILES = (
    "pipeline.pickle",
    "columns.json",
    "dtypes.pickle",
    "training_profile.json",
    "targets.json",
    "api.toml",
)


def python_like_the_image():
    """Python 3.12 as in the image when this machine has it, else the running one."""
    candidates = [
        shutil.which("python3.12"),
        *Path.home().glob(".pyenv/versions/3.12*/bin/python3.12"),
    ]
    for candidate in candidates:
        if (
            candidate
            and subprocess.run([candidate, "--version"], capture_output=True).returncode == 0
        ):
            return str(candidate)
    return sys.executable


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    """/app of the image: the context copied, requirements installed."""
    root = tmp_path_factory.mktemp("image")
    app_dir = root / "app"
    for name in build_context():
        (app_dir / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, app_dir / name)
    venv = root / "venv"
    subprocess.run([python_like_the_image(), "-m", "venv", str(venv)], check=True)
    # Without compiling every module of every package to bytecode first: two thirds of the
    # install's time, and Python compiles what it imports anyway.
    install = ["install", "--quiet", "--no-compile", "-r", "requirements_prod.txt"]
    pip = [venv / "bin/python", "-m", "pip"]
    subprocess.run([*pip, *install], cwd=app_dir, check=True, timeout=900)
    return app_dir, venv


def test_the_image_command_serves_predictions(image):
    app_dir, venv = image
    command = json.loads(instructions("CMD")[0])
    port = free_port()
    environment = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(app_dir),
        "PORT": str(port),
        **dict(re.findall(r"(\w+)=(\S+)", " ".join(instructions("ENV")))),
    }  # no DATABASE_URL: the default SQLite file, created in /app
    log = app_dir.parent / "server.log"
    with open(log, "w") as output:
        server = subprocess.Popen(
            command, cwd=app_dir, env=environment, stdout=output, stderr=output
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and server.poll() is None:
            try:
                health = requests.get(f"{url}/health", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.2)
        assert server.poll() is None, log.read_text()
        assert health.status_code == 200
        assert health.json()["versions"]["python"].startswith(
            "3.12" if "3.12" in python_like_the_image() else ""
        )
        check_the_model_at_the_root_is_served(url, health.json())
        assert (app_dir / "predictions.db").is_file()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def check_the_model_at_the_root_is_served(url, health):
    """The root's model and contract, and one predict through that contract."""
    assert health["model"]["version"] == MODEL.version
    assert health["contract"] == json.loads(json.dumps(CONTRACT.describe(TASK)))
    body = request_body(CONTRACT, new_ids(CONTRACT), OBSERVATIONS[0])
    response = requests.post(f"{url}{CONTRACT.predict_path}", json=body, timeout=10)
    assert response.status_code == 200, response.text
    check_answer(response.json(), CONTRACT.predict_sources or TASK.answer_sources, body, TASK)
