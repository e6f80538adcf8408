"""Table-level steps of the feature builder: rename, filter, aggregate.

Private to :mod:`hibayes.data`; :func:`hibayes.data.make_features` calls these in
that order. Each keeps the input's index so row numbers in errors stay those of
the source file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ._checks import RowContext, parse_scores, require_columns
from .errors import DataError

__all__ = ["aggregate_samples", "apply_filters", "apply_rename", "role_namer"]


def role_namer(rename: Mapping[str, str]) -> Callable[[str], str]:
    """Map a column as the user wrote it to its name after ``rename``.

    Both the file's name and the renamed (role) name are accepted: a name that
    ``rename`` produces is taken as is (so a swap keeps the role names); any
    other name that ``rename`` renames becomes its new name.
    """
    targets = {str(new) for new in rename.values()}
    sources = {str(old): str(new) for old, new in rename.items()}

    def to_role(name: Any) -> str:
        name = str(name)
        return name if name in targets else sources.get(name, name)

    return to_role


def apply_rename(
    df: pd.DataFrame, rename: Mapping[str, str], ctx: RowContext
) -> pd.DataFrame:
    """Rename columns to role names; every source column must exist."""
    missing = [c for c in rename if c not in df.columns]
    if missing:
        raise DataError(
            f"{ctx.source}: rename refers to missing column(s) {missing}; "
            f"columns present: {[str(c) for c in df.columns]}",
            source=ctx.source,
            column=missing[0],
        )
    clash = [
        new for old, new in rename.items() if new in df.columns and new not in rename
    ]
    if clash:
        raise ctx.error(f"rename targets {clash} already exist as columns")
    return df.rename(columns=dict(rename))


def _as_list(allowed: Any) -> list:
    """A filter's allowed values as a list; a lone scalar means just that value."""
    if isinstance(allowed, str | bytes) or not isinstance(
        allowed, Sequence | set | frozenset | np.ndarray
    ):
        return [allowed]
    return list(allowed)


def _is_number(value: Any) -> bool:
    """True for an int or float filter value (not a bool)."""
    return isinstance(value, int | float | np.number) and not isinstance(value, bool)


def apply_filters(
    df: pd.DataFrame, filters: Mapping[str, Any], ctx: RowContext
) -> pd.DataFrame:
    """Keep rows whose value is in each filter's list (all filters must hold)."""
    require_columns(df, filters, ctx)
    keep = np.ones(len(df), dtype=bool)
    kept_by: list[str] = []
    for column, allowed in filters.items():
        values = _as_list(allowed)
        col = df[column]
        if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            mask = col.isin(values).to_numpy()
        else:
            # Text columns: compare as strings so YAML's 1 matches a "1" cell,
            # and as numbers so YAML's 0.5 matches a "0.50" cell.
            mask = col.astype(str).isin([str(v) for v in values]).to_numpy()
            numbers = [v for v in values if _is_number(v)]
            if numbers:
                as_numbers = pd.to_numeric(col, errors="coerce")
                mask = mask | as_numbers.isin(numbers).to_numpy()
        keep &= mask
        kept_by.append(f"{column} in {values} matches {int(mask.sum())} row(s)")
    if not keep.any():
        raise DataError(
            f"{ctx.source}: filters left no rows out of {len(df)}: "
            + "; ".join(kept_by),
            source=ctx.source,
        )
    return df[keep]


def aggregate_samples(
    df: pd.DataFrame,
    observed: str,
    categorical: list[str],
    passthrough: list[str],
    ctx: RowContext,
) -> pd.DataFrame:
    """Collapse graded samples into one row per category combination."""
    work = df[[*categorical, *passthrough]].copy()
    work["__success"] = parse_scores(df[observed], ctx)
    if not categorical:
        out = pd.DataFrame(
            {observed: [int(work["__success"].sum())], "n_total": [len(work)]}
        )
        for col in passthrough:
            if work[col].nunique(dropna=False) > 1:
                raise ctx.bad_rows(
                    df[col],
                    df[col] != df[col].iloc[0],
                    "passthrough value differs within the one group",
                )
            out[col] = [work[col].iloc[0]]
        return out
    grouped = work.groupby(categorical, sort=True, observed=True)
    for col in passthrough:
        varies = grouped[col].transform("nunique", dropna=False).to_numpy() > 1
        if varies.any():
            raise ctx.bad_rows(
                df[col],
                varies,
                f"passthrough value is not constant within its {categorical} group",
            )
    out = grouped.agg(
        **{
            observed: ("__success", "sum"),
            "n_total": ("__success", "size"),
            **{col: (col, "first") for col in passthrough},
        }
    )
    out = out.reset_index()
    return out[[*categorical, observed, "n_total", *passthrough]]
