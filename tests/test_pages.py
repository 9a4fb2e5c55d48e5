"""The two web pages, / ("try the model") and /monitor, on their own and in a real browser.

The browser is Debian's headless Chromium (packages chromium and chromium-driver), driven
by selenium pointed at /usr/bin: nothing is downloaded at run time. Two models are served,
each by one gunicorn for the whole module: the shipped Titanic pipeline, and a model
swapped in by its three artifacts with integer, float, boolean and string columns. One
browser visits both. Every page visited is saved as a PNG in the test's tmp folder;
`make screenshots` also writes the README's pictures (docs/*.png).

The page speaks the model's contract: the tutorial's, and briefs (test_smoke_check.BRIEFS):
the stop-and-search brief is visited in the browser too (a flat body under a string id,
posted to /should_search, its decision shown).

Without Chromium the browser tests skip and say why, except in CI (CI=true), where
.ci/run installs it and a missing browser is a failure.
"""

import hashlib
import html
import json
import os
import pickle
import random
import re
import shlex
import subprocess
import tempfile
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from html.parser import HTMLParser
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import requests
from conftest import EXAMPLE, ROOT, TITANIC, LiveServer, service
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, OrdinalEncoder, StandardScaler
from test_smoke_check import BRIEF_OBSERVATIONS, TASK_EXAMPLES, brief_dir, example_server

from model_service import pages

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ADMIN_TOKEN = "pages-test-token"
WAIT_SECONDS = 15

# ---------------------------------------------------------------------------------------
# A model swapped in by its three artifacts: one column of each kind
# ---------------------------------------------------------------------------------------

CITIES = ["Lyon", "Nice", "Paris"]


def flats(count, seed):
    """Observations of the swapped model: whether a flat sells within a month."""
    rng = random.Random(seed)
    return [
        {
            "rooms": rng.randint(1, 6),
            "area": rng.choice([None, round(rng.uniform(15, 160), 1)]),
            "garden": rng.random() < 0.4,
            "city": rng.choice([*CITIES, None]),
        }
        for _ in range(count)
    ]


def write_flat_model(model_dir):
    """Train a tiny pipeline and write pipeline.pickle, columns.json, dtypes.pickle, and
    the training profile that /stats compares the traffic with (monitoring/drift.py)."""
    from model_service.monitoring import drift  # the service's own module, also used by notebook 1

    frame = pd.DataFrame(flats(200, seed=1)).astype(
        {"rooms": "int64", "area": "float64", "garden": "bool", "city": "str"}
    )
    sold = ((frame["rooms"] <= 3) ^ (frame["city"] == "Paris")).astype(int)
    pipeline = make_pipeline(
        ColumnTransformer(
            [
                ("numbers", make_pipeline(SimpleImputer(), StandardScaler()), ["rooms", "area"]),
                (
                    "city",
                    make_pipeline(
                        SimpleImputer(strategy="constant", fill_value="missing"),
                        OneHotEncoder(handle_unknown="ignore"),
                    ),
                    ["city"],
                ),
                ("garden", "passthrough", ["garden"]),
            ]
        ),
        LogisticRegression(),
    ).fit(frame, sold)
    joblib.dump(pipeline, model_dir / "pipeline.pickle")
    (model_dir / "columns.json").write_text(json.dumps(list(frame.columns)))
    (model_dir / "dtypes.pickle").write_bytes(pickle.dumps(frame.dtypes))
    version = hashlib.sha256((model_dir / "pipeline.pickle").read_bytes()).hexdigest()[:12]
    profile = drift.profile_training_data(frame, version)
    (model_dir / drift.PROFILE_FILE).write_text(json.dumps(profile))
    return model_dir


def passengers(count):
    """[(observation, true class)]: passengers notebook 1 held out, as realistic traffic."""
    from clients import replay_traffic  # `make replay` sends them all

    held_out = replay_traffic.held_out_passengers()[:count]
    return [(observation, label) for _, observation, label in held_out]


def flats_to_sell(count):
    """[(observation, None)]: flats whose outcome is drawn from the model's own probability."""
    return [(observation, None) for observation in flats(count, seed=11)]


@pytest.fixture(scope="module")
def flat_model_dir(tmp_path_factory):
    return write_flat_model(tmp_path_factory.mktemp("flat-model"))


# ---------------------------------------------------------------------------------------
# Without a browser: the HTML, the headers, the API left as it was
# ---------------------------------------------------------------------------------------


class FormReader(HTMLParser):
    """The form's controls: {name: {"tag", attributes..., "options": [values]}}."""

    def __init__(self):
        super().__init__()
        self.controls, self.labels, self._select, self._label = {}, {}, None, None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag in ("input", "select") and "name" in attributes:
            self.controls[attributes["name"]] = {"tag": tag, "options": [], **attributes}
            self._select = attributes["name"] if tag == "select" else None
        elif tag == "option" and self._select:
            self.controls[self._select]["options"].append(attributes.get("value"))
        elif tag == "label":
            self._label = attributes.get("for")

    def handle_data(self, data):
        if self._label and data.strip():
            self.labels[self._label] = data.strip()

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None
        if tag == "label":
            self._label = None


