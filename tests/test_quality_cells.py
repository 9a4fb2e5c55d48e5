"""/stats beyond EXACT_LABELLED_ROWS labelled rows: a classifier's quality from the sums
kept per hour (monitoring/quality_cells.py) equals what the labelled rows themselves give
(scikit-learn's), but ROC AUC, which comes from fine score bins within its stated bound;
and the bound holds on adversarial scores (every score in one bin, many ties)."""

import math
import shutil
from datetime import datetime, timedelta

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from test_stats_tasks import ADMIN, MODELS, send, serve

from model_service import store
from model_service.monitoring import quality_cells, stats
from model_service.monitoring.quality_cells import Sums, auc_bin, auc_of


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
