"""The vectorised summary equals ``az.summary`` on the same draws, row for row."""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pandas as pd
import pytest

from hibayes.diagnostics import summarize
from hibayes.diagnostics import summary as summary_module
from hibayes.diagnostics.summary import summary_table


def _ar(rng, shape, phi=0.7, dtype=np.float32) -> np.ndarray:
    """AR(1) draws along axis 1 (chain, draw, ...)."""
    x = rng.normal(size=shape)
    for t in range(1, shape[1]):
        x[:, t] = phi * x[:, t - 1] + x[:, t]
    return x.astype(dtype)


def _arviz(idata_or_posterior, **kwargs) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return az.summary(idata_or_posterior, kind="all", round_to="none", **kwargs)


def _assert_same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got.index) == list(want.index)
    assert list(got.columns) == list(want.columns)
    # Rounding only: the ESS sums of ArviZ and of the batch run in another order.
    np.testing.assert_allclose(got.values, want.values, rtol=1e-12, atol=0)


@pytest.fixture(scope="module")
def posterior():
    """Scalars, labelled vectors, a 2-d effect, float64, integers, a constant, a stuck
    chain, ties, heavy tails, an odd number of draws."""
    rng = np.random.default_rng(3)
    stuck = _ar(rng, (4, 400, 6))
    stuck[0, :, 2] += 3.0  # one chain elsewhere: R-hat far above 1
    stuck[:, :, 4] = np.round(stuck[:, :, 4])  # many ties
    stuck[:, :, 5] = rng.standard_cauchy((4, 400))
    draws = {
        "sigma": np.abs(_ar(rng, (4, 400))),
        "effects": stuck,
        "cell": _ar(rng, (4, 400, 3, 5), phi=0.95),
        "wide64": _ar(rng, (4, 400, 4), dtype=np.float64),
        "count": rng.integers(0, 6, (4, 400, 2)),
        "fixed": np.zeros((4, 400, 2), dtype=np.float32),
    }
    coords = {
        "model": [f"model-{i}" for i in range(6)],
        "a": ["x", "y", "z"],
        "b": [10, 20, 30, 40, 50],
    }
    dims = {"effects": ["model"], "cell": ["a", "b"]}
    return az.from_dict(posterior=draws, coords=coords, dims=dims).posterior


def test_equal_to_arviz_summary(posterior):
    _assert_same(summary_table(posterior), _arviz(posterior))


def test_blocks_of_elements_give_the_same_table(posterior, monkeypatch):
    monkeypatch.setattr(summary_module, "_BLOCK", 4)  # 'effects' split over 2 blocks
    _assert_same(summary_table(posterior), _arviz(posterior))


def test_odd_draws_one_chain_and_other_hdi():
    rng = np.random.default_rng(5)
    odd = az.from_dict(posterior={"x": _ar(rng, (3, 201, 4))}).posterior
    _assert_same(summary_table(odd), _arviz(odd))
    one = az.from_dict(posterior={"x": _ar(rng, (1, 300, 3))}).posterior
    table = summary_table(one)
    _assert_same(table, _arviz(one))
    assert table["r_hat"].isna().all()  # R-hat needs two chains
    _assert_same(summary_table(odd, hdi_prob=0.8), _arviz(odd, hdi_prob=0.8))


def test_what_it_does_not_vectorise_goes_to_arviz():
    rng = np.random.default_rng(6)
    x = _ar(rng, (2, 100, 3))
    x[1, 5, 0] = np.nan
    post = az.from_dict(posterior={"x": x, "y": _ar(rng, (2, 100))}).posterior
    _assert_same(summary_table(post), _arviz(post))


def test_summarize_of_a_fit_is_arviz_summary(posterior):
    idata = az.InferenceData(posterior=posterior)
    table = summarize(idata)
    assert table.index.name == "parameter"
    _assert_same(table, _arviz(idata))


def test_relative_ess_is_the_one_az_loo_computes(posterior):
    from hibayes.diagnostics.summary import relative_ess

    ess = az.ess(posterior, method="mean")
    n = posterior.sizes["chain"] * posterior.sizes["draw"]
    want = np.hstack([ess[v].values.flatten() for v in ess.data_vars]).mean() / n
    assert relative_ess(posterior) == pytest.approx(want, rel=1e-12)
    one_chain = posterior.isel(chain=[0])
    assert relative_ess(one_chain) == 1.0


def test_loo_with_our_reff_equals_az_loo(posterior):
    from hibayes.diagnostics import information_criteria

    rng = np.random.default_rng(9)
    log_lik = (
        -0.5
        * (rng.normal(size=(4, 400, 12)) + posterior["sigma"].values[..., None]) ** 2
    )
    idata = az.InferenceData(
        posterior=posterior,
        log_likelihood=az.from_dict(log_likelihood={"obs": log_lik}).log_likelihood,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = az.loo(idata, pointwise=True, scale="log")
    got = information_criteria(idata).loo
    np.testing.assert_allclose(got.loo_i.values, want.loo_i.values, rtol=1e-12)
    np.testing.assert_allclose(got.pareto_k.values, want.pareto_k.values, rtol=1e-12)
    assert got.elpd_loo == pytest.approx(want.elpd_loo, rel=1e-12)
