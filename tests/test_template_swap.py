"""The template's promise: swap in another model and its contract, and `make test` stays green.

A fresh clone of the repository (HEAD, as CI checks it out) gets the stop-and-search brief
(examples/stop_and_search: its three artifacts, its training profile and its api.toml) at
its root in place of the Titanic model, as a student would put their own there; then
`make test` runs in the clone. The template's own tests must not care (they run on
examples/), and tests/test_your_model.py must pass on the brief's model and contract.

It runs the whole suite once more, so `make test` leaves it out (marker `template`);
`make test-template` runs it, and .ci/run does after `make test`. The clone reuses this
repository's .venv (a symlink) and runs on SQLite only, so it installs nothing and cannot
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
# The Makefile's install stamps: a clone's files are all newer than them, and make would
# reinstall into the shared .venv; -o tells make to take them as they are.
STAMPS = (".venv/bin/.prod-installed", ".venv/bin/.dev-installed")
TIMEOUT = 1800  # seconds; the suite takes about 5 minutes on 2 cores
SUMMARY = re.compile(r"^=+ .*\b(passed|failed|error|no tests ran)\b.* in [\d.]+s")


def clone_with_the_brief_at_the_root(folder):
    """git clone of HEAD, the root's model files replaced by the brief's, ROOT's .venv linked."""
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(folder)], check=True, timeout=120)
    for name in MODEL_FILES:
        (folder / name).unlink(missing_ok=True)
        if (folder / BRIEF / name).is_file():
            shutil.copy(folder / BRIEF / name, folder / name)
    (folder / ".venv").symlink_to(ROOT / ".venv", target_is_directory=True)
    # .gitignore's ".venv/" matches a folder, not a link: else git lists the link as a new file
    # (and the README's file tree test asks for it). The clone's own exclude file, untracked.
    with open(folder / ".git" / "info" / "exclude", "a") as exclude:
        exclude.write("/.venv\n")


def environment_of_a_fresh_shell():
    """os.environ without what this test run set: no PostgreSQL, no outer pytest or make."""
    dropped = {"TEST_DATABASE_URL", "DATABASE_URL", "MODEL_DIR", "MAKEFLAGS", "MFLAGS", "MAKELEVEL"}
    return {
        name: value
        for name, value in os.environ.items()
        if name not in dropped and not name.startswith("PYTEST_")
    }


def test_make_test_passes_in_a_clone_with_another_model_and_contract_at_the_root():
    if not (shutil.which("git") and shutil.which("make") and (ROOT / ".git").exists()):
        pytest.skip("needs git, make and a git repository")
    if not (ROOT / ".venv" / "bin" / "python").exists():
        pytest.skip("needs the repository's .venv (make test installs it)")
    with tempfile.TemporaryDirectory(prefix="template-swap-") as temporary:
        clone = Path(temporary) / "clone"
        clone_with_the_brief_at_the_root(clone)
        command = ["make", *(f"--old-file={s}" for s in STAMPS), "test", "TEST_PROCESSES=2"]
        started = time.monotonic()
        finished = subprocess.run(
            command,
            cwd=clone,
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
    print(f"\nmake test with {BRIEF} at the root: exit {finished.returncode} in {seconds:.0f} s")
    print(summary)
    tail = "\n".join(lines[-80:])
    assert finished.returncode == 0, f"make test failed in the clone:\n{tail}"
    assert " passed" in summary, tail
