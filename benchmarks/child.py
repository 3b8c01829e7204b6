"""One measurement in a fresh process: forked from this one, so nothing it loads or leaks outlives it.

The benchmarks (benchmarks/run.py, benchmarks/time_to_quality.py) run every measurement this way: a fresh model,
optimizer and peak-memory counter each time, and no import cost.
"""

from __future__ import annotations

import multiprocessing
import traceback
from collections.abc import Callable
from typing import Any


def in_child(fn: Callable[..., Any], *fn_args: Any) -> dict:
    """Run ``fn(*fn_args)`` in a forked process and return its dict (or {"error": ...} if it failed)."""
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)

    def target() -> None:
        try:
            result = fn(*fn_args)
            send.send(result.to_dict() if hasattr(result, "to_dict") else result)
        except BaseException as err:  # noqa: BLE001 - reported to the parent, which records it
            send.send(
                {
                    "error": f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}",
                    "traceback": traceback.format_exc(),
                }
            )
        finally:
            send.close()

    # Named "MainProcess" because it is one: a standalone measuring process, not a DataLoader worker. The
    # seeded DataCollatorForLanguageModeling refuses to run in any process with another name.
    process = context.Process(target=target, name="MainProcess")
    process.start()
    send.close()  # the child holds its own copy; closing ours makes recv() see the child's death
    try:
        result = receive.recv()
    except EOFError:
        result = None
    process.join()
    if result is None:
        result = {"error": f"the measuring process died (exit code {process.exitcode}; killed for memory?)"}
    return result