def form_of(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    reader = FormReader()
    reader.feed(response.get_data(as_text=True))
    return reader


def test_the_titanic_form_has_a_labelled_field_of_the_right_kind_per_column(tmp_path):
    app = service.create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}"})
    form = form_of(app.test_client())
    model = app.config["MODEL"]
    assert list(form.controls) == model.columns
    for name, control in form.controls.items():
        assert form.labels[control["id"]] == name  # a visible label for every field
    assert form.controls["Pclass"]["type"] == "number"
    assert form.controls["Pclass"]["step"] == "1"  # an integer column: whole-number steps
    assert form.controls["Age"]["step"] == "any"
    # Categories the encoders learned, without the imputer's "missing" placeholder; the
    # empty choice sends a missing value.
    assert form.controls["Sex"]["options"] == ["", "female", "male"]
    assert form.controls["Embarked"]["options"] == ["", "C", "Q", "S"]
    # Cabin's encoder sees decks (after CabinDeck), not cabins: free text.
    assert form.controls["Cabin"]["type"] == "text"


def test_a_swapped_model_gets_its_own_form(flat_model_dir, tmp_path):
    settings = {"DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}", "MODEL_DIR": flat_model_dir}
    form = form_of(service.create_app(settings).test_client())
    assert list(form.controls) == ["rooms", "area", "garden", "city"]
    assert (form.controls["rooms"]["type"], form.controls["rooms"]["step"]) == ("number", "1")
    assert (form.controls["area"]["type"], form.controls["area"]["step"]) == ("number", "any")
    assert form.controls["garden"]["options"] == ["", "true", "false"]
    assert form.controls["city"]["options"] == ["", *CITIES]


def test_categories_come_only_from_encoders_that_see_the_column_as_sent():
    frame = pd.DataFrame({"a": ["x", "y"], "b": ["p", "q"], "c": ["u", "v"], "n": [1.0, 2.0]})
    upper = FunctionTransformer(lambda values: np.char.upper(np.asarray(values, dtype=str)))
    pipeline = make_pipeline(
        ColumnTransformer(
            [
                ("by_index", OrdinalEncoder(), [0]),  # columns chosen by position
                ("changed", make_pipeline(upper, OneHotEncoder()), ["b"]),  # sees "P", "Q"
                ("by_mask", OneHotEncoder(), [False, False, True, False]),
                ("numbers", StandardScaler(), ["n"]),
            ]
        ),
        LogisticRegression(),
    ).fit(frame, [0, 1])
    assert pages.known_categories(pipeline, list(frame.columns)) == {
        "a": ["x", "y"],
        "c": ["u", "v"],
    }
    assert pages.known_categories(LogisticRegression(), ["a"]) == {}


def task_of_page(client):
    """(the data-task JSON for try.js, the words of "The model" about the task)."""
    page = client.get("/").get_data(as_text=True)
    task = json.loads(html.unescape(re.search(r"data-task='([^']*)'", page).group(1)))
    said = re.search(r'<p id="model-task">(.*?)</p>', page, re.S).group(1)
    return task, " ".join(re.sub(r"<[^>]+>", "", said).split())


@pytest.mark.parametrize(
    ("model", "settings", "task", "said"),
    [
        (
            "titanic",
            {},
            {"task": "binary", "threshold": 0.5, "positive_name": "1", "negative_name": "0"},
            "It predicts the probability of class 1 (the classes are 0 and 1). Its decision is "
            "class 1 when that probability is at least the threshold 0.5, class 0 otherwise. "
            "The true outcome of an observation goes to POST /update as true_class.",
        ),
        (
            "titanic",
            {"THRESHOLD": 0.1, "POSITIVE_CLASS": "0"},
            {"threshold": 0.1, "positive_class": 0, "positive_name": "0", "negative_name": "1"},
            "the probability of class 0 (the classes are 1 and 0). Its decision is class 0 when "
            "that probability is at least the threshold 0.1, class 1 otherwise.",
        ),
        (
            "wine",
            {},
            {"task": "multiclass", "names": ["class_0", "class_1", "class_2"]},
            "It predicts one of 3 classes (class_0, class_1, class_2): the most probable one, "
            "with the probability of each. The true outcome of an observation goes to POST "
            "/update as true_class.",
        ),
        (
            "diabetes",
            {},
            {"task": "regression", "targets": None, "truth_field": "true_value"},
            "It predicts a number. The true outcome of an observation goes to POST /update as "
            "true_value.",
        ),
        (
            "linnerud",
            {},
            {"task": "regression", "targets": ["Weight", "Waist"]},
            "It predicts 2 numbers: Weight, Waist. The true outcome of an observation goes to "
            "POST /update as true_value, an object with a number for each target.",
        ),
    ],
    ids=["titanic", "titanic-settings", "wine", "diabetes", "linnerud"],
)
def test_the_page_says_what_the_model_predicts_and_tells_the_script(
    model, settings, task, said, tmp_path
):
    settings = {"DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}", **settings}
    if model != "titanic":
        settings["MODEL_DIR"] = ROOT / "examples" / model
    client = service.create_app(settings).test_client()
    shown, words = task_of_page(client)
    assert task.items() <= shown.items(), shown
    assert said in words, words
    if model == "wine":  # what the answer names its probabilities by, in the model's order
        answer = client.post("/predict", json={"id": 1, "observation": TASK_EXAMPLES[model]})
        assert list(answer.json["probabilities"]) == shown["names"]


