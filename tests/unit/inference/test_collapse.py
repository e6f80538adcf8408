"""fit.collapse_identical_rows: the same log density, log-likelihood and posterior."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from helpers.posterior import assert_same_posterior
from numpyro.infer.util import log_density

from hibayes.diagnostics import information_criteria
from hibayes.inference import FitSettings, fit_model
from hibayes.inference.collapse import collapse_rows
from hibayes.inference.program import build_program
from hibayes.model import get_model, model

ORDINAL = {"main_effects": ["grader", "llm"]}


def test_unique_rows_in_data_order_with_counts_and_the_way_back():
    arrays = {
        "obs": np.array([2, 0, 2, 1, 0, 2]),
        "x": np.array([0.5, 1.0, 0.5, 0.5, 1.0, -0.5], dtype=np.float32),
        "pair": np.array([[1, 2], [3, 4], [1, 2], [1, 2], [3, 4], [1, 2]]),
        "per_group": np.array([10.0, 20.0]),  # not one entry per row: kept whole
    }
    rows = collapse_rows(arrays)
    np.testing.assert_array_equal(rows.arrays["obs"], [2, 0, 1, 2])
    np.testing.assert_array_equal(rows.arrays["x"], [0.5, 1.0, 0.5, -0.5])
    np.testing.assert_array_equal(rows.arrays["pair"], [[1, 2], [3, 4], [1, 2], [1, 2]])
    np.testing.assert_array_equal(rows.arrays["per_group"], arrays["per_group"])
    np.testing.assert_array_equal(rows.weights, [2, 2, 1, 1])
    assert rows.weights.dtype == np.float32
    assert (rows.n_rows, rows.n_unique) == (6, 4)
    for key in ("obs", "x", "pair"):
        np.testing.assert_array_equal(rows.arrays[key][rows.inverse], arrays[key])
    np.testing.assert_array_equal(
        rows.expand(np.array([[10, 20, 30, 40]]), axis=1), [[10, 20, 10, 30, 20, 40]]
    )


def test_weighted_distinct_rows_give_the_full_log_density(grader_data):
    """Exact: the density NUTS sees is the one over every row, at any parameter value."""
    factory = get_model("ordered_logistic_model")
    full = build_program(factory, grader_data.features, ORDINAL)
    collapsed = build_program(
        factory, grader_data.features, ORDINAL, collapse_identical_rows=True
    )
    assert full.rows is None
    assert (
        collapsed.rows is not None and collapsed.rows.n_unique < collapsed.rows.n_rows
    )
    assert collapsed.structure_key != full.structure_key
    for i in range(5):
        point = numpyro.infer.Predictive(full.fn, num_samples=1)(
            jax.random.PRNGKey(i), full.arrays, full.hyper
        )
        params = {k: v[0] for k, v in point.items() if k in full.sites.latent}
        lp_full, _ = log_density(full.fn, (full.arrays, full.hyper), {}, params)
        lp_coll, _ = log_density(
            collapsed.fn, (collapsed.sampled_arrays, collapsed.hyper), {}, params
        )
        np.testing.assert_allclose(float(lp_coll), float(lp_full), rtol=2e-5)


@pytest.mark.slow
def test_collapsed_fit_has_the_same_posterior_and_per_row_outputs(grader_data):
    def fit(collapse: bool):
        return fit_model(
            get_model("ordered_logistic_model"),
            grader_data.features,
            ORDINAL,
            FitSettings(
                samples=600,
                warmup=400,
                chains=2,
                dense_mass=True,
                collapse_identical_rows=collapse,
                prior_samples=20,
                posterior_predictive_samples=50,
            ),
            grader_data.coords,
        )

    reference, collapsed = fit(False), fit(True)
    n_rows = grader_data.features["obs"].shape[0]
    idata = collapsed.idata
    assert idata.log_likelihood["obs"].shape == (2, 600, n_rows)
    assert idata.posterior_predictive["obs"].shape[-1] == n_rows
    assert idata.prior_predictive["obs"].shape[-1] == n_rows
    np.testing.assert_array_equal(
        idata.observed_data["obs"], grader_data.features["obs"]
    )
    assert idata.posterior.attrs["likelihood_rows"] == collapsed.program.rows.n_unique
    # The pointwise log-likelihood is what the full program gives for the same draws.
    full = reference.program
    draws = {k: idata.posterior[k].values for k in full.sites.latent}
    direct = numpyro.infer.log_likelihood(
        full.fn, draws, full.arrays, full.hyper, batch_ndims=2
    )["obs"]
    np.testing.assert_allclose(
        idata.log_likelihood["obs"].values, np.asarray(direct), rtol=1e-5, atol=1e-5
    )
    # LOO and WAIC over distinct rows equal ArviZ's over every row.
    import arviz as az

    loo, waic = information_criteria(idata, collapsed.program.rows.inverse)[:2]
    # LOO is smoothed in float64 (hibayes.diagnostics.psis); ArviZ smooths float32
    # draws in float32, so it is given them in float64.
    wide = idata.copy()
    wide.log_likelihood["obs"] = wide.log_likelihood["obs"].astype(np.float64)
    ref_loo, ref_waic = az.loo(wide, pointwise=True), az.waic(idata, pointwise=True)
    assert list(loo.index) == list(ref_loo.index) and list(waic.index) == list(
        ref_waic.index
    )
    for key in ("elpd_loo", "se", "p_loo"):
        np.testing.assert_allclose(loo[key], ref_loo[key], rtol=1e-5)
    for key in ("elpd_waic", "se", "p_waic"):
        np.testing.assert_allclose(waic[key], ref_waic[key], rtol=1e-5)
    for key in ("n_data_points", "n_samples", "warning", "good_k", "scale"):
        assert loo[key] == ref_loo[key], key
    np.testing.assert_allclose(loo.loo_i.values, ref_loo.loo_i.values, rtol=1e-6)
    np.testing.assert_allclose(loo.pareto_k.values, ref_loo.pareto_k.values, rtol=1e-6)
    np.testing.assert_allclose(waic.waic_i.values, ref_waic.waic_i.values, rtol=1e-6)
    assert loo.loo_i.dims == ref_loo.loo_i.dims
    np.testing.assert_array_equal(
        loo.loo_i[loo.loo_i.dims[0]], ref_loo.loo_i[loo.loo_i.dims[0]]
    )

    assert_same_posterior(
        reference,
        collapsed,
        ["intercept", "cutpoints", "grader_effects", "llm_effects"],
    )


@model
def per_row_latent(prior_scale: float = 1.0):
    """A latent effect per row: its draws must stay per row, so rows are not collapsed."""

    def program(features):
        n = features["obs"].shape[0]
        u = numpyro.sample("u", dist.Normal(0, prior_scale).expand([n]))
        numpyro.sample("obs", dist.Bernoulli(logits=u), obs=features["obs"])

    return program


@model
def shared_rate(prior_scale: float = 1.0):
    """One rate for every row."""

    def program(features):
        rate = numpyro.sample("rate", dist.Normal(0, prior_scale))
        numpyro.sample("obs", dist.Bernoulli(logits=rate), obs=features["obs"])

    return program


def test_rows_stay_whole_when_a_site_is_per_row_or_nothing_repeats():
    repeated = {"obs": np.array([0, 1, 1, 0, 1])}
    assert (
        build_program(per_row_latent, repeated, collapse_identical_rows=True).rows
        is None
    )
    program = build_program(shared_rate, repeated, collapse_identical_rows=True)
    assert program.rows is not None and program.rows.n_unique == 2
    distinct = {"obs": np.array([0, 1]), "x": np.array([1.0, 2.0])}
    assert (
        build_program(shared_rate, distinct, collapse_identical_rows=True).rows is None
    )


@pytest.mark.slow
def test_the_ordinal_model_collapses_rows_from_the_command_line(tmp_path):
    """Its config turns collapsing on; the run says so and LOO still has every row."""
    from helpers.mlflow_store import all_runs, run_module

    done = run_module(
        "hibayes.fit", tmp_path, "fit=quick", "model=ordered_logistic_model"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = all_runs(tmp_path)
    assert run.data.params["fit.collapse_identical_rows"] == "True"
    tag = run.data.tags["hibayes.likelihood_rows"]
    assert tag.endswith("distinct of 600 (fit.collapse_identical_rows)"), tag
    assert int(tag.split()[0]) < 600
    pointwise = Path(run.data.tags["hibayes.output_dir"]) / "loo_pointwise.csv"
    assert (
        len(pointwise.read_text().strip().splitlines()) == 600 + 1
    )  # header + every row
