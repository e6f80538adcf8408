"""Exact cross-validation (issue 14), each estimate checked against an independent path.

- reloo against brute force: plain NumPyro MCMC on the data without the row (no
  weights, no shared compiled function), within Monte Carlo error;
- per-trial LOO against ``az.loo`` on the disaggregated Bernoulli rows;
- fold assignment against its definition (seeded, whole groups, strata spread);
- ``auto`` in each of its three situations, and a diverging refit reported.
"""

from __future__ import annotations

import warnings

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
import pytest
from numpyro.infer import MCMC, NUTS
from scipy.special import expit, logsumexp
from scipy.stats import binom

from hibayes.config import load_data
from hibayes.diagnostics import (
    CVSettings,
    CVSettingsError,
    Thresholds,
    cross_validate,
    information_criteria,
)
from hibayes.diagnostics.folds import assign_folds, group_labels
from hibayes.inference import FitSettings, fit_model
from hibayes.inference.refit import refit_compiles, trial_log_probs
from hibayes.model import Model, get_model, model

# Long enough that the refits of the shipped example pass these checks (R-hat
# 1.01 misses by noise at 4 x 500 draws), short enough for 2 cores.
SETTINGS = FitSettings(samples=1000, warmup=500, chains=4, prior_samples=0)
LIMITS = Thresholds(rhat_max=1.02)


@pytest.fixture(scope="module")
def llm_evals():
    """The shipped binomial example: 6 LLMs, one aggregated row each."""
    return load_data(
        {
            "example": "llm_evals",
            "observed": "score",
            "aggregate": True,
            "categorical": ["group"],
            "rename": {"model": "group"},
        }
    )


@pytest.fixture(scope="module")
def shipped_fit(llm_evals):
    """two_level_group_binomial on the shipped example, its PSIS-LOO."""
    result = fit_model(
        get_model("two_level_group_binomial"),
        llm_evals.features,
        {"prior_sigma_group_scale": 0.4},
        SETTINGS,
        llm_evals.coords,
    )
    return result, information_criteria(result.idata)


@pytest.fixture(scope="module")
def shipped_reloo(shipped_fit):
    """``auto`` on the shipped example: every row has a bad k, so reloo."""
    result, criteria = shipped_fit
    before = refit_compiles()
    cv = cross_validate(result, LIMITS, CVSettings(), criteria)
    return cv, refit_compiles() - before


# ---- folds -----------------------------------------------------------------------


def test_folds_are_seeded_and_keep_groups_whole():
    rng = np.random.default_rng(0)
    table = pd.DataFrame(
        {
            "model": rng.choice(list("abcdefghij"), size=200),
            "task": rng.choice(["x", "y"], size=200),
        }
    )
    groups = table[["model"]]
    folds = assign_folds(200, 5, seed=3, groups=groups)
    np.testing.assert_array_equal(folds, assign_folds(200, 5, seed=3, groups=groups))
    assert not np.array_equal(folds, assign_folds(200, 5, seed=4, groups=groups))
    per_group = pd.Series(folds).groupby(table["model"]).nunique()
    assert (per_group == 1).all()  # no group straddles two folds
    assert sorted(np.unique(folds)) == [0, 1, 2, 3, 4]
    # 10 groups over 5 folds: two groups each.
    assert (pd.Series(folds).groupby(table["model"]).first().value_counts() == 2).all()


