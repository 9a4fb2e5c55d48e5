"""api.toml [predict] invalid = "as_missing": an unreadable feature value is scored as missing.

The tutorial's model (examples/titanic) served from a folder with that api.toml: each bad
value is answered 200 with the pipeline's own prediction for the value missing (computed
here with pandas), the row records which fields were replaced and why, /stats and /metrics
count them, and what cannot be answered (a broken body, a bad id...) stays an error. The
start-up check refuses a pipeline that cannot take a missing value, naming the column.
"""

import io
import json
import math
import pickle

import joblib
import numpy as np
import pandas as pd
import pytest
from conftest import EXAMPLE, ROOT, TITANIC, same_probability, service
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from test_contract import folder_with
from test_monitoring import metric_samples, sample
from test_openapi import check_against_spec
from test_smoke_check import InProcessServer, lines_starting

from clients import smoke_check
from model_service import artifacts, parsing, scoring, tasks, web
from model_service.monitoring import drift

TOKEN = "as-missing-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
AS_MISSING = '[predict]\ninvalid = "as_missing"\n'

# (what the observation changes, the record of what was replaced: None when nothing was).
CASES = [
    ({"Age": "twenty"}, {"observation.Age": "must be a number, got a string"}),
    (
        {"Pclass": "first", "Sex": 3},
        {
            "observation.Pclass": "must be an integer, got a string",
            "observation.Sex": "must be a string, got an integer",
        },
    ),
    (
        {"SibSp": 1.5, "Fare": math.inf, "Embarked": ["S"]},
        {
            "observation.SibSp": "must be an integer, got a fraction",
            "observation.Fare": "must be a finite number",
            "observation.Embarked": "must be a string, got an array",
        },
    ),
    (
        {"Pclass": 2**70, "Parch": None},
        {  # in the order of the columns, as the header lists them
            "observation.Pclass": f"must be between {-(2**63)} and {2**63 - 1}",
            "observation.Parch": "null",
        },
    ),
    ({"Pclass": "remove"}, {"observation.Pclass": "missing"}),  # the key left out
    ({"Age": None, "Cabin": None}, None),  # missing in both modes: nothing is replaced
]


def observation_of(changes):
    observation = {**EXAMPLE, **changes}
    return {k: v for k, v in observation.items() if v != "remove"}


def post(client, body, path="/predict"):
    """Python's json writes inf as Infinity, which the service reads (as pandas clients)."""
    return client.post(path, data=json.dumps(body), content_type="application/json")


def expected_probability(model, changes, replaced):
    """The pipeline's P(survived) with each replaced value missing, from a frame made here."""
    observation = observation_of(changes)
    fields = {model.contract.field_name(c): c for c in model.columns}
    row = {
        c: math.nan if c not in observation or observation[c] is None else observation[c]
        for c in model.columns
    }
    row.update(dict.fromkeys((fields[f] for f in replaced or {}), math.nan))
    frame = pd.DataFrame([row], columns=model.columns)
    # An integer column cannot hold NaN: it is scored as float64 then.
    dtypes = {
        c: "float64" if model.kinds[c] == "integer" and frame[c].isna().any() else dtype
        for c, dtype in model.dtypes.items()
    }
    return float(model.pipeline.predict_proba(frame.astype(dtypes))[0, 1])


@pytest.fixture
def as_missing_app(tmp_path, database_url):
    folder = folder_with(tmp_path, "titanic", AS_MISSING)
    settings = {"MODEL_DIR": str(folder), "DATABASE_URL": database_url, "ADMIN_TOKEN": TOKEN}
    return service.create_app(settings)


