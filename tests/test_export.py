"""GET /export (model_service/export.py) in-process, and clients/export.py on a live server.

The rows sent come back: CSV read by pandas, JSON lines read by json, each value as sent
(floats bit for bit), each prediction as answered; a brief's own names (a flat body, string
ids); the filters; the admin token; a 422 naming each bad parameter; pages read one
transaction at a time. The client resumes an interrupted download into the file one run
writes.
"""

import io
import json
import math
import sys

import pandas as pd
import pytest
from conftest import EXAMPLE, ROOT, TITANIC, service
from test_openapi import check_against_spec
from test_smoke_check import STOP_AND_SEARCH

from clients import export as export_client
from model_service import export

sys.path.insert(0, str(ROOT / "notebooks"))
import traffic  # noqa: E402  (notebooks/traffic.py: notebook 3 reads an export)

TOKEN = "export-test-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
# Values that a careless writer would round: repr keeps them.
AGES = [0.1 + 0.2, 1 / 3, 27.0, 5e-324, 80.00000000000001, None]


def app_of(database_url, model_dir=TITANIC):
    settings = {"DATABASE_URL": database_url, "MODEL_DIR": str(model_dir), "ADMIN_TOKEN": TOKEN}
    return service.create_app({**settings, "TESTING": True})


def tutorial_traffic(client):
    """Rows with awkward floats, a missing value, a string id and a field the model ignores;
    the first two labelled. Returns {id as sent: (body, answer)}."""
    sent = {}
    for number, age in enumerate(AGES):
        observation = {**EXAMPLE, "Age": age, "Fare": 7.25 * (number + 1) / 3}
        if age is None:
            del observation["Age"]  # missing: an empty cell
        body = {"id": number if number % 2 else f"p-{number}", "observation": observation}
        body["note"] = f"sent {number}"
        response = client.post("/predict", json=body)
        assert response.status_code == 200, response.json
        sent[body["id"]] = (body, response.json)
    for label, key in enumerate(list(sent)[:2]):
        assert client.post("/update", json={"id": key, "true_class": label}).status_code == 200
    return sent


def exported(client, query=""):
    response = client.get(f"/export{query}", headers=ADMIN)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response


@pytest.fixture
def tutorial(database_url):
    client = app_of(database_url).test_client()
    return client, tutorial_traffic(client)


def test_the_tutorials_traffic_exported_as_csv_reads_back_in_pandas_as_sent(tutorial):
    client, sent = tutorial
    response = exported(client)
    assert response.mimetype == "text/csv" and response.headers["X-Export-Rows"] == str(len(sent))
    check_against_spec(response, "/export", "get")
    table = pd.read_csv(io.StringIO(response.get_data(as_text=True)))
    model = client.application.config["MODEL"]
    assert list(table.columns) == [
        "row_id",
        "id",
        *model.columns,
        "proba",
        "true_class",
        "model_version",
        "created_at",
        "note",
    ]
    assert list(table["row_id"]) == sorted(table["row_id"])
    assert [str(key) for key in sent] == list(table["id"].astype(str))
    for (body, answer), row in zip(sent.values(), table.to_dict(orient="records"), strict=True):
        observation = body["observation"]
        for column in ("Pclass", "SibSp", "Parch", "Sex", "Embarked"):
            assert row[column] == observation[column]
        age = observation.get("Age")
        assert math.isnan(row["Age"]) if age is None else row["Age"] == age  # bit for bit
        assert row["Fare"] == observation["Fare"] and math.isnan(row["Cabin"])
        assert row["proba"] == answer["proba"]
        assert (row["note"], row["model_version"]) == (body["note"], model.version)
        assert pd.Timestamp(row["created_at"]).tzname() == "UTC"
    assert list(table["true_class"].head(3).fillna(-1)) == [0, 1, -1]


def test_notebook_3_reads_the_export(tutorial, tmp_path):
    client, sent = tutorial
    path = tmp_path / "traffic.csv"
    path.write_bytes(exported(client).get_data())
    found = traffic.read_export(path, traffic.training_dtypes(TITANIC), TITANIC)
    assert list(found.rows["proba"]) == [float(answer["proba"]) for _, answer in sent.values()]
    assert list(found.rows["true_value"].head(3)) == [0, 1, None]


