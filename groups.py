"""Quality per group, and the rules of a brief: `GET /stats?by=<column>[,<column>...]`.

A brief judges a model per group ("per station and search objective"), not overall.
monitoring.py builds one `Groups` at start-up, which checks api.toml's `[stats]` table
(GroupsError names the key), and calls `Groups.report` for every `/stats?by=`: it sorts the
stored rows into groups, computes the task's metrics on each group's labelled rows, the
spread of each metric between the groups, and whether each rule holds.

* A group is a value, or a combination of values, of the named columns in the stored
  observations: a category (booleans as true/false); for a numeric column, a bin of the
  training profile, as drift.py cuts it. A row whose observation lacks the column (or holds
  null) is in "(missing)"; a value of a numeric column that is not a number in "(other)".
* Metrics, on the group's labelled rows, by sklearn.metrics: binary positive_rate,
  precision (each row decided at the threshold stored with it: the "success rate" of the
  positive decisions), recall, false_positive_rate, roc_auc; multiclass accuracy, macro_f1;
  regression mae and mean_error (prediction - truth), per target for several.
* Each metric comes with a 95 % interval: Wilson's score interval for the rates (a
  proportion of counts), a percentile bootstrap for the others: RESAMPLES draws of the
  group's labelled rows (in the order they were stored) with replacement, from
  numpy.random.default_rng(seed), where seed is the CRC-32 of the group's (column, value)
  pairs sorted by column, as JSON (zlib.crc32(b'[["station", "kent"]]')): the same rows
  give the same interval at every call, whatever the order the columns are named in.
* A group with fewer labelled rows than `min_labelled` gets its counts, null metrics and
  the reason, and is left out of the spreads and the rules (a rule it could fail is then
  "undecided").
* The spread of a metric: the highest group minus the lowest, with an interval (MOVER:
  Newcombe's for two Wilson intervals), and the smallest ratio, lowest / highest.

    [stats]
    min_labelled = 30                 # GROUP_MIN_LABELLED wins over it
    extra_columns = ["ethnicity"]     # body fields the model does not read, to group by
    [[stats.rules]]
    name = "precision in every station"
    metric = "precision"
    by = ["station"]                  # a column or a list of them
    at_least = 0.10                   # or at_most; or, between groups:
    # within = ["station"]            #   compare the groups of `by` inside each of these
    # spread_at_most = 0.05           #   largest difference
    # ratio_at_least = 0.8            #   smallest ratio
"""

import json
import math
import zlib
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import norm
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    mean_absolute_error,
    precision_score,
    recall_score,
    roc_auc_score,
)

import drift

MAX_COLUMNS = 3  # columns of one grouping (`by`, or a rule's within + by)
MAX_GROUPS = 1000  # groups of one grouping: past that, a table nobody can read
DEFAULT_MIN_LABELLED = 30
CONFIDENCE = 0.95
Z = float(norm.ppf(0.5 + CONFIDENCE / 2))
RESAMPLES = 200
RESAMPLED_CELLS = 50_000  # rows x draws held at once by the bootstrap: bounds its memory
MISSING, OTHER = drift.MISSING, drift.OTHER
BOUNDS = ("at_least", "at_most", "spread_at_most", "ratio_at_least")
RULE_KEYS = {"name", "metric", "by", "within", *BOUNDS}
STATS_KEYS = {"min_labelled", "extra_columns", "rules"}


class GroupsError(Exception):
    """A setting or a request that groups cannot serve: one sentence that names it."""


def metric_names(task):
    if task.name == "binary":
        return ["positive_rate", "precision", "recall", "false_positive_rate", "roc_auc"]
    if task.name == "multiclass":
        return ["accuracy", "macro_f1"]
    if task.width == 1:
        return ["mae", "mean_error"]
    return [f"{name}.{target}" for target in task.targets for name in ("mae", "mean_error")]


def is_signed(metric):
    """mean_error may be below 0: a ratio of two of them means nothing."""
    return metric.startswith("mean_error")


