"""The quality of a model from its stored rows, by task: BinaryReport, MulticlassReport,
RegressionReport (REPORTS[task.name]).

Each report reads the rows the way its task stored them (tasks.py) and answers:

* summary(window, last_id): the keys of /stats about quality (`labelled`,
  `labelled_left_out`, `metrics`, `calibration`, `distribution`);
* stored_columns(table) and outcomes(rows): the stored columns a labelled row needs
  besides its true value, and those rows as arrays, for groups.py (/stats?by=);
* summary takes the window's counts (rollups.py): the distribution of every row's answer
  (binary p:<bin>, multiclass c:<class> and t:<bin>) comes from them, not from the rows.

What the metrics hold (sklearn.metrics; null where undefined, and `metrics.reason` says why):

* binary: roc_auc, accuracy, log_loss, brier, precision, recall, f1, positive_rate (the
  share of labelled rows decided positive), the `thresholds` in force and the
  `confusion_matrix` ({labels: [negative, positive], matrix: rows true, columns
  decided}). Each row is decided at the threshold stored with it (0.5 before the upgrade),
  for the positive class stored with it (classes[1] before the upgrade); a row stored for
  the other class is turned round (1 - p) so that every figure is about the model's
  positive class. `calibration` and `distribution`: P(positive class) in 10 bins.
* multiclass: accuracy, macro_f1 (over the classes that occur, true or predicted),
  log_loss (labels: every class of the model), the confusion matrix in the model's class
  order, and `per_class` counts (true and predicted among the labelled rows, predicted
  among all rows) with each class's precision, recall and F1. `calibration` and
  `distribution` are about the top probability (that of the predicted class): calibration
  compares it with the share of rows whose predicted class was right.
* regression: mae, rmse, r2 and `errors` (prediction - truth: mean, quantiles and 10
  equal-width bins from the smallest to the largest, as numpy.histogram cuts them), for a
  single output; for several, the same per target under `metrics.targets`. `calibration`
  and `distribution` are null: there are no probabilities. (Past READ_LABELLED_ROWS, from
  sums: regression_cells.py; the quantiles and bins then of the latest labelled rows.)
"""

import json
from operator import itemgetter

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    log_loss,
    mean_absolute_error,
    precision_recall_fscore_support,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
    root_mean_squared_error,
)

from model_service.monitoring.window import parsed
from model_service.tasks import DEFAULT_THRESHOLD, same_kind

# ---------------------------------------------------------------------------------------
# Reading the stored values of a task
# ---------------------------------------------------------------------------------------


class ClassCodes:
    """The index in `classes` of a stored JSON class ('1', '"yes"', 'true'), or None.

    Memoised by text: a classifier's stored labels take only a handful of distinct texts,
    so 100,000 of them cost a dictionary lookup each, not a JSON parse.
    """

    def __init__(self, classes):
        self.classes, self.known = classes, {}

    def __call__(self, text):
        if text not in self.known:
            try:
                self.known[text] = self.of_value(json.loads(text))
            except (TypeError, ValueError, RecursionError):
                self.known[text] = None
        return self.known[text]

    def of_value(self, value):
        """A parsed value's index: 1 or 1.0 stand for the class 1, never true (tasks.py)."""
        for index, label in enumerate(self.classes):
            if same_kind(value, label) and value == label:
                return index
        return None


def is_number(value):
    return isinstance(value, int | float) and not isinstance(value, bool)


def finite(value):
    """A metric as JSON: a float, or None where scikit-learn found it undefined (NaN)."""
    value = float(value)
    return value if np.isfinite(value) else None


def no_labels_reason(task):
    field = task.truth_field
    return f"no labelled predictions in the window: send {field} with POST /update"


# ---------------------------------------------------------------------------------------
# Binary classifiers
# ---------------------------------------------------------------------------------------

BINARY_METRICS = [
    "roc_auc",
    "accuracy",
    "log_loss",
    "brier",
    "precision",
    "recall",
    "f1",
    "positive_rate",
]


