"""End to end in headless Chromium: type a pair, click, read the verdict; the pictures notebook 06 shows, in the test
and inside a Jupyter kernel; optionally refresh docs/demo.png.

    UPDATE_SCREENSHOT=1 [DEMO_CHECKPOINT=runs/default] python -m pytest tests/test_browser.py

writes docs/demo.png from DEMO_CHECKPOINT (default: the session's tiny checkpoint).
"""

from __future__ import annotations

import base64
import io
import math
import os
import shutil
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest

from helpers import browser
from helpers.app import build_demo, serve, stop
from helpers.browser import PAGE_IDLE as IDLE  # no output of the page is waiting for the server
from helpers.browser import ScreenshotError, ask_next_sentence, chromium_page, find_chromium, screenshot_demo
from helpers.config import ROOT
from helpers.serving import Predictor
from tests.app_fixtures import demo_server, free_port, tiny_checkpoint  # noqa: F401
from tests.conftest import notebook_client

SENTENCE_A = "Every morning I remind myself that the people I meet today may be rude and ungrateful."
SENTENCE_B = "None of them can harm me, since none of them can make me act badly."
MASK_TEXT = "Nothing happens to any man which he is not formed by [MASK] to bear."


def chromium_or_skip():
    """Playwright's sync API, or a skip when it or a system Chromium is missing."""
    if find_chromium() is None:
        pytest.skip("no Chromium on PATH (apt-get install -y chromium)")
    return pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")


def wait_for_verdict(page, expected) -> None:
    """Until the verdict heading and the probability in words are the expected ones and nothing is pending."""
    page.wait_for_function(
        "(want) => { const h = document.querySelector('#nsp-verdict h3');"
        " const p = document.querySelector('#nsp-verdict p');"
        f" return {IDLE} && h && p && h.innerText.trim() === want.verdict && p.innerText.includes(want.pct); }}",
        arg={"verdict": expected.verdict, "pct": f"{expected.probabilities[expected.verdict]:.1%}"},
        timeout=60_000,
    )


@pytest.mark.browser
@pytest.mark.slow
def test_type_a_pair_click_and_read_the_verdict(tiny_checkpoint, tmp_path):  # noqa: F811
    sync_api = chromium_or_skip()
    checkpoint = Path(os.environ.get("DEMO_CHECKPOINT") or tiny_checkpoint)
    predictor = Predictor.from_checkpoint(checkpoint)
    expected = predictor.predict_nsp(SENTENCE_A, SENTENCE_B)
    args = ["-m", "helpers.app", "--checkpoint", str(checkpoint), "--port", str(free_port())]
    hosts: set[str] = set()
    with (
        demo_server(args) as server,
        sync_api.sync_playwright() as playwright,
        chromium_page(
            playwright, server.url, on_request=lambda request: hosts.add(urlparse(request.url).hostname or request.url)
        ) as page,
    ):
        # A pair typed by hand: the shared steps of screenshot_demo, then the exact verdict and probability.
        shown = ask_next_sentence(page, SENTENCE_A, SENTENCE_B)
        assert shown.splitlines()[0] == expected.verdict
        wait_for_verdict(page, expected)
        label = page.locator("#nsp-label")
        percent = 100 * expected.probabilities[expected.verdict]
        assert any(f"{whole}%" in label.inner_text() for whole in (math.floor(percent), math.ceil(percent)))
        # Bad input: a clear sentence in the page, and the page keeps working.
        page.locator("#sentence-a textarea").fill("   ")
        page.locator("#nsp-button").click()
        page.wait_for_function(
            f"() => {IDLE} && document.querySelector('#nsp-verdict').innerText.includes('Sentence A is empty')",
            timeout=60_000,
        )
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


