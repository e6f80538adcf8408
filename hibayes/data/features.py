"""Turn one evaluation table into the arrays a hibayes model reads.

:func:`make_features` renames, filters, validates, optionally aggregates graded
samples into counts, and encodes categories as integer codes. It returns a
:class:`FeatureSet`: plain numpy arrays and Python ints (no JAX), the ArviZ
``coords``/``dims`` that label them, and the processed table that row ``i`` of
every per-observation array came from. It does not pick or fit a model.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from ._checks import (
    RowContext,
    check_finite_numeric,
    check_not_missing,
    level_label,
    natural_key,
    numeric_column,
    require_columns,
)
from ._transforms import aggregate_samples, apply_filters, apply_rename, role_namer
from .io import load_table
from .outcomes import (
    CountLimit,
    check_count_limit,
    drop_empty_trials,
    outcome_features,
    outcome_kind,
)

__all__ = ["FeatureSet", "check_arguments", "features_from_config", "make_features"]


@dataclass(frozen=True)
class FeatureSet:
    """Model inputs built from one table.

    :param features: what the models read: ``obs`` (int64 for counts, 0/1 and
        classes; float64 for continuous outcomes); ``n_total`` (int64,
        binomial mode); ``num_classes`` (int, ordinal mode); per categorical ``c``,
        ``c_index`` (int32 codes) and ``num_c`` (int); per continuous or
        passthrough column, an array under the column's name.
    :param coords: category name -> level labels (str) in code order, plus
        ``"observation"`` -> ``list(range(n))``.
    :param dims: ``{"obs": ["observation"]}`` plus ``["observation"]`` for every
        continuous and passthrough feature.
    :param table: the processed table, one row per observation with a 0-based
        index: all columns after rename and filters (so ids such as ``sample_id``
        map observations back), or with ``aggregate`` the categorical columns,
        the success counts under the ``observed`` name, ``n_total`` and the
        passthrough columns. Continuous columns keep raw units.
    :param source: path of the input file, or ``"<table>"``.
    :param standardization: per standardized column, ``{"mean": m, "sd": s}`` (sd
        with ``ddof=0``); ``features[c] == (table[c] - m) / s``.
    :param outcome: the kind ``obs`` was checked as: ``count``, ``binary``,
        ``ordinal``, ``continuous`` or ``numeric`` (any finite number).
    """

    features: dict[str, Any]
    coords: dict[str, list]
    dims: dict[str, list[str]]
    table: pd.DataFrame
    source: str
    standardization: dict[str, dict[str, float]] = field(default_factory=dict)
    outcome: str = "numeric"


def _names(value: str | Sequence[str] | None) -> list[str]:
    """Accept a single column name or a sequence of them."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _check_roles(
    observed: str,
    n_total: str | None,
    categorical: list[str],
    continuous: list[str],
    passthrough: list[str],
    aggregate: bool,
    num_classes: int | None,
    ctx: RowContext,
) -> None:
    """Reject argument combinations that cannot describe one table."""
    if aggregate and n_total is not None:
        raise ctx.error(
            "n_total must not be given with aggregate=True "
            "(aggregation counts the rows itself)"
        )
    if num_classes is not None and (aggregate or n_total is not None):
        raise ctx.error(
            "num_classes (ordinal) cannot be combined with n_total "
            "or aggregate=True (binomial)"
        )
    if num_classes is not None and (
        isinstance(num_classes, bool)
        or int(num_classes) != num_classes
        or num_classes < 2
    ):
        raise ctx.error(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if aggregate and continuous:
        raise ctx.error(
            f"continuous columns {continuous} cannot be used with "
            "aggregate=True; aggregate first, or pass them as passthrough"
        )
    roles = [
        observed,
        *([n_total] if n_total else []),
        *categorical,
        *continuous,
        *passthrough,
    ]
    dupes = sorted({c for c in roles if roles.count(c) > 1})
    if dupes:
        raise ctx.error(
            f"column(s) {dupes} given more than one role "
            "(observed/n_total/categorical/continuous/passthrough)"
        )
    if "observation" in categorical:
        raise ctx.error(
            "a categorical column cannot be named 'observation' (reserved coordinate)"
        )
    derived = [
        "obs",
        "n_total",
        "num_classes",
        *(f"{c}_index" for c in categorical),
        *(f"num_{c}" for c in categorical),
    ]
    clash = sorted(set(derived) & set(continuous + passthrough))
    if clash:
        raise ctx.error(
            f"continuous/passthrough column name(s) {clash} collide "
            "with generated feature names; rename them"
        )


def _encode_categorical(
    series: pd.Series, order: Sequence[Any] | None, ctx: RowContext
) -> tuple[np.ndarray, list[str]]:
    """Return int32 codes and the level labels they index."""
    check_not_missing(series, ctx, "categorical")
    codes, uniques = pd.factorize(series, sort=False)
    labels = [level_label(v) for v in uniques]
    if len(set(labels)) != len(labels):
        dup = sorted({lab for lab in labels if labels.count(lab) > 1})
        raise ctx.error(
            f"levels {dup} are distinct values with the same label (e.g. 1 and '1')",
            str(series.name),
        )
    if order is None:
        ranked = sorted(range(len(uniques)), key=lambda i: natural_key(uniques[i]))
        levels = [labels[i] for i in ranked]
    else:
        levels = [level_label(v) for v in order]
        present = set(labels)
        missing = [lab for lab in labels if lab not in set(levels)]
        extra = [lab for lab in dict.fromkeys(levels) if lab not in present]
        dup = sorted({lab for lab in levels if levels.count(lab) > 1})
        if missing or extra or dup:
            raise ctx.error(
                "category_order must list exactly the levels present; "
                f"missing {sorted(missing, key=natural_key)}, not present {extra}, "
                f"repeated {dup}; levels present: "
                f"{sorted(labels, key=natural_key)}",
                str(series.name),
            )
    position = {lab: i for i, lab in enumerate(levels)}
    remap = np.array([position[lab] for lab in labels], dtype=np.int32)
    return remap[codes], levels


def _standardize_names(
    standardize: bool | Sequence[str], continuous: list[str], ctx: RowContext
) -> list[str]:
    """Resolve ``standardize`` into the list of continuous columns to scale."""
    if isinstance(standardize, bool):
        return list(continuous) if standardize else []
    names = _names(standardize)
    unknown = [n for n in names if n not in continuous]
    if unknown:
        raise ctx.error(
            f"standardize names {unknown} that are not continuous columns {continuous}"
        )
    return names


class _Arguments(NamedTuple):
    """``make_features``' arguments in role names, checked against each other."""

    rename: dict[str, str]
    to_role: Any
    observed: str
    n_total: str | None
    categorical: list[str]
    continuous: list[str]
    passthrough: list[str]
    category_order: dict[str, Sequence]
    binomial: bool
    kind: str
    to_scale: list[str]
    ctx: RowContext


def _checked_arguments(
    *,
    observed: str,
    n_total: str | None = None,
    categorical: Sequence[str] = (),
    continuous: Sequence[str] = (),
    rename: Mapping[str, str] | None = None,
    aggregate: bool = False,
    category_order: Mapping[str, Sequence] | None = None,
    standardize: bool | Sequence[str] = False,
    passthrough: Sequence[str] = (),
    num_classes: int | None = None,
    outcome: str = "auto",
    source: str = "<table>",
) -> _Arguments:
    """The arguments in role names; any combination no table can satisfy refused."""
    rename = {str(k): str(v) for k, v in (rename or {}).items()}
    to_role = role_namer(rename)
    ctx = RowContext(source, True, {new: old for old, new in rename.items()})
    observed = to_role(observed)
    n_total = to_role(n_total) if n_total is not None else None
    categorical = [to_role(c) for c in _names(categorical)]
    continuous = [to_role(c) for c in _names(continuous)]
    passthrough = [to_role(c) for c in _names(passthrough)]
    if not isinstance(standardize, bool):
        standardize = [to_role(c) for c in _names(standardize)]
    binomial = aggregate or n_total is not None
    _check_roles(
        observed,
        n_total,
        categorical,
        continuous,
        passthrough,
        aggregate,
        num_classes,
        ctx,
    )
    kind = outcome_kind(outcome, binomial, num_classes, ctx)
    order = {to_role(k): v for k, v in (category_order or {}).items()}
    stray = [c for c in order if c not in categorical]
    if stray:
        raise ctx.error(
            f"category_order given for {stray}, which are not "
            f"categorical columns {categorical}"
        )
    to_scale = _standardize_names(standardize, continuous, ctx)
    return _Arguments(
        rename,
        to_role,
        observed,
        n_total,
        categorical,
        continuous,
        passthrough,
        order,
        binomial,
        kind,
        to_scale,
        ctx,
    )


def check_arguments(*, source: str = "<table>", **arguments: Any) -> None:
    """Refuse :func:`make_features` arguments no table can satisfy, before any file is read.

    Takes :func:`make_features`' keyword arguments; those that need the table (such
    as ``filters``) are accepted and not checked.

    :raises DataError: the first bad combination, naming the source.
    """
    checked = inspect.signature(_checked_arguments).parameters
    _checked_arguments(
        source=source, **{k: v for k, v in arguments.items() if k in checked}
    )


def make_features(
    df: pd.DataFrame,
    *,
    observed: str,
    n_total: str | None = None,
    categorical: Sequence[str] = (),
    continuous: Sequence[str] = (),
    rename: Mapping[str, str] | None = None,
    aggregate: bool = False,
    category_order: Mapping[str, Sequence] | None = None,
    standardize: bool | Sequence[str] = False,
    passthrough: Sequence[str] = (),
    filters: Mapping[str, Sequence] | None = None,
    num_classes: int | None = None,
    outcome: str = "auto",
    drop_empty: bool = False,
    count_limit: CountLimit | None = None,
    source: str = "<table>",
) -> FeatureSet:
    """Validate and encode one table into model features.

    Steps, in order: ``rename`` -> ``filters`` -> validation -> ``aggregate`` ->
    encoding. Column arguments may use the file's names or the names ``rename``
    gives them.

    Outcome kinds (``outcome``): ``count`` (non-negative integers; binomial,
    ``obs`` <= ``n_total``, when ``n_total`` is given or ``aggregate=True``),
    ``binary`` (0/1, booleans, ``C``/``I``), ``ordinal`` (classes
    ``0..num_classes-1``), ``continuous`` (any finite number). ``auto`` means
    ``count`` with ``n_total``/``aggregate``, ``ordinal`` with ``num_classes``,
    and otherwise any finite number (int64 when all are whole numbers written
    as integers, else float64).

    :param df: input table, one row per observation (or per graded sample when
        ``aggregate=True``).
    :param observed: column of outcomes: counts, ordinal classes, per-sample
        scores (0/1, booleans, ``C``/``I``, ``correct``/``incorrect``) to
        aggregate, or measurements.
    :param n_total: column of trial counts (binomial mode); a row with 0 trials
        is refused unless ``drop_empty``.
    :param categorical: columns encoded as ``<c>_index`` codes and ``num_<c>``.
    :param continuous: numeric predictors, copied as float64 arrays.
    :param rename: original column -> role name, e.g. ``{"model": "group"}``.
    :param aggregate: count successes (``obs``) and rows (``n_total``) per
        combination of the categorical columns, in sorted group order.
    :param category_order: per categorical column, the exact level order.
    :param standardize: ``True`` for all continuous columns, or a list of them;
        scaled to mean 0, sd 1 (``ddof=0``).
    :param passthrough: numeric columns copied as-is (int64 or float64) for custom
        models; with ``aggregate`` they must be constant within each group.
    :param filters: column -> allowed values; rows matching every filter are kept.
    :param num_classes: number of ordinal classes (ordinal mode).
    :param outcome: ``auto``, ``count``, ``binary``, ``ordinal`` or ``continuous``.
    :param drop_empty: drop rows whose ``n_total`` is 0 (logged) instead of
        refusing them.
    :param count_limit: number of observations -> (largest count the sampler
        holds exactly, why); larger counts are refused.
    :param source: path or ``"<table>"``, used in error messages.
    :return: features, coords, dims, processed table and source.
    :rtype: FeatureSet
    :raises DataError: any bad argument or bad value; the message names the
        source, column and an example row with its value.
    """
    args = _checked_arguments(
        observed=observed,
        n_total=n_total,
        categorical=categorical,
        continuous=continuous,
        rename=rename,
        aggregate=aggregate,
        category_order=category_order,
        standardize=standardize,
        passthrough=passthrough,
        num_classes=num_classes,
        outcome=outcome,
        source=source,
    )
    rename, to_role = args.rename, args.to_role
    observed, n_total = args.observed, args.n_total
    categorical, continuous = args.categorical, args.continuous
    passthrough, category_order = args.passthrough, args.category_order
    binomial, kind, to_scale = args.binomial, args.kind, args.to_scale
    positional = (
        isinstance(df.index, pd.RangeIndex)
        and df.index.start == 0
        and df.index.step == 1
    )
    ctx = RowContext(source, positional, args.ctx.renamed)
    if len(df) == 0:
        raise ctx.error("table has no rows")

    table = apply_rename(df, rename, ctx)
    if filters:
        table = apply_filters(table, {to_role(k): v for k, v in filters.items()}, ctx)
    needed = [
        observed,
        *([n_total] if n_total else []),
        *categorical,
        *continuous,
        *passthrough,
    ]
    require_columns(table, needed, ctx)
    if n_total is not None:
        table = drop_empty_trials(table, n_total, drop_empty, ctx)

    for col in categorical:
        check_not_missing(table[col], ctx, "categorical")
    numbers = {c: check_finite_numeric(table[c], ctx, "continuous") for c in continuous}
    numbers.update(
        {c: numeric_column(table[c], ctx, "passthrough") for c in passthrough}
    )
    # The processed table holds the numbers, whatever the file held (e.g. text).
    table = table.assign(**numbers)
    if aggregate:
        table = aggregate_samples(table, observed, categorical, passthrough, ctx)
        ctx = RowContext(source, True, ctx.renamed)
        n_total = "n_total"
    # Outcomes are checked before re-indexing so errors cite source rows.
    features = outcome_features(
        table, observed, n_total if binomial else None, num_classes, kind, ctx
    )
    if count_limit is not None and kind == "count":
        counted = {"obs": observed, **({"n_total": n_total} if binomial else {})}
        check_count_limit(table, features, counted, count_limit, ctx)
    if not aggregate:
        table = table.assign(**{observed: features["obs"]})
        if binomial:
            table = table.assign(**{n_total: features["n_total"]})
    table = table.reset_index(drop=True)

    coords: dict[str, list] = {}
    dims: dict[str, list[str]] = {"obs": ["observation"]}
    for col in categorical:
        codes, levels = _encode_categorical(table[col], category_order.get(col), ctx)
        features[f"{col}_index"] = codes
        features[f"num_{col}"] = len(levels)
        coords[col] = levels
    cont = {c: numbers[c] for c in continuous}
    scales: dict[str, dict[str, float]] = {}
    for col in to_scale:
        mean, sd = float(cont[col].mean()), float(cont[col].std())
        if sd == 0.0:
            raise ctx.error(f"cannot standardize: constant value {mean!r} (sd 0)", col)
        cont[col] = (cont[col] - mean) / sd
        scales[col] = {"mean": mean, "sd": sd}
    for col in continuous:
        features[col] = cont[col]
        dims[col] = ["observation"]
    for col in passthrough:
        features[col] = table[col].to_numpy()
        dims[col] = ["observation"]
    coords["observation"] = list(range(len(table)))
    return FeatureSet(features, coords, dims, table, source, scales, kind)


def features_from_config(
    path: str | Path, *, fmt: str | None = None, **kwargs: Any
) -> FeatureSet:
    """Load a table file and build its features (``load_table`` + ``make_features``).

    :param path: file to read (CSV, TSV, Parquet, JSON lines or JSON records).
    :param fmt: format override, see :func:`hibayes.data.load_table`.
    :param kwargs: keyword arguments of :func:`make_features` except ``source``.
    :return: features built from the file, with ``source`` set to the path.
    :rtype: FeatureSet
    :raises DataError: unreadable file or bad contents.
    """
    return make_features(load_table(path, fmt=fmt), source=str(path), **kwargs)
