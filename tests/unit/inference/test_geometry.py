"""Sampler settings and reparameterisations leave the posterior unchanged."""

from __future__ import annotations

from types import SimpleNamespace

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from helpers.posterior import assert_same_posterior
from numpyro.infer import MCMC, NUTS

from hibayes.data import example_path, features_from_config
from hibayes.inference import FitSettings, fit_model
from hibayes.model import get_model

pytestmark = pytest.mark.slow

COMPARED = ["intercept", "first_cutpoint", "cutpoints", "grader_effects", "llm_effects"]


def assert_same_posterior_in_fewer_steps(reference, faster, var_names) -> None:
    """The same posterior (see :func:`assert_same_posterior`), far shorter trajectories."""
    assert_same_posterior(reference, faster, var_names)
    steps_ref = float(reference.idata.sample_stats["n_steps"].mean())
    steps_new = float(faster.idata.sample_stats["n_steps"].mean())
    assert steps_new < 0.6 * steps_ref, (steps_ref, steps_new)


def fit(data, relative: bool, dense: bool):
    """The ordinal model on the shipped grader scores, 4 x 1000 draws."""
    return fit_model(
        get_model("ordered_logistic_model"),
        data.features,
        {
            "main_effects": ["grader", "llm"],
            "sample_cutpoints_relative_to_intercept": relative,
        },
        FitSettings(
            samples=1000,
            warmup=500,
            chains=4,
            dense_mass=dense,
            prior_samples=0,
            posterior_predictive_samples=10,
        ),
        data.coords,
    )


def test_relative_cutpoints_and_dense_mass_give_the_same_posterior(grader_data):
    reference = fit(grader_data, relative=False, dense=False)
    faster = fit(grader_data, relative=True, dense=True)
    assert "first_cutpoint_offset" in faster.idata.posterior
    assert "first_cutpoint_offset" not in reference.idata.posterior
    assert_same_posterior_in_fewer_steps(reference, faster, COMPARED)


TWO_LEVEL = [
    "mu_overall",
    "sigma_overall",
    "z_overall",
    "overall_mean",
    "sigma_group",
    "group_effects",
]


def test_two_level_overall_mean_sampled_directly_gives_the_same_posterior():
    data = features_from_config(
        example_path("llm_evals"),
        observed="score",
        aggregate=True,
        rename={"model": "group"},
        categorical=["group"],
    )

    def two_level(directly: bool):
        return fit_model(
            get_model("two_level_group_binomial"),
            data.features,
            {"sample_overall_mean_directly": directly},
            FitSettings(
                samples=1500,
                warmup=1000,
                chains=4,
                prior_samples=0,
                posterior_predictive_samples=10,
            ),
            data.coords,
        )

    reference, faster = two_level(False), two_level(True)
    # The reparameterised program samples overall_mean and derives mu_overall.
    assert "overall_mean" in faster.program.sites.latent
    assert "mu_overall" in faster.program.sites.deterministic
    assert "mu_overall" in reference.program.sites.latent
    assert_same_posterior_in_fewer_steps(reference, faster, TWO_LEVEL)
    divergent_new = int(faster.idata.sample_stats["diverging"].sum())
    assert divergent_new <= int(reference.idata.sample_stats["diverging"].sum())


ORDINAL_DESIGN = [
    "intercept",
    "first_cutpoint",
    "cutpoints",
    "x1_effects",
    "x2_effects",
    "x1_x2_effects",
]


def _two_factor_scores(rows: int = 2000, n1: int = 4, n2: int = 6):
    """Scores 0..4 from two crossed factors and their interaction (the bench's process)."""
    rng = np.random.default_rng(11)
    e1, e2 = 0.5 * rng.standard_normal(n1), 0.5 * rng.standard_normal(n2)
    e12 = 0.2 * rng.standard_normal((n1, n2))
    i, j = rng.integers(0, n1, rows), rng.integers(0, n2, rows)
    eta = e1[i] + e2[j] + e12[i, j]
    cdf = 1 / (1 + np.exp(-(np.array([-2.0, -0.7, 0.5, 1.8])[None] - eta[:, None])))
    obs = (rng.random(rows)[:, None] > cdf).sum(1)
    return {"obs": obs, "x1_index": i, "x2_index": j, "num_x1": n1, "num_x2": n2}


