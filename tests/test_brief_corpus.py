"""A corpus of real brief shapes: contracts written from public capstone apps.

Each entry is the api.toml that a public app built on the LDSSA tutorial implies (its
routes, id fields, body shape and answers, read from its app.py), with a small model
trained here on made-up rows under the brief's feature names and types. Each is served
in-process and honoured end to end, as the contract fuzzing does (contract_helpers.py):
predict, retry, conflict, update, batch, bad input.

Where an app does what no api.toml can say, the entry says so in its comment and takes the
nearest contract (an id in the URL's path, an answer rounded to 2 decimals...).
"""

from dataclasses import dataclass, field

import pytest

pytest.register_assert_rewrite("contract_helpers")

import tomllib  # noqa: E402

from contract_helpers import (  # noqa: E402
    Honour,
    Requests,
    model_folder,
    read_contract,
    serve,
    train_model,
    why_refused,
)


@dataclass
class Brief:
    source: str  # the public repository the contract is written from
    toml: str
    columns: dict  # feature name -> values to draw made-up rows from (None: missing)
    target: object  # a classifier's classes, or "regression"
    styles: dict  # id field -> how its values are written (contract_helpers.ID_STYLES)
    targets: list = field(default_factory=list)  # a regressor's outputs, when several
    offset: int = 0  # added to the number of every id


STOP_AND_SEARCH = {
    "Type": ["Person search", "Person and Vehicle search", "Vehicle search"],
    "Date": ["2022-10-21T12:26:00+01:00", "2022-03-02T08:10:00+00:00"],
    "Part of a policing operation": [True, False],
    "Latitude": [50.78, 51.5, 53.4, None],
    "Longitude": [-3.27, -0.12, -2.99, None],
    "Gender": ["Male", "Female", "Other"],
    "Age range": ["18-24", "25-34", "over 34", "10-17"],
    "Officer-defined ethnicity": ["White", "Black", "Asian", "Other", None],
    "Legislation": [
        "Misuse of Drugs Act 1971 (section 23)",
        "Firearms Act 1968 (section 47)",
        None,
    ],
    "Object of search": ["Controlled drugs", "Offensive weapons", "Stolen goods"],
    "station": ["devon-and-cornwall", "metropolitan", "merseyside"],
}
PRICES = {"sku": ["1128", "2034", "4735"], "time_key": [20230101, 20230615, 20241031]}

