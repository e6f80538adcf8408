"""Convergence and predictive-accuracy diagnostics of a fit, as plain numbers.

Pure functions over InferenceData, computed by ArviZ (PSIS-LOO with ArviZ's
arithmetic, vectorised: :mod:`.psis`); no I/O and no printing.
:func:`diagnose` returns the flat metrics dict that tracking logs, and
:func:`convergence_failures` says in words why a fit did not converge.

Quantities that are constant across all draws (a dummy-coded reference level
fixed at 0) have no defined R-hat or ESS; they are left out rather than turning
the maxima into NaN.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd

from hibayes.errors import InputError
from hibayes.system.typed import wrong_types

from . import psis

if TYPE_CHECKING:  # ArviZ costs seconds to import; only the functions need it
    import arviz as az

__all__ = [
    "Thresholds",
    "Criteria",
    "information_criteria",
    "summarize",
    "diagnose",
    "convergence_failures",
    "pointwise_loo",
    "METRIC_KEYS",
]

METRIC_KEYS = (
    "rhat_max",
    "ess_bulk_min",
    "ess_tail_min",
    "divergences",
    "ebfmi_min",
    "tree_depth_hits",
    "elpd_loo",
    "elpd_loo_se",
    "p_loo",
    "pareto_k_max",
    "pareto_k_bad",
    "elpd_waic",
    "elpd_waic_se",
    "p_waic",
    "converged",
)


@dataclass(frozen=True)
class Thresholds:
    """Limits a converged fit must meet (Vehtari et al. 2021; Betancourt 2016).

    :param rhat_max: largest acceptable rank-normalised split R-hat.
    :param ess_bulk_min: smallest acceptable bulk ESS.
    :param ess_tail_min: smallest acceptable tail ESS.
    :param divergences_max: largest acceptable number of divergent transitions.
    :param ebfmi_min: smallest acceptable E-BFMI of any chain.
    """

    rhat_max: float = 1.01
    ess_bulk_min: float = 400.0
    ess_tail_min: float = 400.0
    divergences_max: int = 0
    ebfmi_min: float = 0.3

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Thresholds:
        """Build from a config mapping; unknown keys or values not numbers raise
        :class:`~hibayes.errors.InputError`, one line per problem."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        problems = wrong_types("checks", values, cls)
        if unknown:
            problems.insert(
                0, f"unknown checks key(s) {unknown}; known: {sorted(known)}"
            )
        if problems:
            raise InputError("\n".join(problems))
        return cls(**dict(values))

    def as_dict(self) -> dict[str, float]:
        """Plain dict of the thresholds."""
        return asdict(self)


class Criteria(NamedTuple):
    """PSIS-LOO and WAIC of a fit, pointwise (ArviZ ``ELPDData``), or ``None``.

    :param reff: the relative ESS the PSIS used (seconds to compute at 20,000
        categories: the per-trial LOO reuses it).
    :param log_weights: PSIS-LOO's normalised smoothed log weights, (weight row,
        chain x draw); the LOO-PIT reuses them rather than smoothing again.
    :param weight_row: the weight row of each observation (``None``: its own).
    """

    loo: Any
    waic: Any
    reff: float | None = None
    log_weights: np.ndarray | None = None
    weight_row: np.ndarray | None = None


def information_criteria(
    idata: az.InferenceData, row_of: np.ndarray | None = None
) -> Criteria:
    """PSIS-LOO and WAIC with pointwise values; ``None`` without a log_likelihood.

    :param row_of: where rows repeat (``fit.collapse_identical_rows``), the
        distinct row each observation is a copy of. Copies have the same
        log-likelihood draws and so the same PSIS weights and pointwise values:
        PSIS then smooths each distinct row once (at 200k ordinal rows, 34 s of
        Python loops become milliseconds) and the totals still add every row.
    """
    import arviz as az

    if "log_likelihood" not in idata.groups():
        return Criteria(None, None)
    reff = _reff(idata)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if row_of is not None:
            return _criteria_over_distinct_rows(idata, np.asarray(row_of), reff)
        loo, log_weights = psis.loo(idata.log_likelihood["obs"], reff)
        return Criteria(
            loo, az.waic(idata, pointwise=True, scale="log"), reff, log_weights
        )


def _reff(idata: az.InferenceData) -> float:
    """``az.loo``'s relative ESS, computed in blocks (1 without a posterior)."""
    from .summary import relative_ess

    return relative_ess(idata.posterior) if "posterior" in idata.groups() else 1.0