def test_json_lines_give_every_value_as_sent(tutorial):
    client, sent = tutorial
    response = exported(client, "?format=jsonl")
    assert response.mimetype == "application/jsonl"
    check_against_spec(response, "/export", "get")
    lines = [json.loads(line) for line in response.get_data(as_text=True).splitlines()]
    for (body, answer), line in zip(sent.values(), lines, strict=True):
        assert line["id"] == body["id"]  # 1 stays 1, "p-0" stays "p-0"
        for column in client.application.config["MODEL"].columns:
            assert line[column] == body["observation"].get(column)
            assert type(line[column]) is type(body["observation"].get(column))
        assert (line["proba"], line["note"]) == (answer["proba"], body["note"])
    assert [line["true_class"] for line in lines[:3]] == [0, 1, None]


def test_a_brief_with_a_flat_body_and_string_ids_exports_its_own_names(database_url):
    client = app_of(database_url, ROOT / "examples" / "stop_and_search").test_client()
    bodies = [
        {"observation_id": "2022-000001", **STOP_AND_SEARCH, "Self-defined ethnicity": "x"},
        {"observation_id": "42", **STOP_AND_SEARCH, "Latitude": None},
    ]
    answers = [client.post("/should_search/", json=body).json for body in bodies]
    client.post("/search_result/", json={"observation_id": "42", "outcome": True})
    columns = client.application.config["MODEL"].columns
    table = pd.read_csv(io.StringIO(exported(client).get_data(as_text=True)), dtype=str)
    assert list(table.columns) == [
        "row_id",
        "observation_id",
        *columns,
        "outcome",
        "true_class",
        "model_version",
        "created_at",
        "Self-defined ethnicity",
    ]
    assert list(table["observation_id"]) == ["2022-000001", "42"]  # strings, as sent
    assert list(table["outcome"]) == [json.dumps(a["outcome"]) for a in answers]
    assert list(table["true_class"].fillna("")) == ["", "true"]
    assert list(table["Latitude"].fillna("")) == [repr(STOP_AND_SEARCH["Latitude"]), ""]
    assert table["Part of a policing operation"][0] == "false"
    lines = exported(client, "?format=jsonl").get_data(as_text=True).splitlines()
    assert json.loads(lines[1])["Self-defined ethnicity"] is None  # not in the second row


def test_a_regressor_with_two_targets_gets_a_column_per_target(database_url):
    client = app_of(database_url, ROOT / "examples" / "linnerud").test_client()
    body = {"id": 7, "observation": {"Chins": 5, "Situps": 162, "Jumps": 60}}
    answer = client.post("/predict", json=body).json["prediction"]
    truth = {"Weight": 180.5, "Waist": 35.25}
    assert client.post("/update", json={"id": 7, "true_value": truth}).status_code == 200
    [line] = exported(client, "?format=jsonl").get_data(as_text=True).splitlines()
    row = json.loads(line)
    for target in ("Weight", "Waist"):
        assert row[f"prediction_{target}"] == answer[target]
        assert row[f"true_value_{target}"] == truth[target]


def row_ids(client, query):
    lines = exported(client, "?format=jsonl&" + query).get_data(as_text=True).splitlines()
    return [json.loads(line)["id"] for line in lines]


def test_the_filters_select_the_rows(tutorial):
    client, sent = tutorial
    everyone = list(sent)
    version = client.application.config["MODEL"].version
    assert row_ids(client, "") == everyone
    assert row_ids(client, "labelled=true") == everyone[:2]
    assert row_ids(client, "labelled=false") == everyone[2:]
    assert row_ids(client, f"model_version={version}") == everyone
    assert row_ids(client, "model_version=unknown") == []
    assert row_ids(client, "since=2999-01-01") == []
    assert row_ids(client, "until=2999-01-01T00:00:00Z&since=2000-01-01") == everyone
    first = json.loads(exported(client, "?format=jsonl").get_data(as_text=True).split("\n")[1])
    assert row_ids(client, f"after_id={first['row_id']}") == everyone[2:]
    # A resumed export keeps the header: its ignored fields come from the first page.
    last = exported(client, f"?after_id={10**6}").get_data(as_text=True)
    assert last.strip().split(",")[-1] == "note"


