"""Run the notebooks top to bottom and save them with their outputs (`make notebooks`).

Notebook 1 retrains the model and rewrites the artifacts at the repository root;
notebook 2 loads them back. Notebook 3 analyses the demo traffic it makes itself
(traffic.py: notebook 1's held-out passengers through the service, in its own process), as
on a fresh clone: without the variables that name other traffic (.env may hold them: the
Makefile exports it), and with DEMO_TRAFFIC=1 when a predictions.db is here. Notebook 4
learns from the same demo traffic, and without WRITE_MODEL_FOLDER: it writes no model folder.
Timings are not recorded, so that a rerun that changes nothing leaves notebooks 1 and 2
unchanged in git (notebooks 3 and 4 show when their demo traffic was sent).
"""

import os
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


execute("1_train_and_serialize.ipynb")
execute("2_deserialize_and_use.ipynb")
# The notebook's kernel inherits this environment.
for name in ("TRAFFIC_CSV", "DATABASE_URL"):
    os.environ.pop(name, None)
if (ROOT / "predictions.db").exists():
    os.environ["DEMO_TRAFFIC"] = "1"
execute("3_monitor_the_model.ipynb")
for name in ("WRITE_MODEL_FOLDER", "MODEL_FOLDER_NAME"):
    os.environ.pop(name, None)
execute("4_learn_from_the_traffic.ipynb")
