"""Power-scaling prior and likelihood sensitivity of a fit (Kallioinen et al. 2023).

Raising the prior (or the likelihood) to a power alpha near 1 and reweighting
the existing draws by Pareto-smoothed importance sampling shows how much each
posterior quantity moves: the sensitivity is the derivative, at alpha = 1, of
the cumulative Jensen-Shannon distance between the posterior and its
power-scaled version, by finite differences at alpha = 1/(1 + delta) and
1 + delta (0.990 and 1.01). It needs no refit: only the ``log_prior`` group
(:mod:`hibayes.inference.log_prior`) and the ``log_likelihood`` group.

The arithmetic follows ArviZ 0.23's ``az.psens`` (``tests/test_sensitivity.py``
checks agreement on the same draws), vectorised over every element of every
posterior variable, and adds what ``psens`` leaves out: the Pareto k of the
power-scaled weights (above min(1 - 1/log10(S), 0.7) the estimate is
unreliable) and priorsense's diagnosis per quantity. Pure functions; no I/O.

**References:** Kallioinen, Paananen, Bürkner & Vehtari (2023), *Detecting and
diagnosing prior and likelihood sensitivity with power-scaling*, Statistics and
Computing 34:57.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import arviz as az

__all__ = [
    "CONFLICT",
    "WEAK_LIKELIHOOD",
    "Sensitivity",
    "cjs_distance",
    "component_draws",
    "diagnosis",
    "flat_posterior",
    "power_scale_weights",
    "power_scaled_quantities",
    "sensitivity",
]

CONFLICT = "prior-data conflict"
WEAK_LIKELIHOOD = "weak likelihood"
_SAMPLE_DIMS = ("chain", "draw")


@dataclass(frozen=True)
class Sensitivity:
    """The sensitivity of every posterior quantity, and its summary.

    :param table: one row per quantity (``parameter``, ``variable``,
        ``internal``, ``prior``, ``likelihood``, ``diagnosis``,
        ``prior_pareto_k``, ``likelihood_pareto_k``, ``likelihood_reliable``).
    :param threshold: sensitivity at which a quantity counts as sensitive.
    :param k_threshold: Pareto k above which power-scaled weights are unreliable.
    """

    table: pd.DataFrame
    threshold: float
    k_threshold: float

    @property
    def reported(self) -> pd.DataFrame:
        """Rows a person reads: sampling-internal sites and constants left out."""
        t = self.table
        return t[~t["internal"] & np.isfinite(t["prior"])]

    @property
    def flagged(self) -> list[str]:
        """Reported quantities with a prior-data conflict or a weak likelihood."""
        return list(self.reported.loc[self.reported["diagnosis"] != "", "parameter"])

    def metrics(self) -> dict[str, float]:
        """``psense_prior_max``, ``psense_likelihood_max`` (NaN when none) and k."""
        r = self.reported

        def top(column: str) -> float:
            return float(r[column].max()) if len(r) else float("nan")

        return {
            "psense_prior_max": top("prior"),
            "psense_likelihood_max": top("likelihood"),
            "psense_likelihood_pareto_k": top("likelihood_pareto_k"),
            "psense_flagged": float(len(self.flagged)),
        }

    def tag(self, max_names: int = 20) -> str:
        """The flagged quantities with their diagnosis, or ``none``."""
        r = self.reported[self.reported["diagnosis"] != ""]
        if r.empty:
            return "none"
        items = [f"{p} ({d})" for p, d in zip(r["parameter"], r["diagnosis"])]
        more = len(items) - max_names
        return "; ".join(items[:max_names]) + (f"; and {more} more" if more > 0 else "")


def _internal(name: str) -> bool:
    """Sampling-internal sites (non-centred ``z_*``, coded ``*_constrained``/``*_raw``,
    shifted ``*_offset``): the model records the quantity itself as well."""
    return name.startswith("z_") or name.endswith(("_constrained", "_raw", "_offset"))


def flat_posterior(
    idata: az.InferenceData, var_names: Sequence[str] | None = None
) -> tuple[np.ndarray, list[str], list[str]]:
    """Every element of the posterior as rows of a (quantity, chain x draw) array.

    :return: draws, element labels (``group_effects[model-a]``), variable names.
    """
    post = idata.posterior
    rows, labels, variables = [], [], []
    for name in var_names or list(post.data_vars):
        var = post[name]
        dims = [d for d in var.dims if d not in _SAMPLE_DIMS]
        values = var.transpose(*_SAMPLE_DIMS, *dims).values
        values = values.reshape(values.shape[0] * values.shape[1], -1)
        levels = itertools.product(*(post[d].values.tolist() for d in dims))
        for j, combo in enumerate(levels):
            rows.append(values[:, j])
            labels.append(
                f"{name}[{', '.join(map(str, combo))}]" if dims else str(name)
            )
            variables.append(str(name))
    draws = np.asarray(rows, dtype=np.float64).reshape(len(rows), -1)
    return draws, labels, variables


def component_draws(idata: az.InferenceData, component: str) -> np.ndarray:
    """Log prior or log likelihood of each draw, summed over its variables, flat."""
    group = {"prior": "log_prior", "likelihood": "log_likelihood"}[component]
    if group not in idata.groups():
        raise ValueError(f"power-scaling the {component} needs a {group} group")
    total = 0.0
    for var in idata[group].data_vars.values():
        dims = [d for d in var.dims if d not in _SAMPLE_DIMS]
        total = total + var.sum(dims).transpose(*_SAMPLE_DIMS).values.astype(np.float64)
    return np.ravel(total)


def power_scale_weights(
    log_component: np.ndarray, alphas: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """PSIS weights that power-scale a component by each alpha (ArviZ's ``psislw``).

    :return: normalised weights (alpha, draw) and their Pareto k (alpha,).
    """
    import arviz as az

    log_w = (np.asarray(alphas, dtype=np.float64)[:, None] - 1.0) * log_component[
        None, :
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        smoothed, k = az.psislw(log_w)
    weights = np.exp(smoothed - smoothed.max(axis=1, keepdims=True))
    # Equal weights (alpha = 1) have no tail to fit: ArviZ says k = inf; they are exact.
    k = np.where(np.ptp(log_w, axis=1) == 0, 0.0, np.atleast_1d(k))
    return weights / weights.sum(axis=1, keepdims=True), k


def cjs_distance(draws: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Cumulative Jensen-Shannon distance between each row's draws and their reweighting.

    ``draws`` is (quantity, draw), ``weights`` (draw,); ArviZ's ``_cjs_dist``
    on every row at once. A constant row gives NaN.
    """
    n = draws.shape[1]
    order = np.argsort(draws, axis=1)
    x = np.take_along_axis(draws, order, axis=1)
    w = weights[order]
    width = np.diff(x, axis=1)
    cdf_p = np.linspace(1 / n, 1 - 1 / n, n - 1)[None, :]
    cdf_q = np.cumsum(w / w.sum(axis=1, keepdims=True), axis=1)[:, :-1]
    p_int = (cdf_p * width).sum(axis=1)
    q_int = (cdf_q * width).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_p = np.where(cdf_p > 0, np.log2(np.where(cdf_p > 0, cdf_p, 1)), 0.0)
        log_q = np.where(cdf_q > 0, np.log2(np.where(cdf_q > 0, cdf_q, 1)), 0.0)
        mid = 0.5 * (cdf_p + cdf_q)
        log_m = np.where(mid > 0, np.log2(np.where(mid > 0, mid, 1)), 0.0)
        pq = (width * cdf_p * (log_p - log_m)).sum(axis=1) + 0.5 / np.log(2) * (
            q_int - p_int
        )
        qp = (width * cdf_q * (log_q - log_m)).sum(axis=1) + 0.5 / np.log(2) * (
            p_int - q_int
        )
        out = np.sqrt((np.maximum(pq, 0) + np.maximum(qp, 0)) / (p_int + q_int))
    return np.where(p_int + q_int > 0, out, np.nan)


def _sensitivity(
    draws: np.ndarray, log_component: np.ndarray, delta: float
) -> tuple[np.ndarray, float]:
    """Finite-difference derivative of the CJS distance; worst Pareto k of the weights."""
    weights, k = power_scale_weights(log_component, [1 / (1 + delta), 1 + delta])
    # Both tails: the distance of -x catches a change that only the upper tail shows.
    cjs = [np.fmax(cjs_distance(draws, w), cjs_distance(-draws, w)) for w in weights]
    return (cjs[0] + cjs[1]) / (2 * np.log2(1 + delta)), float(np.max(k))


def diagnosis(prior: float, likelihood: float, threshold: float) -> str:
    """priorsense's verdict for one quantity ("" when neither applies)."""
    if not (prior >= threshold):  # NaN too
        return ""
    return CONFLICT if likelihood >= threshold else WEAK_LIKELIHOOD


def sensitivity(
    idata: az.InferenceData,
    delta: float = 0.01,
    threshold: float = 0.05,
    var_names: Sequence[str] | None = None,
) -> Sensitivity:
    """Prior and likelihood sensitivity of every posterior element, with diagnoses.

    :param delta: alpha = 1/(1 + delta) and 1 + delta, as in ``az.psens``.
    :param threshold: 0.05, the paper's and priorsense's cut-off.
    :param var_names: posterior variables (default: all).
    """
    draws, labels, variables = flat_posterior(idata, var_names)
    n_draws = draws.shape[1]
    prior, k_prior = _sensitivity(draws, component_draws(idata, "prior"), delta)
    lik, k_lik = _sensitivity(draws, component_draws(idata, "likelihood"), delta)
    k_threshold = min(1 - 1 / np.log10(n_draws), 0.7)
    table = pd.DataFrame(
        {
            "parameter": labels,
            "variable": variables,
            "internal": [_internal(v) for v in variables],
            "prior": prior,
            "likelihood": lik,
            "diagnosis": [diagnosis(p, q, threshold) for p, q in zip(prior, lik)],
            "prior_pareto_k": k_prior,
            "likelihood_pareto_k": k_lik,
            "likelihood_reliable": k_lik <= k_threshold,
        }
    )
    return Sensitivity(table, threshold, float(k_threshold))


def _weighted_quantiles(
    draws: np.ndarray, weights: np.ndarray, probs: Sequence[float]
) -> np.ndarray:
    """Quantiles of each row of ``draws`` under ``weights``: (quantity, prob)."""
    order = np.argsort(draws, axis=1)
    x = np.take_along_axis(draws, order, axis=1)
    cum = np.cumsum(weights[order], axis=1)
    cum = (cum - 0.5 * weights[order]) / cum[:, -1:]  # midpoint rule, as type 7-ish
    return np.stack([[np.interp(p, c, xs) for p in probs] for c, xs in zip(cum, x)])


def power_scaled_quantities(
    idata: az.InferenceData,
    parameters: Sequence[str],
    alphas: Sequence[float],
    component: str,
    probs: Sequence[float] = (0.05, 0.5, 0.95),
) -> pd.DataFrame:
    """Mean and quantiles of the named elements when ``component`` is scaled by alpha.

    :param parameters: element labels as :func:`flat_posterior` writes them.
    :return: long table: ``parameter``, ``alpha``, ``mean``, one column per prob
        (``q0.05``...), ``pareto_k``.
    """
    draws, labels, _ = flat_posterior(idata)
    rows = np.array([labels.index(p) for p in parameters], dtype=int)
    chosen = draws[rows]
    weights, k = power_scale_weights(component_draws(idata, component), alphas)
    out = []
    for alpha, w, kk in zip(alphas, weights, k):
        quants = _weighted_quantiles(chosen, w, probs)
        for i, name in enumerate(parameters):
            row = {
                "parameter": name,
                "alpha": float(alpha),
                "mean": float(chosen[i] @ w),
                "pareto_k": float(kk),
            }
            row.update({f"q{p:g}": float(q) for p, q in zip(probs, quants[i])})
            out.append(row)
    return pd.DataFrame(out)