def contract_of_page(client):
    """(the data-contract JSON for try.js, the page's words: how it sends, the answer, the
    update)."""
    page = client.get("/").get_data(as_text=True)
    contract = json.loads(html.unescape(re.search(r"data-contract='([^']*)'", page).group(1)))

    def words(element_id):
        said = re.search(rf'<p id="{element_id}">(.*?)</p>', page, re.S).group(1)
        return " ".join(html.unescape(re.sub(r"<[^>]+>", "", said)).split())

    return contract, words("how-sent"), words("answer-words"), words("model-task")


@pytest.mark.parametrize(
    ("name", "sent", "answer", "update"),
    [
        (
            "tutorial",
            "sends it to POST /predict with a new random id, as any client would",
            "The answer of POST /predict holds proba, the probability of class 1.",
            "goes to POST /update as true_class.",
        ),
        (
            "stop_and_search",
            "sends it to POST /should_search with its id observation_id (a new random string, "
            "try-…), as any client would",
            "The answer of POST /should_search holds outcome, the decision (true: class true).",
            "goes to POST /search_result as outcome.",
        ),
        (
            "athletes",
            "with its id athlete (a new random string, try-…) and Jumps (the form's value),",
            "holds weight, the Weight predicted; waist, the Waist predicted.",
            "goes to POST /measured as weight for Weight, waist for Waist.",
        ),
        (
            "wines",
            "sends it to POST /classify with its id wine_id (a new random integer),",
            "holds cultivar, the label (the class predicted); scores, the probability of each "
            "class; all, the whole prediction; wine, the wine_id sent.",
            "goes to POST /cultivar as cultivar.",
        ),
    ],
)
def test_the_page_says_and_tells_the_script_the_contract(name, sent, answer, update, tmp_path):
    model_dir = TITANIC if name == "tutorial" else brief_dir(name, tmp_path)
    settings = {"DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}", "MODEL_DIR": str(model_dir)}
    app = service.create_app(settings)
    contract, how_sent, answer_words, model_words = contract_of_page(app.test_client())
    described = app.config["MODEL"].contract.describe(app.config["MODEL"].task)
    assert {key: contract[key] for key in described} == described  # /health's block
    assert contract["id_columns"] == (["Jumps"] if name == "athletes" else [])
    assert sent in how_sent and answer in answer_words and update in model_words
    if name == "athletes":  # the id's column says so
        form = form_of(app.test_client())
        hint = form.controls["Jumps"]["aria-describedby"].split()[0]
        page = app.test_client().get("/").get_data(as_text=True)
        assert re.search(rf'id="{hint}">[^<]*; part of the id</span>', page)


def test_the_pages_load_only_from_their_own_origin_and_the_api_stays_json(tmp_path):
    client = service.create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}"}).test_client()
    for path in ("/", "/monitor"):
        response = client.get(path)
        assert response.status_code == 200
        policy = response.headers["Content-Security-Policy"]
        assert "default-src 'self'" in policy and "unsafe-inline" not in policy
        page = response.get_data(as_text=True)
        assert "<script>" not in page and " style=" not in page  # the policy would block them
        assert "http://" not in page and "https://" not in page  # nothing from elsewhere
    for name, mimetype in [("try.js", "text/javascript"), ("style.css", "text/css")]:
        response = client.get(f"/static/{name}")
        assert (response.status_code, response.mimetype) == (200, mimetype)
    assert client.get("/static/nothing.js").json == {"error": "Not found: /static/nothing.js"}
    assert client.post("/").json == {"error": "Method POST is not allowed for /"}
    assert client.get("/nothing").json == {"error": "Not found: /nothing"}
    assert "Content-Security-Policy" not in client.get("/health").headers


# ---------------------------------------------------------------------------------------
# The browser and the servers: one of each per module
# ---------------------------------------------------------------------------------------


@dataclass
class Site:
    """A live server and what its model takes."""

    name: str  # in the names of the screenshots
    server: LiveServer
    example: dict  # an observation to type into the form
    traffic: object  # traffic(count) -> [(observation, true class or None), ...]

    @property
    def url(self):
        return self.server.url


def start_server(tmp_path_factory, name, env=None):
    database = tmp_path_factory.mktemp(name) / "predictions.db"
    env = {"ADMIN_TOKEN": ADMIN_TOKEN, **(env or {})}
    return LiveServer(f"sqlite:///{database}", workers=1, env=env)


@pytest.fixture(scope="module")
def sites(tmp_path_factory, flat_model_dir):
    """Both servers, started side by side (each takes seconds to load its model)."""
    titanic = start_server(tmp_path_factory, "titanic")
    flat = start_server(tmp_path_factory, "swapped-model", {"MODEL_DIR": str(flat_model_dir)})
    flat_example = {"rooms": 4, "area": None, "garden": True, "city": "Paris"}
    try:
        yield {
            "titanic": Site("titanic", titanic.wait_until_ready(), dict(EXAMPLE), passengers),
            "flat": Site("swapped-model", flat.wait_until_ready(), flat_example, flats_to_sell),
        }
    finally:
        titanic.stop()
        flat.stop()


