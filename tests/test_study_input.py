"""The rater's page in headless Chromium, one deliberate act per answer: a held arrow key, Enter or
Space on the button just clicked, and answers before the pair was on screen MIN_MS answer nothing;
a failed image load retries with a message and records nothing; no console errors (favicon)."""

from __future__ import annotations

import shutil
import sqlite3

import pytest
from helpers.store import CHROMIUM, free_port, launch_chromium, start_server, stop_server, write_fixture_study

from reports.study.page import MIN_MS

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} not installed")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return write_fixture_study(tmp_path_factory.mktemp("input"), per_rater=6)


@pytest.fixture(scope="module")
def served(study):
    port = free_port()
    proc = start_server(study, port)
    try:
        yield study, f"http://127.0.0.1:{port}/"
    finally:
        stop_server(proc)


@pytest.fixture
def browser(tmp_path):
    """A fresh profile (so a new rater) per test; yields a page that records its answer requests."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        ctx = launch_chromium(p, tmp_path / "profile")
        try:
            page = ctx.new_page()
            page.sent, page.errors = [], []
            page.on("request", lambda r: page.sent.append(r.post_data_json) if r.url.endswith("/api/answer") else None)
            page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: page.errors.append(str(e)))
            page.on("response", lambda r: page.errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
            yield page
        finally:
            ctx.close()


def _shown(page, previous: str | None) -> str:
    """Wait until a new pair is on screen (both images loaded), then past MIN_MS, so an answer counts."""
    page.wait_for_function("prev => document.body.dataset.pair && document.body.dataset.pair !== prev",
                           arg=previous or "", timeout=20000)
    page.wait_for_timeout(MIN_MS + 150)  # measured from after the load, so at least MIN_MS on screen
    return page.evaluate("document.body.dataset.pair")


def _open(page, url: str) -> tuple[str, str]:
    """Open the study as a new rater: (the first pair once it counts as seen, the rater id)."""
    page.goto(url)
    return _shown(page, None), page.inner_text("#rater")


def _answers(study, rater: str) -> list[tuple[str, int]]:
    con = sqlite3.connect(study / "answers.sqlite")
    try:
        return con.execute("SELECT pair_id, ms FROM answers WHERE rater_id = ? ORDER BY answered", (rater,)).fetchall()
    finally:
        con.close()


def test_a_held_arrow_key_answers_one_pair(served, browser):
    """Holding ArrowLeft answered 6/6 pairs in 1.5 s (auto-repeat keydowns, 7-96 ms each)."""
    study, url = served
    page = browser
    first, rater = _open(page, url)
    page.keyboard.down("ArrowLeft")
    for _ in range(40):  # Playwright marks each further down of a held key repeat=true, like auto-repeat
        page.keyboard.down("ArrowLeft")
        page.wait_for_timeout(30)
    second = _shown(page, first)
    assert [p for p, _ in _answers(study, rater)] == [first]
    assert page.inner_text("#progress") == "1 / 8"
    page.keyboard.up("ArrowLeft")  # released: the next press answers again
    page.keyboard.press("ArrowRight")
    _shown(page, second)
    got = _answers(study, rater)
    assert [p for p, _ in got] == [first, second] and all(ms >= MIN_MS for _, ms in got)
    assert len(page.sent) == 2 and all(b["ms"] >= MIN_MS for b in page.sent)  # the page sent nothing else
    assert page.errors == []


def test_enter_or_space_on_the_clicked_button_do_not_answer(served, browser):
    """After a click, focus stayed on the button: Enter/Space answered the next pair unseen (ms=20)."""
    study, url = served
    page = browser
    first, rater = _open(page, url)
    page.click("#left")
    second = _shown(page, first)
    for key in ("Enter", " ", "Enter"):
        page.keyboard.press(key)
    page.wait_for_timeout(500)
    assert [p for p, _ in _answers(study, rater)] == [first]
    assert page.evaluate("document.body.dataset.pair") == second
    page.click("#right")  # a pointer click still answers
    _shown(page, second)
    assert len(_answers(study, rater)) == 2
    assert page.errors == []  # no 404 for /favicon.ico either


def test_tab_then_enter_or_space_answers_one_pair_each(served, browser):
    """A keyboard user reaches a button with Tab and presses Enter or Space: one answer each time (this
    path had been shut with the clicked-button fix), a held Enter still answers once."""
    study, url = served
    page = browser
    first, rater = _open(page, url)
    page.keyboard.press("Tab")
    page.keyboard.down("Enter")
    for _ in range(20):  # held: repeat keydowns land on the body once the button has answered
        page.keyboard.down("Enter")
        page.wait_for_timeout(30)
    page.keyboard.up("Enter")
    second = _shown(page, first)
    page.keyboard.press("Tab")
    page.keyboard.press(" ")
    _shown(page, second)
    got = _answers(study, rater)
    assert [p for p, _ in got] == [first, second] and all(ms >= MIN_MS for _, ms in got)
    assert page.errors == []


# Fires a pointer-like click and an arrow key in the same task that puts the first pair on screen.
EARLY = """
new MutationObserver((_, obs) => {
  if (!document.body || !document.body.dataset.pair) return;
  obs.disconnect();
  document.getElementById("left").dispatchEvent(new MouseEvent("click", {bubbles: true, detail: 1}));
  document.dispatchEvent(new KeyboardEvent("keydown", {key: "ArrowRight", bubbles: true}));
  document.dispatchEvent(new KeyboardEvent("keyup", {key: "ArrowRight", bubbles: true}));
  window.earlyFired = true;
}).observe(document, {subtree: true, attributes: true, attributeFilter: ["data-pair"]});
"""


def test_answers_before_min_ms_on_screen_are_ignored(served, browser):
    study, url = served
    page = browser
    page.add_init_script(EARLY)
    page.goto(url)
    first = _shown(page, None)
    assert page.evaluate("window.earlyFired === true")
    rater = page.inner_text("#rater")
    assert _answers(study, rater) == [] and page.sent == []  # ignored on the page, never sent
    assert page.inner_text("#progress") == "0 / 8" and page.inner_text("#msg") == ""
    page.keyboard.press("ArrowLeft")  # the same pair, now shown long enough
    _shown(page, first)
    got = _answers(study, rater)
    assert [p for p, _ in got] == [first] and got[0][1] >= MIN_MS


def test_a_failed_image_load_retries_with_a_message(served, browser):
    """onerror was not set: one failed image left the page frozen (busy) with no message."""
    study, url = served
    page = browser
    failed = []

    def flaky(route):
        if len(failed) < 2:  # the first pair's two images fail once each, then load
            failed.append(route.request.url)
            route.fulfill(status=503, body="")
        else:
            route.continue_()

    page.route(lambda u: "/images/" in u, flaky)
    page.goto(url)
    page.wait_for_function("() => document.getElementById('msg').textContent.includes('retrying')", timeout=10000)
    assert "could not load the image" in page.inner_text("#msg").lower()
    first = _shown(page, None)
    assert len(failed) == 2 and page.inner_text("#msg") == ""
    rater = page.inner_text("#rater")
    page.keyboard.press("ArrowLeft")
    _shown(page, first)
    assert [p for p, _ in _answers(study, rater)] == [first]


def test_a_missing_image_asks_for_a_reload_and_records_nothing(study, browser, tmp_path):
    broken = tmp_path / "study"
    shutil.copytree(study, broken, ignore=shutil.ignore_patterns("answers.sqlite*"))
    for img in (broken / "images").iterdir():
        img.unlink()  # every image gone: the server answers 404
    port = free_port()
    server = start_server(broken, port)
    try:
        page = browser
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_function("() => document.getElementById('msg').textContent.includes('reload')", timeout=15000)
        assert "could not load the image" in page.inner_text("#msg").lower()
        for _ in range(2):  # nothing is recorded while the pair is not on screen
            page.keyboard.press("ArrowLeft")
            page.click("#right")
        page.wait_for_timeout(500)
        assert page.sent == [] and page.inner_text("#progress") == "0 / 8"
        assert _answers(broken, page.inner_text("#rater")) == []
    finally:
        stop_server(server)
