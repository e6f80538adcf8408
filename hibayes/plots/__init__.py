"""Plots of a fit (trace, forest, predictive check, Pareto k) and of comparisons.

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot,
so no figure is registered globally and nothing leaks over a sweep of many fits:
drop the reference (or save it) and it is gone. Axes are labelled by category
name, never ``<var>_dim_0``. Large posteriors are capped (at most
:data:`MAX_TRACE_VARS` trace rows, :data:`MAX_FOREST_ROWS` forest rows,
:data:`MAX_K_LABELS` rows named on the Pareto k plot) so a plot stays readable
and fast. :func:`save_fit_plots` never raises for a plot it cannot
draw: it logs a warning and skips it; a file it cannot write is an error.
Nothing here fits or compares models.
"""

from ._base import (
    MAX_FOREST_ROWS,
    MAX_K_LABELS,
    MAX_TRACE_LEVELS,
    MAX_TRACE_VARS,
    effect_vars,
    scalar_vars,
)
from .checks import plot_loo_pit, plot_pareto_k, plot_ppc, plot_prior_posterior
from .comparison_plots import plot_comparison, plot_forest_side_by_side
from .fit_plots import plot_forest, plot_trace, save_fit_plots
from .fonts import use_fallback_fonts
from .sensitivity_plot import plot_sensitivity

# Category labels in any script (CJK, emoji) without a glyph warning per save.
use_fallback_fonts()

__all__ = [
    "MAX_FOREST_ROWS",
    "MAX_K_LABELS",
    "MAX_TRACE_LEVELS",
    "MAX_TRACE_VARS",
    "effect_vars",
    "plot_comparison",
    "plot_forest",
    "plot_forest_side_by_side",
    "plot_loo_pit",
    "plot_pareto_k",
    "plot_ppc",
    "plot_prior_posterior",
    "plot_sensitivity",
    "plot_trace",
    "save_fit_plots",
    "scalar_vars",
]
