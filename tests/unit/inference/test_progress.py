"""Long fits show progress with the time left; short ones one line per stage, as before.

Every fit samples in chunks (hibayes.inference.chunks) and a long one says a line
between two of them (hibayes.inference.progress): the draws must be identical with
and without lines, showing them must not compile anything, and the lines must say
how far and how long is left.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from hibayes.inference import FitSettings, fit_model
from hibayes.inference.progress import SamplingProgress, expected_sampling_s
from hibayes.inference.sampler import get_sampler
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
    progress = SamplingProgress(warmup=100, samples=300, say=said.append, clock=clock)
    assert progress.total == 400
    for _ in range(4):  # 4 chunks of 20 iterations = 80 of 400 per chain: 20%
        clock.now += 5.0
        progress.advance(20)
    assert said == progress.lines
    assert len(said) == 2  # at 10% and 20%
    # 20% after 20 s: 80 s left; 20% of 400 iterations per chain is warmup 80 of 100.
    assert said[-1] == (
        "sampling 20% (warmup 80 of 100 per chain), 20 s so far, about 1 min 20 s left"
    )
    for _ in range(16):
        clock.now += 5.0
        progress.advance(20)
    assert "draws 300 of 300" not in said[-1]  # no line at 100%: the stage line follows
    assert said[-1].startswith("sampling 90% (draws 260 of 300 per chain)")


def test_a_slow_stretch_still_gets_a_line():
    clock, said = Clock(), []
    progress = SamplingProgress(warmup=1000, samples=1000, say=said.append, clock=clock)
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


def test_an_interrupt_at_a_line_stops_sampling_at_that_chunk(group_fit):
    result, _, _ = group_fit["plain"]  # its sampler, already compiled
    settings, program = result.settings, result.program
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    sampler = get_sampler(program, settings, keys).chunked
    lines = SamplingProgress(settings.warmup, settings.samples, say=_interrupt)
    with pytest.raises(Interrupted):
        sampler.run(keys, program.sampled_arrays, program.hyper, lines.advance)
    # The line at 10% (two chunks of 20) raised in Python, so no later chunk was
    # waited for or reported; the few queued ahead are dropped.
    assert lines.done == 40
    assert len(lines.lines) == 1


def _interrupt(line: str) -> None:
    raise Interrupted


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
    """Fit the two-level model without and with progress lines, twice with them."""
    features, coords, _ = group_data
    factory = get_model("two_level_group_binomial")
    out = {}
    for name, after, scale in (
        ("plain", 15.0, 0.5),
        ("lines", 0.0, 0.5),
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
    _, lines, _ = group_fit["lines"]
    said = [line for line in lines if line.startswith("sampling ") and "%" in line]
    assert len(said) == 9, lines  # 20 chunks of 5%: a line at 10%, 20% ... 90%
    assert all("so far, about" in line and line.endswith("left") for line in said)
    assert said[0].startswith("sampling 10% (warmup 40 of 200 per chain)")
    assert said[-1].startswith("sampling 90% (draws 160 of 200 per chain)")
    assert not [line for line in plain_lines if "%" in line]  # a short fit: as before


def test_progress_changes_no_draw(group_fit):
    plain, _, _ = group_fit["plain"]
    lines, _, _ = group_fit["lines"]
    for site in plain.idata.posterior.data_vars:
        np.testing.assert_array_equal(
            plain.idata.posterior[site].values, lines.idata.posterior[site].values
        )
    for name in plain.idata.sample_stats.data_vars:
        np.testing.assert_array_equal(
            plain.idata.sample_stats[name].values,
            lines.idata.sample_stats[name].values,
        )


def test_progress_compiles_nothing(group_fit):
    with_lines, _, compiles = group_fit["lines"]
    again, lines, compiles_again = group_fit["again"]
    # The fit without lines compiled the one sampler that both use.
    assert with_lines.timings["compile"] == 0.0 and compiles == 0
    assert again.timings["compile"] == 0.0
    assert compiles_again == 0  # a new prior value: nothing compiled, lines still come
    assert any("%" in line for line in lines)
