"""The Gradio demo: Next Sentence Prediction and fill-mask with one trained checkpoint.

    python -m helpers.app --checkpoint runs/default [--port 7860] [--host 127.0.0.1] [--share]

In a notebook: ``demo = build_demo(folder); url = serve(demo); ...; stop(demo)``.
"""

from __future__ import annotations

import os

# Gradio and huggingface_hub read these when they are imported: set them first, so that the demo makes
# no outbound connection (no version check, no telemetry). Serving stays local unless --share is given.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

import argparse
import contextlib
import io
import ipaddress
import random
import re
import socket
import sys
import traceback
import zlib
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from helpers.checkpoint import CheckpointError, read_json
from helpers.config import ROOT, Config
from helpers.corpus import ENV_VAR, default_path
from helpers.pairs import IS_NEXT, IS_RANDOM, LABEL_NAMES, build_bag
from helpers.report import accuracy_beside, compared_accuracies, nsp_in_words
from helpers.serving import (
    FillMaskResult,
    InferenceError,
    NSPResult,
    Predictor,
    first_line,
    strip_special_tokens,
)

TITLE = "BERT pretrained on Marcus Aurelius' Meditations"
MAX_TOP_K = 20
THEME = gr.themes.Soft()  # its fonts ship with Gradio: the page loads nothing from outside either
CSS = ".verdict h3 { margin-top: 0; }"
FILL_HEADERS = ["mask", "rank", "token", "probability"]
# With the checkpoint's memory, the table's answer and the mix's come beside the model's, each with its probability.
FILL_HEADERS_WITH_MEMORY = ["mask", "rank", "model", "p(model)", "memory", "p(memory)", "mix", "p(mix)"]

# Used when the corpus is not on this machine (or the checkpoint has no profile). Written for this demo.
BUILTIN_PAIRS = [
    (
        "Each morning I tell myself that the day will bring rude and ungrateful people.",
        "Yet none of them can harm me, for none can make me do wrong.",
        IS_NEXT,
    ),
    ("The river of time carries everything away.", "Lettuce grows best in cool weather and moist soil.", IS_RANDOM),
    (
        "Do not act as if you will live ten thousand years.",
        "Death hangs over you; while you live, while it is in your power, be good.",
        IS_NEXT,
    ),
    (
        "Look within, for within is the fountain of good.",
        "The emperor reviewed the legions on the frontier before winter came.",
        IS_RANDOM,
    ),
]
BUILTIN_MASKS = [
    "The [MASK] of a man is the work of his reason.",
    "Nothing happens to any man which he is not formed by [MASK] to bear.",
    "Let not your [MASK] wander; keep it on the [MASK] in front of you.",
]


@dataclass
class Examples:
    """Clickable examples for both tabs and where they came from."""

    pairs: list[list[str]]  # [sentence_a, sentence_b, truth]
    masks: list[list]  # [text, top_k, the book's word(s) at the masks]
    source: str


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free now (Gradio 6 rejects server_port=0)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _saved_config(folder: Path) -> Config | None:
    """The checkpoint's profile, or None for a BERT this repository did not train."""
    data = read_json(folder / "profile.json")
    if data is None:
        return None
    try:
        return Config(**data)
    except (TypeError, ValueError):  # a profile from another version of the helpers
        return None


def _truth(label: int) -> str:
    return f"held-out {'true' if label == IS_NEXT else 'random'} pair: {LABEL_NAMES[label]}"


def _mask_one_word(sentence: str, tokenizer) -> tuple[str, str] | None:
    """``sentence`` with one whole word (a single token, 4+ letters) replaced by [MASK]; and the word.

    The word is drawn at random (seeded by the sentence, so the examples never change): neither the easiest nor the
    hardest, so that the examples show what the model does on the book's words.
    """
    words = [
        m
        for m in re.finditer(r"[A-Za-z]{4,}", sentence)
        if m.group() not in tokenizer.mask_token and len(tokenizer.tokenize(m.group())) == 1  # not [MASK]'s letters
    ]
    if not words:
        return None
    m = random.Random(zlib.crc32(sentence.encode("utf-8"))).choice(words)
    return sentence[: m.start()] + tokenizer.mask_token + sentence[m.end() :], m.group()


