"""/monitor's "Challenger in the shadow" in headless Chromium: what /stats's `challenger`
says, number for number, with the folders /health names, and the challenger's rules next
to the model's in the Groups section.

One gunicorn serves the tutorial's model with test_challenger.py's rules (api.toml) and its
challenger (CHALLENGER_DIR, the same pipeline refitted on half of the traffic); the browser
and the helpers are test_pages.py's. Its `sites` fixture is replaced here by this one
server, so that its `browser` starts no other.
"""

import shutil
import time

import pytest
import requests
from conftest import EXAMPLE, TITANIC
from test_challenger import RULE_NAMES, RULES, fitted_challenger
from test_pages import (  # noqa: F401 (browser, chromium, flat and titanic are fixtures)
    ADMIN_TOKEN,
    Site,
    assert_only_own_origin,
    browser,
    by,
    chromium,
    dashboard_shown,
    flat,
    open_page,
    passengers,
    predictions_with_outcomes,
    screenshot,
    show_dashboard,
    start_server,
    stats_of,
    text_of,
    titanic,
    to_fixed,
    wait_until,
)

PREDICTIONS = 80  # notebook 1's held-out passengers, each with its outcome
# What the page calls each binary figure, and which way is better (1 higher, -1 lower).
FIGURES = [
    ("roc_auc", "ROC AUC", 1),
    ("accuracy", "accuracy", 1),
    ("precision", "precision", 1),
    ("recall", "recall", 1),
    ("f1", "F1", 1),
    ("positive_rate", "share decided positive", 0),
    ("log_loss", "log loss", -1),
    ("brier", "Brier score", -1),
]
STATUS = {"met": "met", "not_met": "not met", "undecided": "undecided"}


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    """test_pages.py's `sites`, for this module: the one server with a challenger."""
    folder = tmp_path_factory.mktemp("challenged")
    _, challenger_dir, _, _ = fitted_challenger("titanic", folder)
    model_dir = shutil.copytree(TITANIC, folder / "model")
    (model_dir / "api.toml").write_text(RULES)
    env = {"MODEL_DIR": str(model_dir), "CHALLENGER_DIR": str(challenger_dir)}
    server = start_server(tmp_path_factory, "challenged", env)
    try:
        site = Site("challenger", server.wait_until_ready(), dict(EXAMPLE), passengers)
        yield {"titanic": site, "flat": site}
    finally:
        server.stop()


def shadowed_stats(site, seconds=15):
    """/stats once the challenger has scored every prediction (it scores after answering)."""
    deadline = time.monotonic() + seconds
    while (stats := stats_of(site))["challenger"]["rows"] < PREDICTIONS:
        assert time.monotonic() < deadline, stats["challenger"]
        time.sleep(0.1)
    return stats


def js_fixed(number):
    """number.toFixed(3), of either sign (toFixed rounds the magnitude)."""
    return ("-" if number < 0 else "") + to_fixed(abs(number), 3)


def expected_row(key, name, better, challenger):
    """[figure, model, challenger, difference [low, high], verdict] as the page writes them."""
    difference = challenger["differences"][key]
    value, low, high = difference["value"], difference["low"], difference["high"]
    verdict = "could be chance"
    if low > 0 or high < 0:
        if better == 0:
            verdict = f"{'higher' if low > 0 else 'lower'}, more than chance"
        else:
            way = "better" if (low > 0) == (better > 0) else "worse"
            verdict = f"challenger {way}, more than chance"
    return [
        name,
        js_fixed(challenger["model_metrics"][key]),
        js_fixed(challenger["metrics"][key]),
        f"{'+' if value > 0 else ''}{js_fixed(value)} [{js_fixed(low)}, {js_fixed(high)}]",
        verdict,
    ]


def expected_test_sentence(test):
    right, reverse, p = test["challenger_better"], test["model_better"], test["p_value"]
    shown = "p < 0.001" if p < 0.001 else f"p = {to_fixed(p, 3 if p < 0.01 else 2)}"
    said = (
        "McNemar's exact test: the challenger was right where the model was wrong on "
        f"{right} prediction{'' if right == 1 else 's'}, the reverse on {reverse}; {shown}: "
    )
    if p >= 0.05:
        return said + "this could be chance."
    favour = "the challenger's" if right > reverse else "the model's"
    return said + f"more than chance, in {favour} favour."


def rows_of(driver, table_id):
    rows = driver.find_elements(by("CSS_SELECTOR"), f"#{table_id} tbody tr")
    return [row.find_elements(by("CSS_SELECTOR"), "th, td") for row in rows]


@pytest.mark.slow
def test_the_monitor_shows_the_challenger_beside_the_model(browser, titanic, tmp_path):  # noqa: F811
    site = titanic  # the one server of this module: the model with its challenger
    predictions_with_outcomes(site, PREDICTIONS)
    challenger = shadowed_stats(site)["challenger"]
    health = requests.get(f"{site.url}/health", timeout=10).json()
    open_page(browser, site, "/monitor")
    show_dashboard(browser, ADMIN_TOKEN)
    dashboard_shown(browser)
    wait_until(
        browser,
        lambda: browser.find_element(by("ID"), "challenger-section").is_displayed(),
        "no challenger section",
    )

    assert text_of(browser, "challenger-version") == challenger["version"]
    assert text_of(browser, "challenger-folder") == health["challenger"]["folder"]
    assert text_of(browser, "model-folder") == health["model"]["folder"]
    assert text_of(browser, "challenger-rows") == str(PREDICTIONS)
    assert text_of(browser, "challenger-labelled") == str(challenger["labelled"]) != "0"
    assert text_of(browser, "challenger-changed") == str(challenger["decisions_changed"])

    cells = rows_of(browser, "challenger-table")
    shown = [[cell.text for cell in row] for row in cells]
    assert shown == [expected_row(*figure, challenger) for figure in FIGURES]
    verdicts = [row[4] for row in shown]
    assert any(verdict.endswith("more than chance") for verdict in verdicts)  # on this traffic
    for row in cells:  # a verdict beyond chance stands out; "could be chance" does not
        highlighted = row[4].get_attribute("class") in ("better", "worse", "beyond")
        assert highlighted == row[4].text.endswith("more than chance"), row[4].text
    assert text_of(browser, "challenger-test") == expected_test_sentence(challenger["paired_test"])

    # The Groups section opens on the first rule's columns (Sex): each rule's status for
    # the model and for the challenger, as /stats?by=Sex judges them on the rows both scored.
    wait_until(
        browser,
        lambda: browser.find_element(by("ID"), "challenger-rules").is_displayed(),
        "no rules for the challenger",
    )
    sides = stats_of(site, by="Sex")["challenger"]
    statuses = [
        [cell.text.split("\n")[0] for cell in row]
        for row in rows_of(browser, "challenger-rules-table")
    ]
    assert [row[0] for row in statuses] == RULE_NAMES
    assert [row[1:] for row in statuses] == [
        [STATUS[mine["status"]], STATUS[theirs["status"]]]
        for mine, theirs in zip(sides["model"]["rules"], sides["challenger"]["rules"], strict=True)
    ]
    screenshot(browser, tmp_path, "monitor-challenger")
    assert_only_own_origin(browser, site)
