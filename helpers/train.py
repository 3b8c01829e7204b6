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
from transformers import BertForPreTraining, get_scheduler, set_seed

from helpers.baselines import MaskBaselines, OverlapBaseline
from helpers.checkpoint import (CheckpointError, check_output_dir, load_training_state, rng_state, run_lock,
                                save_checkpoint, set_rng_state)
from helpers.config import LR_SCHEDULES, Config, ConfigError, parse_args
from helpers.corpus import CorpusError
from helpers.dataset import MeditationsDataset, PreparedData, make_loader, padding_counts, prepare_data
from helpers.serving import Predictor
from helpers.model import PretrainingLosses, load_model
from helpers.pairs import LABEL_NAMES, PairError
from helpers.tokens import ModelSourceError, check_max_length
from helpers.tracking import Tracker

# mlm_accuracy_at_mask: share of the validation [MASK] positions (15%, every selected token a [MASK]) whose
# top guess is the hidden token, which is what fill-mask does.
METRICS = ("nsp_accuracy", "mlm_accuracy_at_mask", "mlm_loss", "mlm_perplexity", "nsp_loss")
# The same masks and pairs, guessed by counting (helpers.baselines): what the model must beat.
BASELINES = ("baseline_unigram", "baseline_neighbours", "baseline_word_overlap")


VAL_BATCH_SIZE = 64


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


def make_optimizer(model: torch.nn.Module, cfg: Config, device: torch.device | None = None) -> torch.optim.AdamW:
    """AdamW with weight decay on weight matrices only (not biases or LayerNorm), as in BERT.

    The pooler and NSP head may have a learning rate and weight decay of their own (--nsp-lr, --nsp-weight-decay).
    """
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            nsp_path = "pooler" in name or "seq_relationship" in name
            decays = param.ndim >= 2 and "LayerNorm" not in name
            groups.setdefault((nsp_path, decays), []).append(param)
    nsp_decay = cfg.weight_decay if cfg.nsp_weight_decay is None else cfg.nsp_weight_decay
    params = [{"params": group, "lr": (cfg.nsp_lr or cfg.lr) if nsp_path else cfg.lr,
               "weight_decay": (nsp_decay if nsp_path else cfg.weight_decay) if decays else 0.0}
              for (nsp_path, decays), group in groups.items()]
    # The fused kernel updates every tensor in one pass: for the default profile's 1M parameters on a CPU it
    # took 0.7 ms a step against 6.5 ms for the plain loop, a seventh of the whole step.
    fused = (device or next(model.parameters()).device).type in ("cpu", "cuda")
    return torch.optim.AdamW(params, lr=cfg.lr, fused=fused or None)


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


def memorised(final: dict[str, float]) -> str:
    """The same accuracies on training pairs (same masking), for the gap between seen and unseen text."""
    return (f"The same on training pairs (seen text; the gap above held-out is memorised): MLM accuracy at [MASK] "
            f"{final['train_mlm_accuracy_at_mask']:.3f}, NSP accuracy {final['train_nsp_accuracy']:.3f}")


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


@dataclass
class Run:
    """One training run: the objects the loop works on, and where it stands."""

    cfg: Config
    output: Path
    accelerator: Accelerator
    data: PreparedData
    losses: PretrainingLosses
    optimizer: torch.optim.Optimizer
    scheduler: Any
    val_batches: list[dict[str, torch.Tensor]]
    result: TrainResult
    tracker: Tracker
    total_steps: int
    mlm_only_steps: int  # NSP joins the loss after these steps
    saved: dict[str, Any]  # the training state a resumed run started from ({} for a new run)
    say: Callable[..., None]
    global_step: int = 0
    step_in_epoch: int = 0
    started: float = field(default_factory=time.perf_counter)
    real_tokens: int = 0  # padding efficiency of the training batches = real_tokens / positions
    positions: int = 0
    window: list[float] = field(default_factory=lambda: [time.perf_counter(), 0, 0])  # W&B throughput: start, pairs, tokens


