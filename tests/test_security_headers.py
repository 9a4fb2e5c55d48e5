"""Headers every answer carries, and CORS (model_service/security_headers.py)."""

import pytest
from conftest import EXAMPLE, service
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model_service.errors import StartupError
from model_service.pages import CONTENT_SECURITY_POLICY

ORIGINS = ("https://brief.example", "http://localhost:3000")
KEY = "alice-key-" + "3f" * 8
BOUNDED = {
    "deadline": None,
    "database": None,
    "derandomize": True,
    "max_examples": 200,
    "suppress_health_check": [HealthCheck.function_scoped_fixture],
}


def make_app(tmp_path, **settings):
    return service.create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}", **settings})


@pytest.fixture
def cors_client(tmp_path):
    return make_app(tmp_path, CORS_ORIGINS=" , ".join(ORIGINS)).test_client()


def preflight(client, path, origin, method="POST"):
    headers = {"Origin": origin, "Access-Control-Request-Method": method}
    return client.options(path, headers=headers)


# --- Every answer ---------------------------------------------------------------------


def boom():
    raise RuntimeError("an unexpected error")


ANSWERS = {  # name: (method, path, body) and the status it gets
    "page": ("GET", "/", None, 200),
    "dashboard": ("GET", "/monitor", None, 200),
    "health": ("GET", "/health", None, 200),
    "prediction": ("POST", "/predict", {"id": 1, "observation": EXAMPLE}, 200),
    "invalid": ("POST", "/predict", {"id": 1}, 422),
    "not JSON": ("POST", "/predict", "not json", 400),
    "unknown route": ("GET", "/nowhere", None, 404),
    "wrong method": ("GET", "/predict", None, 405),
    "admin route without token": ("GET", "/metrics", None, 404),
    "static file": ("GET", "/static/try.js", None, 200),
    "OpenAPI": ("GET", "/openapi.json", None, 200),
    "server error": ("GET", "/boom", None, 500),
}


@pytest.mark.parametrize("name", ANSWERS)
def test_every_answer_carries_the_headers(name, tmp_path):
    app = make_app(tmp_path)
    app.add_url_rule("/boom", view_func=boom)
    method, path, body, status = ANSWERS[name]
    options = {"data": body} if isinstance(body, str) else {"json": body}
    response = app.test_client().open(path, method=method, **options)

    assert response.status_code == status
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    # The pages keep their policy (pages.py); the JSON API needs none.
    assert response.headers.get("Content-Security-Policy") == (
        CONTENT_SECURITY_POLICY if name in ("page", "dashboard") else None
    )
    assert "Access-Control-Allow-Origin" not in response.headers  # CORS is off


# --- CORS -------------------------------------------------------------------------------


def test_without_cors_origins_a_browser_gets_no_permission(tmp_path):
    client = make_app(tmp_path).test_client()
    answer = client.post(
        "/predict", json={"id": 1, "observation": EXAMPLE}, headers={"Origin": ORIGINS[0]}
    )
    asked = preflight(client, "/predict", ORIGINS[0])
    for response in (answer, asked):
        assert "Access-Control-Allow-Origin" not in response.headers
        assert "Origin" not in response.vary
    assert asked.status_code == 200 and "Access-Control-Allow-Methods" not in asked.headers