class BinaryReport:
    """A binary classifier's rows: P(positive class) in `proba`, and the rule of the
    decision in force when each was answered in `threshold` and `positive_class`."""

    def __init__(self, task):
        self.task, self.codes = task, ClassCodes(task.classes)

    def summary(self, window, last_id, cells):
        """cells: the window's counts (rollups.py); p:<k> the stored probabilities' bins."""
        table = window.table
        distribution = [cells.get(f"p:{k}", 0) for k in range(10)]
        rows = window.in_transaction(
            lambda: window.labelled(last_id, table.proba, table.threshold, table.positive_class)
        )
        truth, score, decided, thresholds, _ = self.judge(rows)
        return {
            "labelled": len(rows),
            "labelled_left_out": len(rows) - len(truth),
            "metrics": binary_metrics(truth, score, decided, thresholds, self.task),
            "calibration": calibration(truth, score),
            "distribution": bins_of(distribution),
        }

    def stored_columns(self, table):
        """What a labelled row needs besides its true value (groups.py reads them too)."""
        return [table.proba, table.threshold, table.positive_class]

    def outcomes(self, rows):
        """({truth, score, decided}, kept: whether each row could be read) for groups.py."""
        truth, score, decided, _, kept = self.judge(rows)
        return {"truth": truth, "score": score, "decided": decided}, kept

    def judge(self, rows):
        """(truth, P, decision, threshold) arrays about the model's positive class, and
        whether each row was kept.

        Each row is decided as it was answered: p >= its threshold, for its positive class
        (rows from before the upgrade: 0.5, and P(classes[1]), which they answered).
        """
        # Column by column: zip(*rows) of 100,000 rows costs ten times as much.
        columns = [list(map(itemgetter(k), rows)) for k in range(4)]
        true = self.indexes(columns[0])
        positive = self.indexes(columns[3], default=1)
        proba = np.array(columns[1], dtype=float)  # None: NaN
        threshold = np.array(columns[2], dtype=float)
        # A row of another model, with other classes, or without a probability: left out.
        kept = (true >= 0) & (positive >= 0) & ~np.isnan(proba)
        true, positive, proba, threshold = true[kept], positive[kept], proba[kept], threshold[kept]
        threshold[np.isnan(threshold)] = DEFAULT_THRESHOLD
        turned = positive != self.task.positive_index
        truth = true == self.task.positive_index
        score = np.where(turned, 1 - proba, proba)
        decided = (proba >= threshold) != turned
        return truth, score, decided, threshold, kept.tolist()

    def indexes(self, texts, default=None):
        """The class index of each stored JSON text (ClassCodes), -1 when it is none;
        `default` for a missing text (None). Each distinct text is read once: a column of
        100,000 labels holds a handful."""
        codes, distinct = pd.factorize(np.array(texts, dtype=object), use_na_sentinel=True)
        of_distinct = [self.codes(text) for text in distinct]
        table = np.array([-1 if i is None else i for i in of_distinct] + [default], dtype=float)
        found = table[codes]  # code -1 (None) picks the last entry: the default
        return np.where(np.isnan(found), -1, found).astype(np.int64)


def binary_metrics(truth, score, decided, thresholds, task):
    """scikit-learn's metrics over the labelled rows; null, with the reason, when undefined."""
    names = [task.negative_class, task.positive_class]
    if len(truth) == 0:
        result, reasons = dict.fromkeys(BINARY_METRICS), [no_labels_reason(task)]
        matrix = np.zeros((2, 2), dtype=np.int64)
    else:
        both = len(set(truth.tolist())) == 2
        result = {
            "roc_auc": float(roc_auc_score(truth, score)) if both else None,
            "accuracy": float(accuracy_score(truth, decided)),
            "log_loss": float(log_loss(truth, score, labels=[False, True])),
            "brier": float(brier_score_loss(truth, score, pos_label=True)),
            # zero_division=NaN: undefined (no row decided positive...) rather than 0.
            "precision": finite(precision_score(truth, decided, zero_division=np.nan)),
            "recall": finite(recall_score(truth, decided, zero_division=np.nan)),
            "f1": finite(f1_score(truth, decided, zero_division=np.nan)),
            "positive_rate": float(decided.mean()),
        }
        reasons = undefined_binary(result, names, names[int(truth[0])])
        matrix = confusion_matrix(truth, decided, labels=[False, True])
    return result | {
        "confusion_matrix": {"labels": names, "matrix": matrix.tolist()},
        "thresholds": [
            {"threshold": float(t), "labelled": int(n)}
            for t, n in zip(*np.unique(thresholds, return_counts=True), strict=True)
        ],
        "reason": "; ".join(reasons) or None,
    }


def undefined_binary(result, names, first_class):
    """Why each null metric of binary_metrics is null."""
    reasons = []
    if result["roc_auc"] is None:
        reasons.append(
            "roc_auc needs labelled rows of both classes; so far every one is of class "
            f"{first_class}"
        )
    if result["precision"] is None:
        reasons.append(f"precision needs a labelled row decided {names[1]}; none is")
    if result["recall"] is None:
        reasons.append(f"recall needs a labelled row of class {names[1]}; none is")
    if result["f1"] is None:
        reasons.append(f"f1 needs a labelled row of class {names[1]} or decided so")
    return reasons


def probability_bins(probabilities):
    """The bin of each probability: floor(p * 10), with 1.0 in the last bin (9)."""
    return np.minimum(np.floor(probabilities * 10), 9).astype(int)


