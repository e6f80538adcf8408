"""Compare fits of the same data: shared parameters and ArviZ comparison tables.

:func:`compare_fits` wraps :func:`arviz.compare` and refuses fits that were not
made on the same observed data, since their ELPDs are then not comparable. Fits
that carry a cross-validation estimate (:mod:`.cross_validation`) are ranked by
it (``elpd_cv``): differences, their SE and stacking weights come from those
pointwise values, and fits whose values hold out different rows (K-fold with
other folds, or K-fold against leave-one-out) are refused. This module draws
nothing (see :mod:`hibayes.plots`) and fits nothing.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd

from . import psis
from .cross_validation import CV_GROUP
from .summary import relative_ess

__all__ = ["compare_fits", "comparison_to_csv", "group_by_data", "shared_vars"]

log = logging.getLogger(__name__)

_SAMPLE_DIMS = ("chain", "draw")
_ICS = ("loo", "waic")


def _common_vars(
    idatas: Mapping[str, az.InferenceData], same_coords: bool = True
) -> list[str]:
    """Posterior variables in every fit with equal dims (and coords if asked)."""
    if not idatas:
        return []
    posteriors = [idata.posterior for idata in idatas.values()]
    first = posteriors[0]
    names = []
    for name, var in first.data_vars.items():
        dims = [d for d in var.dims if d not in _SAMPLE_DIMS]
        ok = True
        for other in posteriors[1:]:
            if name not in other.data_vars:
                ok = False
                break
            other_dims = [d for d in other[name].dims if d not in _SAMPLE_DIMS]
            if other_dims != dims:
                ok = False
                break
            if same_coords and any(
                not np.array_equal(first[d].values, other[d].values) for d in dims
            ):
                ok = False
                break
        if ok:
            names.append(str(name))
    return names


def shared_vars(idatas: Mapping[str, az.InferenceData]) -> list[str]:
    """Posterior variables present in every fit with the same dims and coords.

    :param idatas: fit name -> InferenceData.
    :return: variable names in the order of the first fit's posterior.
    """
    return _common_vars(idatas, same_coords=True)


def group_by_data(digests: Mapping[str, str | None]) -> dict[str | None, list[str]]:
    """Fit names by the digest of the data they were fitted to, largest group first.

    The one rule for "same data" before posteriors are loaded: fits compare only
    within one group. :func:`compare_fits` then checks the observed values too.
    """
    groups: dict[str | None, list[str]] = {}
    for name, digest in digests.items():
        groups.setdefault(digest, []).append(name)
    return dict(sorted(groups.items(), key=lambda item: -len(item[1])))


def _observed(name: str, idata: az.InferenceData) -> np.ndarray:
    if "observed_data" not in idata.groups() or "obs" not in idata.observed_data:
        raise ValueError(f"fit '{name}' has no observed data 'obs' to compare on")
    return np.asarray(idata.observed_data["obs"].values)


def _check_same_data(idatas: Mapping[str, az.InferenceData]) -> None:
    """Raise ``ValueError`` naming every fit whose observed data differ."""
    names = list(idatas)
    ref_name = names[0]
    ref = _observed(ref_name, idatas[ref_name])
    differ = []
    for name in names[1:]:
        obs = _observed(name, idatas[name])
        if obs.shape != ref.shape:
            differ.append(f"'{name}' (shape {obs.shape} vs {ref.shape})")
        elif not np.array_equal(obs, ref):
            n_diff = int(np.sum(obs != ref))
            differ.append(f"'{name}' ({n_diff} of {obs.size} values differ)")
    if differ:
        raise ValueError(
            "fits can only be compared on the same observed data; these differ from "
            f"'{ref_name}': {', '.join(differ)}"
        )
    missing = [n for n, i in idatas.items() if "log_likelihood" not in i.groups()]
    if missing:
        raise ValueError(
            f"fits without a log_likelihood group cannot be compared: "
            f"{', '.join(repr(m) for m in missing)}"
        )


def compare_fits(
    idatas: Mapping[str, az.InferenceData], ic: str = "loo"
) -> pd.DataFrame:
    """ArviZ's comparison table of fits to the same observed data.

    :param idatas: fit name -> InferenceData with ``log_likelihood`` and
        ``observed_data`` groups; at least two.
    :param ic: ``"loo"`` (PSIS-LOO) or ``"waic"``.
    :return: :func:`arviz.compare` with ``method="stacking"``: columns ``rank``,
        ``elpd_<ic>``, ``p_<ic>``, ``elpd_diff``, ``weight``, ``se``, ``dse``,
        ``warning``, ``scale``; index the fit names, best first. With ``loo`` and
        fits that carry cross-validation, ``elpd_cv`` and ``p_cv`` replace
        ``elpd_loo`` and ``p_loo`` (all computed from the ``elpd_cv_i`` values,
        ``warning``: rows left unresolved), followed by ``cv_method`` (which
        estimate each fit's number is) and PSIS's ``elpd_loo`` and ``p_loo`` for
        reference. ArviZ's warnings
        are captured into ``table.attrs["warnings"]`` (and logged at debug level),
        not printed.
    :raises ValueError: fewer than two fits, an unknown ``ic``, fits whose
        observed data differ (named), fits without a log-likelihood, or fits
        whose cross-validation held out different rows (named).
    """
    if ic not in _ICS:
        raise ValueError(f"ic must be one of {', '.join(_ICS)}, got {ic!r}")
    if len(idatas) < 2:
        raise ValueError(f"comparing needs at least two fits, got {len(idatas)}")
    _check_same_data(idatas)
    use_cv = ic == "loo" and any(CV_GROUP in i.groups() for i in idatas.values())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if use_cv:
            table = _compare_cv(idatas)
        else:
            table = az.compare(dict(idatas), ic=ic, method="stacking")
    messages = list(dict.fromkeys(str(w.message) for w in caught))
    for message in messages:
        log.debug("arviz: %s", message)
    table.attrs["warnings"] = messages
    return table


def _psis_loo(idata: az.InferenceData) -> az.ELPDData:
    """PSIS-LOO as the fit computed it (:func:`.psis.loo`, float64), so the PSIS
    values a comparison shows are the ones the fit logged."""
    return psis.loo(
        idata.log_likelihood["obs"], relative_ess(idata.posterior), weights=False
    )[0]


def _cv_values(
    idata: az.InferenceData, loo: az.ELPDData
) -> tuple[np.ndarray, str, str, float, float]:
    """Pointwise elpd, method, partition, PSIS elpd_loo and lppd of one fit (``loo``
    its PSIS-LOO)."""
    # ArviZ's lppd (its p_loo is lppd - elpd_loo), so p_cv of a PSIS fit is its p_loo.
    lppd = float(loo.p_loo) + float(loo.elpd_loo)
    if CV_GROUP not in idata.groups():
        values = np.asarray(loo.loo_i.values, dtype=np.float64).ravel()
        return values, "psis", "leave-one-out", float(loo.elpd_loo), lppd
    cv = idata[CV_GROUP]
    method = str(cv.attrs.get("method", "psis"))
    partition = (
        f"{method} folds {cv.attrs.get('folds_digest', '')}"
        if method == "kfold"
        else "leave-one-out"
    )
    values = np.asarray(cv["elpd_cv_i"].values, dtype=np.float64).ravel()
    return values, method, partition, float(loo.elpd_loo), lppd


def _compare_cv(idatas: Mapping[str, az.InferenceData]) -> pd.DataFrame:
    """ArviZ's stacking comparison on each fit's cross-validated pointwise elpd."""
    loos = {name: _psis_loo(idata) for name, idata in idatas.items()}
    per_fit = {name: _cv_values(idata, loos[name]) for name, idata in idatas.items()}
    partitions = {name: v[2] for name, v in per_fit.items()}
    if len(set(partitions.values())) > 1:
        listed = ", ".join(f"'{n}': {p}" for n, p in partitions.items())
        raise ValueError(
            "fits whose cross-validation held out different rows cannot be compared "
            f"(pointwise values must come from the same rows or folds): {listed}; "
            "refit them with the same cv settings (e.g. cv=kfold with one cv.seed)"
        )
    elpds = {}
    for name, (values, method, _, _, lppd) in per_fit.items():
        unresolved = _unresolved(idatas[name], loos[name])
        # Cross-validated values, not one posterior's PSIS: no draws and no k of
        # their own; the warning says whether any row is unresolved.
        elpds[name] = psis.elpd_data(
            values,
            lppd=lppd,
            n_samples=0,
            warning=unresolved > 0,
            pareto_k=np.zeros(values.size),
            good_k=0.7,
        )
    table = az.compare(elpds, ic="loo", method="stacking")
    table = table.rename(columns={"elpd_loo": "elpd_cv", "p_loo": "p_cv"})
    table["cv_method"] = [per_fit[n][1] for n in table.index]
    table["elpd_loo"] = [per_fit[n][3] for n in table.index]
    # PSIS's own p_loo beside its elpd_loo (ArviZ's definition: lppd - elpd_loo).
    table["p_loo"] = [per_fit[n][4] - per_fit[n][3] for n in table.index]
    return table


def _unresolved(idata: az.InferenceData, loo: az.ELPDData) -> int:
    """Rows whose cross-validated value is not trustworthy (a failed refit, bad k);
    ``loo`` is the fit's PSIS-LOO."""
    if CV_GROUP not in idata.groups():
        return 0
    methods = np.asarray(idata[CV_GROUP]["cv_method"].values).astype(str)
    failed = np.char.find(methods, "failed") >= 0
    if str(idata[CV_GROUP].attrs.get("method")) == "psis":
        failed |= np.asarray(loo.pareto_k) > float(loo.good_k)
    return int(failed.sum())


def comparison_to_csv(table: pd.DataFrame, path: str | Path) -> Path:
    """Write a comparison table to CSV, fit names in a ``fit`` column.

    :param table: a table from :func:`compare_fits`.
    :param path: file to write; parent folders are created.
    :return: the path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index_label="fit")
    return path