def test_stratified_folds_spread_each_stratum():
    groups = pd.DataFrame({"model": [f"m{i}" for i in range(12)]})
    strata = pd.Series(["big"] * 4 + ["small"] * 8)
    folds = assign_folds(12, 4, seed=1, groups=groups, strata=strata)
    for level, size in (("big", 4), ("small", 8)):
        counts = np.bincount(folds[strata == level], minlength=4)
        assert counts.tolist() == [size // 4] * 4


def test_cv_settings_errors_name_the_key(llm_evals):
    for values, key in (
        ({"method": "loo"}, "cv.method"),
        ({"k": 1}, "cv.k"),
        ({"max_refits": -1}, "cv.max_refits"),
        ({"nfolds": 3}, "nfolds"),
        ({"group_by": [1]}, "cv.group_by"),
        ({"seed": "x"}, "cv.seed"),
        ({"adapt": "partial"}, "cv.adapt"),
    ):
        with pytest.raises(CVSettingsError, match=key):
            CVSettings.from_mapping(values)
    with pytest.raises(CVSettingsError, match="cv.group_by: column 'llm'"):
        group_labels(llm_evals.table, ["llm"], "group_by")
    # The data config renamed model -> group: both names work.
    assert list(
        group_labels(llm_evals.table, ["model"], "group_by", {"model": "group"}).columns
    ) == ["group"]
    with pytest.raises(CVSettingsError, match="cv.k=7 is more than the 6"):
        assign_folds(6, 7, seed=0, groups=llm_evals.table[["group"]])


# ---- reloo against brute force -----------------------------------------------------


def _brute_force_elpd(features: dict, row: int, scale: float, seed: int) -> tuple:
    """Exact LOO of one row: a fresh NumPyro fit on the other rows, nothing shared."""
    keep = np.arange(len(features["obs"])) != row
    train = {
        **features,
        **{k: np.asarray(features[k])[keep] for k in ("obs", "n_total", "group_index")},
    }
    program = get_model("two_level_group_binomial")(prior_sigma_group_scale=scale)
    mcmc = MCMC(
        NUTS(program, target_accept_prob=0.95),
        num_warmup=SETTINGS.warmup,
        num_samples=SETTINGS.samples,
        num_chains=SETTINGS.chains,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(seed), train)
    effects = np.asarray(mcmc.get_samples(group_by_chain=True)["group_effects"])
    g = int(features["group_index"][row])
    log_lik = binom.logpmf(
        features["obs"][row], features["n_total"][row], expit(effects[..., g])
    )
    return _elpd_and_mc_se(log_lik)


def _elpd_and_mc_se(log_lik: np.ndarray) -> tuple[float, float]:
    """log mean exp over (chain, draw) draws, and its Monte Carlo SE (delta method)."""
    w = np.exp(log_lik - log_lik.max())
    ess = float(az.ess(w.reshape(log_lik.shape[0], -1)))
    return float(logsumexp(log_lik) - np.log(log_lik.size)), float(
        w.std() / w.mean() / np.sqrt(ess)
    )


@pytest.mark.slow
def test_auto_runs_reloo_where_every_k_is_bad(shipped_fit, shipped_reloo):
    result, criteria = shipped_fit
    cv, _ = shipped_reloo
    k = np.asarray(criteria.loo.pareto_k)
    assert np.all(k > criteria.loo.good_k)  # the finding, on this posterior
    assert cv.method == "reloo" and cv.tags["hibayes.cv_method"] == "reloo"
    assert cv.metrics["cv_refits"] == 6 and cv.metrics["cv_refits_failed"] == 0
    assert cv.metrics["pareto_k_bad_after"] == 0
    assert (cv.pointwise["cv_method"] == "reloo").all()
    assert cv.metrics["elpd_cv"] == pytest.approx(cv.pointwise["elpd_cv_i"].sum())
    # Stored for comparisons, and PSIS overstated the fit as the issue measured.
    np.testing.assert_allclose(
        result.idata["cross_validation"]["elpd_cv_i"].values,
        cv.pointwise["elpd_cv_i"].to_numpy(),
    )
    assert cv.metrics["elpd_cv"] < float(criteria.loo.elpd_loo) - 2


@pytest.mark.slow
@pytest.mark.parametrize("row", [0, 5])
def test_reloo_matches_brute_force_refit(llm_evals, shipped_fit, shipped_reloo, row):
    cv, _ = shipped_reloo
    exact, exact_se = _brute_force_elpd(llm_evals.features, row, 0.4, seed=11)
    # The same row's MC error in the batched refit: its held-out log-likelihood.
    ours = float(cv.pointwise["elpd_cv_i"][row])
    # A conservative bound on ours' MC SE: the brute force's (same lengths).
    tolerance = 4 * np.sqrt(2) * exact_se + 0.02
    assert abs(ours - exact) < tolerance, (ours, exact, tolerance)


@pytest.mark.slow
def test_refits_compile_once_per_structure(shipped_reloo, llm_evals):
    cv, compiled = shipped_reloo
    assert compiled <= 1  # 0 when another test compiled this batch shape first
    assert cv.metrics["cv_compile_s"] >= 0
    # Another prior: same structure, so the refit batch reuses the executable.
    other = fit_model(
        get_model("two_level_group_binomial"),
        llm_evals.features,
        {"prior_sigma_group_scale": 0.1},
        SETTINGS,
        llm_evals.coords,
    )
    before = refit_compiles()
    again = cross_validate(
        other, LIMITS, CVSettings(method="reloo"), information_criteria(other.idata)
    )
    assert refit_compiles() == before
    assert again.metrics["cv_compile_s"] == 0.0


# ---- auto: psis and kfold ------------------------------------------------------------


@pytest.mark.slow
def test_auto_keeps_psis_when_every_k_is_good(quick):
    rng = np.random.default_rng(2)
    group = np.repeat(np.arange(4), 15)  # 15 rows per group: no row dominates its group
    n = np.full(60, 20)
    obs = rng.binomial(n, expit(np.array([-1.0, 0.0, 0.5, 1.0])[group]))
    features = {"obs": obs, "n_total": n, "group_index": group, "num_group": 4}
    result = fit_model(
        get_model("two_level_group_binomial"),
        features,
        {"prior_sigma_group_scale": 1.0},
        quick,
    )
    criteria = information_criteria(result.idata)
    assert np.all(np.asarray(criteria.loo.pareto_k) <= criteria.loo.good_k)
    cv = cross_validate(result, LIMITS, CVSettings(), criteria)
    assert cv.method == "psis" and cv.metrics["cv_refits"] == 0
    assert cv.metrics["elpd_cv"] == pytest.approx(float(criteria.loo.elpd_loo))
    assert cv.metrics["pareto_k_bad_after"] == 0


@pytest.mark.slow
def test_auto_switches_to_grouped_kfold_beyond_max_refits(shipped_fit, llm_evals):
    result, criteria = shipped_fit
    settings = CVSettings(max_refits=2, k=3, group_by=("model",), seed=5)
    cv = cross_validate(
        result,
        LIMITS,
        settings,
        criteria,
        table=llm_evals.table,
        rename={"model": "group"},
    )
    assert cv.method == "kfold" and cv.metrics["cv_refits"] == 3
    folds = cv.folds["fold"].to_numpy()
    np.testing.assert_array_equal(
        folds, assign_folds(6, 3, 5, groups=llm_evals.table[["group"]])
    )
    np.testing.assert_array_equal(cv.pointwise["cv_fold"].to_numpy(), folds)
    assert np.isfinite(cv.pointwise["elpd_cv_i"]).all()
    assert result.idata["cross_validation"].attrs["method"] == "kfold"


# ---- per-trial LOO -------------------------------------------------------------------


@pytest.mark.slow
def test_per_trial_loo_equals_psis_on_disaggregated_bernoulli_rows(shipped_fit):
    result, criteria = shipped_fit
    cv = cross_validate(result, LIMITS, CVSettings(method="psis"), criteria)
    features = result.program.arrays
    effects = np.asarray(result.idata.posterior["group_effects"].values)  # (c, d, g)
    p = expit(effects[..., features["group_index"]])  # (chain, draw, cell)
    columns = []
    for cell, (k, n) in enumerate(zip(features["obs"], features["n_total"])):
        columns += [np.log(p[..., cell])] * int(k) + [np.log1p(-p[..., cell])] * int(
            n - k
        )
    bernoulli = az.InferenceData(
        posterior=result.idata.posterior,
        log_likelihood=az.from_dict(
            log_likelihood={"y": np.stack(columns, axis=-1)}
        ).log_likelihood,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = az.loo(bernoulli, pointwise=True)
    assert bernoulli.log_likelihood["y"].shape[-1] == int(features["n_total"].sum())
    m = cv.metrics
    assert m["elpd_loo_trial"] == pytest.approx(float(expected.elpd_loo), rel=1e-5)
    assert m["elpd_loo_trial_se"] == pytest.approx(float(expected.se), rel=1e-4)
    bad = int(np.sum(np.asarray(expected.pareto_k) > expected.good_k))
    assert m["pareto_k_bad_trial"] == bad
    # The model's own per-trial probabilities, not a re-implementation, fed the metric.
    log_p, _ = trial_log_probs(
        result.program,
        {
            k: np.asarray(result.idata.posterior[k].values)
            for k in result.program.sites.latent
        },
    )
    np.testing.assert_allclose(np.exp(log_p), p, rtol=1e-4, atol=1e-6)


# ---- a refit that diverges -----------------------------------------------------------


@model
def cv_test_funnel(prior_log_sd_scale: float = 3.0) -> Model:
    """Neal's funnel, centred, under weak binomial data: NUTS diverges."""

    def program(features):
        log_sd = numpyro.sample("log_sd", dist.Normal(0.0, prior_log_sd_scale))
        z = numpyro.sample(
            "z", dist.Normal(0.0, jnp.exp(log_sd)).expand([features["num_group"]])
        )
        numpyro.sample(
            "obs",
            dist.Binomial(features["n_total"], logits=z[features["group_index"]]),
            obs=features["obs"],
        )

    return program


@pytest.mark.slow
def test_a_refit_that_diverges_is_reported_not_used():
    features = {
        "obs": np.array([1, 0, 2, 1, 1, 0, 2, 1]),
        "n_total": np.full(8, 2),
        "group_index": np.arange(8),
        "num_group": 8,
    }
    settings = FitSettings(
        samples=300, warmup=300, chains=2, target_accept=0.6, prior_samples=0, seed=1
    )
    result = fit_model(cv_test_funnel, features, None, settings)
    criteria = information_criteria(result.idata)
    cv = cross_validate(result, LIMITS, CVSettings(method="kfold", k=2), criteria)
    assert cv.metrics["cv_refits_failed"] >= 1
    assert any("divergent" in line for line in cv.problems), cv.problems
    failed = cv.pointwise["cv_method"].str.contains("failed")
    assert failed.any()
    assert cv.metrics["pareto_k_bad_after"] == failed.sum()
    assert cv.tags["hibayes.cv_problems"] != "none"


# ---- config ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["auto", "psis", "reloo", "kfold"])
def test_every_cv_config_composes_into_settings(name):
    from pathlib import Path

    from hydra import compose, initialize_config_dir

    from hibayes.config import cv_settings

    conf = Path(__file__).resolve().parents[3] / "hibayes" / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose("config", overrides=[f"cv={name}", "cv.group_by=[model]"])
    data = load_data(cfg.data)
    settings = cv_settings(cfg.cv, data.table, cfg.data.rename)
    assert settings.method == name and settings.group_by == ("model",)
    assert settings.max_refits == 20 and settings.k == 5
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        bad = compose("config", overrides=[f"cv={name}", "cv.group_by=[llm]"])
    with pytest.raises(CVSettingsError, match="cv.group_by: column 'llm'"):
        cv_settings(bad.cv, data.table, bad.data.rename)


# ---- comparison on the cross-validated values ----------------------------------------


def _fake_fit(
    rng: np.random.Generator, shift: float, method: str, folds: np.ndarray | None = None
) -> az.InferenceData:
    """A posterior with a log-likelihood and a cross-validation group, no sampling."""
    import xarray as xr

    from hibayes.diagnostics.cross_validation import _attach

    log_lik = rng.normal(-3.0 - shift, 0.3, size=(2, 100, 6))
    idata = az.from_dict(
        posterior={"mu": rng.normal(size=(2, 100))},
        log_likelihood={"obs": log_lik},
        observed_data={"obs": np.arange(6)},
    )
    exact = logsumexp(log_lik.reshape(-1, 6), axis=0) - np.log(200) - 0.5
    fold = np.full(6, -1) if folds is None else folds
    frame = pd.DataFrame(
        {
            "elpd_cv_i": exact,
            "cv_method": method,
            "cv_fold": fold,
            "loo_pit": np.full(6, 0.5),
        }
    )
    from hibayes.diagnostics.folds import folds_digest

    _attach(idata, frame, method, folds_digest(fold) if folds is not None else "")
    assert isinstance(idata["cross_validation"], xr.Dataset)
    return idata


def test_comparison_ranks_by_cross_validated_pointwise_values(tmp_path):
    from hibayes.diagnostics.comparison import compare_fits
    from hibayes.inference import load_idata, save_idata

    rng = np.random.default_rng(0)
    fits = {"good": _fake_fit(rng, 0.0, "reloo"), "worse": _fake_fit(rng, 1.0, "psis")}
    # What hibayes.compare reads back from idata.nc.
    fits["good"] = load_idata(save_idata(fits["good"], tmp_path / "idata.nc"))
    assert fits["good"]["cross_validation"].attrs["method"] == "reloo"
    assert set(fits["good"]["cross_validation"]["cv_method"].values.astype(str)) == {
        "reloo"
    }
    table = compare_fits(fits)
    assert list(table.index) == ["good", "worse"]
    assert list(table["cv_method"]) == ["reloo", "psis"]
    values = {n: f["cross_validation"]["elpd_cv_i"].values for n, f in fits.items()}
    diff = values["good"] - values["worse"]
    assert table.loc["worse", "elpd_diff"] == pytest.approx(diff.sum())
    assert table.loc["worse", "dse"] == pytest.approx(np.sqrt(6 * np.var(diff)))
    assert table.loc["good", "elpd_cv"] == pytest.approx(values["good"].sum())
    assert table.loc["good", "se"] == pytest.approx(np.sqrt(6 * np.var(values["good"])))
    # psis rows with bad k would be unresolved; the fake's are not flagged
    assert "elpd_loo" in table.columns


def test_comparison_refuses_fits_cross_validated_on_other_rows():
    from hibayes.diagnostics.comparison import compare_fits

    rng = np.random.default_rng(1)
    a = _fake_fit(rng, 0.0, "kfold", np.array([0, 0, 1, 1, 2, 2]))
    b = _fake_fit(rng, 0.0, "kfold", np.array([0, 1, 1, 2, 2, 0]))
    c = _fake_fit(rng, 0.0, "reloo")
    with pytest.raises(ValueError, match="held out different rows.*'b': kfold folds"):
        compare_fits({"a": a, "b": b})
    with pytest.raises(ValueError, match="'c': leave-one-out"):
        compare_fits({"a": a, "c": c})
    same = _fake_fit(rng, 0.5, "kfold", np.array([0, 0, 1, 1, 2, 2]))
    assert list(compare_fits({"a": a, "same": same})["cv_method"]) == ["kfold", "kfold"]


def test_psis_loo_pit_pairs_thinned_replicates_with_their_draws(
    shipped_fit, llm_evals, tmp_path
):
    """Replicates of a random half of the draws (``fit.max_predictive_values``) give
    the LOO-PIT of all the draws within Monte Carlo error, after a netCDF round trip
    (before, the values were NaN and a fit that thinned failed for lack of its plot)."""
    from dataclasses import replace

    from hibayes.diagnostics.cross_validation import _psis_pit
    from hibayes.inference.idata import PPC_DRAWS_ATTR, load_idata, save_idata

    full, _ = shipped_fit
    n_rows = full.idata.observed_data["obs"].size
    total = SETTINGS.chains * SETTINGS.samples
    thinned = fit_model(
        get_model("two_level_group_binomial"),
        llm_evals.features,
        {"prior_sigma_group_scale": 0.4},
        replace(SETTINGS, max_predictive_values=n_rows * total // 2),
        llm_evals.coords,
    )
    # Same seed and compiled sampler: the same posterior draws, fewer replicates.
    np.testing.assert_array_equal(
        full.idata.log_likelihood["obs"].values,
        thinned.idata.log_likelihood["obs"].values,
    )
    draws = np.asarray(thinned.idata.posterior_predictive.attrs[PPC_DRAWS_ATTR])
    assert draws.size == total // 2
    loaded = load_idata(save_idata(thinned.idata, tmp_path / "idata.nc"))
    pit = _psis_pit(loaded, information_criteria(loaded))
    np.testing.assert_array_equal(
        pit, _psis_pit(thinned.idata, information_criteria(thinned.idata))
    )
    # Monte Carlo sd of a self-normalised importance-sampling probability estimate.
    log_lik = full.idata.log_likelihood["obs"].values.reshape(total, n_rows)[draws]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        log_w, _ = az.psislw(-log_lik.T.astype(np.float64))
    w = np.exp(np.asarray(log_w)).T  # (draw, row), each column sums to 1
    y_rep = loaded.posterior_predictive["obs"].values.reshape(-1, n_rows)
    y = loaded.observed_data["obs"].values.reshape(1, -1)
    below = (y_rep < y) + 0.5 * (y_rep == y)
    mcse = np.sqrt(np.sum(w**2 * (below - pit) ** 2, axis=0))
    reference = _psis_pit(full.idata, information_criteria(full.idata))
    assert np.all(np.isfinite(pit))
    assert np.all(np.abs(pit - reference) <= 4 * mcse + 0.01), (pit, reference, mcse)


def test_psis_loo_pit_reuses_the_loo_weights(shipped_fit):
    """The LOO-PIT from PSIS-LOO's own weights equals the mid-PIT under
    ``az.psislw``'s weights of every draw, and a collapsed fit's copies of one row
    use their distinct row's weights."""
    from hibayes.diagnostics.cross_validation import _psis_pit

    result, criteria = shipped_fit
    idata = result.idata
    assert criteria.log_weights is not None
    n_rows = idata.observed_data["obs"].size
    log_lik = idata.log_likelihood["obs"].values.reshape(-1, n_rows)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        log_w, _ = az.psislw(-log_lik.T.astype(np.float64), criteria.reff)
    w = np.exp(np.asarray(log_w)).T
    y_rep = idata.posterior_predictive["obs"].values.reshape(-1, n_rows)
    y = idata.observed_data["obs"].values.reshape(1, -1)
    expected = np.sum(w * ((y_rep < y) + 0.5 * (y_rep == y)), axis=0)
    np.testing.assert_allclose(_psis_pit(idata, criteria), expected, atol=1e-9)
    # Rows 0 and 1 as copies of one distinct row (weight row 0): row 1's PIT is its
    # own replicates under row 0's weights.
    shared = criteria._replace(
        log_weights=criteria.log_weights[[0]], weight_row=np.zeros(n_rows, dtype=int)
    )
    w0 = np.exp(np.asarray(log_w)[0])[:, None]
    below = (y_rep < y) + 0.5 * (y_rep == y)
    np.testing.assert_allclose(
        _psis_pit(idata, shared), np.sum(w0 * below, axis=0), atol=1e-9
    )
