"""``MlflowTracker``: record fits in an MLflow store through ``MlflowClient``.

Every call names its run id; nothing touches MLflow's global active run, so a
tracker can be pickled into a worker process and keep logging to the run its
parent created. The store is contacted on first use, not at construction: call
:meth:`MlflowTracker.check_reachable` first to fail fast. Store failures raise
:class:`~hibayes.tracking.TrackingError` naming the URI; whether they should stop
a fit is the entry point's decision, not this module's.
"""

from __future__ import annotations

import getpass
import math
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hibayes.tracking.base import TrackingError, check_status
from hibayes.tracking.datasets import dataset_input, frame_digest
from hibayes.tracking.params import (
    MAX_TAG_VALUE_LENGTH,
    sanitize_key,
    truncate_value,
)
from hibayes.tracking.store import (
    check_http_reachable,
    default_artifact_location,
    describe,
    is_http_uri,
    resolve_tracking_uri,
    sqlite_init_lock,
    store_errors,
)

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities import Run

__all__ = ["MlflowTracker"]

#: Tag listing metrics dropped because they were NaN or infinite.
NOT_FINITE_TAG = "hibayes.metrics_not_finite"
_PARENT_TAG = "mlflow.parentRunId"
_PARAMS_PER_BATCH = 100  # MLflow's MAX_PARAMS_TAGS_PER_BATCH
_EXPERIMENT_ATTEMPTS = 5
_CHANGED_PARAM = "Changing param values is not allowed"


