"""What the model does, read from the fitted pipeline: its task, and the answers it gives.

    task = read_task(pipeline, model_dir, threshold=0.5, positive_class=None)
    outputs = task.predict(pipeline, frame)  # one dict per row, of JSON types
    task.answer_sources  # its default answer: {"proba": "prediction.probability"}

Three tasks, told apart by scikit-learn itself (`is_classifier`, `is_regressor`, `classes_`):

* `BinaryClassifier` (two classes of any JSON type: 0/1, false/true, "no"/"yes"): the
  probability of the positive class, the decision (probability >= threshold) and the label
  (the positive class when the decision is true, the other one otherwise). The answer stays
  the tutorial's `{"proba": ...}`.
* `MulticlassClassifier`: the label (the most probable class) and each class's probability.
  Answer: `{"label": ..., "probabilities": {"<class>": ..., ...}}`.
* `Regressor`: the predicted number, or one per target for a multi-output model, each
  named by targets.json. Answer: `{"prediction": 151.2}`, or
  `{"prediction": {"Weight": 178.1, "Waist": 35.2}}`.

An output holds what an answer may quote (contract.py, the HTTP contract, renames
them): `probability`, `decision`, `label`, `probabilities`, `value`, or the target names.
Every number stays a Python float, bit for bit what the pipeline computed.
"""

import json
from pathlib import Path

import numpy as np
from sklearn.base import is_classifier, is_regressor

from model_service.answer_columns import json_key  # a class as a JSON object key
from model_service.values import parse_number

TARGETS_FILE = "targets.json"
MODEL_TARGETS = "api.toml [model] targets"
DEFAULT_THRESHOLD = 0.5


class TaskError(Exception):
    """The model cannot be served as it is: one sentence that says what to change."""


def read_task(pipeline, model_dir, threshold=None, positive_class=None, targets=None):
    """The task of a fitted pipeline, with the settings that shape its answers.

    `threshold` and `positive_class` (binary classifiers) and `targets` (regressors) come
    from the settings; None means the default (0.5, the greater label, targets.json).
    """
    if is_classifier(pipeline):
        classes = [plain(label) for label in getattr(pipeline, "classes_", [])]
        if not hasattr(pipeline, "predict_proba"):
            raise TaskError(
                f"pipeline.pickle is a classifier ({type(final_step(pipeline)).__name__}) "
                "that cannot give probabilities (no predict_proba); use one that can, such "
                "as LogisticRegression, or wrap it in CalibratedClassifierCV."
            )
        if len(classes) == 2:
            return BinaryClassifier(classes, threshold, positive_class)
        if len(classes) > 2:
            refuse_binary_settings(threshold, positive_class, "multiclass classifiers")
            return MulticlassClassifier(classes)
        raise TaskError(f"pipeline.pickle predicts the classes {classes}; it needs at least two.")
    if is_regressor(pipeline):
        refuse_binary_settings(threshold, positive_class, "regressors")
        if targets is not None:  # api.toml's names win over targets.json's
            return Regressor(*check_targets(targets, count_outputs(pipeline), MODEL_TARGETS))
        names = read_targets(Path(model_dir))
        return Regressor(*check_targets(names, count_outputs(pipeline)))
    raise TaskError(
        f"pipeline.pickle is a {type(final_step(pipeline)).__name__}, which is neither a "
        "classifier nor a regressor; this service answers with a classifier's labels and "
        "probabilities or a regressor's numbers: end the pipeline with one of those."
    )


def refuse_binary_settings(threshold, positive_class, what):
    if threshold is not None or positive_class is not None:
        raise TaskError(
            f"THRESHOLD and POSITIVE_CLASS apply to binary classifiers only, and this model "
            f"is not one ({what} have neither): remove them from the settings."
        )


def plain(value):
    """A numpy scalar as the Python value JSON carries (np.int64(1) -> 1, np.str_ -> str)."""
    return value.item() if isinstance(value, np.generic) else value


def final_step(pipeline):
    return pipeline[-1] if hasattr(pipeline, "steps") else pipeline


