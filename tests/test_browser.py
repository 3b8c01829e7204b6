"""End to end in headless Chromium: type a pair, click, read the verdict; optionally refresh docs/demo.png.

    UPDATE_SCREENSHOT=1 [DEMO_CHECKPOINT=runs/default] python -m pytest tests/test_browser.py

writes docs/demo.png from DEMO_CHECKPOINT (default: the session's tiny checkpoint).
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest

from helpers.config import ROOT
from helpers.serving import Predictor
from tests.app_fixtures import demo_server, free_port, tiny_checkpoint  # noqa: F401

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-default-apps", "--disable-extensions", "--no-first-run", "--metrics-recording-only",
                 "--disable-features=Translate,OptimizationHints,MediaRouter"]
SENTENCE_A = "Every morning I remind myself that the people I meet today may be rude and ungrateful."
SENTENCE_B = "None of them can harm me, since none of them can make me act badly."


# No output of the page is waiting for the server.
IDLE = "document.querySelectorAll('.pending').length === 0"


def wait_for_verdict(page, expected) -> None:
    """Until the verdict heading and the probability in words are the expected ones and nothing is pending."""
    page.wait_for_function(
        "(want) => { const h = document.querySelector('#nsp-verdict h3');"
        " const p = document.querySelector('#nsp-verdict p');"
        f" return {IDLE} && h && p && h.innerText.trim() === want.verdict && p.innerText.includes(want.pct); }}",
        arg={"verdict": expected.verdict, "pct": f"{expected.probabilities[expected.verdict]:.1%}"},
        timeout=60_000)


@pytest.mark.browser
@pytest.mark.slow
def test_type_a_pair_click_and_read_the_verdict(tiny_checkpoint, tmp_path):  # noqa: F811
    if not CHROMIUM.is_file():
        pytest.skip("Chromium is not installed at /usr/bin/chromium (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    checkpoint = Path(os.environ.get("DEMO_CHECKPOINT") or tiny_checkpoint)
    predictor = Predictor.from_checkpoint(checkpoint)
    expected = predictor.predict_nsp(SENTENCE_A, SENTENCE_B)
    args = ["-m", "helpers.app", "--checkpoint", str(checkpoint), "--port", str(free_port())]
    with demo_server(args) as server, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            hosts: set[str] = set()
            page.on("request", lambda request: hosts.add(urlparse(request.url).hostname or request.url))
            page.goto(server.url, wait_until="networkidle")
            # A pair typed by hand.
            page.locator("#sentence-a textarea").fill(SENTENCE_A)
            page.locator("#sentence-b textarea").fill(SENTENCE_B)
            page.locator("#nsp-button").click()
            wait_for_verdict(page, expected)
            label = page.locator("#nsp-label")
            percent = 100 * expected.probabilities[expected.verdict]
            assert any(f"{whole}%" in label.inner_text() for whole in (math.floor(percent), math.ceil(percent)))
            # Bad input: a clear sentence in the page, and the page keeps working.
            page.locator("#sentence-a textarea").fill("   ")
            page.locator("#nsp-button").click()
            page.wait_for_function(f"() => {IDLE} && document.querySelector('#nsp-verdict').innerText"
                                   f".includes('Sentence A is empty')", timeout=60_000)
            assert page.locator("#nsp-verdict h3").count() == 0
            # A held-out example: clicking it fills both sentences and the label it has in the data.
            page.get_by_text("held-out true pair: B follows A").first.click()
            page.wait_for_function("() => document.querySelector('#truth textarea, #truth input').value !== ''")
            assert page.locator("#truth textarea, #truth input").first.input_value() == "held-out true pair: B follows A"
            a = page.locator("#sentence-a textarea").input_value()
            b = page.locator("#sentence-b textarea").input_value()
            assert a.strip() and b.strip() and a != SENTENCE_A
            page.locator("#nsp-button").click()
            wait_for_verdict(page, predictor.predict_nsp(a, b))
            shot = tmp_path / "demo.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            if os.environ.get("UPDATE_SCREENSHOT") == "1":
                (ROOT / "docs").mkdir(exist_ok=True)
                shutil.copyfile(shot, ROOT / "docs" / "demo.png")
            # The page itself loaded nothing from outside this machine (no fonts, no analytics).
            assert hosts and hosts <= {"127.0.0.1"}, sorted(hosts)
        finally:
            browser.close()