@pytest.fixture(scope="module")
def titanic(sites):
    return sites["titanic"]


@pytest.fixture(scope="module")
def flat(sites):
    return sites["flat"]


@pytest.fixture(scope="module")
def chromium():
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        reason = (
            f"no headless browser: {', '.join(missing)} missing; install it with "
            "`apt-get install chromium chromium-driver`"
        )
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="module")
def browser(chromium, titanic, flat):
    """One Chromium for the module; it quits before the servers stop (after their
    fixtures), so that no kept-alive connection makes them wait."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.TemporaryDirectory(prefix="chromium-")
    options.add_argument(f"--user-data-dir={profile.name}")
    # Every request the browser makes is in the performance log: see requests_made().
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_window_size(1000, 900)
    driver.get("about:blank")  # past the start-up tab, whose requests are the browser's own
    driver.get_log("performance")
    yield driver
    driver.quit()
    profile.cleanup()


@pytest.fixture(params=["titanic", "flat"])
def site(request):
    return request.getfixturevalue(request.param)


# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------


def by(name):
    from selenium.webdriver.common.by import By

    return getattr(By, name)


def wait_until(driver, condition, what):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_SECONDS).until(lambda _: condition(), message=what)


def to_fixed(number, decimals):
    """JavaScript's number.toFixed(decimals) for a number >= 0: a tie rounds up (Python's
    format rounds it to even)."""
    exact = Decimal(number)  # the double's exact value, as toFixed reads it
    return str(exact.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP))


def text_of(driver, element_id):
    return driver.find_element(by("ID"), element_id).text


def fill_in(driver, observation):
    """Type or choose each value, as a person would; None leaves the field empty."""
    from selenium.webdriver.support.ui import Select

    for column, value in observation.items():
        field = driver.find_element(by("NAME"), column)
        if field.tag_name == "select":
            # Options: "" for missing, "true"/"false" for yes/no, else the category itself.
            choice = json.dumps(value) if isinstance(value, bool) else value or ""
            Select(field).select_by_value(choice)
        else:
            field.clear()
            if value is not None:
                field.send_keys(str(value))


def submit_and_wait(driver):
    """Press Enter in the first text or number field: the keyboard submits the form."""
    from selenium.webdriver.common.keys import Keys

    driver.execute_script("document.getElementById('result').dataset.state = 'waiting'")
    driver.find_element(by("CSS_SELECTOR"), "#observation-form input").send_keys(Keys.ENTER)
    wait_until(
        driver,
        lambda: (
            driver.find_element(by("ID"), "result").get_attribute("data-state")
            in ("answered", "refused")
        ),
        "no answer shown in #result",
    )
    return driver.find_element(by("ID"), "result").get_attribute("data-state")


def sent_request(driver):
    """The JSON the page sent, read back from the curl command it shows."""
    command = shlex.split(text_of(driver, "curl"))
    return command[command.index("-d") + 1], command


def api_predict(site, observation):
    body = {"id": random.getrandbits(62), "observation": observation}
    return requests.post(f"{site.url}/predict", json=body, timeout=10)


def requests_made(driver):
    """The URLs the browser requested since the last call (Chrome's performance log),
    except its own built-in pages (chrome://new-tab-page at start-up), which never leave it.
    """
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return [url for url in urls if not url.startswith(("chrome://", "chrome-untrusted://"))]


def assert_only_own_origin(driver, site):
    urls = requests_made(driver)
    assert urls and all(url.startswith(f"{site.url}/") for url in urls), urls
    loaded = driver.execute_script(
        "return performance.getEntriesByType('resource').map((entry) => entry.name)"
    )
    assert all(url.startswith(f"{site.url}/") for url in loaded), loaded
    console = [entry["message"] for entry in driver.get_log("browser")]
    # Nothing inline that the policy had to refuse, and no script error.
    broken = [text for text in console if "Content Security Policy" in text or "Uncaught" in text]
    assert not broken, broken


def screenshot(driver, folder, name, readme_name=None):
    """The whole page as folder/name.png; with SCREENSHOTS_DIR set (make screenshots), the
    README's pictures too, reduced to a small palette so that they stay small."""
    width, height = driver.get_window_size().values()
    driver.execute_script("window.scrollTo(0, 0)")
    full = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, full + 120)  # the window's frame is counted in its size
    path = folder / f"{name}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(width, height)
    target = os.environ.get("SCREENSHOTS_DIR")
    if readme_name and target:
        from PIL import Image

        with Image.open(path) as image:
            small = image.convert("RGB").quantize(colors=64, dither=Image.Dither.NONE)
            small.save(Path(target) / f"{readme_name}.png", optimize=True)
    return path


def open_page(driver, site, path):
    driver.get(f"{site.url}{path}")
    wait_until(
        driver, lambda: driver.execute_script("return document.readyState") == "complete", path
    )


# ---------------------------------------------------------------------------------------
# / in the browser
# ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_form_scores_an_observation_as_the_api_does(browser, site, tmp_path):
    open_page(browser, site, "/")
    fill_in(browser, site.example)
    assert submit_and_wait(browser) == "answered"

    answer = json.loads(text_of(browser, "answer"))
    assert text_of(browser, "probability") == to_fixed(answer["proba"], 4)
    assert api_predict(site, site.example).json() == answer  # the same model, the same answer
    meaning = text_of(browser, "meaning")
    assert f"{to_fixed(answer['proba'] * 100, 1)} % chance" in meaning
    # Both models decide for class 1 from 0.5 (the default THRESHOLD and POSITIVE_CLASS).
    decided, side = (1, "above") if answer["proba"] > 0.5 else (0, "below")
    assert text_of(browser, "decision") == f"class {decided}"
    assert f"{side} the threshold 0.5, so the decision is class {decided}." in meaning

    body, command = sent_request(browser)
    request = json.loads(body)
    assert request["observation"] == site.example
    assert isinstance(request["id"], int) and 0 <= request["id"] < 2**63  # a number, not text
    assert f'"id": {request["id"]},' in body  # written digit for digit, beyond 2^53
    # The curl command shown is the same request: sent again, it gets the same answer.
    assert command[:4] == ["curl", "-s", "-X", "POST"] and command[4] == f"{site.url}/predict"
    again = subprocess.run(["bash", "-c", text_of(browser, "curl")], capture_output=True, text=True)
    assert json.loads(again.stdout) == answer

    assert browser.switch_to.active_element.get_attribute("id") == "result"  # focus follows
    assert submit_and_wait(browser) == "answered"
    assert json.loads(sent_request(browser)[0])["id"] != request["id"]  # a new id each time
    in_readme = "try-the-model" if site.name == "titanic" else None  # docs/try-the-model.png
    screenshot(browser, tmp_path, f"try-the-model-{site.name}", in_readme)
    assert_only_own_origin(browser, site)


def js_rounded(number):
    """What try.js shows of a number: String(Number(x.toPrecision(6))), for numbers that
    JavaScript writes without an exponent (from 1e-6 to 1e21)."""
    value = float(f"{number:.6g}")
    return str(int(value)) if value.is_integer() else repr(value)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["wine", "diabetes"])
