"""The demo served by ``python -m helpers.app``: both tabs through gradio_client, bad input, load, no network."""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
from transformers import AutoTokenizer, BertConfig, BertForMaskedLM, BertForPreTraining

from helpers.config import ROOT, Config
from helpers.pairs import IS_NEXT, IS_RANDOM, LABEL_NAMES
from helpers.serving import Predictor
from tests.app_fixtures import demo_server, free_port, subprocess_env, tiny_checkpoint  # noqa: F401

gradio_client = pytest.importorskip("gradio_client")


def is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 on a dual-stack socket
    return (mapped or address).is_loopback


class ConnectionWatch:
    """Samples the sockets of a process and its children until stopped; records every remote address."""

    def __init__(self):
        self.remote: set[tuple[str, int]] = set()
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, process: subprocess.Popen) -> None:
        self._thread = threading.Thread(target=self._run, args=(process.pid,), daemon=True)
        self._thread.start()

    def _run(self, pid: int) -> None:
        try:
            root = psutil.Process(pid)
        except psutil.NoSuchProcess:
            return
        while not self._stop.is_set():
            try:
                processes = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            for process in processes:
                try:
                    for conn in process.net_connections(kind="inet"):
                        if conn.raddr:
                            self.remote.add((conn.raddr.ip, conn.raddr.port))
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
            self.samples += 1
            self._stop.wait(0.05)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


@pytest.fixture(scope="module")
def watch():
    return ConnectionWatch()


@pytest.fixture(scope="module")
def server(tiny_checkpoint, watch):  # noqa: F811
    """``python -m helpers.app`` on a free loopback port, its sockets watched from the first moment."""
    args = ["-m", "helpers.app", "--checkpoint", str(tiny_checkpoint), "--port", str(free_port())]
    try:
        with demo_server(args, on_start=watch.start) as running:
            yield running
    finally:
        watch.stop()


@pytest.fixture(scope="module")
def client(server):
    return gradio_client.Client(server.url, verbose=False)


@pytest.fixture(scope="module")
def predictor(tiny_checkpoint):  # noqa: F811
    """The same checkpoint loaded in the test process: the expected answers."""
    return Predictor.from_checkpoint(tiny_checkpoint)


def confidences(label_value: dict) -> dict[str, float]:
    return {item["label"]: item["confidence"] for item in label_value["confidences"]}


def check_nsp(answer, predictor: Predictor, a: str, b: str) -> None:
    """The served answer equals Predictor's for the same pair."""
    label_value, verdict = answer
    expected = predictor.predict_nsp(a, b)
    got = confidences(label_value)
    assert got == pytest.approx(expected.probabilities, abs=1e-5)
    p_next, p_random = expected.probabilities.values()
    if abs(p_next - p_random) > 1e-5:  # a verdict on a near-tie may flip with batch padding; none here
        assert label_value["label"] == expected.verdict
        assert verdict.startswith(f"### {expected.verdict}\n")
    for note in expected.notes:
        assert note in verdict


def check_fill(answer, predictor: Predictor, text: str, k: int) -> None:
    """The served table holds Predictor's top-k for every mask, in order: the model's, the memory's and the mix's."""
    from helpers.app import FILL_HEADERS_WITH_MEMORY

    shown, table = answer
    assert table["headers"] == FILL_HEADERS_WITH_MEMORY  # the tiny checkpoint carries its memory
    result = predictor.fill_mask_result(text, top_k=k + 1)  # one extra to recognise ties at the boundary
    answers = (result.predictions, result.memory_predictions, result.mixed_predictions)
    assert sorted({row[0] for row in table["data"]}) == list(range(1, len(result.predictions) + 1))
    for column, expected in zip((2, 4, 6), answers):  # each answer's token column; its probability follows it
        for number, options in enumerate(expected, start=1):
            rows = [row for row in table["data"] if row[0] == number]
            assert [row[1] for row in rows] == list(range(1, k + 1))
            assert [row[column + 1] for row in rows] == pytest.approx([p for _, p in options[:k]], abs=6e-5)
            for rank, row in enumerate(rows):
                if row[column] != options[rank][0]:  # only a tie (equal to 1e-4: the table rounds) may swap two
                    neighbours = [options[i][1] for i in (rank - 1, rank + 1) if 0 <= i < len(options)]
                    assert any(abs(options[rank][1] - p) < 1e-4 for p in neighbours), (row, options)
    assert shown.startswith(f"### Best guess for {len(result.predictions)} mask")
    model_alone, mix = shown.index("The model alone:"), shown.index("The mix, the model with its memory:")
    assert model_alone < mix  # each filled text labelled, the model's first