# ---------------------------------------------------------------------------------------
# Settings: [stats] of api.toml, checked once at start-up
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    name: str
    metric: str
    by: tuple
    within: tuple
    bound: str  # one of BOUNDS
    limit: float

    @property
    def columns(self):
        return self.within + self.by

    def describe(self):
        return {
            "name": self.name,
            "metric": self.metric,
            "by": list(self.by),
            "within": list(self.within),
            self.bound: self.limit,
        }


def setting_error(key, problem):
    return GroupsError(f"api.toml [stats] {key} {problem}.")


def read_min_labelled(table, environment_value):
    """GROUP_MIN_LABELLED, else [stats] min_labelled, else DEFAULT_MIN_LABELLED.

    The variable wins, as THRESHOLD wins over [model]: a Railway variable changes it
    without a commit. Both are checked, so that a wrong file is said at once.
    """
    value = table.get("min_labelled", DEFAULT_MIN_LABELLED)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise setting_error("min_labelled", f"must be a whole number of at least 1, not {value!r}")
    if not environment_value:
        return value
    try:
        value = int(environment_value)
    except ValueError:
        value = 0
    if value < 1:
        raise GroupsError(
            f"The environment variable GROUP_MIN_LABELLED={environment_value!r} must be a "
            "whole number of at least 1."
        )
    return value


def names_list(value, key, allow_empty=False):
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise setting_error(key, "must be a column name or a list of them")
    if not names and not allow_empty:
        raise setting_error(key, "must name at least one column")
    return tuple(names)


# ---------------------------------------------------------------------------------------
# The groups of one column: each row's code, and the name of each code
# ---------------------------------------------------------------------------------------


def category_label(value):
    if drift.is_missing(value):
        return MISSING
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return drift.category_key(value)
    return json.dumps(value, sort_keys=True)  # an object or a list, in a field nobody checks


class Categories:
    """A column of categories: one group per value, numbered in the order they come."""

    def __init__(self):
        self.codes, self.labels = {}, []

    def encode(self, values):
        codes, found = self.codes, []
        for value in values:
            label = value if type(value) is str else category_label(value)  # the usual case
            code = codes.get(label)
            if code is None:
                code = codes[label] = len(self.labels)
                self.labels.append(label)
            found.append(code)
        return np.array(found, dtype=np.int64)

    def ranks(self):
        """Each code's place in the answer: by name, then (other) and (missing)."""
        labels = self.labels
        order = sorted(
            range(len(labels)),
            key=lambda c: (labels[c] in (OTHER, MISSING), labels[c] == MISSING, labels[c]),
        )
        ranks = np.empty(len(order), dtype=np.int64)
        ranks[order] = np.arange(len(order))
        return ranks


class Bins:
    """A numeric column: the bins of its training profile (drift.py: low < value <= high),
    then (missing) and (other), a value that is not a number."""

    def __init__(self, column):
        self.edges = np.array(column["edges"], dtype=float)
        numeric = {"kind": "numeric", "edges": column["edges"], "missing_bin": False}
        self.labels = [*drift.bin_labels(numeric), MISSING, OTHER]

    def encode(self, values):
        if {type(v) for v in values} <= {int, float, type(None)}:  # the usual case, in C
            numbers = np.array(values, dtype=float).reshape(-1)  # None becomes NaN
            other = np.isinf(numbers)
        else:
            numbers = np.array([number_or_nan(v) for v in values], dtype=float).reshape(-1)
            other = [not (drift.is_missing(v) or is_finite_number(v)) for v in values]
            other = np.array(other, dtype=bool).reshape(-1)
        codes = np.searchsorted(self.edges, numbers)  # as drift.count_bins
        codes[np.isnan(numbers)] = len(self.labels) - 2
        codes[other] = len(self.labels) - 1
        return codes

    def ranks(self):
        return np.arange(len(self.labels))


def is_finite_number(value):
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def number_or_nan(value):
    return float(value) if is_finite_number(value) else math.nan


