"""Both notebooks run top to bottom, offline, in a temporary copy of the repository.

Notebook 1 writes the artifacts at the root of the repository (the lesson); here it writes
them at the root of the copy, and they must predict what the tutorial's committed ones,
examples/titanic, predict (training is seeded): byte for byte the same files when run twice
on one machine, and the same probabilities up to the last digits on any machine. Notebook 2
must print the probability the service returns. The copy holds the tutorial's artifacts,
whatever model sits at the repository root.
"""

import ast
import hashlib
import json
import math
import pickle
import re
import shutil
from pathlib import Path

import joblib
import nbformat
import pandas as pd
import pytest
from conftest import ACROSS_MACHINES, EXAMPLE, TITANIC, same_probability
from ipykernel.kernelspec import write_kernel_spec
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = [
    "1_train_and_serialize.ipynb",
    "2_deserialize_and_use.ipynb",
    "3_monitor_the_model.ipynb",  # run on stored traffic by test_monitoring.py
]
ARTIFACTS = ["columns.json", "dtypes.pickle", "pipeline.pickle"]
README_EXAMPLE = EXAMPLE
NAN = math.nan
OBSERVATIONS = [
    README_EXAMPLE,
    {"Pclass": 1, "Sex": "male", "Age": 40.0, "SibSp": 1, "Parch": 0, "Fare": 80.0,
     "Cabin": "C85", "Embarked": "C"},
    {"Pclass": 3, "Sex": "male", "Age": NAN, "SibSp": 0, "Parch": 0, "Fare": 8.05,
     "Cabin": NAN, "Embarked": "S"},
    {"Pclass": 1, "Sex": "female", "Age": 38.0, "SibSp": 0, "Parch": 0, "Fare": NAN,
     "Cabin": "B57 B59", "Embarked": NAN},
    {"Pclass": 2, "Sex": "male", "Age": 0.5, "SibSp": 1, "Parch": 2, "Fare": 29.0,
     "Cabin": "Z42", "Embarked": "Q"},  # a deck never seen in training
    {"Pclass": 3, "Sex": "female", "Age": 22.0, "SibSp": 8, "Parch": 9, "Fare": 0.0,
     "Cabin": "T", "Embarked": "X"},  # an unknown port
    {"Pclass": 1, "Sex": "unknown", "Age": 80.0, "SibSp": 0, "Parch": 0, "Fare": 512.3292,
     "Cabin": "A6", "Embarked": "C"},  # an unknown sex
    {"Pclass": 2, "Sex": "female", "Age": NAN, "SibSp": 0, "Parch": 1, "Fare": NAN,
     "Cabin": NAN, "Embarked": NAN},  # everything that can be missing is
    {"Pclass": 3, "Sex": "male", "Age": 19.0, "SibSp": 0, "Parch": 0, "Fare": 7.75,
     "Cabin": "F G73", "Embarked": "Q"},
    {"Pclass": 1, "Sex": "female", "Age": 63.0, "SibSp": 1, "Parch": 0, "Fare": 221.7792,
     "Cabin": "c45", "Embarked": "S"},  # a lower-case cabin
]  # fmt: skip


def probabilities(model_dir, observations):
    """Predict as app.py does: columns.json order, training dtypes, missing as NaN."""
    columns = json.loads((model_dir / "columns.json").read_text())
    with open(model_dir / "dtypes.pickle", "rb") as file:
        dtypes = pickle.load(file)
    pipeline = joblib.load(model_dir / "pipeline.pickle")
    rows = [[NAN if obs.get(c) is None else obs[c] for c in columns] for obs in observations]
    frame = pd.DataFrame(rows, columns=columns).astype(dtypes)
    return pipeline.predict_proba(frame)[:, 1]


