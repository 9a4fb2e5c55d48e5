"""API keys (model_service/api_keys.py): the routes that score or label need one.

In-process on both databases; one gunicorn server with two workers per database checks the
refusals over HTTP, header values drawn by hypothesis as gunicorn parses them, and that no
key reaches its logs.
"""

import hmac
import json
import logging
import random
import statistics
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import requests
import schemathesis
from conftest import EXAMPLE, service
from hypothesis import given, settings
from hypothesis import strategies as st
from reliability_helpers import random_observations

# Run again here with keys on: they take this module's `app` and `client` fixtures.
from test_app import (  # noqa: F401
    test_a_retry_gets_the_stored_answer_and_writes_nothing,
    test_malformed_bodies_are_400,
    test_predict_returns_the_pipeline_probability_and_stores_the_request,
    test_the_same_id_with_another_observation_is_a_conflict,
    test_update_stores_the_label_and_returns_the_row,
)
from test_hostile_input import BOUNDED
from test_openapi import app_of
from test_quality_cells import close
from test_smoke_check import STOP_AND_SEARCH

from model_service import api_keys, openapi
from model_service.api_keys import keys_from_settings, parse_keys
from model_service.errors import StartupError
from model_service.monitoring import quality_cells, rollups

KEY_A = "alpha-0f3c9a1be27d4c55a8e1"
KEY_B = "bravo-6d2e8b0c4a1f9e37b5d2"
KEY_OPS = "ops-93be7c1d0a5f4e2b8c6d"  # marked *: labels every row
API_KEYS = f"alpha:{KEY_A},bravo:{KEY_B},ops:{KEY_OPS}:*"
ADMIN_TOKEN = "admin-" + "5e1d7c" * 4
CHALLENGE = 'Bearer realm="predictions"'
ROUTES = ["/predict", "/update", "/predict-batch"]

# Refused: no key, another scheme, a wrong key, a key one character off at either end...
REFUSED = {
    "no key": {},
    "Basic scheme": {"Authorization": f"Basic {KEY_A}"},
    "the key alone": {"Authorization": KEY_A},
    "wrong key": {"Authorization": "Bearer not-a-key-of-this-service"},
    "last character off": {"Authorization": f"Bearer {KEY_A[:-1]}x"},
    "first character off": {"X-API-Key": f"x{KEY_A[1:]}"},
    "a prefix": {"X-API-Key": KEY_A[:-1]},
    "one more character": {"X-API-Key": KEY_A + "0"},
    "empty bearer": {"Authorization": "Bearer "},
    "the admin token": {"Authorization": f"Bearer {ADMIN_TOKEN}"},
    "a name, not a key": {"X-API-Key": "alpha"},
    "X-API-Key wins over a right bearer": {
        "X-API-Key": "wrong",
        "Authorization": f"Bearer {KEY_A}",
    },
}


def keyed_settings(database_url, **more):
    return {
        "DATABASE_URL": database_url,
        "TESTING": True,
        "API_KEYS": API_KEYS,
        "ADMIN_TOKEN": ADMIN_TOKEN,
        **more,
    }


@pytest.fixture
def app(database_url):
    """This module's app has keys on: the tests imported from test_app run with them."""
    return service.create_app(keyed_settings(database_url))


@pytest.fixture
def client(app):
    """A client that sends alpha's key with every request, as a partner's would."""
    client = app.test_client()
    client.environ_base["HTTP_X_API_KEY"] = KEY_A
    return client


def body_of(route, observation_id=1):
    if route == "/update":
        return {"id": observation_id, "true_class": 1}
    if route == "/predict-batch":
        return {"observations": [{"id": observation_id, "observation": EXAMPLE}]}
    return {"id": observation_id, "observation": EXAMPLE}


def as_key(key):
    return {"Authorization": f"Bearer {key}"}


def stored_key_names():
    return {p.observation_key: p.api_key_name for p in service.Prediction.select()}


def spec_schema(app):
    return schemathesis.openapi.from_dict(openapi.build_spec(app.config["MODEL"], app.config))


# ---------------------------------------------------------------------------------------
# 401 without a valid key
# ---------------------------------------------------------------------------------------