def test_endpoints_have_names(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/nsp", "/fill_mask"} <= set(endpoints)


def test_served_on_loopback_only(server):
    assert server.url.startswith("http://127.0.0.1:")
    listening = [
        c for c in psutil.Process(server.process.pid).net_connections(kind="inet") if c.status == psutil.CONN_LISTEN
    ]
    assert listening and all(is_loopback(c.laddr.ip) for c in listening)


@pytest.mark.parametrize(
    "a, b",
    [
        (
            "Remember how long you have been putting off these things.",
            "You must now perceive of what universe you are a part.",
        ),
        ("Everything is opinion.", "The sun warms the stones of the road."),
    ],
)
def test_next_sentence_tab(client, predictor, tiny_checkpoint, a, b):  # noqa: F811
    answer = client.predict(a, b, api_name="/nsp")
    check_nsp(answer, predictor, a, b)
    assert set(confidences(answer[0])) == {LABEL_NAMES[IS_NEXT], LABEL_NAMES[IS_RANDOM]}
    check_accuracy_note(answer[1], tiny_checkpoint)


def check_accuracy_note(verdict: str, folder) -> None:
    """The answer carries the checkpoint's held-out NSP accuracy, the word-overlap baseline and chance."""
    final = json.loads((folder / "metrics.json").read_text())["final"]
    assert f"This checkpoint is right on {final['nsp_accuracy']:.2f} of held-out pairs" in verdict
    assert f"; word overlap gets {final['baseline_word_overlap']:.2f}; chance is 0.50." in verdict
    assert "chance is 0.50." in verdict
    # How one-sided its answers are, beside how often they are right: at chance is not the same as a coin flip.
    assert f'It answers "B is random" to {final["nsp_answered_random"]:.2f} of them (half are).' in verdict


@pytest.mark.parametrize("text, k", [("The [MASK] is short.", 5), ("[MASK] and [MASK] and [MASK].", 3)])
def test_fill_mask_tab(client, predictor, text, k):
    answer = client.predict(text, k, api_name="/fill_mask")
    check_fill(answer, predictor, text, k)
    assert answer[0].count("**") == 2 * 2 * text.count("[MASK]")  # every mask shown filled in bold, twice


@pytest.mark.parametrize(
    "a, b, message",
    [
        ("", "Something.", "Sentence A is empty"),
        ("   \n  ", "Something.", "Sentence A is empty"),
        ("Something.", "", "Sentence B is empty"),
        ("[CLS] [SEP]", "Something.", "Sentence A is empty"),
    ],
)
def test_next_sentence_bad_input(client, server, a, b, message):
    label_value, verdict = client.predict(a, b, api_name="/nsp")
    assert message in verdict and "Traceback" not in verdict
    assert not label_value or not label_value.get("confidences")
    assert server.process.poll() is None


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "The text is empty"),
        ("  \t ", "The text is empty"),
        ("No mask in this sentence.", "has no [MASK]"),
        ("A lower-case [mask].", "exactly as [MASK]"),
        ("justice " * 300 + "[MASK]", "past the first 64 tokens"),
    ],
)
def test_fill_mask_bad_input(client, server, text, message):
    shown, table = client.predict(text, 5, api_name="/fill_mask")
    assert message in shown and "Traceback" not in shown
    assert table["data"] == []
    assert server.process.poll() is None


def test_long_input_is_truncated_and_the_user_is_told(client, predictor):
    long = "The soul is dyed by its thoughts. " * 60
    answer = client.predict(long, "Think well.", api_name="/nsp")
    check_nsp(answer, predictor, long, "Think well.")
    assert "cut off" in answer[1]
    text = "[MASK] " + "virtue " * 200
    shown, table = client.predict(text, 2, api_name="/fill_mask")
    assert "cut off" in shown and len(table["data"]) == 2