def train(cfg: Config, output: str | Path, *, resume: bool = False, overwrite: bool = False,
          progress: bool = True, track: bool = True, verbose: bool = True, data: PreparedData | None = None,
          on_step: Callable[[dict[str, float]], None] | None = None) -> TrainResult:
    """Train ``cfg`` and save to ``output``; ``resume=True`` continues the checkpoint in ``output``.

    ``on_step`` is called with each step's record (step, epoch, losses, lr); raising KeyboardInterrupt
    there behaves like Ctrl-C: a resumable checkpoint is saved.
    """
    output = Path(output)
    with run_lock(output):
        run = start_run(cfg, output, resume, overwrite, track, verbose, data)
        epoch = run.saved.get("next_epoch", 0)
        try:
            for epoch in range(epoch, run.cfg.epochs):
                if run.global_step >= run.total_steps:
                    break
                train_epoch(run, epoch, progress, on_step)
                end_epoch(run, epoch)
        except KeyboardInterrupt:
            save(run, epoch, run.step_in_epoch)
            run.say(f"\nInterrupted: a resumable checkpoint is in {output}; continue with --resume {output}.")
            run.tracker.finish()
            raise
        return finish(run)


def start_run(cfg: Config | None, output: Path, resume: bool, overwrite: bool, track: bool, verbose: bool,
              data: PreparedData | None) -> Run:
    """Data, model, optimizer, schedule, validation batches and baselines; a resumed run's saved state."""
    saved: dict[str, Any] = {}
    if resume:
        saved_cfg, saved = load_training_state(output)
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
        data = prepare_data(cfg, tokenizer=_saved_tokenizer(output) if resume else None)
    model = BertForPreTraining.from_pretrained(output, use_safetensors=True) if resume else load_model(cfg, data.tokenizer)
    check_max_length(cfg.max_length, data.tokenizer, model.config.max_position_embeddings)
    say(data.summary())
    val_batches = validation_batches(data, cfg)
    base = baselines(data, cfg, val_batches)
    say("Baselines on the same validation masks and pairs: " + format_baselines(base))

    steps_per_epoch = math.ceil(len(data.train_pairs(cfg, 0)) / (cfg.batch_size * accelerator.num_processes))
    total_steps = steps_per_epoch * cfg.epochs if cfg.max_steps is None else min(cfg.max_steps, steps_per_epoch * cfg.epochs)
    losses = PretrainingLosses(model, cfg.nsp_dropout)
    optimizer = make_optimizer(losses, cfg, accelerator.device)
    scheduler = get_scheduler(LR_SCHEDULES[cfg.lr_schedule], optimizer, num_warmup_steps=int(cfg.warmup_ratio * total_steps),
                              num_training_steps=total_steps)
    losses, optimizer = accelerator.prepare(losses, optimizer)
    if resume:
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        say(f"Resuming {output} at epoch {saved['next_epoch'] + 1}, step {saved['global_step']}.")
    tracker = Tracker(cfg, enabled=track and accelerator.is_main_process)
    result = TrainResult(checkpoint=output, history=saved.get("history", []), epochs=saved.get("epochs", []),
                         baselines=base, wandb_run=tracker.run_path)
    return Run(cfg, output, accelerator, data, losses, optimizer, scheduler, val_batches, result, tracker, total_steps,
               round(cfg.mlm_only_ratio * total_steps), saved, say, global_step=saved.get("global_step", 0))


def validation_batches(data: PreparedData, cfg: Config, pairs: list | None = None) -> list[dict[str, torch.Tensor]]:
    """The validation pairs (or ``pairs``) in batches with fixed masks, every selected token a [MASK] (what fill-mask sees)."""
    val_set = MeditationsDataset.from_pairs(data.tokenizer, data.val_pairs if pairs is None else pairs, cfg.max_length)
    # A fixed batch size too: the masks then depend on the seed alone, so runs of any batch size compare.
    val_cfg = dataclasses.replace(cfg, mlm_probability=cfg.val_mlm_probability, mask_replace_prob=1.0,
                                  random_replace_prob=0.0, batch_size=VAL_BATCH_SIZE)
    return list(make_loader(val_set, data.tokenizer, val_cfg, shuffle=False, seed=cfg.seed))


