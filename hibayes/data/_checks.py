"""Column checks shared by the feature builder; private to :mod:`hibayes.data`.

Each check either returns a clean numpy array or raises :class:`DataError` with
the source, the column, one offending row, its value and how many rows are bad.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .errors import DataError

__all__ = [
    "EXACT_INTEGERS",
    "RowContext",
    "check_counts",
    "check_finite_numeric",
    "check_not_missing",
    "is_missing",
    "level_label",
    "natural_key",
    "numeric_column",
    "parse_scores",
    "require_columns",
]

#: Integers up to 2**53 are exact in float64, the type numeric columns are read in.
EXACT_INTEGERS = 2**53
# Text a CSV holds for booleans (pandas used to parse these): read as 1 and 0.
_TEXT_BOOLS = {"true": 1.0, "false": 0.0}

# Text forms of 1/0 and true/false are accepted because a CSV score column with
# a single stray letter is read entirely as text.
_CORRECT = {"c", "correct", "1", "1.0", "true"}
_INCORRECT = {"i", "incorrect", "0", "0.0", "false"}


def plain(value: Any) -> Any:
    """Turn numpy scalars into Python ones so ``repr`` reads ``1.5`` not ``np.float64(1.5)``."""
    return value.item() if isinstance(value, np.generic) else value


@dataclass(frozen=True)
class RowContext:
    """Where rows come from, so messages can point at them.

    :param source: path or ``"<table>"``.
    :param positional: index labels are 0-based data rows of the source.
    :param renamed: role name -> original column name, from ``rename``.
    """

    source: str
    positional: bool = True
    renamed: Mapping[str, str] = field(default_factory=dict)

    def column(self, name: str) -> str:
        """Quote a column, adding its original name when it was renamed."""
        orig = self.renamed.get(name)
        return f"{name!r} (renamed from {orig!r})" if orig else repr(name)

    def row(self, label: Any) -> str:
        """Describe one row by its index label."""
        if self.positional:
            return f"data row {plain(label)} (0-based)"
        return f"row with index label {plain(label)!r}"

    def error(self, message: str, column: str | None = None) -> DataError:
        """Build a DataError about a whole column (or the whole table)."""
        where = f"column {self.column(column)}: " if column else ""
        return DataError(
            f"{self.source}: {where}{message}", source=self.source, column=column
        )

    def bad_rows(
        self,
        series: pd.Series,
        mask: Any,
        problem: str,
        note: str = "",
        hint: str = "",
    ) -> DataError:
        """Build a DataError for the rows of ``series`` where ``mask`` is true.

        :param note: extra detail about the example row, e.g. a related value.
        :param hint: what to do about it, appended at the end.
        """
        bad = series[np.asarray(mask, dtype=bool)]
        label, value = bad.index[0], plain(bad.iloc[0])
        count = len(bad)
        rows = f"{note}; " if note else ""
        rows += f"{count} offending row{'s' if count != 1 else ''}"
        return DataError(
            f"{self.source}: column {self.column(str(series.name))}: {problem}; "
            f"e.g. {self.row(label)} {_shown(value)} ({rows})"
            + (f"; {hint}" if hint else ""),
            source=self.source,
            column=str(series.name),
            row=plain(label),
            value=value,
        )


def _rename_note(ctx: RowContext) -> str:
    """``" (data.rename: 'model' -> 'group')"`` when columns were renamed."""
    if not ctx.renamed:
        return ""
    pairs = ", ".join(f"{old!r} -> {new!r}" for new, old in ctx.renamed.items())
    return f" (after data.rename: {pairs})"


def _shown(value: Any) -> str:
    """``has value 'x'``; a cell read as text that spells a number shows as the
    number, an empty cell as such."""
    if isinstance(value, str):
        if value == "":
            return "has an empty cell"
        if _as_number(value) is not None:
            return f"has value {value}"
    return f"has value {value!r}"


def require_columns(
    df: pd.DataFrame, needed: Iterable[str], ctx: RowContext, hint: str = ""
) -> None:
    """Raise one DataError listing every column of ``needed`` absent from ``df``."""
    missing = [c for c in dict.fromkeys(needed) if c not in df.columns]
    if missing:
        raise DataError(
            f"{ctx.source}: missing column(s) {missing}; columns present"
            f"{_rename_note(ctx)}: {[str(c) for c in df.columns]}{hint}",
            source=ctx.source,
            column=missing[0],
        )


def is_missing(series: pd.Series) -> np.ndarray:
    """Boolean mask of missing cells: NaN/None, or an empty text cell."""
    mask = series.isna().to_numpy()
    if series.dtype == object or pd.api.types.is_string_dtype(series):
        mask = mask | (series.astype(object) == "").to_numpy(dtype=bool)
    return mask


def check_not_missing(series: pd.Series, ctx: RowContext, role: str) -> None:
    """Reject NaN/None and empty cells in a column."""
    mask = is_missing(series)
    if mask.any():
        raise ctx.bad_rows(series, mask, f"missing value in {role} column")


def _is_text(series: pd.Series) -> bool:
    """True for a column of text (as CSV columns are read)."""
    return series.dtype == object or pd.api.types.is_string_dtype(series)


def _coerce(series: pd.Series) -> pd.Series:
    """Numbers from a column; text ``true``/``false`` count as 1/0, bad cells NaN."""
    if pd.api.types.is_bool_dtype(series):
        return series.astype(np.int64)
    coerced = pd.to_numeric(series, errors="coerce")
    if _is_text(series):
        failed = coerced.isna().to_numpy()
        if failed.any():
            words = series[failed].astype(str).str.strip().str.lower()
            coerced = coerced.astype(np.float64)
            coerced[failed] = words.map(_TEXT_BOOLS).to_numpy(dtype=np.float64)
    return coerced


def _numeric(series: pd.Series, ctx: RowContext, what: str) -> np.ndarray:
    """Convert to float64, rejecting missing and non-numeric entries."""
    check_not_missing(series, ctx, what)
    coerced = _coerce(series)
    bad = coerced.isna().to_numpy()
    if bad.any():
        raise ctx.bad_rows(series, bad, f"non-numeric value in {what} column")
    return coerced.to_numpy(dtype=np.float64)


def numeric_column(series: pd.Series, ctx: RowContext, what: str) -> np.ndarray:
    """A column that must hold finite numbers: int64 when every value is a whole
    number written or stored as an integer (or a boolean), else float64."""
    values = check_finite_numeric(series, ctx, what)
    coerced_int = pd.api.types.is_integer_dtype(_coerce(series))
    if coerced_int and (np.abs(values) < EXACT_INTEGERS).all():
        return values.astype(np.int64)
    return values


def check_finite_numeric(series: pd.Series, ctx: RowContext, what: str) -> np.ndarray:
    """Return a float64 array of a column that must be numeric and finite."""
    values = _numeric(series, ctx, what)
    bad = ~np.isfinite(values)
    if bad.any():
        raise ctx.bad_rows(series, bad, f"infinite value in {what} column")
    return values


def check_counts(series: pd.Series, ctx: RowContext, what: str) -> np.ndarray:
    """Return an int64 array of a column that must hold non-negative integers."""
    values = _numeric(series, ctx, what)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(values) | (values != np.round(values))
    if bad.any():
        raise ctx.bad_rows(series, bad, f"non-integer value in {what} column")
    if (values < 0).any():
        raise ctx.bad_rows(series, values < 0, f"negative value in {what} column")
    huge = values >= EXACT_INTEGERS
    if huge.any():
        raise ctx.bad_rows(
            series,
            huge,
            f"count in {what} column beyond 2^53 = {EXACT_INTEGERS}, past which "
            "numbers no longer hold whole counts exactly",
        )
    return values.astype(np.int64)


def _score(value: Any) -> float:
    """Map one graded-sample score to 1.0/0.0, or NaN if it is not a valid score."""
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    if isinstance(value, numbers.Real):
        return float(value) if value in (0, 1) else np.nan
    if isinstance(value, str):
        key = value.strip().lower()
        if key in _CORRECT:
            return 1.0
        if key in _INCORRECT:
            return 0.0
    return np.nan


def parse_scores(series: pd.Series, ctx: RowContext, what: str = "score") -> np.ndarray:
    """Turn a per-sample score column into an int64 array of 0/1 successes.

    Accepts booleans, numbers exactly 0 or 1, and (case-insensitive) ``C``/``I``,
    ``correct``/``incorrect`` and the text forms ``1``/``0``, ``true``/``false``.

    :param what: what the values are called in the message.
    """
    check_not_missing(series, ctx, "observed")
    if pd.api.types.is_bool_dtype(series):
        return series.to_numpy(dtype=np.int64)
    parsed = np.fromiter(
        (_score(v) for v in series.to_numpy()), dtype=np.float64, count=len(series)
    )
    bad = np.isnan(parsed)
    if bad.any():
        raise ctx.bad_rows(
            series,
            bad,
            f"invalid {what}; expected 0/1, true/false, C/I or correct/incorrect",
        )
    return parsed.astype(np.int64)


def _as_number(text: str) -> float | None:
    """The finite number a label spells (``"10"``, ``"2.5"``), else None."""
    try:
        number = float(text)
    except ValueError:
        return None
    return number if np.isfinite(number) else None


def natural_key(value: Any) -> tuple[int, float, str]:
    """Sort key: numbers (and labels that spell one) numerically, so "2" comes
    before "10", then other labels lexicographically."""
    value = plain(value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return (0, float(value), str(value))
    text = str(value)
    number = _as_number(text)
    if number is not None:
        return (0, number, text)
    return (1, 0.0, text)


def level_label(value: Any) -> str:
    """String label of a category level; integral floats print as integers."""
    value = plain(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
