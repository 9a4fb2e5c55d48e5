"""/stats beyond EXACT_LABELLED_ROWS labelled rows: a classifier's quality from the sums
kept per hour (monitoring/quality_cells.py) equals what the labelled rows themselves give
(scikit-learn's), but ROC AUC, which comes from fine score bins within its stated bound;
and the bound holds on adversarial scores (every score in one bin, many ties). A
regressor's (monitoring/regression_cells.py) too, R² exactly even when the true values are
large beside their spread, the error quantiles and bins from the latest labelled rows."""

import math
import shutil
from datetime import datetime, timedelta
from fractions import Fraction

import numpy as np
import pytest
from sklearn.metrics import (
    mean_absolute_error,
    r2_score,
    roc_auc_score,
    root_mean_squared_error,
)
from test_openapi import check_against_spec
from test_stats_tasks import ADMIN, MODELS, send, serve

from model_service import store
from model_service.monitoring import quality_cells, regression_cells, stats
from model_service.monitoring.quality_cells import Sums, auc_bin, auc_of
from model_service.monitoring.regression_cells import (
    add_regression_sums,
    exact_totals,
    target_metrics,
)
from model_service.monitoring.reports import ERROR_QUANTILES


def close(actual, expected, path=""):
    """Equal, numbers to a relative 1e-9 (sums in another order)."""
    if isinstance(expected, dict):
        assert set(actual) == set(expected), path
        for key in expected:
            close(actual[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert len(actual) == len(expected), path
        for index, (a, e) in enumerate(zip(actual, expected, strict=True)):
            close(a, e, f"{path}[{index}]")
    elif isinstance(expected, float) and isinstance(actual, float):
        assert math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-15), path
    else:
        assert actual == expected, path


@pytest.mark.parametrize("name", ["titanic", "wine"])
def test_the_sums_give_what_the_rows_give(name, database_url, monkeypatch):
    model_dir, observations, truths = MODELS[name]()
    app, client = serve(database_url, model_dir)
    field = app.config["MODEL"].task.truth_field
    send(client, 0, observations, truths, field)
    # Corrected labels: the sums must move the row from one cell to another.
    for i in range(1, 40, 4):
        client.post("/update", json={"id": i, field: truths[(i + 1) % len(truths)]})
    from_rows = client.get("/stats", headers=ADMIN).json
    monkeypatch.setattr(quality_cells, "READ_LABELLED_ROWS", 0)
    monkeypatch.setattr(quality_cells, "EXACT_LABELLED_ROWS", 0)
    from_sums = client.get("/stats", headers=ADMIN).json
    metrics = from_sums["metrics"]
    if name == "titanic":
        bound = metrics.pop("roc_auc_error_bound")
        assert 0 <= bound <= quality_cells.AUC_ERROR_LIMIT
        assert abs(metrics["roc_auc"] - from_rows["metrics"]["roc_auc"]) <= bound + 1e-12
        metrics["roc_auc"] = from_rows["metrics"]["roc_auc"]
    close(from_sums, from_rows)


def auc_bound_holds(truth, score):
    """auc_of over the bins of these scores: within its bound of scikit-learn's."""
    sums = Sums()
    for b, t, s in zip(auc_bin(score), truth, score, strict=True):
        sums.add(f"A:{b}:{int(t)}", 1, lo=float(s), hi=float(s))
    auc, bound = auc_of(sums)
    assert abs(auc - roc_auc_score(truth, score)) <= bound + 1e-12
    return auc, bound


def test_the_auc_bound_holds_on_adversarial_scores():
    rng = np.random.default_rng(7)
    truth = rng.integers(0, 2, 2000).astype(bool)
    # Every score in one bin, all different: nothing is known of their order but the bound.
    one_bin = 0.5 + rng.random(2000) * 0.0002 * truth  # all in [0.5, 0.5 + 1 / 4096)
    _, bound = auc_bound_holds(truth, one_bin)
    assert bound == pytest.approx(0.5)
    # Many ties: equal scores within a bin are ties, exactly, whatever their classes.
    ties = rng.choice([0.1, 0.2, 0.2000001, 0.7], 2000)
    auc, bound = auc_bound_holds(truth, ties)
    assert bound > 0  # 0.2 and 0.2000001 share a bin
    assert auc_bound_holds(truth, rng.choice([0.1, 0.4, 0.9], 2000))[1] == 0
    # Spread scores: the bound is small, and the error smaller.
    spread = np.clip(rng.normal(0.4 + 0.2 * truth, 0.2), 0, 1)
    assert auc_bound_holds(truth, spread)[1] < quality_cells.AUC_ERROR_LIMIT


@pytest.mark.parametrize("bins", [4096, 16])
def test_an_auc_from_bins_is_made_exact_by_the_rows(bins, tmp_path, monkeypatch):
    """120 labelled rows, 100 read at most: with fine bins, the rows of the few bins that
    hold several scores are read; with 16 bins, too many: every labelled row is read."""
    model_dir, observations, truths = MODELS["titanic"]()
    monkeypatch.setattr(quality_cells, "AUC_BINS", bins)
    app, client = serve(f"sqlite:///{tmp_path / 'p.db'}", model_dir)
    send(client, 0, observations, truths, "true_class")
    expected = client.get("/stats", headers=ADMIN).json["metrics"]["roc_auc"]
    monkeypatch.setattr(quality_cells, "READ_LABELLED_ROWS", 0)
    monkeypatch.setattr(quality_cells, "EXACT_LABELLED_ROWS", 100)
    monkeypatch.setattr(quality_cells, "AUC_ERROR_LIMIT", 0)  # any bound: made exact
    metrics = client.get("/stats", headers=ADMIN).json["metrics"]
    assert math.isclose(metrics["roc_auc"], expected, rel_tol=1e-9)
    assert metrics["roc_auc_error_bound"] == 0


GROUPED = {
    "titanic": ('groups = [["Sex", "Pclass"]]', "Pclass,Sex", "precision"),
    "wine": ('groups = [["alcohol"]]', "alcohol", "accuracy"),
    "diabetes": ('groups = [["sex"]]', "sex", "mae"),
}


@pytest.mark.parametrize("name", list(GROUPED))
def test_a_declared_grouping_from_the_sums_gives_what_the_rows_give(
    name, database_url, tmp_path, monkeypatch
):
    model_dir, observations, truths = MODELS[name]()
    declared, by, metric = GROUPED[name]
    folder = shutil.copytree(model_dir, tmp_path / "model")
    rule = f'[[stats.rules]]\nmetric = "{metric}"\nby = "{by.split(",")[0]}"\nat_least = 0.5\n'
    (folder / "api.toml").write_text(f"[stats]\nmin_labelled = 5\n{declared}\n\n{rule}")
    app, client = serve(database_url, folder)
    field = app.config["MODEL"].task.truth_field
    send(client, 0, observations, truths, field)
    client.post("/update", json={"id": 1, field: truths[2]})  # a corrected label
    from_rows = client.get("/stats", headers=ADMIN, query_string={"by": by}).json
    monkeypatch.setattr(stats, "ROW_PATH_ROWS", 0)
    from_sums = client.get("/stats", headers=ADMIN, query_string={"by": by}).json
    exact = {"positive_rate", "precision", "recall", "false_positive_rate", "accuracy"}
    for mine, theirs in zip(from_sums["groups"], from_rows["groups"], strict=True):
        for key, figure in theirs["metrics"].items():
            found = mine["metrics"][key]
            if figure is None or key in exact:
                close(found, figure, f"{theirs['group']}.{key}")  # counts: Wilson, exactly
            else:  # a bootstrap from the cells: the value, and an interval around it
                assert found["low"] <= found["value"] <= found["high"]
                tolerance = 0.002 if key == "roc_auc" else 1e-9  # the AUC bins' bound
                assert math.isclose(
                    found["value"], figure["value"], rel_tol=1e-9, abs_tol=tolerance
                )
        mine["metrics"] = theirs["metrics"]
    assert [r["status"] for r in from_sums["rules"]] == [r["status"] for r in from_rows["rules"]]
    for key in ("by", "predictions", "labelled", "labelled_left_out", "min_labelled"):
        assert from_sums[key] == from_rows[key], key
    assert [g["group"] for g in from_sums["groups"]] == [g["group"] for g in from_rows["groups"]]


@pytest.mark.parametrize("name", ["titanic", "diabetes"])
def test_daily_quality_is_each_days_accuracy_or_mae(name, tmp_path, monkeypatch):
    """The rows of three days: /stats's daily, what /monitor's chart draws, per day."""
    model_dir, observations, truths = MODELS[name]()
    app, client = serve(f"sqlite:///{tmp_path / 'p.db'}", model_dir)
    field = app.config["MODEL"].task.truth_field
    start = datetime(2026, 3, 1, 23, 30)
    for i, observation in enumerate(observations[:60]):
        when = start + timedelta(hours=i // 20 * 12)  # 20 rows at a time, 12 hours apart
        monkeypatch.setattr(store, "utc_now", lambda when=when: when)
        client.post("/predict", json={"id": i, "observation": observation})
        if i % 3:
            client.post("/update", json={"id": i, field: truths[i]})
    daily = client.get("/stats", headers=ADMIN).json["daily"]
    rows = client.get("/list-db-contents?limit=1000", headers=ADMIN).json["predictions"]
    days = {}
    for row in rows:
        days.setdefault(row["created_at"][:10], []).append(row)
    assert [d["day"] for d in daily] == sorted(days)
    for entry in daily:
        found = days[entry["day"]]
        labelled = [row for row in found if row[field] is not None]
        assert (entry["predictions"], entry["labelled"]) == (len(found), len(labelled))
        if name == "titanic":
            right = [row["prediction"]["label"] == row[field] for row in labelled]
            expected = sum(right) / len(right)
        else:
            expected = np.mean([abs(row["prediction"]["value"] - row[field]) for row in labelled])
        assert math.isclose(entry["metric"]["value"], expected, rel_tol=1e-9)
        assert entry["metric"]["low"] <= expected <= entry["metric"]["high"]


# ---------------------------------------------------------------------------------------
# A regressor (regression_cells.py)
# ---------------------------------------------------------------------------------------


def offset(truths):
    """True values near a million, spread over about 0.3: Σy² - (Σy)² / n in floats would
    keep a digit or two of the spread, not the 9 that a relative 1e-9 needs."""
    return [1e6 + t / 1000 for t in truths]


REGRESSION_CASES = {  # name: (model, the true values sent, those of the corrections)
    "diabetes": ("diabetes", lambda truths: truths, None),
    "linnerud": ("linnerud", lambda truths: truths, None),
    "offset": ("diabetes", offset, None),
    "all equal": ("diabetes", lambda truths: truths, 1e6 + 0.1),  # every row corrected to it
}


def checked_stats(client, app):
    answer = client.get("/stats", headers=ADMIN)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    check_against_spec(answer, "/stats", "GET", app.config["MODEL"])
    return answer.json


def stored_outcomes(client, task):
    """(truth, prediction): rows x targets of the labelled rows, as /list-db-contents has
    them, in the order they were predicted (created_at, then id)."""
    rows = client.get("/list-db-contents?limit=1000", headers=ADMIN).json["predictions"]
    rows = sorted(rows, key=lambda row: (row["created_at"], row["id"]))
    names = task.targets if task.width > 1 else None
    labelled = [row for row in rows if row[task.truth_field] is not None]
    truth = [
        [row[task.truth_field][n] for n in names] if names else [row[task.truth_field]]
        for row in labelled
    ]
    prediction = [
        [row["prediction"][n] for n in names] if names else [row["prediction"]["value"]]
        for row in labelled
    ]
    return np.array(truth, dtype=float), np.array(prediction, dtype=float)


def assert_sklearn(metrics, truth, prediction):
    """MAE, RMSE, R² (null when every true value is the same) and the mean error of one
    target, against scikit-learn and numpy on the stored rows, to a relative 1e-9."""
    expected = {
        "mae": mean_absolute_error(truth, prediction),
        "rmse": root_mean_squared_error(truth, prediction),
        "r2": r2_score(truth, prediction) if np.ptp(truth) > 0 else None,
        "mean": (prediction - truth).mean(),
    }
    found = {key: metrics[key] for key in ("mae", "rmse", "r2")}
    found["mean"] = metrics["errors"]["mean"]
    close(found, {key: None if v is None else float(v) for key, v in expected.items()})


@pytest.mark.parametrize("case", list(REGRESSION_CASES))
def test_a_regressors_sums_give_what_the_rows_give(case, database_url, monkeypatch):
    """Through the table and both databases, labels corrected: MAE, RMSE, R² and the mean
    error of every target as scikit-learn's on the stored rows, and the whole answer as the
    rows' below the limit (all its rows being the latest, the quantiles and bins too)."""
    name, true_values, corrected = REGRESSION_CASES[case]
    model_dir, observations, truths = MODELS[name]()
    truths = true_values(truths)
    app, client = serve(database_url, model_dir)
    task = app.config["MODEL"].task
    labelled = send(client, 0, observations, truths, task.truth_field)
    # Corrected labels: the sums must take the old true value out exactly.
    for i in labelled if corrected is not None else range(1, 40, 4):
        value = corrected if corrected is not None else truths[(i + 1) % len(truths)]
        client.post("/update", json={"id": i, task.truth_field: value})
    from_rows = checked_stats(client, app)
    monkeypatch.setattr(quality_cells, "READ_LABELLED_ROWS", 0)
    monkeypatch.setattr(quality_cells, "EXACT_LABELLED_ROWS", 0)
    from_sums = checked_stats(client, app)

    truth, prediction = stored_outcomes(client, task)
    metrics = from_sums["metrics"]
    per_target = metrics["targets"] if task.width > 1 else {"value": metrics}
    for k, found in enumerate(per_target.values()):
        assert_sklearn(found, truth[:, k], prediction[:, k])
        # Every labelled row is among the latest LATEST_ROWS: the same quantiles and bins.
        assert found["errors"].pop("from_latest_rows") == len(truth)
    if corrected is not None:
        assert metrics["r2"] is None and metrics["reason"].startswith("r2 needs two")
    close(from_sums, from_rows)


def test_the_error_quantiles_and_bins_past_the_limit_are_the_latest_rows(tmp_path, monkeypatch):
    """Rows predicted the latest first (their ids in the other order): the quantiles and bins
    are those of the LATEST_ROWS labelled rows predicted last, the mean over every row."""
    model_dir, observations, truths = MODELS["diabetes"]()
    app, client = serve(f"sqlite:///{tmp_path / 'p.db'}", model_dir)
    start = datetime(2026, 3, 1, 12, 0)
    for i, observation in enumerate(observations[:60]):
        monkeypatch.setattr(store, "utc_now", lambda i=i: start - timedelta(minutes=i))
        client.post("/predict", json={"id": i, "observation": observation})
        if i % 3:
            client.post("/update", json={"id": i, "true_value": truths[i]})
    monkeypatch.setattr(quality_cells, "READ_LABELLED_ROWS", 0)
    monkeypatch.setattr(quality_cells, "EXACT_LABELLED_ROWS", 0)
    monkeypatch.setattr(regression_cells, "LATEST_ROWS", 15)
    errors = checked_stats(client, app)["metrics"]["errors"]

    truth, prediction = stored_outcomes(client, app.config["MODEL"].task)
    every = (prediction - truth)[:, 0]
    latest = every[-15:]
    counts, edges = np.histogram(latest, bins=10)
    assert errors["from_latest_rows"] == 15
    assert math.isclose(errors["mean"], every.mean(), rel_tol=1e-9)
    close(
        errors["quantiles"],
        [{"q": q, "value": float(np.quantile(latest, q))} for q in ERROR_QUANTILES],
    )
    close(
        errors["bins"],
        [
            {"low": float(low), "high": float(high), "count": int(n)}
            for low, high, n in zip(edges[:-1], edges[1:], counts, strict=True)
        ],
    )


def test_a_true_value_beyond_the_exact_sums_makes_stats_read_the_rows(tmp_path, monkeypatch):
    """A true value of 1e130 (beyond 2**400): its cell says so, and /stats reads every
    labelled row, as below the limit (no from_latest_rows); once corrected, the sums again."""
    model_dir, observations, truths = MODELS["diabetes"]()
    app, client = serve(f"sqlite:///{tmp_path / 'p.db'}", model_dir)
    sent = [1e130 if i == 5 else t for i, t in enumerate(truths[:40])]
    send(client, 0, observations[:40], sent, "true_value")
    from_rows = checked_stats(client, app)
    monkeypatch.setattr(quality_cells, "READ_LABELLED_ROWS", 0)
    monkeypatch.setattr(quality_cells, "EXACT_LABELLED_ROWS", 0)
    assert checked_stats(client, app) == from_rows
    assert "from_latest_rows" not in from_rows["metrics"]["errors"]
    client.post("/update", json={"id": 5, "true_value": truths[5]})
    assert checked_stats(client, app)["metrics"]["errors"]["from_latest_rows"] == 30


def sums_of(truth, prediction, corrections=()):
    """The cells of these rows in chunks (as rollups.py adds them), each correction (row,
    new truth row) taking the row's cells out and adding its new ones (on_row_labelled)."""
    sums = Sums()
    for start in range(0, len(truth), 997):
        add_regression_sums(sums, truth[start : start + 997], prediction[start : start + 997])
    for i, new in corrections:
        before = Sums()
        add_regression_sums(before, truth[i : i + 1], prediction[i : i + 1])
        for name, (n, s, q, _, _) in before.items():
            sums.add(name, -n, -s, -q)
        truth[i] = new
        add_regression_sums(sums, truth[i : i + 1], prediction[i : i + 1])
    return sums


def metrics_of(sums, truth, prediction):
    totals, errors = exact_totals(sums, truth.shape[1]), prediction - truth
    return [target_metrics(totals[k], len(truth), errors[:, k]) for k in range(truth.shape[1])]


def spread_data(center, spread, rows=20_000):
    """Three targets: the true values of the first near `center`, spread little; and the
    same rows labelled wrong first (the first 50), corrected in the sums."""
    rng = np.random.default_rng(11)
    truth = np.column_stack(
        [center + spread * rng.normal(size=rows), rng.normal(size=rows), rng.exponential(size=rows)]
    )
    prediction = truth + rng.normal(size=truth.shape) * [spread * 0.3, 0.5, 0.1] + 0.01
    wrong = truth.copy()
    wrong[:50] += rng.normal(size=(50, 3)) * 1e3
    sums = sums_of(wrong, prediction, [(i, truth[i]) for i in range(50)])
    return truth, prediction, metrics_of(sums, truth, prediction)


@pytest.mark.parametrize("center, spread", [(0.0, 1.0), (1e6, 1e-3), (-3e8, 2.0), (1e-5, 1e-12)])
def test_r2_from_the_sums_keeps_every_digit_of_the_spread(center, spread):
    """R² and the rest as scikit-learn's to a relative 1e-9, after labels corrected, where a
    float Σy² - (Σy)² / n is off by 4 % to 400 times the spread (every center but 0)."""
    truth, prediction, found = spread_data(center, spread)
    naive = (truth[:, 0] ** 2).sum() - truth[:, 0].sum() ** 2 / len(truth)
    spread_in_floats = ((truth[:, 0] - truth[:, 0].mean()) ** 2).sum()
    if center:
        assert not math.isclose(naive, spread_in_floats, rel_tol=0.01)  # sums of floats
    for k, metrics in enumerate(found):
        assert_sklearn(metrics, truth[:, k], prediction[:, k])


def exact_r2(truth, prediction):
    """R² in fractions: of the float errors, as the sums take them, and exact true values."""
    y = [Fraction(v) for v in truth]
    mean = sum(y) / len(y)
    squares = sum(Fraction(float(e)) ** 2 for e in prediction - truth)
    return float(1 - squares / sum((v - mean) ** 2 for v in y))


def test_r2_from_the_sums_is_exact_where_floats_are_not():
    """True values near 1e12 spread by 0.01 (a float's step there is 1.2e-4): scikit-learn's
    R² is off in the fifth digit (its mean is rounded), that of the sums is the exact one."""
    truth, prediction, found = spread_data(1e12, 1e-2)
    expected = exact_r2(truth[:, 0], prediction[:, 0])
    assert found[0]["r2"] == expected
    assert not math.isclose(r2_score(truth[:, 0], prediction[:, 0]), expected, rel_tol=1e-9)


def test_every_true_value_the_same_gives_no_r2_exactly():
    """Equal true values, each labelled otherwise first: the spread from the sums is 0
    exactly, so R² is null as below the limit; one true value apart by one float step gives
    an R², the exact one."""
    truth = np.full((300, 1), 1e6 + 0.1)
    prediction = truth + np.linspace(-1, 1, 300)[:, None]
    wrong = truth + np.arange(300)[:, None] * 0.37
    sums = sums_of(wrong, prediction, [(i, truth[i]) for i in range(300)])
    (totals,) = exact_totals(sums, 1)
    assert totals["yy"] - totals["y"] ** 2 / len(truth) == 0
    (found,) = metrics_of(sums, truth, prediction)
    assert_sklearn(found, truth[:, 0], prediction[:, 0])  # r2 None, as the rows give
    other = truth.copy()
    other[7] = np.nextafter(other[7], math.inf)
    (found,) = metrics_of(sums_of(other.copy(), prediction), other, prediction)
    assert found["r2"] == exact_r2(other[:, 0], prediction[:, 0])
