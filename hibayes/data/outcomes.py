"""Outcome kinds: what the observed column holds, and the checks each kind needs.

``data.outcome`` is one of :data:`OUTCOMES`. ``auto`` takes the kind the model
declares (``@model(outcome=...)``; the built-in binomial models declare
``count``, the ordinal model ``ordinal``); a model that declares none gets the
checks every outcome needs (numeric, finite, nothing missing), unless the data
section itself implies counts (``n_total``, ``aggregate``) or classes
(``num_classes``). Private helpers of :func:`hibayes.data.make_features`, plus
:func:`resolve_outcome` for the config glue. Nothing here reads files or fits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from ._checks import (
    RowContext,
    check_counts,
    check_finite_numeric,
    numeric_column,
    parse_scores,
)
from .errors import DataError

__all__ = [
    "KINDS",
    "OUTCOMES",
    "CountLimit",
    "check_count_limit",
    "drop_empty_trials",
    "outcome_features",
    "outcome_kind",
    "resolve_outcome",
]

log = logging.getLogger("hibayes.data")

#: What ``data.outcome`` accepts.
OUTCOMES = ("auto", "count", "binary", "ordinal", "continuous")
#: What a model may declare with ``@model(outcome=...)``.
KINDS = OUTCOMES[1:]
#: ``n_rows -> (largest exact count, why)``: the sampler's number format decides.
CountLimit = Callable[[int], tuple[int, str]]


def resolve_outcome(
    configured: str | None, declared: str | None, model_name: str | None = None
) -> str:
    """The outcome kind to check the data for: ``data.outcome`` against the model's.

    :param configured: ``data.outcome`` (``None`` means ``auto``).
    :param declared: the kind the model declares, or ``None``.
    :param model_name: for messages.
    :return: one of :data:`OUTCOMES` (``auto`` only when neither says).
    :raises DataError: an unknown kind, or one the model does not model.
    """
    kind = str(configured or "auto")
    if kind not in OUTCOMES:
        raise DataError(f"data.outcome must be one of {list(OUTCOMES)}, got {kind!r}")
    if declared is None or kind == "auto":
        return declared or kind
    if kind != declared:
        raise DataError(
            f"data.outcome={kind}, but model '{model_name}' models {declared} "
            f"outcomes; use data.outcome=auto (or {declared}), or another model"
        )
    return kind


def outcome_kind(
    outcome: str, binomial: bool, num_classes: int | None, ctx: RowContext
) -> str:
    """The concrete kind to check, refusing combinations that contradict it.

    ``auto`` becomes ``count`` with ``n_total``/``aggregate``, ``ordinal`` with
    ``num_classes``, and otherwise ``numeric`` (finite numbers of any sign).
    """
    if outcome not in OUTCOMES:
        raise ctx.error(f"outcome must be one of {list(OUTCOMES)}, got {outcome!r}")
    if outcome == "auto":
        if binomial:
            return "count"
        return "ordinal" if num_classes is not None else "numeric"
    if outcome in ("binary", "continuous", "ordinal") and binomial:
        raise ctx.error(
            f"outcome '{outcome}' cannot be combined with n_total or aggregate=True "
            "(those make success counts: outcome 'count')"
        )
    if outcome in ("binary", "continuous", "count") and num_classes is not None:
        raise ctx.error(
            f"outcome '{outcome}' cannot be combined with num_classes "
            "(ordinal classes: outcome 'ordinal')"
        )
    if outcome == "ordinal" and num_classes is None:
        raise ctx.error(
            "outcome 'ordinal' needs num_classes (data.num_classes, or the "
            "model's num_classes)"
        )
    return outcome


def drop_empty_trials(
    table: pd.DataFrame, n_total: str, drop: bool, ctx: RowContext
) -> pd.DataFrame:
    """Refuse rows with no trials (``n_total == 0``), or drop them when asked.

    A row with no trials says nothing about a success rate, and its
    log-likelihood is constant, which makes PSIS-LOO's Pareto k infinite.
    """
    totals = check_counts(table[n_total], ctx, "n_total")
    empty = totals == 0
    if not empty.any():
        return table
    if not drop:
        raise ctx.bad_rows(
            table[n_total],
            empty,
            f"row with no trials ({n_total} = 0), which carries no information "
            "and breaks PSIS-LOO",
            hint="remove such rows, or set data.drop_empty=true to drop them",
        )
    if empty.all():
        raise ctx.error(f"every row has {n_total} = 0: nothing left to fit", n_total)
    log.info(
        "%s: dropped %d row(s) with %s = 0 (data.drop_empty=true); %d left",
        ctx.source,
        int(empty.sum()),
        n_total,
        int((~empty).sum()),
    )
    return table[~empty]


def outcome_features(
    table: pd.DataFrame,
    observed: str,
    n_total: str | None,
    num_classes: int | None,
    kind: str,
    ctx: RowContext,
) -> dict[str, Any]:
    """Validate the outcome columns into ``obs`` (+ ``n_total`` / ``num_classes``).

    :param kind: ``count``, ``binary``, ``ordinal``, ``continuous`` or ``numeric``.
    """
    series = table[observed]
    if kind == "continuous":
        return {"obs": check_finite_numeric(series, ctx, "observed")}
    if kind == "numeric":
        return {"obs": numeric_column(series, ctx, "observed")}
    if kind == "binary":
        return {"obs": parse_scores(series, ctx, "binary outcome")}
    if kind == "ordinal":
        # Range first, so -1 and 11 get the same "allowed range" message.
        values = check_finite_numeric(series, ctx, "observed")
        outside = (values < 0) | (values >= num_classes)
        if outside.any():
            raise ctx.bad_rows(
                series,
                outside,
                f"ordinal class outside the allowed range 0..{int(num_classes) - 1}",
            )
        obs = check_counts(series, ctx, "observed")
        return {"obs": obs, "num_classes": int(num_classes)}
    features: dict[str, Any] = {"obs": check_counts(series, ctx, "observed")}
    if n_total is not None:
        totals = check_counts(table[n_total], ctx, "n_total")
        over = features["obs"] > totals
        if over.any():
            first = int(np.flatnonzero(over)[0])
            raise ctx.bad_rows(
                series,
                over,
                f"observed exceeds {n_total!r}",
                note=f"{n_total} {totals[first]}",
            )
        features["n_total"] = totals
    return features


def check_count_limit(
    table: pd.DataFrame,
    features: dict[str, Any],
    columns: dict[str, str],
    limit: CountLimit,
    ctx: RowContext,
) -> None:
    """Refuse counts the sampler's number format cannot hold exactly.

    :param table: the rows ``features`` came from (index: source rows).
    :param columns: feature name (``obs``, ``n_total``) -> column name.
    :param limit: the largest exact count for this many rows, and why.
    """
    largest, why = limit(len(table))
    for key, column in columns.items():
        values = np.asarray(features[key])
        over = values > largest
        if over.any():
            raise ctx.bad_rows(
                pd.Series(values, index=table.index, name=column),
                over,
                f"count beyond {largest}, the largest whole number {why} holds exactly",
                hint="set fit.precision=float64 (exact to 2^53), or rescale the counts",
            )
