"""Diagnostics: convergence metrics, LOO/WAIC and comparisons, as pure functions.

Every ArviZ statistic the tool reports is computed here (plots draw in
:mod:`hibayes.plots`), so a move to another ArviZ line touches this folder and
``plots/``. Nothing here samples, writes files or tracks.
"""

from hibayes.diagnostics.metrics import (
    METRIC_KEYS,
    Criteria,
    Thresholds,
    convergence_failures,
    diagnose,
    information_criteria,
    pointwise_loo,
    summarize,
)

__all__ = [
    "METRIC_KEYS",
    "Criteria",
    "Thresholds",
    "convergence_failures",
    "diagnose",
    "information_criteria",
    "pointwise_loo",
    "summarize",
]
