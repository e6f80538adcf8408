"""Read Inspect (``inspect_ai``) evaluation logs into a per-sample table.

:func:`read_inspect_logs` turns ``.eval``/``.json`` log files, or folders of
them, into one row per scored sample and epoch: ``model``, ``task``,
``sample_id``, ``epoch``, ``score``, ``scorer``, ``log_file`` and any sample
metadata fields asked for. :func:`features_from_inspect_logs` then builds model
features from that table with :func:`hibayes.data.make_features` (usually
``aggregate=True``: success counts per model). It needs the optional
``inspect_ai`` package (``pip install -e ".[inspect]"``).

Scores become numbers the way Inspect's own ``value_to_float`` reads them
(``C`` 1, ``P`` 0.5, ``I`` and ``N`` 0, booleans, numbers and numeric text),
then are normalised to 0..1 (``score_range``) or kept as integer ordinal
classes (``ordinal``). Samples without a score for the scorer (an error, an
unscored NaN) are left out and counted in a warning. Nothing here fits models
or talks to the network.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import DataError
from .features import FeatureSet, make_features

__all__ = [
    "INSPECT_COLUMNS",
    "LETTER_SCORES",
    "features_from_inspect_logs",
    "inspect_log_files",
    "read_inspect_logs",
]

log = logging.getLogger(__name__)

#: Columns of every table :func:`read_inspect_logs` returns, before metadata fields.
INSPECT_COLUMNS: tuple[str, ...] = (
    "model",
    "task",
    "sample_id",
    "epoch",
    "score",
    "scorer",
    "log_file",
)

#: Inspect's letter grades (``inspect_ai.scorer`` CORRECT, PARTIAL, INCORRECT,
#: NOANSWER) as the numbers its ``value_to_float`` gives them.
LETTER_SCORES: dict[str, float] = {"C": 1.0, "P": 0.5, "I": 0.0, "N": 0.0}

_TEXT_SCORES = {"yes": 1.0, "true": 1.0, "no": 0.0, "false": 0.0}
# Large parts of a sample the table never needs; skipping them makes reading
# a real .eval log much faster.
_SKIP_FIELDS = {"messages", "events", "store", "attachments"}
_OPTION_KEYS = ("scorer", "score_map", "score_range", "ordinal", "metadata")


def _inspect_log_api() -> Any:
    """``inspect_ai.log``, or an ImportError that says how to install it."""
    try:
        import inspect_ai.log as inspect_log
    except ImportError as exc:
        raise ImportError(
            "reading Inspect logs needs the inspect_ai package: "
            'pip install -e ".[inspect]" (or pip install inspect_ai)'
        ) from exc
    return inspect_log


def inspect_log_files(path: str | Path) -> list[Path]:
    """The Inspect log files at ``path``: the file itself, or those in a folder.

    A folder is listed recursively with Inspect's own ``list_eval_logs``, so it
    finds what ``inspect view`` finds: every ``.eval`` file, and ``.json`` files
    named the way Inspect names logs (starting with a timestamp).

    :param path: a ``.eval``/``.json`` file or a folder.
    :return: the files, sorted by path.
    :rtype: list[pathlib.Path]
    :raises DataError: the path does not exist, has another suffix, or is a
        folder without logs.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such Inspect log file or folder", source=str(path))
    if path.is_file():
        if path.suffix.lower() not in (".eval", ".json"):
            raise DataError(
                f"{path}: not an Inspect log "
                "(expected a .eval or .json file, or a folder)",
                source=str(path),
            )
        return [path]
    infos = _inspect_log_api().list_eval_logs(str(path.resolve()), recursive=True)
    files = sorted(Path(info.name.removeprefix("file://")) for info in infos)
    if not files:
        raise DataError(
            f"{path}: folder holds no Inspect logs (*.eval, or timestamp-named *.json)",
            source=str(path),
        )
    return files


