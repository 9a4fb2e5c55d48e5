"""How a table names the columns of the model's answer: clients/score_csv.py's output and
GET /export (export.py) name them alike, so that a scored file and an export read the same.

    columns = answer_columns(model, answer)  # model: /health's "model"; answer: {key: source}
    columns.paths    # {"proba": ("proba",)}, or {"probabilities_yes": ("probabilities", "yes")}
    columns.cells(result)  # one cell per column, from a batch result ({"status", "answer"})

One column per key of the contract's answer; a key whose value is an object gets a column
per entry, named <key>_<entry>. Standard library only: score_csv.py, a program of its own,
imports it without the service's dependencies.
"""

import json
from dataclasses import dataclass


@dataclass
class AnswerColumns:
    """The columns the answers fill: one per key of the answer, or per entry of an object."""

    paths: dict  # column -> where its value is in a result: ("probabilities", "class_0")
    noun: str  # what a row with an answer has, for the summary

    def cells(self, result):
        """One value per column; None for a row without an answer (a 422)."""
        answer = answer_of(result)
        return [cell(dig(answer, path)) for path in self.paths.values()]

    def clear_of(self, names):
        """These columns, each renamed answer_<name> while OUTPUT.csv has its name already."""
        paths = {}
        for column, path in self.paths.items():
            while column in names or column in paths:
                column = f"answer_{column}"
            paths[column] = path
        return AnswerColumns(paths, self.noun)


def answer_of(result):
    """The answer of a batch result: {"id", "status", "answer"} (a 200, a 409), or beside
    the status from a service of an earlier release; None for a 422."""
    if result.get("status") not in (200, 409):
        return None
    answer = result.get("answer")
    return answer if isinstance(answer, dict) else result


NOUNS = {
    "probability": "a probability",
    "decision": "a decision",
    "label": "a label",
    "probabilities": "probabilities",
}


def answer_columns(model, answer):
    """The columns of the contract's answer ({key: source}), in its order."""
    paths = {}
    for key, source in answer.items():
        entries = source_entries(source, model)
        if entries is None:
            paths[key] = (key,)
        for entry in entries or []:
            paths["_".join([key, *entry])] = (key, *entry)
    first = next(iter(answer.values()), "")
    where, _, name = first.partition(".")
    noun = "an answer" if where != "prediction" else NOUNS.get(name, "a prediction")
    return AnswerColumns(paths, noun)


def source_entries(source, model):
    """The entries of an object-valued source, one column each; None for a single value."""
    where, _, name = source.partition(".")
    if where != "prediction" or name not in ("", "probabilities"):
        return None
    classes = [(json_key(label),) for label in model.get("classes") or []]
    if name == "probabilities":
        return classes
    task, targets = model.get("task") or "binary", model.get("targets") or []
    if task == "binary":
        return [("probability",), ("decision",), ("label",)]
    if task == "multiclass":
        return [("label",), *(("probabilities", key) for (key,) in classes)]
    return [("value",), *((t,) for t in targets)] if len(targets) <= 1 else [(t,) for t in targets]


def dig(result, path):
    value = result
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def cell(value):
    """What a CSV cell holds of a JSON value: numbers as they are, any other value as JSON
    writes it (true, not True; the label 1 as 1, not 1.0 in a column with gaps)."""
    if value is None or isinstance(value, str) or type(value) is float:
        return value
    return json.dumps(value)


def json_key(label):
    """A class as the service names it in `probabilities`: "yes" stays "yes", 1 -> "1"."""
    return label if isinstance(label, str) else json.dumps(label)
