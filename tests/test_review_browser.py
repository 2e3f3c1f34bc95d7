"""The review page in a real headless browser: keys only (edit, reject, accept, save), then import.

Needs Debian's chromium and chromedriver (``apt-get install -y chromium chromium-driver``) and
selenium; skips with the reason where any is missing.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from asr_distill.jsonl import atomic_write_jsonl
from asr_distill.quality.filter import read_pseudo_labels
from asr_distill.testing.cli import run_cli

pytestmark = pytest.mark.slow  # a browser start and a labeling run with word timings


def _browser(download_dir: Path):
    """Headless chromium that saves downloads in ``download_dir`` and may play audio unprompted."""
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="selenium is not installed (pip install selenium)"
    )
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("chromium or chromedriver not installed (apt-get install -y chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--autoplay-policy=no-user-gesture-required",
    ):
        opts.add_argument(arg)
    opts.add_experimental_option("prefs", {"download.default_directory": str(download_dir)})
    browser = webdriver.Chrome(service=Service(driver), options=opts)
    browser.execute_cdp_cmd(
        "Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(download_dir)}
    )
    return browser


@pytest.fixture(scope="module")
def kept(tmp_path_factory, an4_fixture, tiny_teacher):
    """The AN4 fixture clips labeled with word timings, one doubtful word each at least, as a kept.jsonl."""
    from asr_distill.testing.review import doubtful_labels, timed_label_file

    d = tmp_path_factory.mktemp("browser")
    labels = doubtful_labels(timed_label_file(an4_fixture, d / "labels.jsonl", tiny_teacher))
    atomic_write_jsonl(d / "kept.jsonl", (p.to_dict() for p in labels))
    return d / "kept.jsonl"


def _keys(browser, *keys) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    for k in keys:
        ActionChains(browser).send_keys(k).perform()
        time.sleep(0.2)


def _wait(predicate, timeout: float = 20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


def _state(browser, row: int) -> dict:
    """What the page's script sees for row ``row`` (0-based): current row, audio position and stop."""
    return browser.execute_script(
        "const tr = rows[arguments[0]], a = tr.querySelector('audio');"
        "return {cur: cur, t: a.currentTime, paused: a.paused, stop: parseFloat(a.dataset.stop),"
        " runs: JSON.parse(tr.dataset.runs), text: tr.querySelector('textarea').value,"
        " selected: document.activeElement.tagName === 'TEXTAREA' ? document.activeElement.value.substring("
        "document.activeElement.selectionStart, document.activeElement.selectionEnd) : null};",
        row,
    )


def test_keyboard_flow_edits_rejects_accepts_saves_and_imports(kept, tmp_path):
    from selenium.webdriver.common.keys import Keys

    assert run_cli("review", "export", kept, "--out", tmp_path / "rev", "--k", "3")[0] == 0
    page = tmp_path / "rev" / "review.html"
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser = _browser(downloads)
    try:
        browser.get(page.as_uri())
        first = _state(browser, 0)
        assert first["cur"] == 0 and first["runs"], "the first row is current and has a doubtful run"
        _keys(browser, "e")  # edit: the box takes focus with the doubtful run selected
        run_words = first["text"].split()[first["runs"][0][0] : first["runs"][0][1] + 1]
        assert _state(browser, 0)["selected"] == " ".join(run_words)
        _keys(browser, "fixed words", Keys.ENTER)  # typing replaces the run; Enter accepts and moves on
        second = _state(browser, 1)
        assert second["cur"] == 1
        start, end = second["runs"][0][2:]  # arriving plays the row's first run, and stops at its end
        assert second["stop"] == pytest.approx(end, abs=1e-3)
        _wait(lambda: _state(browser, 1)["paused"] and _state(browser, 1)["t"] > start)
        assert _state(browser, 1)["t"] == pytest.approx(end, abs=0.35)
        _keys(browser, "r", Keys.ENTER, "s")  # reject row 2, accept row 3, save
        saved = _wait(lambda: [p for p in downloads.glob("review_edits*.json")])
        edits = json.loads(saved[0].read_text())
    finally:
        browser.quit()
    decisions = [(e["decision"], e["text"]) for e in edits["edits"]]
    words = first["text"].split()
    a, b = first["runs"][0][:2]
    expected_first = " ".join([*words[:a], "fixed words", *words[b + 1 :]])
    assert decisions[0] == ("accept", expected_first)
    assert [d for d, _ in decisions] == ["accept", "reject", "accept"]
    out = tmp_path / "reviewed"
    assert run_cli("review", "import", kept, saved[0], "--out", out, "--reviewer", "kb")[0] == 0
    reviewed = {p.id: p for p in read_pseudo_labels(out / "kept.jsonl")}
    row_ids = [e["id"] for e in edits["edits"]]
    assert reviewed[row_ids[0]].text == expected_first and row_ids[1] not in reviewed
    assert reviewed[row_ids[0]].review[-1].reviewer == "kb"


def test_click_on_a_highlighted_word_plays_its_span(kept, tmp_path):
    assert run_cli("review", "export", kept, "--out", tmp_path / "rev", "--k", "2")[0] == 0
    browser = _browser(tmp_path)
    try:
        browser.get((tmp_path / "rev" / "review.html").as_uri())
        marks = browser.find_elements("css selector", "tr[data-id]:nth-child(2) mark.doubt")
        assert marks, "the second row highlights a doubtful word"
        marks[-1].click()
        state = _state(browser, 1)
        run = state["runs"][int(marks[-1].get_attribute("data-run"))]
        assert state["cur"] == 1 and state["stop"] == pytest.approx(run[3], abs=1e-3)
        assert "now" in marks[-1].get_attribute("class")
        _wait(lambda: _state(browser, 1)["paused"] and _state(browser, 1)["t"] > run[2])
        assert _state(browser, 1)["t"] == pytest.approx(run[3], abs=0.35)
    finally:
        browser.quit()


def test_w_plays_the_whole_clip(kept, tmp_path):
    """A run's padded span can cut a word short; ``w`` plays the clip from its start to its end."""
    assert run_cli("review", "export", kept, "--out", tmp_path / "rev", "--k", "1")[0] == 0
    browser = _browser(tmp_path)
    try:
        browser.get((tmp_path / "rev" / "review.html").as_uri())
        _keys(browser, "w")
        duration = float(browser.find_element("css selector", "tr[data-id]").get_attribute("data-duration"))
        state = _state(browser, 0)
        assert state["stop"] == pytest.approx(duration, abs=1e-3)
        assert [r[2:] for r in state["runs"]] != [[0.0, duration]], "the run alone is not the whole clip"
        _wait(lambda: _state(browser, 0)["paused"] and _state(browser, 0)["t"] > 0)
        assert _state(browser, 0)["t"] == pytest.approx(duration, abs=0.35)
    finally:
        browser.quit()
