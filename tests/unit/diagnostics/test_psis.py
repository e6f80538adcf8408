"""The vectorised PSIS against ArviZ's own ``az.psislw`` and ``az.loo`` on the same values."""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pytest

from hibayes.diagnostics import psis

S = 2000


def _arviz_psislw(x: np.ndarray, reff: float) -> tuple[np.ndarray, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return az.psislw(x, reff)


def _assert_same(ours, theirs) -> None:
    (lw, k), (lw_ref, k_ref) = ours, theirs
    np.testing.assert_array_equal(np.isinf(k), np.isinf(k_ref))
    finite = np.isfinite(k_ref)
    np.testing.assert_allclose(k[finite], k_ref[finite], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(lw, lw_ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("reff", [1.0, 0.6, 1.9])
def test_vectorised_columns_equal_arviz(reff, monkeypatch):
    """Light to very heavy tails of the weights (k from below 0.2 to above 0.7): every column on
    the vectorised path (ArviZ is not called) and equal to ``az.psislw``."""
    rng = np.random.default_rng(1)
    x = np.concatenate(
        [
            rng.normal(size=(300, S)),
            rng.standard_t(3, size=(300, S)) * 2,
            rng.normal(size=(20, S)) * 30,
        ]
    )
    expected = _arviz_psislw(x, reff)

    def refuse(*args, **kwargs):
        raise AssertionError("a plain column was handed to ArviZ")

    monkeypatch.setattr(az, "psislw", refuse)
    lw, k = psis.psislw(x, reff)
    _assert_same((lw, k), expected)
    assert k.max() > 0.7 and k.min() < 0.2  # the range PSIS is judged on
    np.testing.assert_allclose(np.exp(lw).sum(axis=1), 1.0)


def test_irregular_columns_are_arviz_s():
    """Ties (in and at the tail), constants, too few draws for a tail, weights below
    the smallest float: the columns ArviZ handles its own way give ArviZ's result."""
    rng = np.random.default_rng(2)
    x = np.concatenate(
        [
            np.round(rng.normal(size=(20, S)), 1),  # ties everywhere
            np.zeros((3, S)),  # constant: no tail, k = inf
            rng.normal(size=(5, S)) * 800,  # the cutoff falls below log(tiny)
            rng.standard_cauchy(size=(20, S)),  # often the same
            rng.normal(size=(5, S)),  # and plain ones beside them
        ]
    )
    _assert_same(psis.psislw(x, 1.0), _arviz_psislw(x, 1.0))
    few = rng.normal(size=(4, 20))  # 4 tail draws: ArviZ's k = inf, no smoothing
    _assert_same(psis.psislw(few, 1.0), _arviz_psislw(few, 1.0))


def test_shapes_and_blocks():
    """Leading dimensions are kept, and columns split over blocks give the same."""
    rng = np.random.default_rng(3)
    x = rng.standard_t(4, size=(2, 1500, 300))
    lw, k = psis.psislw(x, 0.8)
    assert lw.shape == x.shape and k.shape == (2, 1500)
    _assert_same((lw, k), _arviz_psislw(x, 0.8))


def test_loo_equals_arviz_loo():
    """Every field of ``az.loo``'s result, and the weights behind it."""
    idata = az.load_arviz_data("centered_eight")
    idata.log_likelihood["obs"] = idata.log_likelihood["obs"].astype(np.float64)
    reff = 0.7
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = az.loo(idata, pointwise=True, scale="log", reff=reff)
    got, log_w = psis.loo(idata.log_likelihood["obs"], reff)
    assert list(got.index) == list(expected.index)
    for key in ("elpd_loo", "se", "p_loo", "good_k"):
        assert got[key] == pytest.approx(expected[key], rel=1e-12), key
    for key in ("n_samples", "n_data_points", "warning", "scale"):
        assert got[key] == expected[key], key
    np.testing.assert_allclose(got.loo_i.values, expected.loo_i.values, rtol=1e-12)
    np.testing.assert_allclose(
        got.pareto_k.values, expected.pareto_k.values, rtol=1e-10
    )
    assert got.loo_i.dims == expected.loo_i.dims
    assert list(got.loo_i["school"].values) == list(expected.loo_i["school"].values)
    flat = idata.log_likelihood["obs"].values.reshape(-1, 8).T
    np.testing.assert_allclose(log_w, _arviz_psislw(-flat, reff)[0], atol=1e-10)
    assert psis.loo(idata.log_likelihood["obs"], reff, weights=False)[1] is None