# ---------------------------------------------------------------------------------------
# Intervals
# ---------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------
# Each task's metrics on one group's labelled rows
# ---------------------------------------------------------------------------------------


def binary_figures(outcomes, rows, resampling, task):
    truth, score = outcomes["truth"][rows], outcomes["score"][rows]
    decided = outcomes["decided"][rows]
    matrix = confusion_matrix(truth, decided, labels=[False, True])
    tn, fp, fn, tp = (int(n) for n in matrix.ravel())
    both = 0 < truth.sum() < len(truth)
    auc = None
    if both:
        statistic = {"auc": weighted_auc(truth, score)}
        interval = bootstrap(len(truth), resampling, statistic)["auc"]
        auc = figure(roc_auc_score(truth, score), interval)
    figures = {
        "positive_rate": rate(decided.mean(), tp + fp, len(truth)),
        "precision": rate(precision_score(truth, decided, zero_division=0.0), tp, tp + fp),
        "recall": rate(recall_score(truth, decided, zero_division=0.0), tp, tp + fn),
        "false_positive_rate": rate(fp / (fp + tn) if fp + tn else 0, fp, fp + tn),
        "roc_auc": auc,
    }
    positive, negative = json.dumps(task.positive_class), json.dumps(task.negative_class)
    reasons = {
        "precision": f"precision needs a labelled row decided {positive}; none is",
        "recall": f"recall needs a labelled row of class {positive}; none is",
        "false_positive_rate": f"false_positive_rate needs a labelled row of class {negative}",
        "roc_auc": "roc_auc needs labelled rows of both classes",  # in its resamples too
    }
    return figures, [reasons[name] for name, found in figures.items() if found is None]


def multiclass_figures(outcomes, rows, resampling, task):
    true, predicted = outcomes["true"][rows], outcomes["predicted"][rows]
    statistic = weighted_macro_f1(true, predicted, len(task.classes))
    interval = bootstrap(len(true), resampling, {"macro_f1": statistic})["macro_f1"]
    figures = {
        "accuracy": rate(
            accuracy_score(true, predicted), int((true == predicted).sum()), len(true)
        ),
        # zero_division only silences the warning: F1 = 2 TP / (true + predicted) is defined.
        "macro_f1": figure(f1_score(true, predicted, average="macro", zero_division=0.0), interval),
    }
    return figures, []


def regression_figures(outcomes, rows, resampling, task):
    truth, prediction = outcomes["truth"][rows], outcomes["prediction"][rows]
    errors = prediction - truth
    names = [""] if task.width == 1 else [f".{target}" for target in task.targets]
    statistics = {}
    for k, suffix in enumerate(names):
        statistics["mae" + suffix] = weighted_mean(np.abs(errors[:, k]))
        statistics["mean_error" + suffix] = weighted_mean(errors[:, k])
    intervals = bootstrap(len(truth), resampling, statistics)
    figures = {}
    for k, suffix in enumerate(names):
        mae = mean_absolute_error(truth[:, k], prediction[:, k])
        figures["mae" + suffix] = figure(mae, intervals["mae" + suffix])
        bias = errors[:, k].mean()
        figures["mean_error" + suffix] = figure(bias, intervals["mean_error" + suffix])
    return figures, []


FIGURES = {
    "binary": binary_figures,
    "multiclass": multiclass_figures,
    "regression": regression_figures,
}


# ---------------------------------------------------------------------------------------
# The stored rows, sorted into groups
# ---------------------------------------------------------------------------------------


@dataclass
class Group:
    labels: dict  # column -> the group's value (its text, or the bin's name)
    predictions: int
    labelled: int  # labelled rows this task can read
    figures: dict | None = None  # metric -> {value, low, high} or None; None: too small
    reason: str | None = None

    def describe(self, metrics):
        figures = self.figures or {}
        return {
            "group": self.labels,
            "predictions": self.predictions,
            "labelled": self.labelled,
            "metrics": {name: figures.get(name) for name in metrics},
            "reason": self.reason,
        }

    def value(self, metric):
        found = (self.figures or {}).get(metric)
        return None if found is None else found["value"]