def _criteria_over_distinct_rows(
    idata: az.InferenceData, row_of: np.ndarray, reff: float
) -> Criteria:
    """LOO (:func:`.psis.loo`, ArviZ's arithmetic) and WAIC (ArviZ) on the distinct
    rows, expanded to every row.

    The totals are ArviZ's formulas over the expanded pointwise values (sum;
    se = sqrt(n var); p_loo = lppd - elpd_loo; p_waic = sum of variances), so the
    result equals ``az.loo``/``az.waic`` on all rows (``tests/unit/inference/test_collapse.py``).
    """
    import arviz as az
    from arviz.stats.stats_utils import ELPDData

    log_lik = idata.log_likelihood["obs"]
    row_dim = log_lik.dims[2]
    # One observation per distinct row, and each observation's distinct row.
    _, first, weight_row = np.unique(row_of, return_index=True, return_inverse=True)
    distinct = az.InferenceData(
        posterior=idata.posterior,
        log_likelihood=idata.log_likelihood.isel({row_dim: first}),
    )
    loo, log_weights = psis.loo(distinct.log_likelihood["obs"], reff)
    waic = az.waic(distinct, pointwise=True, scale="log")
    template = log_lik.isel(chain=0, draw=0, drop=True)  # every row, with its coords

    def every_row(values: Any, name: str) -> Any:
        return template.copy(data=np.take(np.asarray(values), row_of, axis=0)).rename(
            name
        )

    n_rows = int(row_of.shape[0])
    var_lpd = (
        log_lik.isel({row_dim: first}).stack(s=("chain", "draw")).var(dim="s").values
    )
    lppd = (
        np.asarray(waic.waic_i.values) + var_lpd
    )  # waic_i = lppd_i - var_i (log scale)
    loo_i, waic_i = (
        every_row(loo.loo_i.values, "loo_i"),
        every_row(waic.waic_i.values, "waic_i"),
    )
    pareto_k = every_row(np.asarray(loo.pareto_k), "pareto_k")
    elpd_loo, elpd_waic = float(loo_i.values.sum()), float(waic_i.values.sum())
    full_loo = {
        "elpd_loo": elpd_loo,
        "se": (n_rows * np.var(loo_i.values)) ** 0.5,
        "p_loo": float(np.take(lppd, row_of).sum()) - elpd_loo,
        "n_data_points": n_rows,
        "loo_i": loo_i,
        "pareto_k": pareto_k,
    }
    full_waic = {
        "elpd_waic": elpd_waic,
        "se": (n_rows * np.var(waic_i.values)) ** 0.5,
        "p_waic": float(np.take(var_lpd, row_of).sum()),
        "n_data_points": n_rows,
        "waic_i": waic_i,
    }

    def rebuilt(result: Any, values: dict) -> Any:
        return ELPDData(
            data=[values.get(k, result[k]) for k in result.index],
            index=list(result.index),
        )

    return Criteria(
        rebuilt(loo, full_loo), rebuilt(waic, full_waic), reff, log_weights, weight_row
    )


def summarize(idata: az.InferenceData) -> pd.DataFrame:
    """ArviZ summary (mean, sd, HDI, MCSE, ESS, R-hat) of every posterior variable.

    ``az.summary``'s numbers, computed over blocks of elements at once
    (:func:`~hibayes.diagnostics.summary.summary_table`): ArviZ's own loop takes
    minutes at tens of thousands of categories.
    """
    from .summary import summary_table

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        table = summary_table(idata.posterior)
    table.index.name = "parameter"
    return table


def _extreme(values: pd.Series, how: str) -> float:
    finite = values[np.isfinite(values)]
    if finite.empty:
        return float("nan")
    return float(finite.max() if how == "max" else finite.min())


def _sampling_metrics(
    idata: az.InferenceData, summary: pd.DataFrame
) -> dict[str, float]:
    import arviz as az

    # A quantity constant over all draws has no R-hat or ESS: leave it out.
    varying = summary[summary["sd"] > 0]
    out = {
        "rhat_max": _extreme(varying["r_hat"], "max"),
        "ess_bulk_min": _extreme(varying["ess_bulk"], "min"),
        "ess_tail_min": _extreme(varying["ess_tail"], "min"),
    }
    stats = idata.sample_stats
    out["divergences"] = float(stats["diverging"].values.sum())
    out["ebfmi_min"] = (
        float(np.min(az.bfmi(idata))) if "energy" in stats else float("nan")
    )
    hits = stats.get("reached_max_treedepth")
    out["tree_depth_hits"] = (
        float(hits.values.sum()) if hits is not None else float("nan")
    )
    return out