def test_unreadable_values_are_answered_as_missing_and_recorded(as_missing_app):
    client, model = as_missing_app.test_client(), as_missing_app.config["MODEL"]
    metrics_before = metric_samples(client.get("/metrics", headers=ADMIN).get_data(as_text=True))
    for observation_id, (changes, replaced) in enumerate(CASES):
        body = {"id": observation_id, "observation": observation_of(changes)}
        response = post(client, body)
        assert response.status_code == 200, response.json
        assert list(response.json) == ["proba"]  # the answer keeps the brief's shape
        wanted = expected_probability(model, changes, replaced)
        assert same_probability(response.json["proba"], wanted), (changes, response.json)
        header = response.headers.get("X-Treated-As-Missing")
        assert header == (", ".join(replaced) if replaced else None)
        check_against_spec(response, "/predict", "POST", model)
        stored = service.Prediction.get(service.Prediction.observation_key == str(observation_id))
        assert (json.loads(stored.replaced) if stored.replaced else None) == replaced
        # A retry of the same body is a retry: the same answer, nothing written.
        assert post(client, body).json == response.json

    stats = client.get("/stats", headers=ADMIN)
    check_against_spec(stats, "/stats", "GET", model)
    with_replaced = [replaced for _, replaced in CASES if replaced]
    by_field = {}
    for replaced in with_replaced:
        for field in replaced:
            by_field[field] = by_field.get(field, 0) + 1
    assert stats.json["predictions"] == len(CASES)
    assert stats.json["replaced"] == {"rows": len(with_replaced), "by_field": by_field}
    # Drift reads the observations as "reject" would: those rows are left out of it.
    assert stats.json["unreadable_observations"] == len(with_replaced)

    # /metrics counts every answered request, retries too (twice each here).
    metrics = metric_samples(client.get("/metrics", headers=ADMIN).get_data(as_text=True))
    for field, rows in by_field.items():
        labels = {"model_version": model.version, "field": field}
        counted = sample(metrics, "predictions_replaced_values_total", **labels)
        assert counted - sample(metrics_before, "predictions_replaced_values_total", **labels) == (
            2 * rows
        )


def test_batch_items_follow_the_same_mode(as_missing_app):
    client = as_missing_app.test_client()
    items = [
        {"id": 1, "observation": {**EXAMPLE, "Age": "old"}},
        {"id": 2, "observation": EXAMPLE},
        {"id": 3, "observation": "not an object"},
    ]
    results = post(client, {"observations": items}, "/predict-batch").json["results"]
    assert [result["status"] for result in results] == [200, 200, 422]
    rows = service.Prediction.select().order_by(service.Prediction.id)
    assert [row.replaced for row in rows] == [
        json.dumps({"observation.Age": "must be a number, got a string"}),
        None,
    ]
    # The same observation sent to /predict later is a retry of the item.
    assert post(client, items[0]).headers["X-Treated-As-Missing"] == "observation.Age"
    assert service.Prediction.select().count() == 2


def test_what_cannot_be_answered_stays_an_error(tmp_path, database_url):
    folder = folder_with(tmp_path, "titanic", AS_MISSING)
    settings = {"MODEL_DIR": str(folder), "DATABASE_URL": database_url, "MAX_CONTENT_LENGTH": 800}
    client = service.create_app(settings).test_client()
    observation = {**EXAMPLE, "Age": "twenty"}
    refused = [
        (client.post("/predict", data='{"id": 1, "observation": {'), 400),
        (client.post("/predict", json={"observation": observation}), 422),
        (client.post("/predict", json={"id": 1.5, "observation": observation}), 422),
        (client.post("/predict", json={"id": 1, "observation": [1, 2]}), 422),
        (client.post("/predict", json={"id": 1, "observation": dict(observation, x="." * 900)}),
         413),
    ]  # fmt: skip
    assert [response.status_code for response, _ in refused] == [status for _, status in refused]
    assert all("error" in response.json for response, _ in refused)
    assert service.Prediction.select().count() == 0


def test_reject_stays_the_default_and_refuses_a_word(tmp_path, database_url):
    folder = folder_with(tmp_path, "titanic", '[predict]\ninvalid = "reject"\n')
    client = service.create_app(
        {"MODEL_DIR": str(folder), "DATABASE_URL": database_url}
    ).test_client()
    response = client.post("/predict", json={"id": 1, "observation": {**EXAMPLE, "Age": "old"}})
    assert (response.status_code, response.json) == (
        422,
        {"error": "observation.Age must be a number, got a string"},
    )
    assert "X-Treated-As-Missing" not in response.headers
    assert service.Prediction.select().count() == 0


