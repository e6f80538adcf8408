"""Comparison tables: same as ArviZ's, refused across different data, CSV out."""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from hibayes.diagnostics.comparison import compare_fits, comparison_to_csv, shared_vars
from hibayes.inference import FitSettings, fit_model
from hibayes.model import get_model

SHORT = FitSettings(samples=150, warmup=150, chains=2, prior_samples=0)
NUMERIC = ["rank", "elpd_loo", "p_loo", "elpd_diff", "weight", "se", "dse"]
COLUMNS = [*NUMERIC, "warning", "scale"]


@pytest.fixture(scope="module")
def fits(group_data) -> dict[str, az.InferenceData]:
    """Same data with wide and narrow priors, plus one fit on shifted counts."""
    features, coords, _ = group_data
    factory = get_model("two_level_group_binomial")
    out = {
        name: fit_model(
            factory, features, {"prior_sigma_group_scale": scale}, SHORT, coords
        ).idata
        for name, scale in (("wide", 0.4), ("narrow", 0.05))
    }
    shifted = {**features, "obs": features["obs"] + 1}
    out["shifted"] = fit_model(factory, shifted, None, SHORT, coords).idata
    return out


def test_matches_arviz_compare(fits):
    pair = {"wide": fits["wide"], "narrow": fits["narrow"]}
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        table = compare_fits(pair)
    assert escaped == []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = az.compare(pair, ic="loo", method="stacking")
    assert list(table.columns) == COLUMNS
    assert set(table.index) == {"wide", "narrow"}
    pd.testing.assert_frame_equal(table[NUMERIC], expected[NUMERIC])
    assert isinstance(table.attrs["warnings"], list)


def test_waic_columns(fits):
    table = compare_fits({"wide": fits["wide"], "narrow": fits["narrow"]}, ic="waic")
    assert {"elpd_waic", "p_waic", "elpd_diff", "weight"} <= set(table.columns)


def test_refuses_fits_of_different_data_naming_them(fits):
    with pytest.raises(ValueError, match="'shifted'") as err:
        compare_fits(fits)
    assert "'wide'" in str(err.value) and "'narrow'" not in str(err.value)


def test_refuses_different_shape(fits):
    wide = fits["wide"]
    short = az.InferenceData(
        posterior=wide.posterior,
        log_likelihood=wide.log_likelihood.isel(observation=slice(5)),
        observed_data=xr.Dataset(
            {"obs": ("observation", wide.observed_data["obs"].values[:5])}
        ),
    )
    with pytest.raises(ValueError, match=r"'short' \(shape \(5,\) vs \(8,\)\)"):
        compare_fits({"wide": wide, "short": short})


@pytest.mark.parametrize(
    "bad, match",
    [
        ({}, "at least two"),
        ({"only": None}, "at least two"),
    ],
)
def test_needs_two_fits(bad, match):
    with pytest.raises(ValueError, match=match):
        compare_fits(bad)


def test_unknown_ic(fits):
    with pytest.raises(ValueError, match="ic must be"):
        compare_fits({"wide": fits["wide"], "narrow": fits["narrow"]}, ic="aic")


def test_shared_vars():
    rng = np.random.default_rng(0)

    def fake(groups, extra=None):
        post = {
            "sigma": rng.normal(size=(1, 10)),
            "group_effects": rng.normal(size=(1, 10, len(groups))),
        }
        post.update(extra or {})
        return az.from_dict(
            posterior=post, coords={"group": groups}, dims={"group_effects": ["group"]}
        )

    a = fake(["a", "b"], {"tau": rng.normal(size=(1, 10))})
    assert shared_vars({"a": a, "b": fake(["a", "b"])}) == ["sigma", "group_effects"]
    assert shared_vars({"a": a, "b": fake(["a", "c"])}) == ["sigma"]
    assert shared_vars({"a": a}) == ["sigma", "group_effects", "tau"]


def test_shared_vars_of_real_fits(fits):
    names = shared_vars(fits)
    assert {"group_effects", "sigma_group", "overall_mean"} <= set(names)


def test_comparison_to_csv_round_trips(fits, tmp_path):
    table = compare_fits({"wide": fits["wide"], "narrow": fits["narrow"]})
    path = comparison_to_csv(table, tmp_path / "out" / "comparison.csv")
    back = pd.read_csv(path, index_col="fit")
    np.testing.assert_allclose(
        back[NUMERIC].to_numpy(float), table[NUMERIC].to_numpy(float)
    )
    assert list(back.index) == list(table.index)