def test_twenty_masks(client, predictor):
    text = " ".join(f"thought {i} [MASK]" for i in range(20))
    answer = client.predict(text, 2, api_name="/fill_mask")
    check_fill(answer, predictor, text, 2)
    assert len(answer[1]["data"]) == 40


def test_non_latin_scripts_and_emoji(client, predictor):
    a, b = "Τὰ εἰς ἑαυτόν 😀", "自省録 — meditations 🙂"
    answer = client.predict(a, b, api_name="/nsp")
    check_nsp(answer, predictor, a, b)
    assert "[UNK]" in answer[1]
    text = "😀 Ὁ κόσμος [MASK] 世界"
    check_fill(client.predict(text, 3, api_name="/fill_mask"), predictor, text, 3)


def test_typed_special_tokens_are_explained(client, predictor):
    a, b = "[CLS] The soul is dyed [SEP] by its thoughts.", "So [PAD] think well."
    answer = client.predict(a, b, api_name="/nsp")
    check_nsp(answer, predictor, a, b)
    assert "[CLS], [SEP] typed in sentence A" in answer[1] and "[PAD] typed in sentence B" in answer[1]
    assert confidences(answer[0]) == pytest.approx(
        predictor.predict_nsp("The soul is dyed by its thoughts.", "So think well.").probabilities, abs=1e-5
    )
    text = "[CLS] The [MASK] is short. [SEP]"
    shown, table = client.predict(text, 3, api_name="/fill_mask")
    check_fill((shown, table), predictor, text, 3)
    quoted = next(line for line in shown.splitlines() if line.startswith("> "))
    assert "CLS" not in quoted and "SEP" not in quoted and "[CLS], [SEP] typed in the text" in shown


def test_top_k_out_of_range_is_refused_clearly(client, server):
    with pytest.raises(gradio_client.exceptions.AppError, match="greater than maximum value 20"):
        client.predict("The [MASK].", 1000, api_name="/fill_mask")
    assert server.process.poll() is None
    assert client.predict("The [MASK].", 1, api_name="/fill_mask")[1]["data"]  # still serving


@pytest.mark.slow
def test_load_many_concurrent_requests_all_correct(server, predictor):
    """120 requests at once from 120 threads: every answer equals the one Predictor gives directly."""
    # One Client per thread, as browsers are: a single Client shared by many threads sometimes cancels its own
    # event-stream reader (concurrent.futures.CancelledError) although the server answered every request.
    local = threading.local()
    nsp_inputs = [
        (f"On the {i}th day the emperor wrote about duty.", f"Then he rested {i % 7} hours.") for i in range(80)
    ]
    fill_inputs = [(f"The [MASK] of day {i} is [MASK].", 1 + i % 5) for i in range(36)]
    bad_inputs = [("", "x")] * 2 + [("no mask here", 3)] * 2

    def call(job):
        kind, args = job
        if not hasattr(local, "client"):
            # 120 clients fetch the page's config at once from a server on 2 shared cores (under make test, the
            # other worker trains notebook 04): wait as a browser would, not httpx's 5 s.
            local.client = gradio_client.Client(server.url, verbose=False, httpx_kwargs={"timeout": 60})
        return kind, args, local.client.predict(*args, api_name="/nsp" if kind in ("nsp", "bad_nsp") else "/fill_mask")

    jobs = (
        [("nsp", args) for args in nsp_inputs]
        + [("fill", args) for args in fill_inputs]
        + [
            ("bad_nsp", bad_inputs[0]),
            ("bad_nsp", bad_inputs[1]),
            ("bad_fill", bad_inputs[2]),
            ("bad_fill", bad_inputs[3]),
        ]
    )
    assert len(jobs) >= 100
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        answers = list(pool.map(call, jobs))
    assert len(answers) == len(jobs)
    for kind, args, answer in answers:
        if kind == "nsp":
            check_nsp(answer, predictor, *args)
        elif kind == "fill":
            check_fill(answer, predictor, *args)
        elif kind == "bad_nsp":
            assert "Sentence A is empty" in answer[1]
        else:
            assert "has no [MASK]" in answer[0]
    assert server.process.poll() is None


# ----- build_demo in this process -----