@dataclass
class Rows:
    """Every row's code in each column read, and the labelled rows' outcomes."""

    count: int  # rows read
    encoders: dict  # column -> Categories or Bins
    codes: dict  # column -> code of every row
    labelled_at: np.ndarray  # the positions of the labelled rows this task can read
    outcomes: dict  # their arrays (tasks' readers in monitoring.py)
    labelled: int  # every labelled row, readable or not
    pause: object  # lets a server's other requests run (monitoring.let_others_run)
    groupings: dict = field(default_factory=dict)  # columns -> [Group], computed once
    judged: dict = field(default_factory=dict)  # a group's name -> (figures, reason)


# ---------------------------------------------------------------------------------------
# The entry point
# ---------------------------------------------------------------------------------------


class Groups:
    """The groups and rules of one model, checked at start-up; `report` answers /stats?by=."""

    def __init__(self, table, min_labelled, model, profile, profile_note):
        unknown = sorted(set(table) - STATS_KEYS)
        if unknown:
            raise setting_error(
                repr(unknown[0]), f"is not a key; the keys are {', '.join(sorted(STATS_KEYS))}"
            )
        self.task = model.task
        self.metrics = metric_names(model.task)
        self.min_labelled = read_min_labelled(table, min_labelled)
        self.profile, self.profile_note = profile, profile_note
        extra = names_list(table.get("extra_columns", []), "extra_columns", allow_empty=True)
        doubled = [name for name in extra if name in model.columns]
        if doubled:
            raise setting_error("extra_columns", f"names {doubled[0]!r}, a column of the model")
        self.columns = [*model.columns, *dict.fromkeys(extra)]
        self.numeric = {c for c in model.columns if model.kinds[c] in ("integer", "float")}
        rules = table.get("rules", [])
        if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
            raise setting_error("rules", "must be tables, each written [[stats.rules]]")
        self.rules = [self.read_rule(rule, number) for number, rule in enumerate(rules, 1)]

    # --- checking ----------------------------------------------------------------------

    def check_columns(self, names, what):
        """GroupsError naming the first column that cannot group rows, or too many."""
        if len(names) > MAX_COLUMNS:
            raise GroupsError(f"{what} names {len(names)} columns; at most {MAX_COLUMNS}.")
        for name in names:
            if names.count(name) > 1:
                raise GroupsError(f"{what} names the column {name!r} twice.")
            if name not in self.columns:
                raise GroupsError(
                    f"{what}: {name!r} is not a column of this model's observations; the "
                    f"columns are {', '.join(self.columns)}."
                )
            if name in self.numeric and self.profile is None:
                raise GroupsError(
                    f"{what}: {name!r} is numeric, and its groups are the bins of the training "
                    f"profile, which is not available: {self.profile_note}."
                )

    def read_rule(self, rule, number):
        where = f"api.toml [[stats.rules]] number {number}"
        unknown = sorted(set(rule) - RULE_KEYS)
        if unknown:
            raise GroupsError(
                f"{where} has an unknown key {unknown[0]!r}; its keys are "
                f"{', '.join(sorted(RULE_KEYS))}."
            )
        name = rule.get("name", f"rule {number}")
        if not isinstance(name, str) or not name:
            raise GroupsError(f"{where}: name must be a text.")
        where = f"api.toml rule {name!r}"
        metric = rule.get("metric")
        if metric not in self.metrics:
            raise GroupsError(
                f"{where}: metric {metric!r} is not one this {self.task.name} model reports; "
                f"use one of {', '.join(self.metrics)}."
            )
        bounds = [key for key in BOUNDS if key in rule]
        if len(bounds) != 1:
            raise GroupsError(f"{where} must have exactly one of {', '.join(BOUNDS)}.")
        bound, limit = bounds[0], rule[bounds[0]]
        self.check_limit(where, bound, limit, metric)
        by = self.rule_columns(rule.get("by"), f"{where}: by")
        within = self.rule_columns(rule.get("within", []), f"{where}: within", allow_empty=True)
        if within and bound in ("at_least", "at_most"):
            raise GroupsError(
                f"{where}: within compares groups (spread_at_most, ratio_at_least); with "
                f"{bound}, name every column in by."
            )
        self.check_columns([*within, *by], f"{where}: within and by")
        return Rule(name, metric, by, within, bound, float(limit))

    def rule_columns(self, value, what, allow_empty=False):
        try:
            return names_list(value, "", allow_empty=allow_empty)
        except GroupsError:
            raise GroupsError(f"{what} must be a column name or a list of them.") from None

    @staticmethod
    def check_limit(where, bound, limit, metric):
        if isinstance(limit, bool) or not isinstance(limit, int | float) or math.isnan(limit):
            raise GroupsError(f"{where}: {bound} must be a number, not {limit!r}.")
        if bound == "ratio_at_least" and is_signed(metric):
            raise GroupsError(f"{where}: {metric} may be negative, so it has no ratio.")
        if bound in ("spread_at_most", "ratio_at_least") and limit < 0:
            raise GroupsError(f"{where}: {bound} must be at least 0.")

    def parse_by(self, text):
        """The columns of ?by=: names separated by commas; empty: no grouping."""
        names = [name.strip() for name in text.split(",")] if text.strip() else []
        if any(not name for name in names):
            raise GroupsError("by has an empty column name: separate names with one comma.")
        self.check_columns(names, "by")
        return tuple(names)

    # --- reading -----------------------------------------------------------------------

    def encoder(self, column):
        if column in self.numeric:
            return Bins(self.profile["columns"][column])
        return Categories()

    def read(self, columns, chunks, outcomes, pause):
        """Rows: the codes of every stored row, and the outcomes of its labelled ones.

        chunks: lists of (observation: a dict or None, true value, *stored prediction
        columns); outcomes(labelled rows) -> ({name: array}, kept mask), by the task
        (monitoring.py reads both). Each chunk's labelled rows become arrays at once: the
        memory holds numbers, not the rows' tuples.
        """
        encoders = {column: self.encoder(column) for column in columns}
        codes = {column: [] for column in columns}
        labelled_at, parts, labelled, seen = [], [], 0, 0
        for rows in chunks:
            observations = [row[0] or {} for row in rows]
            for column, encoder in encoders.items():
                codes[column].append(encoder.encode([o.get(column) for o in observations]))
            at = [position for position, row in enumerate(rows, seen) if row[1] is not None]
            arrays, kept = outcomes([row[1:] for row in rows if row[1] is not None])
            labelled_at.append(np.array(at, dtype=np.int64)[np.asarray(kept, dtype=bool)])
            parts.append(arrays)
            labelled, seen = labelled + len(at), seen + len(rows)
        if not parts:  # no rows: the task's empty arrays
            parts.append(outcomes([])[0])
        return Rows(
            count=seen,
            encoders=encoders,
            codes={c: np.concatenate(p or [np.zeros(0, np.int64)]) for c, p in codes.items()},
            labelled_at=np.concatenate(labelled_at or [np.zeros(0, np.int64)]),
            outcomes={key: np.concatenate([part[key] for part in parts]) for key in parts[0]},
            labelled=labelled,
            pause=pause,
        )

    # --- grouping ----------------------------------------------------------------------

    def groups_of(self, rows, columns):
        """[Group] of every combination of the columns' values in the rows, in order."""
        if columns not in rows.groupings:
            rows.groupings[columns] = self.make_groups(rows, columns)
        return rows.groupings[columns]

    def make_groups(self, rows, columns):
        encoders = [rows.encoders[c] for c in columns]
        sizes = [max(1, len(e.labels)) for e in encoders]
        every = combined([rows.codes[c] for c in columns], sizes, rows.count)
        keys, counts = np.unique(every, return_counts=True)
        if len(keys) > MAX_GROUPS:
            raise GroupsError(
                f"{', '.join(columns)} make {len(keys)} groups, more than {MAX_GROUPS}: group "
                "by fewer columns, or coarser ones."
            )
        labelled = positions_by_key(every[rows.labelled_at])
        ranks = [e.ranks() for e in encoders]
        groups = []
        for key, count in zip(keys.tolist(), counts.tolist(), strict=True):
            codes = np.unravel_index(key, sizes) if columns else ()
            labels = {c: e.labels[int(k)] for c, e, k in zip(columns, encoders, codes, strict=True)}
            order = tuple(int(r[int(k)]) for r, k in zip(ranks, codes, strict=True))
            group = self.judge(rows, labels, int(count), labelled.get(key, np.zeros(0, np.int64)))
            groups.append((order, group))
        return [group for _, group in sorted(groups, key=lambda pair: pair[0])]

    def judge(self, rows, labels, count, at):
        """The Group of these labels: its counts, and its metrics when it is large enough."""
        group = Group(labels, count, len(at))
        if len(at) < self.min_labelled:
            rows = "1 labelled row" if len(at) == 1 else f"{len(at)} labelled rows"
            group.reason = f"{rows}: a group needs {self.min_labelled} to be judged"
            return group
        # The same group named in another column order (by, and a rule's within + by) is
        # judged once, with the same seed.
        name = json.dumps(sorted(labels.items()))
        if name not in rows.judged:
            resampling = Resampling(zlib.crc32(name.encode()), rows.pause)
            figures, reasons = FIGURES[self.task.name](rows.outcomes, at, resampling, self.task)
            rows.judged[name] = figures, "; ".join(reasons) or None
        group.figures, group.reason = rows.judged[name]
        rows.pause()
        return group

    # --- answering ---------------------------------------------------------------------

    def report(self, by_text, chunks, outcomes, pause=lambda: None):
        """What /stats?by= adds to the model and window: the groups, spreads and rules.

        pause() is called between two pieces of work (a group, a batch of draws): in a
        gevent worker it lets the requests that wait run, as between two chunks of rows.
        """
        by = self.parse_by(by_text)
        columns = tuple(dict.fromkeys([*by, *(c for r in self.rules for c in r.columns)]))
        rows = self.read(columns, chunks, outcomes, pause)
        groups = self.groups_of(rows, by)
        return {
            "by": list(by),
            "labelled": rows.labelled,
            "labelled_left_out": rows.labelled - len(rows.labelled_at),
            "min_labelled": self.min_labelled,
            "confidence": CONFIDENCE,
            "metrics": self.metrics,
            "columns": [c for c in self.columns if c not in self.numeric or self.profile],
            "groups": [group.describe(self.metrics) for group in groups],
            "spreads": {metric: spread(groups, metric) for metric in self.metrics},
            "rules": [self.check_rule(rule, rows) for rule in self.rules],
        }

    def check_rule(self, rule, rows):
        try:
            groups = self.groups_of(rows, rule.columns)
        except GroupsError as error:  # too many groups: nothing can be said
            return rule.describe() | verdict(0, [], [], str(error))
        judged = [g for g in groups if g.value(rule.metric) is not None]
        undecided = [
            {"group": g.labels, "labelled": g.labelled, "reason": g.reason or "no value"}
            for g in groups
            if g.value(rule.metric) is None
        ]
        if rule.bound in ("at_least", "at_most"):
            failing = [entry for g in judged if (entry := bound_failure(rule, g))]
            return rule.describe() | verdict(len(judged), failing, undecided)
        failing = []
        for within, members in strata(judged, rule.within).items():
            entry = spread_failure(rule, members, within)
            if entry:
                failing.append(entry)
        return rule.describe() | verdict(len(judged), failing, undecided)


