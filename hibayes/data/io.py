"""Read evaluation tables from disk and fingerprint them.

Reads CSV, TSV, Parquet and JSON (JSON lines, or one array of records) into a
pandas DataFrame with a fresh 0-based index, so that row numbers in later error
messages are 0-based data rows of the file.

Tables are read as written: a CSV or TSV cell is kept as its text (no number
parsing, no guessing that ``NA``, ``None`` or ``null`` mean "missing"; only a
truly empty cell is empty), and Parquet and JSON keep their own types. What a
column means is decided later, by :func:`hibayes.data.make_features`, which turns
the columns that play numeric roles into numbers. Duplicate column names and
nested values (lists, objects) are refused here, naming the column and row.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import DataError

__all__ = ["FORMATS", "file_digest", "load_table", "table_digest"]

#: Recognised formats and the file suffixes that select them.
FORMATS: dict[str, tuple[str, ...]] = {
    "csv": (".csv",),
    "tsv": (".tsv",),
    "parquet": (".parquet", ".pq"),
    "jsonl": (".jsonl", ".ndjson"),
    "json": (".json",),
}

_CHUNK = 1 << 20


def _format_for(path: Path, fmt: str | None) -> str:
    """Pick the reader from ``fmt`` or, if not given, from the file suffix."""
    if fmt is not None:
        key = fmt.lower().lstrip(".")
        if key not in FORMATS:
            raise DataError(
                f"{path}: unknown format {fmt!r}; expected one of {sorted(FORMATS)}",
                source=str(path),
            )
        return key
    suffix = path.suffix.lower()
    for key, suffixes in FORMATS.items():
        if suffix in suffixes:
            return key
    known = sorted(s for suffixes in FORMATS.values() for s in suffixes)
    raise DataError(
        f"{path}: cannot tell the format from suffix {suffix or '(none)'!r}; "
        f"use one of {known} or pass fmt=",
        source=str(path),
    )


class _Record(dict):
    """A parsed JSON object that remembers a key it saw twice (``json`` keeps
    the last silently)."""

    duplicate: str | None = None


def _object_pairs(pairs: list[tuple[str, Any]]) -> _Record:
    """``object_pairs_hook`` for :func:`json.loads` that notes duplicate keys."""
    record = _Record(pairs)
    if len(record) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                record.duplicate = key
                break
            seen.add(key)
    return record


def _nested_kind(value: Any) -> str | None:
    """``"a JSON object"`` / ``"a list"`` for a nested cell value, else None."""
    if isinstance(value, dict):
        return "a JSON object"
    if isinstance(value, (list, tuple)):
        return "a list"
    return None


def _records_frame(path: Path, records: list, where: str) -> pd.DataFrame:
    """Build a frame from parsed JSON records, rejecting anything but flat objects."""
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise DataError(
                f"{path}: {where} {i} is a JSON {type(rec).__name__}, "
                "expected an object (one row)",
                source=str(path),
                row=i,
            )
        if getattr(rec, "duplicate", None) is not None:
            raise DataError(
                f"{path}: column {rec.duplicate!r}: named twice in data row {i} "
                "(0-based); every column needs its own name",
                source=str(path),
                column=rec.duplicate,
                row=i,
            )
        for column, value in rec.items():
            kind = _nested_kind(value)
            if kind:
                raise DataError(
                    f"{path}: column {column!r}: nested value ({kind}) in data row "
                    f"{i} (0-based); each cell must hold one number or label "
                    "(flatten it into columns first)",
                    source=str(path),
                    column=column,
                    row=i,
                    value=value,
                )
    # json -> python types -> DataFrame keeps ints as int64 and strings as
    # text; pandas' own JSON reader guesses dates and numeric strings.
    return pd.DataFrame.from_records(records)


def _read_json_lines(path: Path) -> pd.DataFrame:
    """Read one JSON object per line; blank lines are skipped."""
    records = []
    with path.open("r", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line, object_pairs_hook=_object_pairs))
            except json.JSONDecodeError as exc:
                raise DataError(
                    f"{path}: line {lineno} is not valid JSON ({exc.msg})",
                    source=str(path),
                    row=lineno,
                ) from exc
    return _records_frame(path, records, "JSON line")


def _read_json(path: Path) -> pd.DataFrame:
    """Read a ``.json`` file holding either a records array or JSON lines."""
    with path.open("r", encoding="utf-8") as fh:
        text = fh.read()
    if not text.lstrip().startswith("["):
        return _read_json_lines(path)
    try:
        records = json.loads(text, object_pairs_hook=_object_pairs)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})",
            source=str(path),
        ) from exc
    return _records_frame(path, records, "record")


def _refuse_duplicate_names(path: Path, names: list[str]) -> None:
    """Raise naming the first column whose name appears more than once."""
    seen: dict[str, int] = {}
    for position, name in enumerate(names):
        if name in seen:
            raise DataError(
                f"{path}: column {name!r}: appears twice in the header (columns "
                f"{seen[name] + 1} and {position + 1}); every column needs its "
                "own name",
                source=str(path),
                column=name,
            )
        seen[name] = position


def _read_text_table(path: Path, sep: str) -> pd.DataFrame:
    """Read a CSV/TSV with every cell as its text; an empty cell stays ``""``."""
    try:
        with path.open("r", encoding="utf-8-sig", newline="") as fh:
            header = next(csv.reader(fh, delimiter=sep), None)
    except UnicodeDecodeError:
        header = None  # pandas names the problem below
    if header:
        _refuse_duplicate_names(path, header)
    return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)


def _read_parquet(path: Path) -> pd.DataFrame:
    """Read a Parquet file whose columns are flat and uniquely named."""
    import pyarrow.parquet as pq
    import pyarrow.types as pat

    schema = pq.read_schema(path)
    _refuse_duplicate_names(path, list(schema.names))
    nested = [f for f in schema if pat.is_nested(f.type)]
    if nested:
        import pyarrow.compute as pc

        field = nested[0]
        column = pq.read_table(path, columns=[field.name]).column(0)
        row = pc.index(pc.is_valid(column), True).as_py()
        where = f"e.g. data row {row} (0-based)" if row >= 0 else "(all empty)"
        raise DataError(
            f"{path}: column {field.name!r}: nested values ({field.type}), {where}; "
            "each cell must hold one number or label (flatten it into columns "
            "first)",
            source=str(path),
            column=field.name,
            row=row if row >= 0 else None,
        )
    return pd.read_parquet(path)


def load_table(path: str | Path, fmt: str | None = None) -> pd.DataFrame:
    """Read a CSV, TSV, Parquet or JSON/JSON-lines file into a DataFrame, as written.

    CSV and TSV cells are read as text, exactly as in the file (``""`` for an
    empty cell); Parquet and JSON keep their types (JSON ``null`` is missing).

    :param path: file to read.
    :param fmt: one of ``csv``, ``tsv``, ``parquet``, ``jsonl``, ``json``; by
        default taken from the suffix. A ``.json`` file may hold JSON lines or a
        single array of records.
    :return: the table with a 0-based ``RangeIndex``.
    :rtype: pandas.DataFrame
    :raises DataError: the path is missing, is a directory, has an unknown
        suffix, cannot be parsed, names a column twice, or holds a nested value
        (a list or object in a cell).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found", source=str(path))
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a file", source=str(path))
    kind = _format_for(path, fmt)
    try:
        if kind == "csv":
            df = _read_text_table(path, ",")
        elif kind == "tsv":
            df = _read_text_table(path, "\t")
        elif kind == "parquet":
            df = _read_parquet(path)
        elif kind == "jsonl":
            df = _read_json_lines(path)
        else:
            df = _read_json(path)
    except DataError:
        raise
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{path}: file is empty", source=str(path)) from exc
    except (ValueError, OSError) as exc:
        # ValueError covers pandas' ParserError, UnicodeDecodeError and
        # pyarrow's ArrowInvalid: all mean "this is not a readable table".
        raise DataError(
            f"{path}: cannot read as {kind}: {type(exc).__name__}: {exc}",
            source=str(path),
        ) from exc
    return df.reset_index(drop=True)


def table_digest(df: pd.DataFrame) -> str:
    """Return the sha256 hex digest of a canonical CSV rendering of ``df``.

    The rendering is header plus rows, no index, ``\\n`` line ends, empty string
    for missing values, UTF-8. Column order, row order and dtypes matter (``1``
    and ``1.0`` differ); the digest is stable across runs and processes.

    :param df: table to fingerprint.
    :return: 64-character hex digest.
    :rtype: str
    """
    text = df.to_csv(index=False, lineterminator="\n", na_rep="")
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_digest(path: str | Path) -> str:
    """Return the sha256 hex digest of a file's bytes.

    :param path: file to hash.
    :return: 64-character hex digest.
    :rtype: str
    :raises DataError: the path is missing or is a directory.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "file not found"
        raise DataError(f"{path}: {what}", source=str(path))
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
