"""hibayes' OrderedLogistic: NumPyro's distribution with an O(rows) log_prob."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

from hibayes.model.ordinal import OrderedLogistic


def exact_log_prob(eta, cut, y):
    """log(sigmoid(c_y - eta) - sigmoid(c_(y-1) - eta)) in float64 numpy."""
    ext = np.concatenate([[-np.inf], np.asarray(cut, np.float64), [np.inf]])
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    eta = np.asarray(eta, np.float64)
    return np.log(sig(ext[np.asarray(y) + 1] - eta) - sig(ext[np.asarray(y)] - eta))


@pytest.fixture(scope="module")
def rows():
    rng = np.random.default_rng(0)
    cut = jnp.asarray(np.sort(rng.normal(size=10) * 2), jnp.float32)
    eta = jnp.asarray(rng.normal(size=3000) * 2, jnp.float32)
    y = jnp.asarray(rng.integers(0, 11, 3000))
    return eta, cut, y


def test_log_prob_matches_numpyro_and_is_closer_to_exact(rows):
    eta, cut, y = rows
    ours = np.asarray(OrderedLogistic(eta, cut).log_prob(y))
    theirs = np.asarray(dist.OrderedLogistic(eta, cut).log_prob(y))
    truth = exact_log_prob(eta, cut, y)
    np.testing.assert_allclose(ours, theirs, atol=2e-3)  # NumPyro's float32 probs round
    assert np.max(np.abs(ours - truth)) < 1e-4
    assert np.max(np.abs(ours - truth)) < np.max(np.abs(theirs - truth))


def test_gradients_match_numpyro(rows):
    eta, cut, y = rows

    def grads(cls):
        return jax.grad(lambda e, c: cls(e, c).log_prob(y).sum(), argnums=(0, 1))(eta, cut)

    (ge, gc), (re, rc) = grads(OrderedLogistic), grads(dist.OrderedLogistic)
    np.testing.assert_allclose(ge, re, atol=1e-4)
    np.testing.assert_allclose(gc, rc, rtol=1e-4, atol=1e-3)


def test_extreme_predictors_stay_finite():
    cut = jnp.linspace(-3.0, 3.0, 4)
    eta = jnp.array([40.0, -40.0, 0.0])
    y = jnp.array([0, 4, 2])
    lp = OrderedLogistic(eta, cut).log_prob(y)
    grad = jax.grad(lambda e: OrderedLogistic(e, cut).log_prob(y).sum())(eta)
    assert np.isfinite(lp).all() and np.isfinite(grad).all()
    # log sigmoid(-3 - 40) and log(1 - sigmoid(3 + 40)): both -softplus(43) ~ -43.
    np.testing.assert_allclose(lp[:2], [-np.logaddexp(0, 43)] * 2, rtol=1e-6)
    np.testing.assert_allclose(lp[2], exact_log_prob(eta[2:], cut, y[2:])[0], rtol=1e-5)


@pytest.mark.parametrize("case", ["scalar_predictor", "per_row_cutpoints", "sample_dims"])
def test_shapes_follow_numpyro(case):
    rng = np.random.default_rng(1)
    cut = jnp.asarray(np.sort(rng.normal(size=5)), jnp.float32)
    if case == "scalar_predictor":
        eta, y = 0.3, jnp.arange(6)
    elif case == "per_row_cutpoints":
        eta = jnp.asarray(rng.normal(size=4), jnp.float32)
        cut = jnp.sort(jnp.asarray(rng.normal(size=(4, 5)), jnp.float32), axis=-1)
        y = jnp.array([0, 5, 2, 3])
    else:
        eta = jnp.asarray(rng.normal(size=4), jnp.float32)
        y = jnp.asarray(rng.integers(0, 6, (7, 4)))
    ours = OrderedLogistic(eta, cut).log_prob(y)
    theirs = dist.OrderedLogistic(eta, cut).log_prob(y)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_sampling_is_numpyro_s():
    cut, eta = jnp.linspace(-1.0, 1.0, 3), jnp.zeros(5)
    key = jax.random.PRNGKey(0)
    np.testing.assert_array_equal(OrderedLogistic(eta, cut).sample(key, (10,)),
                                  dist.OrderedLogistic(eta, cut).sample(key, (10,)))