def combined(codes, sizes, count):
    """One integer per row for its combination of codes (0 for every row, without columns)."""
    if not codes:
        return np.zeros(count, dtype=np.int64)
    return np.ravel_multi_index(codes, sizes)


def positions_by_key(keys):
    """{key: positions (in the labelled rows) of the rows with that key}."""
    if not len(keys):
        return {}
    order = np.argsort(keys, kind="stable")
    found, starts = np.unique(keys[order], return_index=True)
    return dict(zip(found.tolist(), np.split(order, starts[1:]), strict=True))


# ---------------------------------------------------------------------------------------
# Spreads and rules
# ---------------------------------------------------------------------------------------


def spread(groups, metric):
    """The gap between the highest and the lowest group with a value of the metric."""
    judged = [g for g in groups if g.value(metric) is not None]
    if len(judged) < 2:
        return {
            "groups": len(judged),
            "lowest": None,
            "highest": None,
            "difference": None,
            "ratio": None,
        }
    lowest = min(judged, key=lambda g: g.value(metric))
    highest = max(judged, key=lambda g: g.value(metric))
    return {
        "groups": len(judged),
        "lowest": {"group": lowest.labels, "value": lowest.value(metric)},
        "highest": {"group": highest.labels, "value": highest.value(metric)},
        "difference": difference(highest.figures[metric], lowest.figures[metric]),
        "ratio": ratio(lowest.value(metric), highest.value(metric), metric),
    }


