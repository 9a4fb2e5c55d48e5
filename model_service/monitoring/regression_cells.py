"""The quality of a regressor as sums kept per hour: what /stats reads instead of the
labelled rows when a window holds more than quality_cells.READ_LABELLED_ROWS of them.

    add_regression_sums(sums, truth, prediction)               # quality_cells.labelled_cells
    quality = summary_of_many(report, window, last_id, sums)   # stats.py, over a window

Each labelled row adds, per target k (0 for a single number; y the true value, e the error,
prediction - y, as reports.py computes it):

* `L:ry:<k>:<j>`: part j of Σy (s) and of Σy² (q); `L:re:<k>:<j>`: part j of the sum of
  the positive errors (s) and of the negative ones' sizes (q), so Σe and Σ|e|;
  `L:rq:<k>:<j>`: part j of Σe² (s). n: the rows with a part there.
* `L:rw:<k>`: the rows whose y or e these cannot hold (not finite, or of a binary exponent
  beyond ±SAFE_EXPONENT): while the window has one, stats.py reads every labelled row.
* `L:ra:0`: n, Σ|e| and Σe² of the first target in floats, for quality_cells.daily_of.

Exact, not sums of floats. R² = 1 - Σe² / Σ(y - ȳ)², and Σ(y - ȳ)² = Σy² - (Σy)² / n in
floats loses every digit of the spread when the true values are large beside it (y near
1e6, spread 1); nothing constant for the service (the training profile holds no target)
says how far to shift them. And a sum of floats keeps the rounding of a value taken out
again: a wrong label of 1e150, corrected, would leave its square's rounding in Σe² for good.
So each value, and each square (a float is an integer times a power of two, its square
too), is cut into parts of fixed weights 2**(PART_BITS * j), each part a whole number of
its weight below 2**PART_BITS. Every sum of a cell, by Sums.add, the table's UPSERT, SQL's
SUM or a corrected label's subtraction, is then of whole numbers below 2**53 of one weight:
exact in any order (up to 2**26, 67 million, rows a cell), and a cell is the same whatever
the batches its rows came in. /stats adds the parts as fractions: the sums exactly, and
from them MAE, RMSE, the mean error and R² rounded once; Σ(y - ȳ)² is 0 exactly when every
true value is the same (R² null, as reports.regression_metrics).

The error quantiles and the 10 bins from the smallest error to the largest are no sums:
they come from the latest LATEST_ROWS labelled rows of the window (by the time of the
prediction), and `errors.from_latest_rows` says from how many; `errors.mean` is over every
labelled row.
"""

import math
from fractions import Fraction

import numpy as np

from model_service.monitoring.reports import error_distribution, finite, regression_metrics
from model_service.monitoring.window import plain_rows

LATEST_ROWS = 10_000  # the labelled rows the error quantiles and bins are read from
SAFE_EXPONENT = 400  # the parts of a value within 2**±400, and of its square, are normal
PART_BITS = 27  # a part of one value is below 2**27 of its weight: 2**26 of them add exactly
MASK = (1 << PART_BITS) - 1

# ---------------------------------------------------------------------------------------
# Writing: the cells of labelled rows
# ---------------------------------------------------------------------------------------


def add_regression_sums(sums, truth, prediction):
    """Add the cells of labelled rows (truth and prediction: rows x targets) to sums."""
    errors = prediction - truth
    if len(errors):  # the first target's, for the quality per day
        e = errors[:, 0]
        sums.add("L:ra:0", len(e), float(np.abs(e).sum()), float((e**2).sum()))
    for k in range(truth.shape[1]):
        found, wide = {}, 0  # {(cell kind, j): [rows, s, q]}, as whole numbers of 2**(27 j)
        for y, e in zip(truth[:, k].tolist(), errors[:, k].tolist(), strict=True):
            if within_range(y) and within_range(e):
                add_row(found, y, e)
            else:
                wide += 1
        for (kind, j), (rows, s, q) in sorted(found.items()):
            weight = PART_BITS * j
            sums.add(f"{kind}:{k}:{j}", rows, math.ldexp(s, weight), math.ldexp(q, weight))
        if wide:
            sums.add(f"L:rw:{k}", wide)


def within_range(value):
    """Finite, and 0 or of a binary exponent within ±SAFE_EXPONENT."""
    return math.isfinite(value) and abs(math.frexp(value)[1]) <= SAFE_EXPONENT


