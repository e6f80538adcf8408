"""Diagnostics: the metrics contract, convergence verdicts, pointwise LOO."""

from __future__ import annotations

import numpy as np
import pytest

from hibayes.diagnostics import (
    METRIC_KEYS,
    Thresholds,
    convergence_failures,
    diagnose,
    pointwise_loo,
)
from hibayes.inference import FitSettings, fit_model
from hibayes.model import get_model


@pytest.fixture(scope="module")
def good_fit(group_data):
    features, coords, _ = group_data
    # Thirty trials a group: the non-centred model samples this well.
    features = {
        **features,
        "n_total": np.full(8, 30),
        "obs": np.array([8, 11, 14, 17, 18, 21, 24, 27]),
    }
    settings = FitSettings(samples=1000, warmup=500, chains=4, prior_samples=0)
    return fit_model(
        get_model("simplified_group_binomial_exponential"),
        features,
        None,
        settings,
        coords,
    )


def test_every_metric_present_and_finite(good_fit):
    metrics = diagnose(good_fit.idata)
    assert tuple(metrics) == METRIC_KEYS
    for key, value in metrics.items():
        assert np.isfinite(value), key
    assert metrics["converged"] == 1.0, convergence_failures(metrics, Thresholds())
    assert metrics["rhat_max"] < 1.01
    assert 0 < metrics["ebfmi_min"] < 5
    assert metrics["pareto_k_bad"] <= 8
    assert metrics["p_loo"] > 0


def test_deliberately_bad_fit_is_not_converged(group_data):
    features, coords, _ = group_data
    settings = FitSettings(samples=100, warmup=1, chains=2, prior_samples=0, seed=3)
    result = fit_model(
        get_model("simplified_group_binomial_exponential"),
        features,
        None,
        settings,
        coords,
    )
    metrics = diagnose(result.idata)
    assert metrics["converged"] == 0.0
    reasons = convergence_failures(metrics, Thresholds())
    assert any("ESS" in r or "R-hat" in r for r in reasons), reasons


def test_thresholds_decide_the_verdict():
    metrics = {
        "rhat_max": 1.02,
        "ess_bulk_min": 500,
        "ess_tail_min": 390,
        "divergences": 2,
        "ebfmi_min": 0.2,
    }
    reasons = convergence_failures(metrics, Thresholds())
    assert reasons == [
        "R-hat 1.020 > 1.01",
        "tail ESS 390 < 400",
        "2 divergent transitions (max 0)",
        "E-BFMI 0.20 < 0.3",
    ]
    loose = Thresholds(
        rhat_max=1.05, ess_tail_min=100, divergences_max=5, ebfmi_min=0.1
    )
    assert convergence_failures(metrics, loose) == []
    with pytest.raises(ValueError, match="unknown checks key"):
        Thresholds.from_mapping({"rhat": 1.0})


def test_pointwise_loo_one_row_per_observation(good_fit):
    frame = pointwise_loo(good_fit.idata)
    assert list(frame.columns) == ["obs", "loo_i", "pareto_k", "waic_i"]
    assert len(frame) == 8
    metrics = diagnose(good_fit.idata)
    assert frame["loo_i"].sum() == pytest.approx(metrics["elpd_loo"], rel=1e-6)
    assert frame["pareto_k"].max() == pytest.approx(metrics["pareto_k_max"])
