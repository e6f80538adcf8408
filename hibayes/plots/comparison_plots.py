"""Plots of several fits: the LOO comparison and the side-by-side forest."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import arviz as az
import pandas as pd
from matplotlib.figure import Figure

from hibayes.diagnostics.comparison import _common_vars

from ._base import (
    MAX_FOREST_ROWS,
    _flatten,
    _forest,
    _quiet,
    effect_vars,
    scalar_vars,
)


def plot_comparison(comparison: pd.DataFrame) -> Figure:
    """:func:`arviz.plot_compare` of a :func:`hibayes.diagnostics.comparison.compare_fits` table."""
    fig = Figure(figsize=(8, 1.0 + 0.6 * len(comparison)), layout="constrained")
    ax = fig.add_subplot()
    drawn = comparison
    if "elpd_cv" in comparison.columns:  # ArviZ draws elpd_loo: give it the CV values
        drawn = comparison.drop(columns=["elpd_loo", "p_loo"], errors="ignore").rename(
            columns={"elpd_cv": "elpd_loo", "p_cv": "p_loo"}
        )
    with _quiet():
        az.plot_compare(drawn, ax=ax, show=False)
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
