"""The training loop: BertForPreTraining with AdamW, warm-up, clipping and validation, through Accelerate.

    python -m helpers.train --profile default --output runs/default
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm
from transformers import BertForPreTraining, get_linear_schedule_with_warmup, set_seed

from helpers.baselines import MaskBaselines, OverlapBaseline
from helpers.checkpoint import (CheckpointError, check_output_dir, load_training_state, rng_state, save_checkpoint,
                                set_rng_state)
from helpers.config import Config, ConfigError, parse_args
from helpers.corpus import CorpusError
from helpers.dataset import MeditationsDataset, PreparedData, make_loader, prepare_data
from helpers.inference import Predictor
from helpers.model import PretrainingLosses, load_model
from helpers.pairs import LABEL_NAMES, PairError
from helpers.tokens import ModelSourceError, check_max_length
from helpers.tracking import Tracker

# mlm_accuracy_at_mask: share of the validation [MASK] positions (15%, every selected token a [MASK]) whose
# top guess is the hidden token, which is what fill-mask does.
METRICS = ("nsp_accuracy", "mlm_accuracy_at_mask", "mlm_loss", "mlm_perplexity", "nsp_loss")
# The same masks and pairs, guessed by counting (helpers.baselines): what the model must beat.
BASELINES = ("baseline_unigram", "baseline_neighbours", "baseline_word_overlap")


class TrainingError(RuntimeError):
    """Training cannot go on (for example, the loss became NaN); the message says what to do."""


@dataclass
class TrainResult:
    """What a run leaves behind: per-step history, per-epoch validation metrics and the checkpoint."""

    checkpoint: Path
    history: list[dict[str, float]] = field(default_factory=list)
    epochs: list[dict[str, float]] = field(default_factory=list)
    final: dict[str, float] = field(default_factory=dict)
    baselines: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    wandb_run: Path | None = None


def mixed_precision(cfg: Config) -> str:
    """'auto' -> bf16 on a GPU that supports it, fp16 on other GPUs, off on CPU and Apple MPS."""
    if cfg.mixed_precision != "auto":
        return cfg.mixed_precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


def make_optimizer(model: torch.nn.Module, cfg: Config) -> torch.optim.AdamW:
    """AdamW with weight decay on weight matrices only (not biases or LayerNorm), as in BERT."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 or "LayerNorm" in name else decay).append(param)
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)


@torch.no_grad()
def evaluate(losses: PretrainingLosses, batches: list[dict[str, torch.Tensor]], accelerator: Accelerator) -> dict[str, float]:
    """Validation metrics, computed from the logits: accuracy at [MASK] and on NSP, both losses."""
    was_training = losses.training
    losses.eval()  # dropout off
    mlm_correct = mlm_count = nsp_correct = nsp_count = 0
    mlm_loss_sum = nsp_loss_sum = 0.0
    for batch in batches:
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        with accelerator.autocast():
            out = losses(**batch)
        n_masked = out["mlm_labels"].numel()
        n_pairs = batch["next_sentence_label"].numel()
        mlm_correct += (out["mlm_logits"].argmax(-1) == out["mlm_labels"]).sum().item()
        nsp_correct += (out["nsp_logits"].argmax(-1) == batch["next_sentence_label"].view(-1)).sum().item()
        mlm_loss_sum += out["mlm_loss"].item() * n_masked  # token-weighted, as if one big batch
        nsp_loss_sum += out["nsp_loss"].item() * n_pairs
        mlm_count += n_masked
        nsp_count += n_pairs
    losses.train(was_training)
    mlm_loss = mlm_loss_sum / max(mlm_count, 1)
    return {"nsp_accuracy": nsp_correct / max(nsp_count, 1), "mlm_accuracy_at_mask": mlm_correct / max(mlm_count, 1),
            "mlm_loss": mlm_loss, "mlm_perplexity": math.exp(min(mlm_loss, 50.0)),
            "nsp_loss": nsp_loss_sum / max(nsp_count, 1)}


