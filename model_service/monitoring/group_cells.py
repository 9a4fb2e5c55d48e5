"""Quality per group from sums kept per hour: /stats?by= on the groupings a brief declares
([stats] groups, and the columns of its rules), at a cost that does not grow with the rows.

    grouped = GroupCells(groups, model)          # monitoring.init_app
    grouped.cells(rows, observations, report)    # rollups.py: the cells of some rows
    grouped.report(by, sums, auc_sums, pause)    # stats.py: what Groups.report answers

Each row adds to `G<sep><grouping><sep><group>` cells (sep: \\x1f, which no column name or
value holds; the group: the JSON list of its labels, as groups.py names them, in the
grouping's column order): `rows`; a labelled row that the task can read, the counts of a
binary classifier's confusion matrix (m:<truth>:<decided>), a multiclass one's
(m:<true>:<predicted>), or a regressor's sums of the errors per target (r:<k>: s the errors,
q their squares; a:<k>: s the absolute errors); per day, a binary classifier's fine score
bins for ROC AUC (`AG` cells).

The figures are groups.py's: Wilson's intervals of the rates (exact: they are counts), the
metrics made of counts and sums exactly; ROC AUC from the score bins, within the bound
quality_cells.py states; the other intervals from the cells: a bootstrap that draws rows
from the cells (a multinomial over them, RESAMPLES draws), or for a regressor's mean
errors, the normal interval of a mean.
"""

import json
import zlib
from collections import Counter

import numpy as np

from model_service.monitoring.drift import MISSING, OTHER, observation_of
from model_service.monitoring.groups import MAX_GROUPS, Bins, Group, category_label
from model_service.monitoring.intervals import (
    CONFIDENCE,
    RESAMPLES,
    figure,
    rate,
    weighted_auc,
    weighted_macro_f1,
)
from model_service.monitoring.quality_cells import (
    AUC_BINS,
    EXACT_LABELLED_ROWS,
    Sums,
    add_auc_bins,
    add_confusion,
    auc_of,
    mean_interval,
    uncertain_bins,
    wins_within,
)
from model_service.monitoring.rules import GroupsError, judge_rule, spread, verdict

SEP = "\x1f"