def _png_size(png: bytes) -> tuple[int, int]:
    """Width and height read from a PNG's header (its IHDR chunk)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def _answer_side(png: bytes):
    """The right-hand column of a tab, below the tab bar: where the demo draws its answers."""
    from PIL import Image

    return Image.open(io.BytesIO(png)).convert("RGB").crop((650, 240, 1280, 700))


@pytest.mark.browser
@pytest.mark.slow
def test_screenshot_demo_pictures_each_tab_with_its_answer(tiny_checkpoint):  # noqa: F811
    sync_api = chromium_or_skip()
    demo = build_demo(tiny_checkpoint)
    url = serve(demo, inline=False)
    try:
        # The same page before any question: both tabs with their answer columns still empty.
        with sync_api.sync_playwright() as playwright, chromium_page(playwright, url) as page:
            empty = {"Fill the mask": page.screenshot()}  # the first tab
            page.get_by_role("tab", name="Next sentence").click()
            empty["Next sentence"] = page.screenshot()
        pictures = screenshot_demo(url, SENTENCE_A, SENTENCE_B, MASK_TEXT)
        # An example clicked, not typed: it fills the text and the book's word beside it.
        example, _, book_words = demo.examples.masks[0]
        clicked = screenshot_demo(url, SENTENCE_A, SENTENCE_B, example, mask_example=True)["Fill the mask"]
    finally:
        stop(demo)
    assert list(pictures) == ["Fill the mask", "Next sentence"]
    sizes = [_png_size(picture.png) for picture in pictures.values()]
    assert all(width == 1280 and height >= 900 for width, height in sizes), sizes  # the whole page, not the window
    # Each picture was taken with its answer on the page: the model's own verdict, and its best guess with the table.
    nsp = pictures["Next sentence"].answer.splitlines()
    assert nsp[0] == demo.predictor.predict_nsp(SENTENCE_A, SENTENCE_B).verdict
    best = demo.predictor.fill_mask(MASK_TEXT, 1)[0][0][0]
    assert pictures["Fill the mask"].answer.startswith("Best guess for 1 mask\n")
    assert MASK_TEXT.replace("[MASK]", best) in pictures["Fill the mask"].answer
    for tab, picture in pictures.items():  # ... and drawn: the answer column is no longer the empty one
        assert _answer_side(picture.png).tobytes() != _answer_side(empty[tab]).tobytes(), f"no answer drawn in {tab}"
    best = [top[0][0] for top in demo.predictor.fill_mask(example, 1)]
    assert clicked.answer.startswith("Best guess for") and all(f"{word}" in clicked.answer for word in best)
    assert book_words and clicked.book == book_words  # what "The book has" showed when the picture was taken


# A scratch notebook: the demo served inline from the kernel, as notebook 06 does, then pictured.
KERNEL_CELLS = [
    "import asyncio\nfrom IPython.display import Image, display\n"
    "from helpers.app import build_demo, serve, stop\nfrom helpers.browser import screenshot_demo\n"
    "demo = build_demo({checkpoint!r})\nurl = serve(demo)\n"
    "print('asyncio loop running in this thread:', asyncio.get_event_loop().is_running())",
    # The control: Playwright's sync API called in the kernel's own thread is refused.
    "from playwright.sync_api import Error, sync_playwright\ntry:\n    with sync_playwright():\n"
    "        print('the sync API ran in the kernel thread')\nexcept Error as err:\n"
    "    print('refused:', str(err).splitlines()[0])",
    "pictures = screenshot_demo(url)\nfor tab, picture in pictures.items():\n    display(Image(picture.png))\n"
    "print(list(pictures))",
    "stop(demo)",
]


@pytest.mark.browser
@pytest.mark.slow
def test_screenshot_demo_works_inside_a_jupyter_kernel(tiny_checkpoint):  # noqa: F811
    chromium_or_skip()
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("nbclient")
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(cell.format(checkpoint=str(tiny_checkpoint))) for cell in KERNEL_CELLS]
    )
    notebook_client(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    text = ["".join(out.get("text", "")) for cell in notebook.cells for out in cell.outputs]
    assert "asyncio loop running in this thread: True\n" in text
    # Where the sync API is refused, screenshot_demo still returns both tabs, shown as images.
    assert any(
        t.startswith("refused: It looks like you are using Playwright Sync API inside the asyncio loop") for t in text
    ), text
    assert "['Fill the mask', 'Next sentence']\n" in text
    images = [
        base64.b64decode(out["data"]["image/png"])
        for out in notebook.cells[2].outputs
        if "image/png" in out.get("data", {})
    ]
    sizes = [_png_size(png) for png in images]
    assert all(width == 1280 and height >= 900 for width, height in sizes), sizes  # the whole page


def test_screenshot_demo_without_playwright_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "playwright.sync_api", None)  # import fails as where it is not installed
    with pytest.raises(ScreenshotError, match=r"playwright package is not installed.*pip install playwright"):
        screenshot_demo("http://127.0.0.1:9/")


def test_screenshot_demo_without_chromium_says_what_to_install(monkeypatch, tmp_path):
    pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    # No system Chromium, and no browser of Playwright's own download: a learner's fresh laptop.
    monkeypatch.setattr(browser, "find_chromium", lambda: None)
    monkeypatch.setenv("PLAYWRIGHT_BROWSERS_PATH", str(tmp_path / "no-browsers"))
    with pytest.raises(
        ScreenshotError,
        match=r"because no Chromium was found; install it \(apt-get install "
        r"chromium, or `playwright install chromium`\)\.$",
    ) as caught:
        screenshot_demo("http://127.0.0.1:9/")
    assert "\n" not in str(caught.value)


@pytest.mark.browser
@pytest.mark.slow
def test_screenshot_app_types_clicks_and_pictures_a_small_app_with_its_table():
    chromium_or_skip()
    import gradio as gr

    from helpers.app import free_port
    from helpers.browser import screenshot_app

    with gr.Blocks() as app:
        text = gr.Textbox(label="Text")
        button = gr.Button("Count the words")
        table = gr.Dataframe(headers=["word", "letters"])
        button.click(lambda t: [[w, len(w)] for w in t.split()], inputs=text, outputs=table)
    app.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        picture = screenshot_app(app.local_url, "loss is change", "Count the words")
    finally:
        stop(app)
    width, height = _png_size(picture.png)
    assert width == 1000 and height >= 560
    assert all(word in picture.answer for word in ("loss", "change", "word", "letters"))


def test_screenshot_app_without_playwright_says_what_to_install(monkeypatch):
    from helpers.browser import screenshot_app

    monkeypatch.setitem(sys.modules, "playwright.sync_api", None)
    with pytest.raises(ScreenshotError, match=r"playwright package is not installed.*pip install playwright"):
        screenshot_app("http://127.0.0.1:9/", "text", "Go")
