"""The training loop's named parts, timed only when someone asks: where a run's seconds go (``make bench``).

The loop marks each part where it happens, ``with part("backward"):`` around a block or ``@part("measurement")``
on a function, so nothing outside the loop needs to know its function names. With no timer running a mark costs one
check; inside ``with timing() as timer:`` each part's seconds add up in ``timer.seconds``. A part inside another
(the forward passes of the measurement) counts once, toward the outer one.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import ContextDecorator, contextmanager

# Every part helpers/train.py marks, in the order a step meets them. The benchmark checks that a run timed each one,
# so a part the loop stops marking fails there, by name, instead of silently reading 0.
LOOP_PARTS = (
    "setup (data, tokenizer, model, baselines)",
    "each epoch's pairs drawn and tokenized",
    "batches padded and masked",
    "forward",
    "backward",
    "optimizer step (clipping, AdamW, schedule)",
    "logging (step metrics, W&B)",
    "progress bar",
    "measurement (held-out and seen pairs)",
    "checkpoint saves",
    "the end (final save, read-out)",
)


class PartTimer:
    """Seconds per part, summed over a run; a part opened inside another is left to the outer one."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._open: list[tuple[str, float]] = []  # the outermost open part and when it started, then inner ones

    def enter(self, name: str) -> None:
        self._open.append((name, time.perf_counter()))

    def exit(self) -> None:
        name, started = self._open.pop()
        if not self._open:
            self.seconds[name] += time.perf_counter() - started


_timer: PartTimer | None = None  # the running timer, if any


class part(ContextDecorator):  # lower case: it reads like a function where the loop uses it
    """Mark a block (``with part(name):``) or a function (``@part(name)``) as one of the loop's parts."""

    def __init__(self, name: str):
        self.name = name

    def __enter__(self) -> None:
        if _timer is not None:
            _timer.enter(self.name)

    def __exit__(self, *exc) -> None:
        if _timer is not None:
            _timer.exit()


def timed(name: str, items: Iterable) -> Iterator:
    """``items`` one by one, the time each takes to arrive counted as part ``name`` (a DataLoader's batches, say)."""
    iterator = iter(items)
    while True:
        with part(name):
            try:
                item = next(iterator)
            except StopIteration:
                return
        yield item


@contextmanager
def timing() -> Iterator[PartTimer]:
    """Time every marked part while the block runs: ``with timing() as timer: train(...)``, then ``timer.seconds``."""
    global _timer
    outer, _timer = _timer, PartTimer()
    try:
        yield _timer
    finally:
        _timer = outer
