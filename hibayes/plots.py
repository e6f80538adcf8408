"""Plots of a fit (trace, forest, predictive check, Pareto k) and of comparisons.

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot,
so no figure is registered globally and nothing leaks over a sweep of many fits:
drop the reference (or save it) and it is gone. Axes are labelled by category
name, never ``<var>_dim_0``. Large posteriors are capped (at most
:data:`MAX_TRACE_VARS` trace rows, :data:`MAX_FOREST_ROWS` forest rows) so a plot
stays readable and fast. :func:`save_fit_plots` never raises for a plot it cannot
draw: it logs a warning and skips it. Nothing here fits or compares models.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import arviz as az
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure

from .comparison import _common_vars

__all__ = [
    "MAX_FOREST_ROWS",
    "MAX_TRACE_LEVELS",
    "MAX_TRACE_VARS",
    "effect_vars",
    "plot_comparison",
    "plot_forest",
    "plot_forest_side_by_side",
    "plot_pareto_k",
    "plot_ppc",
    "plot_prior_posterior",
    "plot_trace",
    "save_fit_plots",
    "scalar_vars",
]

log = logging.getLogger(__name__)

MAX_TRACE_VARS = 8
MAX_TRACE_LEVELS = 20
MAX_FOREST_ROWS = 50
MAX_PPC_ROWS = 40
HDI_PROB = 0.94
_SAMPLE_DIMS = ("chain", "draw")
_DEFAULT_DIM = re.compile(r"_dim_\d+$")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Close any pyplot figure opened inside, and keep ArviZ warnings off stderr."""
    before = set(plt.get_fignums())
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
        for message in dict.fromkeys(str(w.message) for w in caught):
            log.debug("while plotting: %s", message)
    finally:
        for num in set(plt.get_fignums()) - before:
            plt.close(num)


def _internal(name: str) -> bool:
    """Sampling-internal sites: non-centred ``z_*`` and coded ``*_constrained/_raw``."""
    return name.startswith("z_") or name.endswith(("_constrained", "_raw"))


def _category_dims(idata: az.InferenceData) -> set[str]:
    """Posterior dims that are data categories (labelled by level name)."""
    constant = idata.constant_data if "constant_data" in idata.groups() else {}
    out = set()
    for dim in idata.posterior.dims:
        dim = str(dim)
        if dim in _SAMPLE_DIMS or _DEFAULT_DIM.search(dim) or _internal(dim):
            continue
        labels = idata.posterior[dim].values
        if f"{dim}_index" in constant or labels.dtype.kind in "OUS":
            out.add(dim)
    return out


def effect_vars(idata: az.InferenceData) -> list[str]:
    """Posterior variables whose non-sample dims are all named data categories.

    For example ``group_effects``, ``grader_effects``, ``model_task_effects``;
    ``z_*`` and ``*_constrained``/``*_raw`` sampling-internal sites are excluded.
    """
    cats = _category_dims(idata)
    out = []
    for name, var in idata.posterior.data_vars.items():
        dims = [d for d in var.dims if d not in _SAMPLE_DIMS]
        if dims and not _internal(str(name)) and all(d in cats for d in dims):
            out.append(str(name))
    return out


def scalar_vars(idata: az.InferenceData) -> list[str]:
    """Scalar posterior variables (``sigma_group``, ``overall_mean``, ``intercept``).

    Non-centred ``z_*`` and coded ``*_constrained``/``*_raw`` sites are excluded.
    """
    return [
        str(name)
        for name, var in idata.posterior.data_vars.items()
        if set(var.dims) <= set(_SAMPLE_DIMS) and not _internal(str(name))
    ]