def test_every_route_that_scores_or_labels_refuses_a_missing_or_wrong_key(app):
    client, schema = app.test_client(), spec_schema(app)
    client.post("/predict", json=body_of("/predict"), headers=as_key(KEY_A))  # /update's row
    for case, headers in REFUSED.items():
        for route in ROUTES:
            response = client.post(route, json=body_of(route, 2), headers=headers)
            assert response.status_code == 401, (case, route)
            assert set(response.json) == {"error"}
            assert response.headers["WWW-Authenticate"].startswith(CHALLENGE)
            schema[route]["POST"].validate_response(response)  # documented, with its header
    assert stored_key_names() == {"1": "alpha"}  # nothing written, nothing labelled
    assert service.Prediction.get().true_class is None


def test_a_wrong_key_is_told_apart_from_a_missing_one(client):
    missing = client.post("/predict", json=body_of("/predict"), headers={"X-API-Key": ""})
    client.environ_base.pop("HTTP_X_API_KEY")
    absent = client.post("/predict", json=body_of("/predict"))
    assert absent.headers["WWW-Authenticate"] == CHALLENGE
    assert "needs an API key" in absent.json["error"]
    assert missing.headers["WWW-Authenticate"] == f'{CHALLENGE}, error="invalid_token"'
    assert missing.json == {"error": "The API key is not valid"}


def test_other_routes_need_no_key_and_the_admin_routes_still_take_the_admin_token(app):
    client = app.test_client()
    assert client.get("/health").status_code == 200
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/export", headers=as_key(KEY_OPS)).status_code == 404  # not a token
    assert client.get("/export", headers=as_key(ADMIN_TOKEN)).status_code == 200
    assert client.get("/predict").status_code == 405  # a wrong method stays a 405


def test_a_briefs_own_routes_need_a_key_and_its_document_says_so(tmp_path):
    from openapi_spec_validator import validate

    app = app_of("stop_and_search", tmp_path, API_KEYS=API_KEYS)
    contract, spec = app.config["MODEL"].contract, app.extensions["openapi"]
    validate(spec)
    for path in (contract.predict_path, contract.batch_path, contract.update_path):
        assert {"401", "200"} <= set(spec["paths"][path]["post"]["responses"]), path
    assert "403" in spec["paths"][contract.update_path]["post"]["responses"]
    client, body = app.test_client(), {"observation_id": "a1", **STOP_AND_SEARCH}
    refused = client.post(contract.predict_path, json=body)
    answered = client.post(contract.predict_path, json=body, headers=as_key(KEY_B))
    assert (refused.status_code, answered.status_code) == (401, 200)
    for response in (refused, answered):
        spec_schema(app)[contract.predict_path]["POST"].validate_response(response)
    assert stored_key_names() == {'"a1"': "bravo"}


def test_keys_off_by_default_changes_nothing(database_url):
    app = service.create_app({"DATABASE_URL": database_url})
    client = app.test_client()
    assert client.post("/predict", json=body_of("/predict")).status_code == 200
    assert stored_key_names() == {"1": None}
    spec = app.extensions["openapi"]
    assert "401" not in spec["paths"]["/predict"]["post"]["responses"]
    assert "NoApiKey" not in spec["components"]["responses"]


# ---------------------------------------------------------------------------------------
# A valid key: its name on the rows it writes; /update on its own rows
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [as_key(KEY_A), {"Authorization": f"bearer   {KEY_A} "}, {"X-API-Key": KEY_A}],
    ids=["Bearer", "lower case, spaces", "X-API-Key"],
)
def test_a_valid_key_in_either_header_is_served_and_named_on_the_row(app, headers):
    client = app.test_client()
    assert client.post("/predict", json=body_of("/predict", 1), headers=headers).status_code == 200
    batch = client.post("/predict-batch", json=body_of("/predict-batch", 2), headers=headers)
    assert batch.json["results"][0]["status"] == 200
    assert client.post("/update", json=body_of("/update", 1), headers=headers).status_code == 200
    assert stored_key_names() == {"1": "alpha", "2": "alpha"}