def test_an_unknown_mode_stops_the_start_naming_the_key(tmp_path):
    folder = folder_with(tmp_path, "titanic", '[predict]\ninvalid = "ignore"\n')
    with pytest.raises(service.StartupError) as refused:
        artifacts.load_model(folder)
    assert str(refused.value) == (
        'api.toml [predict] invalid must be "reject" or "as_missing", not \'ignore\'.'
    )


# ---------------------------------------------------------------------------------------
# The start-up check: a pipeline that cannot take a missing value in some column
# ---------------------------------------------------------------------------------------


# How the tiny model reads its integer column "count".
WITHOUT_IMPUTER = [StandardScaler()]
IMPUTED = [SimpleImputer(strategy="median"), StandardScaler()]
# As text, then one-hot: 2 is "2" but 2.0 would be "2.0", unknown (a dtype-sensitive step).
AS_TEXT = [
    FunctionTransformer(np.asarray, kw_args={"dtype": str}),
    OneHotEncoder(handle_unknown="ignore"),
]


def tiny_frame():
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "size": rng.normal(size=60),
            "count": rng.integers(0, 5, size=60),
            "colour": rng.choice(["red", "blue"], size=60),
        }
    )


def tiny_model(folder, count_steps, profile=False):
    """A folder with a classifier of a number, a count and a colour, served "as_missing"."""
    frame = tiny_frame()
    pipeline = make_pipeline(
        ColumnTransformer(
            [
                ("size", make_pipeline(SimpleImputer(), StandardScaler()), ["size"]),
                ("count", make_pipeline(*count_steps), ["count"]),
                ("colour", OneHotEncoder(handle_unknown="ignore"), ["colour"]),
            ]
        ),
        LogisticRegression(),
    ).fit(frame, frame["count"] > 2)
    folder.mkdir()
    joblib.dump(pipeline, folder / "pipeline.pickle")
    (folder / "columns.json").write_text(json.dumps(list(frame.columns)))
    (folder / "dtypes.pickle").write_bytes(pickle.dumps(frame.dtypes))
    if profile:  # for the version the service calls the model (loaded before api.toml)
        written = drift.profile_training_data(frame, artifacts.load_model(folder).version)
        (folder / drift.PROFILE_FILE).write_text(json.dumps(written))
    (folder / "api.toml").write_text(AS_MISSING)
    return folder


@pytest.mark.parametrize("model", ["titanic", "count-as-text"])
def test_valid_rows_are_scored_bit_for_bit_as_in_reject_mode(tmp_path, model):
    """Rows with a missing integer are scored apart: the valid ones keep their dtypes."""
    if model == "titanic":
        rejecting = artifacts.load_model(TITANIC)
        answering = artifacts.load_model(folder_with(tmp_path, "titanic", AS_MISSING))
        frame = pd.read_csv(ROOT / "examples" / "passengers.csv").head(40)
        integer = "Pclass"
    else:
        answering = artifacts.load_model(tiny_model(tmp_path / "m", AS_TEXT))
        (tmp_path / "m" / "api.toml").unlink()
        rejecting = artifacts.load_model(tmp_path / "m")
        frame, integer = tiny_frame().head(40), "count"
    records = frame[rejecting.columns].astype(object).to_dict("records")
    valid = [parsing.validate_observation(record, rejecting) for record in records]
    broken = [parsing.read_observation({**r, integer: "x"}, answering)[0] for r in records[:5]]
    mixed = [*valid[:20], *broken, *valid[20:]]
    outcomes = scoring.score_each(mixed, answering)
    assert [*outcomes[:20], *outcomes[25:]] == scoring.score_each(valid, rejecting)  # exactly
    alone = scoring.score_each(broken, answering)  # another batch: the last digits may differ
    for outcome, wanted in zip(outcomes[20:25], alone, strict=True):
        assert same_probability(outcome.pop("probability"), wanted.pop("probability"))
        assert outcome == wanted


