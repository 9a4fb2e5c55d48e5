"""GET /stats?by=: quality per group, the spreads and api.toml's rules
(model_service/monitoring/groups.py).

The stop-and-search example is served with MODEL_DIR and its traffic.csv replayed through
its contract (POST /should_search/ with the flat body, then POST /search_result/). What
/stats?by= says is computed again here, independently, from what the test sent: the
probabilities with the pipeline itself, the metrics with sklearn per group (pandas), the
Wilson intervals with scipy's binomtest, the bootstrap by resampling the rows and calling
sklearn on each draw, with the seed groups.py documents. On SQLite, and on PostgreSQL
with TEST_DATABASE_URL. The dashboard's Groups section is checked in Chromium (the
helpers of test_pages.py).
"""

import json
import math
import pickle
import shutil
import tempfile
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import cache

import joblib
import numpy as np
import pandas as pd
import pytest
import requests
from conftest import EXAMPLE, ROOT, TITANIC, LiveServer, service
from scipy.stats import binomtest
from sklearn.datasets import load_diabetes, load_linnerud, load_wine
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    mean_absolute_error,
    precision_score,
    recall_score,
    roc_auc_score,
)
from test_monitoring import metric_samples, sample, store
from test_pages import (  # the browser and its helpers
    CHROMEDRIVER,
    CHROMIUM,
    CHROMIUM_FLAGS,
    assert_only_own_origin,
    by,
    chromium,  # noqa: F401 (a fixture: skips without Chromium)
    dashboard_shown,
    open_page,
    screenshot,
    show_dashboard,
    to_fixed,
    wait_until,
)

from model_service import artifacts
from model_service.monitoring import groups, intervals

TOKEN = "groups-test-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
EXAMPLE_DIR = ROOT / "examples" / "stop_and_search"
THRESHOLD = 0.1
LOW_STATION = "devon-and-cornwall"
ETHNICITY, OBJECT = "Officer-defined ethnicity", "Object of search"
RELATIVE = 1e-9  # the service and this test predict in batches of other sizes
BINARY = ["positive_rate", "precision", "recall", "false_positive_rate", "roc_auc"]
PROFILE = json.loads((EXAMPLE_DIR / "training_profile.json").read_text())
RULES = """
[stats]
min_labelled = 30

[[stats.rules]]
name = "precision in every station"
metric = "precision"
by = "station"
at_least = 0.10

[[stats.rules]]
name = "precision in every station and search objective"
metric = "precision"
by = ["station", "Object of search"]
at_least = 0.10

[[stats.rules]]
name = "success rates level between ethnicities, within every station"
metric = "precision"
by = ["Officer-defined ethnicity"]
within = ["station"]
spread_at_most = 0.10
"""


# ---------------------------------------------------------------------------------------
# The stop-and-search traffic, sent through the contract, and what it must give
# ---------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def fewer_draws(monkeypatch):
    """The service (in this process) and this test draw 10 resamples, not 200: the same
    check of the same draws, and sklearn called 10 times a group instead of 200."""
    monkeypatch.setattr(intervals, "RESAMPLES", 10)


def model_dir(tmp_path, stats=RULES, source=EXAMPLE_DIR):
    """A copy of a model's folder whose api.toml ends with this [stats] table (instead of
    its own: the example's, last in its file)."""
    folder = tmp_path / "model"
    shutil.copytree(source, folder)
    contract = folder / "api.toml"
    brief = contract.read_text().split("\n[stats]")[0] if contract.exists() else ""
    contract.write_text(brief + stats)
    return folder


def serve(database_url, folder, **settings):
    base = {"DATABASE_URL": database_url, "MODEL_DIR": str(folder), "ADMIN_TOKEN": TOKEN}
    return service.create_app(base | settings).test_client()


@cache
def traffic():
    """traffic.csv as the client sends it (JSON: NaN is null), with the pipeline's own
    probability and decision at 0.1, and each row's group in the columns tested."""
    frame = pd.read_csv(EXAMPLE_DIR / "traffic.csv")
    records = json.loads(frame.to_json(orient="records"))
    columns = json.loads((EXAMPLE_DIR / "columns.json").read_text())
    dtypes = pickle.loads((EXAMPLE_DIR / "dtypes.pickle").read_bytes())
    pipeline = joblib.load(EXAMPLE_DIR / "pipeline.pickle")
    frame["p"] = pipeline.predict_proba(frame[columns].astype(dtypes))[:, 1]
    frame["decided"] = frame["p"] >= THRESHOLD
    for column in ["station", OBJECT, ETHNICITY]:
        frame[column] = frame[column].fillna(groups.MISSING)
    frame["Latitude"] = latitude_bins(frame["Latitude"])
    return records, frame


