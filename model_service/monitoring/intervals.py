"""The 95 % intervals of /stats?by= (groups.py): each figure of a group comes with one.

* a rate (a proportion of counts: precision, recall, accuracy...): Wilson's score
  interval, in closed form (wilson, rate);
* any other figure (roc_auc, macro_f1, mae, mean_error): a percentile bootstrap, RESAMPLES
  draws of the group's labelled rows (in the order they were stored) with replacement,
  from numpy.random.default_rng(seed), the seed given by groups.py (bootstrap, and the
  weighted_* statistics that compute a figure on every draw at once);
* the difference of two figures (the spread between groups): MOVER, which for two Wilson
  intervals is Newcombe's interval (difference).

A figure is {"value", "low", "high"} in the answer (figure), or null.
"""

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

CONFIDENCE = 0.95
Z = float(norm.ppf(0.5 + CONFIDENCE / 2))
RESAMPLES = 200
RESAMPLED_CELLS = 50_000  # rows x draws held at once by the bootstrap: bounds its memory


def wilson(successes, trials):
    """Wilson's score interval of a proportion (closed form).

    At 0 successes it starts at 0, at `trials` it ends at 1: exactly, where rounding would
    leave 1e-17 or 0.9999999999999998.
    """
    p, n = successes / trials, trials
    centre = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
    half = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / (1 + Z * Z / n)
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high


@dataclass(frozen=True)
class Resampling:
    seed: int
    pause: object  # called between two batches of draws: lets a server's other requests run


def draws(count, resampling):
    """RESAMPLES draws of `count` rows with replacement, as weights (how many times each
    row was drawn), a few draws at a time."""
    rng = np.random.default_rng(resampling.seed)
    at_once = max(1, RESAMPLED_CELLS // count)
    for start in range(0, RESAMPLES, at_once):
        size = min(at_once, RESAMPLES - start)
        picks = rng.integers(0, count, (size, count)) + count * np.arange(size)[:, None]
        yield np.bincount(picks.ravel(), minlength=size * count).reshape(size, count)
        resampling.pause()


def bootstrap(count, resampling, statistics):
    """{name: (low, high)}: the percentile interval of each statistic(weights) over the
    same draws; draws where it is undefined (NaN: one class only) are left out, and None
    when every draw is."""
    found = {name: [] for name in statistics}
    for weights in draws(count, resampling):
        for name, statistic in statistics.items():
            found[name].append(statistic(weights))
    intervals = {}
    for name, parts in found.items():
        values = np.concatenate(parts)
        values = values[np.isfinite(values)]
        if not len(values):
            intervals[name] = None
            continue
        low, high = np.percentile(values, [50 * (1 - CONFIDENCE), 50 * (1 + CONFIDENCE)])
        intervals[name] = (float(low), float(high))
    return intervals


def weighted_auc(truth, score):
    """AUC of each draw (weights: draws x rows): the chance that a positive outranks a
    negative, ties counting half, which is what roc_auc_score computes."""
    order = np.argsort(score, kind="stable")
    sorted_score, positive = score[order], truth[order]
    starts = np.flatnonzero(np.r_[True, sorted_score[1:] != sorted_score[:-1]])

    def statistic(weights):
        weights = weights[:, order]
        positives = np.add.reduceat(weights * positive, starts, axis=1)
        negatives = np.add.reduceat(weights * ~positive, starts, axis=1)
        below = np.cumsum(negatives, axis=1) - negatives
        pairs = positives.sum(axis=1) * negatives.sum(axis=1)
        wins = (positives * (below + 0.5 * negatives)).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return wins / pairs

    return statistic


def weighted_macro_f1(true, predicted, classes):
    """Macro F1 of each draw, over the classes drawn (true or predicted), as f1_score."""
    true_hot, predicted_hot = np.eye(classes)[true], np.eye(classes)[predicted]
    right_hot = true_hot * (true == predicted)[:, None]

    def statistic(weights):
        trues, predicteds, rights = weights @ true_hot, weights @ predicted_hot, weights @ right_hot
        present = (trues + predicteds) > 0
        scores = np.divide(2 * rights, trues + predicteds, out=np.zeros_like(rights), where=present)
        return scores.sum(axis=1) / present.sum(axis=1)

    return statistic


def weighted_mean(values):
    return lambda weights: weights @ values / len(values)


def figure(value, interval):
    """A metric as JSON: its value and interval, or None (undefined, or no interval)."""
    if value is None or interval is None:
        return None
    low, high = interval
    return {"value": float(value), "low": low, "high": high}


def rate(value, successes, trials):
    """A proportion and its Wilson interval, or None when it has no rows to count."""
    return figure(value, wilson(successes, trials)) if trials else None


def difference(high, low):
    """high - low, and its interval by MOVER (Newcombe's for two Wilson intervals)."""
    value = high["value"] - low["value"]
    below = math.hypot(high["value"] - high["low"], low["high"] - low["value"])
    above = math.hypot(high["high"] - high["value"], low["value"] - low["low"])
    return {"value": value, "low": value - below, "high": value + above}
