"""The loop's named parts: every part it marks is timed in a real run, and nothing depends on its function names."""

from __future__ import annotations

import time

import pytest

from benchmarks.time_to_quality import PartsMissing, check_parts
from helpers.config import get_profile
from helpers.parts import LOOP_PARTS, part, timed, timing
from helpers.train import train


def test_a_run_times_every_part_the_loop_marks(tmp_path):
    started = time.perf_counter()
    with timing() as timer:
        train(get_profile("tiny", epochs=1, wandb="disabled"), tmp_path / "run", progress_bar=True, verbose=False,
              track=False)  # fmt: skip
    wall = time.perf_counter() - started
    assert set(timer.seconds) == set(LOOP_PARTS), set(LOOP_PARTS) ^ set(timer.seconds)
    assert all(seconds > 0 for seconds in timer.seconds.values()), timer.seconds
    assert sum(timer.seconds.values()) <= wall  # each second counted once: nested parts go to the outer one
    check_parts(timer.seconds)  # what the benchmark checks passes


def test_a_part_the_loop_stops_marking_fails_the_benchmark_by_name():
    seconds = dict.fromkeys(LOOP_PARTS, 1.0)
    del seconds["backward"]
    with pytest.raises(PartsMissing, match=r"no longer marks 'backward': mark it in helpers/train.py"):
        check_parts(seconds)


def test_a_renamed_function_keeps_its_part():
    @part("checkpoint saves")
    def save():
        time.sleep(0.01)

    write_checkpoint = save  # renamed: the part travels with the function, not with a name looked up from outside
    del save
    with timing() as timer:
        write_checkpoint()
    assert set(timer.seconds) == {"checkpoint saves"} and timer.seconds["checkpoint saves"] >= 0.01


def test_a_part_inside_another_counts_toward_the_outer_one_only():
    with timing() as timer:
        with part("measurement (held-out and seen pairs)"):
            with part("forward"):
                time.sleep(0.01)
    assert set(timer.seconds) == {"measurement (held-out and seen pairs)"}


def test_timed_counts_the_wait_for_each_item_and_nothing_without_a_timer():
    def slow():
        for item in range(3):
            time.sleep(0.005)
            yield item

    with timing() as timer:
        assert list(timed("batches padded and masked", slow())) == [0, 1, 2]
    assert timer.seconds["batches padded and masked"] >= 0.015
    with part("forward"):  # no timer running: a mark does nothing
        pass
    assert list(timed("x", [1, 2])) == [1, 2]