def same_kind(value, label):
    """Whether a JSON value may stand for a class: 1 or 1.0 for 1, never true for 1."""
    if isinstance(label, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(label, bool)
    if isinstance(label, int | float):
        return isinstance(value, int | float)
    return type(value) is type(label)


def parse_class(value, classes, field):
    """The class a JSON value names, as the model has it; ValueError naming the field."""
    for label in classes:
        if same_kind(value, label) and value == label:
            return label
    raise ValueError(f"{field} must be one of {json.dumps(classes)}, got {json.dumps(value)}")


def find_class(value, classes):
    """The class a setting names: the value itself, or its text (POSITIVE_CLASS=1 or true)."""
    for label in classes:
        if (same_kind(value, label) and value == label) or value == json_key(label):
            return label
    raise TaskError(
        f"POSITIVE_CLASS={json.dumps(value)} is not a class of this model (it predicts "
        f"{json.dumps(classes)}): name one of them."
    )


# ---------------------------------------------------------------------------------------
# Classifiers
# ---------------------------------------------------------------------------------------


class BinaryClassifier:
    name = "binary"
    truth_field = "true_class"  # what /update reads, and the stored row shows
    outputs = ("probability", "decision", "label")  # what an answer may quote
    answer_sources = {"proba": "prediction.probability"}  # the default answer (contract.py)

    def __init__(self, classes, threshold=None, positive_class=None):
        self.classes = classes
        self.threshold = DEFAULT_THRESHOLD if threshold is None else threshold
        if not (isinstance(self.threshold, int | float) and 0 <= self.threshold <= 1):
            raise TaskError(f"THRESHOLD={threshold!r} must be a number from 0 to 1.")
        self.positive_class = (
            classes[1] if positive_class is None else find_class(positive_class, classes)
        )
        self.positive_index = classes.index(self.positive_class)
        self.negative_class = classes[1 - self.positive_index]

    def predict(self, pipeline, frame):
        probabilities = pipeline.predict_proba(frame)[:, self.positive_index].tolist()
        return [self.output(probability) for probability in probabilities]

    def output(self, probability, threshold=None):
        decision = probability >= (self.threshold if threshold is None else threshold)
        label = self.positive_class if decision else self.negative_class
        return {"probability": probability, "decision": decision, "label": label}

    def columns(self, output):
        """What the row stores besides the output: the decision's rule in force."""
        return {
            "proba": output["probability"],
            "threshold": self.threshold,
            "positive_class": json.dumps(self.positive_class),
        }

    def parse_truth(self, value, field):
        return parse_class(value, self.classes, field)

    def describe(self):
        return {
            "task": self.name,
            "classes": self.classes,
            "threshold": self.threshold,
            "positive_class": self.positive_class,
        }


class MulticlassClassifier:
    name = "multiclass"
    truth_field = "true_class"
    outputs = ("label", "probabilities")
    answer_sources = {"label": "prediction.label", "probabilities": "prediction.probabilities"}

    def __init__(self, classes):
        self.classes = classes
        self.keys = [json_key(label) for label in classes]

    def predict(self, pipeline, frame):
        matrix = pipeline.predict_proba(frame)
        best = matrix.argmax(axis=1).tolist()  # the first of equally likely classes
        return [
            {"label": self.classes[k], "probabilities": dict(zip(self.keys, row, strict=True))}
            for k, row in zip(best, matrix.tolist(), strict=True)
        ]

    def columns(self, output):
        return {}

    def parse_truth(self, value, field):
        return parse_class(value, self.classes, field)

    def describe(self):
        return {"task": self.name, "classes": self.classes}


# ---------------------------------------------------------------------------------------
# Regressors
# ---------------------------------------------------------------------------------------


class Regressor:
    name = "regression"
    truth_field = "true_value"

    def __init__(self, targets, width):
        self.targets = targets  # the names of the outputs, or None for one unnamed number
        self.width = width  # numbers per row
        self.outputs = ("value", *(targets or ())) if width == 1 else tuple(targets)
        # One number, or all of them as an object: {"prediction": {"Weight": .., "Waist": ..}}
        self.answer_sources = {"prediction": "prediction.value" if width == 1 else "prediction"}

    def predict(self, pipeline, frame):
        numbers = np.asarray(pipeline.predict(frame), dtype=float).reshape(len(frame), -1)
        if numbers.shape[1] != self.width:
            raise RuntimeError(f"the model predicted {numbers.shape[1]} numbers, not {self.width}")
        if self.width == 1:
            return [dict.fromkeys(self.outputs, number) for number in numbers[:, 0].tolist()]
        return [dict(zip(self.targets, row, strict=True)) for row in numbers.tolist()]

    def columns(self, output):
        return {}

    def parse_truth(self, value, field):
        """A number, or for several targets an object with a number for each one."""
        if self.width == 1:
            return parse_number(value, field)
        if not isinstance(value, dict):
            raise ValueError(
                f"{field} must be an object with a number for each target: "
                + ", ".join(self.targets)
            )
        missing = [name for name in self.targets if name not in value]
        if missing:
            raise ValueError(f"{field}.{missing[0]} is required: a number")
        return {name: parse_number(value[name], f"{field}.{name}") for name in self.targets}

    def parse_target(self, value, field):
        """One target's true value, sent in a field of its own (see contract.py)."""
        return parse_number(value, field)

    def describe(self):
        return {"task": self.name, "targets": self.targets}


def read_targets(model_dir):
    """The names in targets.json beside the artifacts, or None without the file."""
    path = model_dir / TARGETS_FILE
    if not path.is_file():
        return None
    try:
        names = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise TaskError(
            f"Cannot read {path} ({error}); write it as a JSON list of names."
        ) from None
    return names


def check_targets(names, outputs, source=TARGETS_FILE):
    """(target names or None, numbers per row), checked against the model.

    `outputs` is how many numbers the model predicts per row, or None when that cannot be
    told before predicting (then each prediction checks it). `source` is where the names
    came from, as an error names it: targets.json, or api.toml's [model] targets.
    """
    if names is not None and not (
        isinstance(names, list)
        and names
        and all(isinstance(n, str) and n for n in names)
        and len(set(names)) == len(names)
    ):
        raise TaskError(f"{source} must be a list of distinct, non-empty names.")
    if outputs is None:
        outputs = 1 if names is None else len(names)
    if names is None and outputs > 1:
        raise TaskError(
            f"pipeline.pickle predicts {outputs} numbers per row; name them, in order, in "
            f'{TARGETS_FILE} beside it (for example ["price_a", "price_b"]).'
        )
    if names is not None and len(names) != outputs:
        raise TaskError(
            f"{source} names {len(names)} targets ({', '.join(names)}) but "
            f"pipeline.pickle predicts {outputs} numbers per row: make them agree."
        )
    return names, outputs


def count_outputs(estimator):
    """How many numbers a fitted regressor predicts per row, or None if it cannot tell.

    Read from what fitting leaves behind: `n_outputs_` (trees, forests, neighbours...),
    the `estimators_` of MultiOutputRegressor and RegressorChain, or the shape of a linear
    model's `coef_`. A Pipeline is asked through its last step.
    """
    estimator = final_step(estimator)
    inner = getattr(estimator, "regressor_", None)  # TransformedTargetRegressor
    if inner is not None:
        return count_outputs(inner)
    if hasattr(estimator, "n_outputs_"):
        return int(estimator.n_outputs_)
    if type(estimator).__name__ in ("MultiOutputRegressor", "RegressorChain"):
        return len(estimator.estimators_)
    coef = getattr(estimator, "coef_", None)
    if coef is not None:
        return 1 if np.ndim(coef) == 1 else int(np.shape(coef)[0])
    return None


# peewee's IntegerField is PostgreSQL's INTEGER: 32 bits.
TRUE_CLASS_RANGE = range(-(2**31), 2**31)


def true_class_of(label):
    """A classifier's label as the tutorial's true_class column holds it, or None.

    The tutorial's queries (`WHERE true_class IS NOT NULL`) read an integer class: an
    integer label as such, a boolean as 1 or 0. Other labels (strings, fractions) and
    integers beyond 32 bits leave it NULL; true_value holds every label (/update writes both).
    """
    if isinstance(label, int) and int(label) in TRUE_CLASS_RANGE:  # bool is an int: 1 or 0
        return int(label)
    return None