def _components(demo, kind):
    return [block for block in demo.blocks.values() if isinstance(block, kind)]


def test_panel_names_checkpoint_profile_and_metrics(tiny_checkpoint):  # noqa: F811
    import gradio as gr

    from helpers.app import build_demo

    demo = build_demo(tiny_checkpoint)
    info = next(b for b in _components(demo, gr.Markdown) if b.elem_id == "checkpoint-info").value
    final = json.loads((tiny_checkpoint / "metrics.json").read_text())["final"]
    assert str(tiny_checkpoint) in info and "profile **tiny**" in info
    assert (
        f"MLM accuracy at [MASK] {final['mlm_accuracy_at_mask']:.3f}, with the memory "
        f"{final['with_memory_mlm_accuracy_at_mask']:.3f} (unigram {final['baseline_unigram']:.3f}, "
        f"neighbour counting {final['baseline_neighbours']:.3f}, context counting "
        f"{final['baseline_context_counting']:.3f})"
    ) in info
    assert "**Memory** a table of the training text's contexts" in info
    assert "most frequent tokens" not in info  # the split of MLM accuracy is in metrics.json, not on the panel
    assert (
        f"NSP accuracy {final['nsp_accuracy']:.3f} (word overlap {final['baseline_word_overlap']:.3f}, chance 0.500)"
    ) in info
    assert f"MLM perplexity {final['mlm_perplexity']:,.1f}" in info
    assert "held-out validation paragraphs" in info
    assert demo.predictor.max_length == 64


def _nsp_fn(demo):
    return next(block.fn for block in demo.fns.values() if block.api_name == "nsp")


def test_every_nsp_answer_carries_the_held_out_accuracy_and_baselines(tiny_checkpoint):  # noqa: F811
    from helpers.app import build_demo

    demo = build_demo(tiny_checkpoint)
    labels, verdicts = _nsp_fn(demo)(
        ["Everything is opinion.", "Short.", ""], ["The sun warms the stones.", "B.", "B."]
    )
    assert labels[2] is None and "Sentence A is empty" in verdicts[2]  # an error is no answer: no record
    for verdict in verdicts[:2]:
        assert verdict.startswith("### ")
        check_accuracy_note(verdict, tiny_checkpoint)


def test_older_metrics_show_what_is_there():
    from helpers.app import validation_markdown
    from helpers.report import nsp_in_words

    old = {"nsp_accuracy": 0.61, "mlm_accuracy": 0.15, "mlm_perplexity": 900.0, "nsp_loss": 0.69}
    assert nsp_in_words(old) == "This checkpoint is right on 0.61 of held-out pairs; chance is 0.50."
    assert "NSP accuracy 0.610 (chance 0.500)" in validation_markdown(old)
    assert "MLM accuracy at [MASK]" not in validation_markdown(old)
    assert "MLM perplexity 900.0" in validation_markdown(old)
    assert "no held-out NSP accuracy on record" in nsp_in_words({})
    assert validation_markdown({}) == "**Validation** no metrics.json in this folder"


def test_examples_are_held_out_pairs_both_true_and_random(tiny_checkpoint):  # noqa: F811
    from helpers.app import held_out_examples
    from helpers.dataset import prepare_data

    predictor_tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    cfg = Config(**json.loads((tiny_checkpoint / "profile.json").read_text()))
    examples = held_out_examples(tiny_checkpoint, cfg, predictor_tokenizer)
    val = {
        (p.sentence_a, p.sentence_b): p.next_sentence_label for p in prepare_data(cfg, predictor_tokenizer).val_pairs
    }
    assert len(examples.pairs) >= 4
    truths = set()
    for a, b, truth in examples.pairs:
        assert (a, b) in val  # from the validation split, never from training paragraphs
        assert truth.endswith(LABEL_NAMES[val[(a, b)]])
        truths.add(val[(a, b)])
    assert truths == {IS_NEXT, IS_RANDOM}
    assert examples.masks and all("[MASK]" in text for text, _, _ in examples.masks)
    # Each example's book words, put back at its masks, give a held-out sentence: a visitor can tell a hit.
    held_out = " ".join(" ".join(s) for s in prepare_data(cfg, predictor_tokenizer).val_sentences.values())
    for text, _, words in examples.masks:
        filled = text
        for word in words.split(", "):
            filled = filled.replace("[MASK]", word, 1)
        assert "[MASK]" not in filled and filled in held_out, (text, words)
    assert any(text.count("[MASK]") == 2 for text, _, _ in examples.masks)  # every third has two masks