def _plain_numpyro_free_levels(features, samples: int, warmup: int, chains: int):
    """The old coordinates written out by hand: free effect-coded levels, first cutpoint."""
    n1, n2 = features["num_x1"], features["num_x2"]

    def program(obs, i, j):
        b0 = numpyro.sample("intercept", dist.Normal(0, 1))
        f1 = numpyro.sample("f1", dist.Normal(0, 1).expand([n1 - 1]))
        f2 = numpyro.sample("f2", dist.Normal(0, 1).expand([n2 - 1]))
        f12 = numpyro.sample("f12", dist.Normal(0, 1).expand([n1 - 1, n2 - 1]))
        e1 = numpyro.deterministic("x1_effects", jnp.append(f1, -f1.sum()))
        e2 = numpyro.deterministic("x2_effects", jnp.append(f2, -f2.sum()))
        top = jnp.concatenate([f12, -f12.sum(1, keepdims=True)], axis=1)
        e12 = numpyro.deterministic(
            "x1_x2_effects", jnp.concatenate([top, -top.sum(0, keepdims=True)], axis=0)
        )
        c1 = numpyro.sample("first_cutpoint", dist.Normal(-2, 1))
        diffs = numpyro.sample("cutpoint_diffs", dist.LogNormal(0, 0.5).expand([3]))
        cut = numpyro.deterministic(
            "cutpoints", jnp.concatenate([c1[None], c1 + jnp.cumsum(diffs + 0.3)])
        )
        eta = b0 + e1[i] + e2[j] + e12[i, j]
        numpyro.sample("obs", dist.OrderedLogistic(eta, cut), obs=obs)

    mcmc = MCMC(
        NUTS(program),
        num_warmup=warmup,
        num_samples=samples,
        num_chains=chains,
        chain_method="sequential",
        progress_bar=False,
    )
    mcmc.run(
        jax.random.PRNGKey(1),
        features["obs"],
        features["x1_index"],
        features["x2_index"],
        extra_fields=("num_steps",),
    )
    idata = az.from_numpyro(mcmc, dims={"x1_x2_effects": ["x1", "x2"]})
    return SimpleNamespace(
        idata=idata, steps=float(np.mean(mcmc.get_extra_fields()["num_steps"]))
    )


def test_contrast_coordinates_give_the_plain_numpyro_posterior():
    """Independent path: the old parameterisation by hand in NumPyro, same posterior."""
    features = _two_factor_scores()
    hyper = {
        "main_effects": ["x1", "x2"],
        "interactions": [["x1", "x2"]],
        "num_classes": 5,
        "prior_first_cutpoint_loc": -2,
        "prior_first_cutpoint_scale": 1,
        "prior_cutpoint_diffs_loc": 0,
        "prior_cutpoint_diffs_scale": 0.5,
    }
    new = fit_model(
        get_model("ordered_logistic_model"),
        features,
        hyper,
        FitSettings(
            samples=1000,
            warmup=500,
            chains=4,
            target_accept=0.8,
            collapse_identical_rows=True,
            prior_samples=0,
            posterior_predictive_samples=10,
        ),
    )
    assert "x1_x2_effects_contrasts" in new.program.sites.latent
    assert "x1_x2_effects_constrained" in new.program.sites.deterministic
    reference = _plain_numpyro_free_levels(features, samples=1000, warmup=500, chains=4)
    assert_same_posterior(reference, new, ORDINAL_DESIGN)
    # With the same (diagonal) mass matrix the old coordinates need longer trajectories.
    assert new.idata.posterior.attrs["mass_matrix"] == "diagonal"
    assert float(new.idata.sample_stats["n_steps"].mean()) < 0.6 * reference.steps
