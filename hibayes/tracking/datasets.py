"""Describing a pandas table as an MLflow dataset input.

Builds the :class:`mlflow.entities.DatasetInput` that ``MlflowClient.log_inputs``
takes (what ``mlflow.log_input`` does, without the global active run). Nothing
here talks to the store; logging stays in :mod:`hibayes.tracking.mlflow_tracker`.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hibayes.tracking.store import store_errors

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.data.dataset_source import DatasetSource
    from mlflow.entities import DatasetInput

__all__ = ["MLFLOW_DIGEST_LENGTH", "dataset_input", "dataset_record", "frame_digest"]

#: ``MAX_DATASET_DIGEST_SIZE`` in MLflow: longer digests are refused.
MLFLOW_DIGEST_LENGTH = 36
_CONTEXT_TAG = "mlflow.data.context"


def frame_digest(df: pd.DataFrame) -> str:
    """SHA-256 (first 32 hex digits) of a table's shape, column names, dtypes and rows.

    Unlike MLflow's own pandas digest, which hashes only the first 10,000 rows
    and only string and numeric columns, every row and column counts (categorical
    columns included); the index does not.

    :param df: the table.
    :return: 32 hex digits.
    """
    import pandas as pd

    sha = hashlib.sha256()
    header = [list(map(str, df.columns)), list(map(str, df.dtypes)), list(df.shape)]
    sha.update(json.dumps(header).encode())
    try:
        sha.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    except TypeError:  # unhashable cells (lists, dicts): hash their text instead
        sha.update(df.to_json(orient="values", default_handler=str).encode())
    return sha.hexdigest()[:32]


def dataset_source(source: str, digest: str) -> DatasetSource:
    """Resolve ``source`` as MLflow would; fall back to a local path, then the digest.

    ``mlflow.data.from_pandas`` raises for a source with a scheme it does not know
    (``examples:binomial``, a Windows path); the fallbacks resolve as local paths.

    :param source: where the table came from.
    :param digest: the table's digest, the last resort.
    :return: an MLflow dataset source.
    """
    from mlflow.data.dataset_source_registry import resolve_dataset_source

    candidates = [source]
    try:
        local = Path(source).expanduser()
        if local.exists():
            candidates.append(str(local.resolve()))
    except (OSError, ValueError):
        pass
    candidates.append(digest)
    errors = store_errors()
    last: BaseException | None = None
    for candidate in candidates:
        try:
            with warnings.catch_warnings():
                # "can be interpreted in multiple ways": MLflow picks a local path.
                warnings.simplefilter("ignore", UserWarning)
                return resolve_dataset_source(candidate)
        except errors as exc:
            last = exc
    raise ValueError(f"no MLflow dataset source for {source!r}") from last


def dataset_record(
    df: pd.DataFrame, *, name: str, source: str, digest: str
) -> dict[str, Any]:
    """The fields of MLflow's ``Dataset`` entity for ``df``: plain JSON, no rows.

    What a run's dataset input holds (name, digest, source type, source, schema,
    profile); kept on disk it lets the input be logged later without the table
    (``log_dataset_record``).

    :param df: the table.
    :param name: the dataset's name.
    :param source: where it came from (see :func:`dataset_source`).
    :param digest: its digest; only the first 36 characters are kept (MLflow's limit).
    """
    import mlflow.data

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # schema inference hints
        dataset = mlflow.data.from_pandas(
            df,
            source=dataset_source(source, digest),
            name=name,
            digest=digest[:MLFLOW_DIGEST_LENGTH],
        )
        info = dataset.to_dict()
    return {
        "name": info["name"],
        "digest": info["digest"],
        "source_type": info["source_type"],
        "source": info["source"],
        "schema": info.get("schema"),
        "profile": info.get("profile"),
    }


def dataset_input(
    df: pd.DataFrame, *, name: str, source: str, digest: str, context: str
) -> DatasetInput:
    """The dataset input for ``log_inputs``: schema, profile, source and digest.

    :param df: the table.
    :param name: the dataset's name.
    :param source: where it came from (see :func:`dataset_source`).
    :param digest: its digest; only the first 36 characters are kept (MLflow's limit).
    :param context: recorded as the input tag ``mlflow.data.context``.
    :return: the entity to log; ``.dataset.digest`` is the digest MLflow records.
    """
    from mlflow.entities import Dataset, DatasetInput, InputTag

    record = dataset_record(df, name=name, source=source, digest=digest)
    return DatasetInput(
        dataset=Dataset(**record), tags=[InputTag(_CONTEXT_TAG, context)]
    )