def epoch_loader(run: Run, epoch: int):
    """This epoch's pairs in batches; each process gets its share, with masks of its own."""
    cfg, accelerator = run.cfg, run.accelerator
    train_set = MeditationsDataset.from_pairs(run.data.tokenizer, run.data.train_pairs(cfg, epoch), cfg.max_length)
    # Every process must see the same order (Accelerate then hands each its own share of the batches).
    seed = cfg.seed + 7919 * epoch
    pad_multiple = 8 if accelerator.mixed_precision != "no" else None  # tensor cores like multiples of 8
    return accelerator.prepare(make_loader(train_set, run.data.tokenizer, cfg, shuffle=True, seed=seed,
                                           pad_to_multiple_of=pad_multiple,
                                           mask_seed=seed + 104729 * accelerator.process_index))


def train_epoch(run: Run, epoch: int, progress: bool, on_step: Callable[[dict[str, float]], None] | None) -> None:
    """One pass over the epoch's batches: forward, both losses, backward, clip, step."""
    cfg, accelerator, losses, optimizer = run.cfg, run.accelerator, run.losses, run.optimizer
    loader = epoch_loader(run, epoch)
    first = epoch == run.saved.get("next_epoch", 0)
    skip = run.saved.get("next_step", 0) if first else 0  # batches a resumed run already trained on
    # A resumed run restores the global RNG (dropout) where it stood at the checkpoint: before the loader
    # starts at an epoch boundary, once the skipped batches are drawn mid-epoch.
    pending_rng = run.saved["rng"] if first and skip else None
    if first and run.saved and not skip:
        set_rng_state(run.saved["rng"])
    run.step_in_epoch = skip
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", dynamic_ncols=True,
               disable=not (progress and accelerator.is_main_process))
    losses.train()  # dropout on
    for index, batch in enumerate(bar):
        if index < skip:  # drawn (so the mask generator advances as before) but already trained on
            continue
        if pending_rng is not None:
            set_rng_state(pending_rng)
            pending_rng = None
        # MLM first: NSP rides on what MLM builds, and from step 0 it holds MLM at the unigram guess.
        nsp_weight = cfg.nsp_weight if run.global_step >= run.mlm_only_steps else 0.0
        # batch: input_ids, token_type_ids, attention_mask, labels (batch, seq_len); next_sentence_label (batch,)
        out = losses(**batch, nsp_weight=nsp_weight)
        loss = out["loss"]  # mlm_loss + nsp_weight * nsp_loss
        if not torch.isfinite(loss).item():
            raise TrainingError(f"The loss became {loss.item()} at step {run.global_step + 1}; training stopped and the "
                                f"last good checkpoint in {run.output} (if any) is kept. Try a lower --lr or "
                                f"--mixed-precision no.")
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(losses.parameters(), cfg.max_grad_norm)
        optimizer.step()
        run.scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        run.global_step += 1
        run.step_in_epoch += 1
        record = log_step(run, batch, out, loss, epoch + run.step_in_epoch / max(len(loader), 1))
        if on_step is not None:
            on_step(record)
        bar.set_postfix(loss=f"{record['loss']:.3f}", mlm=f"{record['mlm_loss']:.3f}", nsp=f"{record['nsp_loss']:.3f}")
        if cfg.max_steps is not None and run.global_step >= run.total_steps:
            break
    bar.close()
    if pending_rng is not None:  # the interrupt came after the epoch's last step
        set_rng_state(pending_rng)


def log_step(run: Run, batch: dict[str, torch.Tensor], out: dict[str, torch.Tensor], loss: torch.Tensor,
             epoch: float) -> dict[str, float]:
    """The step's record in the history, and every ``log_every`` steps in W&B with the throughput."""
    real, positions = padding_counts(batch)
    run.real_tokens += real
    run.positions += positions
    record = {"step": run.global_step, "epoch": epoch, "loss": loss.item(), "mlm_loss": out["mlm_loss"].item(),
              "nsp_loss": out["nsp_loss"].item(), "lr": run.scheduler.get_last_lr()[0]}
    run.result.history.append(record)
    window = run.window
    window[1] += batch["input_ids"].shape[0]
    window[2] += real
    if run.global_step % run.cfg.log_every == 0:
        elapsed = max(time.perf_counter() - window[0], 1e-9)
        run.tracker.log({"train/" + k: v for k, v in record.items() if k != "step"}
                        | {"train/sequences_per_second": window[1] / elapsed,
                           "train/tokens_per_second": window[2] / elapsed}, step=run.global_step)
        run.window = [time.perf_counter(), 0, 0]
    return record


