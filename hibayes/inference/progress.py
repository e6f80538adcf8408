"""Progress of a long sampling run: how far the chains are, and about how long is left.

The sampler advances the chains in chunks called from Python (:mod:`.chunks`);
after each chunk :meth:`SamplingProgress.advance` counts its iterations and, for
a fit expected to sample longer than ``fit.progress_after_s``, says a line now and
then. Short fits sample the same way and say nothing.

This module estimates; it never decides what is sampled.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable

__all__ = ["SamplingProgress", "expected_sampling_s"]

#: A line at every 10% of the run, or at the first chunk's end after this long
#: without one.
LINE_EVERY_FRACTION = 0.1
LINE_EVERY_S = 30.0

# A CPU cost model of one NUTS iteration, fitted to this project's benchmarks
# (README "Performance", 2 cores): ~12 us per leapfrog step of a small model
# (case 1: 20 rows, 4 x 2000 iterations, 15 steps, 0.7 s) plus ~53 ns per
# likelihood row and step (case 3 per row: 20k rows, 2 x 1000, 13 steps, 13.8 s).
_STEP_S = 12e-6
_ROW_STEP_S = 53e-9
_STEPS_PER_ITERATION = 20  # our reparametrised models take 10 to 20; deep ridges more


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
    """Counts the chains' iterations and says, now and then, how far they are.

    :param warmup: warmup iterations per chain.
    :param samples: draws per chain.
    :param say: where a line goes (the fit's stage logger).
    :param clock: seconds, monotonic (a test may pass its own).
    """

    def __init__(
        self,
        warmup: int,
        samples: int,
        say: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.warmup, self.samples = int(warmup), int(samples)
        self.total = self.warmup + self.samples
        self.say, self.clock = say, clock
        self.done = 0
        self.lines: list[str] = []
        self._start = clock()
        self._last_line = self._start
        self._last_fraction = 0.0

    def advance(self, iterations: int) -> None:
        """Record ``iterations`` more of every chain; maybe say a line."""
        self.done = min(self.total, self.done + int(iterations))
        fraction = self.done / self.total
        now = self.clock()
        due = (
            fraction - self._last_fraction >= LINE_EVERY_FRACTION - 1e-9
            or now - self._last_line >= LINE_EVERY_S
        )
        if not due or fraction >= 1.0:  # no line at 100%: the next stage's follows
            return
        self._last_line, self._last_fraction = now, fraction
        line = self.describe(fraction, now - self._start)
        self.lines.append(line)
        self.say(line)

    def describe(self, fraction: float, elapsed: float) -> str:
        """One progress line: how far, in which phase, time so far and left."""
        per_chain = fraction * self.total
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
