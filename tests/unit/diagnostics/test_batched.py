"""The vectorised R-hat and ESS equal ArviZ's own estimators, quantity by quantity."""

from __future__ import annotations

import numpy as np
import pytest
from arviz.stats.diagnostics import _ess_bulk, _ess_tail, _rhat_rank

from hibayes.diagnostics.batched import ess_bulk, ess_tail, rhat_rank


def _chains(rng, n_chain: int, n_draw: int, phi: float, shift: float) -> np.ndarray:
    """AR(1) chains with autocorrelation ``phi``; chain 0 moved by ``shift``."""
    x = np.empty((n_chain, n_draw))
    x[:, 0] = rng.normal(size=n_chain)
    for t in range(1, n_draw):
        x[:, t] = phi * x[:, t - 1] + rng.normal(size=n_chain)
    x[0] += shift
    return x


def _cases() -> np.ndarray:
    """Quantities from mixing well to stuck, with ties and heavy tails."""
    rng = np.random.default_rng(7)
    cases = [
        _chains(rng, 4, 101, phi, shift)
        for phi in (0.0, 0.5, 0.9, 0.99, -0.6)
        for shift in (0.0, 0.3, 3.0)
    ]
    cases.append(np.round(_chains(rng, 4, 101, 0.7, 0.0)))  # many ties
    cases.append(rng.standard_cauchy((4, 101)))  # heavy tails
    cases.append(np.where(rng.random((4, 101)) < 0.97, 0.0, 1.0))  # rare jumps
    return np.stack(cases)


@pytest.mark.parametrize(
    ("ours", "arviz"),
    [(rhat_rank, _rhat_rank), (ess_bulk, _ess_bulk), (ess_tail, _ess_tail)],
    ids=["rhat", "ess_bulk", "ess_tail"],
)
def test_equal_to_arviz_for_every_quantity(ours, arviz):
    cases = _cases()
    got = ours(cases)
    want = np.array([arviz(c) for c in cases])
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=0)
    # Leading axes of any shape: (simulation, element) as calibration passes them.
    grid = cases[:18].reshape(3, 6, 4, 101)
    np.testing.assert_allclose(ours(grid), want[:18].reshape(3, 6), rtol=1e-10)


def test_draw_counts_even_odd_and_two_chains():
    rng = np.random.default_rng(1)
    for shape in [(2, 50), (2, 51), (3, 400), (1, 80)]:
        x = rng.normal(size=(5, *shape)).cumsum(axis=-1) * 0.1 + rng.normal(
            size=(5, *shape)
        )
        np.testing.assert_allclose(ess_bulk(x), [_ess_bulk(c) for c in x], rtol=1e-10)
        np.testing.assert_allclose(ess_tail(x), [_ess_tail(c) for c in x], rtol=1e-10)
        if shape[0] > 1:
            np.testing.assert_allclose(
                rhat_rank(x), [_rhat_rank(c) for c in x], rtol=1e-10
            )


def test_constant_quantity_is_nan():
    x = np.zeros((2, 4, 50))
    x[1] = np.random.default_rng(0).normal(size=(4, 50))
    assert np.isnan(rhat_rank(x)[0]) and np.isfinite(rhat_rank(x)[1])
    assert np.isnan(ess_bulk(x)[0]) and np.isnan(ess_tail(x)[0])


def test_average_ranks_equal_scipy_rankdata_with_ties_and_nan():
    """The one-sort ranks equal rankdata's "average" on ties, constants and NaN rows."""
    from scipy import stats

    from hibayes.diagnostics.batched import _average_ranks

    rng = np.random.default_rng(3)
    cases = [
        rng.normal(size=(20, 999)),
        rng.integers(0, 5, size=(20, 1000)).astype(float),  # heavy ties
        np.round(rng.normal(size=(20, 101)), 1),
    ]
    for x in cases:
        x[3, 5] = np.nan
        x[4] = 2.0
        expected = stats.rankdata(x, method="average", axis=1)
        np.testing.assert_array_equal(_average_ranks(x), expected)


def test_rank_diagnostics_in_blocks_equal_arviz(monkeypatch):
    from hibayes.diagnostics import batched

    monkeypatch.setattr(batched, "_BLOCK", 4)  # 18 members: 5 blocks, the last short
    cases = _cases()
    rhat, bulk, tail = batched._rank_diagnostics(cases)
    np.testing.assert_allclose(rhat, [_rhat_rank(c) for c in cases], rtol=1e-10)
    np.testing.assert_allclose(bulk, [_ess_bulk(c) for c in cases], rtol=1e-10)
    np.testing.assert_allclose(tail, [_ess_tail(c) for c in cases], rtol=1e-10)