def difference(high, low):
    """high - low, and its interval by MOVER (Newcombe's for two Wilson intervals)."""
    value = high["value"] - low["value"]
    below = math.hypot(high["value"] - high["low"], low["high"] - low["value"])
    above = math.hypot(high["high"] - high["value"], low["value"] - low["low"])
    return {"value": value, "low": value - below, "high": value + above}


def ratio(lowest, highest, metric):
    if is_signed(metric) or highest <= 0:
        return None
    return lowest / highest


def bound_failure(rule, group):
    """The entry of a group that fails an at_least / at_most rule, or None."""
    found = group.figures[rule.metric]
    if rule.bound == "at_least":
        fails, beyond = found["value"] < rule.limit, found["high"] < rule.limit
    else:
        fails, beyond = found["value"] > rule.limit, found["low"] > rule.limit
    return {"group": group.labels, **found, "beyond_noise": beyond} if fails else None


def strata(groups, within):
    """{(values of the within columns): [groups]}: the groups compared together."""
    found = {}
    for group in groups:
        found.setdefault(tuple(group.labels[c] for c in within), []).append(group)
    return found


def spread_failure(rule, groups, within):
    """The entry of a stratum that fails a spread_at_most / ratio_at_least rule, or None.

    A stratum of one group has no spread: nothing to level.
    """
    if len(groups) < 2:
        return None
    gap = spread(groups, rule.metric)
    if rule.bound == "spread_at_most":
        fails = gap["difference"]["value"] > rule.limit
        beyond = gap["difference"]["low"] > rule.limit
    else:
        lowest = min(groups, key=lambda g: g.value(rule.metric)).figures[rule.metric]
        highest = max(groups, key=lambda g: g.value(rule.metric)).figures[rule.metric]
        fails = gap["ratio"] is not None and gap["ratio"] < rule.limit
        # Beyond noise when even the ends of the two intervals most favourable to the rule
        # fail it (a ratio has no interval of its own here).
        beyond = highest["low"] > 0 and lowest["high"] / highest["low"] < rule.limit
    if not fails:
        return None
    entry = {"within": dict(zip(rule.within, within, strict=True))}
    entry |= {key: gap[key] for key in ("lowest", "highest", "difference", "ratio")}
    return entry | {"beyond_noise": bool(beyond)}


def verdict(judged, failing, undecided, reason=None):
    if failing:
        status = "not_met"
    elif undecided or not judged or reason:
        status = "undecided"
    else:
        status = "met"
    return {
        "status": status,
        "judged": judged,
        "failing": failing,
        "undecided": undecided,
        "reason": reason,
    }
