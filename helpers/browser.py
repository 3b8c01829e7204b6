"""Pictures of the running demo, taken by a real headless Chromium through Playwright.

Notebook 06 and the browser test drive the served page as a person would (type, click, wait for the answer) and
keep a PNG of each tab. Nothing here serves or builds the demo (that is helpers.app); the browser is sent nowhere but
the demo's own address.

    from helpers.browser import screenshot_demo
    pictures = screenshot_demo(url)   # {"Fill the mask": DemoPicture, "Next sentence": DemoPicture}
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from helpers.app import BUILTIN_MASKS, BUILTIN_PAIRS
from helpers.serving import first_line

# No request outside the demo's own address: no sync, updates, translation, QUIC or background traffic.
# Playwright's launch() starts every browser with a fresh temporary profile (user data dir) of its own.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--disable-default-apps",
    "--disable-extensions",
    "--metrics-recording-only",
    "--disable-features=Translate,OptimizationHints,MediaRouter",
]
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
VIEWPORT = {"width": 1280, "height": 900}
# True once no output of the page is waiting for the server.
PAGE_IDLE = "document.querySelectorAll('.pending').length === 0"


class ScreenshotError(RuntimeError):
    """No picture of the demo could be taken; the message says why and what to install or change."""


def find_chromium() -> str | None:
    """The system's Chromium (Debian's /usr/bin/chromium, ...), or None to let Playwright use its own download."""
    import shutil

    found = (shutil.which(name) for name in CHROMIUM_NAMES)
    return next((path for path in found if path), None)


@contextlib.contextmanager
def chromium_page(playwright, url: str, timeout_s: float = 60.0, on_request=None):
    """A headless Chromium page opened on ``url``, loaded, ``on_request(request)`` seeing each request; then closed."""
    browser = playwright.chromium.launch(executable_path=find_chromium(), args=CHROMIUM_ARGS)
    try:
        page = browser.new_page(viewport=VIEWPORT)
        page.set_default_timeout(timeout_s * 1000)  # every wait below, in milliseconds
        if on_request is not None:
            page.on("request", on_request)
        page.goto(url, wait_until="networkidle")
        yield page
    finally:
        browser.close()


def _answer_of(page, selector: str, ready: str = "true") -> str:
    """The text at ``selector`` once the page is idle, the text is there and ``ready`` (JavaScript) holds."""
    page.wait_for_function(
        f"(s) => {PAGE_IDLE} && document.querySelector(s)?.innerText.trim() && ({ready})", arg=selector
    )
    return page.locator(selector).inner_text()


def ask_next_sentence(page, sentence_a: str, sentence_b: str) -> str:
    """On a fresh demo page: type a pair in the Next sentence tab, click, and return the verdict as shown."""
    page.get_by_role("tab", name="Next sentence").click()
    page.locator("#sentence-a textarea").fill(sentence_a)
    page.locator("#sentence-b textarea").fill(sentence_b)
    page.locator("#nsp-button").click()
    return _answer_of(page, "#nsp-verdict")


def ask_fill_mask(page, text: str, example: bool = False) -> str:
    """On a fresh demo page: type a text in the Fill the mask tab (or, with ``example``, click the example that holds
    it, which also fills "The book has"), click the button, and return the filled text as shown."""
    page.get_by_role("tab", name="Fill the mask").click()
    if example:
        page.get_by_text(text[:50]).first.click()  # the examples table shows a long text's first 60 characters
        page.wait_for_function("(t) => document.querySelector('#mask-text textarea').value === t", arg=text)
    else:
        page.locator("#mask-text textarea").fill(text)
    page.locator("#fill-button").click()
    # The table counts its header as a row: more than one row means the guesses are in (an error leaves none).
    table_filled = "document.querySelector('#fill-table [role=grid]')?.getAttribute('aria-rowcount') > 1"
    return _answer_of(page, "#fill-text", f"{table_filled} || !document.querySelector('#fill-text h3')")


@dataclass
class DemoPicture:
    """One tab of the live page as a PNG, and its answer as the page showed it when the picture was taken."""

    png: bytes
    answer: str
    book: str = ""  # the fill tab's "The book has" box (filled by a clicked example), else empty

    def _repr_png_(self) -> bytes:  # IPython's display() draws it as an image
        return self.png


def _take_screenshots(
    url: str, sentence_a: str, sentence_b: str, mask_text: str, timeout_s: float, mask_example: bool = False
) -> dict[str, DemoPicture]:
    """The two tabs, each pictured once its answer is shown; runs in a thread where no asyncio loop is running."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright, chromium_page(playwright, url, timeout_s=timeout_s) as page:
        filled = ask_fill_mask(page, mask_text, example=mask_example)
        book = page.locator("#book-word textarea, #book-word input").first.input_value()
        pictures = {"Fill the mask": DemoPicture(page.screenshot(full_page=True), filled, book)}
        verdict = ask_next_sentence(page, sentence_a, sentence_b)
        pictures["Next sentence"] = DemoPicture(page.screenshot(full_page=True), verdict)
    return pictures