def _book_words(masked: str, original: str, mask_token: str) -> str:
    """The words of ``original`` that ``masked`` hides, in order: what the book has at each [MASK]."""
    pattern = "(.+?)".join(map(re.escape, masked.split(mask_token)))
    match = re.fullmatch(pattern, original)
    return ", ".join(match.groups()) if match else ""


def held_out_examples(folder: Path, cfg: Config | None, tokenizer, n_pairs: int = 6, n_masks: int = 6) -> Examples:
    """Examples from the checkpoint's validation split of the corpus, else the built-in ones."""
    builtin = Examples(
        [[a, b, f"built-in example: {LABEL_NAMES[label]}"] for a, b, label in BUILTIN_PAIRS],
        [[text, 5, "(a built-in example: not from the book)"] for text in BUILTIN_MASKS],
        "built-in (the corpus or the profile is not available)",
    )
    if cfg is None:
        return builtin
    corpus = cfg.corpus or os.environ.get(ENV_VAR) or str(default_path())
    if not Path(corpus).is_file():  # never download from inside the demo
        return builtin
    try:
        from helpers.dataset import prepare_data

        # The checkpoint's tokenizer is passed in, so nothing is trained here: this only splits the text.
        data = prepare_data(cfg, tokenizer=tokenizer)
    except Exception:  # noqa: BLE001 - a changed or foreign corpus just means no held-out examples
        return builtin
    short = [p for p in data.val_pairs if len(p.sentence_a) <= 160 and len(p.sentence_b) <= 160]
    follows = [p for p in short if p.next_sentence_label == IS_NEXT][: (n_pairs + 1) // 2]
    random_ = [p for p in short if p.next_sentence_label == IS_RANDOM][: n_pairs // 2]
    pairs = [p for both in zip(follows, random_) for p in both] + follows[len(random_) :] + random_[len(follows) :]
    sentences = [s for s in build_bag(data.val_sentences) if 40 <= len(s) <= 140]
    masks = []
    for number, sentence in enumerate(sentences):
        masked = _mask_one_word(sentence, tokenizer)
        if masked is not None and number % 3 == 2:  # every third one gets a second mask
            masked = _mask_one_word(masked[0], tokenizer) or masked
        if masked is not None:
            masks.append([masked[0], 5, _book_words(masked[0], sentence, tokenizer.mask_token)])
        if len(masks) == n_masks:
            break
    if not pairs:
        return builtin
    return Examples(
        [[p.sentence_a, p.sentence_b, _truth(p.next_sentence_label)] for p in pairs],
        masks or builtin.masks,
        f"held-out validation paragraphs of {Path(corpus).name}",
    )


def _display_path(folder: Path) -> str:
    try:
        return str(folder.resolve().relative_to(ROOT))
    except ValueError:
        return str(folder)


def saved_final(folder: Path) -> dict:
    """The final validation metrics in the folder's metrics.json, or {} when there are none."""
    final = (read_json(folder / "metrics.json") or {}).get("final")
    return final if isinstance(final, dict) else {}


def validation_markdown(final: dict) -> str:
    """The held-out metrics, each accuracy beside the counting baselines it has to beat."""
    parts = [accuracy_beside(row) for row in compared_accuracies(final, parts=False)]  # the split is in metrics.json
    extra = [("MLM perplexity", "mlm_perplexity", "{:,.1f}"), ("NSP loss", "nsp_loss", "{:.3f}")]
    parts += [
        f"{name} {fmt.format(final[key])}" for name, key, fmt in extra if isinstance(final.get(key), (int, float))
    ]
    if not parts:
        return "**Validation** no metrics.json in this folder"
    return "**Validation** (held-out paragraphs) " + " · ".join(parts)


def checkpoint_summary(folder: Path, predictor: Predictor, cfg: Config | None, examples: Examples) -> str:
    """The panel's Markdown: which checkpoint, its profile and its validation metrics."""
    model = predictor.model.config
    lines = [
        f"**Checkpoint** `{_display_path(folder)}` · "
        + (
            f"profile **{cfg.profile}** (model source `{cfg.model}`)"
            if cfg
            else "no profile.json (a BERT not trained by this repository)"
        )
        + f" · {model.num_hidden_layers} layers × {model.hidden_size} hidden, {model.vocab_size:,}-token vocabulary"
        + f" · reads up to {predictor.max_length} tokens"
    ]
    lines.append(validation_markdown(saved_final(folder)))
    if predictor.memory is not None:
        lines.append(
            f"**Memory** a table of the training text's contexts ({len(predictor.memory.table.keys):,} of them, up to "
            f"two tokens on each side), mixed with the model in fill-mask"
        )
    else:
        lines.append(f"**Memory** none: {predictor.memory_note or 'this checkpoint has no context-count table.'}")
    lines.append(f"**Examples** {examples.source}")
    return "  \n".join(lines)


_MD_INLINE = re.compile(r"([\\`*_\[\]<>~|])")  # characters that format text anywhere in a line
_MD_LINE_START = re.compile(r"^(\s*)([#>+=-]|\d+(?=[.)]))")  # ... and those that do only at its start


def _escape(text: str) -> str:
    """User text shown literally inside Markdown, with as few backslashes as will do."""
    return _MD_INLINE.sub(r"\\\1", text)


def _escape_line_start(line: str) -> str:
    match = _MD_LINE_START.match(line)
    if match is None:
        return line
    if match.group(2).isdigit():  # "1. text" would become a list: escape the dot instead
        end = match.end()
        return line[:end] + "\\" + line[end:]
    return line[: match.start(2)] + "\\" + line[match.start(2) :]


def _notes(notes: list[str]) -> str:
    return "".join(f"\n\n*Note: {note}*" for note in notes)  # our own sentences: nothing to escape


def verdict_markdown(result: NSPResult, accuracy_note: str) -> str:
    """The verdict in words, both probabilities, how often the checkpoint is right (nsp_in_words), the notes."""
    p_next, p_random = result.probabilities[LABEL_NAMES[IS_NEXT]], result.probabilities[LABEL_NAMES[IS_RANDOM]]
    if result.label == IS_NEXT:
        words = f"The model thinks sentence B is the one that came right after A ({p_next:.1%})."
    else:
        words = f"The model thinks sentence B was drawn from elsewhere, not the one after A ({p_random:.1%})."
    # Beside every answer: a verdict from a model barely better than a coin must not read as a finding.
    return f"### {result.verdict}\n{words}\n\n*{accuracy_note}*{_notes(result.notes)}"


def _filled(text: str, guesses: list[list[tuple[str, float]]], mask_token: str) -> str:
    """``text`` with each [MASK] replaced by the first of its guesses, in bold, on one quoted line."""
    pieces = text.split(mask_token)
    out = _escape(pieces[0])
    for number, piece in enumerate(pieces[1:]):
        guess = f"**{_escape(guesses[number][0][0])}**" if number < len(guesses) else _escape(mask_token)
        out += guess + _escape(piece)
    return f"> {_escape_line_start(' '.join(out.split()))}"


def fill_markdown(text: str, result: FillMaskResult, mask_token: str) -> str:
    """The text with each [MASK] replaced by the model's best guess (and the mix's, with a memory); the notes."""
    count = len(result.predictions)
    shown = f"### Best guess for {count} mask{'s' if count != 1 else ''}\n"
    if result.mixed_predictions is None:
        return shown + _filled(text, result.predictions, mask_token) + _notes(result.notes)
    shown += f"The model alone:\n{_filled(text, result.predictions, mask_token)}"
    shown += f"\n\nThe mix, the model with its memory:\n{_filled(text, result.mixed_predictions, mask_token)}"
    return shown + _notes(result.notes)


def fill_rows(result: FillMaskResult, k: int) -> list[list]:
    """The table's rows: per mask and rank, the model's token and probability, then the memory's and the mix's."""
    answers = [result.predictions] + (
        [] if result.mixed_predictions is None else [result.memory_predictions, result.mixed_predictions]
    )
    rows = []
    for number in range(len(result.predictions)):
        for rank in range(min(k, len(result.predictions[number]))):
            cells = [(token, round(p, 4)) for token, p in (answer[number][rank] for answer in answers)]
            rows.append([number + 1, rank + 1, *(value for cell in cells for value in cell)])
    return rows


def _failure(err: BaseException) -> str:
    traceback.print_exception(err, file=sys.stderr)  # the details stay in the server's log
    return (
        f"**The model failed on this input ({type(err).__name__}).** The app is still running; "
        f"try shorter or different text."
    )


def nsp_handler(predictor: Predictor, accuracy_note: str):
    """The NSP tab's batched function: several pairs from several users go through the model in one pass."""

    def next_sentence(firsts: list[str], seconds: list[str]) -> tuple[list, list]:
        try:
            results = predictor.predict_nsp_batch(list(zip(firsts, seconds)), errors="return")
        except Exception as err:  # noqa: BLE001 - never a stack trace in the page
            return [None] * len(firsts), [_failure(err)] * len(firsts)
        labels, verdicts = [], []
        for result in results:
            if isinstance(result, InferenceError):
                labels.append(None)
                verdicts.append(f"**{result}**")
            else:
                labels.append(result.probabilities)
                verdicts.append(verdict_markdown(result, accuracy_note))
        return labels, verdicts

    return next_sentence


def fill_handler(predictor: Predictor):
    """The fill-mask tab's batched function, like ``nsp_handler``; each request keeps its own top-k."""
    tok = predictor.tokenizer

    def fill(texts: list[str], top_ks: list) -> tuple[list, list]:
        ks = []
        for k in top_ks:
            try:
                ks.append(max(1, min(int(k), MAX_TOP_K)))
            except (TypeError, ValueError):
                ks.append(5)
        try:
            results = predictor.fill_mask_batch(texts, max(ks), errors="return")
        except Exception as err:  # noqa: BLE001
            return [_failure(err)] * len(texts), [[]] * len(texts)
        shown, tables = [], []
        for text, k, result in zip(texts, ks, results):
            if isinstance(result, InferenceError):
                shown.append(f"**{result}**")
                tables.append([])
                continue
            text, _ = strip_special_tokens(text, tok)  # shown as the model read it
            shown.append(fill_markdown(text, result, tok.mask_token))
            tables.append(fill_rows(result, k))
        return shown, tables

    return fill


def nsp_tab(examples: Examples) -> tuple[gr.Textbox, gr.Textbox, gr.Textbox, gr.Button, gr.Label, gr.Markdown]:
    """The NSP tab's components (inside an open ``gr.Blocks``)."""
    gr.Markdown(
        "Does sentence B come right after sentence A in the text, or was it drawn at random from "
        "elsewhere? This is the Next Sentence Prediction head reading `[CLS] A [SEP] B [SEP]`."
    )
    with gr.Row():
        with gr.Column():
            first = gr.Textbox(label="Sentence A", lines=2, max_lines=6, elem_id="sentence-a")
            second = gr.Textbox(label="Sentence B", lines=2, max_lines=6, elem_id="sentence-b")
            truth = gr.Textbox(label="Label in the data (examples only)", interactive=False, elem_id="truth")
            button = gr.Button("Does B follow A?", variant="primary", elem_id="nsp-button")
        with gr.Column():
            probabilities = gr.Label(label="Probabilities", num_top_classes=2, show_heading=False, elem_id="nsp-label")
            verdict = gr.Markdown(elem_id="nsp-verdict", elem_classes=["verdict"])
    gr.Examples(
        examples.pairs,
        inputs=[first, second, truth],
        label="Examples (click one, then the button)",
        cache_examples=False,
    )
    return first, second, truth, button, probabilities, verdict


def fill_tab(
    examples: Examples, mask: str, memory: bool
) -> tuple[gr.Textbox, gr.Slider, gr.Textbox, gr.Button, gr.Markdown, gr.Dataframe]:
    """The fill-mask tab's components (inside an open ``gr.Blocks``); with ``memory``, three answers side by side."""
    beside = (
        " Beside it: the memory, a table of which token the training text holds in the same context (up to two "
        "tokens on each side), and the mix of the two answers."
        if memory
        else ""
    )
    gr.Markdown(
        f"Put {mask} where a word is missing; the masked-language-model head guesses it. "
        f"Several {mask}s are filled in one pass, each on its own.{beside}"
    )
    headers = FILL_HEADERS_WITH_MEMORY if memory else FILL_HEADERS
    with gr.Row():
        with gr.Column():
            text = gr.Textbox(label="Text", lines=3, max_lines=8, value=f"The {mask} is short.", elem_id="mask-text")
            top_k = gr.Slider(1, MAX_TOP_K, value=5, step=1, label="Guesses per mask (top-k)")
            # Filled by each example, so a visitor can tell a hit from a miss.
            book = gr.Textbox(label="The book has (examples only)", interactive=False, elem_id="book-word")
            button = gr.Button("Fill the mask", variant="primary", elem_id="fill-button")
        with gr.Column():
            filled = gr.Markdown(elem_id="fill-text")
    # The whole width: with the memory the table holds three answers, each a token and its probability.
    table = gr.Dataframe(
        headers=headers,
        datatype=["number", "number"] + ["str", "number"] * ((len(headers) - 2) // 2),
        interactive=False,
        label="Top-k per mask",
        elem_id="fill-table",
    )
    gr.Examples(
        examples.masks,
        inputs=[text, top_k, book],
        label="Examples (held-out sentences with a word masked)",
        cache_examples=False,
    )
    return text, top_k, book, button, filled, table


def build_demo(
    checkpoint: str | os.PathLike,
    max_length: int | None = None,
    concurrency_limit: int = 1,
    max_queue: int = 256,
    max_batch_size: int = 16,
) -> gr.Blocks:
    """The whole demo from one checkpoint folder; raises CheckpointError with one sentence if it is unusable."""
    folder = Path(checkpoint).expanduser()
    predictor = Predictor.from_checkpoint(folder, max_length)
    cfg = _saved_config(folder)
    examples = held_out_examples(folder, cfg, predictor.tokenizer)
    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        gr.Markdown(
            f"## {TITLE}\nA small BERT trained with both of its pretraining objectives: filling a masked word, "
            f"and telling whether sentence B follows sentence A. Try both below; the panel says how often each is "
            f"right."
        )
        gr.Markdown(checkpoint_summary(folder, predictor, cfg, examples), elem_id="checkpoint-info")
        with gr.Tab("Fill the mask"):  # first: the objective this small model learns
            text, top_k, book, fill_button, filled, table = fill_tab(
                examples, predictor.tokenizer.mask_token, predictor.memory is not None
            )
        with gr.Tab("Next sentence"):
            first, second, truth, nsp_button, probabilities, verdict = nsp_tab(examples)
        # One worker ("model") serves both tabs, each call on a batch of queued requests.
        gr.on(
            [nsp_button.click, first.submit, second.submit],
            nsp_handler(predictor, nsp_in_words(saved_final(folder))),
            inputs=[first, second],
            outputs=[probabilities, verdict],
            api_name="nsp",
            batch=True,
            max_batch_size=max_batch_size,
            concurrency_id="model",
        )
        gr.on(
            [fill_button.click, text.submit],
            fill_handler(predictor),
            inputs=[text, top_k],
            outputs=[filled, table],
            api_name="fill_mask",
            batch=True,
            max_batch_size=max_batch_size,
            concurrency_id="model",
        )
        # Typing a new text or pair makes the example's word or label stale: clear it in the browser, no server call.
        gr.on([text.input], None, outputs=book, js="() => ''", queue=False, api_visibility="private")
        gr.on([first.input, second.input], None, outputs=truth, js="() => ''", queue=False, api_visibility="private")

    demo.queue(default_concurrency_limit=concurrency_limit, max_size=max_queue)
    demo.predictor = predictor  # for notebooks and tests: the same model the page uses
    demo.examples = examples  # ... and the examples it offers
    demo.checkpoint = folder
    return demo


class ServeError(RuntimeError):
    """The demo could not start listening; the message says what to change."""


def serve(
    demo: gr.Blocks, host: str = "127.0.0.1", port: int | None = None, share: bool = False, inline: bool | None = None
) -> str:
    """Start ``demo`` without blocking and return its local URL; ``port=None`` or 0 picks a free port.

    Stop it with ``demo.close()``; in a notebook, ``inline`` (default: auto) shows it in the output cell.
    """
    port = port or free_port(host)
    try:
        demo.launch(
            server_name=host,
            server_port=port,
            share=share,
            inline=inline,
            prevent_thread_lock=True,
            quiet=True,
            show_error=False,
            ssr_mode=False,
            theme=THEME,
            css=CSS,
        )
    except OSError as err:
        raise ServeError(
            f"Could not listen on {host}:{port} ({first_line(err)}); pass another --port, or --port 0 for any free one."
        ) from None
    return demo.local_url


def stop(demo: gr.Blocks) -> None:
    """Stop a demo started with ``serve``, without Gradio's "Closing server" line (stable notebook output)."""
    with contextlib.redirect_stdout(io.StringIO()):
        demo.close()


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def add_serve_options(parser: argparse.ArgumentParser) -> None:
    """--port, --host and --share, shared with helpers.main."""
    parser.add_argument("--port", type=int, default=7860, help="port to listen on (0: any free port)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on; the default serves this machine only"
    )
    parser.add_argument(
        "--share", action="store_true", help="also make a public link through Gradio's share servers (off by default)"
    )


def run_server(demo: gr.Blocks, host: str, port: int, share: bool) -> int:
    """Serve until Ctrl+C and return the exit status; problems are one line on stderr."""
    if not 0 <= port <= 65535:
        print(f"error: --port={port} is not a port number; use 1 to 65535, or 0 for any free port.", file=sys.stderr)
        return 2
    if not is_loopback(host):
        print(f"note: --host {host} lets other machines on your network reach the demo.", file=sys.stderr)
    if share:
        print("note: --share sends the demo through Gradio's share servers to a public link.", file=sys.stderr)
    try:
        url = serve(demo, host, port, share)
    except ServeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"Demo running at {url} (Ctrl+C stops it).", flush=True)
    if share and demo.share_url:
        print(f"Public link: {demo.share_url}", flush=True)
    try:
        demo.block_thread()
    finally:
        demo.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Serve the demo of a trained checkpoint: Next Sentence Prediction and fill-mask.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--checkpoint", required=True, type=Path, help="folder of a BertForPreTraining checkpoint (e.g. runs/default)"
    )
    parser.add_argument(
        "--max-length",
        type=int,
        default=None,
        help="tokens read per input (default: the profile's, else the model's limit)",
    )
    add_serve_options(parser)
    args = parser.parse_args(argv)
    if args.max_length is not None and args.max_length < 8:
        parser.exit(2, f"error: --max-length={args.max_length} is too small; a pair needs at least 8 tokens.\n")
    try:
        demo = build_demo(args.checkpoint, args.max_length)
    except (CheckpointError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return run_server(demo, args.host, args.port, args.share)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
