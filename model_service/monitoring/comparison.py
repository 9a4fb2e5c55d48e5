"""The `challenger` section of /stats: the challenger (CHALLENGER_DIR) against the model
that answers, on exactly the rows both scored.

    compare(window, last_id, model, challenger)            # /stats
    compare_groups(groups, window, last_id, ..., by)       # /stats?by=

`window` is already narrowed to the rows the challenger scored (Window.shadowed_by): every
figure of both models is computed on the same rows. What /stats says (stats_schemas.py):

* `version`, `rows` (both scored), `labelled` (of those, with a true value);
* `decisions_changed` (classifiers: rows whose label would have been another; null for a
  regressor) and `model_metrics` / `metrics`: the two models' metrics on the labelled rows,
  the keys of /stats's own `metrics` (reports.py), computed by scikit-learn the same way;
* `differences`: challenger minus model for each number of `metrics` that has a paired
  interval: {value, low, high}, a percentile bootstrap over the same draws of rows for
  both models (intervals.py, RESAMPLES draws, a fixed seed), null where undefined;
* `paired_test`: classifiers, McNemar's exact test on the rows one model got right and the
  other wrong; regressors, Wilcoxon's signed-rank test on the absolute errors.

The challenger's decisions are those of its rule in force now (its threshold and positive
class); the model's rows are each judged at their own stored threshold, as /stats does.
"""

import json

import numpy as np
from scipy.stats import binomtest, wilcoxon

from model_service.monitoring.intervals import Resampling, bootstrap, weighted_auc
from model_service.monitoring.reports import REPORTS, binary_metrics
from model_service.monitoring.window import let_others_run, parsed

SEED = 20_240_601  # the same draws on every call: the same rows give the same intervals


def compare(window, last_id, model, challenger):
    """The `challenger` section of /stats (see the module's docstring)."""
    table = window.table
    mine, theirs = REPORTS[model.task.name](model.task), REPORTS[model.task.name](challenger.task)
    rows, changed = 0, 0
    for chunk in window.chunks(last_id, table.prediction, table.challenger_prediction):
        rows += len(chunk)
        changed += sum(label_of(row[1]) != label_of(row[2]) for row in chunk)
        if model.task.name == "multiclass":  # per_class counts every row's prediction
            mine.tally([row[1] for row in chunk])
            theirs.tally([row[2] for row in chunk])
    labelled = window.in_transaction(
        lambda: window.labelled(last_id, table.challenger_prediction, *mine.stored_columns(table))
    )
    model_rows = [(row[0], *row[2:]) for row in labelled]
    challenger_rows = [(row[0], *challenger_columns(row[1], challenger)) for row in labelled]
    model_side, challenger_side = judged(mine, model_rows), judged(theirs, challenger_rows)
    kept = model_side["kept"] & challenger_side["kept"]
    return {
        "version": challenger.version,
        "rows": rows,
        "labelled": len(labelled),
        "decisions_changed": changed if model.task.name != "regression" else None,
        "model_metrics": metrics_of(mine, model_side, kept),
        "metrics": metrics_of(theirs, challenger_side, kept),
        **paired(model.task, model_side, challenger_side, kept),
    }


def label_of(text):
    """A classifier's stored label (its JSON text), for decisions_changed."""
    output = parsed(text)
    return json.dumps(output.get("label")) if isinstance(output, dict) else None


def challenger_columns(text, challenger):
    """The challenger's stored output as the columns the report reads for its task."""
    output = parsed(text)
    if challenger.task.name != "binary":
        return (text,)
    if not isinstance(output, dict) or "probability" not in output:
        return (None, None, None)
    return tuple(challenger.task.columns(output).values())  # proba, threshold, positive


def judged(report, rows):
    """{arrays of the task (reports.py), kept: a mask over `rows`} for one model."""
    if isinstance(report, REPORTS["binary"]):
        truth, score, decided, thresholds, kept = report.judge(rows)
        arrays = {"truth": truth, "score": score, "decided": decided, "thresholds": thresholds}
    else:
        arrays, kept = report.outcomes(rows)
    return {"arrays": arrays, "kept": np.asarray(kept, dtype=bool).reshape(len(rows))}


def aligned(side, kept):
    """The side's arrays on the rows both models could read (its own arrays hold only the
    rows it kept)."""
    own = np.flatnonzero(side["kept"])
    take = np.isin(own, np.flatnonzero(kept))
    return {name: values[take] for name, values in side["arrays"].items()}


def metrics_of(report, side, kept):
    arrays = aligned(side, kept)
    if isinstance(report, REPORTS["binary"]):
        return binary_metrics(
            arrays["truth"], arrays["score"], arrays["decided"], arrays["thresholds"], report.task
        )
    if isinstance(report, REPORTS["multiclass"]):
        return report.metrics(arrays["true"], arrays["predicted"], arrays["matrix"])
    return report.metrics(arrays["truth"], arrays["prediction"])


# ---------------------------------------------------------------------------------------
# Paired differences: the same draws of rows for both models
# ---------------------------------------------------------------------------------------