def test_a_key_labels_only_its_own_rows_and_a_key_marked_star_labels_any(database_url):
    keys_off = service.create_app({"DATABASE_URL": database_url}).test_client()
    assert keys_off.post("/predict", json=body_of("/predict", 9)).status_code == 200  # NULL
    app = service.create_app(keyed_settings(database_url))
    client, schema = app.test_client(), spec_schema(app)
    client.post("/predict", json=body_of("/predict", 1), headers=as_key(KEY_A))
    client.post("/predict-batch", json=body_of("/predict-batch", 2), headers=as_key(KEY_B))

    def label(observation_id, key):
        response = client.post("/update", json=body_of("/update", observation_id), headers=key)
        schema["/update"]["POST"].validate_response(response)
        return response.status_code

    assert label(1, as_key(KEY_B)) == 403  # alpha's row
    assert label(2, as_key(KEY_A)) == 403  # bravo's row
    assert label(9, as_key(KEY_A)) == 403  # written before keys were on
    assert label(3, as_key(KEY_A)) == 404  # not stored: as without keys
    assert [label(1, as_key(KEY_A)), label(2, as_key(KEY_B))] == [200, 200]
    assert [label(n, as_key(KEY_OPS)) for n in (1, 2, 9)] == [200, 200, 200]
    assert stored_key_names() == {"9": None, "1": "alpha", "2": "bravo"}


def test_a_bad_update_body_gets_the_views_own_answer_after_the_key(client):
    client.post("/predict", json=body_of("/predict", 1))
    assert client.post("/update", data="{not json").status_code == 400
    assert client.post("/update", json={"true_class": 1}).status_code == 422  # no id
    assert client.post("/update", json={"id": 1, "true_class": 7}).status_code == 422
    assert client.post("/update", data=b"[" * 70_000).status_code == 413


def test_export_selects_the_rows_of_one_key(app):
    client, admin = app.test_client(), as_key(ADMIN_TOKEN)
    for observation_id, key in [(1, KEY_A), (2, KEY_B), (3, KEY_A)]:
        client.post("/predict", json=body_of("/predict", observation_id), headers=as_key(key))
    alpha = client.get("/export?format=jsonl&api_key_name=alpha", headers=admin)
    assert [json.loads(line)["id"] for line in alpha.text.splitlines()] == [1, 3]
    assert alpha.headers["X-Export-Rows"] == "2"
    assert client.get("/export?api_key_name=nobody", headers=admin).headers["X-Export-Rows"] == "0"
    assert client.get("/export?api_key_name=", headers=admin).status_code == 422


