"""Power-scaling sensitivity: agreement with ArviZ's ``az.psens``, a closed form, real fits."""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest
from scipy import stats

from hibayes.diagnostics.sensitivity import (
    CONFLICT,
    WEAK_LIKELIHOOD,
    power_scaled_quantities,
    sensitivity,
)
from hibayes.inference import FitSettings, fit_model
from hibayes.model import get_model

# A conjugate normal model: mu ~ N(0, TAU), y_i ~ N(mu, SIGMA), i = 1..N.
TAU, SIGMA, N, YBAR = 1.0, 2.0, 8, 1.5


def _conjugate(alpha_prior: float = 1.0, alpha_lik: float = 1.0) -> tuple[float, float]:
    """Mean and sd of mu when the prior and likelihood are raised to these powers."""
    precision = alpha_prior / TAU**2 + alpha_lik * N / SIGMA**2
    return alpha_lik * N * YBAR / SIGMA**2 / precision, precision**-0.5


@pytest.fixture(scope="module")
def conjugate_idata() -> az.InferenceData:
    """Exact posterior draws (4 chains x 2000) with their log prior and likelihood."""
    rng = np.random.default_rng(3)
    mean, sd = _conjugate()
    mu = rng.normal(mean, sd, size=(4, 2000))
    y = YBAR + SIGMA * (np.arange(N) - (N - 1) / 2) / N  # mean exactly YBAR
    tau = np.exp(rng.normal(size=(4, 2000)))  # a second, unrelated quantity
    idata = az.from_dict(
        posterior={"mu": mu, "theta": np.stack([mu, 2 * mu + 1], axis=-1), "tau": tau},
        log_likelihood={"obs": stats.norm.logpdf(y, mu[..., None], SIGMA)},
        observed_data={"obs": y},
    )
    idata.add_groups({"log_prior": {"mu": stats.norm.logpdf(mu, 0, TAU)}})
    return idata


def test_agrees_with_arviz_psens(conjugate_idata):
    """Every element, both components, equal to az.psens on the same draws."""
    ours = sensitivity(conjugate_idata).table.set_index("parameter")
    for component in ("prior", "likelihood"):
        theirs = az.psens(conjugate_idata, component=component)
        np.testing.assert_allclose(
            ours.loc["mu", component], float(theirs["mu"]), rtol=1e-9
        )
        np.testing.assert_allclose(
            ours.loc["tau", component], float(theirs["tau"]), rtol=1e-9, atol=1e-12
        )
        for j in range(2):
            np.testing.assert_allclose(
                ours.loc[f"theta[{j}]", component], float(theirs["theta"][j]), rtol=1e-9
            )


def test_power_scaled_means_follow_the_closed_form(conjugate_idata):
    """Reweighted draws match the exact power-scaled posterior within Monte Carlo error."""
    alphas = [0.8, 1.0, 1.25]
    for component in ("prior", "likelihood"):
        table = power_scaled_quantities(conjugate_idata, ["mu"], alphas, component)
        for alpha, (_, row) in zip(alphas, table.iterrows()):
            kw = (
                {"alpha_prior": alpha} if component == "prior" else {"alpha_lik": alpha}
            )
            mean, sd = _conjugate(**kw)
            se = sd / np.sqrt(8000)
            assert abs(row["mean"] - mean) < 5 * se + 1e-3, (
                component,
                alpha,
                row,
                mean,
            )
            assert abs(row["q0.05"] - (mean + sd * stats.norm.ppf(0.05))) < 0.03
            assert row["pareto_k"] < 0.5


def test_unrelated_quantity_is_insensitive(conjugate_idata):
    result = sensitivity(conjugate_idata).table.set_index("parameter")
    assert result.loc["tau", "prior"] < 0.01 and result.loc["tau", "likelihood"] < 0.01
    assert result.loc["mu", "prior"] > 0.05 and result.loc["mu", "likelihood"] > 0.05


def _intercept_fit(obs: int, n: int, loc: float, scale: float):
    settings = FitSettings(samples=500, warmup=300, chains=2, prior_samples=10, seed=2)
    features = {"obs": np.array([obs]), "n_total": np.array([n])}
    hyper = {"prior_intercept_loc": loc, "prior_intercept_scale": scale}
    return fit_model(
        get_model("linear_group_binomial"), features, hyper, settings
    ).idata


def test_prior_dominated_fit_is_flagged():
    """One trial and a tight prior: the prior decides, the likelihood barely moves it."""
    sens = sensitivity(_intercept_fit(obs=1, n=2, loc=0.0, scale=0.1))
    row = sens.table.set_index("parameter").loc["intercept"]
    assert row["diagnosis"] == WEAK_LIKELIHOOD, row
    assert sens.flagged == ["intercept"]
    assert sens.metrics()["psense_prior_max"] > 0.05
    assert "intercept (weak likelihood)" in sens.tag()


def test_conflicting_prior_is_flagged_and_informative_data_are_not():
    """A tight prior far from plenty of data conflicts; a wide one is fine."""
    conflict = sensitivity(_intercept_fit(obs=900, n=1000, loc=-2.0, scale=0.1))
    assert (
        conflict.table.set_index("parameter").loc["intercept", "diagnosis"] == CONFLICT
    )
    fine = sensitivity(_intercept_fit(obs=700, n=1000, loc=0.0, scale=2.5))
    assert fine.flagged == [] and fine.tag() == "none"
    assert fine.metrics()["psense_prior_max"] < 0.05


def test_blocks_and_shared_sorts_give_the_whole_array_answer(
    conjugate_idata, monkeypatch
):
    """In blocks of 1 element (each sorted once per sign), the numbers are those of
    cjs_distance over the whole (quantity, draw) array, to the last bit."""
    from hibayes.diagnostics import sensitivity as module

    draws, labels, _ = module.flat_posterior(conjugate_idata)
    delta = 0.01
    want = {}
    for component in ("prior", "likelihood"):
        weights, _ = module.power_scale_weights(
            module.component_draws(conjugate_idata, component), [1 / 1.01, 1.01]
        )
        cjs = [
            np.fmax(module.cjs_distance(draws, w), module.cjs_distance(-draws, w))
            for w in weights
        ]
        want[component] = (cjs[0] + cjs[1]) / (2 * np.log2(1 + delta))
    monkeypatch.setattr(module, "_BLOCK", 1)
    table = module.sensitivity(conjugate_idata, delta=delta).table
    assert list(table["parameter"]) == labels
    for component in ("prior", "likelihood"):
        np.testing.assert_array_equal(table[component].to_numpy(), want[component])
    chosen = module.power_scaled_quantities(
        conjugate_idata, ["theta[1]", "mu"], [1.0], "prior"
    )
    np.testing.assert_allclose(
        chosen["mean"], [draws[labels.index("theta[1]")].mean(), draws[0].mean()]
    )