def add_row(found, y, e):
    """Add the parts of one row's true value y and error e to found {(kind, j): [rows with a
    part there, s, q]}."""
    row = {}
    for kind, slot, value, square in (
        ("L:ry", 1, y, False),
        ("L:ry", 2, y, True),
        ("L:re", 1, max(e, 0.0), False),
        ("L:re", 2, max(-e, 0.0), False),
        ("L:rq", 1, e, True),
    ):
        for j, part in value_parts(value, square):
            row.setdefault((kind, j), [1, 0, 0])[slot] += part
    for key, values in row.items():
        total = found.setdefault(key, [0, 0, 0])
        for slot in range(3):
            total[slot] += values[slot]


def value_parts(value, square=False):
    """(j, part) such that the value (or its square) is the sum of part * 2**(27 j): each
    part a whole number below 2**PART_BITS, with the value's sign. A float is an integer
    times a power of two, its square too: the parts are exact."""
    if value == 0:
        return
    mantissa, exponent = math.frexp(value)
    integer, shift = int(math.ldexp(mantissa, 53)), exponent - 53  # value = integer * 2**shift
    if square:
        integer, shift = integer * integer, 2 * shift
    sign, integer = (-1 if integer < 0 else 1), abs(integer)
    j, offset = divmod(shift, PART_BITS)
    integer <<= offset
    while integer:
        part = integer & MASK
        if part:
            yield j, sign * part
        integer >>= PART_BITS
        j += 1


# ---------------------------------------------------------------------------------------
# Reading: the metrics of a window from its sums
# ---------------------------------------------------------------------------------------


def summary_of_many(report, window, last_id, sums):
    """The quality keys of /stats (RegressionReport.summary's) from the window's sums
    {cell: [n, s, q, lo, hi]}, the error quantiles and bins from its latest labelled rows;
    None when the sums cannot answer (a value beyond their range, or no readable row among
    the latest): stats.py then reads every labelled row."""
    n, *_ = sums.get("L:ra:0") or [0]
    left_out, *_ = sums.get("L:out") or [0]
    width = len(report.names)
    if any((sums.get(f"L:rw:{k}") or [0])[0] for k in range(width)):
        return None
    per_target = {name: regression_metrics(np.zeros(0), np.zeros(0)) for name in report.names}
    if n:
        sample = latest_errors(report, window, last_id)
        if not len(sample):
            return None
        totals = exact_totals(sums, width)
        for k, name in enumerate(report.names):
            per_target[name] = target_metrics(totals[k], n, sample[:, k])
    return {
        "labelled": n + left_out,
        "labelled_left_out": left_out,
        "metrics": report.combined(per_target, n),
        "calibration": None,  # no probabilities
        "distribution": None,
    }


SLOTS = {"L:ry": ("y", "yy"), "L:re": ("positive", "negative"), "L:rq": ("ee", None)}


def exact_totals(sums, width):
    """[{y, yy, positive, negative, ee}: Σy, Σy², the sums of the positive errors and of the
    negative ones' sizes, Σe², as exact fractions] of each target, from its parts."""
    totals = [dict.fromkeys(["y", "yy", "positive", "negative", "ee"], Fraction(0))]
    totals += [dict(totals[0]) for _ in range(width - 1)]
    for name, (_, s, q, *_) in sums.items():
        if name.startswith(("L:ry:", "L:re:", "L:rq:")):
            k = int(name.split(":")[2])
            first, second = SLOTS[name[:4]]
            totals[k][first] += Fraction(s)
            if second:
                totals[k][second] += Fraction(q)
    return totals


def target_metrics(totals, n, errors):
    """reports.regression_metrics of one target: MAE, RMSE, R² and the mean error from its
    exact sums over n rows (each rounded once), the quantiles and bins of `errors`, those of
    the latest rows."""
    spread = totals["yy"] - totals["y"] * totals["y"] / n  # Σ(y - ȳ)²
    r2 = None  # undefined on one row, or when every true value is the same
    if n >= 2 and spread > 0:
        r2 = finite(1 - totals["ee"] / spread)
    mean = (totals["positive"] - totals["negative"]) / n
    return {
        "mae": float((totals["positive"] + totals["negative"]) / n),
        "rmse": math.sqrt(totals["ee"] / n),
        "r2": r2,
        "errors": error_distribution(errors)
        | {"mean": float(mean), "from_latest_rows": len(errors)},
    }


def latest_errors(report, window, last_id):
    """prediction - truth (rows x targets) of the window's latest LATEST_ROWS labelled rows
    (by created_at, through the index of the labelled rows), those the task can read."""
    table = window.table
    query = (
        table.select(table.true_value, table.prediction)
        .where(table.true_value.is_null(False))
        .order_by(table.created_at.desc(), table.id.desc())
        .limit(LATEST_ROWS)
    )
    rows = window.in_transaction(lambda: plain_rows(window.where(query, last_id)))
    found, _ = report.outcomes(rows)
    return found["prediction"] - found["truth"]
