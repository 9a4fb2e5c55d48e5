"""The notebooks run top to bottom, offline, in a temporary copy of the repository.

Notebook 1 writes the artifacts at the root of the repository (the lesson); here it writes
them at the root of the copy, and they must predict what the tutorial's committed ones,
examples/titanic, predict (training is seeded): byte for byte the same files when run twice
on one machine, and the same probabilities up to the last digits on any machine. Notebook 2
must print the probability the service returns. Notebook 3, on a fresh clone (no database,
no server), analyses the demo traffic it makes itself; the sources of its traffic
(notebooks/traffic.py) are read alike. The copy holds the tutorial's artifacts, whatever
model sits at the repository root.
"""

import ast
import hashlib
import json
import math
import pickle
import re
import shutil
import sys
from datetime import datetime
from pathlib import Path

import joblib
import nbformat
import pandas as pd
import pytest
from conftest import ACROSS_MACHINES, EXAMPLE, TITANIC, same_probability, service
from ipykernel.kernelspec import write_kernel_spec
from nbclient import NotebookClient
from sklearn.metrics import roc_auc_score

from clients import replay_traffic
from model_service import artifacts
from model_service.monitoring import drift

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "notebooks"))
import traffic  # noqa: E402  (notebooks/traffic.py, as the notebooks import it)

NOTEBOOKS = [
    "1_train_and_serialize.ipynb",
    "2_deserialize_and_use.ipynb",
    "3_monitor_the_model.ipynb",  # on demo traffic here, on stored traffic in test_monitoring
]
ARTIFACTS = ["columns.json", "dtypes.pickle", "pipeline.pickle"]
# A fresh clone has none of these; the model at its root is the tutorial's (TITANIC).
LOCAL_STATE = {
    ".git",
    ".venv",
    ".env",
    "__pycache__",
    ".hypothesis",
    ".pytest_cache",
    ".ruff_cache",
    ".ipynb_checkpoints",
}
MODEL_FILES = {*ARTIFACTS, drift.PROFILE_FILE, "api.toml", "targets.json"}
VERSION = artifacts.load_model(TITANIC).version
COLUMNS = json.loads((TITANIC / "columns.json").read_text())
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
    for folder in ["notebooks", "custom_transformers", "model_service"]:
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__py*"))
    for name in ARTIFACTS:
        shutil.copy(TITANIC / name, tmp_path / name)
    run_kernels_with_this_python(tmp_path, monkeypatch)
    return tmp_path


@pytest.fixture
def fresh_clone(tmp_path, monkeypatch):
    """The repository as a fresh clone holds it, with the tutorial's model at its root: no
    predictions.db, no .env, and none of the variables that name traffic."""

    def local_state(folder, names):
        model = MODEL_FILES if Path(folder) == ROOT else set()
        return [
            name
            for name in names
            if name in LOCAL_STATE | model or name.startswith("predictions.db")
        ]

    clone = tmp_path / "clone"
    shutil.copytree(ROOT, clone, ignore=local_state)
    for name in [*ARTIFACTS, drift.PROFILE_FILE]:
        shutil.copy(TITANIC / name, clone / name)
    for name in ["DATABASE_URL", "MODEL_DIR"]:  # set by conftest.py (the other sources too)
        monkeypatch.delenv(name)
    run_kernels_with_this_python(tmp_path, monkeypatch)
    return clone


def run_kernels_with_this_python(folder, monkeypatch):
    """Run the notebooks with the Python that runs the tests (the project's virtualenv),
    whatever kernels are installed elsewhere: Jupyter looks in JUPYTER_PATH first."""
    write_kernel_spec(folder / "jupyter" / "kernels" / "project-python")
    monkeypatch.setenv("JUPYTER_PATH", str(folder / "jupyter"))


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


# ---------------------------------------------------------------------------------------
# Notebook 3 and the sources of its traffic (notebooks/traffic.py)
# ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_notebook_3_analyses_its_own_demo_traffic_on_a_fresh_clone(fresh_clone):
    output = printed(execute(fresh_clone / "notebooks" / NOTEBOOKS[2]))

    assert (
        "This run analyses demo traffic made here (no TRAFFIC_CSV or DATABASE_URL was given, "
        "and predictions.db holds none): the 328 passengers notebook 1 held out"
    ) in output
    passengers = replay_traffic.held_out_passengers()
    observations = [observation for _, observation, _ in passengers]
    labels = [label for *_, label in passengers]
    assert f"predictions stored: {len(passengers)}, with their true class: {len(labels)}" in output
    [shown] = re.findall(rf"live ROC AUC: (\S+) on {len(labels)} labelled rows", output)
    # Scored here all at once, a probability may differ from the service's one-row answer
    # in its last digit, and two equal ones may no longer tie: 2e-5 of AUC per pair.
    auc = roc_auc_score(labels, probabilities(TITANIC, observations))
    assert float(shown) == pytest.approx(auc, abs=1e-4)
    assert f"{len(passengers)} observations read, 0 left out (unreadable)" in output
    for sex in ["female", "male"]:  # section 6, per group
        count = sum(observation["Sex"] == sex for observation in observations)
        assert re.search(rf"^{sex} +{count} +{count} ", output, re.M), sex
    # Section 8: /stats, built on the demo's database, gave the same figures (else it stops).
    assert "This notebook and /stats agree." in output
    assert not list(fresh_clone.rglob("predictions.db*")), "the demo left a database behind"


def post_to(client):
    def post(path, body):
        answer = client.post(path, json=body)
        return answer.status_code, answer.json

    return post


