"""The tutorial of the README (section 3): its Python blocks are the files of tutorial/,
byte for byte, and each step, started as the README says, answers what the README shows.
Every other Python block of the README and docs/ is a verbatim excerpt of the file it names.

Step 3 serves the artifacts beside tutorial/, one folder up: the steps run in a copy that
holds the tutorial's model (examples/titanic), whatever model sits at the repository root.

The conventions of the pages' blocks are described in tests/test_readme.py.
"""

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import ROOT, TITANIC, free_port
from test_readme import PAGES, check_examples, name_of, parse_readme, read_blocks

STEPS = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "tutorial").glob("step*.py"))


EXCERPT = re.compile(r"^# (\S+) \(excerpt\)$")


def python_blocks():
    """(page, block) for every ```python block of the README and docs/."""
    return [
        (page, block)
        for page in PAGES
        for block in read_blocks(page.read_text())
        if block.language == "python"
    ]


def test_there_are_three_steps():
    assert STEPS == [
        "tutorial/step1_always_half.py",
        "tutorial/step2_read_json.py",
        "tutorial/step3_serve_pipeline.py",
    ]


def test_every_python_block_is_the_file_it_names():
    shown = []
    for page, block in python_blocks():
        first_line, _, rest = block.text.partition("\n")
        where = f"{name_of(page)} line {block.line}"
        excerpt = EXCERPT.match(first_line)
        if excerpt:
            path = ROOT / excerpt.group(1)
            assert path.is_file(), f"{where}: there is no file {excerpt.group(1)}"
            assert rest in path.read_text(), f"{where}: not a part of {excerpt.group(1)}"
            continue
        name = first_line.removeprefix("# ")
        assert name in STEPS, f"{where}: a Python block must start with '# tutorial/<file>.py'"
        assert block.text == (ROOT / name).read_text(), f"{where} differs from {name}"
        shown.append(name)
    assert sorted(shown) == STEPS, "each tutorial file is shown once, in full"


def test_each_file_names_itself_on_its_first_line():
    for step in STEPS:
        assert (ROOT / step).read_text().startswith(f"# {step}\n")


class TutorialServer:
    """`python tutorial/stepN.py`, as the README runs it, on a free port, from `cwd`."""

    def __init__(self, step, cwd=ROOT):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="tutorial-", suffix=".log", delete=False)  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, step],
            cwd=cwd,
            env={**os.environ, "PORT": str(self.port)},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_until_listening(self, seconds=30):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the step exited {self.process.returncode}:\n{self.output()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"the step did not listen in {seconds} s:\n{self.output()}")

    def output(self):
        return Path(self.log.name).read_text(errors="replace")

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


@pytest.fixture(scope="module")
def tutorial_copy(tmp_path_factory):
    """tutorial/ and custom_transformers/ beside the tutorial's artifacts, as in the lesson."""
    folder = tmp_path_factory.mktemp("tutorial")
    for name in ("tutorial", "custom_transformers"):
        shutil.copytree(ROOT / name, folder / name, ignore=shutil.ignore_patterns("__py*"))
    for name in ("pipeline.pickle", "columns.json", "dtypes.pickle"):
        shutil.copy(TITANIC / name, folder / name)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("step", STEPS)
def test_each_step_answers_what_the_readme_shows(step, tutorial_copy):
    examples = [e for e in parse_readme().examples if e.server == ("tutorial", step)]
    assert examples, f"the README shows no request for {step}"
    server = TutorialServer(step, cwd=tutorial_copy)
    try:
        server.wait_until_listening()
        failures = check_examples(examples, server.url)
    finally:
        server.stop()
    assert not failures, "\n\n".join(failures)