@pytest.fixture
def repository_copy(tmp_path, monkeypatch):
    """The notebooks, the package and the tutorial's artifacts, copied into tmp_path."""
    for folder in ["notebooks", "custom_transformers"]:
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__py*"))
    for name in ARTIFACTS:
        shutil.copy(TITANIC / name, tmp_path / name)
    shutil.copy(ROOT / "drift.py", tmp_path / "drift.py")  # notebook 1 writes the profile with it
    # Run the notebooks with the Python that runs the tests (the project's virtualenv),
    # whatever kernels are installed elsewhere: Jupyter looks in JUPYTER_PATH first.
    write_kernel_spec(tmp_path / "jupyter" / "kernels" / "project-python")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return tmp_path


def execute(notebook):
    """Run every cell, in the notebook's folder as Jupyter does; an error fails the test."""
    nb = nbformat.read(notebook, as_version=4)
    NotebookClient(
        nb,
        timeout=600,
        kernel_name="project-python",
        resources={"metadata": {"path": str(notebook.parent)}},
    ).execute()
    return nb


def printed(nb):
    return "".join(
        output.get("text", "") for cell in nb.cells for output in cell.get("outputs", [])
    )


def files_at_the_root(folder):
    return {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}


@pytest.mark.slow
def test_notebook_1_regenerates_the_committed_artifacts(repository_copy):
    """Run twice here: the same bytes. Against examples/titanic's artifacts, written on another
    machine: the same probabilities up to the last digits, since linear algebra libraries
    sum in an order that depends on the processor (retraining with OpenBLAS's kernels for
    another processor, OPENBLAS_CORETYPE=Haswell, moves them by about 1e-11, relatively)."""
    runs = []
    for _ in range(2):
        for name in ARTIFACTS:
            (repository_copy / name).unlink(missing_ok=True)
        execute(repository_copy / "notebooks" / NOTEBOOKS[0])
        runs.append(files_at_the_root(repository_copy))
    assert set(ARTIFACTS) <= set(runs[0])
    assert runs[0] == runs[1], "two trainings on one machine wrote different files"

    committed = probabilities(TITANIC, OBSERVATIONS)
    regenerated = probabilities(repository_copy, OBSERVATIONS)
    assert regenerated == pytest.approx(committed, rel=ACROSS_MACHINES, abs=0)
    assert json.loads((repository_copy / "columns.json").read_text()) == json.loads(
        (TITANIC / "columns.json").read_text()
    )
    # The training profile: written for the pickle written with it, and else as committed.
    profile, committed_profile = (
        json.loads((folder / "training_profile.json").read_text())
        for folder in (repository_copy, TITANIC)
    )
    pickle_hash = hashlib.sha256((repository_copy / "pipeline.pickle").read_bytes()).hexdigest()
    assert profile["written_for"].pop("model_version") == pickle_hash[:12]
    committed_profile["written_for"].pop("model_version")
    held_out = profile.pop("held_out")
    assert held_out == pytest.approx(committed_profile.pop("held_out"), rel=ACROSS_MACHINES)
    assert profile == committed_profile


@pytest.mark.slow
def test_notebook_2_prints_what_the_service_returns(repository_copy):
    nb = execute(repository_copy / "notebooks" / NOTEBOOKS[1])

    expected = float(probabilities(TITANIC, [README_EXAMPLE])[0])
    shown = re.findall(r"probability of survival: (\S+)", printed(nb))
    assert len(shown) == 1, printed(nb)
    assert same_probability(float(shown[0]), expected), (shown[0], expected)  # another process


def test_notebook_2_imports_only_what_it_promises():
    nb = nbformat.read(ROOT / "notebooks" / NOTEBOOKS[1], as_version=4)
    code = "\n".join(cell.source for cell in nb.cells if cell.cell_type == "code")
    imported = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module)
    # sys and pathlib only put the repository root on sys.path, for unpickling.
    assert imported == {"json", "pickle", "joblib", "pandas", "sys", "pathlib"}


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebooks_are_committed_with_their_outputs(name):
    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    # Executed once, top to bottom, with no error left in an output.
    assert [cell.execution_count for cell in code_cells] == list(range(1, len(code_cells) + 1))
    assert not [o for cell in code_cells for o in cell.outputs if o.output_type == "error"]
