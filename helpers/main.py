"""The README's main command: train a checkpoint unless one is there, then serve the demo.

python -m helpers.main --checkpoint runs/default [--profile default] [--port 7860]
"""

from __future__ import annotations

import sys
from pathlib import Path

# helpers.app comes first: it sets the no-telemetry variables before gradio or huggingface_hub is imported.
from helpers.app import add_serve_options, build_demo, run_server
from helpers.checkpoint import CheckpointError, check_output_dir, interrupted, is_checkpoint, read_json, recover
from helpers.config import ConfigError, parse_args
from helpers.corpus import CorpusError
from helpers.pairs import PairError
from helpers.report import aligned_lines
from helpers.tokens import ModelSourceError

# Shown after the accuracies (which stand beside their baselines).
SHOWN = ("seen_mlm_accuracy_at_mask", "seen_nsp_accuracy", "mlm_perplexity", "mlm_loss", "nsp_loss", "train_seconds")


def _extra_options(parser) -> None:
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=Path("runs/default"),
        help="checkpoint folder: served if it holds a finished run, else trained first",
    )
    add_serve_options(parser)
    parser.add_argument("--no-serve", action="store_true", help="stop after training (or after printing the metrics)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar while training")


def saved_metrics(folder: Path) -> str:
    """One line per validation metric of a finished checkpoint, each accuracy beside its baselines."""
    metrics, profile = read_json(folder / "metrics.json"), read_json(folder / "profile.json")
    if metrics is None or profile is None:
        return f"{folder} holds a checkpoint without readable metrics.json/profile.json."
    profile = profile.get("profile", "?")
    final = metrics.get("final") if isinstance(metrics.get("final"), dict) else {}
    return f"Checkpoint {folder} (profile '{profile}') is already trained; its validation metrics:\n" + "\n".join(
        aligned_lines(final, SHOWN)
    )


def interrupted_note(folder: Path) -> str | None:
    """A hint when the checkpoint is a resumable run that stopped before its last epoch."""
    stop = interrupted(folder)
    if stop is None:
        return None
    return (
        f"note: {folder} stopped after epoch {stop[0]} of {stop[1]}; finish it with "
        f"`python -m helpers.train --resume {folder}`."
    )


def main(argv: list[str] | None = None) -> int:
    cfg, args = parse_args(
        argv,
        description="Train a checkpoint (unless the folder already holds one), then serve the demo.",
        extra=_extra_options,
    )
    folder: Path = args.checkpoint
    try:
        recover(folder)  # finish a checkpoint swap that a crash interrupted
        if is_checkpoint(folder):
            print(saved_metrics(folder), flush=True)
            note = interrupted_note(folder)
            if note:
                print(note, flush=True)
        else:
            check_output_dir(folder, option="--checkpoint")
            from helpers.train import TrainingError, train  # heavy: only when there is something to train

            print(f"No checkpoint in {folder} yet: training profile '{cfg.profile}' first.", flush=True)
            try:
                train(cfg, folder, progress_bar=not args.no_progress)
            except TrainingError as err:
                raise CheckpointError(str(err)) from None
        if args.no_serve:
            return 0
        demo = build_demo(folder)
    except KeyboardInterrupt:
        return 130
    except (CheckpointError, ConfigError, CorpusError, PairError, ModelSourceError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return run_server(demo, args.host, args.port, args.share)


if __name__ == "__main__":
    sys.exit(main())
