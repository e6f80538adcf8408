"""Model checks as figures: posterior predictive, Pareto k, prior against posterior."""

from __future__ import annotations

import logging
from typing import Any

import arviz as az
import numpy as np
from matplotlib.figure import Figure

from ._base import (
    MAX_K_LABELS,
    MAX_PPC_ROWS,
    _quiet,
)

log = logging.getLogger(__name__)


def _observation_labels(idata: az.InferenceData, n: int) -> list[str]:
    """ "model-a / task-1" per observation, from ``<cat>_index`` constant data."""
    constant = idata.constant_data if "constant_data" in idata.groups() else {}
    parts = []
    for dim in idata.posterior.dims:
        key = f"{dim}_index"
        if key in constant and constant[key].shape == (n,):
            levels = idata.posterior[dim].values
            parts.append([str(levels[i]) for i in np.asarray(constant[key].values)])
    if not parts:
        return [f"obs {i}" for i in range(n)]
    return [" / ".join(p) for p in zip(*parts, strict=True)]


def _ppc_binomial(idata: az.InferenceData, obs: np.ndarray, rep: np.ndarray) -> Figure:
    n_total = np.asarray(idata.constant_data["n_total"].values, dtype=float)
    observed, replicated = obs / n_total, rep / n_total
    lo, med, hi = np.quantile(replicated, [0.03, 0.5, 0.97], axis=0)
    inside = float(np.mean((observed >= lo) & (observed <= hi)))
    n = len(obs)
    if n <= MAX_PPC_ROWS:
        fig = Figure(figsize=(8, max(3.0, 0.3 * n + 1.4)), layout="constrained")
        ax = fig.add_subplot()
        y = np.arange(n)[::-1]
        ax.hlines(
            y, lo, hi, color="C0", lw=2.5, alpha=0.6, label="replicated 94% interval"
        )
        ax.plot(med, y, "|", color="C0", ms=10, label="replicated median")
        ax.plot(observed, y, "o", color="k", ms=5, label="observed")
        ax.set_yticks(y, _observation_labels(idata, n))
        ax.set_ylabel("observation")
        ax.set_xlabel("success rate (successes / trials)")
    else:
        order = np.argsort(med)
        x = np.arange(n)
        fig = Figure(figsize=(10, 4.5), layout="constrained")
        ax = fig.add_subplot()
        ax.vlines(
            x,
            lo[order],
            hi[order],
            color="C0",
            lw=1.5,
            alpha=0.5,
            label="replicated 94% interval",
        )
        ax.plot(x, observed[order], "o", color="k", ms=3, label="observed")
        ax.set_xlabel("observation, sorted by predicted success rate")
        ax.set_ylabel("success rate (successes / trials)")
    fig.legend(loc="outside lower center", ncols=3, fontsize="small")
    ax.set_title(
        "Posterior predictive check: observed vs replicated success rate\n"
        f"({inside:.0%} of {n} observations inside the 94% interval)"
    )
    return fig


def _ppc_classes(obs: np.ndarray, rep: np.ndarray, n_classes: int) -> Figure:
    classes = np.arange(n_classes)
    observed = np.bincount(obs.astype(int), minlength=n_classes)[:n_classes]
    counts = (rep[..., None] == classes).sum(axis=1)  # (draws, classes)
    lo, med, hi = np.quantile(counts, [0.03, 0.5, 0.97], axis=0)
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.add_subplot()
    ax.bar(classes, observed, color="0.75", label="observed")
    ax.errorbar(
        classes,
        med,
        yerr=[med - lo, hi - med],
        fmt="o",
        color="C0",
        capsize=3,
        label="replicated median, 94% interval",
    )
    ax.set_xticks(classes)
    ax.set_xlabel("class (ordinal score)")
    ax.set_ylabel("number of observations")
    ax.legend(loc="best", fontsize="small")
    ax.set_title("Posterior predictive check: observed vs replicated class counts")
    return fig


def plot_ppc(idata: az.InferenceData) -> Figure:
    """Posterior predictive check of ``obs``, in the form that reads best.

    Binomial counts (``n_total`` in constant data): per observation, the 94%
    interval of the replicated success rate against the observed rate. Ordinal
    or other small-integer outcomes: observed class counts against replicated.
    Anything else: :func:`arviz.plot_ppc` densities.
    """
    if (
        "posterior_predictive" not in idata.groups()
        or "obs" not in idata.posterior_predictive
    ):
        raise ValueError("no posterior predictive draws of 'obs'")
    obs = np.asarray(idata.observed_data["obs"].values)
    rep = np.asarray(idata.posterior_predictive["obs"].values)
    rep = rep.reshape((-1, *obs.shape))
    constant = idata.constant_data if "constant_data" in idata.groups() else {}
    if (
        obs.ndim == 1
        and "n_total" in constant
        and constant["n_total"].shape == obs.shape
    ):
        return _ppc_binomial(idata, obs, rep)
    integer = obs.dtype.kind in "iu" and rep.dtype.kind in "iu"
    if integer and obs.min() >= 0 and "num_classes" in constant:
        return _ppc_classes(
            obs.ravel(),
            rep.reshape(len(rep), -1),
            int(np.ravel(constant["num_classes"].values)[0]),
        )
    if integer and obs.min() >= 0 and max(obs.max(), rep.max()) < 30:
        return _ppc_classes(
            obs.ravel(), rep.reshape(len(rep), -1), int(max(obs.max(), rep.max())) + 1
        )
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.add_subplot()
    with _quiet():
        az.plot_ppc(idata, var_names=["obs"], num_pp_samples=100, ax=ax, show=False)
    ax.set_xlabel("obs")
    ax.set_ylabel("density")
    ax.set_title("Posterior predictive check: density of observed vs replicated obs")
    return fig


