"""Diagnostics: convergence metrics, LOO/WAIC and comparisons, as pure functions.

Every ArviZ statistic the tool reports is computed here (plots draw in
:mod:`hibayes.plots`), so a move to another ArviZ line touches this folder and
``plots/``. Nothing here writes files or tracks, and only
:mod:`~hibayes.diagnostics.cross_validation` samples (exact refits, through the
inference layer's compiled sampler).
"""

from hibayes.diagnostics.cross_validation import CrossValidation, cross_validate
from hibayes.diagnostics.folds import CVSettings, CVSettingsError
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
    "CVSettings",
    "CVSettingsError",
    "Criteria",
    "CrossValidation",
    "Thresholds",
    "convergence_failures",
    "cross_validate",
    "diagnose",
    "information_criteria",
    "pointwise_loo",
    "summarize",
]