def test_the_page_shows_the_answer_of_each_task(browser, name, tmp_path):
    """A multiclass label with a bar per class, and a regressor's number (linnerud's two
    numbers differ from it only by a table: test_the_page_says_what_the_model_predicts)."""
    with example_server(name, tmp_path) as server:
        site = Site(name, server, TASK_EXAMPLES[name], traffic=None)
        requests_made(browser)  # forget the requests of the tests before this one
        open_page(browser, site, "/")
        fill_in(browser, site.example)
        assert submit_and_wait(browser) == "answered"
        answer = json.loads(text_of(browser, "answer"))
        assert api_predict(site, site.example).json() == answer
        if name == "wine":
            check_probabilities_shown(browser, answer)
        else:
            shown = js_rounded(answer["prediction"])
            assert text_of(browser, "prediction") == shown
            meaning = f"The model predicts {shown} for this observation (to 6 significant"
            assert text_of(browser, "meaning").startswith(meaning)
        again = subprocess.run(["bash", "-c", text_of(browser, "curl")], capture_output=True)
        assert json.loads(again.stdout) == answer  # the curl line sends the same request
        screenshot(browser, tmp_path, f"try-the-model-{name}")
        assert_only_own_origin(browser, site)


@pytest.mark.slow
def test_the_page_speaks_a_briefs_contract_in_the_browser(browser, tmp_path):
    """The stop-and-search brief: the form posts a flat body under a new string id to the
    brief's route, and shows its answer, {"outcome": true}, as the decision."""
    with example_server("stop_and_search", tmp_path) as server:
        site = Site("stop-and-search", server, STOP_AND_SEARCH_FORM, traffic=None)
        route = server.app.config["MODEL"].contract.predict_path
        requests_made(browser)  # forget the requests of the tests before this one
        open_page(browser, site, "/")
        fill_in(browser, site.example)
        assert submit_and_wait(browser) == "answered"

        body, command = sent_request(browser)
        request = json.loads(body)
        assert command[4] == f"{site.url}{route}" and route.rstrip("/") == "/should_search"
        assert f"{site.url}{route}" in requests_made(browser)  # where the page posted
        assert re.fullmatch(r"try-[0-9a-f]{16}", request.pop("observation_id"))
        assert request == site.example  # the features at the top level, next to the id
        answer = json.loads(text_of(browser, "answer"))
        same = requests.post(
            f"{site.url}/should_search/", json={**site.example, "observation_id": "api"}
        )
        assert answer == same.json() == {"outcome": True}  # the brief's example: search
        assert text_of(browser, "decision") == "class true"
        assert text_of(browser, "meaning").startswith(
            "The model's probability of class true is at least the threshold 0.1, so the "
            "decision is class true."
        )
        again = subprocess.run(["bash", "-c", text_of(browser, "curl")], capture_output=True)
        assert json.loads(again.stdout) == answer  # the curl line sends the same request
        screenshot(browser, tmp_path, "try-the-model-stop-and-search")

        # A refused value is named as the brief names it: the column alone, no "observation.".
        fill_in(browser, {"Part of a policing operation": None})
        assert submit_and_wait(browser) == "refused"
        message = "Part of a policing operation is required: it cannot be missing, null or NaN"
        assert text_of(browser, "error-message") == message
        field = browser.find_element(by("NAME"), "Part of a policing operation")
        assert field.get_attribute("aria-invalid") == "true"
        assert browser.switch_to.active_element == field
        assert_only_own_origin(browser, site)