class GroupCells:
    """The declared groupings of one model, and how their cells are counted and read."""

    def __init__(self, groups, model):
        self.groups, self.model = groups, model
        declared = [*groups.declared, *(rule.columns for rule in groups.rules)]
        self.groupings = sorted({tuple(sorted(names)) for names in declared if names})
        self.bins = {
            c: Bins(groups.profile["columns"][c]) for c in groups.numeric if groups.profile
        }

    def describe(self):
        return [list(grouping) for grouping in self.groupings]

    def grouping_of(self, by):
        """The declared grouping of these columns (in any order), or None."""
        key = tuple(sorted(by))
        return key if key in self.groupings else None

    # --- counting --------------------------------------------------------------------

    def label(self, column, value):
        if column in self.bins:
            encoder = self.bins[column]
            return encoder.labels[int(encoder.encode([value])[0])]
        return category_label(value)

    def keys_of(self, bodies=None, observations=None):
        """[{grouping: key}] of stored bodies (or of their observations, parsed): each row's
        group in every grouping. A column's labels are made at once for every row."""
        if observations is None:
            observations = [observation_of(body, self.model.contract) or {} for body in bodies]
        labels = {}
        for column in dict.fromkeys(c for grouping in self.groupings for c in grouping):
            values = [observation.get(column) for observation in observations]
            if column in self.bins:
                encoder = self.bins[column]
                labels[column] = [encoder.labels[code] for code in encoder.encode(values).tolist()]
            else:
                labels[column] = [category_label(value) for value in values]
        rows = range(len(observations))
        by_grouping = {
            grouping: [json.dumps([labels[c][i] for c in grouping]) for i in rows]
            for grouping in self.groupings
        }
        return [{grouping: keys[i] for grouping, keys in by_grouping.items()} for i in rows]

    def cells(self, sums, keys, labelled, outcomes):
        """Add the group cells of a bucket's rows to sums (keys: keys_of its rows; labelled:
        the positions of its labelled rows that the task read; outcomes: their arrays)."""
        for index, grouping in enumerate(self.groupings):
            prefix = f"G{SEP}{index}{SEP}"
            for key, n in Counter(row[grouping] for row in keys).items():
                sums.add(prefix + key + f"{SEP}rows", n)
            of_labelled = [keys[at][grouping] for at in labelled]
            for key in set(of_labelled):
                mask = np.array([k == key for k in of_labelled], dtype=bool)
                self.labelled_cells(sums, prefix + key + SEP, outcomes, mask, index, key)

    def labelled_cells(self, sums, prefix, outcomes, mask, index, key):
        task = self.model.task
        if task.name == "binary":
            truth, decided, score = (outcomes[k][mask] for k in ("truth", "decided", "score"))
            add_confusion(sums, prefix, truth, decided)
            add_auc_bins(sums, f"AG{SEP}{index}{SEP}{key}{SEP}", truth, score)
        elif task.name == "multiclass":
            pairs = zip(
                outcomes["true"][mask].tolist(), outcomes["predicted"][mask].tolist(), strict=True
            )
            for (t, p), n in Counter(pairs).items():
                sums.add(f"{prefix}m:{t}:{p}", n)
        else:
            errors = outcomes["prediction"][mask] - outcomes["truth"][mask]
            for k in range(errors.shape[1]):
                e = errors[:, k]
                sums.add(f"{prefix}r:{k}", len(e), float(e.sum()), float((e * e).sum()))
                sums.add(f"{prefix}a:{k}", len(e), float(np.abs(e).sum()))

    # --- reading ---------------------------------------------------------------------

    def report(self, by, sums, auc_sums, labelled, pause, rows_in_bins=None):
        """Groups.report's answer for `by` (a declared grouping) from the window's sums.

        rows_in_bins(bins) -> (truth, score, bodies) of the labelled rows whose score is in
        those AUC bins: read once, while the window holds at most EXACT_LABELLED_ROWS
        labelled rows, to make each group's ROC AUC exact where its bins are not."""
        groups_config = self.groups
        needed = [by, *(rule.columns for rule in groups_config.rules)]
        refined = None
        if rows_in_bins is not None and labelled <= EXACT_LABELLED_ROWS:
            refined = self.refined_rows(needed, sums, auc_sums, rows_in_bins)
        read = (self, sums, auc_sums, pause, refined)
        groups = groups_of(by, *read)
        rules = []
        for rule in groups_config.rules:
            try:
                rules.append(judge_rule(rule, groups_of(rule.columns, *read)))
            except GroupsError as error:
                rules.append(rule.describe() | verdict(0, [], [], str(error)))
        left_out = sums.get("L:out", [0])[0]
        return {
            "by": list(by),
            "labelled": labelled,
            "labelled_left_out": left_out,
            "min_labelled": groups_config.min_labelled,
            "confidence": CONFIDENCE,
            "metrics": groups_config.metrics,
            "columns": [
                c
                for c in groups_config.columns
                if c not in groups_config.numeric or groups_config.profile
            ],
            "groups": [group.describe(groups_config.metrics) for group in groups],
            "spreads": {m: spread(groups, m) for m in groups_config.metrics},
            "rules": rules,
        }

    def cells_of_groups(self, by, sums, auc_sums):
        """(the grouping, {key: cells}, {key: AUC Sums}) of a declared grouping."""
        grouping = self.grouping_of(by)
        index = self.groupings.index(grouping)
        prefix = f"G{SEP}{index}{SEP}"
        cells_by_key = {}
        for name, value in sums.items():
            if name.startswith(prefix):
                key, cell = name[len(prefix) :].split(SEP)
                cells_by_key.setdefault(key, {})[cell] = value
        auc_prefix = f"AG{SEP}{index}{SEP}"
        auc_by_key = {}
        for name, value in auc_sums.items():
            if name.startswith(auc_prefix):
                key, cell = name[len(auc_prefix) :].split(SEP)
                auc_by_key.setdefault(key, Sums())[f"A:{cell}"] = value
        if len(cells_by_key) > MAX_GROUPS:
            raise GroupsError(
                f"{', '.join(by)} make {len(cells_by_key)} groups, more than {MAX_GROUPS}: group "
                "by fewer columns, or coarser ones."
            )
        return grouping, cells_by_key, auc_by_key

    def refined_rows(self, needed, sums, auc_sums, rows_in_bins):
        """(truth, score, [{grouping: key}]) of the labelled rows in every uncertain AUC bin
        of the groups of these groupings, read at once; None when there are none."""
        every = {}
        for by in needed:
            if self.grouping_of(by) is None:
                continue
            _, _, auc_by_key = self.cells_of_groups(by, sums, auc_sums)
            for bins in auc_by_key.values():
                every.update(uncertain_bins(bins))
        if not every:
            return None
        truth, score, bodies = rows_in_bins(every)
        return truth, score, self.keys_of(bodies)

    def exact_wins(self, grouping, auc_by_key, refined):
        """{key: {bin: wins}} for the groups' uncertain AUC bins, from their rows."""
        if refined is None:
            return {}
        truth, score, keys = refined
        of_grouping = np.array([row[grouping] for row in keys], dtype=object)
        found = {}
        for key, sums in auc_by_key.items():
            bins = uncertain_bins(sums)
            if bins:
                mine = of_grouping == key
                found[key] = wins_within(truth[mine], score[mine], bins)
        return found

    def order(self, labels):
        """groups.py's order: a number's bins in order; categories by name, then (other)
        and (missing)."""
        key = []
        for column, label in labels.items():
            if column in self.bins:
                key.append((self.bins[column].labels.index(label), False, False, ""))
            else:
                key.append((0, label in (OTHER, MISSING), label == MISSING, label))
        return tuple(key)

    def judge(self, labels, cells, auc_cells, wins=None):
        task = self.model.task
        count = cells.get("rows", [0])[0]
        if task.name == "regression":
            labelled = cells.get("r:0", [0])[0]
        else:
            labelled = sum(v[0] for c, v in cells.items() if c.startswith("m:"))
        group = Group(labels, count, labelled)
        minimum = self.groups.min_labelled
        if labelled < minimum:
            rows = "1 labelled row" if labelled == 1 else f"{labelled} labelled rows"
            group.reason = f"{rows}: a group needs {minimum} to be judged"
            return group
        seed = zlib.crc32(json.dumps(sorted(labels.items())).encode())
        figures, reasons = FIGURES[task.name](self, cells, (auc_cells, wins), seed)
        group.figures, group.reason = figures, "; ".join(reasons) or None
        return group