def latitude_bins(values):
    """The profile's bins, cut by pandas: (low, high], then (missing)."""
    column = PROFILE["columns"]["Latitude"]
    edges = [-np.inf, *column["edges"], np.inf]
    cut = pd.cut(values, edges, right=True, labels=column["bins"][:-1])
    return cut.astype(object).where(values.notna(), groups.MISSING)


def replay(client, records):
    """Each search to POST /should_search/ (several at once: the service batches them),
    then each outcome to POST /search_result/. Returns the decisions answered, in the
    order of `records`."""

    def search(record):
        body = {key: value for key, value in record.items() if key != "outcome"}
        return client.post("/should_search/", json=body)

    def result(record):
        body = {"observation_id": record["observation_id"], "outcome": record["outcome"]}
        return client.post("/search_result/", json=body).status_code

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(search, records))
        assert [a.status_code for a in answers] == [200] * len(records), answers[0].json
        assert list(pool.map(result, records)) == [200] * len(records)
    return [a.json["outcome"] for a in answers]


def fill(client, records):
    """The same rows as replay() stores, quicker: one POST /predict-batch (the contract's
    flat items), then the outcomes."""
    items = [{key: value for key, value in r.items() if key != "outcome"} for r in records]
    results = client.post("/predict-batch", json={"observations": items}).json["results"]
    assert [result["status"] for result in results] == [200] * len(records)

    def result(record):
        body = {"observation_id": record["observation_id"], "outcome": record["outcome"]}
        return client.post("/search_result/", json=body).status_code

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(result, records)) == [200] * len(records)


def in_stored_order(client, frame):
    """The frame's rows in the order the service stored them (the bootstrap draws rows by
    their place in that order): concurrent requests are stored in any order."""
    listed = client.get("/list-db-contents?limit=1000", headers=ADMIN).json["predictions"]
    ids = [row["observation_id"] for row in reversed(listed)]
    return frame.set_index("observation_id", drop=False).loc[ids].reset_index(drop=True)


def groups_of(client, by, **query):
    response = client.get("/stats", headers=ADMIN, query_string={"by": by, **query})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.json


# ---------------------------------------------------------------------------------------
# Independent computations
# ---------------------------------------------------------------------------------------


def wilson(successes, trials):
    interval = binomtest(successes, trials).proportion_ci(method="wilson")
    return {"low": float(interval.low), "high": float(interval.high)}


def rate(value, successes, trials):
    return {"value": float(value), **wilson(successes, trials)} if trials else None


def seed_of(labels):
    """The seed groups.py documents: CRC-32 of the group's (column, value) pairs, sorted,
    as JSON."""
    return zlib.crc32(json.dumps(sorted(labels.items())).encode())


def resampled(labels, count, statistic):
    """The percentile interval of statistic(rows drawn) over the documented draws."""
    draws = np.random.default_rng(seed_of(labels)).integers(0, count, (intervals.RESAMPLES, count))
    values = [statistic(rows) for rows in draws]
    values = [value for value in values if value is not None]
    low, high = np.percentile(values, [2.5, 97.5])
    return {"low": float(low), "high": float(high)}


def binary_expected(rows, labels):
    truth, decided, p = (rows[c].to_numpy() for c in ("outcome", "decided", "p"))
    tn, fp, fn, tp = confusion_matrix(truth, decided, labels=[False, True]).ravel().tolist()
    auc = None
    if 0 < truth.sum() < len(truth):

        def auc_of(drawn):
            return roc_auc_score(truth[drawn], p[drawn]) if len(set(truth[drawn])) == 2 else None

        auc = {"value": roc_auc_score(truth, p), **resampled(labels, len(truth), auc_of)}
    return {
        "positive_rate": rate(decided.mean(), tp + fp, len(truth)),
        "precision": rate(precision_score(truth, decided), tp, tp + fp) if tp + fp else None,
        "recall": rate(recall_score(truth, decided), tp, tp + fn) if tp + fn else None,
        "false_positive_rate": rate(fp / (fp + tn), fp, fp + tn) if fp + tn else None,
        "roc_auc": auc,
    }


def precision_expected(rows, labels):
    """binary_expected's precision alone (the rule is about it)."""
    truth, decided = rows["outcome"].to_numpy(), rows["decided"].to_numpy()
    tp, positives = int((truth & decided).sum()), int(decided.sum())
    return {"precision": rate(precision_score(truth, decided), tp, positives)}