def test_examples_fall_back_without_the_corpus_and_never_download(tiny_checkpoint, tmp_path, monkeypatch):  # noqa: F811
    import helpers.corpus
    from helpers.app import BUILTIN_PAIRS, held_out_examples

    def no_download(*args, **kwargs):
        raise AssertionError("the demo tried to download the corpus")

    monkeypatch.setattr(helpers.corpus, "download", no_download)
    monkeypatch.delenv("MEDITATIONS_CORPUS", raising=False)
    cfg = Config(**{**json.loads((tiny_checkpoint / "profile.json").read_text()), "corpus": str(tmp_path / "gone.txt")})
    examples = held_out_examples(tiny_checkpoint, cfg, AutoTokenizer.from_pretrained(tiny_checkpoint))
    assert [row[:2] for row in examples.pairs] == [[a, b] for a, b, _ in BUILTIN_PAIRS]
    assert examples.source.startswith("built-in")


def test_user_text_is_shown_literally_not_as_markdown():
    from helpers.app import fill_markdown
    from helpers.serving import FillMaskResult

    result = FillMaskResult(predictions=[[("word", 0.5)], [("##s", 0.2)]], n_masks=3)
    shown = fill_markdown("# A *title* [MASK] <b>x</b> [MASK] and [MASK]", result, "[MASK]")
    assert shown.splitlines()[1] == "> \\# A \\*title\\* **word** \\<b\\>x\\</b\\> **##s** and \\[MASK\\]"


def test_any_bert_with_an_nsp_head_gets_a_demo(tiny_checkpoint, tmp_path):  # noqa: F811
    import gradio as gr

    from helpers.app import build_demo

    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    folder = tmp_path / "plain-bert"
    BertForPreTraining(
        BertConfig(
            vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
        )
    ).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    demo = build_demo(folder)
    info = next(b for b in _components(demo, gr.Markdown) if b.elem_id == "checkpoint-info").value
    assert "no profile.json" in info and "no metrics.json" in info and "built-in" in info
    assert demo.predictor.max_length == 512


def test_notebook_use_serves_without_blocking_and_stops_quietly(tiny_checkpoint, capsys):  # noqa: F811
    """What notebook 06 does: build, serve in the background, call it, stop it."""
    from helpers.app import build_demo, serve, stop

    demo = build_demo(tiny_checkpoint)
    url = serve(demo, inline=False)
    try:
        assert url.startswith("http://127.0.0.1:")
        answer = gradio_client.Client(url, verbose=False).predict("A.", "B.", api_name="/nsp")
        check_nsp(answer, demo.predictor, "A.", "B.")
    finally:
        capsys.readouterr()
        stop(demo)
    assert capsys.readouterr().out == ""  # nothing that would change between notebook runs
    port = int(url.rstrip("/").rsplit(":", 1)[1])
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0  # the server is gone


# ----- the command line -----