def test_without_the_token_the_route_does_not_exist(tutorial):
    client, _ = tutorial
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = client.get("/export", headers=headers)
        assert response.status_code == 404
        check_against_spec(response, "/export", "get")


@pytest.mark.parametrize(
    "query, named",
    [
        ("format=xml", "format"),
        ("since=yesterday", "since"),
        ("until=2026-13-01", "until"),
        ("since=2026-02-01&until=2026-01-01", "until"),
        ("model_version=", "model_version"),
        ("labelled=yes", "labelled"),
        ("after_id=abc", "after_id"),
    ],
)
def test_a_bad_filter_is_a_422_that_names_it(tmp_path, query, named):
    client = app_of(f"sqlite:///{tmp_path / 'p.db'}").test_client()
    response = client.get(f"/export?{query}", headers=ADMIN)
    assert response.status_code == 422 and response.json["error"].startswith(named)
    check_against_spec(response, "/export", "get")


def test_the_rows_are_read_a_page_at_a_time(tutorial, monkeypatch):
    client, sent = tutorial
    whole = {name: exported(client, f"?format={name}").get_data() for name in ("csv", "jsonl")}
    monkeypatch.setattr(export, "PAGE_ROWS", 2)
    transactions = []
    original = export.Selection.in_transaction

    def counted(self, work):
        transactions.append(work)
        return original(self, work)

    monkeypatch.setattr(export.Selection, "in_transaction", counted)
    for name, text in whole.items():
        transactions.clear()
        response = exported(client, f"?format={name}")
        assert len(transactions) <= 2  # the survey, then the stream (its first page) began
        assert response.get_data() == text  # the same bytes, in pages
        assert len(transactions) == 1 + math.ceil(len(sent) / 2)  # one transaction per page


def test_the_client_resumes_an_interrupted_download(start_server, database_url, tmp_path):
    pytest.importorskip("tqdm")
    client = app_of(database_url).test_client()
    sent = tutorial_traffic(client)
    server = start_server(database_url, workers=1, env={"ADMIN_TOKEN": TOKEN})
    for name in ("traffic.csv", "traffic.jsonl"):
        whole, resumed = tmp_path / f"whole-{name}", tmp_path / name
        arguments = [server.url, str(whole)]
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("ADMIN_TOKEN", TOKEN)
            assert export_client.main(arguments) == 0
            original = export_client.received_rows

            def interrupted(*arguments, original=original):
                for count, row in enumerate(original(*arguments)):
                    if count == 3:  # the header, then two rows
                        raise KeyboardInterrupt
                    yield row

            patch.setattr(export_client, "received_rows", interrupted)
            assert export_client.main([server.url, str(resumed)]) == 130
            patch.undo()
            patch.setenv("ADMIN_TOKEN", TOKEN)
            with open(resumed, "ab") as file:
                file.write(b"9,torn")  # a line cut short by a killed process
            assert export_client.main([server.url, str(resumed)]) == 0
        assert resumed.read_bytes() == whole.read_bytes()
        assert len(resumed.read_text().splitlines()) == len(sent) + (name.endswith(".csv"))


def test_the_client_says_what_is_wrong(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("ADMIN_TOKEN", raising=False)
    assert export_client.main(["http://127.0.0.1:9", str(tmp_path / "out.csv")]) == 2
    assert "ADMIN_TOKEN" in capsys.readouterr().err
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    monkeypatch.setenv("ADMIN_TOKEN", TOKEN)
    assert export_client.main(["http://127.0.0.1:9", str(tmp_path / "other.csv")]) == 2
    assert "Cannot resume" in capsys.readouterr().err
