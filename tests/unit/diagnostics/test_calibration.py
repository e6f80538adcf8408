"""Calibration statistics on exact posteriors: the test's size and power, ranks, coverage."""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest

from hibayes.diagnostics import Thresholds
from hibayes.diagnostics.batched import convergence_by_fit
from hibayes.diagnostics.calibration import (
    calibrate,
    ranks,
    uniformity_test,
)


def test_uniformity_test_has_its_nominal_size_and_band_coverage():
    """Under uniform ranks p < 0.05 about 5% of the time; the band holds all points
    about 95% of the time (an independent simulation, other seed)."""
    rng = np.random.default_rng(11)
    ps, inside = [], []
    for _ in range(400):
        t = uniformity_test(rng.integers(0, 100, size=150), 99, seed=0)
        ps.append(t.p_value)
        inside.append(np.all((t.ecdf >= t.lower) & (t.ecdf <= t.upper)))
    size = np.mean(np.asarray(ps) < 0.05)
    assert 0.02 <= size <= 0.085, size  # binomial 99.7% range around 0.05 at n=400
    assert 0.91 <= np.mean(inside) <= 0.98


def test_uniformity_test_rejects_shifted_and_overdispersed_ranks():
    rng = np.random.default_rng(2)
    shifted = np.minimum((rng.beta(1.4, 1.0, size=200) * 100).astype(int), 99)
    assert uniformity_test(shifted, 99).p_value < 0.01
    too_narrow = np.where(
        rng.random(200) < 0.5, rng.integers(0, 10, 200), rng.integers(90, 100, 200)
    )  # truth often outside the draws
    assert uniformity_test(too_narrow, 99).p_value < 0.001


def _conjugate_sbc(n_sims: int, sd_factor: float, rng: np.random.Generator):
    """mu ~ N(0, 1), y | mu ~ N(mu, 1) (one observation): posterior N(y/2, 1/2).
    ``sd_factor`` != 1 stands for a wrong posterior (a miscalibrated fit)."""
    mu = rng.normal(size=n_sims)
    y = rng.normal(mu, 1.0)
    draws = rng.normal(
        y[:, None, None] / 2, np.sqrt(0.5) * sd_factor, size=(n_sims, 4, 250)
    )
    return mu[:, None], draws[..., None]


def test_exact_posterior_calibrates_and_a_too_narrow_one_does_not():
    rng = np.random.default_rng(5)
    truth, draws = _conjugate_sbc(300, 1.0, rng)
    diverging = np.zeros(draws.shape[:3], bool)
    energy = rng.normal(size=draws.shape[:3])
    loose = Thresholds(rhat_max=2.0, ess_bulk_min=0, ess_tail_min=0, ebfmi_min=0.0)
    good = calibrate(truth, draws, ["mu"], diverging, energy, loose)
    row = good.quantities.iloc[0]
    assert good.verdict == "pass" and row["p_value"] > 0.01
    assert abs(row["coverage_50"] - 0.5) < 3 * np.sqrt(0.25 / 300)
    assert abs(row["coverage_94"] - 0.94) < 3 * np.sqrt(0.94 * 0.06 / 300)
    assert row["mean_truth_correlation"] == pytest.approx(np.sqrt(0.5), abs=0.1)
    truth, draws = _conjugate_sbc(300, 0.6, rng)
    bad = calibrate(truth, draws, ["mu"], diverging, energy, loose)
    assert bad.verdict == "fail: mu"
    assert bad.quantities.iloc[0]["coverage_94"] < 0.85


def test_uniform_ranks_from_unusable_fits_are_inconclusive():
    """Exact draws pass; with a third of the fits divergent they are inconclusive
    above max_unusable and pass within it; too few effective draws for the ranks
    count as unusable too; ranks that fail still fail."""
    rng = np.random.default_rng(6)
    truth, draws = _conjugate_sbc(300, 1.0, rng)
    energy = rng.normal(size=draws.shape[:3])
    loose = Thresholds(rhat_max=2.0, ess_bulk_min=0, ess_tail_min=0, ebfmi_min=0.0)
    diverging = np.zeros(draws.shape[:3], bool)
    diverging[::3, 0, 0] = True  # 100 of 300 fits have a divergent transition
    strict = calibrate(truth, draws, ["mu"], diverging, energy, loose, max_unusable=0.1)
    assert strict.verdict.startswith("inconclusive: 100 of 300 simulated fits")
    assert strict.fits["rank_usable"].sum() == 200
    lenient = calibrate(
        truth, draws, ["mu"], diverging, energy, loose, max_unusable=0.5
    )
    assert lenient.verdict == "pass"
    # Each fit's draws repeated in runs of 20: bulk ESS ~ draws / 20 < the 99 ranked.
    sticky = np.repeat(draws[:, :, ::20], 20, axis=2)
    clean = np.zeros(draws.shape[:3], bool)
    slow = calibrate(truth, sticky, ["mu"], clean, energy, loose, max_unusable=0.1)
    assert not slow.fits["rank_usable"].any()
    assert slow.fits["ess_bulk_min"].max() < 99
    truth, draws = _conjugate_sbc(300, 0.6, rng)
    narrow = calibrate(truth, draws, ["mu"], diverging, energy, loose, max_unusable=0.1)
    assert narrow.verdict == "fail: mu"


def test_ranks_count_draws_below_and_break_ties():
    truth = np.array([[0.5, 1.0]])
    draws = np.array([0.1, 0.7, 0.2, 1.0])[None, None, :, None].repeat(2, axis=3)
    r, n = ranks(truth, draws, 99, np.random.default_rng(0))
    assert n == 4 and r[0, 0] == 2  # 0.1 and 0.2 are below 0.5
    assert r[0, 1] in (3, 4)  # three below 1.0, one tie


def test_convergence_by_fit_uses_arviz_estimators():
    """Per-simulation R-hat and ESS equal ArviZ's public az.rhat/az.ess."""
    rng = np.random.default_rng(1)
    draws = rng.normal(size=(2, 4, 300, 2)).cumsum(axis=2) * 0.1 + rng.normal(
        size=(2, 4, 300, 2)
    )
    fits = convergence_by_fit(
        draws, np.zeros((2, 4, 300), bool), rng.normal(size=(2, 4, 300)), Thresholds()
    )
    for s in range(2):
        rh = [float(az.rhat(draws[s, :, :, j])) for j in range(2)]
        ess = [float(az.ess(draws[s, :, :, j], method="bulk")) for j in range(2)]
        assert fits.loc[s, "rhat_max"] == pytest.approx(max(rh))
        assert fits.loc[s, "ess_bulk_min"] == pytest.approx(min(ess))
    assert not fits["converged"].any()  # random walks: R-hat far above 1.01
    assert "R-hat" in fits.loc[0, "problems"]
