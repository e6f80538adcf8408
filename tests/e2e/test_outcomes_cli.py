"""Continuous outcomes and column names as written, through the real CLI.

A Gaussian hierarchical model with known per-row standard errors (a passthrough
column) fits negative, fractional outcomes; with the group spread known, the
posterior is Gaussian in closed form, and the fit's means and sds must agree with
it within Monte Carlo error. The README's "Your own data" command runs as printed.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import pytest
from helpers.server import run_hibayes

pytestmark = pytest.mark.slow

PRIOR_MU_SCALE, TAU = 2.0, 0.6

GAUSSIAN_MODEL = textwrap.dedent('''
    import numpyro, numpyro.distributions as dist
    from hibayes.model import Model, check_features, model
    from hibayes.process import Features

    @model(outcome="continuous")
    def gaussian_known_se(prior_mu_scale: float = 1.0, tau: float = 1.0) -> Model:
        """y_i ~ N(theta[item_i], se_i), theta ~ N(mu, tau), mu ~ N(0, prior_mu_scale)."""
        def program(features: Features) -> None:
            check_features(features, ["obs", "se", "item_index", "num_item"])
            mu = numpyro.sample("mu", dist.Normal(0.0, prior_mu_scale))
            theta = numpyro.sample(
                "theta", dist.Normal(mu, tau).expand([features["num_item"]]))
            numpyro.sample("obs", dist.Normal(theta[features["item_index"]],
                                              features["se"]), obs=features["obs"])
        return program
''')


def closed_form(y: np.ndarray, se: np.ndarray, item: np.ndarray, n_items: int):
    """Posterior mean and sd of (mu, theta_1..G): a linear Gaussian model, so the
    posterior precision is the prior's plus the data's, Q = prior + X' S^-1 X."""
    q = np.zeros((n_items + 1, n_items + 1))
    q[0, 0] = 1 / PRIOR_MU_SCALE**2 + n_items / TAU**2
    q[0, 1:] = q[1:, 0] = -1 / TAU**2
    b = np.zeros(n_items + 1)
    for g in range(n_items):
        rows = item == g
        q[g + 1, g + 1] = 1 / TAU**2 + np.sum(1 / se[rows] ** 2)
        b[g + 1] = np.sum(y[rows] / se[rows] ** 2)
    cov = np.linalg.inv(q)
    return cov @ b, np.sqrt(np.diag(cov))


def test_gaussian_model_with_known_errors_matches_its_closed_form(tmp_path: Path):
    rng = np.random.default_rng(3)
    n_items, per_item = 5, 4
    item = np.repeat(np.arange(n_items), per_item)
    theta = -0.4 + TAU * rng.normal(size=n_items)
    se = rng.uniform(0.2, 1.0, size=item.size).round(3)
    y = (theta[item] + se * rng.normal(size=item.size)).round(4)
    assert (y < 0).any() and (y > 0).any()
    labels = np.array([f"item-{g}" for g in range(n_items)])
    pd.DataFrame({"item": labels[item], "y": y, "se": se}).to_csv(
        tmp_path / "effects.csv", index=False
    )
    (tmp_path / "gauss.py").write_text(GAUSSIAN_MODEL)
    done = run_hibayes(
        tmp_path,
        "data=table",
        "data.path=effects.csv",
        "data.observed=y",
        "data.categorical=[item]",
        "data.passthrough=[se]",
        "model.path=gauss.py",
        "model.name=gaussian_known_se",
        f"+model.prior_mu_scale={PRIOR_MU_SCALE}",
        f"+model.tau={TAU}",
        "fit=quick",
        "fit.samples=1000",
        "fit.warmup=500",
        "fit.prior_samples=0",
        "tracking=none",
        "hydra.run.dir=out",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    idata = az.from_netcdf(tmp_path / "out" / "idata.nc")
    mean, sd = closed_form(y, se, item, n_items)
    post = idata.posterior
    draws = np.concatenate(
        [post["mu"].values.reshape(-1, 1), post["theta"].values.reshape(-1, n_items)],
        axis=1,
    )
    mcse = np.concatenate(
        [
            az.mcse(idata, var_names=["mu"])["mu"].values.ravel(),
            az.mcse(idata, var_names=["theta"])["theta"].values.ravel(),
        ]
    )
    # Means within 4 Monte Carlo standard errors; sds within 15% (the sd of an sd
    # estimate from ~1000 effective draws is ~2-3%).
    np.testing.assert_array_less(np.abs(draws.mean(axis=0) - mean), 4 * mcse + 1e-3)
    np.testing.assert_allclose(draws.std(axis=0), sd, rtol=0.15)
    assert float(idata.observed_data["obs"].min()) < 0  # the data went in unchanged
    np.testing.assert_allclose(idata.observed_data["obs"].values, y)


def test_readme_own_data_example_runs(tmp_path: Path):
    rng = np.random.default_rng(0)
    rows = [
        (m, t, "C" if rng.random() < p else "I")
        for m, p in (("model-a", 0.3), ("model-b", 0.7))
        for t in ("arith", "code")
        for _ in range(20)
    ]
    pd.DataFrame(rows, columns=["model", "task", "score"]).to_csv(
        tmp_path / "results.csv", index=False
    )
    done = run_hibayes(
        tmp_path,
        "data=table",
        "data.path=results.csv",
        "data.observed=score",
        "data.categorical=[model]",
        "data.rename={model: group}",
        "data.aggregate=true",
        "fit=quick",
        "fit.prior_samples=0",
        "tracking=none",
        "hydra.run.dir=out",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    idata = az.from_netcdf(tmp_path / "out" / "idata.nc")
    assert list(idata.posterior["group_effects"].coords["group"].values) == [
        "model-a",
        "model-b",
    ]
    np.testing.assert_array_equal(
        idata.observed_data["obs"].values,
        [sum(r[0] == m and r[2] == "C" for r in rows) for m in ("model-a", "model-b")],
    )


def test_rows_without_trials_are_dropped_when_asked(tmp_path: Path):
    (tmp_path / "counts.csv").write_text(
        "group,k,n\na,3,10\nb,0,0\nc,7,10\nd,0,0\ne,5,10\n"
    )
    table = (
        "data=table",
        "data.path=counts.csv",
        "data.observed=k",
        "data.n_total=n",
        "data.categorical=[group]",
        "fit=quick",
        "fit.prior_samples=0",
        "tracking=none",
    )
    refused = run_hibayes(tmp_path, *table, "hydra.run.dir=refused")
    assert refused.returncode != 0
    assert "row with no trials (n = 0)" in refused.stderr
    assert "data row 1 (0-based) has value 0 (2 offending rows)" in refused.stderr
    done = run_hibayes(tmp_path, *table, "data.drop_empty=true", "hydra.run.dir=out")
    assert done.returncode == 0, done.stderr[-3000:]
    log = done.stdout + done.stderr
    assert (
        "counts.csv: dropped 2 row(s) with n = 0 (data.drop_empty=true); 3 left" in log
    )
    idata = az.from_netcdf(tmp_path / "out" / "idata.nc")
    np.testing.assert_array_equal(idata.observed_data["obs"].values, [3, 7, 5])
    assert list(idata.posterior["group_effects"].coords["group"].values) == [
        "a",
        "c",
        "e",
    ]
