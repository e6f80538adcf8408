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
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .psis import good_k

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
# Elements per block of the CJS distances (each a few (block, draw) float64 arrays).
_BLOCK = 256


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


def _element_labels(post: Any, name: str) -> list[str]:
    """Labels of a variable's elements (``group_effects[model-a]``), in C order."""
    dims = [d for d in post[name].dims if d not in _SAMPLE_DIMS]
    levels = itertools.product(*(post[d].values.tolist() for d in dims))
    return [
        f"{name}[{', '.join(map(str, combo))}]" if dims else str(name)
        for combo in levels
    ]


def _element_draws(post: Any, name: str) -> np.ndarray:
    """A variable's draws as (chain x draw, element), elements in C order."""
    var = post[name]
    dims = [d for d in var.dims if d not in _SAMPLE_DIMS]
    values = var.transpose(*_SAMPLE_DIMS, *dims).values
    return values.reshape(values.shape[0] * values.shape[1], -1)


def flat_posterior(
    idata: az.InferenceData, var_names: Sequence[str] | None = None
) -> tuple[np.ndarray, list[str], list[str]]:
    """Every element of the posterior as rows of a (quantity, chain x draw) array.

    :return: draws, element labels (``group_effects[model-a]``), variable names.
    """
    post = idata.posterior
    rows, labels, variables = [], [], []
    for name in var_names or list(post.data_vars):
        values = _element_draws(post, name)
        rows.append(np.asarray(values.T, dtype=np.float64))
        labels.extend(_element_labels(post, name))
        variables.extend([str(name)] * values.shape[1])
    n_draws = post.sizes["chain"] * post.sizes["draw"]
    draws = np.concatenate(rows) if rows else np.empty((0, n_draws))
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
    order = np.argsort(draws, axis=1)
    return _cjs_sorted(np.take_along_axis(draws, order, axis=1), weights[order])


def _cjs_sorted(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """:func:`cjs_distance` of rows already sorted, with their weights in that order."""
    n = x.shape[1]
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


def _sensitivities(
    draws: np.ndarray, weights: Sequence[np.ndarray], delta: float
) -> list[np.ndarray]:
    """Finite-difference derivative of the CJS distance of each row, per component.

    ``weights`` holds, per component, the weights at 1/(1 + delta) and 1 + delta.
    The rows are sorted once for every component, alpha and tail.
    """
    # Both tails: the distance of -x catches a change that only the upper tail shows.
    # -x sorted is x sorted, reversed and negated (tied draws may swap places, which
    # moves no distance: a tie spans zero width).
    order = np.argsort(draws, axis=1)
    x = np.take_along_axis(draws, order, axis=1)
    sorts = [(x, order), (-x[:, ::-1], order[:, ::-1])]
    out = []
    for pair in weights:
        cjs = [np.fmax(*(_cjs_sorted(x, w[order]) for x, order in sorts)) for w in pair]
        out.append((cjs[0] + cjs[1]) / (2 * np.log2(1 + delta)))
    return out


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
    post = idata.posterior
    n_draws = post.sizes["chain"] * post.sizes["draw"]
    alphas = [1 / (1 + delta), 1 + delta]
    prior_w, k_prior = power_scale_weights(component_draws(idata, "prior"), alphas)
    lik_w, k_lik = power_scale_weights(component_draws(idata, "likelihood"), alphas)
    labels: list[str] = []
    variables: list[str] = []
    parts: list[list[np.ndarray]] = []
    for name in var_names or list(post.data_vars):
        values = _element_draws(post, name)
        labels.extend(_element_labels(post, name))
        variables.extend([str(name)] * values.shape[1])
        # Blocks of elements: a few (block, draw) temporaries, never (all, draw).
        for start in range(0, values.shape[1], _BLOCK):
            block = np.asarray(values[:, start : start + _BLOCK].T, dtype=np.float64)
            parts.append(_sensitivities(block, [prior_w, lik_w], delta))
    prior, lik = (
        np.concatenate([p[i] for p in parts]) if parts else np.empty(0)
        for i in range(2)
    )
    k_prior, k_lik = float(np.max(k_prior)), float(np.max(k_lik))
    k_threshold = good_k(n_draws)
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


def _chosen_draws(post: Any, parameters: Sequence[str]) -> np.ndarray:
    """The (parameter, chain x draw) draws of the named elements, and only those."""
    where: dict[str, tuple[str, int]] = {}
    for name in post.data_vars:
        for j, label in enumerate(_element_labels(post, str(name))):
            where.setdefault(label, (str(name), j))
    missing = [p for p in parameters if p not in where]
    if missing:
        raise ValueError(f"no posterior element named {missing}")
    return np.stack(
        [
            np.asarray(_element_draws(post, where[p][0])[:, where[p][1]], np.float64)
            for p in parameters
        ]
    ).reshape(len(parameters), -1)


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
    chosen = _chosen_draws(idata.posterior, parameters)
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