def end_epoch(run: Run, epoch: int) -> None:
    """Validate, log and print the epoch's row, and save a resumable checkpoint."""
    metrics = evaluate(run.accelerator.unwrap_model(run.losses), run.val_batches, run.accelerator)
    seconds = run.saved.get("seconds", 0.0) + time.perf_counter() - run.started  # this run's and before
    run.result.epochs.append({"epoch": epoch + 1, "step": run.global_step, "seconds": round(seconds, 1), **metrics})
    # The baselines go beside every epoch's metrics, so W&B draws them as flat lines in the same charts.
    run.tracker.log({f"val/{k}": v for k, v in (metrics | run.result.baselines).items()}, step=run.global_step)
    # The header once, then one row per epoch (the bar above each row shows the epoch's progress).
    first = epoch == run.saved.get("next_epoch", 0)
    run.say(format_table(run.result.epochs[-1:], header=len(run.result.epochs) == 1 or first))
    save(run, epoch + 1, 0)


def save(run: Run, next_epoch: int, next_step: int, final: dict[str, float] | None = None) -> None:
    """A whole checkpoint: the model, the metrics, and the state a resumed run continues from."""
    accelerator, result = run.accelerator, run.result
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return
    metrics = {"epochs": result.epochs, "final": final or (result.epochs[-1] if result.epochs else {}),
               "baselines": result.baselines, "history": result.history}
    state = {"next_epoch": next_epoch, "next_step": next_step, "global_step": run.global_step, "epoch": next_epoch,
             "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(), "rng": rng_state(),
             "history": result.history, "epochs": result.epochs,
             "seconds": run.saved.get("seconds", 0.0) + time.perf_counter() - run.started}
    save_checkpoint(run.output, accelerator.unwrap_model(run.losses).model, run.data.tokenizer, run.cfg, metrics, state)


def finish(run: Run) -> TrainResult:
    """The final metrics beside their baselines, the last checkpoint, and one validation pair read out."""
    accelerator, result, cfg = run.accelerator, run.result, run.cfg
    result.seconds = time.perf_counter() - run.started
    model = accelerator.unwrap_model(run.losses)
    result.final = dict(result.epochs[-1]) if result.epochs else evaluate(model, run.val_batches, accelerator)
    result.final.pop("epoch", None)
    result.final.update(result.baselines)
    # The same measurement on as many training pairs: the gap to the held-out figures is what was memorised.
    seen = evaluate(model, validation_batches(run.data, cfg, run.data.train_pairs(cfg, 0)[:len(run.data.val_pairs)]),
                    accelerator)
    result.final.update({f"train_{key}": seen[key] for key in ("mlm_accuracy_at_mask", "nsp_accuracy")})
    result.final["train_seconds"] = round(result.seconds, 1)
    result.final["padding_efficiency"] = round(run.real_tokens / run.positions, 4) if run.positions else None
    # Evidence that every process trained: its optimizer steps, gathered from all ranks.
    steps = accelerator.gather(torch.tensor([run.global_step], device=accelerator.device)).tolist()
    result.final["num_processes"] = accelerator.num_processes
    result.final["steps_per_process"] = steps
    save(run, cfg.epochs, 0, final=result.final)
    if accelerator.is_main_process:
        predictor = Predictor(model.model, run.data.tokenizer, cfg.max_length)
        examples = run.data.val_pairs[:8]
        verdicts = predictor.predict_nsp_batch([(p.sentence_a, p.sentence_b) for p in examples])
        first = examples[0]
        run.say("\nOne validation pair, read out:\n" + nsp_readout(predictor, first.sentence_a, first.sentence_b,
                                                                  first.next_sentence_label))
        run.tracker.table("val/examples", ["sentence_a", "sentence_b", "true", "predicted", "p_follows"],
                          [[p.sentence_a, p.sentence_b, LABEL_NAMES[p.next_sentence_label], v.verdict,
                            round(v.probabilities[LABEL_NAMES[0]], 4)] for p, v in zip(examples, verdicts)],
                          step=run.global_step)
        run.tracker.summary({f"final/{k}": v for k, v in result.final.items()})
    run.tracker.finish()
    run.say(f"\n{headline(result.final)} ({result.seconds:.0f} s).\n{memorised(result.final)}\nCheckpoint: {run.output}")
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