def _plain_number(value: Any) -> float | None:
    """A bool, number or numeric text as a float; None for anything else."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if text.upper() in LETTER_SCORES:
            return LETTER_SCORES[text.upper()]
        if text.lower() in _TEXT_SCORES:
            return _TEXT_SCORES[text.lower()]
        try:
            return float(text)
        except ValueError:
            return None
    return None


def _score_number(
    value: Any, score_map: Mapping[str, float], ordinal: bool, where: str
) -> float:
    """One raw score value as a number (NaN: unscored)."""
    if score_map:
        key = str(value)
        if key in score_map:
            return float(score_map[key])
    if ordinal and isinstance(value, str) and value.strip().upper() in LETTER_SCORES:
        raise DataError(
            f"{where}: letter score {value!r} has no ordinal class; map the letters "
            "with score_map, e.g. {I: 0, P: 1, C: 2}",
            value=value,
        )
    number = _plain_number(value)
    if number is None:
        kind = type(value).__name__
        raise DataError(
            f"{where}: score value {value!r} ({kind}) is not a letter grade, boolean "
            "or number; give score_map for text grades (dict- and list-valued scores "
            "are not supported)",
            value=value,
        )
    return number


def _pick_scorer(
    scores: Mapping[str, Any], scorer: str | None, where: str
) -> str | None:
    """The scorer whose score a sample contributes (None: sample unscored)."""
    if not scores:
        return None
    if scorer is not None:
        return scorer if scorer in scores else None
    if len(scores) > 1:
        raise DataError(
            f"{where}: samples have scores from several scorers {sorted(scores)}; "
            "choose one with scorer=<name>"
        )
    return next(iter(scores))


def _metadata_value(metadata: Mapping[str, Any], field: str, where: str) -> Any:
    """A sample metadata field; dots reach into nested mappings (``a.b``)."""
    value: Any = metadata
    for part in field.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise DataError(
                f"{where}: no metadata field {field!r}; sample metadata keys: "
                f"{sorted(metadata)}",
                column=field,
            )
        value = value[part]
    if isinstance(value, Mapping | list):
        raise DataError(
            f"{where}: metadata field {field!r} is a {type(value).__name__}, "
            "not a single value",
            column=field,
            value=value,
        )
    return value


def _read_one(
    path: Path,
    scorer: str | None,
    score_map: Mapping[str, float],
    ordinal: bool,
    metadata: Sequence[str],
) -> tuple[list[dict[str, Any]], int]:
    """Rows of one log file and the number of samples left out as unscored."""
    api = _inspect_log_api()
    try:
        eval_log = api.read_eval_log(str(path), exclude_fields=_SKIP_FIELDS)
    except Exception as exc:  # pydantic, zip and JSON errors all mean "not a log"
        raise DataError(
            f"{path}: cannot read as an Inspect log: {type(exc).__name__}: {exc}",
            source=str(path),
        ) from exc
    rows, skipped = [], 0
    for sample in eval_log.samples or []:
        where = f"{path}: sample {sample.id!r} epoch {sample.epoch}"
        name = _pick_scorer(sample.scores or {}, scorer, where)
        if name is None or sample.error is not None:
            skipped += 1
            continue
        number = _score_number(sample.scores[name].value, score_map, ordinal, where)
        if math.isnan(number):  # Inspect's "unscored" sentinel
            skipped += 1
            continue
        row = {
            "model": eval_log.eval.model,
            "task": eval_log.eval.task,
            "sample_id": str(sample.id),
            "epoch": int(sample.epoch),
            "score": number,
            "scorer": name,
            "log_file": path.name,
        }
        for field in metadata:
            row[field] = _metadata_value(sample.metadata or {}, field, where)
        rows.append(row)
    return rows, skipped


def _scale(
    table: pd.DataFrame, score_range: Sequence[float] | None, ordinal: bool, source: str
) -> pd.Series:
    """Scores normalised to 0..1, or as 0-based integer classes."""
    scores = table["score"].to_numpy(dtype=float)
    lo, hi = (None, None) if score_range is None else map(float, score_range)
    if lo is not None and not hi > lo:
        raise DataError(
            f"{source}: score_range must be [low, high] with low < high, "
            f"got {list(score_range)}",
            source=source,
        )
    if lo is not None:
        outside = (scores < lo) | (scores > hi)
        _refuse_first(
            outside,
            scores,
            table,
            source,
            lambda i: (
                f"{int(outside.sum())} score(s) outside score_range [{lo:g}, {hi:g}], "
                f"e.g. {scores[i]:g} ({_row_where(table, i)})"
            ),
        )
    if ordinal:
        classes = scores - (lo or 0.0)
        bad = (classes != np.round(classes)) | (classes < 0)
        _refuse_first(
            bad,
            scores,
            table,
            source,
            lambda i: (
                f"ordinal scores must be whole numbers from {lo or 0:g} up; got "
                f"{scores[i]:g} ({_row_where(table, i)})"
            ),
        )
        return pd.Series(classes.astype(np.int64), index=table.index)
    if lo is not None:
        return pd.Series((scores - lo) / (hi - lo), index=table.index)
    outside = (scores < 0) | (scores > 1)
    _refuse_first(
        outside,
        scores,
        table,
        source,
        lambda i: (
            f"scores must lie in 0..1 unless score_range is given; got {scores[i]:g} "
            f"({_row_where(table, i)}); pass score_range: [low, high] "
            f"(observed {scores.min():g}..{scores.max():g}), or ordinal: true"
        ),
    )
    return pd.Series(scores, index=table.index)


def _refuse_first(
    bad: np.ndarray,
    scores: np.ndarray,
    table: pd.DataFrame,
    source: str,
    message: Callable[[int], str],
) -> None:
    """Raise a DataError about the first score flagged in ``bad``, if any."""
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{source}: {message(i)}",
            source=source,
            column="score",
            row=i,
            value=scores[i],
        )


def _row_where(table: pd.DataFrame, i: int) -> str:
    row = table.iloc[i]
    return f"{row['log_file']}, model {row['model']}, sample {row['sample_id']!r}"


def read_inspect_logs(
    path: str | Path | Sequence[str | Path],
    *,
    scorer: str | None = None,
    score_map: Mapping[str, float] | None = None,
    score_range: Sequence[float] | None = None,
    ordinal: bool = False,
    metadata: Sequence[str] = (),
) -> pd.DataFrame:
    """One row per scored sample and epoch of Inspect logs.

    :param path: a ``.eval``/``.json`` log, a folder of logs (searched
        recursively), or a list of them.
    :param scorer: whose score to use when samples have several scorers; by
        default the only one. Samples lacking it are left out.
    :param score_map: raw score text -> number, applied first (``{"A": 1,
        "B": 0}``, or ``{"I": 0, "P": 1, "C": 2}`` for ordinal classes).
    :param score_range: ``[low, high]`` of numeric scores; they are rescaled to
        0..1 (or, with ``ordinal``, shifted so ``low`` is class 0). Without it
        scores must already lie in 0..1 (ordinal: be whole numbers from 0).
    :param ordinal: keep scores as integer classes (int64) instead of 0..1.
    :param metadata: sample metadata fields to add as columns (``a.b`` reaches
        into nested metadata).
    :return: columns :data:`INSPECT_COLUMNS` then the metadata fields; ``score``
        is float64 in 0..1, or int64 classes with ``ordinal``.
    :rtype: pandas.DataFrame
    :raises DataError: a missing or unreadable log, a score that cannot be read
        or is out of range, a missing metadata field, or no scored samples.
    :raises ImportError: ``inspect_ai`` is not installed.
    """
    paths = [path] if isinstance(path, str | Path) else list(path)
    source = ", ".join(str(p) for p in paths)
    clash = sorted(set(metadata) & set(INSPECT_COLUMNS))
    if clash:
        raise DataError(
            f"{source}: metadata field(s) {clash} clash with columns the "
            f"reader makes {list(INSPECT_COLUMNS)}; they cannot be added",
            source=source,
        )
    score_map = {str(k): float(v) for k, v in (score_map or {}).items()}
    rows: list[dict[str, Any]] = []
    skipped = 0
    files = [f for p in paths for f in inspect_log_files(p)]
    for file in files:
        file_rows, file_skipped = _read_one(file, scorer, score_map, ordinal, metadata)
        rows.extend(file_rows)
        skipped += file_skipped
    if not rows:
        which = f"scorer {scorer!r}" if scorer else "any scorer"
        raise DataError(
            f"{source}: no samples scored by {which} in {len(files)} log(s)",
            source=source,
        )
    if skipped:
        log.warning(
            "%s: left out %d sample(s) without a score (errors, unscored or "
            "another scorer); kept %d",
            source,
            skipped,
            len(rows),
        )
    table = pd.DataFrame.from_records(rows, columns=[*INSPECT_COLUMNS, *metadata])
    table["score"] = _scale(table, score_range, ordinal, source)
    dupes = table.duplicated(["model", "task", "sample_id", "epoch"]).sum()
    if dupes:
        log.warning(
            "%s: %d sample(s) appear in more than one log (same model, task, "
            "sample id and epoch); all are counted",
            source,
            int(dupes),
        )
    return table


def features_from_inspect_logs(
    path: str | Path | Sequence[str | Path],
    *,
    options: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> FeatureSet:
    """Read Inspect logs and build model features (the ``data=inspect`` preset).

    :param path: log file(s) or folder(s), see :func:`read_inspect_logs`.
    :param options: keyword arguments of :func:`read_inspect_logs` (the preset's
        ``data.inspect`` section): ``scorer``, ``score_map``, ``score_range``,
        ``ordinal``, ``metadata``.
    :param kwargs: keyword arguments of :func:`hibayes.data.make_features`
        except ``source``.
    :return: features built from the per-sample table.
    :rtype: FeatureSet
    :raises DataError: unknown option keys, or any error of the two steps.
    """
    options = dict(options or {})
    unknown = sorted(set(options) - set(_OPTION_KEYS))
    if unknown:
        raise DataError(
            f"unknown data.inspect option(s) {unknown}; known: {list(_OPTION_KEYS)}",
            source=str(path),
        )
    options["metadata"] = list(options.get("metadata") or ())
    table = read_inspect_logs(path, **options)
    return make_features(table, source=str(path), **kwargs)
