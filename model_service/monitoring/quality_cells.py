"""The quality of a model as sums kept per hour: what /stats reads instead of the labelled
rows when a window holds more than READ_LABELLED_ROWS of them (a regressor's metrics:
regression_cells.py).

    cells = labelled_cells(report, rows)            # rollups.py, as rows are labelled
    metrics = binary_from_cells(task, sums, auc)    # stats.py, over a window

Each labelled row adds to (rollups.py keeps n, s and q of a cell, and lo and hi for AUC):

* binary: `L:m:<truth>:<decided>` (the confusion matrix, each row decided at its own
  stored threshold, about the model's positive class, as reports.BinaryReport.judge does),
  `L:cal:<bin>` (n, s: the probabilities, q: the positives), `L:loss` (s: log loss, q:
  squared error of the probability, as scikit-learn's log_loss and brier_score_loss),
  `L:thr:<threshold>`, and per day `A:<bin>:<truth>` with the lowest and highest score of
  AUC_BINS fine bins;
* multiclass: `L:m:<true>:<predicted>`, `L:cal:<bin>` of the top probability (s: the top
  probabilities, q: the right ones) and `L:loss`;
* regression: per target, exact sums of the true values, the errors and their squares,
  and `L:ra:0` (the first target's errors, for `daily`): regression_cells.py, which also
  reads them;
* every task: `L:out`, a labelled row this task cannot read (left out).

From these, the counts and every metric made of them are exactly scikit-learn's (sums of
floats to the last digits). ROC AUC from bins: pairs in different bins are ordered, pairs
in one bin whose scores are all equal are ties (exact); only the pairs of a bin holding
several scores are uncertain: at most half of them either way, the `roc_auc_error_bound`.
"""

import math
from collections import Counter

import numpy as np

from model_service.monitoring.intervals import Z, wilson
from model_service.monitoring.regression_cells import add_regression_sums
from model_service.monitoring.reports import (
    binary_metrics,
    bins_of,
    finite,
    probability_bins,
    undefined_binary,
)

AUC_BINS = 4096
READ_LABELLED_ROWS = 20_000  # up to this, /stats reads the labelled rows themselves
EXACT_LABELLED_ROWS = 100_000  # up to this, its ROC AUC is exact (rows of uncertain bins)
AUC_ERROR_LIMIT = 0.001  # a bound above this: AUC from the rows themselves
EPSILON = np.finfo(float).eps  # scikit-learn's log_loss clips probabilities so


def auc_bin(scores):
    return np.minimum(np.floor(scores * AUC_BINS), AUC_BINS - 1).astype(int)


class Sums(Counter):
    """{cell: [n, s, q, lo, hi]} that add up (lo and hi: the lowest and highest score)."""

    def add(self, cell, n=1, s=0.0, q=0.0, lo=None, hi=None):
        found = self.get(cell)
        if found is None:
            self[cell] = [n, s, q, lo, hi]
            return
        found[0] += n
        found[1] += s
        found[2] += q
        found[3] = lo if found[3] is None else found[3] if lo is None else min(found[3], lo)
        found[4] = hi if found[4] is None else found[4] if hi is None else max(found[4], hi)


def labelled_cells(report, rows):
    """(Sums of labelled rows, their outcomes as reports.py reads them, which were kept):
    rows are tuples of the true value and report.stored_columns; `A:` cells are per day."""
    sums = Sums()
    if not rows:
        return sums, None, []
    task = report.task
    if task.name == "binary":
        truth, score, decided, thresholds, kept = report.judge(rows)
        binary_sums(sums, truth, score, decided, thresholds)
        found = {"truth": truth, "score": score, "decided": decided}
    elif task.name == "multiclass":
        found, kept = report.outcomes(rows)
        multiclass_sums(sums, found["true"], found["predicted"], found["matrix"])
    else:
        found, kept = report.outcomes(rows)
        if len(found["truth"]):
            add_regression_sums(sums, found["truth"], found["prediction"])
    left_out = len(rows) - sum(kept)
    if left_out:
        sums.add("L:out", left_out)
    return sums, found, kept


def binary_sums(sums, truth, score, decided, thresholds):
    add_confusion(sums, "L:", truth, decided)
    positive = truth.astype(float)
    for k, n in zip(*np.unique(probability_bins(score), return_counts=True), strict=True):
        inside = probability_bins(score) == k
        sums.add(f"L:cal:{k}", int(n), float(score[inside].sum()), float(positive[inside].sum()))
    of_truth = np.clip(np.where(truth, score, 1 - score), EPSILON, 1 - EPSILON)
    sums.add(
        "L:loss", len(truth), float(-np.log(of_truth).sum()), float(((score - positive) ** 2).sum())
    )
    for t, n in zip(*np.unique(thresholds, return_counts=True), strict=True):
        sums.add(f"L:thr:{float(t)!r}", int(n))
    add_auc_bins(sums, "A:", truth, score)