def expected_groups(frame, columns, expected=binary_expected, min_labelled=30, bins=None):
    """{(values...): (predictions, labelled, metrics or None)}, with pandas and sklearn,
    in the documented order (ties in a spread go to the first group in that order).

    bins: {numeric column: the names of its bins in the profile's order}.
    """
    bins = {"Latitude": PROFILE["columns"]["Latitude"]["bins"], **(bins or {})}
    found = {}
    pieces = frame.groupby(list(columns), sort=False) if columns else [((), frame)]
    for key, rows in pieces:
        labels = dict(zip(columns, key, strict=True))
        metrics = expected(rows, labels) if len(rows) >= min_labelled else None
        found[tuple(key)] = (len(rows), len(rows), metrics)

    def order(item):  # categories by name, (other) and (missing) last
        return [
            (bins[c].index(v),) if c in bins else (v in special, v == groups.MISSING, v)
            for c, v in zip(columns, item[0], strict=True)
        ]

    special = (groups.OTHER, groups.MISSING)
    return dict(sorted(found.items(), key=order))


def assert_close(actual, expected, path="answer"):
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and set(actual) == set(expected), (path, actual)
        for key in expected:
            assert_close(actual[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, float):
        assert math.isclose(actual, expected, rel_tol=RELATIVE, abs_tol=1e-12), (
            path,
            actual,
            expected,
        )
    else:
        assert actual == expected, (path, actual, expected)


def check_groups(answer, expected, columns, metrics=BINARY):
    assert answer["by"] == list(columns)
    shown = {tuple(g["group"][c] for c in columns): g for g in answer["groups"]}
    assert set(shown) == set(expected)
    for key, (predictions, labelled, figures) in expected.items():
        group = shown[key]
        assert (group["predictions"], group["labelled"]) == (predictions, labelled), key
        if figures is None:  # too small: counts only
            assert group["metrics"] == dict.fromkeys(metrics), key
            assert f"{labelled} labelled row" in group["reason"], key
        else:
            assert_close(group["metrics"], figures, f"group {key}")


def expected_spread(expected, columns, metric, signed=False):
    judged = [(key, f[metric]) for key, (_, _, f) in expected.items() if f and f[metric]]
    if len(judged) < 2:
        return dict.fromkeys(["lowest", "highest", "difference", "ratio"]) | {"groups": len(judged)}
    low_key, low = min(judged, key=lambda pair: pair[1]["value"])
    high_key, high = max(judged, key=lambda pair: pair[1]["value"])
    gap = high["value"] - low["value"]
    return {  # MOVER: each side of the gap from the two intervals
        "groups": len(judged),
        "lowest": {"group": dict(zip(columns, low_key, strict=True)), "value": low["value"]},
        "highest": {"group": dict(zip(columns, high_key, strict=True)), "value": high["value"]},
        "difference": {
            "value": gap,
            "low": gap - math.dist([high["value"], low["high"]], [high["low"], low["value"]]),
            "high": gap + math.dist([high["high"], low["value"]], [high["value"], low["low"]]),
        },
        "ratio": None if signed else low["value"] / high["value"],
    }


# ---------------------------------------------------------------------------------------
# The stop-and-search traffic: one replay per database for every check of it
# ---------------------------------------------------------------------------------------


def test_the_stop_and_search_traffic_group_by_group(database_url, tmp_path):
    """devon-and-cornwall's searches are sent last: until then, a balanced sample."""
    records, frame = traffic()
    folder = model_dir(tmp_path)
    client = serve(database_url, folder)
    others = [r for r in records if r["station"] != LOW_STATION]
    last = [r for r in records if r["station"] == LOW_STATION]
    decided = replay(client, others)
    time.sleep(0.01)
    balanced_until = (datetime.now(UTC) + timedelta(microseconds=1)).isoformat()
    time.sleep(0.01)
    decided += replay(client, last)
    by_id = dict(zip([r["observation_id"] for r in others + last], decided, strict=True))
    assert [by_id[i] for i in frame["observation_id"]] == frame["decided"].tolist()
    frame = in_stored_order(client, frame)

    answers, expected = check_every_group_and_spread(client, frame)
    check_the_precision_rules(answers, expected)
    check_the_balanced_sample(client, balanced_until, len(others))
    check_the_rules_exported_to_prometheus(client, answers[("station",)])
    # With 10 outcomes a group (GROUP_MIN_LABELLED wins over api.toml's 30).
    check_the_spread_rule_within_stations(
        serve(database_url, folder, GROUP_MIN_LABELLED="10"), frame
    )


GROUPINGS = [("station",), ("station", OBJECT), ("Latitude",), (ETHNICITY,), ()]


def check_every_group_and_spread(client, frame):
    """({columns: answer}, {columns: expected groups}) of every grouping, once checked."""
    answers, expected = {}, {}
    for columns in GROUPINGS:
        answer = answers[columns] = groups_of(client, ",".join(columns))
        found = expected[columns] = expected_groups(frame, columns)
        check_groups(answer, found, columns)
        assert (answer["predictions"], answer["labelled"]) == (400, 400)
        assert answer["labelled_left_out"] == 0 and answer["min_labelled"] == 30
        for metric in BINARY:
            assert_close(answer["spreads"][metric], expected_spread(found, columns, metric))
    # A numeric column is cut into the bins of the training profile, in their order.
    bins = [g["group"]["Latitude"] for g in answers[("Latitude",)]["groups"]]
    assert bins == [b for b in PROFILE["columns"]["Latitude"]["bins"] if b in bins]
    # Categories by name, "(missing)" last: the 19 searches without an ethnicity.
    ethnicities = answers[(ETHNICITY,)]["groups"]
    assert [g["group"][ETHNICITY] for g in ethnicities][-1] == groups.MISSING
    assert ethnicities[-1]["predictions"] == 19
    # No grouping: one group of every prediction.
    assert [g["group"] for g in answers[()]["groups"]] == [{}]
    return answers, expected


def check_the_precision_rules(answers, expected):
    station, combined, level = answers[("station",)]["rules"]
    found = expected[("station",)][(LOW_STATION,)][2]["precision"]
    assert found["value"] < 0.1 < found["high"]  # below, but within the noise
    assert station["status"] == "not_met"
    [failing] = station["failing"]
    failing = dict(failing)  # a copy: the answers are compared with one another below
    assert (failing.pop("group"), failing.pop("beyond_noise")) == ({"station": LOW_STATION}, False)
    assert_close(failing, found)
    assert (station["judged"], station["undecided"]) == (8, [])
    # By station and objective, most groups are too small to judge: those are listed.
    small = {k for k, (n, _, _) in expected[("station", OBJECT)].items() if n < 30}
    assert {(u["group"]["station"], u["group"][OBJECT]) for u in combined["undecided"]} == small
    assert [f["group"] for f in combined["failing"]] == [
        {"station": LOW_STATION, OBJECT: "Controlled drugs"}
    ]
    # Within each station, only the White searches reach 30 outcomes: nothing to compare.
    assert level["status"] == "undecided" and level["failing"] == []
    # Every answer checks every rule, whatever it groups by.
    assert all(answer["rules"] == answers[("station",)]["rules"] for answer in answers.values())


def check_the_balanced_sample(client, balanced_until, balanced_rows):
    """Without devon-and-cornwall's searches, every station meets the rule."""
    passed = groups_of(client, "station", until=balanced_until)
    assert passed["predictions"] == balanced_rows
    rule = passed["rules"][0]
    assert (rule["status"], rule["judged"], rule["failing"], rule["undecided"]) == (
        "met",
        7,
        [],
        [],
    )


def check_the_spread_rule_within_stations(client, frame):
    answer = groups_of(client, f"station,{ETHNICITY}")
    assert answer["min_labelled"] == 10
    level = answer["rules"][2]
    expected = expected_groups(frame, ("station", ETHNICITY), precision_expected, 10)
    failing = []
    for station in sorted(frame["station"].unique()):
        inside = {k: v for k, v in expected.items() if k[0] == station and v[2]}
        gap = expected_spread(inside, ("station", ETHNICITY), "precision")
        if gap["difference"] and gap["difference"]["value"] > 0.10:
            failing.append({"within": {"station": station}, **gap})
    assert failing and level["status"] == "not_met"
    assert [f["within"] for f in level["failing"]] == [f["within"] for f in failing]
    for shown, computed in zip(level["failing"], failing, strict=True):
        computed.pop("groups")
        assert_close({k: shown[k] for k in computed}, computed)
        assert shown["beyond_noise"] == (computed["difference"]["low"] > 0.10)


def check_the_rules_exported_to_prometheus(client, answer):
    """/metrics: the rules as the last /stats?by= over every row found them (the windowed
    call of the balanced sample came after, and changed nothing)."""
    version = answer["model"]["version"]

    def exported():
        samples = metric_samples(client.get("/metrics", headers=ADMIN).text)
        checked = sample(samples, "model_rules_checked_timestamp_seconds", model_version=version)
        return checked, {
            status: sample(samples, "model_rules", model_version=version, status=status)
            for status in ("met", "not_met", "undecided")
        }

    checked, counted = exported()
    statuses = [rule["status"] for rule in answer["rules"]]
    assert counted == {status: float(statuses.count(status)) for status in counted}
    assert counted["not_met"] == 2 and abs(checked - time.time()) < 60
    # A window (the dashboard's "last hour") leaves them as they were.
    groups_of(client, "station", since="2000-01-01T00:00:00Z")
    assert exported() == (checked, counted)


# ---------------------------------------------------------------------------------------
# Small groups, intervals and "(missing)", at their boundaries (the Titanic model)
# ---------------------------------------------------------------------------------------

SEX_RULES = """
[[stats.rules]]
name = "precision of each sex"
metric = "precision"
by = "Sex"
at_least = 0.5

[[stats.rules]]
name = "the same share decided positive"
metric = "positive_rate"
by = "Sex"
spread_at_most = 0.05

[[stats.rules]]
name = "precision level between the sexes"
metric = "precision"
by = "Sex"
ratio_at_least = 0.8
"""


def titanic_dir(tmp_path):
    folder = tmp_path / "titanic"
    folder.mkdir()
    for name in ["pipeline.pickle", "columns.json", "dtypes.pickle", "training_profile.json"]:
        shutil.copy(TITANIC / name, folder / name)
    (folder / "api.toml").write_text(SEX_RULES)
    return folder


def test_small_groups_and_intervals_at_their_boundaries(database_url, tmp_path):
    folder = titanic_dir(tmp_path)
    serve(database_url, folder)  # creates the table
    women = [dict(EXAMPLE, Sex="female")] * 30  # all decided 1 (0.9), all survived
    men = [dict(EXAMPLE, Sex="male")] * 29  # all decided 1 (0.9), none survived
    store(women + men, datetime(2026, 3, 1), probabilities=[0.9] * 59, labels=[1] * 30 + [0] * 29)
    nobody = {key: value for key, value in EXAMPLE.items() if key != "Sex"}
    store([nobody], datetime(2026, 3, 2), first_id=100, probabilities=[0.2])  # no Sex at all
    with service.database.atomic():  # and a body that is not even JSON
        service.Prediction.create(
            observation_id=101,
            observation="{oops",
            model_version=artifacts.load_model(folder).version,
            proba=0.5,
            created_at=datetime(2026, 3, 2),
        )

    answer = groups_of(serve(database_url, folder), "Sex")  # at least 30 outcomes a group
    female, male, missing = answer["groups"]
    assert (female["group"], male["group"], missing["group"]) == (
        {"Sex": "female"}, {"Sex": "male"}, {"Sex": groups.MISSING},
    )  # fmt: skip
    assert (missing["predictions"], missing["labelled"]) == (2, 0)
    assert male["metrics"] == dict.fromkeys(BINARY) and male["labelled"] == 29
    assert male["reason"] == "29 labelled rows: a group needs 30 to be judged"
    precision = female["metrics"]["precision"]
    assert_close(precision, {"value": 1.0, **wilson(30, 30)})
    assert precision["high"] == 1.0
    assert female["metrics"]["false_positive_rate"] is female["metrics"]["roc_auc"] is None
    assert "class 0" in female["reason"] and "both classes" in female["reason"]
    assert answer["spreads"]["precision"]["groups"] == 1  # one group: no spread
    assert answer["spreads"]["precision"]["difference"] is None
    at_least, spread, ratio = answer["rules"]
    assert at_least["status"] == "undecided" and at_least["failing"] == []
    assert {u["group"]["Sex"] for u in at_least["undecided"]} == {"male", groups.MISSING}

    # One outcome fewer is enough now (GROUP_MIN_LABELLED wins over the default).
    answer = groups_of(serve(database_url, folder, GROUP_MIN_LABELLED="29"), "Sex")
    male = answer["groups"][1]
    assert_close(male["metrics"]["precision"], {"value": 0.0, **wilson(0, 29)})
    assert male["metrics"]["precision"]["low"] == 0.0
    assert male["metrics"]["recall"] is None  # no survivor among the men
    at_least, spread, ratio = answer["rules"]
    assert [f["group"] for f in at_least["failing"]] == [{"Sex": "male"}]
    assert at_least["failing"][0]["beyond_noise"] is True  # 0 of 29: the interval ends at 0.12
    assert at_least["status"] == "not_met"
    # Both decided positive every time: no spread; the missing group is still too small.
    assert spread["failing"] == [] and spread["status"] == "undecided"
    assert ratio["status"] == "not_met" and ratio["failing"][0]["ratio"] == 0.0
    assert ratio["failing"][0]["beyond_noise"] is True


def test_rules_met_by_every_group(database_url, tmp_path):
    folder = titanic_dir(tmp_path)
    serve(database_url, folder)
    rows = [dict(EXAMPLE, Sex=sex) for sex in ["female", "male"] for _ in range(30)]
    store(rows, datetime(2026, 3, 1), probabilities=[0.9] * 60, labels=[1, 0] * 30)

    answer = groups_of(serve(database_url, folder), "Pclass")

    for rule in answer["rules"]:  # precision 0.5 each, both always decided positive
        assert (rule["status"], rule["judged"], rule["failing"]) == ("met", 2, []), rule
    [second_class] = answer["groups"]  # a number: the bin of the training profile
    assert second_class["group"] == {"Pclass": "(1, 2]"} and second_class["predictions"] == 60


# ---------------------------------------------------------------------------------------
# The other tasks: multiclass and regression
# ---------------------------------------------------------------------------------------


def send(client, observations, truths, field):
    items = [{"id": i, "observation": o} for i, o in enumerate(observations)]
    answer = client.post("/predict-batch", json={"observations": items})
    assert [r["status"] for r in answer.json["results"]] == [200] * len(items)
    for i, truth in enumerate(truths):
        assert client.post("/update", json={"id": i, field: truth}).status_code == 200
    return [result["answer"] for result in answer.json["results"]]


def bin_names(model, column):
    profile = json.loads((ROOT / "examples" / model / "training_profile.json").read_text())
    return profile["columns"][column]["edges"], profile["columns"][column]["bins"]


def binned(model, column, values):
    edges, names = bin_names(model, column)
    labels = [name for name in names if name != groups.MISSING]
    return pd.cut(pd.Series(values), [-np.inf, *edges, np.inf], labels=labels).astype(str)


def test_multiclass_groups_have_accuracy_and_macro_f1(database_url, tmp_path):
    data = load_wine(as_frame=True)
    names = [str(data.target_names[code]) for code in data.target]
    truths = [n if i % 4 else names[(i + 50) % len(names)] for i, n in enumerate(names)]
    client = serve(database_url, ROOT / "examples" / "wine", GROUP_MIN_LABELLED="12")
    results = send(client, json.loads(data.data.to_json(orient="records")), truths, "true_class")
    frame = pd.DataFrame({"true": truths, "label": [r["label"] for r in results]})
    frame["alcohol"] = binned("wine", "alcohol", data.data["alcohol"])

    def expected(rows, labels):
        true, label = rows["true"].to_numpy(), rows["label"].to_numpy()
        right = int((true == label).sum())

        def f1_of(drawn):
            return f1_score(true[drawn], label[drawn], average="macro", zero_division=0.0)

        macro = f1_score(true, label, average="macro", zero_division=0.0)
        return {
            "accuracy": rate(accuracy_score(true, label), right, len(true)),
            "macro_f1": {"value": macro, **resampled(labels, len(true), f1_of)},
        }

    bins = {"alcohol": bin_names("wine", "alcohol")[1]}
    found = expected_groups(frame, ("alcohol",), expected, min_labelled=12, bins=bins)
    assert sum(figures is not None for _, _, figures in found.values()) >= 2
    answer = groups_of(client, "alcohol")
    check_groups(answer, found, ("alcohol",), ["accuracy", "macro_f1"])
    for metric in ["accuracy", "macro_f1"]:
        assert_close(answer["spreads"][metric], expected_spread(found, ("alcohol",), metric))


@pytest.mark.parametrize("model", ["diabetes", "linnerud"])
def test_regression_groups_have_mae_and_mean_error(model, database_url):
    if model == "diabetes":
        data = load_diabetes(as_frame=True, scaled=False)
        features = data.data.astype({"age": "int64", "sex": "int64"}).iloc[:120]
        truths, targets, column = data.target.iloc[:120].tolist(), [None], "sex"
    else:
        data = load_linnerud(as_frame=True)
        features = data.data.astype("int64")
        truths = json.loads(data.target[["Weight", "Waist"]].to_json(orient="records"))
        targets, column = ["Weight", "Waist"], "Chins"
    client = serve(database_url, ROOT / "examples" / model, GROUP_MIN_LABELLED="4")
    results = send(client, json.loads(features.to_json(orient="records")), truths, "true_value")
    frame = pd.DataFrame({column: binned(model, column, features[column])})
    for target in targets:  # the error of each target: prediction - truth
        guess = [r["prediction"] if target is None else r["prediction"][target] for r in results]
        truth = truths if target is None else [t[target] for t in truths]
        frame[f"error {target}"] = np.array(guess, dtype=float) - np.array(truth, dtype=float)

    def expected(rows, labels):
        found = {}
        for target in targets:
            suffix, errors = "" if target is None else f".{target}", rows[f"error {target}"]
            errors = errors.to_numpy()
            zeros = np.zeros(len(errors))
            found["mae" + suffix] = {
                "value": mean_absolute_error(zeros, errors),
                **resampled(labels, len(errors), lambda d, e=errors: np.abs(e[d]).mean()),
            }
            found["mean_error" + suffix] = {
                "value": float(errors.mean()),
                **resampled(labels, len(errors), lambda d, e=errors: float(e[d].mean())),
            }
        return found

    bins = {column: bin_names(model, column)[1]}
    found = expected_groups(frame, (column,), expected, min_labelled=4, bins=bins)
    answer = groups_of(client, column)
    suffixes = [""] if targets == [None] else [f".{t}" for t in targets]
    metrics = [name + suffix for suffix in suffixes for name in ("mae", "mean_error")]
    assert answer["metrics"] == metrics
    check_groups(answer, found, (column,), metrics)
    for metric in metrics:
        signed = metric.startswith("mean_error")
        assert_close(answer["spreads"][metric], expected_spread(found, (column,), metric, signed))


# ---------------------------------------------------------------------------------------
# Bad input: at each request, and in api.toml at start-up
# ---------------------------------------------------------------------------------------


def test_a_bad_by_is_a_422_that_names_it(tmp_path):
    client = serve(f"sqlite:///{tmp_path / 'p.db'}", model_dir(tmp_path))
    for columns, named in [
        ("stations", "'stations' is not a column"),
        ("station,Gender,Type,Legislation", "names 4 columns; at most 3"),
        ("station,,Gender", "empty column name"),
        ("station,station", "'station' twice"),
    ]:
        response = client.get("/stats", headers=ADMIN, query_string={"by": columns})
        assert response.status_code == 422, columns
        assert named in response.json["error"], (columns, response.json)
    assert client.get("/stats", query_string={"by": "station"}).status_code == 404  # no token


@pytest.mark.parametrize(
    ("stats", "named"),
    [
        ('[stats]\ncolour = 1\n', "[stats] 'colour' is not a key"),
        ("[stats]\nmin_labelled = 0\n", "min_labelled must be a whole number"),
        ('[[stats.rules]]\nmetric = "precision"\nby = "station"\n', "exactly one of"),
        ('[[stats.rules]]\nmetric = "lift"\nby = "station"\nat_least = 1\n', "metric 'lift'"),
        ('[[stats.rules]]\nmetric = "recall"\nby = "stations"\nat_least = 1\n', "'stations'"),
        ('[[stats.rules]]\nmetric = "recall"\nby = "station"\nat_least = 1\nsize = 3\n',
         "unknown key 'size'"),
        ('[[stats.rules]]\nmetric = "recall"\nby = "Gender"\nwithin = "station"\n'
         "at_least = 0.1\n", "within compares groups"),
        ('[[stats.rules]]\nmetric = "recall"\nby = ["a", "b"]\nwithin = ["c", "d"]\n'
         "spread_at_most = 0.1\n", "names 4 columns"),
    ],
)  # fmt: skip
def test_a_bad_stats_table_stops_the_start_up_naming_the_key(stats, named, tmp_path):
    folder = model_dir(tmp_path, stats="\n" + stats)
    with pytest.raises(service.StartupError, match=None) as raised:
        serve(f"sqlite:///{tmp_path / 'p.db'}", folder)
    assert named in str(raised.value), str(raised.value)


def test_a_bad_group_min_labelled_stops_the_start_up(tmp_path, monkeypatch):
    monkeypatch.setenv("GROUP_MIN_LABELLED", "many")
    with pytest.raises(service.StartupError, match="GROUP_MIN_LABELLED='many'"):
        serve(f"sqlite:///{tmp_path / 'p.db'}", model_dir(tmp_path))


def test_a_number_needs_the_training_profile_for_its_bins(tmp_path):
    folder = titanic_dir(tmp_path)
    (folder / "training_profile.json").unlink()
    client = serve(f"sqlite:///{tmp_path / 'p.db'}", folder)
    response = client.get("/stats", headers=ADMIN, query_string={"by": "Sex,Pclass"})
    assert response.status_code == 422
    assert "'Pclass' is numeric" in response.json["error"]
    assert "training_profile.json" in response.json["error"]  # the profile's note: why not
    assert groups_of(client, "Sex")["groups"] == []  # a category needs no profile
    (folder / "api.toml").write_text(
        '[[stats.rules]]\nmetric = "recall"\nby = "Age"\nat_least = 0.5\n'
    )
    with pytest.raises(service.StartupError, match="'Age' is numeric"):
        serve(f"sqlite:///{tmp_path / 'p.db'}", folder)


def test_extra_columns_group_by_fields_the_model_does_not_read(tmp_path):
    folder = titanic_dir(tmp_path)
    (folder / "api.toml").write_text('[stats]\nextra_columns = ["shift"]\n')
    client = serve(f"sqlite:///{tmp_path / 'p.db'}", folder)
    for i, shift in enumerate(["night", "day", None]):
        body = {"id": i, "observation": dict(EXAMPLE, shift=shift) if shift else EXAMPLE}
        assert client.post("/predict", json=body).status_code == 200
    answer = groups_of(client, "shift")
    assert [g["group"]["shift"] for g in answer["groups"]] == ["day", "night", groups.MISSING]
    assert "shift" in answer["columns"]


# ---------------------------------------------------------------------------------------
# The dashboard's Groups section, in Chromium
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """gunicorn serving the stop-and-search model with its rules, on a database filled in
    this process first (quicker than through the server)."""
    folder = model_dir(tmp_path_factory.mktemp("dashboard"))
    database = f"sqlite:///{folder.parent / 'predictions.db'}"
    fill(serve(database, folder), traffic()[0])
    env = {"ADMIN_TOKEN": TOKEN, "MODEL_DIR": str(folder)}
    server = LiveServer(database, workers=1, env=env).wait_until_ready()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser(request, site):
    """One Chromium for the module, as test_pages.py starts it; it quits before the server."""
    request.getfixturevalue("chromium")  # skips (or fails in CI) without Chromium
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.TemporaryDirectory(prefix="chromium-")
    options.add_argument(f"--user-data-dir={profile.name}")
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_window_size(1000, 900)
    driver.get("about:blank")
    driver.get_log("performance")
    yield driver
    driver.quit()
    profile.cleanup()


def table_rows(driver, table_id):
    rows = driver.find_elements(by("CSS_SELECTOR"), f"#{table_id} tbody tr")
    return [[cell.text for cell in row.find_elements(by("CSS_SELECTOR"), "th, td")] for row in rows]


def groups_shown(driver, first_header):
    """Wait until the groups table is headed by these columns."""
    wait_until(
        driver,
        lambda: (
            driver.find_element(by("ID"), "groups-results").is_displayed()
            and driver.find_element(by("CSS_SELECTOR"), "#groups-table thead th").get_attribute(
                "textContent"
            )
            == first_header
        ),
        f"no groups by {first_header}",
    )


@pytest.mark.slow
def test_the_dashboard_shows_the_groups_and_what_fails_first(browser, site, tmp_path):
    from selenium.webdriver.support.ui import Select

    open_page(browser, site, "/monitor")
    show_dashboard(browser, TOKEN)
    dashboard_shown(browser)
    groups_shown(browser, "station")  # the first rule's columns, shown at once

    rules = table_rows(browser, "rules-table")
    assert [row[1] for row in rules] == ["not met", "not met", "undecided"]
    assert (
        rules[0][0]
        == "precision in every station\nprecision (success rate) at least 0.1 in each station"
    )
    assert f"fails: {LOW_STATION}: 0.034" in rules[0][2] and "could be chance" in rules[0][2]
    groups_rows = table_rows(browser, "groups-table")
    assert groups_rows[0][:2] == [LOW_STATION, "fails: precision in every station"]
    assert [row[1] for row in groups_rows[1:]] == ["judged"] * 7
    answer = requests.get(f"{site.url}/stats", params={"by": "station"}, headers=ADMIN).json()
    devon = next(g for g in answer["groups"] if g["group"]["station"] == LOW_STATION)
    precision = devon["metrics"]["precision"]
    low, high = (to_fixed(precision[end], 3) for end in ("low", "high"))
    shown = f"{to_fixed(precision['value'], 3)}\n{low} to {high}"  # the interval under it
    assert groups_rows[0][4 + BINARY.index("precision")] == shown
    spreads = table_rows(browser, "spreads-table")
    assert [row[0] for row in spreads][:2] == ["share decided positive", "precision (success rate)"]

    # The page's /stats?by= over every row set the gauges, across gunicorn's processes.
    scraped = metric_samples(requests.get(f"{site.url}/metrics", headers=ADMIN).text)
    version = answer["model"]["version"]
    assert sample(scraped, "model_rules", model_version=version, status="not_met") == 2

    Select(browser.find_element(by("ID"), "group-by-1")).select_by_value(ETHNICITY)
    browser.find_element(by("CSS_SELECTOR"), "#groups-form button").click()
    groups_shown(browser, ETHNICITY)
    assert table_rows(browser, "groups-table")[-1][1] == "not judged: too few outcomes"

    browser.set_window_size(390, 844)  # a phone: each row becomes a card
    try:
        wide = browser.execute_script(
            "return document.documentElement.scrollWidth > window.innerWidth"
        )
        assert not wide, "the page is wider than a phone"
        label = browser.execute_script(
            "const cell = document.querySelector('#groups-table tbody td');"
            "return getComputedStyle(cell, '::before').content"
        )
        assert label == '"status: "'
        screenshot(browser, tmp_path, "groups-phone")
    finally:
        browser.set_window_size(1000, 900)
    assert_only_own_origin(browser, site)
