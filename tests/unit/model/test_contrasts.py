"""Orthonormal contrasts: the exact image of effect coding's prior, and mass choice."""

from __future__ import annotations

import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer.util import log_density

from hibayes.inference import FitSettings
from hibayes.inference.program import build_program
from hibayes.inference.settings import FitSettingsError, resolve_dense_mass
from hibayes.model import get_model
from hibayes.model.contrasts import SumToZeroNormal, sum_to_zero_basis


def effect_coding(n: int) -> np.ndarray:
    """``A = [I; -1']``: free levels -> all n levels, the last minus their sum."""
    return np.vstack([np.eye(n - 1), -np.ones((1, n - 1))])


@pytest.mark.parametrize("levels", [(2,), (7,), (3, 5), (10, 4)])
def test_density_is_the_multivariate_normal_image_of_iid_free_levels(levels):
    """Closed form: z = R f with f ~ N(loc, s^2 I) is N(R loc 1, s^2 R R')."""
    loc, scale = 0.3, 0.7
    d = SumToZeroNormal(loc, scale, levels)
    # R from A = Q R: Q' A, with Q the basis the model maps contrasts through.
    rs = [sum_to_zero_basis(n).T @ effect_coding(n) for n in levels]
    r = rs[0] if len(rs) == 1 else np.kron(rs[0], rs[1])
    mvn = dist.MultivariateNormal(r @ np.full(r.shape[0], loc), scale**2 * r @ r.T)
    z = d.sample(jax.random.PRNGKey(1), (50,))
    assert z.shape == (50, r.shape[0])
    np.testing.assert_allclose(d.log_prob(z), mvn.log_prob(z), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(d.mean, mvn.mean, atol=1e-6)
    np.testing.assert_allclose(d.variance, mvn.variance, rtol=1e-6)


@pytest.mark.parametrize("n", [2, 3, 10, 50])
def test_basis_is_orthonormal_and_sums_to_zero(n):
    q = sum_to_zero_basis(n)
    assert q.shape == (n, n - 1)
    np.testing.assert_allclose(q.T @ q, np.eye(n - 1), atol=1e-12)
    np.testing.assert_allclose(q.sum(axis=0), 0.0, atol=1e-12)


def test_contrasts_map_back_onto_effect_coded_levels():
    """Q z is the effect coding of the free levels z stands for, per axis."""
    d = SumToZeroNormal(0.0, 1.0, (4, 6))
    z = np.asarray(d.sample(jax.random.PRNGKey(0)))
    free = np.asarray(d.free_levels(z)).reshape(3, 5)
    full = sum_to_zero_basis(4) @ z.reshape(3, 5) @ sum_to_zero_basis(6).T
    np.testing.assert_allclose(
        full, effect_coding(4) @ free @ effect_coding(6).T, atol=1e-5
    )


def test_refuses_one_level_and_vector_parameters():
    with pytest.raises(ValueError, match=">= 2 levels"):
        SumToZeroNormal(0.0, 1.0, (1,))
    with pytest.raises(ValueError, match="scalar loc and scale"):
        SumToZeroNormal(np.zeros(3), 1.0, (4,))


# --- the ordinal model, old and new coordinates --------------------------------

HYPER = {
    "main_effects": ["a", "b"],
    "interactions": [["a", "b"]],
    "num_classes": 4,
    "prior_main_effects_loc": 0.2,
    "prior_main_effects_scale": 0.6,
    "prior_interaction_loc": -0.1,
    "prior_interaction_scale": 0.4,
}


@pytest.fixture(scope="module")
def two_factor():
    rng = np.random.default_rng(3)
    n_rows = 300
    return {
        "obs": rng.integers(0, 4, n_rows),
        "a_index": rng.integers(0, 3, n_rows),
        "b_index": rng.integers(0, 5, n_rows),
        "num_a": 3,
        "num_b": 5,
    }


def programs(features):
    factory = get_model("ordered_logistic_model")
    old = build_program(
        factory, features, {**HYPER, "sample_effects_as_contrasts": False}
    )
    new = build_program(factory, features, HYPER)
    return old, new


def test_reported_sites_are_kept_and_contrasts_are_sampled(two_factor):
    old, new = programs(two_factor)
    for name in (
        "a_effects_constrained",
        "b_effects_constrained",
        "a_b_effects_constrained",
    ):
        assert name in old.sites.latent and name in new.sites.deterministic
        assert new.sites.shapes[name] == old.sites.shapes[name]
    for name in ("a_effects_contrasts", "b_effects_contrasts", "a_b_effects_contrasts"):
        assert name in new.sites.latent and name not in old.sites.shapes
    assert new.sites.shapes["a_b_effects"] == (3, 5)
    assert new.structure_key != old.structure_key


def test_joint_density_differs_by_the_constant_jacobian_only(two_factor):
    """Exact reparameterisation: log p_new(z, .) = log p_old(R^-1 z, .) - log|det R|."""
    old, new = programs(two_factor)
    log_det = 0.0
    for levels in ((3,), (5,), (3, 5)):
        log_det += SumToZeroNormal(0.0, 1.0, levels)._log_det
    gaps = []
    for i in range(6):
        point = numpyro.infer.Predictive(new.fn, num_samples=1)(
            jax.random.PRNGKey(i), new.arrays, new.hyper
        )
        new_params = {k: v[0] for k, v in point.items() if k in new.sites.latent}
        old_params = {k: v[0] for k, v in point.items() if k in old.sites.latent}
        lp_new, _ = log_density(new.fn, (new.arrays, new.hyper), {}, new_params)
        lp_old, _ = log_density(old.fn, (old.arrays, old.hyper), {}, old_params)
        gaps.append(float(lp_new) - float(lp_old))
    np.testing.assert_allclose(gaps, -log_det, atol=2e-3)


def test_prior_draws_have_effect_codings_moments(two_factor):
    """Prior predictive through the contrasts: E = loc A 1, Var = s^2 diag(A A')."""
    _, new = programs(two_factor)
    draws = numpyro.infer.Predictive(new.fn, num_samples=40_000)(
        jax.random.PRNGKey(7), new.arrays, new.hyper
    )
    a = effect_coding(3)
    mean = 0.2 * a @ np.ones(2)
    var = 0.36 * np.diag(a @ a.T)
    got = np.asarray(draws["a_effects"])
    se = np.sqrt(var / got.shape[0])
    assert np.all(np.abs(got.mean(0) - mean) < 5 * se)
    np.testing.assert_allclose(got.var(0), var, rtol=0.05)
    a1, a2 = effect_coding(3), effect_coding(5)
    full = np.asarray(draws["a_b_effects"])
    np.testing.assert_allclose(
        full.mean(0), -0.1 * a1 @ np.ones((2, 4)) @ a2.T, atol=0.05
    )
    var2 = 0.16 * np.outer(np.diag(a1 @ a1.T), np.diag(a2 @ a2.T))
    np.testing.assert_allclose(full.var(0), var2, rtol=0.05)
    np.testing.assert_allclose(full.sum(axis=1), 0.0, atol=1e-4)
    np.testing.assert_allclose(full.sum(axis=2), 0.0, atol=1e-4)


def test_dummy_coding_and_other_priors_keep_free_levels(two_factor):
    factory = get_model("ordered_logistic_model")
    dummy = build_program(
        factory, two_factor, {**HYPER, "effect_coding_for_main_effects": False}
    )
    assert "a_effects_raw" in dummy.sites.latent
    assert "a_effects_contrasts" not in dummy.sites.shapes
    # The interaction is always doubly sum-to-zero, so it is still sampled as contrasts.
    assert "a_b_effects_contrasts" in dummy.sites.latent


# --- dense or diagonal mass ------------------------------------------------------


@pytest.mark.parametrize(
    "latent, warmup, dense",
    [
        (19, 500, True),
        (50, 500, True),
        (51, 500, False),
        (210, 500, False),
        (210, 1000, False),
        (125, 1000, True),
        (210, 1500, True),
        (5, 0, False),
        (5, 10, False),
    ],
)
def test_auto_dense_mass_needs_four_draws_per_latent_value_in_the_last_window(
    latent, warmup, dense
):
    """Windows of NumPyro's schedule: 500 warmup -> 200 draws, 1000 -> 500, 1500 -> 1000."""
    assert resolve_dense_mass("auto", latent, warmup) is dense
    assert resolve_dense_mass(True, latent, warmup) is True
    assert resolve_dense_mass(False, latent, warmup) is False


def test_dense_mass_setting_is_validated():
    assert FitSettings(dense_mass="auto").dense_mass == "auto"
    with pytest.raises(
        FitSettingsError, match="fit.dense_mass must be true, false or auto"
    ):
        FitSettings(dense_mass="sometimes")
