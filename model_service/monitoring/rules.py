"""api.toml's [stats]: its settings, checked once at start-up, and the verdict of each rule.

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

groups.py builds the groups a rule names (within + by) and hands them to judge_rule:

* at_least / at_most: every judged group's value must keep to the limit;
* spread_at_most / ratio_at_least: inside each stratum (the groups that share the values
  of `within`), the highest group minus the lowest (spread: with its interval, MOVER) or
  the ratio lowest / highest must keep to the limit.

A rule is "not_met" when something fails it (each failure says whether it is beyond noise:
even the end of its interval most favourable to the rule fails), else "undecided" when a
group it names could not be judged (too few labelled rows) or none could, else "met".
"""

import math
from dataclasses import dataclass

from model_service.monitoring.intervals import difference

DEFAULT_MIN_LABELLED = 30
BOUNDS = ("at_least", "at_most", "spread_at_most", "ratio_at_least")
RULE_KEYS = {"name", "metric", "by", "within", *BOUNDS}
STATS_KEYS = {"min_labelled", "extra_columns", "groups", "rules"}


class GroupsError(Exception):
    """A setting of [stats], or a request of /stats?by=, that groups cannot serve: one
    sentence that names it."""


def is_signed(metric):
    """mean_error may be below 0: a ratio of two of them means nothing."""
    return metric.startswith("mean_error")


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


# ---------------------------------------------------------------------------------------
# Reading [stats]
# ---------------------------------------------------------------------------------------


def check_stats_keys(table):
    unknown = sorted(set(table) - STATS_KEYS)
    if unknown:
        raise setting_error(
            repr(unknown[0]), f"is not a key; the keys are {', '.join(sorted(STATS_KEYS))}"
        )


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


def grouping_lists(table):
    """[stats] groups: the groupings the brief reports by, each a list of column names
    (a single name stands for a list of one): [["station", "Object of search"], ["Sex"]]."""
    groups = table.get("groups", [])
    if not isinstance(groups, list):
        raise setting_error("groups", 'must be a list of column lists, as [["station"], ["Sex"]]')
    return [names_list(group, f"groups[{index}]") for index, group in enumerate(groups)]


def rule_tables(table):
    """The [[stats.rules]] tables, each read by read_rule."""
    rules = table.get("rules", [])
    if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
        raise setting_error("rules", "must be tables, each written [[stats.rules]]")
    return rules


def read_rule(rule, number, metrics, task_name):
    """The Rule of one [[stats.rules]] table (groups.py then checks the columns it names)."""
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
    if metric not in metrics:
        raise GroupsError(
            f"{where}: metric {metric!r} is not one this {task_name} model reports; "
            f"use one of {', '.join(metrics)}."
        )
    bounds = [key for key in BOUNDS if key in rule]
    if len(bounds) != 1:
        raise GroupsError(f"{where} must have exactly one of {', '.join(BOUNDS)}.")
    bound, limit = bounds[0], rule[bounds[0]]
    check_limit(where, bound, limit, metric)
    by = rule_columns(rule.get("by"), f"{where}: by")
    within = rule_columns(rule.get("within", []), f"{where}: within", allow_empty=True)
    if within and bound in ("at_least", "at_most"):
        raise GroupsError(
            f"{where}: within compares groups (spread_at_most, ratio_at_least); with "
            f"{bound}, name every column in by."
        )
    return Rule(name, metric, by, within, bound, float(limit))


def rule_columns(value, what, allow_empty=False):
    try:
        return names_list(value, "", allow_empty=allow_empty)
    except GroupsError:
        raise GroupsError(f"{what} must be a column name or a list of them.") from None


def check_limit(where, bound, limit, metric):
    if isinstance(limit, bool) or not isinstance(limit, int | float) or math.isnan(limit):
        raise GroupsError(f"{where}: {bound} must be a number, not {limit!r}.")
    if bound == "ratio_at_least" and is_signed(metric):
        raise GroupsError(f"{where}: {metric} may be negative, so it has no ratio.")
    if bound in ("spread_at_most", "ratio_at_least") and limit < 0:
        raise GroupsError(f"{where}: {bound} must be at least 0.")


# ---------------------------------------------------------------------------------------
# Spreads and verdicts
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


def ratio(lowest, highest, metric):
    if is_signed(metric) or highest <= 0:
        return None
    return lowest / highest


def judge_rule(rule, groups):
    """The rule's description and verdict, over the groups of its columns (within + by)."""
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