def groups_of(by, grouped, sums, auc_sums, pause, refined):
    """[Group] of a declared grouping, in groups.py's order, judged from its cells."""
    grouping, cells_by_key, auc_by_key = grouped.cells_of_groups(by, sums, auc_sums)
    wins = grouped.exact_wins(grouping, auc_by_key, refined)
    found = []
    for key, cells in cells_by_key.items():
        stored = dict(zip(grouping, json.loads(key), strict=True))
        labels = {column: stored[column] for column in by}
        group = grouped.judge(labels, cells, auc_by_key.get(key, Sums()), wins.get(key))
        found.append((grouped.order(labels), group))
        pause()
    return [group for _, group in sorted(found, key=lambda pair: pair[0])]


# ---------------------------------------------------------------------------------------
# Each task's figures of one group, from its cells
# ---------------------------------------------------------------------------------------


def draws(counts, seed):
    """RESAMPLES draws of as many rows as the cells hold, from the cells: weights per cell."""
    counts = np.asarray(counts, dtype=float)
    return np.random.default_rng(seed).multinomial(
        int(counts.sum()), counts / counts.sum(), RESAMPLES
    )


def percentile(values):
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    low, high = np.percentile(values, [50 * (1 - CONFIDENCE), 50 * (1 + CONFIDENCE)])
    return float(low), float(high)


