"""Plots of one fit: trace and forest, and all of a fit's plots saved at once."""

from __future__ import annotations

import functools
import io
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import arviz as az
from matplotlib.figure import Figure

from hibayes.system.atomic import write_bytes

from ._base import (
    MAX_FOREST_ROWS,
    MAX_TRACE_LEVELS,
    MAX_TRACE_VARS,
    _default_forest_vars,
    _flatten,
    _forest,
    _quiet,
    effect_vars,
    scalar_vars,
)
from .checks import plot_loo_pit, plot_pareto_k, plot_ppc

log = logging.getLogger(__name__)


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
    height = 1.9 * len(names) + 0.8
    fig = Figure(figsize=(11, height))
    # Fixed margins in inches: a regular grid needs no layout solver, and
    # constrained layout doubled the time to save this figure.
    fig.subplots_adjust(
        left=0.07,
        right=0.98,
        bottom=0.5 / height,
        top=1 - 0.75 / height,
        hspace=0.55,
        wspace=0.18,
    )
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


FIT_PLOTS: dict[str, Callable[[az.InferenceData], Figure]] = {
    "trace": plot_trace,
    "forest": plot_forest,
    "ppc": plot_ppc,
    "pareto_k": plot_pareto_k,
}


def save_fit_plots(
    idata: az.InferenceData, out_dir: str | Path, dpi: int = 100, loo: Any = None
) -> list[Path]:
    """Write ``trace.png``, ``forest.png``, ``ppc.png``, ``pareto_k.png`` (and
    ``loo_pit.png`` after cross-validation) to a folder.

    A plot that cannot be drawn (no log-likelihood, no predictive draws...) is
    skipped with a logged warning; this function never raises for one. A plot
    that cannot be *saved* (a full disk) is an error: each file is written whole
    or not at all.

    :param loo: the fit's pointwise PSIS-LOO, if computed already (else recomputed).
    :return: the files written, in the order above.
    :raises hibayes.errors.CannotWrite: a file could not be written.
    """
    out_dir = Path(out_dir)
    written = []
    plot_fns = {**FIT_PLOTS, "pareto_k": functools.partial(plot_pareto_k, loo=loo)}
    if "cross_validation" in idata.groups():  # calibration of the reliable estimate
        plot_fns["loo_pit"] = plot_loo_pit
    for name, plot_fn in plot_fns.items():
        png = io.BytesIO()
        try:  # drawn in memory: only what cannot be drawn is skipped
            with _quiet():
                plot_fn(idata).savefig(png, format="png", dpi=dpi)
        except Exception as exc:  # noqa: BLE001 - a plot must never stop a run
            log.warning("skipped %s plot: %s: %s", name, type(exc).__name__, exc)
            continue
        written.append(write_bytes(out_dir / f"{name}.png", png.getvalue()))
    return written