def plot_pareto_k(idata: az.InferenceData, loo: Any = None) -> Figure:
    """PSIS-LOO Pareto k of each observation, with both reliability thresholds.

    Lines mark k = 0.7 and the sample-size threshold ``min(1 - 1/log10(S), 0.7)``.

    :param loo: pointwise ``az.loo`` of ``idata`` if already computed.
    """
    if loo is None:
        if "log_likelihood" not in idata.groups():
            raise ValueError(
                "no log_likelihood group: Pareto k needs pointwise log-likelihood"
            )
        with _quiet():
            loo = az.loo(idata, pointwise=True)
    khat = np.asarray(loo.pareto_k.values)
    good_k, n_draws = float(loo.good_k), int(loo.n_samples)
    fig = Figure(figsize=(9, 4), layout="constrained")
    ax = fig.add_subplot()
    with _quiet():
        az.plot_khat(loo, ax=ax, textsize=10, show=False)
    ax.axhline(0.7, color="C3", ls="--", lw=1, label="k = 0.7")
    if good_k < 0.7:
        ax.axhline(
            good_k,
            color="C1",
            ls=":",
            lw=1.5,
            label=f"sample-size threshold {good_k:.2f} (S = {n_draws})",
        )
    ax.set_ylim(min(ax.get_ylim()[0], -0.1), max(ax.get_ylim()[1], 0.8))
    labels = _observation_labels(idata, khat.size)
    n_bad = int(np.sum(khat > good_k))
    note = ""
    if khat.size <= MAX_PPC_ROWS:
        ax.set_xticks(np.arange(khat.size), labels, rotation=45, ha="right")
    else:
        flat = khat.ravel()
        bad = np.flatnonzero(flat > good_k)
        # Thousands of labels cost minutes and cover the plot: name the worst only.
        worst = bad[np.argsort(-flat[bad], kind="stable")[:MAX_K_LABELS]]
        for i in np.sort(worst):
            ax.annotate(
                labels[i],
                (i, flat[i]),
                fontsize="x-small",
                xytext=(2, 2),
                textcoords="offset points",
            )
        if bad.size > worst.size:
            note = f"; the {worst.size} largest named"
    ax.set_xlabel("observation")
    ax.set_ylabel("Pareto k")
    fig.legend(loc="outside lower center", ncols=2, fontsize="small")
    ax.set_title(
        f"PSIS-LOO Pareto k per observation ({n_bad} of "
        f"{khat.size} above {good_k:.2f}{note})"
    )
    return fig


def plot_prior_posterior(idata: az.InferenceData, var_name: str) -> Figure:
    """Prior vs posterior density of one scalar variable (needs the prior group)."""
    if "prior" not in idata.groups() or var_name not in idata.prior:
        raise ValueError(f"no prior draws of '{var_name}'")
    if var_name not in idata.posterior or idata.posterior[var_name].ndim != 2:
        raise ValueError(f"'{var_name}' is not a scalar posterior variable")
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    for group, color in (("prior", "0.5"), ("posterior", "C0")):
        values = np.asarray(idata[group][var_name].values).ravel()
        grid, density = az.kde(values)
        ax.plot(grid, density, color=color, label=f"{group} ({values.size} draws)")
        ax.fill_between(grid, density, color=color, alpha=0.2)
    ax.set_xlabel(var_name)
    ax.set_ylabel("density")
    ax.legend(loc="best", fontsize="small")
    ax.set_title(f"Prior vs posterior: {var_name}")
    return fig


def plot_loo_pit(idata: az.InferenceData) -> Figure:
    """Calibration: ECDF of the leave-out PIT values against the uniform.

    Reads the ``cross_validation`` group (:mod:`hibayes.diagnostics.cross_validation`):
    each row's mid-PIT under the predictive that left it out (an exact refit's
    draws where PSIS was unreliable). A calibrated model's PIT values are
    uniform; the band is the pointwise 95% range of a uniform sample's ECDF.
    """
    from scipy.stats import binom

    if (
        "cross_validation" not in idata.groups()
        or "loo_pit" not in idata.cross_validation
    ):
        raise ValueError("no LOO-PIT values: the fit has no cross-validation")
    cv = idata.cross_validation
    pit = np.asarray(cv["loo_pit"].values, dtype=float)
    methods = np.asarray(cv["cv_method"].values).astype(str)
    keep = np.isfinite(pit)
    if not keep.any():
        raise ValueError(
            "no LOO-PIT values (thinned replicates whose posterior draws were not recorded)"
        )
    pit, n = np.sort(pit[keep]), int(keep.sum())
    grid = np.linspace(0, 1, 201)
    lo, hi = binom.ppf(0.025, n, grid) / n, binom.ppf(0.975, n, grid) / n
    fig = Figure(figsize=(6, 4.2), layout="constrained")
    ax = fig.add_subplot()
    ax.fill_between(grid, lo, hi, color="0.85", label="uniform, 95% pointwise")
    ax.plot(grid, grid, color="0.4", lw=1, ls="--")
    ax.step(
        np.concatenate([[0], pit, [1]]),
        np.concatenate([[0], np.arange(1, n + 1) / n, [1]]),
        where="post",
        color="C0",
        label="LOO-PIT ECDF",
    )
    ax.set_xlabel("LOO-PIT (mid-PIT for counts)")
    ax.set_ylabel("ECDF")
    counts = ", ".join(
        f"{m}: {c}" for m, c in zip(*np.unique(methods[keep], return_counts=True))
    )
    ax.set_title(f"LOO-PIT calibration, {n} rows ({counts})", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    return fig