def bins_of(counts):
    return [{"low": k / 10, "high": (k + 1) / 10, "count": int(n)} for k, n in enumerate(counts)]


def calibration(hits, probabilities):
    """Per probability bin: the labelled rows, their mean probability, the observed rate
    (of the positive class, or for a multiclass model of a right top class)."""
    bins = probability_bins(probabilities)
    result = []
    for k in range(10):
        inside = bins == k
        count = int(inside.sum())
        result.append(
            {
                "low": k / 10,
                "high": (k + 1) / 10,
                "count": count,
                "mean_proba": float(probabilities[inside].mean()) if count else None,
                "observed_rate": float(hits[inside].mean()) if count else None,
            }
        )
    return result


# ---------------------------------------------------------------------------------------
# Multiclass classifiers
# ---------------------------------------------------------------------------------------


class MulticlassReport:
    """A multiclass classifier's rows: the label and every class's probability, in the
    `prediction` JSON. The distribution needs every row's, read with the observations."""

    def __init__(self, task):
        self.task, self.codes = task, ClassCodes(task.classes)
        self.top_bins = np.zeros(10, dtype=np.int64)  # every row's top probability
        self.predicted = np.zeros(len(task.classes), dtype=np.int64)  # every row's label

    def read(self, text):
        """(index of the label, [probability of each class]) of a stored prediction, or None."""
        output = parsed(text)
        try:
            label = self.codes.of_value(output["label"])
            probabilities = [float(output["probabilities"][key]) for key in self.task.keys]
        except (TypeError, KeyError, ValueError):
            return None
        return None if label is None else (label, probabilities)

    def tally(self, texts):
        """Count a chunk of rows (any, labelled or not) by label and top probability."""
        read = [r for r in map(self.read, texts) if r is not None]
        if read:
            labels, matrix = zip(*read, strict=True)
            self.predicted += np.bincount(labels, minlength=len(self.task.classes))
            top = probability_bins(np.max(np.array(matrix, dtype=float), axis=1))
            self.top_bins += np.bincount(top, minlength=10)

    def stored_columns(self, table):
        return [table.prediction]

    def outcomes(self, rows):
        """({true, predicted, matrix}: class indices and probabilities, kept) of labelled
        rows (true value, prediction)."""
        true, predicted, matrix, kept = [], [], [], []
        for true_text, prediction_text in rows:
            true_index, read = self.codes(true_text), self.read(prediction_text)
            kept.append(true_index is not None and read is not None)
            if kept[-1]:
                true.append(true_index)
                predicted.append(read[0])
                matrix.append(read[1])
        true, predicted = np.array(true, dtype=np.int64), np.array(predicted, dtype=np.int64)
        matrix = np.array(matrix, dtype=float).reshape(len(true), len(self.task.classes))
        return {"true": true, "predicted": predicted, "matrix": matrix}, kept

    def summary(self, window, last_id, cells):
        """cells: the window's counts (rollups.py); c:<class> and t:<k>, every row's."""
        classes = len(self.task.classes)
        self.predicted = np.array([cells.get(f"c:{k}", 0) for k in range(classes)])
        self.top_bins = np.array([cells.get(f"t:{k}", 0) for k in range(10)])
        rows = window.in_transaction(lambda: window.labelled(last_id, window.table.prediction))
        found, _ = self.outcomes(rows)
        true, predicted, matrix = found["true"], found["predicted"], found["matrix"]
        return {
            "labelled": len(rows),
            "labelled_left_out": len(rows) - len(true),
            "metrics": self.metrics(true, predicted, matrix),
            "calibration": calibration(predicted == true, matrix.max(axis=1, initial=0)),
            "distribution": bins_of(self.top_bins),
        }

    def metrics(self, true, predicted, matrix):
        """accuracy, macro_f1, log_loss, the confusion matrix, and per class figures."""
        classes = self.task.classes
        everyone = list(range(len(classes)))
        reason = None if len(true) else no_labels_reason(self.task)
        if not len(true):
            result = dict.fromkeys(["accuracy", "macro_f1", "log_loss"])
            scores = np.full((3, len(classes)), np.nan)
            counts = np.zeros((len(classes),) * 2, dtype=np.int64)
        else:
            result = {
                "accuracy": float(accuracy_score(true, predicted)),
                "macro_f1": float(f1_score(true, predicted, average="macro")),
                "log_loss": float(log_loss(true, matrix, labels=everyone)),
            }
            # Per class: NaN (null) where a class is never predicted, or never true.
            scores = precision_recall_fscore_support(
                true, predicted, labels=everyone, zero_division=np.nan
            )[:3]
            counts = confusion_matrix(true, predicted, labels=everyone)
        return result | {
            "confusion_matrix": {"labels": classes, "matrix": counts.tolist()},
            "per_class": [
                {
                    "class": label,
                    "true": int(counts[k].sum()),  # rows: true classes
                    "predicted": int(counts[:, k].sum()),
                    "predicted_all": int(self.predicted[k]),
                    "precision": finite(scores[0][k]),
                    "recall": finite(scores[1][k]),
                    "f1": finite(scores[2][k]),
                }
                for k, label in enumerate(classes)
            ],
            "reason": reason,
        }