def binary_figures(grouped, cells, auc, seed):
    auc_cells, wins = auc
    tn, fp, fn, tp = (cells.get(f"m:{t}:{d}", [0])[0] for t in (0, 1) for d in (0, 1))
    n = tn + fp + fn + tp
    auc, _ = auc_of(auc_cells, wins)
    auc_figure = None
    if auc is not None:
        truth, score, counts = [], [], []
        for name, (count, *_rest) in auc_cells.items():
            _, b, t = name.split(":")
            truth.append(t == "1")
            score.append((int(b) + 0.5) / AUC_BINS)
            counts.append(count)
        statistic = weighted_auc(np.array(truth), np.array(score))
        auc_figure = figure(auc, percentile(statistic(draws(counts, seed))))
    figures = {
        "positive_rate": rate((tp + fp) / n, tp + fp, n),
        "precision": rate(tp / (tp + fp) if tp + fp else 0.0, tp, tp + fp),
        "recall": rate(tp / (tp + fn) if tp + fn else 0.0, tp, tp + fn),
        "false_positive_rate": rate(fp / (fp + tn) if fp + tn else 0, fp, fp + tn),
        "roc_auc": auc_figure,
    }
    task = grouped.model.task
    positive, negative = json.dumps(task.positive_class), json.dumps(task.negative_class)
    reasons = {
        "precision": f"precision needs a labelled row decided {positive}; none is",
        "recall": f"recall needs a labelled row of class {positive}; none is",
        "false_positive_rate": f"false_positive_rate needs a labelled row of class {negative}",
        "roc_auc": "roc_auc needs labelled rows of both classes",
    }
    return figures, [reasons[name] for name, found in figures.items() if found is None]


def multiclass_figures(grouped, cells, _auc_cells, seed):
    classes = len(grouped.model.task.classes)
    pairs = [
        (name, value[0]) for name, value in cells.items() if name.startswith("m:") and value[0]
    ]
    true = np.array([int(name.split(":")[1]) for name, _ in pairs])
    predicted = np.array([int(name.split(":")[2]) for name, _ in pairs])
    counts = np.array([n for _, n in pairs])
    n, right = int(counts.sum()), int(counts[true == predicted].sum())
    statistic = weighted_macro_f1(true, predicted, classes)
    value = float(statistic(counts[None, :].astype(float))[0])
    return {
        "accuracy": rate(right / n, right, n),
        "macro_f1": figure(value, percentile(statistic(draws(counts, seed)))),
    }, []


def regression_figures(grouped, cells, _auc_cells, _seed):
    task = grouped.model.task
    names = [""] if task.width == 1 else [f".{target}" for target in task.targets]
    figures = {}
    for k, suffix in enumerate(names):
        n, errors, squares, _, _ = cells[f"r:{k}"]
        _, absolute, _, _, _ = cells[f"a:{k}"]
        figures["mae" + suffix] = mean_figure(absolute, squares, n)
        figures["mean_error" + suffix] = mean_figure(errors, squares, n)
    return figures, []


def mean_figure(total, squares, n):
    """A mean and its normal 95 % interval, from the sum and the sum of squares."""
    found = mean_interval("", total, squares, n)
    return {key: found[key] for key in ("value", "low", "high")}


FIGURES = {
    "binary": binary_figures,
    "multiclass": multiclass_figures,
    "regression": regression_figures,
}
