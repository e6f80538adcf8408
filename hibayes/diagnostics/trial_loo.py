"""Per-trial PSIS-LOO for counted data: leave out one graded sample, not a whole cell.

With ``obs`` successes out of ``n_total`` Bernoulli trials per cell, every
success of a cell has the same log-likelihood draws (log p) and every failure
the same (log(1 - p)), hence the same PSIS weights and LOO term. So one PSIS
per cell and outcome gives the LOO of every trial; the totals weight each term
by its count. This equals ``az.loo`` on the disaggregated Bernoulli rows
(``tests/unit/diagnostics/test_cross_validation.py``).
"""

from __future__ import annotations

import numpy as np

from . import psis

__all__ = ["trial_loo"]


def trial_loo(
    log_p: np.ndarray,
    log_q: np.ndarray,
    successes: np.ndarray,
    totals: np.ndarray,
    reff: float,
) -> dict[str, float]:
    """``elpd_loo_trial``, its SE and the count of trials with a bad Pareto k.

    :param log_p: log P(success) per cell, (chain, draw, cell).
    :param log_q: log P(failure) per cell, (chain, draw, cell).
    :param successes: successes per cell.
    :param totals: trials per cell.
    :param reff: the fit's relative ESS for PSIS (:func:`.summary.relative_ess`).
    """
    import xarray as xr

    successes = np.asarray(successes, dtype=np.float64).ravel()
    failures = np.asarray(totals, dtype=np.float64).ravel() - successes
    counts = np.concatenate([successes, failures])
    keep = counts > 0  # an outcome nobody had contributes no trial
    log_lik = np.concatenate([log_p, log_q], axis=2)[:, :, keep]
    counts = counts[keep]
    trials = xr.DataArray(log_lik, dims=("chain", "draw", "trial"))
    loo, _ = psis.loo(trials, reff, weights=False)
    terms = np.asarray(loo.loo_i.values, dtype=np.float64)
    k = np.asarray(loo.pareto_k, dtype=np.float64)
    n = counts.sum()
    elpd = float(np.sum(counts * terms))
    mean = elpd / n
    # ArviZ's se over all n trials: sqrt(n * var) with var over trials (ddof 0).
    var = float(np.sum(counts * (terms - mean) ** 2) / n)
    return {
        "elpd_loo_trial": elpd,
        "elpd_loo_trial_se": float(np.sqrt(n * var)),
        "pareto_k_bad_trial": float(np.sum(counts[k > float(loo.good_k)])),
    }