def paired(task, model_side, challenger_side, kept):
    """{differences, paired_test} on the rows both models could read."""
    mine, theirs = aligned(model_side, kept), aligned(challenger_side, kept)
    count = int(kept.sum())
    if count == 0:
        return {"differences": None, "paired_test": None}
    statistics = paired_statistics(mine, theirs, task)
    values = {name: value for name, (value, _) in statistics.items()}
    resampling = Resampling(SEED, let_others_run)
    draws = {name: statistic for name, (_, statistic) in statistics.items()}
    intervals = bootstrap(count, resampling, draws)
    differences = {
        name: None
        if values[name] is None or intervals[name] is None
        else {"value": values[name], "low": intervals[name][0], "high": intervals[name][1]}
        for name in statistics
    }
    return {"differences": differences, "paired_test": paired_test(task, mine, theirs)}


def ratio(numerator, denominator):
    """weights -> sum(w * numerator) / sum(w * denominator), NaN where it is 0."""

    def statistic(weights):
        with np.errstate(invalid="ignore", divide="ignore"):
            return (weights @ numerator) / (weights @ denominator)

    return statistic


def mean(values):
    return lambda weights: (weights @ values) / weights.sum(axis=1)


def binary_statistics(arrays):
    truth, score, decided = arrays["truth"], arrays["score"], arrays["decided"]
    hit = (decided & truth).astype(float)
    probability_of_truth = np.clip(np.where(truth, score, 1 - score), EPSILON, 1)
    return {
        "accuracy": mean((decided == truth).astype(float)),
        "precision": ratio(hit, decided.astype(float)),
        "recall": ratio(hit, truth.astype(float)),
        "f1": ratio(2 * hit, decided.astype(float) + truth.astype(float)),
        "positive_rate": mean(decided.astype(float)),
        "brier": mean((score - truth) ** 2),
        "log_loss": mean(-np.log(probability_of_truth)),
        "roc_auc": weighted_auc(truth, score),
    }


def multiclass_statistics(arrays):
    true, predicted, matrix = arrays["true"], arrays["predicted"], arrays["matrix"]
    probability_of_truth = np.clip(matrix[np.arange(len(true)), true], EPSILON, 1)
    return {
        "accuracy": mean((true == predicted).astype(float)),
        "log_loss": mean(-np.log(probability_of_truth)),
    }


def regression_statistics(arrays, task):
    errors = arrays["prediction"] - arrays["truth"]
    names = ["value"] if task.width == 1 else list(task.targets)
    found = {}
    for k, name in enumerate(names):
        prefix = "" if task.width == 1 else f"{name}."
        found[prefix + "mae"] = mean(np.abs(errors[:, k]))
        squared = mean(errors[:, k] ** 2)
        found[prefix + "rmse"] = lambda weights, squared=squared: np.sqrt(squared(weights))
    return found


EPSILON = np.finfo(float).eps  # log_loss clips probabilities so (scikit-learn does too)


def statistics_of(task, arrays):
    if task.name == "binary":
        return binary_statistics(arrays)
    if task.name == "multiclass":
        return multiclass_statistics(arrays)
    return regression_statistics(arrays, task)


def paired_statistics(mine, theirs, task):
    """{name: (challenger - model on the rows, statistic over draws)}."""
    of_model, of_challenger = statistics_of(task, mine), statistics_of(task, theirs)
    count = len(next(iter(mine.values())))
    found = {}
    for name in of_model:

        def statistic(weights, name=name):
            return of_challenger[name](weights) - of_model[name](weights)

        value = float(statistic(np.ones((1, count)))[0])
        found[name] = (value if np.isfinite(value) else None, statistic)
    return found


def paired_test(task, mine, theirs):
    """Whether the two models differ on these rows more than chance would make them."""
    if task.name == "regression":
        model_errors = np.abs(mine["prediction"] - mine["truth"]).sum(axis=1)
        challenger_errors = np.abs(theirs["prediction"] - theirs["truth"]).sum(axis=1)
        differences = challenger_errors - model_errors
        if not np.any(differences):
            p_value = 1.0
        else:
            p_value = float(wilcoxon(challenger_errors, model_errors).pvalue)
        return {
            "test": "wilcoxon_signed_rank",
            "on": "absolute errors",
            "challenger_better": int((differences < 0).sum()),
            "model_better": int((differences > 0).sum()),
            "p_value": p_value,
        }
    if task.name == "binary":
        model_right = mine["decided"] == mine["truth"]
        challenger_right = theirs["decided"] == theirs["truth"]
    else:
        model_right = mine["predicted"] == mine["true"]
        challenger_right = theirs["predicted"] == theirs["true"]
    only_challenger = int((challenger_right & ~model_right).sum())
    only_model = int((model_right & ~challenger_right).sum())
    discordant = only_challenger + only_model
    return {
        "test": "mcnemar_exact",
        "on": "decisions right or wrong",
        "challenger_better": only_challenger,
        "model_better": only_model,
        "p_value": float(binomtest(only_challenger, discordant).pvalue) if discordant else 1.0,
    }