def traffic(client, keyed):
    """40 passengers, two of three sent with alpha's key (the others bravo's), every other
    one labelled; keyed=False: alpha's alone, keys off."""
    for number, observation in enumerate(random_observations(40, seed=24)):
        key = KEY_A if number % 3 else KEY_B
        if key != KEY_A and not keyed:
            continue
        headers = as_key(key) if keyed else {}
        answer = client.post(
            "/predict", json={"id": number, "observation": observation}, headers=headers
        )
        assert answer.status_code == 200, answer.json
        if number % 2:
            label = {"id": number, "true_class": number % 4 // 2}
            assert client.post("/update", json=label, headers=headers).status_code == 200


@pytest.mark.parametrize("labelled_rows_read", [20_000, 0], ids=["from rows", "from sums"])
def test_stats_of_one_key_are_those_of_a_store_of_its_rows_alone(
    database_url, tmp_path, monkeypatch, labelled_rows_read
):
    """Up to READ_LABELLED_ROWS the quality is read from the labelled rows; beyond, from
    sums: both ways, the rows of one key (counted as /stats reads them) give what a store
    holding only those rows gives from its rollup tables."""
    monkeypatch.setattr(quality_cells, "READ_LABELLED_ROWS", labelled_rows_read)
    monkeypatch.setattr(rollups, "CHUNK_ROWS", 7)  # the key's rows are read in chunks
    admin = as_key(ADMIN_TOKEN)
    queries = [
        "",
        "&by=Sex",
        f"&since={datetime.now(UTC) - timedelta(minutes=5):%Y-%m-%dT%H:%M:%S}",
    ]
    alone = service.create_app(
        {"DATABASE_URL": f"sqlite:///{tmp_path / 'alone.db'}", "ADMIN_TOKEN": ADMIN_TOKEN}
    ).test_client()
    traffic(alone, keyed=False)
    expected = [without_times(alone.get(f"/stats?x=1{q}", headers=admin).json) for q in queries]
    client = service.create_app(keyed_settings(database_url)).test_client()
    traffic(client, keyed=True)
    for query, wanted in zip(queries, expected, strict=True):
        answer = client.get(f"/stats?api_key_name=alpha{query}", headers=admin)
        assert answer.status_code == 200, answer.json
        close(without_times(answer.json), wanted, query)
    everything = client.get("/stats", headers=admin).json
    assert everything["predictions"] == 40 and expected[0]["predictions"] == 26
    nobody = client.get("/stats?api_key_name=nobody", headers=admin).json
    assert (nobody["predictions"], nobody["labelled"]) == (0, 0)
    assert client.get("/stats?api_key_name=", headers=admin).status_code == 422
    assert client.get("/stats?api_key_name=alpha").status_code == 404  # no admin token


def without_times(stats):
    """/stats without the times of the versions' first and last rows (stored apart)."""
    for version in stats.get("versions", []):  # ?by= has none
        version.pop("first_stored"), version.pop("last_stored")
    return stats


# ---------------------------------------------------------------------------------------
# Start-up: API_KEYS and API_KEYS_FILE
# ---------------------------------------------------------------------------------------

SECRET = "s3cret-key-never-printed"


@pytest.mark.parametrize(
    "value, position, why",
    [
        (SECRET, "entry 1 of API_KEYS", "no valid key"),  # the key alone, read as a name
        (f"a:{KEY_A},{SECRET}", "entry 2 of API_KEYS", "no valid key"),
        (f"{SECRET}!", "entry 1 of API_KEYS", "not name:key"),  # no name
        (f"a:{KEY_A},,b:{KEY_B}", "entry 2 of API_KEYS", "not name:key"),
        ("a:", "entry 1 of API_KEYS", "no valid key"),
        ("a:short", "entry 1 of API_KEYS", "no valid key"),
        (f"a:{SECRET} x", "entry 1 of API_KEYS", "no valid key"),
        (f"a:{SECRET}:all", "entry 1 of API_KEYS", "no valid key"),
        (f"a:{KEY_A},a:{SECRET}", "entry 2 of API_KEYS", "repeats the name of the entry 1"),
        (f"a:{SECRET},b:{SECRET}:*", "entry 2 of API_KEYS", "repeats the key of the entry 1"),
    ],
)
def test_a_bad_entry_stops_the_start_up_naming_its_position_not_its_key(value, position, why):
    with pytest.raises(StartupError) as error:
        keys_from_settings({"API_KEYS": value})
    message = str(error.value)
    assert position in message and why in message
    assert SECRET not in message and "short" not in message


def test_the_keys_file_takes_a_key_a_line_with_comments_and_blank_lines(tmp_path):
    path = tmp_path / "keys"
    path.write_text(f"# partners\n\nalpha:{KEY_A}\n  ops:{KEY_OPS}:*  \n")
    keys = keys_from_settings({"API_KEYS_FILE": str(path)})
    assert [(key.name, key.all_rows) for key in keys.keys] == [("alpha", False), ("ops", True)]
    assert keys.find(KEY_OPS).name == "ops" and keys.find(KEY_B) is None
    path.write_text(f"alpha:{KEY_A}\n# the next one is bad\nbravo:{SECRET}:x\n")
    with pytest.raises(StartupError, match="line 3 of API_KEYS_FILE") as error:
        keys_from_settings({"API_KEYS_FILE": str(path)})
    assert SECRET not in str(error.value)


@pytest.mark.parametrize(
    "settings_, message",
    [
        ({"API_KEYS": API_KEYS, "API_KEYS_FILE": "keys"}, "not both"),
        ({"API_KEYS_FILE": "/nonexistent/keys"}, "cannot be read"),
        ({"API_KEYS_FILE": "EMPTY"}, "holds no key"),
    ],
)
def test_the_keys_file_must_be_alone_readable_and_hold_a_key(tmp_path, settings_, message):
    empty = tmp_path / "empty"
    empty.write_text("# nothing yet\n\n")
    if settings_.get("API_KEYS_FILE") == "EMPTY":
        settings_ = {"API_KEYS_FILE": str(empty)}
    with pytest.raises(StartupError, match=message):
        keys_from_settings(settings_)


def test_create_app_refuses_bad_keys(tmp_path):
    with pytest.raises(StartupError, match="entry 1 of API_KEYS"):
        service.create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}", "API_KEYS": "a:"})