def store_traffic(client):
    """Traffic as the service stores it: 12 held-out passengers with their outcomes, 4 more
    without (yet), and one whose Age is a word (stored by hand: the API refuses it).
    Returns the observations as sent and the outcomes (None: not sent)."""
    passengers = replay_traffic.held_out_passengers()[:16]
    assert replay_traffic.replay(post_to(client), passengers[:12], connections=1) == (
        {200: 12},
        {200: 12},
    )
    for row, observation, _ in passengers[12:]:
        body = {"id": replay_traffic.FIRST_ID + row, "observation": observation}
        assert client.post("/predict", json=body).status_code == 200
    odd = {**passengers[0][1], "Age": "old"}
    with service.database.atomic():
        service.Prediction.create(
            observation=json.dumps({"id": -1, "observation": odd}),
            model_version=VERSION,
            proba=0.5,
            threshold=0.5,
            positive_class="1",
            created_at=datetime.now(),
        )
    labels = [label for *_, label in passengers[:12]] + [None] * 5
    return [observation for _, observation, _ in passengers] + [odd], labels


def test_the_traffic_of_a_database_and_of_its_export_read_alike(
    client, database_url, tmp_path, monkeypatch
):
    sent, labels = store_traffic(client)
    monkeypatch.setenv("DATABASE_URL", database_url)
    found = traffic.load_traffic(TITANIC)

    rows = found.rows
    assert found.source == (
        f"This run analyses the {len(sent)} predictions stored in the database of "
        f"DATABASE_URL ({traffic.described(database_url)})."
    )
    assert found.database_url == database_url  # what notebook 3 builds the service on
    assert rows["readable"].tolist() == [True] * 16 + [False]
    assert rows[COLUMNS].values.tolist() == [[o.get(c) for c in COLUMNS] for o in sent[:16]] + [
        [None] * len(COLUMNS)  # the word makes the whole observation unreadable
    ]
    answered = probabilities(TITANIC, sent[:16])
    assert rows["proba"][:16].tolist() == pytest.approx(answered, rel=ACROSS_MACHINES, abs=0)
    assert rows["true_value"].tolist() == labels
    assert set(rows["model_version"]) == {VERSION}
    assert rows["created_at"].notna().all() and rows["created_at"].is_monotonic_increasing

    # The same rows as an export (GET /export's columns: ids, features as sent, the
    # prediction, the outcome, model_version, created_at, a field the model ignores).
    export = pd.DataFrame([{"id": i, **observation} for i, observation in enumerate(sent)])
    export["note"] = "a field the model ignores"
    for name in ["proba", "threshold", "positive_class"]:
        export[name] = rows[name]
    export["true_value"] = pd.array(labels, dtype="Int64")
    export["model_version"] = rows["model_version"]
    export["created_at"] = [moment.isoformat() + "Z" for moment in rows["created_at"]]
    path = tmp_path / "traffic.csv"
    export.to_csv(path, index=False)
    monkeypatch.setenv("TRAFFIC_CSV", str(path))  # first, before DATABASE_URL
    found = traffic.load_traffic(TITANIC)

    assert (
        found.source
        == f"This run analyses the 17 predictions of the export file {path} (TRAFFIC_CSV)."
    )
    assert found.database_url is None
    pd.testing.assert_frame_equal(found.rows, rows)


def test_the_output_of_score_csv_is_read_as_the_answers_of_the_model_here(tmp_path, monkeypatch):
    """No model_version, no time, the outcome as true_class, a row that was not scored."""
    passengers = replay_traffic.held_out_passengers()[:3]
    scored = pd.DataFrame([observation for _, observation, _ in passengers])
    scored.insert(0, "id", [1, 2, 3])
    scored["true_class"] = [label for *_, label in passengers]
    scored["proba"] = [0.25, 0.5, None]
    scored["status"], scored["error"] = [200, 200, 422], ["", "", "Pclass: must be an integer"]
    path = tmp_path / "scored.csv"
    scored.to_csv(path, index=False)
    monkeypatch.setenv("TRAFFIC_CSV", str(path))
    found = traffic.load_traffic(TITANIC)

    assert found.source == (
        f"This run analyses the 2 predictions of the export file {path} (TRAFFIC_CSV); 1 of "
        "its rows hold no probability and are left out; it names no model_version: taken "
        "as this model's answers."
    )
    rows = found.rows
    assert rows["proba"].tolist() == [0.25, 0.5]
    assert rows["true_value"].tolist() == scored["true_class"][:2].tolist()
    assert rows["model_version"].tolist() == [VERSION, VERSION]
    assert rows["created_at"].isna().all() and rows["threshold"].isna().all()
    assert rows["positive_class"].tolist() == [None, None]


def test_a_source_named_with_nothing_to_read_stops_with_one_sentence(tmp_path, monkeypatch):
    database = tmp_path / "predictions.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{database}")
    with pytest.raises(traffic.NothingToRead, match="^No predictions are stored in the database"):
        traffic.load_traffic(TITANIC)
    assert not database.exists(), "reading created the database"

    path = tmp_path / "traffic.csv"
    path.write_text("id,Pclass,Sex\n1,3,male\n")
    monkeypatch.setenv("TRAFFIC_CSV", str(path))
    with pytest.raises(traffic.NothingToRead, match=r"has no column Age, SibSp, .*, proba: an"):
        traffic.load_traffic(TITANIC)

    # Demo traffic is the tutorial's passengers: another model says why it cannot take them.
    monkeypatch.setenv("DEMO_TRAFFIC", "1")
    with pytest.raises(traffic.NothingToRead, match="does not fit the model in the repository"):
        traffic.load_traffic(ROOT / "examples" / "wine")
