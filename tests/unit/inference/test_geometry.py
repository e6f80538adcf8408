"""Sampler settings and reparameterisations leave the posterior unchanged."""

from __future__ import annotations

import pytest
from helpers.posterior import assert_same_posterior

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
        get_model("ordered_logistic_model"), data.features,
        {"main_effects": ["grader", "llm"], "sample_cutpoints_relative_to_intercept": relative},
        FitSettings(samples=1000, warmup=500, chains=4, dense_mass=dense, prior_samples=0,
                    posterior_predictive_samples=10),
        data.coords,
    )


def test_relative_cutpoints_and_dense_mass_give_the_same_posterior(grader_data):
    reference = fit(grader_data, relative=False, dense=False)
    faster = fit(grader_data, relative=True, dense=True)
    assert "first_cutpoint_offset" in faster.idata.posterior
    assert "first_cutpoint_offset" not in reference.idata.posterior
    assert_same_posterior_in_fewer_steps(reference, faster, COMPARED)


TWO_LEVEL = ["mu_overall", "sigma_overall", "z_overall", "overall_mean", "sigma_group",
             "group_effects"]


def test_two_level_overall_mean_sampled_directly_gives_the_same_posterior():
    data = features_from_config(example_path("llm_evals"), observed="score", aggregate=True,
                                rename={"model": "group"}, categorical=["group"])

    def two_level(directly: bool):
        return fit_model(
            get_model("two_level_group_binomial"), data.features,
            {"sample_overall_mean_directly": directly},
            FitSettings(samples=1500, warmup=1000, chains=4, prior_samples=0,
                        posterior_predictive_samples=10),
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
