"""Run the notebooks top to bottom and save them with their outputs (`make notebooks`).

Notebook 1 retrains the model and rewrites the artifacts at the repository root;
notebook 2 loads them back. Notebook 3 reads stored traffic: here, a temporary SQLite
database that the service (app.py, in this process) fills as `make replay` would, with
notebook 1's held-out passengers and their outcomes. Timings are not recorded, so that a
rerun that changes nothing leaves the notebooks unchanged in git.
"""

import os
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def execute(name):
    notebook = nbformat.read(HERE / name, as_version=4)
    client = NotebookClient(notebook, timeout=600, record_timing=False,
                            resources={"metadata": {"path": str(HERE)}})  # fmt: skip
    client.execute()
    nbformat.write(notebook, HERE / name)
    print(f"ran {name}")


def replay_into(database_url):
    """Send the held-out passengers and their outcomes to app.py, on database_url."""
    os.environ["DATABASE_URL"] = database_url  # `import app` builds its app on it
    sys.path.insert(0, str(ROOT))
    import app
    from clients import replay_traffic

    client = app.app.test_client()

    def post(path, body):
        answer = client.post(path, json=body)
        return answer.status_code, answer.get_json()

    passengers = replay_traffic.held_out_passengers()
    print("replayed:", replay_traffic.replay(post, passengers, connections=1))


execute("1_train_and_serialize.ipynb")
execute("2_deserialize_and_use.ipynb")
with tempfile.TemporaryDirectory() as folder:
    replay_into(f"sqlite:///{folder}/replayed.db")  # the notebook's kernel inherits the variable
    execute("3_monitor_the_model.ipynb")
