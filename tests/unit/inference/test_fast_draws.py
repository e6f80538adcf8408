"""Predictive binomial draws through ``jax.random.binomial`` follow the binomial law."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from scipy import stats

from hibayes.inference.fast_draws import with_fast_draws

CASES = [
    (1, 0.3),  # Bernoulli
    (10, 0.5),
    (40, 0.02),  # small n * p: inversion
    (200, 0.7),  # large n * p: rejection
    (1000, 0.999),  # near the edge
]


@pytest.mark.parametrize(("n", "p"), CASES)
def test_draws_match_the_binomial_pmf(n, p):
    """A chi-square test against scipy's pmf, with sparse cells pooled."""
    base = dist.Binomial(total_count=jnp.full(4, n), logits=jnp.log(p / (1 - p)))
    draws = np.asarray(with_fast_draws(base).sample(jax.random.PRNGKey(n), (50_000,)))
    draws = draws.ravel()
    support = np.arange(n + 1)
    expected = stats.binom.pmf(support, n, p) * draws.size
    observed = np.bincount(draws, minlength=n + 1)
    # Pool cells expected below 5 into their neighbours so the test is valid.
    keep = expected >= 5
    e = np.append(expected[keep], expected[~keep].sum())
    o = np.append(observed[keep], observed[~keep].sum())
    if e[-1] == 0:
        e, o = e[:-1], o[:-1]
    assert o.sum() == draws.size
    p_value = stats.chisquare(o, e * o.sum() / e.sum()).pvalue
    assert p_value > 1e-4, (n, p, p_value)


def test_same_dtype_shape_and_density_as_numpyro():
    """Only the draws change: dtype, shape, support and log density are NumPyro's."""
    base = dist.Binomial(
        total_count=jnp.array([0, 3, 7]), probs=jnp.array([0.2, 0.0, 1.0])
    )
    fast = with_fast_draws(base)
    key = jax.random.PRNGKey(0)
    mine, theirs = fast.sample(key, (5, 2)), base.sample(key, (5, 2))
    assert mine.shape == theirs.shape == (5, 2, 3)
    assert mine.dtype == theirs.dtype
    # Degenerate rows are exact: n = 0, p = 0 and p = 1.
    np.testing.assert_array_equal(np.asarray(mine)[..., 0], 0)
    np.testing.assert_array_equal(np.asarray(mine)[..., 1], 0)
    np.testing.assert_array_equal(np.asarray(mine)[..., 2], 7)
    value = jnp.array([0, 0, 7])
    np.testing.assert_array_equal(fast.log_prob(value), base.log_prob(value))
    np.testing.assert_array_equal(fast.support.upper_bound, base.support.upper_bound)


def test_other_distributions_are_left_alone():
    """Only binomials are swapped; everything else keeps NumPyro's sampler."""
    normal = dist.Normal(0.0, 1.0)
    assert with_fast_draws(normal) is normal