@pytest.mark.parametrize("profile", [True, False], ids=["with-profile", "without-profile"])
def test_a_column_the_pipeline_cannot_score_missing_stops_the_start(tmp_path, profile):
    with pytest.raises(service.StartupError) as refused:
        artifacts.load_model(tiny_model(tmp_path / "m", WITHOUT_IMPUTER, profile))
    assert str(refused.value) == (
        'api.toml [predict] invalid = "as_missing": the pipeline cannot score a missing count '
        "(ValueError: Input X contains NaN.); add an imputer for it or keep "
        'invalid = "reject".'
    )
    imputed = artifacts.load_model(tiny_model(tmp_path / "i", IMPUTED, profile))
    assert scoring.check_missing_values(imputed, None) is None


def test_a_pipeline_that_answers_nan_for_a_missing_value_stops_the_start(tmp_path, monkeypatch):
    model = artifacts.load_model(tiny_model(tmp_path / "m", IMPUTED))
    answers = model.task.predict

    def nan_when_size_is_missing(pipeline, frame):
        outputs = answers(pipeline, frame)
        missing = frame["size"].isna().tolist()
        return [
            dict(o, probability=math.nan) if m else o for o, m in zip(outputs, missing, strict=True)
        ]

    monkeypatch.setattr(model.task, "predict", nan_when_size_is_missing)
    with pytest.raises(service.StartupError, match="cannot score a missing size .it answers NaN"):
        scoring.check_missing_values(model, None)


def test_the_tutorial_model_takes_a_missing_value_in_every_column(tmp_path):
    """With the profile, and without: the row is then built from the fitted encoders."""
    model = artifacts.load_model(folder_with(tmp_path, "titanic", AS_MISSING))
    profile = json.loads((TITANIC / drift.PROFILE_FILE).read_text())
    row, source = scoring.typical_row(model, profile)
    # Middle edges, most common categories; Cabin has none (all rare): the encoder's first.
    assert (row, source) == ([2, "male", 28.0, 1, 1, 14.4542, "A", "S"], "training_profile.json")
    row, _ = scoring.typical_row(model, None)
    assert row[:2] == [0, "female"] and row[-1] == "C"  # the encoders' first categories
    assert scoring.check_missing_values(model, None) is None


def test_the_docs_show_what_the_service_answers(tmp_path):
    page = (ROOT / "docs" / "your-brief.md").read_text()
    assert AS_MISSING.strip() in page
    model = artifacts.load_model(folder_with(tmp_path, "titanic", AS_MISSING))
    values, replaced = parsing.read_observation({**EXAMPLE, "Age": "twenty"}, model)
    shown = 0.760841113515182  # docs/your-brief.md
    assert same_probability(scoring.predict_outputs([values], model)[0]["probability"], shown)
    assert f'{{"proba": {shown}}}' in page
    assert f"`{json.dumps(replaced)}`" in page
    assert f"`X-Treated-As-Missing: {web.header_list(replaced)}`" in page


def test_the_smoke_check_expects_an_answer_under_as_missing(tmp_path):
    folder = folder_with(tmp_path, "titanic", AS_MISSING)
    settings = {"MODEL_DIR": str(folder), "DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}"}
    out = io.StringIO()
    with InProcessServer(settings) as server:
        code = smoke_check.main([server.url], out=out)
    output = out.getvalue()
    assert code == 0, output
    assert len(lines_starting(output, "PASS")) == len(smoke_check.CHECKS), output
    assert f"PASS  {smoke_check.TREATED} (X-Treated-As-Missing: observation." in output


def test_a_typical_row_the_model_cannot_score_skips_the_check_and_says_why(
    tmp_path, monkeypatch, caplog
):
    """Never a refusal for want of a row: the service starts, and the log says why."""

    def refuses_everything(self, pipeline, frame):
        raise RuntimeError("no row pleases this model")

    monkeypatch.setattr(tasks.BinaryClassifier, "predict", refuses_everything)
    with caplog.at_level("INFO", logger="app"):
        artifacts.load_model(tiny_model(tmp_path / "m", WITHOUT_IMPUTER))
    assert (
        "missing values not checked: a typical row built from the pipeline's categories and "
        "zeros cannot be scored (RuntimeError: no row pleases this model)"
    ) in caplog.text