@pytest.mark.parametrize("origin", ORIGINS)
def test_a_named_origin_may_call_and_read_the_answer(origin, cors_client):
    response = cors_client.post(
        "/predict", json={"id": 1, "observation": EXAMPLE}, headers={"Origin": origin}
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == origin
    assert "Origin" in response.vary  # the answer depends on who asks
    assert "Retry-After" in response.headers["Access-Control-Expose-Headers"]
    assert "Access-Control-Allow-Credentials" not in response.headers


@pytest.mark.parametrize(
    ("path", "methods"), [("/predict", "POST"), ("/update/", "POST"), ("/health", "GET")]
)
def test_a_preflight_from_a_named_origin_is_answered(path, methods, cors_client):
    response = preflight(cors_client, path, ORIGINS[1], methods)
    assert response.status_code == 204 and response.get_data() == b""
    assert response.headers["Access-Control-Allow-Origin"] == ORIGINS[1]
    assert response.headers["Access-Control-Allow-Methods"] == methods
    allowed = {name.strip() for name in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"Content-Type", "Authorization", "X-API-Key"} <= allowed
    assert int(response.headers["Access-Control-Max-Age"]) > 0


@pytest.mark.parametrize(
    "origin", ["https://evil.example", "https://brief.example.evil", "http://brief.example", "null"]
)
def test_another_origin_gets_no_permission(origin, cors_client):
    answer = cors_client.post(
        "/predict", json={"id": 1, "observation": EXAMPLE}, headers={"Origin": origin}
    )
    asked = preflight(cors_client, "/predict", origin)
    assert answer.status_code == 200 and asked.status_code == 200  # Flask's own OPTIONS
    for response in (answer, asked):
        assert "Access-Control-Allow-Origin" not in response.headers
        assert "Origin" in response.vary


def test_a_preflight_needs_no_api_key_but_the_request_does(tmp_path):
    client = make_app(tmp_path, CORS_ORIGINS=ORIGINS[0], API_KEYS=f"alice:{KEY}").test_client()
    asked = preflight(client, "/predict", ORIGINS[0])
    body = {"id": 1, "observation": EXAMPLE}
    without = client.post("/predict", json=body, headers={"Origin": ORIGINS[0]})
    with_key = client.post("/predict", json=body, headers={"Origin": ORIGINS[0], "X-API-Key": KEY})
    assert [asked.status_code, without.status_code, with_key.status_code] == [204, 401, 200]
    for response in (asked, without, with_key):  # a browser may read the 401's error too
        assert response.headers["Access-Control-Allow-Origin"] == ORIGINS[0]


def test_a_star_lets_any_origin_call_without_credentials(tmp_path):
    client = make_app(tmp_path, CORS_ORIGINS="*").test_client()
    response = client.get("/health", headers={"Origin": "https://anyone.example"})
    asked = preflight(client, "/predict", "https://anyone.example")
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Origin" not in response.vary  # the same answer for every origin
    assert asked.status_code == 204 and asked.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize(
    "origins",
    [
        "https://brief.example/",
        "https://brief.example/app",
        "brief.example",
        "ftp://brief.example",
        "https://Brief.example",
        "*, https://brief.example",
        "https://brief.example:port",
    ],
)
def test_a_malformed_origin_stops_the_start_up(origins, tmp_path):
    with pytest.raises(StartupError, match="CORS_ORIGINS: .* is not an origin"):
        make_app(tmp_path, CORS_ORIGINS=origins)


def test_ipv6_and_ports_are_origins(tmp_path):
    origin = "http://[::1]:8080"
    client = make_app(tmp_path, CORS_ORIGINS=f"{origin},https://a.example:8443").test_client()
    assert (
        client.get("/health", headers={"Origin": origin}).headers["Access-Control-Allow-Origin"]
        == origin
    )


HEADER_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)


@settings(**BOUNDED)
@given(
    origin=st.one_of(st.sampled_from(ORIGINS), HEADER_TEXT, HEADER_TEXT.map("https://{}".format))
)
def test_permission_is_given_exactly_to_the_named_origins(origin, cors_client):
    response = cors_client.get("/health", headers={"Origin": origin})
    asked = preflight(cors_client, "/predict", origin)
    if origin in ORIGINS:
        assert response.headers["Access-Control-Allow-Origin"] == origin
        assert asked.status_code == 204
    else:
        assert "Access-Control-Allow-Origin" not in response.headers
        assert asked.status_code == 200 and "Access-Control-Allow-Origin" not in asked.headers
    assert response.headers["X-Content-Type-Options"] == "nosniff"
