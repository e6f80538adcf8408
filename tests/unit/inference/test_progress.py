"""Long fits show progress with the time left; short ones one line per stage, as before.

The ticks come from inside the compiled sampler (hibayes.inference.progress): the
draws must be identical with and without them, a second fit must not compile again,
and the lines must say how far and how long is left.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from hibayes.inference import FitSettings, fit_model
from hibayes.inference.progress import SamplingProgress, expected_sampling_s
from hibayes.model import get_model

_COMPILES: list[str] = []
jax.monitoring.register_event_duration_secs_listener(
    lambda name, *a, **k: (
        _COMPILES.append(name)
        if name == "/jax/core/compile/backend_compile_duration"
        else None
    )
)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_lines_every_tenth_with_the_time_left():
    clock, said = Clock(), []
    progress = SamplingProgress(
        chains=2, warmup=100, samples=300, say=said.append, clock=clock
    )
    assert progress.every == 20 and progress.total == 800
    for _ in range(8):  # 2 chains x 4 ticks x 20 iterations = 160 of 800: 20%
        clock.now += 2.5
        progress.advance(progress.every)
    assert said == progress.lines
    assert len(said) == 2  # at 10% and 20%
    # 20% after 20 s: 80 s left; 20% of 400 iterations per chain is warmup 80 of 100.
    assert said[-1] == (
        "sampling 20% (warmup 80 of 100 per chain), 20 s so far, about 1 min 20 s left"
    )
    for _ in range(32):
        clock.now += 2.5
        progress.advance(progress.every)
    assert "draws 300 of 300" not in said[-1]  # no line at 100%: the stage line follows
    assert said[-1].startswith("sampling 90% (draws 260 of 300 per chain)")


def test_a_slow_stretch_still_gets_a_line():
    clock, said = Clock(), []
    progress = SamplingProgress(
        chains=1, warmup=1000, samples=1000, say=said.append, clock=clock
    )
    clock.now += 45.0  # 45 s for the first 1%: a line although 10% is far
    progress.advance(20)
    assert said == [
        (
            "sampling 1% (warmup 20 of 1000 per chain), 45 s so far, "
            "about 1 h 14 min left"
        )
    ]


class Interrupted(BaseException):
    """What hibayes.system.interrupts raises at a stage line after a signal."""


def test_an_interrupt_while_reporting_is_raised_after_the_run():
    from hibayes.inference.progress import reporting, tick

    def interrupted(line: str) -> None:
        raise Interrupted

    progress = SamplingProgress(chains=1, warmup=0, samples=10, say=interrupted)
    with pytest.raises(Interrupted), reporting(progress):
        tick(5)  # what the compiled sampler calls; it must not raise inside XLA
        assert progress.error is not None


def test_expected_time_picks_the_long_fits():
    default = FitSettings()
    iterations = default.warmup + default.samples
    # The shipped examples with the default 4 x (1000 + 1000): a few seconds at most.
    assert expected_sampling_s(iterations, 4, 20, "parallel", cores=2) < 15
    assert expected_sampling_s(iterations, 4, 600, "parallel", cores=2) < 15
    # README case 3 per row (20k rows, 2 x 1000): 13.8 s measured, 22 s with its
    # compile; 200k rows per row took 203 s.
    assert expected_sampling_s(1000, 2, 20_000, "parallel", cores=2) > 15
    assert expected_sampling_s(1000, 2, 200_000, "parallel", cores=2) > 100
    one = expected_sampling_s(iterations, 4, 1000, "parallel", cores=4)
    assert expected_sampling_s(iterations, 4, 1000, "sequential", cores=4) == (
        pytest.approx(4 * one)
    )


@pytest.fixture(scope="module")
def group_fit(group_data):
    """Fit the two-level model with and without progress ticks, twice with them."""
    features, coords, _ = group_data
    factory = get_model("two_level_group_binomial")
    out = {}
    for name, after, scale in (
        ("plain", 15.0, 0.5),
        ("ticks", 0.0, 0.5),
        ("again", 0.0, 0.2),
    ):
        lines: list[str] = []
        settings = FitSettings(
            samples=200, warmup=200, chains=2, prior_samples=0, progress_after_s=after
        )
        before = len(_COMPILES)
        result = fit_model(
            factory,
            features,
            {"prior_sigma_group_scale": scale},
            settings,
            coords,
            progress=lines.append,
        )
        out[name] = (result, lines, len(_COMPILES) - before)
    return out


def test_forced_progress_prints_lines_with_the_time_left(group_fit):
    _, plain_lines, _ = group_fit["plain"]
    _, lines, _ = group_fit["ticks"]
    ticks = [line for line in lines if line.startswith("sampling ") and "%" in line]
    assert 5 <= len(ticks) <= 9, lines
    assert all("so far, about" in line and line.endswith("left") for line in ticks)
    assert any("warmup" in line for line in ticks)
    assert any("draws" in line for line in ticks)
    assert not [line for line in plain_lines if "%" in line]  # a short fit: as before


def test_progress_changes_no_draw(group_fit):
    plain, _, _ = group_fit["plain"]
    ticks, _, _ = group_fit["ticks"]
    for site in plain.idata.posterior.data_vars:
        np.testing.assert_array_equal(
            plain.idata.posterior[site].values, ticks.idata.posterior[site].values
        )


def test_progress_compiles_once_per_structure(group_fit):
    _, _, first = group_fit["ticks"]
    again, lines, compiles = group_fit["again"]
    assert first >= 1  # the ticking sampler is its own executable
    assert again.timings["compile"] == 0.0
    assert compiles == 0  # a new prior value: nothing compiled, the ticks still come
    assert any("%" in line for line in lines)