# ---------------------------------------------------------------------------------------
# Constant time, and never logged
# ---------------------------------------------------------------------------------------


def test_every_key_is_compared_by_a_digest_of_one_length_whatever_matches(monkeypatch):
    keys = parse_keys([(f"entry {n}", f"k{n}:{n:02d}-{KEY_A}") for n in range(10)])
    calls, real = [], hmac.compare_digest

    def spy(offered, expected):
        calls.append((len(offered), len(expected)))
        return real(offered, expected)

    monkeypatch.setattr(api_keys.hmac, "compare_digest", spy)
    for offered in ["00-" + KEY_A, "09-" + KEY_A, "09-" + KEY_A[:-1] + "x", "", "é" * 99]:
        calls.clear()
        keys.find(offered)
        assert calls == [(32, 32)] * 10  # every key, every time, SHA-256 digests


def median_time(find, offered, repeats, calls=20):
    """The median time of `calls` calls of find(offered), over `repeats` rounds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        for _ in range(calls):
            find(offered)
        times.append(time.perf_counter_ns() - start)
    return statistics.median(times)


def test_the_time_of_a_wrong_key_depends_neither_on_how_much_matched_nor_on_which_key():
    """The fastest of many rounds, each in a random order: load on the machine only ever
    slows a round down, so the fastest is each kind's own cost. An early exit (the first
    key that matches) would differ by 49 comparisons of 50, a character-by-character one by
    a key's length."""
    keys = parse_keys([(f"entry {n}", f"k{n}:{n:02d}-{KEY_A * 4}") for n in range(50)])
    first, last = "00-" + KEY_A * 4, "49-" + KEY_A * 4
    candidates = {
        "shares nothing": "x" * len(last),
        "all but one character": last[:-1] + "x",
        "the first key": first,
        "the last key": last,
    }
    medians = {name: [] for name in candidates}
    rng = random.Random(0)
    for _ in range(15):
        for name in rng.sample(list(candidates), len(candidates)):
            medians[name].append(median_time(keys.find, candidates[name], repeats=20))
    typical = {name: min(values) for name, values in medians.items()}
    slowest, fastest = max(typical.values()), min(typical.values())
    assert slowest - fastest < 0.25 * fastest, typical


def test_no_key_appears_in_the_logs(app, caplog, monkeypatch):
    """Not even when a request fails and its traceback is logged."""
    caplog.set_level(logging.DEBUG)
    client = app.test_client()
    for headers in [as_key(KEY_A), {"X-API-Key": KEY_B}, {"Authorization": f"Basic {KEY_OPS}"}]:
        client.post("/predict", json=body_of("/predict"), headers=headers)
        client.post("/update", json=body_of("/update"), headers=headers)
    monkeypatch.setattr(app.extensions["batcher"], "submit", failing)
    assert (
        client.post("/predict", json=body_of("/predict", 2), headers=as_key(KEY_A)).status_code
        == 500
    )
    assert "failed" in caplog.text  # the traceback was logged
    assert not any(key in caplog.text for key in (KEY_A, KEY_B, KEY_OPS))


def failing(_request):
    raise RuntimeError("scoring failed")


# ---------------------------------------------------------------------------------------
# Any header value: 401 or served, never a 500
# ---------------------------------------------------------------------------------------