def screenshot_demo(
    url: str,
    sentence_a: str = BUILTIN_PAIRS[0][0],
    sentence_b: str = BUILTIN_PAIRS[0][1],
    mask_text: str = BUILTIN_MASKS[0],
    timeout_s: float = 60.0,
    mask_example: bool = False,
) -> dict[str, DemoPicture]:
    """Both tabs of the served demo pictured with an answer, by tab name; raises ScreenshotError (one sentence).

    With ``mask_example``, ``mask_text`` is one of the fill tab's examples, clicked rather than typed.
    """
    from concurrent.futures import ThreadPoolExecutor

    try:
        import playwright.sync_api as sync_api
    except ImportError:
        raise ScreenshotError(
            "The playwright package is not installed, so no picture of the demo was taken: "
            "`pip install playwright` and install Chromium (apt-get install chromium, or "
            "`playwright install chromium`)."
        ) from None
    # Inside Jupyter the kernel's thread runs an asyncio loop, and Playwright's sync API refuses such a thread:
    # the browser is driven from a worker thread of its own (the same everywhere, so one path is tested).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="screenshot") as pool:
        try:
            job = pool.submit(_take_screenshots, url, sentence_a, sentence_b, mask_text, timeout_s, mask_example)
            return job.result()
        except (sync_api.Error, OSError) as err:
            if find_chromium() is None and "Executable doesn't exist" in str(err):
                advice = (
                    "no Chromium was found; install it (apt-get install chromium, or `playwright install chromium`)"
                )
            else:
                advice = f"{first_line(err)[:200]}; check that the demo is still served at {url}"
            raise ScreenshotError(f"No picture of the demo was taken because {advice}.") from None


def _take_app_screenshot(url: str, text: str, button: str, timeout_s: float) -> DemoPicture:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=find_chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 560})  # a small app: a smaller picture
            page.set_default_timeout(timeout_s * 1000)  # every wait below, in milliseconds
            page.goto(url)  # the locator below waits until the page has drawn its textbox
            page.locator("textarea").first.fill(text)
            page.get_by_role("button", name=button).click()
            # The table counts its header as a row: more than one row means the answer is in.
            filled = "document.querySelector('[role=grid]')?.getAttribute('aria-rowcount') > 1"
            page.wait_for_function(f"() => {PAGE_IDLE} && {filled}")
            return DemoPicture(page.screenshot(full_page=True), page.locator("[role=grid]").first.inner_text())
        finally:
            browser.close()


def screenshot_app(url: str, text: str, button: str, timeout_s: float = 60.0) -> DemoPicture:
    """A small served app with a textbox, a button and a table (notebook 06's): type ``text``, click ``button``,
    picture the page once the table is filled; ``.answer`` is the table's text. Raises ScreenshotError (one sentence).
    """
    from concurrent.futures import ThreadPoolExecutor

    try:
        import playwright.sync_api as sync_api
    except ImportError:
        raise ScreenshotError("The playwright package is not installed: `pip install playwright`.") from None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="screenshot") as pool:  # not in Jupyter's asyncio thread
        try:
            return pool.submit(_take_app_screenshot, url, text, button, timeout_s).result()
        except (sync_api.Error, OSError) as err:
            raise ScreenshotError(
                f"No picture of the app was taken because {first_line(err)[:200]}; check that it is served at {url}."
            ) from None