def _loo_metrics(criteria: Criteria) -> dict[str, float]:
    loo, waic = criteria.loo, criteria.waic
    if loo is None:
        return dict.fromkeys(
            (
                "elpd_loo",
                "elpd_loo_se",
                "p_loo",
                "pareto_k_max",
                "pareto_k_bad",
                "elpd_waic",
                "elpd_waic_se",
                "p_waic",
            ),
            float("nan"),
        )
    k = np.asarray(loo.pareto_k)
    return {
        "elpd_loo": float(loo.elpd_loo),
        "elpd_loo_se": float(loo.se),
        "p_loo": float(loo.p_loo),
        "pareto_k_max": float(np.nanmax(k)),
        "pareto_k_bad": float(np.sum(k > float(loo.good_k))),
        "elpd_waic": float(waic.elpd_waic),
        "elpd_waic_se": float(waic.se),
        "p_waic": float(waic.p_waic),
    }


def convergence_failures(
    metrics: Mapping[str, float], thresholds: Thresholds
) -> list[str]:
    """Reasons, in words, that the metrics fail the thresholds (empty: converged)."""
    t = thresholds
    reasons = []
    checks = [
        ("rhat_max", lambda v: v <= t.rhat_max, f"R-hat {{v:.3f}} > {t.rhat_max}"),
        (
            "ess_bulk_min",
            lambda v: v >= t.ess_bulk_min,
            f"bulk ESS {{v:.0f}} < {t.ess_bulk_min:.0f}",
        ),
        (
            "ess_tail_min",
            lambda v: v >= t.ess_tail_min,
            f"tail ESS {{v:.0f}} < {t.ess_tail_min:.0f}",
        ),
        (
            "divergences",
            lambda v: v <= t.divergences_max,
            f"{{v:.0f}} divergent transitions (max {t.divergences_max})",
        ),
        ("ebfmi_min", lambda v: v >= t.ebfmi_min, f"E-BFMI {{v:.2f}} < {t.ebfmi_min}"),
    ]
    for key, ok, message in checks:
        value = metrics.get(key, float("nan"))
        if not np.isfinite(value):
            reasons.append(f"{key} is not available")
        elif not ok(value):
            reasons.append(message.format(v=value))
    return reasons


def diagnose(
    idata: az.InferenceData,
    thresholds: Thresholds | None = None,
    *,
    summary: pd.DataFrame | None = None,
    criteria: Criteria | None = None,
) -> dict[str, float]:
    """Every diagnostic of a fit as a flat dict of floats (keys: :data:`METRIC_KEYS`).

    :param summary: :func:`summarize` of ``idata``, if already computed.
    :param criteria: :func:`information_criteria` of ``idata``, if already computed.
    """
    thresholds = thresholds or Thresholds()
    summary = summarize(idata) if summary is None else summary
    criteria = information_criteria(idata) if criteria is None else criteria
    metrics = {**_sampling_metrics(idata, summary), **_loo_metrics(criteria)}
    metrics["converged"] = 0.0 if convergence_failures(metrics, thresholds) else 1.0
    return {key: metrics[key] for key in METRIC_KEYS}


def pointwise_loo(
    idata: az.InferenceData, criteria: Criteria | None = None
) -> pd.DataFrame:
    """One row per observation: observed value, ``loo_i``, ``pareto_k``, ``waic_i``.

    After :func:`~hibayes.diagnostics.cross_validation.cross_validate`, also
    ``elpd_cv_i``, the method that produced it (``cv_method``) and ``cv_fold``.
    """
    loo, waic = (information_criteria(idata) if criteria is None else criteria)[:2]
    if loo is None:
        raise ValueError("pointwise LOO needs a log_likelihood group")
    frame = pd.DataFrame(
        {
            "loo_i": np.ravel(loo.loo_i.values),
            "pareto_k": np.ravel(np.asarray(loo.pareto_k)),
            "waic_i": np.ravel(waic.waic_i.values),
        }
    )
    frame.insert(0, "obs", np.ravel(idata.observed_data["obs"].values))
    if "cross_validation" in idata.groups():  # hibayes.diagnostics.cross_validation
        cv = idata["cross_validation"]
        for name in ("elpd_cv_i", "cv_method", "cv_fold", "loo_pit"):
            if name in cv:
                frame[name] = np.ravel(cv[name].values)
    frame.index.name = "observation"
    return frame
