"""The served demo under hostile input (fuzzing) and under sustained concurrent load (the soak, opt-in)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.config import ROOT
from helpers.provenance import code_version, machine
from helpers.serving import MAX_CHARS, Predictor
from tests.app_fixtures import demo_server, free_port, subprocess_env, tiny_checkpoint  # noqa: F401

gradio_client = pytest.importorskip("gradio_client")

SOAK = os.environ.get("BERT_MEDITATIONS_SOAK") == "1"
LEAKS = ("Traceback", 'File "', "/root", "/tmp", "/home", "site-packages", "/work")
GOOD_PAIR = ("The soul is dyed by its thoughts.", "Think well.")
GOOD_TEXT = "The [MASK] is short."


@pytest.fixture(scope="module")
def server(tiny_checkpoint):  # noqa: F811
    args = ["-m", "helpers.app", "--checkpoint", str(tiny_checkpoint), "--port", str(free_port())]
    with demo_server(args) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    return gradio_client.Client(server.url, verbose=False)


@pytest.fixture(scope="module")
def expected(tiny_checkpoint):  # noqa: F811
    """What the known-good requests must answer, computed in this process from the same checkpoint."""
    predictor = Predictor.from_checkpoint(tiny_checkpoint)
    return {
        "nsp": predictor.predict_nsp(*GOOD_PAIR).probabilities,
        "fill": [token for token, _ in predictor.fill_mask(GOOD_TEXT, top_k=3)[0]],
    }


def _text_of(answer) -> str:
    return json.dumps(answer, ensure_ascii=False, default=str)


def _no_leak(answer, sent: str = "") -> None:
    text = _text_of(answer)
    for leak in LEAKS:
        if leak not in sent:  # the answer may quote the user's own words back
            assert leak not in text, f"the answer leaks {leak!r}: {text[:500]}"


def _still_right(client, server, expected) -> None:
    """A known-good request after a bad one gets the right answer: the server is up and not confused."""
    assert server.process.poll() is None, server.output()[-3000:]
    label, _ = client.predict(*GOOD_PAIR, api_name="/nsp")
    got = {item["label"]: item["confidence"] for item in label["confidences"]}
    assert got == pytest.approx(expected["nsp"], abs=1e-5)
    _, table = client.predict(GOOD_TEXT, 3, api_name="/fill_mask")
    assert len(table["data"]) == 3 and table["data"][0][2] in expected["fill"][:2]  # (a near-tie may swap 1 and 2)


HOSTILE = [
    "",
    " ",
    "\n\n\t",
    "\x00",
    "a\x00b [MASK]",
    "\x1b[31mred\x1b[0m [MASK]",
    "\ud7ff\ue000\uffff [MASK]",
    "x" * 100_000,
    ("word " * 20_000) + "[MASK]",
    "[MASK]" * 500,
    "[MASK] " * 300,
    "[CLS]",
    "[SEP] [MASK] [PAD]",
    "[CLS][SEP][PAD][MASK][UNK]",
    "[mask]",
    "<mask>",
    "[ MASK ]",
    "مرحبا [MASK] بالعالم",
    "שלום [MASK] עולם",
    "\u202e[MASK] desrever\u202c",
    "😀 [MASK] 👩‍👩‍👧 🏳️‍🌈",
    "Ὁ κόσμος [MASK]",
    "{{7*7}} [MASK] ${PATH}",
    "<script>alert(1)</script> [MASK]",
    "'; DROP TABLE users; -- [MASK]",
    "%s%n%x [MASK]",
    "\\\\?\\C:\\ [MASK]",
    "../../../../etc/passwd [MASK]",
    "e\u0301\u0301\u0301\u0301 [MASK]",
    "\u200b" * 1000 + "[MASK]",
]


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_text_in_both_tabs(client, server, expected, text):
    # Both NSP boxes: the hostile text against a short sentence (two long sides: see the test below).
    for a, b in ((text, "A short sentence."), ("A short sentence.", text)):
        _no_leak(client.predict(a, b, api_name="/nsp"), text)
    _no_leak(client.predict(text, 5, api_name="/fill_mask"), text)
    _still_right(client, server, expected)


@pytest.mark.slow  # 40 requests of generated text
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(a=st.text(max_size=300), b=st.text(max_size=300), k=st.integers(1, 20))
def test_generated_text_never_breaks_the_demo(client, server, expected, a, b, k):
    nsp = client.predict(a, b, api_name="/nsp")
    _no_leak(nsp, a + b)
    label, verdict = nsp
    assert isinstance(verdict, str) and verdict  # an answer or one sentence saying what is wrong
    if label and label.get("confidences"):
        assert sum(item["confidence"] for item in label["confidences"]) == pytest.approx(1.0, abs=1e-4)
    shown, table = client.predict(a + " [MASK] " + b, k, api_name="/fill_mask")
    _no_leak((shown, table), a + b)
    assert table["data"] or "**" in shown
    _still_right(client, server, expected)


LONG_PAIR = f"""
import resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))  # 4 GiB: plenty for a 1-layer model, bounded for the machine
from helpers.serving import Predictor
predictor = Predictor.from_checkpoint(sys.argv[1])
text = "a." * ({MAX_CHARS} // 2)  # the most tokens per character a user can send: one per character
started = time.perf_counter()
result = predictor.predict_nsp(text, text)
print("SECONDS", round(time.perf_counter() - started, 1), result.truncated)
"""


@pytest.mark.slow
def test_two_long_sentences_are_cheap(tiny_checkpoint):  # noqa: F811
    """Both NSP inputs at the character limit: answered under a 4 GiB address-space cap."""
    result = subprocess.run(
        [sys.executable, "-c", LONG_PAIR, str(tiny_checkpoint)],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-1500:]
    assert "SECONDS" in result.stdout and "True" in result.stdout


# ----- the soak: sustained concurrent load (BERT_MEDITATIONS_SOAK=1) -----

DURATION_S = 60.0
THREADS = 4
WARMUP_S = 5.0
RSS_TOLERANCE_MB = 50.0  # allocator noise and Gradio's bounded caches; a leak per request grows far past it
SOAK_NSP = [(f"On day {i} the emperor wrote about duty.", f"Then he rested for {i} hours.") for i in range(8)]
SOAK_FILL = [f"The [MASK] of day {i} is [MASK]." for i in range(8)]


def _rss_mb(pid: int) -> float:
    root = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20


@pytest.mark.soak
@pytest.mark.slow
@pytest.mark.skipif(not SOAK, reason="the 60-second soak runs only with BERT_MEDITATIONS_SOAK=1 (.ci/run sets it)")
def test_soak_sustained_concurrent_load(server, tiny_checkpoint):  # noqa: F811
    predictor = Predictor.from_checkpoint(tiny_checkpoint)
    want_nsp = {pair: predictor.predict_nsp(*pair).probabilities for pair in SOAK_NSP}
    want_fill = {text: len(predictor.fill_mask(text, top_k=2)) for text in SOAK_FILL}
    lock = threading.Lock()
    sent = answered = wrong = errors = 0
    latencies: list[float] = []
    problems: list[str] = []
    rss: list[tuple[float, float]] = []
    stop = threading.Event()
    started = time.monotonic()

    def worker(index: int) -> None:
        nonlocal sent, answered, wrong, errors
        client = gradio_client.Client(server.url, verbose=False)
        n = index
        while not stop.is_set():
            n += THREADS
            t0 = time.perf_counter()
            with lock:
                sent += 1
            try:
                if n % 2:
                    pair = SOAK_NSP[n % len(SOAK_NSP)]
                    label, _ = client.predict(*pair, api_name="/nsp")
                    got = {item["label"]: item["confidence"] for item in label["confidences"]}
                    ok = got == pytest.approx(want_nsp[pair], abs=1e-5)
                else:
                    text = SOAK_FILL[n % len(SOAK_FILL)]
                    _, table = client.predict(text, 2, api_name="/fill_mask")
                    ok = len(table["data"]) == 2 * want_fill[text]
            except Exception as err:  # noqa: BLE001 - counted, and the first few kept for the message
                with lock:
                    errors += 1
                    if len(problems) < 5:
                        problems.append(f"{type(err).__name__}: {err}")
                continue
            with lock:
                latencies.append(time.perf_counter() - t0)
                answered += ok
                wrong += not ok

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    try:
        while time.monotonic() - started < DURATION_S + WARMUP_S:
            rss.append((time.monotonic() - started, _rss_mb(server.process.pid)))
            time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a client thread hung"
    early = [mb for t, mb in rss if WARMUP_S <= t < WARMUP_S + 10]
    late = [mb for t, mb in rss if t >= WARMUP_S + DURATION_S - 10]
    latencies.sort()
    report = {
        "duration_s": DURATION_S,
        "warmup_s": WARMUP_S,
        "threads": THREADS,
        "sent": sent,
        "answered_correctly": answered,
        "wrong": wrong,
        "errors": errors,
        "requests_per_s": round(sent / (DURATION_S + WARMUP_S), 2),
        "latency_p50_ms": round(1000 * latencies[len(latencies) // 2], 1) if latencies else None,
        "latency_p95_ms": round(1000 * latencies[int(len(latencies) * 0.95)], 1) if latencies else None,
        "rss_first_10s_median_mb": round(statistics.median(early), 1),
        "rss_last_10s_median_mb": round(statistics.median(late), 1),
        "rss_tolerance_mb": RSS_TOLERANCE_MB,
        "machine": machine(),
        "code_version": code_version(("benchmarks/soak.json",)),
    }
    out = ROOT / "benchmarks" / "soak.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    assert server.process.poll() is None, server.output()[-3000:]
    assert sent > 4 * THREADS, report
    assert errors == 0 and wrong == 0, (report, problems)
    assert answered == sent, report
    growth = report["rss_last_10s_median_mb"] - report["rss_first_10s_median_mb"]
    assert growth <= RSS_TOLERANCE_MB, f"the server grew by {growth:.0f} MB over the soak: {report}"