def baselines(data: PreparedData, cfg: Config, val_batches: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    """The counting baselines, fitted on the training paragraphs, scored on the validation masks and pairs."""
    texts = [" ".join(sentences) for sentences in data.train_sentences.values()]
    scores = MaskBaselines(data.tokenizer, texts).score(val_batches)
    overlap = OverlapBaseline(texts, data.train_pairs(cfg, 0)).score(data.val_pairs)
    return {"baseline_unigram": scores["unigram"], "baseline_neighbours": scores["neighbours"],
            "baseline_word_overlap": overlap}


def format_baselines(values: dict[str, float]) -> str:
    return (f"MLM at [MASK]: unigram {values['baseline_unigram']:.3f}, neighbours {values['baseline_neighbours']:.3f}; "
            f"NSP: word overlap {values['baseline_word_overlap']:.3f} (chance 0.500)")


def headline(final: dict[str, float]) -> str:
    """The two held-out accuracies, each beside the baselines it has to beat."""
    return (f"Held-out MLM accuracy at [MASK] {final['mlm_accuracy_at_mask']:.3f} (unigram "
            f"{final['baseline_unigram']:.3f}, neighbours {final['baseline_neighbours']:.3f}); NSP accuracy "
            f"{final['nsp_accuracy']:.3f} (word overlap {final['baseline_word_overlap']:.3f}, chance 0.500)")


def format_table(rows: list[dict[str, float]], header: bool = True) -> str:
    """Per-epoch validation metrics as a fixed-width text table."""
    width = max(map(len, METRICS))
    lines = [f"{'epoch':>5}  {'seconds':>7}  " + "  ".join(f"{m:>{width}}" for m in METRICS)] if header else []
    lines += [f"{r['epoch']:>5}  {r.get('seconds', 0):>7.0f}  " + "  ".join(f"{r[m]:>{width}.4f}" for m in METRICS)
              for r in rows]
    return "\n".join(lines)


def nsp_readout(predictor: Predictor, sentence_a: str, sentence_b: str, label: int) -> str:
    """The tutorial's single-example readout, with the label meaning spelled out."""
    res = predictor.predict_nsp(sentence_a, sentence_b)
    probs = list(res.probabilities.values())
    return (f"A: {sentence_a}\nB: {sentence_b}\n"
            f"logits [index 0 = '{LABEL_NAMES[0]}', index 1 = '{LABEL_NAMES[1]}']: "
            f"[{res.logits[0]:.3f}, {res.logits[1]:.3f}]\n"
            f"softmax: [{probs[0]:.3f}, {probs[1]:.3f}]  argmax: {res.label} = '{res.verdict}'  "
            f"(true label: {label} = '{LABEL_NAMES[label]}')")


def train(cfg: Config, output: str | Path, *, resume: bool = False, overwrite: bool = False,
          progress: bool = True, track: bool = True, verbose: bool = True, data: PreparedData | None = None,
          on_step: Callable[[dict[str, float]], None] | None = None) -> TrainResult:
    """Train ``cfg`` and save to ``output``; ``resume=True`` continues the checkpoint in ``output``.

    ``on_step`` is called with each step's record (step, epoch, losses, lr); raising KeyboardInterrupt
    there behaves like Ctrl-C: a resumable checkpoint is saved.
    """
    output = Path(output)
    state: dict[str, Any] = {}
    if resume:
        saved_cfg, state = load_training_state(output)
        cfg = saved_cfg if cfg is None else cfg
    else:
        check_output_dir(output, overwrite)
    # With no GPU, say so: only then does Accelerate turn torchrun's ranks into a gloo process group.
    on_cpu = not torch.cuda.is_available() and not torch.backends.mps.is_available()
    accelerator = Accelerator(mixed_precision=mixed_precision(cfg), cpu=on_cpu)
    say = accelerator.print if verbose else (lambda *a, **k: None)
    say(f"Profile '{cfg.profile}' on {accelerator.device} (mixed precision: {accelerator.mixed_precision}, "
        f"processes: {accelerator.num_processes})\n{cfg.describe()}")

    set_seed(cfg.seed)  # one seed: pairs, masks, initialisation and data order
    if data is None:
        data = prepare_data(cfg) if not resume else prepare_data(cfg, tokenizer=_saved_tokenizer(output))
    tokenizer = data.tokenizer
    model = BertForPreTraining.from_pretrained(output, use_safetensors=True) if resume else load_model(cfg, tokenizer)
    check_max_length(cfg.max_length, tokenizer, model.config.max_position_embeddings)
    say(data.summary())

    # Validation batches are built once (fixed masks) so that epochs compare like with like. Every selected
    # token becomes [MASK], whatever training does: the figure then measures what fill-mask does.
    val_set = MeditationsDataset.from_pairs(tokenizer, data.val_pairs, cfg.max_length)
    val_cfg = dataclasses.replace(cfg, mlm_probability=cfg.val_mlm_probability, mask_replace_prob=1.0,
                                  random_replace_prob=0.0)
    val_batches = list(make_loader(val_set, tokenizer, val_cfg, shuffle=False, seed=cfg.seed))
    result_baselines = baselines(data, cfg, val_batches)
    say("Baselines on the same validation masks and pairs: " + format_baselines(result_baselines))
    n_train = len(data.train_pairs(cfg, 0))
    steps_per_epoch = math.ceil(n_train / (cfg.batch_size * accelerator.num_processes))
    total_steps = steps_per_epoch * cfg.epochs if cfg.max_steps is None else min(cfg.max_steps, steps_per_epoch * cfg.epochs)

    losses = PretrainingLosses(model)
    optimizer = make_optimizer(losses, cfg)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_steps), total_steps)
    losses, optimizer = accelerator.prepare(losses, optimizer)
    result = TrainResult(checkpoint=output, history=state.get("history", []), epochs=state.get("epochs", []),
                         baselines=result_baselines)
    mlm_only_steps = round(cfg.mlm_only_ratio * total_steps)  # NSP joins the loss after these
    start_epoch, skip, global_step = state.get("next_epoch", 0), state.get("next_step", 0), state.get("global_step", 0)
    if resume:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        say(f"Resuming {output} at epoch {start_epoch + 1}, step {global_step}.")

    tracker = Tracker(cfg, enabled=track and accelerator.is_main_process)
    result.wandb_run = tracker.run_path
    pad_multiple = 8 if accelerator.mixed_precision != "no" else None  # tensor cores like multiples of 8

    def snapshot(next_epoch: int, next_step: int) -> dict[str, Any]:
        return {"next_epoch": next_epoch, "next_step": next_step, "global_step": global_step,
                "epoch": next_epoch, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "rng": rng_state(), "history": result.history, "epochs": result.epochs,
                "seconds": state.get("seconds", 0.0) + time.perf_counter() - started}

    def save(next_epoch: int, next_step: int, final: dict[str, float] | None = None) -> None:
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            metrics = {"epochs": result.epochs, "final": final or (result.epochs[-1] if result.epochs else {}),
                       "baselines": result.baselines, "history": result.history}
            save_checkpoint(output, accelerator.unwrap_model(losses).model, tokenizer, cfg, metrics,
                            snapshot(next_epoch, next_step))

    started = time.perf_counter()
    real_tokens = positions = 0  # padding efficiency of the training batches = real_tokens / positions
    epoch, step_in_epoch = start_epoch, skip
    try:
        for epoch in range(start_epoch, cfg.epochs):
            if global_step >= total_steps:
                break
            train_set = MeditationsDataset.from_pairs(tokenizer, data.train_pairs(cfg, epoch), cfg.max_length)
            # Every process must see the same order (Accelerate then hands each its own share of the batches);
            # the masks get a seed of their own per process.
            seed = cfg.seed + 7919 * epoch
            loader = accelerator.prepare(make_loader(train_set, tokenizer, cfg, shuffle=True, seed=seed,
                                                     pad_to_multiple_of=pad_multiple,
                                                     mask_seed=seed + 104729 * accelerator.process_index))
            # Resuming restores the global RNG (dropout) where it stood when the checkpoint was taken: at an
            # epoch boundary before the loader starts, mid-epoch once the skipped batches are behind us.
            pending_rng = None
            if epoch == start_epoch and skip:
                pending_rng = state["rng"]
            elif epoch == start_epoch and resume:
                set_rng_state(state["rng"])
            to_skip = skip if epoch == start_epoch else 0
            step_in_epoch = to_skip
            bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not (progress and accelerator.is_main_process),
                       dynamic_ncols=True, leave=True)
            window_start, window_seqs, window_tokens = time.perf_counter(), 0, 0
            losses.train()
            for index, batch in enumerate(bar):
                if index < to_skip:  # drawn (so the mask generator advances as before) but already trained on
                    continue
                if pending_rng is not None:
                    set_rng_state(pending_rng)
                    pending_rng = None
                out = losses(**batch)
                # MLM first: NSP rides on what MLM builds, and from step 0 it holds MLM at the unigram guess.
                nsp_weight = cfg.nsp_weight if global_step >= mlm_only_steps else 0.0
                loss = out["mlm_loss"] + nsp_weight * out["nsp_loss"]
                if not torch.isfinite(loss).item():
                    raise TrainingError(f"The loss became {loss.item()} at step {global_step + 1}; training stopped and "
                                        f"the last good checkpoint in {output} (if any) is kept. Try a lower --lr or "
                                        f"--mixed-precision no.")
                accelerator.backward(loss)
                accelerator.clip_grad_norm_(losses.parameters(), cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                global_step += 1
                step_in_epoch += 1
                window_seqs += batch["input_ids"].shape[0]
                window_tokens += int(batch["attention_mask"].sum())
                real_tokens += int(batch["attention_mask"].sum())
                positions += batch["attention_mask"].numel()
                record = {"step": global_step, "epoch": epoch + step_in_epoch / max(len(loader), 1),
                          "loss": loss.item(), "mlm_loss": out["mlm_loss"].item(), "nsp_loss": out["nsp_loss"].item(),
                          "lr": scheduler.get_last_lr()[0]}
                result.history.append(record)
                if on_step is not None:
                    on_step(record)
                bar.set_postfix(loss=f"{record['loss']:.3f}", mlm=f"{record['mlm_loss']:.3f}", nsp=f"{record['nsp_loss']:.3f}")
                if global_step % cfg.log_every == 0:
                    elapsed = max(time.perf_counter() - window_start, 1e-9)
                    tracker.log({"train/" + k: v for k, v in record.items() if k != "step"}
                                | {"train/sequences_per_second": window_seqs / elapsed,
                                   "train/tokens_per_second": window_tokens / elapsed}, step=global_step)
                    window_start, window_seqs, window_tokens = time.perf_counter(), 0, 0
                if cfg.max_steps is not None and global_step >= total_steps:
                    break
            bar.close()
            if pending_rng is not None:  # the interrupt came after the epoch's last step
                set_rng_state(pending_rng)
            skip = 0
            metrics = evaluate(accelerator.unwrap_model(losses), val_batches, accelerator)
            seconds = state.get("seconds", 0.0) + time.perf_counter() - started  # wall-clock, this run and before
            result.epochs.append({"epoch": epoch + 1, "step": global_step, "seconds": round(seconds, 1), **metrics})
            tracker.log({f"val/{k}": v for k, v in metrics.items()}, step=global_step)
            # The header once, then one row per epoch (the bar above each row shows the epoch's progress).
            say(format_table(result.epochs[-1:], header=len(result.epochs) == 1 or epoch == start_epoch))
            save(epoch + 1, 0)
    except KeyboardInterrupt:
        save(epoch, step_in_epoch)
        say(f"\nInterrupted: a resumable checkpoint is in {output}; continue with --resume {output}.")
        tracker.finish()
        raise

    result.seconds = time.perf_counter() - started
    result.final = dict(result.epochs[-1]) if result.epochs else evaluate(accelerator.unwrap_model(losses), val_batches, accelerator)
    result.final.pop("epoch", None)
    result.final.update(result.baselines)
    result.final["train_seconds"] = round(result.seconds, 1)
    result.final["padding_efficiency"] = round(real_tokens / positions, 4) if positions else None
    # Evidence that every process trained: its optimizer steps, gathered from all ranks.
    steps = accelerator.gather(torch.tensor([global_step], device=accelerator.device)).tolist()
    result.final["num_processes"] = accelerator.num_processes
    result.final["steps_per_process"] = steps
    save(cfg.epochs, 0, final=result.final)

    if accelerator.is_main_process:
        predictor = Predictor(accelerator.unwrap_model(losses).model, tokenizer, cfg.max_length)
        examples = data.val_pairs[:8]
        verdicts = predictor.predict_nsp_batch([(p.sentence_a, p.sentence_b) for p in examples])
        if verbose:
            say("\nOne validation pair, read out:\n" + nsp_readout(predictor, examples[0].sentence_a,
                                                                 examples[0].sentence_b, examples[0].next_sentence_label))
        tracker.table("val/examples", ["sentence_a", "sentence_b", "true", "predicted", "p_follows"],
                      [[p.sentence_a, p.sentence_b, LABEL_NAMES[p.next_sentence_label], v.verdict,
                        round(v.probabilities[LABEL_NAMES[0]], 4)] for p, v in zip(examples, verdicts)], step=global_step)
        tracker.summary({f"final/{k}": v for k, v in result.final.items()})
    tracker.finish()
    say(f"\n{headline(result.final)} ({result.seconds:.0f} s).\nCheckpoint: {output}")
    return result


def ensure_trained(cfg: Config, output: str | Path, **kwargs: Any) -> Path:
    """Train ``cfg`` into ``output`` unless it already holds a complete checkpoint; return the folder."""
    from helpers.checkpoint import is_checkpoint, recover

    output = Path(output)
    recover(output)
    if not is_checkpoint(output):
        train(cfg, output, overwrite=True, **kwargs)
    return output


def _saved_tokenizer(folder: Path):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(folder)


def _extra_options(parser) -> None:
    parser.add_argument("--output", type=Path, help="checkpoint folder (required unless --resume)")
    parser.add_argument("--resume", type=Path, metavar="DIR", help="continue the interrupted run saved in DIR")
    parser.add_argument("--overwrite", action="store_true", help="replace what --output already holds")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(argv: list[str] | None = None) -> int:
    cfg, args = parse_args(argv, description="Pretrain BERT (MLM + NSP) on Meditations.", extra=_extra_options)
    if args.resume is None and args.output is None:
        print("error: pass --output DIR for a new run, or --resume DIR to continue one.", file=sys.stderr)
        return 2
    try:
        train(None if args.resume else cfg, args.resume or args.output, resume=args.resume is not None,
              overwrite=args.overwrite, progress=not args.no_progress)
    except KeyboardInterrupt:
        return 130
    except (ConfigError, CorpusError, PairError, ModelSourceError, CheckpointError, TrainingError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