# What a person types: the brief's example search (a date-time as text, a yes/no choice).
STOP_AND_SEARCH_FORM = BRIEF_OBSERVATIONS["stop_and_search"]


def check_probabilities_shown(browser, answer):
    label = answer["label"]
    assert text_of(browser, "label") == label
    best = max(answer["probabilities"].values())
    assert text_of(browser, "meaning").startswith(
        f"The most probable class is {label}, at {to_fixed(best * 100, 1)} %; the next one is "
    )
    rows = browser.find_elements(by("CSS_SELECTOR"), "#probabilities tr")[1:]  # after the head
    cells = [row.find_elements(by("CSS_SELECTOR"), "th, td") for row in rows]
    shown = [[cell.text for cell in row] for row in cells]
    assert shown == [
        [key + (" (the label)" if key == label else ""), f"{to_fixed(p * 100, 1)} %"]
        for key, p in answer["probabilities"].items()
    ]
    bars = browser.find_elements(by("CSS_SELECTOR"), "#probabilities meter")
    assert [float(bar.get_attribute("value")) for bar in bars] == [
        *answer["probabilities"].values()
    ]
    browser.set_window_size(390, 844)  # the table fits a phone
    try:
        assert browser.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth"
        ), "the page is wider than a phone"
    finally:
        browser.set_window_size(1000, 900)


@pytest.mark.slow
def test_a_refused_value_shows_the_services_error_next_to_its_field(
    browser, titanic, flat, tmp_path
):
    cases = [
        (titanic, {"Pclass": 2.5, "SibSp": None}, ["Pclass", "SibSp"]),
        (flat, {"garden": None, "rooms": -1.5}, ["rooms", "garden"]),
    ]
    for site, changes, named in cases:
        open_page(browser, site, "/")
        observation = {**site.example, **changes}
        fill_in(browser, observation)
        assert submit_and_wait(browser) == "refused"

        expected = api_predict(site, observation)
        assert expected.status_code == 422
        message = expected.json()["error"]
        assert text_of(browser, "error-message") == message
        for column, problem in zip(named, message.split("; "), strict=True):
            field = browser.find_element(by("NAME"), column)
            assert field.get_attribute("aria-invalid") == "true"
            error = browser.find_element(by("ID"), f"{field.get_attribute('id')}-error")
            assert error.is_displayed() and error.text == problem
            assert problem.startswith(f"observation.{column} ")
        first = browser.find_element(by("NAME"), named[0])
        assert browser.switch_to.active_element == first  # the keyboard is taken there
        for column in set(site.example) - set(named):
            assert browser.find_element(by("NAME"), column).get_attribute("aria-invalid") is None
        screenshot(browser, tmp_path, f"refused-{site.name}")
        assert_only_own_origin(browser, site)


@pytest.mark.slow
def test_the_form_works_with_the_keyboard_alone_at_a_phone_width(browser, flat, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    browser.set_window_size(390, 844)
    try:
        open_page(browser, flat, "/")
        assert browser.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth"
        ), "the page is wider than a phone"
        # Tab from the top of the page: every field, in column order, then the button.
        reached = []
        for _ in range(12):
            ActionChains(browser).send_keys(Keys.TAB).perform()
            focused = browser.switch_to.active_element
            reached.append(focused.get_attribute("name") or focused.text)
        fields = [name for name in reached if name in flat.example]
        assert fields == list(flat.example)
        assert reached.index("Predict") == reached.index("city") + 1
        # Typed and chosen by keys: the button is pressed with the space bar.
        browser.find_element(by("NAME"), "rooms").send_keys("3")
        browser.find_element(by("NAME"), "garden").send_keys("n")  # "no (false)"
        browser.find_element(by("NAME"), "city").send_keys("L")  # "Lyon"
        browser.execute_script("document.getElementById('result').dataset.state = 'waiting'")
        browser.find_element(by("CSS_SELECTOR"), "button[type=submit]").send_keys(Keys.SPACE)
        wait_until(
            browser,
            lambda: (
                browser.find_element(by("ID"), "result").get_attribute("data-state") == "answered"
            ),
            "the space bar did not submit the form",
        )
        sent = json.loads(sent_request(browser)[0])["observation"]
        assert sent == {"rooms": 3, "area": None, "garden": False, "city": "Lyon"}
        screenshot(browser, tmp_path, "try-the-model-phone")
    finally:
        browser.set_window_size(1000, 900)
    assert_only_own_origin(browser, flat)


# ---------------------------------------------------------------------------------------
# /monitor in the browser
# ---------------------------------------------------------------------------------------


def predictions_with_outcomes(site, count):
    """Predictions in one POST /predict-batch, then each true class through POST /update."""
    traffic = site.traffic(count)
    first_id = random.getrandbits(62)
    items = [{"id": first_id + i, "observation": o} for i, (o, _) in enumerate(traffic)]
    response = requests.post(f"{site.url}/predict-batch", json={"observations": items}, timeout=60)
    results = response.json()["results"]
    assert [result["status"] for result in results] == [200] * len(traffic), results
    drawn = random.Random(11)
    with requests.Session() as session:
        for index, (result, (_, label)) in enumerate(zip(results, traffic, strict=True)):
            if label is None:  # drawn from the probability; both classes from the start
                label = index % 2 if index < 2 else int(drawn.random() < result["answer"]["proba"])
            update = {"id": result["id"], "true_class": label}
            answer = session.post(f"{site.url}/update", json=update, timeout=10)
            assert answer.status_code == 200, answer.text