# What a header can carry: latin-1 text without control characters (a line break ends it).
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=60)
near_keys = st.builds(
    lambda key, cut, tail: key[:cut] + tail,
    st.sampled_from([KEY_A, KEY_B, KEY_OPS, "*", "alpha", ADMIN_TOKEN]),
    st.integers(0, 30),
    header_text,
)
header_values = header_text | near_keys | st.sampled_from([KEY_A, KEY_B, KEY_OPS])
schemes = st.sampled_from(["Bearer ", "bearer ", "BEARER  ", "Basic ", "Token ", "", " Bearer "])


def sent_headers(authorization, api_key):
    """(the headers of a request, whether they offer a valid key). A header's value never
    starts with a space (HTTP strips it): nor do these."""
    authorization, api_key = (v if v is None else v.lstrip() for v in (authorization, api_key))
    headers = {"Authorization": authorization, "X-API-Key": api_key}
    headers = {name: value for name, value in headers.items() if value is not None}
    return headers, offered_by(authorization, api_key) in {KEY_A, KEY_B, KEY_OPS}


key_headers = st.builds(
    sent_headers,
    st.none() | st.builds(str.__add__, schemes, header_values),
    st.none() | header_values,
)


def test_any_authorization_or_api_key_header_is_a_401_or_served(tmp_path):
    app = service.create_app(keyed_settings(f"sqlite:///{tmp_path / 'p.db'}"))
    client, schema = app.test_client(), spec_schema(app)
    seen = Counter()

    @given(route=st.sampled_from(ROUTES), sent=key_headers, observation_id=st.integers(1, 5))
    @settings(max_examples=200, **BOUNDED)
    def check(route, sent, observation_id):
        headers, valid = sent
        response = client.post(route, json=body_of(route, observation_id), headers=headers)
        assert response.status_code in ((200, 403, 404) if valid else (401,)), response.text
        schema[route]["POST"].validate_response(response)
        seen[response.status_code == 401] += 1

    check()
    assert seen[True] > 50 and seen[False] > 20, seen  # refused and served, both exercised


def offered_by(authorization, api_key):
    """The key a request offers, as docs/api.md says: X-API-Key's value when it is sent,
    else Authorization's after the scheme Bearer (in any case); spaces around are ignored."""
    if api_key is not None:
        return api_key.strip()
    scheme, _, token = (authorization or "").strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


# ---------------------------------------------------------------------------------------
# Over HTTP: gunicorn, two workers
# ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_gunicorn_server_with_two_workers_refuses_and_serves_by_key(start_server, database_url):
    server = start_server(database_url, workers=2, env={"API_KEYS": API_KEYS})
    url = server.url

    with requests.Session() as session:  # kept alive, and fresh connections: both workers
        for case, headers in REFUSED.items():
            for route in ROUTES:
                response = requests.post(url + route, json=body_of(route), headers=headers)
                assert response.status_code == 401, (case, route)
                assert response.headers["WWW-Authenticate"].startswith(CHALLENGE)
                assert "error" in response.json()
        for observation_id in range(1, 9):
            answer = session.post(
                url + "/predict", json=body_of("/predict", observation_id), headers=as_key(KEY_A)
            )
            assert answer.status_code == 200
        update = requests.post(url + "/update", json=body_of("/update"), headers=as_key(KEY_B))
        assert update.status_code == 403
        update = requests.post(
            url + "/update", json=body_of("/update"), headers={"X-API-Key": KEY_A}
        )
        assert update.status_code == 200 and update.json()["true_class"] == 1

    seen = Counter()

    # Header values as gunicorn parses them off the wire (the test client does not).
    @given(sent=key_headers, observation_id=st.integers(100, 120))
    @settings(max_examples=60, **BOUNDED)
    def any_header(sent, observation_id):
        headers, valid = sent
        response = requests.post(
            url + "/predict", json=body_of("/predict", observation_id), headers=headers, timeout=30
        )
        assert response.status_code in ((200, 409) if valid else (401,)), response.text
        seen[valid] += 1

    any_header()
    assert seen[True] and seen[False] > 20, seen
    log = server.output()
    assert '"POST /predict HTTP/1.1" 401' in log and '"POST /predict HTTP/1.1" 200' in log
    assert not any(key[4:] in log for key in (KEY_A, KEY_B, KEY_OPS))
