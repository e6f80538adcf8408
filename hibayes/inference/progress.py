"""Progress of a long sampling run: how far the chains are, and about how long is left.

The sampler is one compiled call, so nothing in Python sees it advance. For a fit
expected to sample longer than ``fit.progress_after_s``, the sampler is compiled
with a tick: every :func:`tick_every` iterations each chain calls the host
(``jax.debug.callback`` under ``lax.cond``, so the other iterations pay one integer
comparison). A tick is a module-level function that forwards to the run now being
reported, so the compiled sampler is reused from call to call (a sweep compiles it
once). The draws are identical with and without ticks.

The cost: JAX does not write executables that hold host callbacks to its persistent
compile cache, so a fresh process compiles the ticking sampler instead of loading it
(scripts/bench_fit.py prints both). Short fits therefore compile without ticks.

This module estimates; it never decides what is sampled.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["SamplingProgress", "expected_sampling_s", "reporting", "tick", "tick_every"]

#: Ticks per chain over a whole run (warmup + draws): progress in steps of 5%. Each
#: tick is a host callback that waits for the GIL; 100 per chain cost ~1.7 ms each
#: on case 1 of scripts/bench_fit.py (2 cores, 4 chains), 20 are enough for lines
#: at every 10%.
TICKS_PER_CHAIN = 20
#: A line at every 10% of the run, or after this long without one.
LINE_EVERY_FRACTION = 0.1
LINE_EVERY_S = 30.0

# A CPU cost model of one NUTS iteration, fitted to this project's benchmarks
# (README "Performance", 2 cores): ~12 us per leapfrog step of a small model
# (case 1: 20 rows, 4 x 2000 iterations, 15 steps, 0.7 s) plus ~53 ns per
# likelihood row and step (case 3 per row: 20k rows, 2 x 1000, 13 steps, 13.8 s).
_STEP_S = 12e-6
_ROW_STEP_S = 53e-9
_STEPS_PER_ITERATION = 20  # our reparametrised models take 10 to 20; deep ridges more


def tick_every(iterations: int) -> int:
    """Iterations between two ticks of one chain that runs ``iterations`` in all."""
    return max(1, int(iterations) // TICKS_PER_CHAIN)


def expected_sampling_s(
    iterations: int, chains: int, rows: int, chain_method: str, cores: int | None = None
) -> float:
    """A rough CPU estimate of the sampling time, to decide whether to show progress.

    :param iterations: warmup + draws per chain.
    :param rows: likelihood rows the sampler evaluates (distinct rows when collapsed).
    :param chain_method: ``parallel`` (chains share the cores), ``vectorized``
        (one batched chain) or ``sequential``.
    """
    cores = cores or os.cpu_count() or 1
    if chain_method == "parallel":
        rounds, width = math.ceil(chains / min(chains, cores)), 1
    elif chain_method == "vectorized":
        rounds, width = 1, chains
    else:
        rounds, width = chains, 1
    per_step = _STEP_S + _ROW_STEP_S * rows * width
    return iterations * rounds * _STEPS_PER_ITERATION * per_step


class SamplingProgress:
    """Counts the chains' ticks and says, now and then, how far they are.

    :param chains: number of chains.
    :param warmup: warmup iterations per chain.
    :param samples: draws per chain.
    :param say: where a line goes (the fit's stage logger).
    :param clock: seconds, monotonic (a test may pass its own).
    """

    def __init__(
        self,
        chains: int,
        warmup: int,
        samples: int,
        say: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.chains, self.warmup, self.samples = int(chains), int(warmup), int(samples)
        self.every = tick_every(self.warmup + self.samples)
        self.total = self.chains * (self.warmup + self.samples)
        self.say, self.clock = say, clock
        self.done = 0
        self.lines: list[str] = []
        self.error: BaseException | None = None
        self._start = clock()
        self._last_line = self._start
        self._last_fraction = 0.0
        self._lock = threading.Lock()

    def advance(self, chain_iterations: int) -> None:
        """Record ``chain_iterations`` more iterations; maybe say a line."""
        with self._lock:
            self.done = min(self.total, self.done + int(chain_iterations))
            fraction = self.done / self.total
            now = self.clock()
            due = (
                fraction - self._last_fraction >= LINE_EVERY_FRACTION - 1e-9
                or now - self._last_line >= LINE_EVERY_S
            )
            if not due or fraction >= 1.0:
                return
            self._last_line, self._last_fraction = now, fraction
            line = self.describe(fraction, now - self._start)
            self.lines.append(line)
        try:
            self.say(line)
        except BaseException as exc:  # noqa: BLE001 - raised after the run, not in XLA
            self.error = self.error or exc

    def describe(self, fraction: float, elapsed: float) -> str:
        """One progress line: how far, in which phase, time so far and left."""
        per_chain = fraction * (self.warmup + self.samples)
        if per_chain <= self.warmup:
            phase = f"warmup {per_chain:.0f} of {self.warmup}"
        else:
            phase = f"draws {per_chain - self.warmup:.0f} of {self.samples}"
        left = elapsed * (1.0 - fraction) / fraction
        return (
            f"sampling {100 * fraction:.0f}% ({phase} per chain), "
            f"{elapsed:.0f} s so far, about {_duration(left)} left"
        )


def _duration(seconds: float) -> str:
    """``42 s``, ``3 min 20 s``, ``1 h 05 min``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


_CURRENT: SamplingProgress | None = None


def tick(chain_iterations: object) -> None:
    """The compiled sampler's host callback: forward to the run being reported."""
    progress = _CURRENT
    if progress is not None:
        progress.advance(int(chain_iterations))  # type: ignore[call-overload]


@contextmanager
def reporting(progress: SamplingProgress) -> Iterator[SamplingProgress]:
    """Send the ticks of the sampler calls made inside to ``progress``."""
    global _CURRENT
    _CURRENT = progress
    try:
        yield progress
    finally:
        _CURRENT = None
    if progress.error is not None:
        raise progress.error
