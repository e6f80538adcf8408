"""The ``log_prior`` group: NumPyro's densities per draw against hand-written scipy ones."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from hibayes.inference import build_program, fit_model
from hibayes.inference.log_prior import log_prior_draws, prior_sites
from hibayes.model import Model, get_model, model

HYPER = {
    "prior_mu_overall_loc": 0.4,
    "prior_mu_overall_scale": 1.7,
    "prior_sigma_overall_scale": 0.8,
    "prior_sigma_group_scale": 0.3,
}


@pytest.fixture(scope="module")
def two_level(group_data, quick):
    features, coords, _ = group_data
    return fit_model(
        get_model("two_level_group_binomial"), features, HYPER, quick, coords
    )


def test_log_prior_matches_scipy_for_two_level_model(two_level):
    """Each top-level site and the total agree with scipy.stats at every draw."""
    idata = two_level.idata
    post = idata.posterior
    s_over, z_over = post["sigma_overall"].values, post["z_overall"].values
    mean, s_group = post["overall_mean"].values, post["sigma_group"].values
    z_group = post["z_group"].values
    expected = {
        "sigma_overall": stats.halfnorm.logpdf(s_over, scale=0.8),
        # Sampled directly, its prior is N(loc + sigma_overall * z_overall, scale).
        "overall_mean": stats.norm.logpdf(mean, 0.4 + s_over * z_over, 1.7),
        "sigma_group": stats.halfnorm.logpdf(s_group, scale=0.3),
    }
    lp = idata.log_prior
    assert set(lp.data_vars) == set(expected)  # z_* are N(0, 1): not top-level
    assert lp.attrs["chosen_by"] == "hyperparameters"
    for name, want in expected.items():
        assert lp[name].shape == want.shape == (2, 300)
        np.testing.assert_allclose(lp[name].values, want, rtol=2e-5, atol=2e-5)
    total = (
        sum(expected.values())
        + stats.norm.logpdf(z_over)
        + stats.norm.logpdf(z_group).sum(axis=-1)
    )
    np.testing.assert_allclose(
        idata.sample_stats["log_prior"].values, total, rtol=2e-5, atol=1e-4
    )


def test_arviz_psens_reads_the_group(two_level):
    """ArviZ's own power-scaling diagnostic runs on the group as written."""
    import arviz as az

    sens = az.psens(
        two_level.idata, component="prior", var_names=["sigma_group", "overall_mean"]
    )
    assert np.isfinite(float(sens["sigma_group"])) and float(sens["sigma_group"]) > 0


def test_log_prior_survives_netcdf(two_level, tmp_path):
    from hibayes.inference import load_idata, save_idata

    back = load_idata(save_idata(two_level.idata, tmp_path / "idata.nc"))
    np.testing.assert_array_equal(
        back.log_prior["sigma_group"].values,
        two_level.idata.log_prior["sigma_group"].values,
    )


def test_top_level_sites_of_regression_and_three_level(group_data):
    features, _, _ = group_data
    three = {
        **features,
        "subgroup_index": np.zeros(8, int),
        "num_subgroup": 1,
        "subsubgroup_index": np.zeros(8, int),
        "num_subsubgroup": 1,
    }
    factory = get_model("three_level_group_binomial")
    program = build_program(factory, three)
    draw = {
        "overall_mean": 0.1,
        "sigma_group": 0.2,
        "z_group": np.zeros(8),
        "sigma_subgroup": 0.3,
        "z_subgroup": np.zeros((8, 1)),
        "sigma_subsubgroup": 0.4,
        "z_subsubgroup": np.zeros((8, 1, 1)),
    }
    draw = {k: np.full((1, 1) + np.shape(v), v) for k, v in draw.items()}
    sites = prior_sites(factory, three, program, draw)
    assert sites.top_level == [
        "overall_mean",
        "sigma_group",
        "sigma_subgroup",
        "sigma_subsubgroup",
    ]


@model
def branching_prior(prior_scale: float = 2.0) -> Model:
    """A test model whose program branches on its hyperparameter (compiled in)."""
    import numpyro
    import numpyro.distributions as dist

    def program(features):
        scale = numpyro.sample(
            "scale", dist.HalfNormal(prior_scale if prior_scale > 1 else 1.0)
        )
        z = numpyro.sample("z", dist.Normal(0, 1))
        numpyro.sample("obs", dist.Normal(z, scale), obs=features["obs"])

    return program


def test_compiled_in_hyperparameters_and_log_prior_draws():
    """A program with its prior values static: found by rebuilding, densities exact."""
    features = {"obs": np.array([0.1, -0.3, 0.5])}
    factory = get_model("branching_prior")
    program = build_program(factory, features, {"prior_scale": 2.0})
    assert program.hyper == {}  # the branch forced prior values to be static
    draws = {"scale": np.array([[0.5, 1.0, 3.0]]), "z": np.array([[0.0, 1.0, -2.0]])}
    sites = prior_sites(factory, features, program, draws)
    assert (sites.top_level, sites.how) == (["scale"], "hyperparameters")
    lp = log_prior_draws(program, draws)
    np.testing.assert_allclose(
        lp["scale"], stats.halfnorm.logpdf(draws["scale"], scale=2.0), rtol=1e-6
    )
    np.testing.assert_allclose(lp["z"], stats.norm.logpdf(draws["z"]), rtol=1e-6)
