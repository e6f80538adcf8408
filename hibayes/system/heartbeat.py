"""Progress lines for a stage that runs long: silent when it is quick.

A fit at tens of thousands of categories spends minutes after sampling in
stages that print nothing of their own (summaries, LOO, writing ``idata.nc``,
plots). :func:`stage` says, from a timer thread, that a stage is still running
once it has taken ``after_s`` seconds, then every ``every_s`` seconds, and how
long it took when it ends; a stage shorter than ``after_s`` prints nothing.
The callback is called from that thread, so it must be thread-safe (logging is).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["AFTER_S", "stage"]

#: A stage running longer than this says so.
AFTER_S = 10.0


@contextmanager
def stage(
    name: str,
    say: Callable[[str], None],
    after_s: float = AFTER_S,
    every_s: float = 30.0,
) -> Iterator[None]:
    """Run the body as the stage ``name``; past ``after_s`` seconds, say so.

    :param name: what the stage does, e.g. ``"writing idata.nc (1.2 GB)"``.
    :param say: where the lines go (thread-safe).
    :param after_s: seconds before the first line.
    :param every_s: seconds between the lines after that.
    """
    start = time.perf_counter()
    done = threading.Event()

    def watch() -> None:
        wait = after_s
        while not done.wait(wait):
            say(f"{name}: still running, {time.perf_counter() - start:.0f} s so far")
            wait = every_s

    watcher = threading.Thread(target=watch, name=f"stage: {name}", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()
        elapsed = time.perf_counter() - start
        if elapsed >= after_s:
            say(f"{name}: done in {elapsed:.1f} s")