def stats_of(site, **query):
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    response = requests.get(f"{site.url}/stats", headers=headers, params=query, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def show_dashboard(driver, token):
    from selenium.webdriver.common.keys import Keys

    driver.execute_script("sessionStorage.clear()")
    driver.refresh()
    driver.find_element(by("NAME"), "token").send_keys(token, Keys.ENTER)


def dashboard_shown(driver):
    wait_until(
        driver,
        lambda: driver.find_element(by("ID"), "dashboard").is_displayed(),
        f"no dashboard: {text_of(driver, 'stats-status')}",
    )


@pytest.mark.slow
def test_the_dashboard_shows_what_stats_reports(browser, site, tmp_path):
    predictions_with_outcomes(site, 120 if site.name == "titanic" else 40)
    stats = stats_of(site)
    open_page(browser, site, "/monitor")
    show_dashboard(browser, ADMIN_TOKEN)
    dashboard_shown(browser)

    assert stats["metrics"]["roc_auc"] is not None
    assert text_of(browser, "metric-roc-auc") == to_fixed(stats["metrics"]["roc_auc"], 3)
    assert text_of(browser, "count-predictions") == str(stats["predictions"])
    assert text_of(browser, "count-labelled") == str(stats["labelled"]) != "0"

    def drawn(chart, shape):
        return len(browser.find_elements(by("CSS_SELECTOR"), f"#{chart} {shape}"))

    points = [b for b in stats["calibration"] if b["count"] and b["observed_rate"] is not None]
    assert drawn("calibration-chart", "circle.point") == len(points) > 0
    assert drawn("distribution-chart", "rect.bar") == len(stats["distribution"]) == 10
    if stats["drift"] is None:  # the Titanic model until notebook 1 writes its profile
        assert text_of(browser, "drift-note") == stats["drift_note"]
    else:
        assert drawn("drift-chart", "rect.bar") == len(stats["drift"])
        assert drawn("drift-chart", "line.threshold") == 1  # the mark at 0.25
        labels = [t.text for t in browser.find_elements(by("CSS_SELECTOR"), "#drift-chart text")]
        for column, drift in stats["drift"].items():
            said = to_fixed(drift["psi"], 3) + (" drifted" if drift["psi"] >= 0.25 else "")
            assert column in labels and said in labels, (column, said, labels)
    check_quality_over_time(browser, stats["daily"])

    # The token stays in this tab: the page shows the dashboard again after a reload.
    assert browser.execute_script("return sessionStorage.getItem('monitor.adminToken')")
    browser.refresh()
    dashboard_shown(browser)
    # The time window: the last hour holds every prediction just made.
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element(by("ID"), "window")).select_by_value("3600")
    wait_until(browser, lambda: "from 20" in text_of(browser, "window-text"), "window unchanged")
    assert text_of(browser, "count-predictions") == str(stats["predictions"])
    in_readme = "monitor" if site.name == "titanic" else None  # docs/monitor.png
    screenshot(browser, tmp_path, f"monitor-{site.name}", in_readme)
    assert_only_own_origin(browser, site)


# What /monitor's chart of quality over time drew, read in one call: its table (in a closed
# <details>: textContent), its tooltips, the circles' places and the bars' heights.
DAILY_DRAWN = """
const all = (selector) => [...document.querySelectorAll(selector)];
const numbers = (selector, name) => all(selector).map((node) => Number(node.getAttribute(name)));
return {
  shown: !document.getElementById("daily-section").hidden,
  labelledBy: document.getElementById("daily-chart").getAttribute("aria-labelledby"),
  headers: all("#daily-table thead th").map((cell) => cell.textContent),
  rows: all("#daily-table tbody tr").map((row) => [...row.cells].map((c) => c.textContent)),
  tips: all("#daily-chart title").map((title) => title.textContent),
  cx: numbers("#daily-chart circle.point", "cx"),
  cy: numbers("#daily-chart circle.point", "cy"),
  outlined: numbers("#daily-chart rect.bar-outline", "height"),
  filled: numbers("#daily-chart rect.bar", "height"),
  caption: document.getElementById("daily-caption").textContent,
  summary: document.getElementById("daily-summary").textContent,
};
"""


def plural(count, what):
    return f"{count} {what}{'' if count == 1 else 's'}"


def day_as_shown(day):
    """A day of /stats's daily as the page writes it: (its table row, the tooltip of its
    circle (none without outcomes), the tooltips of its two bars)."""
    date, rows, labelled = day["day"], day["predictions"], day["labelled"]
    bars = [f"{date}: {plural(rows, 'prediction')}", f"{date}: {labelled} with outcome"]
    if day["metric"] is None:
        return [date, str(rows), str(labelled), "none", "none"], [], bars
    value, low, high = (to_fixed(day["metric"][key], 3) for key in ("value", "low", "high"))
    circle = f"{date}: accuracy {value} ({low} to {high}), {labelled} with outcome"
    return [date, str(rows), str(labelled), value, f"{low} to {high}"], [circle], bars