def _run(args, timeout=180, **env):
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def _masked_lm_folder(tmp_path, tiny):
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    folder = tmp_path / "masked-lm"
    BertForMaskedLM(
        BertConfig(
            vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
        )
    ).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _cut_folder(tmp_path, tiny):
    folder = tmp_path / "cut"
    shutil.copytree(tiny, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    return folder


@pytest.mark.slow
@pytest.mark.parametrize(
    "make, message",
    [
        (lambda tmp, tiny: tmp / "nowhere", "does not exist"),
        (_masked_lm_folder, "has no next-sentence-prediction head"),
        (_cut_folder, "model.safetensors is damaged"),  # its recorded sha256 no longer matches
    ],
    ids=["missing", "masked-lm", "truncated"],
)
def test_unusable_checkpoint_stops_with_one_sentence(tmp_path, tiny_checkpoint, make, message):  # noqa: F811
    result = _run(["-m", "helpers.app", "--checkpoint", str(make(tmp_path, tiny_checkpoint)), "--port", "0"])
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


@pytest.mark.slow
def test_busy_port_is_one_sentence(tiny_checkpoint):  # noqa: F811
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _run(["-m", "helpers.app", "--checkpoint", str(tiny_checkpoint), "--port", str(port)])
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith(f"error: Could not listen on 127.0.0.1:{port}")


def test_help(capsys):
    from helpers.app import main

    with pytest.raises(SystemExit) as exit:
        main(["--help"])
    printed = capsys.readouterr().out
    assert exit.value.code == 0 and "--checkpoint" in printed and "--share" in printed


@pytest.mark.slow
def test_main_trains_when_empty_then_reuses_and_serves(tmp_path):
    folder = tmp_path / "runs" / "tiny"
    first = _run(
        [
            "-m",
            "helpers.main",
            "--profile",
            "tiny",
            "--checkpoint",
            str(folder),
            "--no-serve",
            "--no-progress",
            "--wandb",
            "disabled",
            "--epochs",
            "1",
        ]
    )
    assert first.returncode == 0, first.stderr
    assert "training profile 'tiny'" in first.stdout and "Held-out MLM accuracy at [MASK]" in first.stdout
    assert (folder / "checkpoint.json").is_file()
    assert json.loads((folder / "profile.json").read_text())["epochs"] == 1  # the override reached training
    second = _run(["-m", "helpers.main", "--profile", "tiny", "--checkpoint", str(folder), "--no-serve"])
    assert second.returncode == 0 and "already trained" in second.stdout
    final = json.loads((folder / "metrics.json").read_text())["final"]
    assert re.search(
        rf"nsp_accuracy +{final['nsp_accuracy']:.4f}  \(baselines: word overlap "
        rf"{final['baseline_word_overlap']:.4f}, chance 0\.5000\)",
        second.stdout,
    ), second.stdout
    assert re.search(
        rf"mlm_accuracy_at_mask +{final['mlm_accuracy_at_mask']:.4f}  \(with the memory "
        rf"{final['with_memory_mlm_accuracy_at_mask']:.4f}\)  \(baselines: unigram "
        rf"{final['baseline_unigram']:.4f}, neighbour counting {final['baseline_neighbours']:.4f}, context counting "
        rf"{final['baseline_context_counting']:.4f}\)",
        second.stdout,
    )
    assert "Held-out MLM accuracy" not in second.stdout  # not trained again
    args = ["-m", "helpers.main", "--checkpoint", str(folder), "--port", str(free_port())]
    with demo_server(args) as running:
        assert running.url.startswith("http://127.0.0.1:")
        answer = gradio_client.Client(running.url, verbose=False).predict("A.", "B.", api_name="/nsp")
        assert answer[0]["label"] in LABEL_NAMES.values()


@pytest.mark.slow
def test_runs_with_no_network_at_all(tiny_checkpoint):  # noqa: F811
    """Inside a network namespace with only loopback up: the demo starts and answers."""
    if shutil.which("unshare") is None or _run_plain(["unshare", "-n", "true"]).returncode != 0:
        pytest.skip("unshare -n is not available here (it needs root or user namespaces)")
    script = (
        f"from helpers.app import build_demo, serve, stop\n"
        f"from gradio_client import Client\n"
        f"demo = build_demo({str(tiny_checkpoint)!r})\n"
        f"url = serve(demo)\n"
        f"try:\n"
        f"    print('ANSWER', Client(url, verbose=False).predict('A.', 'B.', api_name='/nsp')[0]['label'])\n"
        f"finally:\n"
        f"    stop(demo)\n"
    )
    result = subprocess.run(
        ["unshare", "-n", "sh", "-c", f'ip link set lo up && exec "{sys.executable}" -c "$0"', script],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert any(line.startswith("ANSWER B ") for line in result.stdout.splitlines())


def _run_plain(args):
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


# Last in the file: the watch has seen everything the module's server did.
def test_server_made_no_outbound_connection(client, server, watch):
    client.predict("One more pair.", "To be sure.", api_name="/nsp")
    assert watch.samples > 10, "the socket watch did not run"
    assert watch.remote, "the watch saw no connection at all, not even the test client's"
    outside = {addr for addr in watch.remote if not is_loopback(addr[0])}
    assert not outside, f"the demo process connected outside this machine: {sorted(outside)}"