def _flatten(
    posterior: xr.Dataset,
    names: Sequence[str],
    max_rows: int | None = None,
    per_var: int | None = None,
) -> tuple[xr.Dataset, list[str]]:
    """One labelled dim per variable ("p1 / small / t1"), rows capped.

    ``max_rows`` caps the rows of all variables together: the budget is shared
    out smallest variable first, so a huge variable is truncated (keeping its
    first levels) before a small one loses a row. ``per_var`` caps each one.
    """
    sizes = {
        n: int(
            np.prod(
                [posterior.sizes[d] for d in posterior[n].dims if d not in _SAMPLE_DIMS]
            )
        )
        for n in names
    }
    keep, left = {}, max_rows if max_rows is not None else sum(sizes.values())
    for i, n in enumerate(sorted(names, key=lambda n: sizes[n])):
        keep[n] = max(1, min(sizes[n], left // (len(names) - i), per_var or sizes[n]))
        left -= keep[n]
    out, notes = {}, []
    for n in names:
        var = posterior[n]
        dims = [d for d in var.dims if d not in _SAMPLE_DIMS]
        if len(dims) > 1:
            labels = [
                " / ".join(str(v) for v in combo)
                for combo in itertools.product(*(var[d].values for d in dims))
            ]
            values = var.values.reshape((*var.shape[:2], -1))
            var = xr.DataArray(
                values,
                dims=(*_SAMPLE_DIMS, f"{n}_level"),
                coords={f"{n}_level": labels},
            )
            dims = [f"{n}_level"]
        if keep[n] < sizes[n]:
            var = var.isel({dims[0]: slice(0, keep[n])})
            notes.append(f"{n}: first {keep[n]} of {sizes[n]}")
        out[n] = var.drop_vars([c for c in var.coords if c in _SAMPLE_DIMS])
    return xr.Dataset(out), notes


def _default_forest_vars(idata: az.InferenceData) -> list[str]:
    return effect_vars(idata) or scalar_vars(idata)


def plot_trace(
    idata: az.InferenceData, var_names: Sequence[str] | None = None
) -> Figure:
    """Trace and per-chain density of at most :data:`MAX_TRACE_VARS` variables.

    Effects with many levels show their first :data:`MAX_TRACE_LEVELS`.

    :param var_names: default: scalar hyperparameters first, then effects.
    """
    names = list(var_names or (scalar_vars(idata) + effect_vars(idata)))[
        :MAX_TRACE_VARS
    ]
    if not names:
        raise ValueError("no posterior variables to trace")
    data, notes = _flatten(idata.posterior, names, per_var=MAX_TRACE_LEVELS)
    groups = {"posterior": data}
    if "sample_stats" in idata.groups():
        groups["sample_stats"] = idata.sample_stats  # divergence ticks
    fig = Figure(figsize=(11, 1.9 * len(names) + 0.8), layout="constrained")
    axes = fig.subplots(len(names), 2, squeeze=False)
    with _quiet():
        az.plot_trace(
            az.InferenceData(**groups),
            var_names=names,
            axes=axes,
            compact=True,
            combined=False,
            show=False,
        )
    for row in axes:
        row[0].set_ylabel("density")
        row[1].set_ylabel("value")
    axes[-1][0].set_xlabel("value")
    axes[-1][1].set_xlabel("draw")
    n_chains = idata.posterior.sizes["chain"]
    fig.suptitle(
        f"Trace plot: posterior draws of {n_chains} chains "
        "(vector effects overlaid per level)"
        + (f"\n(levels capped: {'; '.join(notes)})" if notes else "")
    )
    return fig


def plot_forest(
    idata: az.InferenceData,
    var_names: Sequence[str] | None = None,
    max_rows: int = MAX_FOREST_ROWS,
) -> Figure:
    """Posterior mean and 94% HDI of each effect, rows named by category.

    :param var_names: default: the effect variables, or the scalars if none.
    :param max_rows: rows shown in all; larger effects keep their first levels.
    """
    names = list(var_names or _default_forest_vars(idata))
    if not names:
        raise ValueError("no posterior variables for a forest plot")
    data, notes = _flatten(idata.posterior, names, max_rows)
    return _forest(
        [data],
        None,
        notes,
        "Forest plot: posterior mean, interquartile range (thick) and 94% HDI (thin)",
    )


def _forest(
    datasets: list[xr.Dataset],
    model_names: list[str] | None,
    notes: list[str],
    title: str,
) -> Figure:
    rows = sum(
        int(np.prod([s for d, s in v.sizes.items() if d not in _SAMPLE_DIMS]))
        for v in datasets[0].data_vars.values()
    )
    per_row = 0.28 * (len(datasets) if model_names else 1)
    fig = Figure(figsize=(10, max(3.0, per_row * rows + 1.4)), layout="constrained")
    ax = fig.add_subplot()
    with _quiet():
        az.plot_forest(
            datasets,
            model_names=model_names,
            combined=True,
            var_names=list(datasets[0].data_vars),
            hdi_prob=HDI_PROB,
            textsize=9,
            ax=ax,
            show=False,
        )
    legend = ax.get_legend()
    if legend is not None:  # below the plot, off the rows
        handles, texts = (
            legend.legend_handles,
            [t.get_text() for t in legend.get_texts()],
        )
        legend.remove()
        fig.legend(handles, texts, loc="outside lower center", ncols=min(len(texts), 4))
    ax.set_xlabel("posterior value (model scale)")
    ax.set_title(title + (f"\n(rows capped: {'; '.join(notes)})" if notes else ""))
    return fig


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


def plot_pareto_k(idata: az.InferenceData) -> Figure:
    """PSIS-LOO Pareto k of each observation, with both reliability thresholds.

    Lines mark k = 0.7 and the sample-size threshold ``min(1 - 1/log10(S), 0.7)``.
    """
    if "log_likelihood" not in idata.groups():
        raise ValueError(
            "no log_likelihood group: Pareto k needs pointwise log-likelihood"
        )
    with _quiet():
        loo = az.loo(idata, pointwise=True)
    khat = np.asarray(loo.pareto_k.values)
    n_draws = idata.posterior.sizes["chain"] * idata.posterior.sizes["draw"]
    good_k = min(1 - 1 / np.log10(n_draws), 0.7)
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
    if khat.size <= MAX_PPC_ROWS:
        ax.set_xticks(np.arange(khat.size), labels, rotation=45, ha="right")
    else:
        for i in np.flatnonzero(khat.ravel() > good_k):
            ax.annotate(
                labels[i],
                (i, khat.ravel()[i]),
                fontsize="x-small",
                xytext=(2, 2),
                textcoords="offset points",
            )
    ax.set_xlabel("observation")
    ax.set_ylabel("Pareto k")
    fig.legend(loc="outside lower center", ncols=2, fontsize="small")
    ax.set_title(
        f"PSIS-LOO Pareto k per observation ({int(np.sum(khat > good_k))} of "
        f"{khat.size} above {good_k:.2f})"
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


FIT_PLOTS: dict[str, Callable[[az.InferenceData], Figure]] = {
    "trace": plot_trace,
    "forest": plot_forest,
    "ppc": plot_ppc,
    "pareto_k": plot_pareto_k,
}


def save_fit_plots(
    idata: az.InferenceData, out_dir: str | Path, dpi: int = 100
) -> list[Path]:
    """Write ``trace.png``, ``forest.png``, ``ppc.png``, ``pareto_k.png`` to a folder.

    A plot that cannot be drawn (no log-likelihood, no predictive draws...) is
    skipped with a logged warning; this function never raises for one.

    :return: the files written, in the order above.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, plot_fn in FIT_PLOTS.items():
        path = out_dir / f"{name}.png"
        try:
            with _quiet():
                fig = plot_fn(idata)
                fig.savefig(path, dpi=dpi)
        except Exception as exc:  # noqa: BLE001 - a plot must never stop a run
            log.warning("skipped %s plot: %s: %s", name, type(exc).__name__, exc)
            continue
        written.append(path)
    return written


def plot_comparison(comparison: pd.DataFrame) -> Figure:
    """:func:`arviz.plot_compare` of a :func:`hibayes.comparison.compare_fits` table."""
    fig = Figure(figsize=(8, 1.0 + 0.6 * len(comparison)), layout="constrained")
    ax = fig.add_subplot()
    with _quiet():
        az.plot_compare(comparison, ax=ax, show=False)
    ic = next(
        (c for c in comparison.columns if c.startswith("elpd_") and c != "elpd_diff"),
        "elpd",
    )
    scale = comparison["scale"].iloc[0] if "scale" in comparison else "log"
    ax.set_xlabel(f"{ic} ({scale} scale)")
    ax.set_ylabel("fit")
    ax.set_title(f"Model comparison: {ic} (higher is better), ranked best first")
    return fig


def plot_forest_side_by_side(
    idatas: Mapping[str, az.InferenceData],
    var_names: Sequence[str] | None = None,
    max_rows: int = MAX_FOREST_ROWS,
) -> Figure:
    """The same parameters of several fits side by side, one colour per fit.

    :param var_names: default: the scalar and effect variables shared by all fits
        (same names and dims).
    """
    if not idatas:
        raise ValueError("no fits to plot")
    if var_names is None:
        first = next(iter(idatas.values()))
        common = set(_common_vars(idatas, same_coords=False))
        var_names = [v for v in scalar_vars(first) + effect_vars(first) if v in common]
    if not var_names:
        raise ValueError(f"fits {', '.join(idatas)} share no scalar or effect variable")
    flat = [_flatten(i.posterior, var_names, max_rows) for i in idatas.values()]
    return _forest(
        [d for d, _ in flat],
        list(idatas),
        flat[0][1],
        f"Forest plot of {len(idatas)} fits: posterior mean, interquartile "
        "range (thick) and 94% HDI (thin)",
    )