class MlflowTracker:
    """Log runs, params, metrics, datasets and artifacts to one MLflow experiment.

    :param uri: tracking URI; see :func:`~hibayes.tracking.resolve_tracking_uri`.
    :param experiment: experiment name, created on first use if missing.
    :param artifact_location: where a *new* experiment keeps artifacts; for SQLite
        stores the default is ``<db dir>/mlartifacts`` (never the current directory).
    """

    def __init__(
        self,
        uri: str | None = None,
        experiment: str = "hibayes",
        artifact_location: str | None = None,
    ) -> None:
        self.uri: str = resolve_tracking_uri(uri)
        self.experiment: str = experiment
        self.artifact_location: str | None = artifact_location or (
            default_artifact_location(self.uri)
        )
        self._client: MlflowClient | None = None
        self._experiment_id: str | None = None

    def __repr__(self) -> str:
        return f"MlflowTracker(uri={self.uri!r}, experiment={self.experiment!r})"

    def __getstate__(self) -> dict[str, Any]:
        # The client holds connections; a worker process builds its own.
        return {**self.__dict__, "_client": None}

    # -- store access ---------------------------------------------------------

    @property
    def client(self) -> MlflowClient:
        """The ``MlflowClient`` bound to :attr:`uri` (MLflow is imported here)."""
        if self._client is None:
            try:
                from mlflow import MlflowClient
            except ImportError as exc:  # pragma: no cover - mlflow is a dependency
                raise ImportError(
                    "MLflow tracking needs mlflow: pip install 'mlflow>=3.1,<4'"
                ) from exc
            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    @property
    def experiment_id(self) -> str:
        """The experiment's id; the experiment is created on first access if missing."""
        if self._experiment_id is None:
            self._experiment_id = self._get_or_create_experiment()
        return self._experiment_id

    @contextmanager
    def _translate(self, what: str) -> Iterator[None]:
        try:
            yield
        except TrackingError:
            raise
        except store_errors() as exc:
            raise TrackingError(
                f"MLflow store {self.uri}: could not {what}: {describe(exc)}"
            ) from exc

    def _get_or_create_experiment(self) -> str:
        # Two processes may create the same new store or experiment at once.
        # MLflow migrates a new SQLite schema without a lock, and racing migrations
        # leave the database broken for good (tried: leftover ``_alembic_tmp_*``
        # tables), so our processes serialise first use with a file lock. The
        # retries cover the rest: "database is locked", or an experiment created
        # by another process between our lookup and our create.
        errors = store_errors()
        last: BaseException | None = None
        for attempt in range(_EXPERIMENT_ATTEMPTS):
            try:
                with sqlite_init_lock(self.uri):
                    return self._experiment_once(errors)
            except TrackingError:
                raise
            except errors as exc:
                last = exc
                if is_http_uri(self.uri):  # MLflow's REST client already retried
                    break
                time.sleep(0.2 * 2**attempt)
        raise TrackingError(
            f"MLflow store {self.uri}: could not get or create experiment "
            f"{self.experiment!r}: {describe(last)}"
        ) from last

    def _experiment_once(self, errors: tuple[type[BaseException], ...]) -> str:
        found = self.client.get_experiment_by_name(self.experiment)
        if found is None:
            try:
                return self.client.create_experiment(
                    self.experiment, artifact_location=self.artifact_location
                )
            except errors:
                found = self.client.get_experiment_by_name(self.experiment)
                if found is None:
                    raise
        if found.lifecycle_stage != "active":
            raise TrackingError(
                f"MLflow store {self.uri}: experiment {self.experiment!r} is deleted; "
                f"restore it (mlflow experiments restore -x {found.experiment_id}) "
                "or choose another name"
            )
        return found.experiment_id

    def check_reachable(self, timeout_s: float = 10) -> None:
        """Raise TrackingError naming the URI if the store cannot be reached.

        HTTP(S) stores get one request with ``timeout_s`` and no retries; SQLite
        stores are opened (created and migrated if new); others are queried once.

        :param timeout_s: seconds to wait for a tracking server.
        :raises TrackingError: when the store is unreachable or refuses.
        """
        if is_http_uri(self.uri):
            check_http_reachable(self.uri, self.experiment, timeout_s)
            return
        with self._translate("open the store"), sqlite_init_lock(self.uri):
            self.client.search_experiments(max_results=1)

    # -- runs -----------------------------------------------------------------

    def start_run(
        self,
        run_name: str,
        tags: Mapping[str, str] | None = None,
        parent_run_id: str | None = None,
    ) -> str:
        """Create a run (nested via the ``mlflow.parentRunId`` tag); return its id.

        :param run_name: the run's display name.
        :param tags: extra tags (keys sanitised, values cut to MLflow's limit).
        :param parent_run_id: the parent run, for a sweep's child runs.
        :return: the new run's id.
        """
        user = _user()
        all_tags = {"mlflow.user": user} if user else {}
        all_tags.update(_clean_tags(tags or {}))
        if parent_run_id:
            all_tags[_PARENT_TAG] = parent_run_id
        experiment_id = self.experiment_id
        with self._translate(f"create run {run_name!r}"):
            run = self.client.create_run(
                experiment_id, tags=all_tags, run_name=run_name
            )
        return run.info.run_id

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        """Terminate a run; status in FINISHED, FAILED, KILLED."""
        status = check_status(status)
        with self._translate(f"end run {run_id} as {status}"):
            self.client.set_terminated(run_id, status=status)

    def get_run(self, run_id: str) -> Run:
        """Fetch a run with its params, metrics, tags and inputs."""
        with self._translate(f"get run {run_id}"):
            return self.client.get_run(run_id)

    def children(self, parent_run_id: str) -> list[Run]:
        """Child runs of a parent, ordered by start time (then run name)."""
        experiment_id = self.get_run(parent_run_id).info.experiment_id
        runs: list[Run] = []
        token: str | None = None
        with self._translate(f"search child runs of {parent_run_id}"):
            while True:
                page = self.client.search_runs(
                    [experiment_id],
                    filter_string=f"tags.`{_PARENT_TAG}` = '{parent_run_id}'",
                    max_results=1000,
                    order_by=["attributes.start_time ASC", "attributes.run_name ASC"],
                    page_token=token,
                )
                runs.extend(page)
                token = page.token
                if not token:
                    return runs

    # -- deferred records: a direct tracker keeps none ---------------------------

    @property
    def pending(self) -> bool:
        """Always ``False``: every call reaches the store or raises."""
        return False

    @property
    def store(self) -> MlflowTracker:
        """This tracker: it talks to the store itself."""
        return self

    def flush(self, timeout_s: float = 10) -> bool:
        """Nothing waits: ``True``."""
        return True

    def run_url(self, run_id: str) -> str:
        """A UI URL of the run for http stores, else an ``mlflow ui`` hint."""
        if is_http_uri(self.uri):
            base = self.uri.rstrip("/")
            return f"{base}/#/experiments/{self.experiment_id}/runs/{run_id}"
        return (
            f"mlflow ui --backend-store-uri {self.uri}  → experiment "
            f"{self.experiment}, run {run_id}"
        )

    # -- params, metrics, tags ------------------------------------------------

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        """Batch-log params: values str()'d and truncated, keys sanitised, 100 per call.

        :param run_id: the run.
        :param params: ``{key: value}``; see :func:`~hibayes.tracking.flatten_config`.
        :raises TrackingError: also when a key was already logged with another value
            (MLflow params are immutable); the message names the key.
        """
        from mlflow.entities import Param

        clean = {sanitize_key(k): truncate_value(v) for k, v in params.items()}
        items = list(clean.items())
        for start in range(0, len(items), _PARAMS_PER_BATCH):
            chunk = dict(items[start : start + _PARAMS_PER_BATCH])
            batch = [Param(k, v) for k, v in chunk.items()]
            try:
                with self._translate(f"log {len(batch)} params to run {run_id}"):
                    self.client.log_batch(run_id, params=batch, synchronous=True)
            except TrackingError as exc:
                if _CHANGED_PARAM in str(exc):
                    self._raise_changed_params(run_id, chunk, exc)
                raise

    def _raise_changed_params(
        self, run_id: str, chunk: Mapping[str, str], exc: TrackingError
    ) -> None:
        logged = self.get_run(run_id).data.params
        changed = [k for k, v in chunk.items() if k in logged and logged[k] != v]
        if not changed:
            return
        key = changed[0]
        raise TrackingError(
            f"MLflow store {self.uri}: param {key!r} of run {run_id} was logged as "
            f"{logged[key]!r} and cannot change to {chunk[key]!r} (params are "
            f"immutable; {len(changed)} key(s) differ: {', '.join(changed[:10])})"
        ) from exc

    def log_metrics(
        self,
        run_id: str,
        metrics: Mapping[str, float],
        step: int = 0,
        timestamp: int | None = None,
    ) -> None:
        """Batch-log finite metrics; others are dropped and named in a tag.

        A NaN metric is noise in the UI: NaN, infinite and non-numeric values are
        not logged, and their names are added to the ``hibayes.metrics_not_finite``
        tag (comma-separated, merged across calls).

        :param run_id: the run.
        :param metrics: ``{name: value}``.
        :param step: the step recorded with every value.
        :param timestamp: milliseconds since the epoch; default now (a replay passes
            the time of the original call, so sending it twice adds no point).
        """
        from mlflow.entities import Metric, RunTag

        finite: dict[str, float] = {}
        dropped: list[str] = []
        for name, value in metrics.items():
            key = sanitize_key(name)
            number = _as_float(value)
            if number is None or not math.isfinite(number):
                dropped.append(key)
            else:
                finite[key] = number
        if timestamp is None:
            timestamp = int(time.time() * 1000)
        batch = [Metric(k, v, timestamp, int(step)) for k, v in finite.items()]
        tags = []
        if dropped:
            before = self.get_run(run_id).data.tags.get(NOT_FINITE_TAG, "")
            names = sorted({*filter(None, before.split(",")), *dropped})
            value = truncate_value(",".join(names), MAX_TAG_VALUE_LENGTH)
            tags.append(RunTag(NOT_FINITE_TAG, value))
        if not batch and not tags:
            return
        with self._translate(f"log {len(batch)} metrics to run {run_id}"):
            self.client.log_batch(run_id, metrics=batch, tags=tags, synchronous=True)

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        """Set tags (keys sanitised, values str()'d and cut to MLflow's limit)."""
        from mlflow.entities import RunTag

        items = list(_clean_tags(tags).items())
        with self._translate(f"set {len(items)} tags on run {run_id}"):
            for start in range(0, len(items), _PARAMS_PER_BATCH):
                batch = [
                    RunTag(k, v) for k, v in items[start : start + _PARAMS_PER_BATCH]
                ]
                self.client.log_batch(run_id, tags=batch, synchronous=True)

    # -- datasets and artifacts -----------------------------------------------

    def log_dataset(
        self,
        run_id: str,
        df: pd.DataFrame,
        *,
        name: str,
        source: str,
        digest: str | None = None,
        context: str = "training",
    ) -> str:
        """Log the table as an MLflow dataset input; return the digest MLflow recorded.

        Without ``digest``, a SHA-256 of every row, column name and dtype is used
        (MLflow's own digest looks at the first 10,000 rows and skips categorical
        columns). MLflow keeps at most 36 characters of a digest; the tag
        ``hibayes.data_digest`` keeps it whole, ``hibayes.data_source`` the source.
        A source MLflow cannot resolve falls back to the local path or the digest.

        :param run_id: the run.
        :param df: the table the model was fitted to.
        :param name: the dataset's name in the UI.
        :param source: where the table came from (path, URI, or a label).
        :param digest: a content hash computed by the caller, if any.
        :param context: the input's role, recorded as ``mlflow.data.context``.
        :return: the dataset digest as MLflow stores it.
        """
        full_digest = digest or frame_digest(df)
        with self._translate(f"describe dataset {name!r}"):
            data_input = dataset_input(
                df, name=name, source=source, digest=full_digest, context=context
            )
        self._log_input(run_id, data_input, full_digest, source)
        return data_input.dataset.digest

    def log_dataset_record(
        self,
        run_id: str,
        record: Mapping[str, Any],
        *,
        digest: str,
        source: str,
        context: str = "training",
    ) -> None:
        """Log a dataset input from its recorded description (a replay: no rows).

        :param record: the fields of MLflow's ``Dataset`` entity (name, digest,
            source_type, source, schema, profile).
        """
        from mlflow.entities import Dataset, DatasetInput, InputTag

        entity = DatasetInput(
            dataset=Dataset(**record),
            tags=[InputTag("mlflow.data.context", context)],
        )
        self._log_input(run_id, entity, digest, source)

    def _log_input(
        self, run_id: str, data_input: Any, digest: str, source: str
    ) -> None:
        """Attach a dataset input to the run, with our whole digest and source as tags."""
        name = data_input.dataset.name
        with self._translate(f"log dataset {name!r} to run {run_id}"):
            self.client.log_inputs(run_id, datasets=[data_input])
        self.set_tags(
            run_id, {"hibayes.data_digest": digest, "hibayes.data_source": source}
        )

    def find_run(self, tag: str, value: str) -> str | None:
        """The id of a run of this experiment whose tag ``tag`` is ``value``, if any."""
        with self._translate(f"look for a run with {tag}={value}"):
            found = self.client.search_runs(
                [self.experiment_id],
                filter_string=f"tags.`{tag}` = '{value}'",
                max_results=2,
            )
        return found[0].info.run_id if found else None

    def log_artifacts(
        self, run_id: str, local_dir: str | Path, artifact_path: str | None = None
    ) -> None:
        """Upload every file under ``local_dir`` (under ``artifact_path`` if given)."""
        with self._translate(f"log artifacts from {local_dir} to run {run_id}"):
            self.client.log_artifacts(run_id, str(local_dir), artifact_path)

    def log_artifact(
        self, run_id: str, local_path: str | Path, artifact_path: str | None = None
    ) -> None:
        """Upload one file (under ``artifact_path`` if given)."""
        with self._translate(f"log artifact {local_path} to run {run_id}"):
            self.client.log_artifact(run_id, str(local_path), artifact_path)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        """Write ``text`` to the artifact ``artifact_file`` (a relative path)."""
        with self._translate(f"log text {artifact_file} to run {run_id}"):
            self.client.log_text(run_id, text, artifact_file)

    def download_artifact(self, run_id: str, path: str, dst_dir: str | Path) -> Path:
        """Download an artifact (file or directory) into ``dst_dir``; return it."""
        destination = Path(dst_dir)
        destination.mkdir(parents=True, exist_ok=True)
        with self._translate(f"download artifact {path} of run {run_id}"):
            local = self.client.download_artifacts(
                run_id, path, str(destination.resolve())
            )
        return Path(local)


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in some containers
        return None


def _clean_tags(tags: Mapping[str, Any]) -> dict[str, str]:
    return {
        sanitize_key(k): truncate_value(v, MAX_TAG_VALUE_LENGTH)
        for k, v in tags.items()
    }


def _as_float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
