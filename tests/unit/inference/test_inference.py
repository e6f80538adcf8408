"""The NUTS driver: InferenceData groups, reproducibility, sampler reuse, I/O."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hibayes.inference import (
    FitSettings,
    FitSettingsError,
    fit_model,
    load_idata,
    save_idata,
)
from hibayes.model import get_model


@pytest.fixture(scope="module")
def fitted(group_data, quick):
    features, coords, _ = group_data
    return fit_model(
        get_model("simplified_group_binomial_exponential"),
        features,
        None,
        quick,
        coords,
    )


def test_idata_has_every_group(fitted, quick):
    idata = fitted.idata
    assert set(idata.groups()) == {
        "posterior",
        "sample_stats",
        "log_likelihood",
        "observed_data",
        "constant_data",
        "prior",
        "prior_predictive",
        "posterior_predictive",
        "log_prior",
    }
    stats = idata.sample_stats
    for name in (
        "diverging",
        "energy",
        "tree_depth",
        "step_size",
        "acceptance_rate",
        "n_steps",
        "lp",
        "reached_max_treedepth",
    ):
        assert stats[name].shape == (2, 300), name
    assert idata.log_likelihood["obs"].shape == (2, 300, 8)
    assert idata.posterior_predictive["obs"].shape == (2, 300, 8)
    assert idata.prior["z_group"].shape == (1, 50, 8)
    assert idata.prior_predictive["obs"].shape == (1, 50, 8)
    assert set(idata.constant_data.data_vars) >= {"n_total", "group_index", "num_group"}
    np.testing.assert_array_equal(
        idata.observed_data["obs"].values,
        idata.constant_data["n_total"].values * 0 + idata.observed_data["obs"].values,
    )
    assert (
        idata.posterior.attrs["model_name"] == "simplified_group_binomial_exponential"
    )
    # Posterior predictive draws are replicated data, not the observed data again.
    assert not np.all(
        idata.posterior_predictive["obs"].values == idata.observed_data["obs"].values
    )


def test_posterior_predictive_honours_requested_count(group_data, quick):
    features, coords, _ = group_data
    settings = dataclasses.replace(quick, posterior_predictive_samples=37)
    result = fit_model(
        get_model("simplified_group_binomial_exponential"),
        features,
        None,
        settings,
        coords,
    )
    assert result.idata.posterior_predictive["obs"].shape == (1, 37, 8)


def test_replicated_data_stay_within_max_predictive_values(group_data, quick):
    """Every draw unless draws x rows exceed the budget; an explicit count is honoured."""
    features, coords, _ = group_data  # 8 rows
    capped = dataclasses.replace(quick, max_predictive_values=8 * 25, prior_samples=100)
    assert quick.chains * quick.samples > 25
    assert capped.predictive_draws(8) == (25, 25)
    roomy = dataclasses.replace(
        capped, max_predictive_values=8 * quick.chains * quick.samples
    )
    assert roomy.predictive_draws(8) == (None, 100)  # every draw fits: none thinned
    explicit = dataclasses.replace(capped, posterior_predictive_samples=37)
    assert explicit.predictive_draws(8) == (37, 25)
    result = fit_model(
        get_model("simplified_group_binomial_exponential"),
        features,
        None,
        capped,
        coords,
    )
    assert result.idata.posterior_predictive["obs"].shape == (1, 25, 8)
    assert result.idata.prior_predictive["obs"].shape == (1, 25, 8)
    with pytest.raises(FitSettingsError, match="fit.max_predictive_values must be > 0"):
        FitSettings(max_predictive_values=0)


def test_same_seed_same_draws_other_seed_other_draws(fitted, group_data, quick):
    features, coords, _ = group_data
    factory = get_model("simplified_group_binomial_exponential")
    again = fit_model(factory, features, None, quick, coords)
    np.testing.assert_array_equal(
        again.idata.posterior["z_group"].values,
        fitted.idata.posterior["z_group"].values,
    )
    other = fit_model(
        factory, features, None, dataclasses.replace(quick, seed=1), coords
    )
    assert not np.array_equal(
        other.idata.posterior["z_group"].values,
        fitted.idata.posterior["z_group"].values,
    )


def test_prior_sweep_reuses_the_compiled_sampler(fitted, group_data, quick):
    features, coords, _ = group_data
    factory = get_model("simplified_group_binomial_exponential")
    result = fit_model(
        factory, features, {"prior_sigma_group_rate": 3.0}, quick, coords
    )
    assert result.timings["compile"] == 0.0
    # The new prior value really reached the compiled sampler.
    assert not np.array_equal(
        result.idata.posterior["sigma_group"].values,
        fitted.idata.posterior["sigma_group"].values,
    )
    assert result.program.structure_key == fitted.program.structure_key


def test_sequential_and_parallel_chains_agree(group_data, quick):
    features, coords, _ = group_data
    factory = get_model("simplified_group_binomial_exponential")
    par = fit_model(
        factory,
        features,
        None,
        dataclasses.replace(quick, chain_method="parallel"),
        coords,
    )
    seq = fit_model(
        factory,
        features,
        None,
        dataclasses.replace(quick, chain_method="sequential"),
        coords,
    )
    assert par.chain_method == "parallel" and seq.chain_method == "sequential"
    np.testing.assert_allclose(
        par.idata.posterior["z_group"].values,
        seq.idata.posterior["z_group"].values,
        rtol=1e-4,
        atol=1e-4,
    )


def test_netcdf_round_trip(fitted, tmp_path):
    path = save_idata(fitted.idata, tmp_path / "idata.nc")
    back = load_idata(path)
    assert set(back.groups()) == set(fitted.idata.groups())
    np.testing.assert_array_equal(
        back.posterior["group_effects"].values,
        fitted.idata.posterior["group_effects"].values,
    )
    assert list(back.posterior["group_effects"].coords["group"].values)[0] == "model-a"


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("samples", 0, "fit.samples must be > 0"),
        ("chains", -1, "fit.chains must be > 0"),
        ("target_accept", 1.5, "fit.target_accept must be in"),
        ("init_strategy", "zero", "fit.init_strategy must be one of"),
        ("precision", "float16", "fit.precision must be one of"),
    ],
)
def test_bad_settings_are_refused(key, value, message):
    with pytest.raises(FitSettingsError, match=message):
        FitSettings(**{key: value})


def test_unknown_setting_is_refused():
    with pytest.raises(
        FitSettingsError, match=r"unknown fit setting\(s\) \['num_sample'\]"
    ):
        FitSettings.from_mapping({"num_sample": 10})


def test_auto_precision_is_float64_only_for_large_data():
    from hibayes.inference.settings import FLOAT64_ABOVE_ROWS

    auto = FitSettings()
    assert auto.resolved_precision(600) == "float32"
    assert auto.resolved_precision(FLOAT64_ABOVE_ROWS) == "float32"
    assert auto.resolved_precision(FLOAT64_ABOVE_ROWS + 1) == "float64"
    assert FitSettings(precision="float64").resolved_precision(10) == "float64"
    assert FitSettings(precision="float32").resolved_precision(10**7) == "float32"


def test_float64_fit_samples_in_float64_and_compiles_its_own_sampler(
    fitted, group_data, quick
):
    import jax

    from hibayes.inference.runtime import use_float_precision

    features, coords, _ = group_data
    try:
        wide = fit_model(
            get_model("simplified_group_binomial_exponential"),
            features,
            None,
            dataclasses.replace(quick, precision="float64"),
            coords,
        )
    finally:
        use_float_precision("float32")  # process-wide: later tests expect the default
    assert wide.precision == "float64" and fitted.precision == "float32"
    assert wide.idata.posterior["group_effects"].dtype == np.float64
    assert fitted.idata.posterior["group_effects"].dtype == np.float32
    assert wide.idata.posterior.attrs["precision"] == "float64"
    assert (
        wide.idata.log_likelihood["obs"].dtype == np.float32
    )  # stored compactly either way
    assert wide.program.structure_key != fitted.program.structure_key
    np.testing.assert_allclose(
        wide.idata.posterior["group_effects"].mean(),
        fitted.idata.posterior["group_effects"].mean(),
        atol=0.15,
    )
    assert not jax.config.jax_enable_x64