# ---------------------------------------------------------------------------------------
# Regressors
# ---------------------------------------------------------------------------------------

ERROR_QUANTILES = [0, 0.05, 0.25, 0.5, 0.75, 0.95, 1]


class RegressionReport:
    """A regressor's rows: its number(s) in the `prediction` JSON ({"value"} or one key per
    target), the truth in `true_value` (a number, or an object of them)."""

    def __init__(self, task):
        self.task = task
        self.names = task.targets if task.width > 1 else ["value"]

    def numbers(self, value, keys):
        """The row's numbers, in target order, or None when they are not all there."""
        if keys is None:  # a single truth is a bare number
            return [float(value)] if is_number(value) else None
        if not isinstance(value, dict):
            return None
        found = [value.get(key) for key in keys]
        return [float(v) for v in found] if all(is_number(v) for v in found) else None

    def stored_columns(self, table):
        return [table.prediction]

    def outcomes(self, rows):
        """({truth, prediction}: rows x targets, kept) of labelled rows (truth, prediction)."""
        truths, predictions, kept = [], [], []
        truth_keys = None if self.task.width == 1 else self.task.targets
        for true_text, prediction_text in rows:
            truth = self.numbers(parsed(true_text), truth_keys)
            prediction = self.numbers(parsed(prediction_text), self.names)
            kept.append(truth is not None and prediction is not None)
            if kept[-1]:
                truths.append(truth)
                predictions.append(prediction)
        shape = (len(truths), len(self.names))
        truth = np.array(truths, dtype=float).reshape(shape)
        prediction = np.array(predictions, dtype=float).reshape(shape)
        return {"truth": truth, "prediction": prediction}, kept

    def summary(self, window, last_id, _cells):
        rows = window.in_transaction(lambda: window.labelled(last_id, window.table.prediction))
        found, _ = self.outcomes(rows)
        truth, prediction = found["truth"], found["prediction"]
        return {
            "labelled": len(rows),
            "labelled_left_out": len(rows) - len(truth),
            "metrics": self.metrics(truth, prediction),
            "calibration": None,  # no probabilities
            "distribution": None,
        }

    def metrics(self, truth, prediction):
        per_target = {
            name: regression_metrics(truth[:, k], prediction[:, k])
            for k, name in enumerate(self.names)
        }
        return self.combined(per_target, len(truth))

    def combined(self, per_target, labelled):
        """/stats's metrics of the targets' ({name: regression_metrics}) over `labelled`
        rows, with the reason of a null (regression_cells.py makes them from sums too)."""
        undefined = [name for name, found in per_target.items() if found["r2"] is None]
        reason = None
        if not labelled:
            reason = no_labels_reason(self.task)
        elif undefined:
            reason = "r2 needs two labelled rows with different true values"
            if self.task.width > 1:
                reason += f" (so r2 is null for {', '.join(undefined)})"
        if self.task.width == 1:
            return per_target["value"] | {"reason": reason}
        return {"targets": per_target, "reason": reason}


def regression_metrics(truth, prediction):
    if not len(truth):
        return dict.fromkeys(["mae", "rmse", "r2", "errors"])
    r2 = None  # undefined on one row, or when every true value is the same
    if len(truth) >= 2 and np.ptp(truth) > 0:
        r2 = finite(r2_score(truth, prediction))
    return {
        "mae": float(mean_absolute_error(truth, prediction)),
        "rmse": float(root_mean_squared_error(truth, prediction)),
        "r2": r2,
        "errors": error_distribution(prediction - truth),
    }


def error_distribution(errors):
    """prediction - truth: its mean, quantiles, and 10 equal-width bins (numpy.histogram:
    from the smallest error to the largest, each [low, high) but the last [low, high])."""
    counts, edges = np.histogram(errors, bins=10)
    return {
        "mean": float(errors.mean()),
        "quantiles": [
            {"q": q, "value": float(v)}
            for q, v in zip(ERROR_QUANTILES, np.quantile(errors, ERROR_QUANTILES), strict=True)
        ],
        "bins": [
            {"low": float(low), "high": float(high), "count": int(n)}
            for low, high, n in zip(edges[:-1], edges[1:], counts, strict=True)
        ],
    }


REPORTS = {"binary": BinaryReport, "multiclass": MulticlassReport, "regression": RegressionReport}
