"""Read evaluation tables from disk and fingerprint them.

Reads CSV, TSV, Parquet and JSON (JSON lines, or one array of records) into a
pandas DataFrame with a fresh 0-based index, so that row numbers in later error
messages are 0-based data rows of the file. It does no cleaning or validation of
the contents: that is :func:`hibayes.data.make_features`' job.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

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


def _records_frame(path: Path, records: list, where: str) -> pd.DataFrame:
    """Build a frame from parsed JSON records, rejecting anything but objects."""
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise DataError(
                f"{path}: {where} {i} is a JSON {type(rec).__name__}, "
                "expected an object (one row)",
                source=str(path),
                row=i,
            )
    # json -> python types -> DataFrame keeps ints as int64 and strings as
    # object; pandas' own JSON reader guesses dates and numeric strings.
    return pd.DataFrame.from_records(records)


def _read_json_lines(path: Path) -> pd.DataFrame:
    """Read one JSON object per line; blank lines are skipped."""
    records = []
    with path.open("r", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
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
        records = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})",
            source=str(path),
        ) from exc
    return _records_frame(path, records, "record")


def load_table(path: str | Path, fmt: str | None = None) -> pd.DataFrame:
    """Read a CSV, TSV, Parquet or JSON/JSON-lines file into a DataFrame.

    :param path: file to read.
    :param fmt: one of ``csv``, ``tsv``, ``parquet``, ``jsonl``, ``json``; by
        default taken from the suffix. A ``.json`` file may hold JSON lines or a
        single array of records.
    :return: the table with a 0-based ``RangeIndex``.
    :rtype: pandas.DataFrame
    :raises DataError: the path is missing, is a directory, has an unknown
        suffix, or cannot be parsed.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found", source=str(path))
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a file", source=str(path))
    kind = _format_for(path, fmt)
    try:
        if kind == "csv":
            df = pd.read_csv(path)
        elif kind == "tsv":
            df = pd.read_csv(path, sep="\t")
        elif kind == "parquet":
            df = pd.read_parquet(path)
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
