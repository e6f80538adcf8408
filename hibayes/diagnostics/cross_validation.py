"""Exact cross-validation wherever PSIS-LOO is unreliable: one call after diagnostics.

:func:`cross_validate` picks the estimate (``cv.method``), and for ``reloo`` and
``kfold`` runs every refit in one batched call through the compiled sampler
(:func:`hibayes.inference.refit.refit_weighted`: left-out rows get likelihood
weight 0, nothing recompiles). Each refit is checked against the fit's
convergence thresholds; a refit that fails is reported and its rows are
counted as unresolved (``pareto_k_bad_after``), never silently used. This is
the one module of the diagnostics layer that samples (through the inference
layer); it writes nothing.

The estimates (Vehtari, Gelman & Gabry 2017):
- ``psis``: PSIS-LOO, reliable when every Pareto k is below
  min(1 - 1/log10(S), 0.7);
- ``reloo``: PSIS-LOO with the bad rows replaced by exact leave-one-out,
  elpd_i = log mean_s p(y_i | theta_s) over the refit's draws without row i;
- ``kfold``: grouped K-fold, each row's elpd from the refit without its fold.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy.special import logsumexp

from hibayes.inference.idata import PPC_DRAWS_ATTR
from hibayes.inference.kernel import dense_mass
from hibayes.inference.refit import (
    pointwise_log_likelihood,
    refit_weighted,
    replicate,
    trial_log_probs,
)

from .batched import convergence_by_fit
from .folds import REUSE_WARMUP, CVSettings, assign_folds, folds_digest, group_labels
from .metrics import Criteria, Thresholds
from .trial_loo import trial_loo

if TYPE_CHECKING:
    from hibayes.inference import FitResult

__all__ = ["CV_GROUP", "CrossValidation", "cross_validate", "refit_failures"]

log = logging.getLogger(__name__)

# Draws per refit behind its LOO-PIT values (see :func:`_thinned`).
PIT_DRAWS = 1000
# Rows per block of the PSIS LOO-PIT.
_PIT_BLOCK = 2048

# The InferenceData group holding the pointwise estimate (saved in idata.nc, so
# comparisons read the same values the fit reported).
CV_GROUP = "cross_validation"


@dataclass
class CrossValidation:
    """The outcome of :func:`cross_validate`.

    :param method: ``psis``, ``reloo`` or ``kfold``.
    :param metrics: ``elpd_cv``, ``elpd_cv_se``, ``p_cv``, ``cv_refits``,
        ``cv_refits_failed``, ``cv_time_s``, ``cv_compile_s``,
        ``pareto_k_bad_after`` and, for counted data, ``elpd_loo_trial``,
        ``elpd_loo_trial_se``, ``pareto_k_bad_trial``.
    :param tags: ``hibayes.cv_method`` and ``hibayes.cv_problems``.
    :param pointwise: per row ``elpd_cv_i``, ``cv_method``, ``cv_fold`` (-1 outside
        K-fold) and ``loo_pit`` (mid-PIT of the row under its leave-out predictive).
    :param problems: one line per refit that failed its checks.
    :param folds: the fold assignment (``kfold`` only), one row per observation.
    """

    method: str
    metrics: dict[str, float]
    tags: dict[str, str]
    pointwise: pd.DataFrame
    problems: list[str] = field(default_factory=list)
    folds: pd.DataFrame | None = None


def _elpd_held_out(log_lik: np.ndarray) -> np.ndarray:
    """log mean_s exp(log_lik) per row of (chain, draw, row) draws."""
    flat = log_lik.reshape(-1, log_lik.shape[-1]).astype(np.float64)
    return logsumexp(flat, axis=0) - np.log(flat.shape[0])


def refit_failures(
    samples: Mapping[str, np.ndarray],
    extras: Mapping[str, np.ndarray],
    limits: Thresholds,
) -> list[list[str]]:
    """Why each refit's draws (refit, chain, draw, ...) fail the fit's thresholds.

    One empty list per refit that passes; ArviZ's estimators, vectorised over
    the refits (:func:`~.batched.convergence_by_fit`).
    """
    n_refits, chains, draws = next(iter(samples.values())).shape[:3]
    flat = np.concatenate(
        [
            np.asarray(v, dtype=np.float64).reshape(n_refits, chains, draws, -1)
            for v in samples.values()
        ],
        axis=-1,
    )
    table = convergence_by_fit(flat, extras["diverging"], extras["energy"], limits)
    return [p.split("; ") if p else [] for p in table["problems"]]


def _resolve(settings: CVSettings, n_bad: int) -> str:
    if settings.method != "auto":
        return settings.method
    if n_bad == 0:
        return "psis"
    return "reloo" if n_bad <= settings.max_refits else "kfold"


def _folds(
    settings: CVSettings,
    n_rows: int,
    seed: int,
    table: pd.DataFrame | None,
    rename: Mapping[str, str] | None,
) -> tuple[np.ndarray, pd.DataFrame]:
    needs_table = settings.group_by or settings.stratify_by
    if needs_table and table is None:
        raise ValueError("cv.group_by/cv.stratify_by need the data table")
    groups = (
        group_labels(table, settings.group_by, "group_by", rename)
        if settings.group_by
        else None
    )
    strata = None
    if settings.stratify_by:
        cols = group_labels(table, settings.stratify_by, "stratify_by", rename)
        strata = cols.astype(str).agg("|".join, axis=1)
    folds = assign_folds(n_rows, settings.k, seed, groups, strata)
    frame = pd.DataFrame({"fold": folds})
    if groups is not None:
        frame = pd.concat([frame, groups], axis=1)
    if strata is not None:
        frame["stratum"] = strata.to_numpy()
    frame.index.name = "observation"
    return folds, frame


def _mid_pit(
    y_rep: np.ndarray, y: np.ndarray, log_w: np.ndarray | None = None
) -> np.ndarray:
    """LOO-PIT per row: P(y_rep < y) + P(y_rep = y) / 2 (mid-PIT, fit for counts).

    :param y_rep: (draw, row) replicates.
    :param log_w: (draw, row) normalised log weights (PSIS); ``None``: equal
        weights (an exact refit's draws).
    """
    w = np.full(y_rep.shape, 1.0 / y_rep.shape[0]) if log_w is None else np.exp(log_w)
    return np.sum(w * ((y_rep < y) + 0.5 * (y_rep == y)), axis=0)


def _psis_pit(idata: Any, criteria: Criteria) -> np.ndarray:
    """PSIS LOO-PIT of every row from the fit's own replicates.

    The weights are PSIS-LOO's own (``criteria.log_weights``), not smoothed
    again. Replicates of a random subset of the draws (``fit.max_predictive_values``)
    are paired with those draws' weights (:data:`PPC_DRAWS_ATTR`), renormalised:
    self-normalised importance sampling over a uniform subsample of the draws is
    the same estimate with fewer draws. NaN where the pairing is unknown (a
    posterior predictive group without it).
    """
    log_lik = idata.log_likelihood["obs"]
    n_rows = int(log_lik.shape[-1])
    ppc = idata.get("posterior_predictive")
    if ppc is None:
        return np.full(n_rows, np.nan)
    y_rep = np.asarray(ppc["obs"].values).reshape(-1, n_rows)
    n_draws = int(log_lik.shape[0] * log_lik.shape[1])
    draws = None
    if y_rep.shape[0] != n_draws:
        draws = ppc.attrs.get(PPC_DRAWS_ATTR)
        if draws is None or np.size(draws) != y_rep.shape[0]:
            return np.full(n_rows, np.nan)
        draws = np.asarray(draws, dtype=np.int64).ravel()
    log_w, weight_row = criteria.log_weights, criteria.weight_row
    y = np.asarray(idata.observed_data["obs"].values).reshape(-1)
    pit = np.empty(n_rows)
    # Blocks of rows: the weights of every row at once can be gigabytes.
    for start in range(0, n_rows, _PIT_BLOCK):
        rows = np.arange(start, min(start + _PIT_BLOCK, n_rows))
        lw = log_w[rows if weight_row is None else weight_row[rows]]
        if draws is not None:  # a subset of the draws: its weights renormalised
            lw = lw[:, draws]
            lw = lw - logsumexp(lw, axis=1, keepdims=True)
        pit[rows] = _mid_pit(y_rep[:, rows], y[rows][None, :], lw.T)
    return pit


def _thinned(
    samples: Mapping[str, np.ndarray], n_rows: int, fit: Any
) -> dict[str, np.ndarray]:
    """Every k-th draw of each refit (refit, chain, draw, ...), for LOO-PIT replicates.

    At most :data:`PIT_DRAWS` draws per refit (a mid-PIT from 1000 draws has a
    Monte Carlo sd of at most 0.016, well inside a LOO-PIT plot's bands), and
    the whole batch's replicates within ``fit.max_predictive_values``.
    """
    n_refits, chains, draws = next(iter(samples.values())).shape[:3]
    budget = min(PIT_DRAWS, int(fit.max_predictive_values) // max(1, n_refits * n_rows))
    step = max(1, -(-chains * draws // max(1, budget)))
    return {k: np.asarray(v)[:, :, ::step] for k, v in samples.items()}


def _run_refits(
    result: FitResult,
    weights: np.ndarray,
    limits: Thresholds,
    held_out: list[np.ndarray],
    settings: CVSettings,
) -> tuple[list, list, list, float, float]:
    """Sample the batch; per refit the held-out rows' elpd, LOO-PIT and failures."""
    fit = result.settings
    reuse = settings.adapt == "reuse" and result.adaptation is not None
    if settings.warmup is not None:
        warmup = settings.warmup
    else:
        warmup = REUSE_WARMUP if reuse else fit.warmup
    refit_settings = replace(
        fit,
        warmup=warmup,
        samples=fit.samples if settings.samples is None else settings.samples,
        # The fit's mass matrix shape (dense or not), whatever the refits' warmup.
        dense_mass=dense_mass(result.program, fit) if reuse else fit.dense_mass,
    )
    # Every refit's chains start at the fit's last draws: near where they end up.
    posterior = result.idata.posterior
    start = {
        k: np.asarray(posterior[k].values)[:, -1] for k in result.program.sites.latent
    }
    batch = refit_weighted(
        result.program,
        refit_settings,
        weights,
        start=start,
        adaptation=result.adaptation if reuse else None,
    )
    program = result.program
    y = np.asarray(result.idata.observed_data["obs"].values)
    latent = {k: batch.samples[k] for k in program.sites.latent}
    failures = refit_failures(batch.samples, batch.extras, limits)
    # Log-likelihood one refit at a time: all rows of all draws of a whole batch
    # at once would not fit in memory on big data.
    elpds = [
        _elpd_held_out(
            pointwise_log_likelihood(program, {k: v[r] for k, v in latent.items()})[
                :, :, rows
            ]
        )
        for r, rows in enumerate(held_out)
    ]
    # Replicates for every refit in one call ((refit * chain, draw) as the chain
    # axis), thinned; the result is (refit * chain * draw, row), refits contiguous.
    thin = _thinned(latent, y.size, fit)
    merged = {k: v.reshape((-1,) + v.shape[2:]) for k, v in thin.items()}
    y_rep = replicate(program, merged, fit.seed).reshape(len(weights), -1, y.size)
    pits = [
        _mid_pit(y_rep[r][:, rows], y[rows][None, :]) for r, rows in enumerate(held_out)
    ]
    return elpds, pits, failures, batch.compile_s, batch.sampling_s


def cross_validate(
    result: FitResult,
    limits: Thresholds,
    settings: CVSettings,
    criteria: Criteria,
    *,
    table: pd.DataFrame | None = None,
    rename: Mapping[str, str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> CrossValidation:
    """The fit's most reliable elpd estimate, pointwise, with metrics and tags.

    Also stores the pointwise values in ``result.idata`` (group
    :data:`CV_GROUP`) so comparisons use them.

    :param result: the fit (its program and settings are reused for refits).
    :param limits: convergence thresholds every refit must meet.
    :param settings: the ``cv`` section.
    :param criteria: the fit's PSIS-LOO (:func:`information_criteria`).
    :param table: the data table, one row per observation (for ``group_by``).
    :param rename: the data config's ``rename`` (so original names work too).
    :param progress: called with a short message per stage.
    """
    say = progress or (lambda message: None)
    start = time.perf_counter()
    loo = criteria.loo
    if loo is None or criteria.log_weights is None:
        raise ValueError(
            "cross-validation needs a log_likelihood group and its PSIS weights "
            "(information_criteria)"
        )
    psis_i = np.asarray(loo.loo_i.values, dtype=np.float64).ravel()
    pareto_k = np.asarray(loo.pareto_k, dtype=np.float64).ravel()
    n_rows = psis_i.size
    bad = np.flatnonzero(pareto_k > float(loo.good_k))
    rows = result.program.rows
    # Copies of a row (fit.collapse_identical_rows) share k and their LOO term:
    # one refit per distinct bad row serves them all.
    first_copy: dict[int, int] = {}
    for i in bad:
        first_copy.setdefault(int(i) if rows is None else int(rows.inverse[i]), int(i))
    units = list(first_copy.values())
    method = _resolve(settings, len(units))
    elpd_i, row_method = psis_i.copy(), np.full(n_rows, "psis", dtype=object)
    pit = (
        _psis_pit(result.idata, criteria)
        if method != "kfold"
        else np.full(n_rows, np.nan)
    )
    fold = np.full(n_rows, -1, dtype=np.int64)
    unresolved = np.zeros(n_rows, dtype=bool)
    problems: list[str] = []
    compile_s = sampling_s = 0.0
    folds_frame, digest = None, ""
    if method == "psis":
        unresolved[bad] = True
    elif method == "reloo" and units:
        say(
            f"exact LOO: {len(units)} refits (Pareto k > {float(loo.good_k):.2f}), "
            "one batched call"
        )
        weights = np.ones((len(units), n_rows), dtype=np.float32)
        held_out = []
        for r, i in enumerate(units):
            weights[r, i] = 0.0
            copies = (
                [i]
                if rows is None
                else list(np.flatnonzero(rows.inverse == rows.inverse[i]))
            )
            held_out.append(np.asarray(copies))
        elpds, pits, failures, compile_s, sampling_s = _run_refits(
            result, weights, limits, held_out, settings
        )
        for i, copies, value, row_pit, why in zip(
            units, held_out, elpds, pits, failures
        ):
            if why:
                problems.append(f"refit without row {i} not used: {'; '.join(why)}")
                unresolved[copies] = True
                row_method[copies] = "psis (refit failed)"
            else:
                elpd_i[copies] = value[0]
                pit[copies] = row_pit[0]
                row_method[copies] = "reloo"
    elif method == "kfold":
        seed = int(result.settings.seed if settings.seed is None else settings.seed)
        fold, folds_frame = _folds(settings, n_rows, seed, table, rename)
        digest = folds_digest(fold)
        say(
            f"{settings.k}-fold CV"
            + (f" grouped by {list(settings.group_by)}" if settings.group_by else "")
            + f": {settings.k} refits, one batched call"
        )
        weights = np.stack([(fold != f).astype(np.float32) for f in range(settings.k)])
        held_out = [np.flatnonzero(fold == f) for f in range(settings.k)]
        elpds, pits, failures, compile_s, sampling_s = _run_refits(
            result, weights, limits, held_out, settings
        )
        row_method[:] = "kfold"
        for f, (members, value, why) in enumerate(zip(held_out, elpds, failures)):
            elpd_i[members] = value
            pit[members] = pits[f]
            if why:
                problems.append(
                    f"fold {f} ({members.size} rows) refit failed its checks: "
                    f"{'; '.join(why)}"
                )
                unresolved[members] = True
                row_method[members] = "kfold (refit failed)"
    for line in problems:
        log.warning("%s", line)
    lppd = float(
        _elpd_held_out(
            np.asarray(result.idata.log_likelihood["obs"].values).reshape(-1, 1, n_rows)
        ).sum()
    )
    elpd = float(elpd_i.sum())
    n_refits = {"psis": 0, "reloo": len(units), "kfold": settings.k}[method]
    metrics = {
        "elpd_cv": elpd,
        "elpd_cv_se": float(np.sqrt(n_rows * np.var(elpd_i))),
        "p_cv": lppd - elpd,
        "cv_refits": float(n_refits),
        "cv_refits_failed": float(len(problems)),
        "cv_compile_s": compile_s,
        "cv_sampling_s": sampling_s,
        "pareto_k_bad_after": float(unresolved.sum()),
    }
    metrics.update(_trial_metrics(result, criteria.reff))
    metrics["cv_time_s"] = time.perf_counter() - start
    pointwise = pd.DataFrame(
        {"elpd_cv_i": elpd_i, "cv_method": row_method, "cv_fold": fold, "loo_pit": pit}
    )
    pointwise.index.name = "observation"
    _attach(result.idata, pointwise, method, digest)
    tags = {
        "hibayes.cv_method": method,
        "hibayes.cv_problems": "; ".join(problems) or "none",
    }
    return CrossValidation(method, metrics, tags, pointwise, problems, folds_frame)


def _trial_metrics(result: FitResult, reff: float) -> dict[str, float]:
    """Per-trial LOO of counted data, from the fit's own draws ({} if not counted)."""
    program = result.program
    samples = {
        k: np.asarray(result.idata.posterior[k].values) for k in program.sites.latent
    }
    probs = trial_log_probs(program, samples)
    if probs is None:
        return {}
    return trial_loo(
        *probs,
        program.arrays["obs"],
        program.arrays["n_total"],
        reff,
    )


def _attach(idata: Any, pointwise: pd.DataFrame, method: str, digest: str) -> None:
    """Store the pointwise estimate in ``idata`` (group :data:`CV_GROUP`)."""
    import xarray as xr

    dim = idata.log_likelihood["obs"].dims[2]
    ds = xr.Dataset(
        {
            "elpd_cv_i": (dim, pointwise["elpd_cv_i"].to_numpy()),
            "cv_method": (dim, pointwise["cv_method"].astype(str).to_numpy()),
            "cv_fold": (dim, pointwise["cv_fold"].to_numpy()),
            "loo_pit": (dim, pointwise["loo_pit"].to_numpy()),
        },
        attrs={"method": method, "folds_digest": digest},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # not one of ArviZ's named groups
        if CV_GROUP in idata.groups():
            del idata[CV_GROUP]
        idata.add_groups({CV_GROUP: ds})
