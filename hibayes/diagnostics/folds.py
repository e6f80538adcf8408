"""Cross-validation settings (the ``cv`` config section) and seeded grouped folds."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

from hibayes.errors import InputError

__all__ = [
    "CV_ADAPT",
    "CV_METHODS",
    "REUSE_WARMUP",
    "CVSettings",
    "CVSettingsError",
    "assign_folds",
    "folds_digest",
    "group_labels",
]

CV_METHODS = ("auto", "psis", "reloo", "kfold")
CV_ADAPT = ("reuse", "full")
# Warmup per refit chain when refits reuse the fit's adaptation (``cv.adapt:
# reuse``, ``cv.warmup: null``): one mass-matrix window, then the step size
# (hibayes.inference.refit); README case 6 has the measurements.
REUSE_WARMUP = 200


class CVSettingsError(InputError):
    """A ``cv`` setting is invalid (the message names the key)."""


def _names(value: Any, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise CVSettingsError(
        f"cv.{key} must be a column name or a list of them, got {value!r}"
    )


@dataclass(frozen=True)
class CVSettings:
    """How a fit's predictive accuracy is estimated.

    :param method: ``psis`` (PSIS-LOO only), ``reloo`` (exact refits for the rows
        whose Pareto k is too high), ``kfold`` (grouped K-fold), or ``auto``
        (psis when every k is good, reloo for at most ``max_refits`` bad rows,
        kfold beyond).
    :param max_refits: most exact refits ``auto`` spends before it switches to kfold.
    :param k: number of folds.
    :param group_by: columns whose rows leave together (e.g. ``[model]``); none:
        every row is its own group.
    :param stratify_by: column whose levels each fold should mix evenly.
    :param seed: fold assignment seed; ``None``: the fit's seed.
    :param adapt: ``reuse``: each refit chain starts with its fit chain's
        adapted step size and mass matrix, and a short warmup re-estimates both
        once; ``full``: NumPyro's whole windowed adaptation again, from scratch.
    :param warmup: warmup iterations per refit chain; ``None``: the fit's with
        ``adapt: full``, :data:`REUSE_WARMUP` with ``adapt: reuse``. Refits start
        from the fit's last draws.
    :param samples: draws per refit chain; ``None``: the fit's.
    """

    method: str = "auto"
    max_refits: int = 20
    k: int = 5
    group_by: tuple[str, ...] = ()
    stratify_by: tuple[str, ...] = ()
    seed: int | None = None
    adapt: str = "reuse"
    warmup: int | None = None
    samples: int | None = None

    def __post_init__(self) -> None:
        if self.method not in CV_METHODS:
            raise CVSettingsError(
                f"cv.method must be one of {', '.join(CV_METHODS)}, got {self.method!r}"
            )
        if self.adapt not in CV_ADAPT:
            raise CVSettingsError(
                f"cv.adapt must be one of {', '.join(CV_ADAPT)}, got {self.adapt!r}"
            )
        for key, low in (("max_refits", 0), ("k", 2)):
            value = getattr(self, key)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, np.integer))
                or value < low
            ):
                raise CVSettingsError(
                    f"cv.{key} must be an integer >= {low}, got {value!r}"
                )
        for key, low in (("seed", 0), ("warmup", 0), ("samples", 1)):
            value = getattr(self, key)
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, (int, np.integer))
                or value < low
            ):
                raise CVSettingsError(
                    f"cv.{key} must be an integer >= {low} or null, got {value!r}"
                )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> CVSettings:
        """Build from the ``cv`` config section; unknown keys are refused by name."""
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise CVSettingsError(
                f"unknown cv key(s) {unknown}; known: {sorted(known)}"
            )
        for key in ("group_by", "stratify_by"):
            if key in values:
                values[key] = _names(values[key], key)
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        """Plain dict of the settings."""
        return asdict(self)


def group_labels(
    table: pd.DataFrame,
    columns: Sequence[str],
    key: str,
    rename: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """The ``columns`` of the data table (one row per observation), by name.

    A column renamed in the data config (``data.rename``) may be named by
    either name. Unknown names raise one line naming ``cv.<key>``.
    """
    rename = dict(rename or {})
    resolved = []
    for name in columns:
        if name in table.columns:
            resolved.append(name)
        elif rename.get(name) in table.columns:
            resolved.append(rename[name])
        else:
            raise CVSettingsError(
                f"cv.{key}: column {name!r} is not in the data (columns: "
                f"{', '.join(map(str, table.columns))})"
            )
    return table[resolved].reset_index(drop=True)


def assign_folds(
    n_rows: int,
    k: int,
    seed: int,
    groups: pd.DataFrame | None = None,
    strata: pd.Series | None = None,
) -> np.ndarray:
    """Fold (0..k-1) of every row: whole groups per fold, strata spread evenly.

    Groups (distinct value combinations of ``groups``' columns; each row alone
    when ``groups`` is None or has no columns) are shuffled with ``seed`` and
    dealt to folds in turn, stratum after stratum (a group's stratum is its most
    frequent level), so each fold gets its share of every stratum.
    """
    if groups is None or groups.shape[1] == 0:
        group_of = np.arange(n_rows)
    else:
        group_of = groups.groupby(
            list(groups.columns), sort=False, dropna=False
        ).ngroup()
        group_of = group_of.to_numpy()
    n_groups = int(group_of.max()) + 1 if n_rows else 0
    if k > n_groups:
        what = (
            "rows"
            if groups is None or groups.shape[1] == 0
            else f"groups of cv.group_by={list(groups.columns)}"
        )
        raise CVSettingsError(f"cv.k={k} is more than the {n_groups} {what}")
    if strata is None:
        stratum = np.zeros(n_groups, dtype=np.int64)
    else:
        codes = pd.Series(pd.factorize(strata.astype(str))[0])
        stratum = codes.groupby(group_of).agg(lambda s: s.mode().iloc[0]).to_numpy()
    rng = np.random.default_rng(seed)
    fold_of_group = np.empty(n_groups, dtype=np.int64)
    dealt = 0
    for level in np.unique(stratum):
        members = rng.permutation(np.flatnonzero(stratum == level))
        fold_of_group[members] = (dealt + np.arange(members.size)) % k
        dealt += members.size
    return fold_of_group[group_of]


def folds_digest(folds: np.ndarray) -> str:
    """Fingerprint of a fold assignment: fits compare only on the same one."""
    return hashlib.sha256(np.asarray(folds, dtype=np.int64).tobytes()).hexdigest()[:16]