def check_quality_over_time(driver, daily):
    """The chart of quality over time says what /stats's daily says, day for day: the
    accuracy of a classifier (both sites' models), each day with outcomes a circle at its
    value, each day two bars as high as its rows and its outcomes."""
    drawn = driver.execute_script(DAILY_DRAWN)
    judged = [day for day in daily if day["metric"]]
    assert drawn["shown"] and judged and drawn["labelledBy"] == "daily-caption"
    headers = ["day (UTC)", "predictions", "with outcome", "accuracy", "95 % interval"]
    assert drawn["headers"] == headers
    shown = [day_as_shown(day) for day in daily]
    assert drawn["rows"] == [row for row, _, _ in shown]
    circles = [tip for _, circle, _ in shown for tip in circle]
    assert drawn["tips"] == circles + [tip for _, _, bars in shown for tip in bars]
    # Accuracy from 0 (y 124) to 1 (y 12); the rows from 0 (y 206) to the most (60 higher).
    values = [day["metric"]["value"] for day in judged]
    assert drawn["cy"] == pytest.approx([124 - 112 * value for value in values], rel=1e-9)
    most = max(day["predictions"] for day in daily)
    rows = [60 * day["predictions"] / most for day in daily]
    assert drawn["outlined"] == pytest.approx(rows, rel=1e-9)
    assert drawn["filled"] == pytest.approx([60 * d["labelled"] / most for d in daily], rel=1e-9)
    assert "interval (Wilson's)" in drawn["caption"] and "higher is better" in drawn["caption"]
    assert drawn["summary"].startswith(f"{plural(len(daily), 'day')} with predictions (UTC: ")
    latest, _, _ = shown[daily.index(judged[-1])]
    outcomes = plural(judged[-1]["labelled"], "outcome")
    assert drawn["summary"].endswith(f"{latest[0]}: {latest[3]} ({latest[4]}) from {outcomes}.")
    check_made_up_days(driver)


def check_made_up_days(driver):
    """Days made up for a regressor of two targets: a day without outcomes has its bars and
    no circle, a day without rows its empty slot, an interval below 0 is cut at the axis,
    the caption says that a lower MAE is better; no day at all hides the section."""
    days = [
        {"day": "2026-03-01", "predictions": 40, "labelled": 30, "metric": None},
        {"day": "2026-03-02", "predictions": 25, "labelled": 0, "metric": None},
        {"day": "2026-03-04", "predictions": 10, "labelled": 2, "metric": None},
    ]
    days[0]["metric"] = {"name": "mae", "value": 12.5, "low": 9.25, "high": 15.75}
    days[2]["metric"] = {"name": "mae", "value": 3.0, "low": -1.5, "high": 7.5}
    task = {"task": "regression", "targets": ["Weight", "Waist"]}
    drawn = driver.execute_script(f"showDaily(...arguments);{DAILY_DRAWN}", days, task)
    assert drawn["headers"][3] == "MAE (lower is better)"
    assert drawn["rows"] == [
        ["2026-03-01", "40", "30", "12.500", "9.250 to 15.750"],
        ["2026-03-02", "25", "0", "none", "none"],
        ["2026-03-04", "10", "2", "3.000", "-1.500 to 7.500"],
    ]
    assert "(MAE) of its first target, Weight, as a circle" in drawn["caption"]
    assert "lower is better" in drawn["caption"]
    assert drawn["summary"] == (
        "3 days with predictions (UTC: 2026-03-01 to 2026-03-04), 2 with outcomes. MAE: the "
        "best 3.000 on 2026-03-04, the worst 12.500 on 2026-03-01; the latest, 2026-03-04: "
        "3.000 (-1.500 to 7.500) from 2 outcomes."
    )
    # MAE from 0 to 20 (15.75 rounded up); 4 slots of 66.5 from x 44, the third one empty.
    assert drawn["cx"] == pytest.approx([44 + 0.5 * 66.5, 44 + 3.5 * 66.5], rel=1e-9)
    assert drawn["cy"] == pytest.approx([124 - 112 * 12.5 / 20, 124 - 112 * 3 / 20], rel=1e-9)
    assert drawn["outlined"] == pytest.approx([60, 60 * 25 / 40, 60 * 10 / 40], rel=1e-9)
    assert drawn["filled"] == pytest.approx([60 * 30 / 40, 0, 60 * 2 / 40], rel=1e-9)
    drawn = driver.execute_script(f"showDaily([], arguments[0]);{DAILY_DRAWN}", task)
    assert not drawn["shown"]


@pytest.mark.slow
def test_a_wrong_token_is_told_plainly(browser, titanic, tmp_path):
    open_page(browser, titanic, "/monitor")
    show_dashboard(browser, "not-the-token")
    wait_until(browser, lambda: "Wrong token" in text_of(browser, "stats-status"), "no message")
    assert not browser.find_element(by("ID"), "dashboard").is_displayed()
    assert browser.execute_script("return sessionStorage.getItem('monitor.adminToken')") is None
    assert browser.switch_to.active_element.get_attribute("name") == "token"
    screenshot(browser, tmp_path, "wrong-token")
    assert_only_own_origin(browser, titanic)
