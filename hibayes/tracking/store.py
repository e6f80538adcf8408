"""Tracking-store plumbing: URI resolution, SQLite set-up, reachability, errors.

We always hand MLflow an explicit URI, so neither an old ``./mlruns`` folder nor
the process's active-run state can change where a fit is recorded. MLflow itself
is imported only inside functions that need it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hibayes.tracking.base import TrackingError

__all__ = [
    "DEFAULT_TRACKING_URI",
    "check_http_reachable",
    "check_sqlite_openable",
    "check_store_exists",
    "default_artifact_location",
    "is_http_uri",
    "resolve_tracking_uri",
    "sqlite_db_path",
    "sqlite_init_lock",
    "store_errors",
]

#: Used when neither an explicit URI nor ``$MLFLOW_TRACKING_URI`` is given.
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
_SQLITE_PREFIX = "sqlite:///"
_MAX_MESSAGE = 600


def resolve_tracking_uri(uri: str | None) -> str:
    """Explicit uri, else $MLFLOW_TRACKING_URI, else 'sqlite:///mlflow.db'.

    A relative SQLite path (the default one included) is made absolute against
    the current directory, so the URI means the same thing in every process.

    :param uri: the URI asked for, or ``None``/``""``.
    :return: the URI to use.
    """
    chosen = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    path = sqlite_db_path(chosen)
    if path is not None and not path.is_absolute():
        query = chosen.partition("?")[2]
        chosen = f"{_SQLITE_PREFIX}{path.resolve()}" + (f"?{query}" if query else "")
    return chosen


def is_http_uri(uri: str) -> bool:
    """Whether ``uri`` names a tracking server (``http://`` or ``https://``)."""
    return uri.lower().startswith(("http://", "https://"))


def sqlite_db_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI; ``None`` for others and in-memory."""
    if not uri.startswith(_SQLITE_PREFIX):
        return None
    raw = uri[len(_SQLITE_PREFIX) :].partition("?")[0]
    if raw in {"", ":memory:"}:
        return None
    return Path(raw)


def default_artifact_location(uri: str) -> str | None:
    """``<db dir>/mlartifacts`` as a file URI for SQLite stores, else ``None``.

    Without it MLflow would put artifacts under the current directory.
    """
    path = sqlite_db_path(uri)
    if path is None:
        return None
    return (path.resolve().parent / "mlartifacts").as_uri()


@contextmanager
def sqlite_init_lock(uri: str) -> Iterator[None]:
    """Serialise first use of a SQLite store between processes (POSIX only).

    MLflow's tracking store runs its schema migrations on a new database without
    a lock, and two processes creating the same database at once can break it.
    The lock is the hidden file ``.<db name>.lock`` next to the database.
    """
    path = sqlite_db_path(uri)
    if path is None or os.name == "nt":
        yield
        return
    import fcntl

    # Next to the database (a hidden file), so it goes wherever the store goes.
    path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def check_store_exists(uri: str) -> None:
    """Refuse a SQLite store that does not exist, for commands that only read runs.

    MLflow would create an empty database and then report "run not found", which
    points the wrong way when the command was simply started in another folder.

    :raises TrackingError: naming the file and how to point at the right store.
    """
    path = sqlite_db_path(uri)
    if path is not None and not path.exists():
        raise TrackingError(
            f"no tracking store at {path}: run this from the folder that holds "
            "mlflow.db, or name the store (--tracking-uri / tracking.uri= / "
            "$MLFLOW_TRACKING_URI)"
        )


def check_sqlite_openable(uri: str) -> None:
    """Fail fast, without importing MLflow, when a SQLite store cannot be created or read.

    Catches the usual mistakes (a folder that cannot be created or written, a file
    that is not a database) in milliseconds; MLflow's own open, which takes seconds,
    can then run while the fit starts. Other URIs are not checked here.

    :raises TrackingError: naming the URI and the file.
    """
    import sqlite3
    from contextlib import closing

    path = sqlite_db_path(uri)
    if path is None:
        return
    path = path.resolve()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as con:
                con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        elif not os.access(path.parent, os.W_OK):
            raise PermissionError(f"cannot create a file in {path.parent}")
    except (OSError, sqlite3.Error) as exc:
        raise TrackingError(
            f"MLflow store {uri}: cannot open the database {path}: {describe(exc)}"
        ) from exc


def store_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean the store failed or refused, not a bug of ours."""
    import requests
    from mlflow.exceptions import MlflowException

    errors: list[type[BaseException]] = [
        MlflowException,
        requests.RequestException,
        OSError,
    ]
    try:
        from sqlalchemy.exc import SQLAlchemyError

        errors.append(SQLAlchemyError)
    except ImportError:  # pragma: no cover - sqlalchemy ships with mlflow
        pass
    return tuple(errors)


def describe(exc: BaseException) -> str:
    """A one-paragraph description of an MLflow error (its messages can be long)."""
    text = " ".join(str(exc).split())
    if len(text) > _MAX_MESSAGE:
        text = text[:_MAX_MESSAGE] + " ..."
    return f"{type(exc).__name__}: {text}"


def check_http_reachable(uri: str, experiment: str, timeout_s: float) -> None:
    """One request to an MLflow server, without retries; raise if it fails.

    Asks for the experiment by name (a 404 for an unknown name still means the
    server answers). Credentials come from the usual MLflow environment
    variables.

    :param uri: the server's URI.
    :param experiment: an experiment name to ask for.
    :param timeout_s: connect and read timeout.
    :raises TrackingError: when the server cannot be reached or refuses.
    """
    import requests
    from mlflow.exceptions import MlflowException
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    try:
        response = http_request(
            get_default_host_creds(uri),
            "/api/2.0/mlflow/experiments/get-by-name",
            "GET",
            max_retries=0,
            backoff_factor=0,
            backoff_jitter=0,
            timeout=timeout_s,
            raise_on_status=False,
            params={"experiment_name": experiment},
        )
    except (MlflowException, requests.RequestException, OSError) as exc:
        raise TrackingError(
            f"MLflow tracking server {uri} is not reachable: {describe(exc)}"
        ) from exc
    if response.status_code in (401, 403):
        raise TrackingError(
            f"MLflow tracking server {uri} refused the request "
            f"(HTTP {response.status_code}); check MLFLOW_TRACKING_TOKEN or "
            "MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD"
        )
    if response.status_code == 404 and "RESOURCE_DOES_NOT_EXIST" not in response.text:
        raise TrackingError(
            f"{uri} answered HTTP 404 to an MLflow API request: is it an MLflow "
            "tracking server (and the URI its root)?"
        )
    if response.status_code != 404 and response.status_code >= 400:
        raise TrackingError(
            f"MLflow tracking server {uri} answered HTTP {response.status_code}: "
            f"{response.text[:200]!r}"
        )