BRIEFS = [
    Brief(
        # From LDSSA/capstone-simulator (simulator.py; LDSSA/batch2-capstone-instructors'
        # test-server.py sends the same): POST /predict with {"id", "observation"} (the id
        # from a CSV, an integer), answered {"proba"}; POST /update with {"id",
        # "true_class"} (0 or 1). The tutorial's own contract: an api.toml of comments.
        source="LDSSA/capstone-simulator",
        toml="# The tutorial's contract: every key keeps its default.\n",
        columns={
            "age": [17.0, 34.0, 58.0, None],
            "sex": ["male", "female", None],
            "seat_pos": ["front-left", "front-right", "back"],
            "speed_limit": [30.0, 50.0, 90.0],
            "air_bag": ["deployed", "not deployed", None],
        },
        target=[0, 1],
        styles={"id": "int"},
    ),
    Brief(
        # From rjna/ldssa-capstone (1st Report/app.py): POST /predict with {"id",
        # "observation"}, answered {"ContrabandIndicator": <proba >= 0.3873617971247522>};
        # POST /update with {"id", "true_class"}, answered with the stored row.
        source="rjna/ldssa-capstone",
        toml="""
[predict]
answer = { ContrabandIndicator = "prediction.decision" }

[model]
threshold = 0.3873617971247522
""",
        columns={
            "Department Name": ["New Haven", "Hartford", "Stamford"],
            "InterventionLocationName": ["NEW HAVEN", "HARTFORD", None],
            "InterventionReasonCode": ["V", "E", "I"],
            "SearchAuthorizationCode": ["C", "I", "O", "N"],
            "StatuteReason": ["Speed Related", "Equipment", "Registration"],
            "SubjectRaceCode": ["W", "B", "A", "I"],
            "SubjectSexCode": ["M", "F"],
            "SubjectAge": [19.0, 35.0, 61.0],
        },
        target=[False, True],
        styles={"id": "int"},
    ),
    Brief(
        # From isvpires/Capstone_project_LDSSA_FlaskAPP (app.py): POST /should_search/
        # with the search's fields at the top level next to a string "observation_id" (no
        # id type declared: the brief's ids are strings), answered {"outcome": <bool>};
        # POST /search_result/ with {"observation_id", "outcome"}, answered
        # {"observation_id", "predicted_outcome", "outcome"}.
        source="isvpires/Capstone_project_LDSSA_FlaskAPP",
        toml="""
[predict]
path = "/should_search/"
id = "observation_id"
observation = ""
answer = { outcome = "prediction.label" }

[update]
path = "/search_result/"
true = "outcome"
answer = { observation_id = "request.observation_id", predicted_outcome = "prediction.label", outcome = "request.outcome" }
""",  # noqa: E501 (an inline table is one line)
        columns=STOP_AND_SEARCH,
        target=[False, True],
        styles={"observation_id": "word"},
    ),
    Brief(
        # From FranciscoDMO/LDSA-Capstone-UK-POLICE (API code/app.py): the same brief, an
        # outcome at proba >= 0.35, and values filled in rather than refused (a missing
        # Legislation is "unknown", a missing operation False): invalid = "as_missing".
        # Answered {"outcome"}; POST /search_result/ answered {"observation_id", "outcome",
        # "predicted_outcome"}.
        source="FranciscoDMO/LDSA-Capstone-UK-POLICE",
        toml="""
[predict]
path = "/should_search/"
id = "observation_id"
id_type = "string"
observation = ""
invalid = "as_missing"
answer = { outcome = "prediction.decision" }

[update]
path = "/search_result/"
true = "outcome"
answer = { observation_id = "request.observation_id", outcome = "request.outcome", predicted_outcome = "prediction.decision" }

[model]
threshold = 0.35
""",  # noqa: E501
        columns=STOP_AND_SEARCH,
        target=[False, True],
        styles={"observation_id": "padded"},
    ),
    Brief(
        # From 0xjrr/ldsa-capstone-project (files submission/app/app.py): the same brief
        # on a model of 0/1 labels (true_class an IntegerField), an outcome at proba >= 0.3,
        # POST /search_result/ answered {"observation_id", "outcome", "predicted_outcome"}.
        source="0xjrr/ldsa-capstone-project",
        toml="""
[predict]
path = "/should_search/"
id = "observation_id"
id_type = "string"
observation = ""
answer = { outcome = "prediction.decision" }

[update]
path = "/search_result/"
true = "outcome"
answer = { observation_id = "request.observation_id", outcome = "request.outcome", predicted_outcome = "prediction.decision" }

[model]
threshold = 0.3
""",  # noqa: E501
        columns=STOP_AND_SEARCH,
        target=[0, 1],
        styles={"observation_id": "digits"},
    ),
    Brief(
        # From LDSAJPinto1306/Capstone-LDSA (app.py): POST /will_recidivate/ with the
        # person's fields at the top level, "id" among them (a string key, and a column of
        # the model), answered {"id", "outcome"}; on a value it cannot read it answers a
        # default outcome rather than an error: invalid = "as_missing". POST
        # /recidivism_result with {"id", "outcome"}, answered {"id", "outcome",
        # "predicted_outcome"}.
        source="LDSAJPinto1306/Capstone-LDSA",
        toml="""
[predict]
path = "/will_recidivate/"
id = "id"
observation = ""
invalid = "as_missing"
answer = { id = "request.id", outcome = "prediction.label" }

[update]
path = "/recidivism_result"
true = "outcome"
answer = { id = "request.id", outcome = "request.outcome", predicted_outcome = "prediction.label" }
""",  # noqa: E501
        columns={
            "id": ["1", "2", "3"],
            "name": ["miguel hernandez", "kevon dixon", None],
            "sex": ["Male", "Female"],
            "race": ["Other", "African-American", "Caucasian"],
            "juv_fel_count": [0, 1, 2],
            "juv_misd_count": [0, 1],
            "priors_count": [0, 4, 14],
            "c_charge_degree": ["F", "M", None],
            "c_charge_desc": ["Battery", "Possession of Cocaine", None],
        },
        target=[False, True],
        styles={"id": "digits"},
    ),
    Brief(
        # From catarinarl/ldssa_capstone (price_forecast_app.py): POST /forecast_prices
        # with {"sku": <string>, "time_key": <integer>}, one key of the two (its table's
        # CompositeKey) and all the model reads, answered {"sku", "time_key",
        # "pvp_is_competitorA", "pvp_is_competitorB"}; POST /actual_prices with the two
        # actual prices, answered with the four and the two actual prices. (The app forecasts
        # a pair again when it is sent again; here that is a retry, answered as before.)
        source="catarinarl/ldssa_capstone",
        toml="""
[predict]
path = "/forecast_prices"
id = ["sku", "time_key"]
observation = ""

[predict.answer]
sku = "request.sku"
time_key = "request.time_key"
pvp_is_competitorA = "prediction.pvp_is_competitorA"
pvp_is_competitorB = "prediction.pvp_is_competitorB"

[update]
path = "/actual_prices"
true = { pvp_is_competitorA = "pvp_is_competitorA_actual", pvp_is_competitorB = "pvp_is_competitorB_actual" }

[update.answer]
sku = "request.sku"
time_key = "request.time_key"
pvp_is_competitorA = "prediction.pvp_is_competitorA"
pvp_is_competitorB = "prediction.pvp_is_competitorB"
pvp_is_competitorA_actual = "request.pvp_is_competitorA_actual"
pvp_is_competitorB_actual = "request.pvp_is_competitorB_actual"

[model]
targets = ["pvp_is_competitorA", "pvp_is_competitorB"]
""",  # noqa: E501
        columns=PRICES,
        target="regression",
        targets=["pvp_is_competitorA", "pvp_is_competitorB"],
        styles={"sku": "digits", "time_key": "int"},
        offset=20_230_101,
    ),
    Brief(
        # From arieivs/capstone (app.py): POST /forecast_prices/ with {"sku", "time_key"},
        # the pair unique; the model reads time_key and a category it looks up
        # (structure_level_2, 0 when unknown: here a feature the body may leave out),
        # answered {"sku", "time_key", "pvp_is_competitorA", "pvp_is_competitorB"}; POST
        # /actual_prices/ answered with the actual prices, then the forecast ones.
        source="arieivs/capstone",
        toml="""
[predict]
path = "/forecast_prices/"
id = ["sku", "time_key"]
observation = ""

[predict.answer]
sku = "request.sku"
time_key = "request.time_key"
pvp_is_competitorA = "prediction.pvp_is_competitorA"
pvp_is_competitorB = "prediction.pvp_is_competitorB"

[update]
path = "/actual_prices/"
true = { pvp_is_competitorA = "pvp_is_competitorA_actual", pvp_is_competitorB = "pvp_is_competitorB_actual" }

[update.answer]
sku = "request.sku"
time_key = "request.time_key"
pvp_is_competitorA_actual = "request.pvp_is_competitorA_actual"
pvp_is_competitorB_actual = "request.pvp_is_competitorB_actual"
pvp_is_competitorA = "prediction.pvp_is_competitorA"
pvp_is_competitorB = "prediction.pvp_is_competitorB"
""",  # noqa: E501
        columns={"time_key": PRICES["time_key"], "structure_level_2": [101.0, 202.0, None]},
        target="regression",
        targets=["pvp_is_competitorA", "pvp_is_competitorB"],
        styles={"sku": "word", "time_key": "int"},
        offset=20_230_101,
    ),
    Brief(
        # From diogormec/capstone_ldssa (app.py): POST /predict with a string
        # "observation_id" and the features nested under "data", answered
        # {"observation_id", "competitor", "prediction"} (competitor: a field of "data").
        # Its update, POST /update_actual/<observation_id> with {"actual_price"}, carries
        # the id in the URL's path, which api.toml cannot say: here the id is in the body,
        # and the answer's constant "message" is left out. (The app makes up an id the
        # client leaves out; here the id is required.)
        source="diogormec/capstone_ldssa",
        toml="""
[predict]
id = "observation_id"
id_type = "string"
observation = "data"
answer = { observation_id = "request.observation_id", competitor = "request.competitor", prediction = "prediction.value" }

[update]
path = "/update_actual"
true = "actual_price"
answer = { observation_id = "request.observation_id", prediction = "prediction.value", actual_price = "request.actual_price" }
""",  # noqa: E501
        columns={
            "sku": [1128, 2034, 4735],
            "date": ["2024-11-01", "2024-11-15", "2024-12-24"],
            "competitor": ["competitorA", "competitorB"],
        },
        target="regression",
        styles={"observation_id": "word"},
    ),
    Brief(
        # From AntQua/ldssa-fire-response-api (app/main.py, app/schemas.py; FastAPI): POST
        # /predict_response (and with the final slash) with the call's fields at the top
        # level, keyed by unit_id and received_dttm (a feature too), answered {"unit_id",
        # "received_dttm", "predicted_response_time_seconds"}; POST /actual_response with
        # on_scene_dttm, from which the app computes the actual seconds: here the client
        # sends the seconds, and the answers are not rounded to 2 decimals.
        source="AntQua/ldssa-fire-response-api",
        toml="""
[predict]
path = "/predict_response"
id = ["unit_id", "received_dttm"]
observation = ""
answer = { unit_id = "request.unit_id", received_dttm = "request.received_dttm", predicted_response_time_seconds = "prediction.value" }

[update]
path = "/actual_response"
true = "actual_response_time_seconds"
answer = { unit_id = "request.unit_id", received_dttm = "request.received_dttm", actual_response_time_seconds = "request.actual_response_time_seconds", predicted_response_time_seconds = "prediction.value" }
""",  # noqa: E501
        columns={
            "call_type": ["Medical Incident", "Alarms", "Structure Fire"],
            "call_type_group": ["Potentially Life-Threatening", "Alarm", None],
            "original_priority": ["2", "3", "E"],
            "unit_type": ["ENGINE", "MEDIC", "TRUCK"],
            "station_area": ["01", "36", "13"],
            "battalion": ["B01", "B02", "B03"],
            "neighborhoods_analysis_boundaries": ["Mission", "Tenderloin", None],
            "zipcode_of_incident": ["94103", "94110", "94102"],
            "received_dttm": ["2024-01-05T10:12:00", "2024-03-17T23:41:00"],
        },
        target="regression",
        styles={"unit_id": "word", "received_dttm": "unicode"},
    ),
    Brief(
        # From vascosmota/ldsa-final-assignment (app.py): POST /predict with {"id",
        # "observation"}, answered {"prediction": <the predicted class>}; no update route
        # (the tutorial's /update). The features are made up: the app does not name them.
        source="vascosmota/ldsa-final-assignment",
        toml="""
[predict]
answer = { prediction = "prediction.label" }
""",
        columns={
            "age": [23.0, 41.0, 57.0, None],
            "education": ["secondary", "tertiary", None],
            "region": ["Lisboa", "Norte", "Algarve"],
            "months_unemployed": [0, 3, 12],
        },
        target=[0, 1],
        styles={"id": "negative"},
    ),
]


@pytest.mark.parametrize("brief", BRIEFS, ids=[brief.source for brief in BRIEFS])
def test_a_real_brief_is_served_as_it_says(brief, tmp_path):
    trained = train_model(
        tmp_path / "trained", brief.columns, brief.target, targets=brief.targets or None
    )
    tables = tomllib.loads(brief.toml)
    assert why_refused(tables, trained) == []  # what the oracle expects: it can be served
    folder = model_folder(trained, tmp_path / "model", brief.toml)
    client = serve(folder, f"sqlite:///{tmp_path / 'predictions.db'}")
    contract = read_contract(tables, trained)
    Honour(client, trained, contract, Requests(trained, contract, brief.styles, brief.offset)).run()
