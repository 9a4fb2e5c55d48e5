"""The template's promise: swap in another model and its contract, and `make test` stays green.

In a copy of the repository, as a student makes one, the stop-and-search brief
(examples/stop_and_search: its three artifacts, its training profile and its api.toml)
takes the place of the Titanic model at the root, as a student would put their own there;
then `make test` runs in the copy. The template's own tests must not care (they run on
examples/), and tests/test_your_model.py must pass on the brief's model and contract.

Two copies, since a student's has none of our history: a ZIP download (the repository's
files, no .git at all) and GitHub's "Use this template" (the same files, one commit). So no
test may need git, .git or a commit of ours; this one makes the copies (the files git lists,
tests/repository_files.py), and uses git only to commit the second.

It runs the whole suite once per copy, so `make test` leaves it out (marker `template`);
`make test-template` runs it, and .ci/run does after `make test`. The copies reuse this
repository's .venv (a symlink) and run on SQLite only, so they install nothing and cannot
touch the PostgreSQL databases of another run.
"""

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from conftest import ROOT
from repository_files import repository_files

pytestmark = [pytest.mark.template, pytest.mark.slow]

BRIEF = "examples/stop_and_search"
MODEL_FILES = (
    "pipeline.pickle",
    "columns.json",
    "dtypes.pickle",
    "training_profile.json",
    "targets.json",
    "api.toml",
)
# The Makefile's install stamps: a copy's files are all newer than them, and make would
# reinstall into the shared .venv; -o tells make to take them as they are.
STAMPS = (".venv/bin/.prod-installed", ".venv/bin/.dev-installed")
TIMEOUT = 1800  # seconds; the suite takes about 5 minutes on 2 cores
SUMMARY = re.compile(r"^=+ .*\b(passed|failed|error|no tests ran)\b.* in [\d.]+s")


def copy_with_the_brief_at_the_root(folder, history):
    """The repository's files in folder, committed once if history is "one commit" (else
    "none": no .git), then the brief's model files in place of the root's, .venv linked."""
    for name in repository_files(ROOT):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, folder / name)
    if history == "one commit":
        commit_everything(folder)
    for name in MODEL_FILES:
        (folder / name).unlink(missing_ok=True)
        if (folder / BRIEF / name).is_file():
            shutil.copy(folder / BRIEF / name, folder / name)
    (folder / ".venv").symlink_to(ROOT / ".venv", target_is_directory=True)


def commit_everything(folder):
    """git init, and one commit of every file: what GitHub's "Use this template" makes."""
    identity = ["-c", "user.name=Student", "-c", "user.email=student@example.com"]
    commands = [["init", "--quiet"], ["add", "--all"], ["commit", "--quiet", "-m", "Initial"]]
    for command in commands:
        git = ["git", *identity, *command]
        subprocess.run(git, cwd=folder, check=True, capture_output=True, timeout=120)


def environment_of_a_fresh_shell():
    """os.environ without what this test run set: no PostgreSQL, no outer pytest or make."""
    dropped = {"TEST_DATABASE_URL", "DATABASE_URL", "MODEL_DIR", "MAKEFLAGS", "MFLAGS", "MAKELEVEL"}
    return {
        name: value
        for name, value in os.environ.items()
        if name not in dropped and not name.startswith("PYTEST_")
    }


@pytest.mark.parametrize("history", ["none", "one commit"], ids=["zip", "use-this-template"])
def test_make_test_passes_in_a_copy_with_another_model_and_contract_at_the_root(history):
    if not shutil.which("make") or (history == "one commit" and not shutil.which("git")):
        pytest.skip("needs make (and git, to commit the copy)")
    if not (ROOT / ".venv" / "bin" / "python").exists():
        pytest.skip("needs the repository's .venv (make test installs it)")
    with tempfile.TemporaryDirectory(prefix="template-swap-") as temporary:
        copy = Path(temporary) / "copy"
        copy_with_the_brief_at_the_root(copy, history)
        command = ["make", *(f"--old-file={s}" for s in STAMPS), "test", "TEST_PROCESSES=2"]
        started = time.monotonic()
        finished = subprocess.run(
            command,
            cwd=copy,
            env=environment_of_a_fresh_shell(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=TIMEOUT,
        )
        seconds = time.monotonic() - started
    lines = finished.stdout.rstrip().splitlines()
    # pytest's last summary line ("== 513 passed, 6 skipped in 290.1s =="): servers started
    # by the tests may log after it.
    summary = next((line for line in reversed(lines) if SUMMARY.match(line)), "(no summary)")
    print(f"\nmake test in a copy ({history} of history) with {BRIEF} at the root: ", end="")
    print(f"exit {finished.returncode} in {seconds:.0f} s")
    print(summary)
    tail = "\n".join(lines[-80:])
    assert finished.returncode == 0, f"make test failed in the copy:\n{tail}"
    assert " passed" in summary, tail
