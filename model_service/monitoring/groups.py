"""Quality per group: `GET /stats?by=<column>[,<column>...]`.

A brief judges a model per group ("per station and search objective"), not overall. The
monitoring package builds one `Groups` at start-up, which checks api.toml's `[stats]` table
(rules.py; GroupsError names the key), and stats.py calls `Groups.report` for every
`/stats?by=`: it sorts the stored rows into groups, computes the task's metrics on each
group's labelled rows, the spread of each metric between the groups, and whether each rule
holds (rules.py).

* A group is a value, or a combination of values, of the named columns in the stored
  observations: a category (booleans as true/false); for a numeric column, a bin of the
  training profile, as drift.py cuts it. A row whose observation lacks the column (or holds
  null) is in "(missing)"; a value of a numeric column that is not a number in "(other)".
* Metrics, on the group's labelled rows, by sklearn.metrics: binary positive_rate,
  precision (each row decided at the threshold stored with it: the "success rate" of the
  positive decisions), recall, false_positive_rate, roc_auc; multiclass accuracy, macro_f1;
  regression mae and mean_error (prediction - truth), per target for several.
* Each metric comes with a 95 % interval (intervals.py): Wilson's score interval for the
  rates (a proportion of counts), a percentile bootstrap for the others: RESAMPLES draws of
  the group's labelled rows (in the order they were stored) with replacement, from
  numpy.random.default_rng(seed), where seed is the CRC-32 of the group's (column, value)
  pairs sorted by column, as JSON (zlib.crc32(b'[["station", "kent"]]')): the same rows
  give the same interval at every call, whatever the order the columns are named in.
* A group with fewer labelled rows than `min_labelled` gets its counts, null metrics and
  the reason, and is left out of the spreads and the rules (a rule it could fail is then
  "undecided").
* The spread of a metric: the highest group minus the lowest, with an interval (MOVER:
  Newcombe's for two Wilson intervals), and the smallest ratio, lowest / highest.
"""

import json
import math
import zlib
from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    mean_absolute_error,
    precision_score,
    recall_score,
    roc_auc_score,
)

from model_service.monitoring import drift
from model_service.monitoring.intervals import (
    CONFIDENCE,
    Resampling,
    bootstrap,
    figure,
    rate,
    weighted_auc,
    weighted_macro_f1,
    weighted_mean,
)
from model_service.monitoring.rules import (
    GroupsError,
    check_stats_keys,
    grouping_lists,
    judge_rule,
    names_list,
    read_min_labelled,
    read_rule,
    rule_tables,
    setting_error,
    spread,
    verdict,
)

MAX_COLUMNS = 3  # columns of one grouping (`by`, or a rule's within + by)
MAX_GROUPS = 1000  # groups of one grouping: past that, a table nobody can read
MISSING, OTHER = drift.MISSING, drift.OTHER


def metric_names(task):
    if task.name == "binary":
        return ["positive_rate", "precision", "recall", "false_positive_rate", "roc_auc"]
    if task.name == "multiclass":
        return ["accuracy", "macro_f1"]
    if task.width == 1:
        return ["mae", "mean_error"]
    return [f"{name}.{target}" for target in task.targets for name in ("mae", "mean_error")]


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
    outcomes: dict  # their arrays (the task's report, reports.py)
    labelled: int  # every labelled row, readable or not
    pause: object  # lets a server's other requests run (window.let_others_run)
    groupings: dict = field(default_factory=dict)  # columns -> [Group], computed once
    judged: dict = field(default_factory=dict)  # a group's name -> (figures, reason)


# ---------------------------------------------------------------------------------------
# The entry point
# ---------------------------------------------------------------------------------------


class Groups:
    """The groups and rules of one model, checked at start-up; `report` answers /stats?by=."""

    def __init__(self, table, min_labelled, model, profile, profile_note):
        check_stats_keys(table)
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
        self.rules = []
        for number, settings in enumerate(rule_tables(table), 1):
            rule = read_rule(settings, number, self.metrics, self.task.name)
            self.check_columns(rule.columns, f"api.toml rule {rule.name!r}: within and by")
            self.rules.append(rule)
        # [stats] groups: the groupings the brief reports by (checked like a rule's columns).
        self.declared = grouping_lists(table)
        for index, names in enumerate(self.declared):
            self.check_columns(list(names), f"api.toml [stats] groups[{index}]")

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
        (reports.py reads both). Each chunk's labelled rows become arrays at once: the
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
        return judge_rule(rule, groups)


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
