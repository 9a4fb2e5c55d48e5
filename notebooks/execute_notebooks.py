"""Run both notebooks top to bottom and save them with their outputs (`make notebooks`).

Notebook 1 retrains the model and rewrites the three artifacts at the repository root;
notebook 2 loads them back. Timings are not recorded, so that a rerun that changes nothing
leaves the notebooks unchanged in git.
"""

from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent

for name in ["1_train_and_serialize.ipynb", "2_deserialize_and_use.ipynb"]:
    notebook = nbformat.read(HERE / name, as_version=4)
    client = NotebookClient(notebook, timeout=600, record_timing=False,
                            resources={"metadata": {"path": str(HERE)}})  # fmt: skip
    client.execute()
    nbformat.write(notebook, HERE / name)
    print(f"ran {name}")
