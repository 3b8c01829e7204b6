"""The training loop: BertForPreTraining with AdamW, warm-up, clipping and validation, through Accelerate.

python -m helpers.train --profile default --output runs/default
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm
from transformers import AutoTokenizer, BertForPreTraining, get_scheduler, set_seed

from helpers import baselines as tables  # its tables are read at each call: an entry added later is seen
from helpers.baselines import WITH_MEMORY, TrainingText, count_baselines, scores
from helpers.checkpoint import (
    CheckpointError,
    Progress,
    Resume,
    check_output_dir,
    interrupted,
    is_checkpoint,
    load_resume,
    recover,
    rng_state,
    run_lock,
    save_checkpoint,
    set_rng_state,
)
from helpers.config import LR_SCHEDULES, Config, ConfigError, parse_args
from helpers.corpus import CorpusError
from helpers.dataset import (
    MeditationsDataset,
    PreparedData,
    make_loader,
    padding_counts,
    prepare_data,
    validation_batches,
)
from helpers.inference import nsp_probabilities, nsp_readout
from helpers.masking import IGNORE_INDEX
from helpers.memory import MEMORY_FILE, ContextCounts, mix
from helpers.model import PretrainingModel, load_model
from helpers.pairs import IS_RANDOM, LABEL_NAMES, PairError
from helpers.parts import part, timed
from helpers.report import SEEN, as_json, format_baselines, format_table, headline, seen_headline
from helpers.tokens import ModelSourceError, check_max_length
from helpers.tracking import Tracker

# Training pairs measured every epoch beside the held-out ones (epoch 1's first): enough for a curve of what the model
# memorised, at half the cost of as many as the 526 held-out pairs (each epoch's measurement is time not training).
SEEN_PAIRS = 256


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
    seconds: float = 0.0  # this call's training; final["train_seconds"] adds what a resumed run trained before
    wandb_run: Path | None = None


@dataclass
class Throughput:
    """Pairs and real tokens since the last W&B log, and real tokens per position over the whole run."""

    since: float = field(default_factory=time.perf_counter)
    pairs: int = 0
    tokens: int = 0
    real_tokens: int = 0
    positions: int = 0

    def add(self, batch: dict[str, torch.Tensor]) -> None:
        real, positions = padding_counts(batch)
        self.pairs += batch["input_ids"].shape[0]
        self.tokens += real
        self.real_tokens += real
        self.positions += positions

    def rates(self) -> dict[str, float]:
        """Pairs and real tokens per second since the last call, for W&B; the next window starts now."""
        now = time.perf_counter()
        elapsed = max(now - self.since, 1e-9)
        rates = {"train/sequences_per_second": self.pairs / elapsed, "train/tokens_per_second": self.tokens / elapsed}
        self.since, self.pairs, self.tokens = now, 0, 0
        return rates

    def padding_efficiency(self) -> float | None:
        """Real tokens / positions of the training batches (None before the first step)."""
        return round(self.real_tokens / self.positions, 4) if self.positions else None


def mixed_precision(cfg: Config) -> str:
    """'auto' -> bf16 on a GPU that supports it, fp16 on other GPUs, off on CPU and Apple MPS."""
    if cfg.mixed_precision != "auto":
        return cfg.mixed_precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


def parameter_path(name: str) -> str:
    """'nsp' (pooler, NSP head), 'embeddings' (word embeddings, tied to the MLM output, and its bias) or 'body'."""
    if "pooler" in name or "seq_relationship" in name:
        return "nsp"
    if "word_embeddings" in name or name.endswith("predictions.bias"):
        return "embeddings"
    return "body"


def make_optimizer(model: torch.nn.Module, cfg: Config, device: torch.device | None = None) -> torch.optim.AdamW:
    """AdamW with weight decay on weight matrices only (not biases or LayerNorm), as in BERT.

    The pooler and NSP head may have a learning rate and weight decay of their own (--nsp-lr, --nsp-weight-decay),
    and the word embeddings with the MLM output bias a learning rate of their own (--embedding-lr).
    """
    groups: dict[tuple[str, bool], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():  # a tied weight (word embeddings = MLM output) is listed once
        if param.requires_grad:
            groups.setdefault((parameter_path(name), param.ndim >= 2 and "LayerNorm" not in name), []).append(param)
    lrs = {"nsp": cfg.nsp_lr or cfg.lr, "embeddings": cfg.embedding_lr or cfg.lr, "body": cfg.lr}
    decay = {"nsp": cfg.weight_decay if cfg.nsp_weight_decay is None else cfg.nsp_weight_decay}
    params = [
        {"params": group, "lr": lrs[path], "weight_decay": decay.get(path, cfg.weight_decay) if decays else 0.0}
        for (path, decays), group in groups.items()
    ]
    # The fused kernel updates every tensor in one pass: for the default profile's 1M parameters on a CPU it
    # took 0.7 ms a step against 6.5 ms for the plain loop, a seventh of the whole step.
    fused = (device or next(model.parameters()).device).type in ("cpu", "cuda")
    return torch.optim.AdamW(params, lr=cfg.lr, fused=fused or None)


@torch.inference_mode()
def evaluate(
    model: PretrainingModel,
    batches: list[dict[str, torch.Tensor]],
    accelerator: Accelerator,
    frequent: torch.Tensor,
    memory: ContextCounts | None = None,
    memory_strength: float = 0.5,
) -> dict[str, float]:
    """Validation metrics: every accuracy of ACCURACIES, both losses, and the share answered "B is random".

    MLM is scored on the batches' masked pairs; NSP on the same pairs as written (every [MASK] put back), which is
    what the demo and ``Predictor`` read: one NSP figure for one question. ``frequent``: the split's token ids. With a
    ``memory``, the MLM accuracies of the model's answer mixed with the table's too, as with_memory_<key>.
    """
    was_training = model.training
    model.eval()  # dropout off
    answers = {task: ([], []) for task in ("mlm", "nsp", "with_memory")}  # top guesses and the truth, batch by batch
    losses = {"mlm": 0.0, "nsp": 0.0}
    for batch in batches:
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        with accelerator.autocast():
            out = model(**batch)
            clean = batch["input_ids"].where(batch["labels"] == IGNORE_INDEX, batch["labels"])  # (batch, seq_len)
            nsp = model(**batch | {"input_ids": clean, "labels": torch.full_like(clean, IGNORE_INDEX)})
        answers["mlm"][0].append(out["mlm_logits"].argmax(-1))  # (n_masked,): the top guess at each [MASK]
        answers["mlm"][1].append(out["mlm_labels"])  # (n_masked,): the hidden token
        answers["nsp"][0].append(nsp["nsp_logits"].argmax(-1))  # (batch,): 0 = "B follows A", 1 = "B is random"
        answers["nsp"][1].append(batch["next_sentence_label"].view(-1))  # (batch,)
        if memory is not None:  # the table's answer at the same [MASK]s, in the same (row-major) order
            table = memory.probabilities(batch["input_ids"], batch["labels"] != IGNORE_INDEX)
            mixed = mix(out["mlm_logits"].float().softmax(-1), table, strength=memory_strength)  # (n_masked, vocab)
            answers["with_memory"][0].append(mixed.argmax(-1))
            answers["with_memory"][1].append(out["mlm_labels"])
        losses["mlm"] += out["mlm_loss"].item() * out["mlm_labels"].numel()  # token-weighted, as one big batch
        losses["nsp"] += nsp["nsp_loss"].item() * batch["next_sentence_label"].numel()
    model.train(was_training)
    answers = {task: (torch.cat(guesses), torch.cat(truth)) for task, (guesses, truth) in answers.items() if truth}
    n = {task: max(len(truth), 1) for task, (_, truth) in answers.items()}
    mlm_loss = losses["mlm"] / n["mlm"]
    with_memory = {"mlm": answers.pop("with_memory")} if memory is not None else {}
    return (
        scores(answers, frequent)
        | scores(with_memory, frequent, prefix=WITH_MEMORY)
        | {
            "mlm_loss": mlm_loss,
            "mlm_perplexity": math.exp(min(mlm_loss, 50.0)),
            "nsp_loss": losses["nsp"] / n["nsp"],
            "nsp_answered_random": (answers["nsp"][0] == IS_RANDOM).sum().item() / n["nsp"],
        }
    )


@dataclass
class Run:
    """What the loop works on, built once by ``start_run``."""

    cfg: Config
    output: Path  # the checkpoint folder every save replaces
    accelerator: Accelerator
    data: PreparedData
    model: PretrainingModel
    optimizer: torch.optim.Optimizer
    scheduler: Any
    val_batches: list[dict[str, torch.Tensor]]
    seen_batches: list[dict[str, torch.Tensor]]  # epoch 1's first training pairs, masked as the validation pairs
    frequent: torch.Tensor  # (FREQUENT_TOKENS,) ids: MLM accuracy is also measured on them and on the rest
    memory: ContextCounts  # the training paragraphs' context counts: a baseline, and the model's memory beside it
    total_steps: int
    mlm_only_steps: int  # NSP joins the loss after these steps
    tracker: Tracker
    say: Callable[..., None]  # print on the main process, or nothing when not verbose
    started: float  # time.perf_counter() at the start, less the seconds a resumed run trained before
    saved_rng: dict[str, Any] | None  # a resumed run's RNG state, until the loop restores it

    def clock(self) -> float:
        """Seconds trained so far, with what a resumed run trained before."""
        return time.perf_counter() - self.started

    def restore_rng(self) -> None:
        """A resumed run: the random state (dropout's) back where it stood at the save, once."""
        if self.saved_rng is not None:
            set_rng_state(self.saved_rng)
            self.saved_rng = None


def train(
    cfg: Config | None,
    output: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress_bar: bool = True,
    track: bool = True,
    verbose: bool = True,
    data: PreparedData | None = None,
    on_step: Callable[[dict[str, float]], None] | None = None,
    on_epoch: Callable[[dict[str, float], BertForPreTraining], None] | None = None,
) -> TrainResult:
    """Train ``cfg`` and save to ``output``; ``resume=True`` continues the checkpoint in ``output``.

    ``on_step`` is called with each step's metrics; ``on_epoch`` with each epoch's row and the model in eval mode
    (to ask it fill-mask questions, say). Raising KeyboardInterrupt in either behaves like Ctrl-C: a resumable
    checkpoint is saved.
    """
    output = Path(output)
    with run_lock(output):
        run, result, progress = start_run(cfg, output, resume, overwrite, track, verbose, data)
        throughput, first_epoch, seconds_before = Throughput(), progress.epoch, progress.seconds
        try:
            while progress.epoch < run.cfg.epochs and progress.global_step < run.total_steps:
                loader = epoch_loader(run, progress.epoch)  # this epoch's pairs, batched and masked as they come
                bar = epoch_bar(run, len(loader), progress, progress_bar)
                run.model.train()  # dropout on
                run.restore_rng()  # a resumed run only
                for index, batch in timed("batches padded and masked", enumerate(loader)):
                    if index < progress.batches_done:
                        continue  # resume: trained on before the stop (drawn all the same, so the masks after match)
                    out = train_step(run, batch, progress.global_step)
                    progress.step(index + 1)
                    step_metrics = log_step(run, throughput, batch, out, progress, len(loader))
                    result.history.append(step_metrics)
                    if on_step is not None:
                        on_step(step_metrics)
                    show_step(bar, step_metrics)
                    if progress.global_step >= run.total_steps:
                        break
                bar.close()
                end_epoch(run, progress, result, header=progress.epoch == first_epoch, on_epoch=on_epoch)
        except KeyboardInterrupt:
            stopped(run, progress, result)
            raise
        finish(run, progress, result, throughput)
        result.seconds = progress.seconds - seconds_before
        return result


def train_step(run: Run, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
    """One optimizer step on one batch: forward, backward, clipping, AdamW, the schedule; the model's outputs."""
    # MLM alone first: NSP rides on what MLM builds, and from step 0 it slows MLM (docs/experiments.md).
    nsp_weight = run.cfg.nsp_weight if step >= run.mlm_only_steps else 0.0
    with part("forward"):
        # batch: input_ids, token_type_ids, attention_mask, labels (batch, seq); next_sentence_label (batch,)
        out = run.model(**batch, nsp_weight=nsp_weight)  # out["loss"] = mlm_loss + nsp_weight * nsp_loss
    check_finite(out["loss"], step + 1, run.output)
    with part("backward"):
        run.accelerator.backward(out["loss"])  # d loss / d parameter, into each .grad
    with part("optimizer step (clipping, AdamW, schedule)"):
        run.accelerator.clip_grad_norm_(run.model.parameters(), run.cfg.max_grad_norm)
        run.optimizer.step()
        run.scheduler.step()  # the learning rate for the next step
        run.optimizer.zero_grad(set_to_none=True)
    return out


def stopped(run: Run, progress: Progress, result: TrainResult) -> None:
    """Ctrl-C (or KeyboardInterrupt from a callback): save a resumable checkpoint where the loop stands."""
    progress.seconds = run.clock()  # progress already says where to go on: mid-epoch, or after an epoch's row
    save(run, progress, result)
    run.say(f"\nInterrupted: a resumable checkpoint is in {run.output}; continue with --resume {run.output}.")
    run.tracker.finish()


@part("measurement (held-out and seen pairs)")
def measure(run: Run) -> tuple[dict[str, float], dict[str, float]]:
    """The validation metrics, and the same accuracies and MLM loss on SEEN_PAIRS training pairs.

    Kept in each epoch's row as seen_<key> ("seen": measured on text the model trained on); the gap to the held-out
    figure is what was memorised.
    """
    model = run.accelerator.unwrap_model(run.model)
    seen = evaluate(model, run.seen_batches, run.accelerator, run.frequent)
    kept = ("mlm_loss", *(a.key for a in tables.ACCURACIES))
    # Held out, the model with its memory beside it too (on seen pairs the table has counted the very text).
    held_out = evaluate(model, run.val_batches, run.accelerator, run.frequent, run.memory, run.cfg.memory_strength)
    return held_out, {key: seen[key] for key in kept}


def end_epoch(
    run: Run,
    progress: Progress,
    result: TrainResult,
    header: bool,
    on_epoch: Callable[[dict[str, float], BertForPreTraining], None] | None,
) -> None:
    """The epoch's row: measured, logged, printed and handed to ``on_epoch``; then the epoch's checkpoint."""
    held_out, seen = measure(run)
    progress.seconds = run.clock()  # after the measurement, as the epoch's rows always counted
    row = {
        "epoch": progress.epoch + 1,
        "step": progress.global_step,
        "seconds": round(progress.seconds, 1),
        **held_out,
        **{SEEN + key: value for key, value in seen.items()},
    }
    result.epochs.append(row)
    progress.end_epoch()  # the row is in: a stop from here on (in on_epoch, say) continues at the next epoch
    # The baselines go beside every epoch's metrics, so W&B draws them as flat lines in the same charts.
    run.tracker.log(
        {f"val/{k}": v for k, v in (held_out | result.baselines).items()} | {f"seen/{k}": v for k, v in seen.items()},
        step=progress.global_step,
    )
    run.say(format_table([row], header=header))  # the header once per call of train()
    if on_epoch is not None:
        call_on_epoch(run, on_epoch, row)
    save(run, progress, result)


def call_on_epoch(
    run: Run, on_epoch: Callable[[dict[str, float], BertForPreTraining], None], row: dict[str, float]
) -> None:
    """``on_epoch(row, model)`` with the model in eval mode; the loop switches it back to train() next epoch."""
    state = rng_state()
    try:
        on_epoch(dict(row), run.accelerator.unwrap_model(run.model).stock.eval())
    finally:
        # Whatever the callback draws (sampling, dropout of its own), training's random streams go on untouched.
        set_rng_state(state)


def epoch_bar(run: Run, total: int, progress: Progress, show: bool) -> tqdm:
    """The epoch's progress bar (on the main process), redrawn once a second at most."""
    # In a notebook each redraw is a message to the frontend. nbval reads them only once the cell has ended, and past
    # ZMQ's high-water mark (1,000 messages) the newest are dropped, the kernel's final "idle" among them: a long
    # cell that redrew at every step then failed with "Timeout of 5 seconds exceeded waiting for output".
    return tqdm(
        total=total,
        initial=progress.batches_done,
        desc=f"epoch {progress.epoch + 1}/{run.cfg.epochs}",
        mininterval=1.0,
        dynamic_ncols=True,
        disable=not (show and run.accelerator.is_main_process),
    )


@part("progress bar")
def show_step(bar: tqdm, step_metrics: dict[str, float]) -> None:
    """One step on the bar, with the running losses (shown at its next redraw)."""
    bar.update()
    losses = {
        name: f"{step_metrics[key]:.3f}" for name, key in (("loss", "loss"), ("mlm", "mlm_loss"), ("nsp", "nsp_loss"))
    }
    bar.set_postfix(losses, refresh=False)


@part("setup (data, tokenizer, model, baselines)")
def start_run(
    cfg: Config | None,
    output: Path,
    resume: bool,
    overwrite: bool,
    track: bool,
    verbose: bool,
    data: PreparedData | None,
) -> tuple[Run, TrainResult, Progress]:
    """Data, model, optimizer, schedule, validation batches and baselines; the Progress the run starts from."""
    if resume:
        saved_cfg, saved = load_resume(output)  # the one read of a saved run's state
        cfg = cfg or saved_cfg
    else:
        check_output_dir(output, overwrite)
        saved = Resume(Progress())  # epoch 0, nothing trained yet
    # With no GPU, say so: only then does Accelerate turn torchrun's ranks into a gloo process group.
    on_cpu = not torch.cuda.is_available() and not torch.backends.mps.is_available()
    accelerator = Accelerator(mixed_precision=mixed_precision(cfg), cpu=on_cpu)
    say = accelerator.print if verbose else (lambda *a, **k: None)
    say(
        f"Profile '{cfg.profile}' on {accelerator.device} (mixed precision: {accelerator.mixed_precision}, "
        f"processes: {accelerator.num_processes})\n{cfg.describe()}"
    )
    set_seed(cfg.seed)  # one seed: pairs, masks, initialisation and data order
    if data is None:
        data = prepare_data(cfg, tokenizer=AutoTokenizer.from_pretrained(output) if resume else None)
    # Building the measurement batches and counting the training text draw nothing from the global RNG, so the model
    # below starts from the same weights as load_model right after set_seed (record.py and notebook 04 rely on it).
    val_batches, seen_batches, text = measurement_batches(data, cfg)
    stock = (
        BertForPreTraining.from_pretrained(output, use_safetensors=True)
        if resume
        else load_model(cfg, data.tokenizer, text.unigram)
    )
    check_max_length(cfg.max_length, data.tokenizer, stock.config.max_position_embeddings)
    say(data.summary())
    base = count_baselines(text, val_batches, data.val_pairs)
    say("Baselines on the same validation masks and pairs:\n" + format_baselines(base))
    steps_per_epoch = math.ceil(len(text.pairs) / (cfg.batch_size * accelerator.num_processes))
    total_steps = min(cfg.max_steps or steps_per_epoch * cfg.epochs, steps_per_epoch * cfg.epochs)
    model, optimizer, scheduler = optimisation(stock, cfg, accelerator, total_steps, saved if resume else None)
    if resume:
        say(f"Resuming {output} at epoch {saved.progress.epoch + 1}, step {saved.progress.global_step}.")
    tracker = Tracker(cfg, enabled=track and accelerator.is_main_process)
    result = TrainResult(output, saved.history, saved.epochs, baselines=base, wandb_run=tracker.run_path)
    run = Run(
        cfg, output, accelerator, data, model, optimizer, scheduler, val_batches, seen_batches,
        text.frequent.to(accelerator.device), text.memory, total_steps, round(cfg.mlm_only_ratio * total_steps),
        tracker, say, started=time.perf_counter() - saved.progress.seconds, saved_rng=saved.rng,
    )  # fmt: skip
    return run, result, saved.progress


def optimisation(
    stock: BertForPreTraining, cfg: Config, accelerator: Accelerator, total_steps: int, saved: Resume | None
) -> tuple[PretrainingModel, torch.optim.Optimizer, Any]:
    """The model the loop trains, AdamW and the schedule, prepared by Accelerate (with a resumed run's state)."""
    model = PretrainingModel(stock, cfg.nsp_dropout)
    optimizer = make_optimizer(model, cfg, accelerator.device)
    # wsd: at the peak after the warm-up, then a linear fall to 0 over the last decay_ratio of the steps.
    wsd = {"num_decay_steps": int(cfg.decay_ratio * total_steps), "decay_type": "linear"}
    scheduler = get_scheduler(
        LR_SCHEDULES[cfg.lr_schedule],
        optimizer,
        num_warmup_steps=int(cfg.warmup_ratio * total_steps),
        num_training_steps=total_steps,
        scheduler_specific_kwargs=wsd if cfg.lr_schedule == "wsd" else None,
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    if saved is not None:
        optimizer.load_state_dict(saved.optimizer)
        scheduler.load_state_dict(saved.scheduler)
    return model, optimizer, scheduler


def measurement_batches(data: PreparedData, cfg: Config) -> tuple[list[dict], list[dict], TrainingText]:
    """The fixed-mask batches of the validation pairs and of SEEN_PAIRS training pairs; the baselines' training text."""
    val_batches = validation_batches(data, cfg)
    text = data.training_text(cfg)  # its pairs are epoch 1's; every epoch draws as many
    # The masks come from the collator's own seeded generator: building these draws nothing from the global RNG.
    seen_batches = validation_batches(data, cfg, text.pairs[:SEEN_PAIRS])
    return val_batches, seen_batches, text


@part("each epoch's pairs drawn and tokenized")
def epoch_loader(run: Run, epoch: int):
    """This epoch's pairs in batches; each process gets its share, with masks of its own."""
    cfg = run.cfg
    train_set = MeditationsDataset.from_pairs(run.data.tokenizer, run.data.train_pairs(cfg, epoch), cfg.max_length)
    return shuffled_batches(run, train_set, epoch)


def shuffled_batches(run: Run, train_set: MeditationsDataset, epoch: int):
    """An epoch's batches of ``train_set``: its order and masks drawn from the seed and the epoch, prepared."""
    cfg, accelerator = run.cfg, run.accelerator
    # Every process must see the same order (Accelerate then hands each its own share of the batches).
    seed = cfg.seed + 7919 * epoch
    pad_multiple = 8 if accelerator.mixed_precision != "no" else None  # tensor cores like multiples of 8
    loader = make_loader(
        train_set,
        run.data.tokenizer,
        cfg,
        shuffle=True,
        seed=seed,
        pad_to_multiple_of=pad_multiple,
        mask_seed=seed + 104729 * accelerator.process_index,
    )
    return accelerator.prepare(loader)


def check_finite(loss: torch.Tensor, step: int, output: Path) -> None:
    """Stop with TrainingError when the loss is NaN or infinite: every step after it would be garbage."""
    if not torch.isfinite(loss).item():
        raise TrainingError(
            f"The loss became {loss.item()} at step {step}; training stopped and the last good "
            f"checkpoint in {output} (if any) is kept. Try a lower --lr or --mixed-precision no."
        )


@part("logging (step metrics, W&B)")
def log_step(
    run: Run,
    throughput: Throughput,
    batch: dict[str, torch.Tensor],
    out: dict[str, torch.Tensor],
    progress: Progress,
    batches_in_epoch: int,
) -> dict[str, float]:
    """The step's row of the history; every ``log_every`` steps also in W&B, with the throughput."""
    throughput.add(batch)
    step = progress.global_step
    step_metrics = {
        "step": step,
        "epoch": progress.epoch + progress.batches_done / batches_in_epoch,
        "loss": out["loss"].item(),
        "mlm_loss": out["mlm_loss"].item(),
        "nsp_loss": out["nsp_loss"].item(),
        "lr": run.scheduler.get_last_lr()[0],
    }
    if step % run.cfg.log_every == 0:
        run.tracker.log(
            {"train/" + k: v for k, v in step_metrics.items() if k != "step"} | throughput.rates(), step=step
        )
    return step_metrics


@part("checkpoint saves")
def save(run: Run, progress: Progress, result: TrainResult, final: dict[str, float] | None = None) -> None:
    """A whole checkpoint: the model, the metrics (accuracies beside their baselines), and where to resume from."""
    accelerator = run.accelerator
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return
    final = final or (result.epochs[-1] if result.epochs else {})
    metrics = {
        "epochs": result.epochs,
        "final": final,
        "beside_baselines": as_json(final),
        "baselines": result.baselines,
        "memory": {"file": MEMORY_FILE, "text_fingerprint": run.memory.text_fingerprint},  # what serving checks
        "history": result.history,
    }
    state = Resume(
        progress,
        rng_state(),
        run.optimizer.state_dict(),
        run.scheduler.state_dict(),
        result.history,
        result.epochs,
    )
    stock = accelerator.unwrap_model(run.model).stock
    # The memory is saved beside the weights, in the same whole-or-absent folder, checksummed with them.
    save_checkpoint(
        run.output,
        stock,
        run.data.tokenizer,
        run.cfg,
        metrics,
        state.state(),
        also=lambda f: run.memory.save(f / MEMORY_FILE),
    )


@part("the end (final save, read-out)")
def finish(run: Run, progress: Progress, result: TrainResult, throughput: Throughput) -> TrainResult:
    """The final metrics beside their baselines, the last checkpoint, and validation pairs read out."""
    accelerator = run.accelerator
    model = accelerator.unwrap_model(run.model)
    progress.seconds = run.clock()
    progress.epoch, progress.batches_done = run.cfg.epochs, 0  # finished (max_steps may end it early)
    # The last epoch's row holds the held-out figures and the same on training pairs (the gap is what was memorised).
    final = dict(result.epochs[-1])
    final.pop("epoch")
    final.update(result.baselines)
    final["train_seconds"] = round(progress.seconds, 1)  # a resumed run's seconds before the interrupt too
    final["padding_efficiency"] = throughput.padding_efficiency()
    # Evidence that every process trained: its optimizer steps, gathered from all ranks.
    steps = accelerator.gather(torch.tensor([progress.global_step], device=accelerator.device)).tolist()
    final["num_processes"] = accelerator.num_processes
    final["steps_per_process"] = steps
    result.final = final
    save(run, progress, result, final=final)
    if accelerator.is_main_process:
        read_out(run, model.stock.eval(), progress.global_step)
        run.tracker.summary({f"final/{k}": v for k, v in final.items()})
    run.tracker.finish()
    run.say(f"\n{headline(final)} ({progress.seconds:.0f} s).\n{seen_headline(final)}\nCheckpoint: {run.output}")
    return result


def read_out(run: Run, model: BertForPreTraining, step: int) -> None:
    """The first validation pair read out on the console, and the first eight with their verdicts in W&B."""
    tokenizer, max_length, examples = run.data.tokenizer, run.cfg.max_length, run.data.val_pairs[:8]
    first = examples[0]
    run.say(
        "\nOne validation pair, read out:\n"
        + nsp_readout(model, tokenizer, first.sentence_a, first.sentence_b, first.next_sentence_label, max_length)
    )
    probs = nsp_probabilities(model, tokenizer, [(p.sentence_a, p.sentence_b) for p in examples], max_length)  # (8, 2)
    run.tracker.table(
        "val/examples",
        ["sentence_a", "sentence_b", "true", "predicted", "p_follows"],
        [
            [
                p.sentence_a,
                p.sentence_b,
                LABEL_NAMES[p.next_sentence_label],
                LABEL_NAMES[int(row.argmax())],
                round(row[0].item(), 4),
            ]
            for p, row in zip(examples, probs)
        ],
        step=step,
    )


def ensure_trained(cfg: Config, output: str | Path, **kwargs: Any) -> Path:
    """Train ``cfg`` into ``output`` unless it already holds a finished run (an interrupted one is resumed)."""
    output = Path(output)
    recover(output)
    if not is_checkpoint(output):
        train(cfg, output, overwrite=True, **kwargs)
    elif interrupted(output):  # saved at an epoch's end, then stopped (a kernel interrupted): finish it
        train(None, output, resume=True, **kwargs)
    return output


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
        train(
            None if args.resume else cfg,
            args.resume or args.output,
            resume=args.resume is not None,
            overwrite=args.overwrite,
            progress_bar=not args.no_progress,
        )
    except KeyboardInterrupt:
        return 130
    except (ConfigError, CorpusError, PairError, ModelSourceError, CheckpointError, TrainingError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