def add_confusion(sums, prefix, truth, decided):
    """prefix + m:<truth>:<decided>: a binary classifier's confusion matrix."""
    for t in (0, 1):
        for d in (0, 1):
            n = int(((truth == t) & (decided == d)).sum())
            if n:
                sums.add(f"{prefix}m:{t}:{d}", n)


def add_auc_bins(sums, prefix, truth, score):
    """prefix + <bin>:<truth>: the rows of each fine score bin, its lowest and highest score."""
    keys = auc_bin(score) * 2 + truth.astype(int)  # <bin>:<truth>, as one number
    order = np.lexsort((score, keys))  # by key, then score: each key's rows side by side
    keys, score = keys[order], score[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else []
    ends = np.r_[starts[1:], len(keys)] if len(keys) else []
    for start, end in zip(np.asarray(starts).tolist(), np.asarray(ends).tolist(), strict=True):
        key = int(keys[start])
        low, high = float(score[start]), float(score[end - 1])
        sums.add(f"{prefix}{key // 2}:{key % 2}", end - start, lo=low, hi=high)


def multiclass_sums(sums, true, predicted, matrix):
    for (t, p), n in Counter(zip(true.tolist(), predicted.tolist(), strict=True)).items():
        sums.add(f"L:m:{t}:{p}", n)
    top = matrix.max(axis=1, initial=0)
    right = (true == predicted).astype(float)
    bins = probability_bins(top)
    for k in np.unique(bins):
        inside = bins == k
        sums.add(
            f"L:cal:{k}", int(inside.sum()), float(top[inside].sum()), float(right[inside].sum())
        )
    of_truth = np.clip(matrix[np.arange(len(true)), true], EPSILON, 1 - EPSILON)
    sums.add("L:loss", len(true), float(-np.log(of_truth).sum()))


# ---------------------------------------------------------------------------------------
# Reading: the metrics of a window from its sums
# ---------------------------------------------------------------------------------------


def cell(sums, name):
    return sums.get(name) or [0, 0.0, 0.0, None, None]


def calibration_of(sums):
    result = []
    for k in range(10):
        n, s, q, _, _ = cell(sums, f"L:cal:{k}")
        result.append(
            {
                "low": k / 10,
                "high": (k + 1) / 10,
                "count": n,
                "mean_proba": s / n if n else None,
                "observed_rate": q / n if n else None,
            }
        )
    return result


def auc_bins(sums):
    """{bin: [negatives, positives, lowest score, highest score]} of the A:<bin>:<truth>."""
    bins = {}
    for name, (n, _, _, lo, hi) in sums.items():
        if name.startswith("A:") and n:
            _, b, t = name.split(":")
            entry = bins.setdefault(int(b), [0, 0, math.inf, -math.inf])
            entry[int(t)] += n
            entry[2], entry[3] = min(entry[2], lo), max(entry[3], hi)
    return bins


def uncertain_bins(sums):
    """{bin: (lowest, highest score)} of the bins whose pairs' order the cells do not know:
    both classes, and more than one score."""
    return {
        b: (lo, hi)
        for b, (negative, positive, lo, hi) in auc_bins(sums).items()
        if negative and positive and lo < hi
    }


def auc_of(sums, wins_within=None):
    """(roc_auc, the bound of its error) from the A:<bin>:<truth> cells, or (None, None).

    wins_within: {bin: the positive-negative pairs of that bin a positive wins (ties
    half)}, counted from its rows: those bins are then exact too (stats.py reads them)."""
    bins, wins_within = auc_bins(sums), wins_within or {}
    negatives = sum(entry[0] for entry in bins.values())
    positives = sum(entry[1] for entry in bins.values())
    if not negatives or not positives:
        return None, None
    below, wins, uncertain = 0, 0.0, 0.0
    for b in sorted(bins):
        negative, positive, lo, hi = bins[b]
        if b in wins_within:
            wins += positive * below + wins_within[b]
        else:
            wins += positive * (below + 0.5 * negative)
            if lo < hi:
                uncertain += 0.5 * positive * negative
        below += negative
    pairs = positives * negatives
    return wins / pairs, uncertain / pairs


def wins_within(truth, score, bins):
    """{bin: pairs won by the positive (ties half)} of rows of the uncertain `bins`
    ({bin: (lo, hi)}): scikit-learn's AUC counts pairs so, in every bin alike."""
    found = {}
    of_bin = auc_bin(score)
    for b in bins:
        inside = of_bin == b
        positive, negative = score[inside & truth], np.sort(score[inside & ~truth])
        below = np.searchsorted(negative, positive, side="left")
        equal = np.searchsorted(negative, positive, side="right") - below
        found[b] = float(below.sum() + 0.5 * equal.sum())
    return found


def summary_from_cells(report, sums, auc_sums, cells):
    """The keys of /stats about quality (reports.py's summary) from a window's sums:
    sums {cell: [n, s, q, lo, hi]}, auc_sums its A: cells, cells its counts."""
    task = report.task
    labelled = sum(value[0] for name, value in sums.items() if name.startswith("L:m:"))
    left_out = cell(sums, "L:out")[0]
    if task.name == "binary":
        metrics = binary_metrics_of(task, sums, auc_sums)
        distribution = [cells.get(f"p:{k}", 0) for k in range(10)]
    else:
        report.predicted = np.array([cells.get(f"c:{k}", 0) for k in range(len(task.classes))])
        report.top_bins = np.array([cells.get(f"t:{k}", 0) for k in range(10)])
        metrics = multiclass_metrics_of(report, sums)
        distribution = report.top_bins
    return {
        "labelled": labelled + left_out,
        "labelled_left_out": left_out,
        "metrics": metrics,
        "calibration": calibration_of(sums),
        "distribution": bins_of(distribution),
    }


def binary_metrics_of(task, sums, auc_sums):
    """reports.binary_metrics, from the confusion matrix and the sums of the window."""
    tn, fp, fn, tp = (cell(sums, f"L:m:{t}:{d}")[0] for t in (0, 1) for d in (0, 1))
    n = tn + fp + fn + tp
    names = [task.negative_class, task.positive_class]
    if n == 0:
        return binary_metrics(np.zeros(0, bool), np.zeros(0), np.zeros(0, bool), [], task)
    _, losses, squares, _, _ = cell(sums, "L:loss")
    roc_auc, bound = auc_of(auc_sums)
    result = {
        "roc_auc": roc_auc,
        "accuracy": (tp + tn) / n,
        "log_loss": losses / n,
        "brier": squares / n,
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None,
        "positive_rate": (tp + fp) / n,
    }
    only = names[1] if tn + fp == 0 else names[0]
    thresholds = sorted(
        (float(name.split(":", 2)[2]), value[0])
        for name, value in sums.items()
        if name.startswith("L:thr:") and value[0]
    )
    return result | {
        "confusion_matrix": {"labels": names, "matrix": [[tn, fp], [fn, tp]]},
        "thresholds": [{"threshold": t, "labelled": count} for t, count in thresholds],
        "reason": "; ".join(undefined_binary(result, names, only)) or None,
        "roc_auc_error_bound": bound,
    }


def multiclass_metrics_of(report, sums):
    """MulticlassReport.metrics, from the window's confusion matrix and log loss."""
    classes = len(report.task.classes)
    counts = np.zeros((classes, classes), dtype=np.int64)
    for name, value in sums.items():
        if name.startswith("L:m:"):
            _, _, t, p = name.split(":")
            counts[int(t), int(p)] += value[0]
    n = int(counts.sum())
    if n == 0:
        return report.metrics(np.zeros(0, int), np.zeros(0, int), np.zeros((0, classes)))
    right, true, predicted = np.diag(counts), counts.sum(axis=1), counts.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision, recall = right / predicted, right / true
        f1 = 2 * right / (true + predicted)
    present = (true + predicted) > 0
    result = {
        "accuracy": float(right.sum() / n),
        "macro_f1": float(np.where(present, f1, 0).sum() / present.sum()),
        "log_loss": cell(sums, "L:loss")[1] / n,
    }
    return result | {
        "confusion_matrix": {"labels": report.task.classes, "matrix": counts.tolist()},
        "per_class": [
            {
                "class": label,
                "true": int(true[k]),
                "predicted": int(predicted[k]),
                "predicted_all": int(report.predicted[k]),
                "precision": finite(precision[k]),
                "recall": finite(recall[k]),
                "f1": finite(f1[k]),
            }
            for k, label in enumerate(report.task.classes)
        ],
        "reason": None,
    }


def daily_of(task, by_day):
    """/stats's `daily`: per day of the window (by_day: {day: {cell: [n, s, q, ...]}}), the
    rows, the labelled rows the task read, and its main metric with its 95 % interval:
    a classifier's accuracy (Wilson's), a regressor's MAE of its first target (normal)."""
    found = []
    for day in sorted(by_day):
        sums = by_day[day]
        predictions = cell(sums, "rows")[0]
        if task.name == "regression":
            n, absolute, squares, _, _ = cell(sums, "L:ra:0")
            metric = mean_interval("mae", absolute, squares, n)
        else:
            n = right = 0
            for name, value in sums.items():
                if name.startswith("L:m:"):
                    _, _, t, p = name.split(":")
                    n += value[0]
                    right += value[0] if t == p else 0
            metric = None
            if n:
                low, high = wilson(right, n)
                metric = {"name": "accuracy", "value": right / n, "low": low, "high": high}
        if predictions or n:
            found.append(
                {
                    "day": day.isoformat(),
                    "predictions": predictions,
                    "labelled": n,
                    "metric": metric,
                }
            )
    return found


def mean_interval(name, total, squares, n):
    """A mean and its normal 95 % interval from its sum and sum of squares, or None."""
    if not n:
        return None
    mean = total / n
    variance = max(0.0, squares / n - mean * mean) * n / (n - 1) if n > 1 else 0.0
    half = Z * math.sqrt(variance / n)
    return {"name": name, "value": mean, "low": mean - half, "high": mean + half}
