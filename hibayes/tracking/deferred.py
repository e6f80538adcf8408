"""Records that did not reach the tracking store, kept on disk until they do.

:class:`DeferringTracker` wraps an :class:`~hibayes.tracking.MlflowTracker` for
one run (a fit, or a sweep's parent). It passes every call through until the
store fails; from then on — or from the start, when it is opened offline — it
appends each call to ``upload_pending.json`` in the run's output directory
instead of sending it, so a fit whose store went down keeps its results and
says what is missing. :meth:`DeferringTracker.flush` sends the recorded calls
once the store answers again (``python -m hibayes.sync`` does it for files left
behind). Each recorded call can be sent twice without changing the run a second
time: the run is found again by its ``hibayes.run_key`` tag before one is
created, metrics keep the timestamp they were first logged with, params and
tags are rewritten with equal values, artifacts overwrite themselves. A replay
cut short therefore just runs again.

Every string this wrapper sends — run name, tags, params, texts, and the text
files of an uploaded directory — is scrubbed of credentials first
(:mod:`hibayes.system.redaction`).
"""

from __future__ import annotations

import json
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from hibayes.system.atomic import is_temporary, write_text
from hibayes.system.interrupts import shielded
from hibayes.system.redaction import scrub_text, scrub_tree
from hibayes.tracking import MlflowTracker, TrackingError, redact
from hibayes.tracking.marker import MARKER_FILE

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["PENDING_FILE", "RUN_KEY_TAG", "UPLOAD_TAG", "DeferringTracker"]

log = logging.getLogger("hibayes.tracking.deferred")

#: The file, in a run's output directory, listing what the store has not received.
PENDING_FILE = "upload_pending.json"
#: Tag that identifies a run across retries (a random id chosen before creation).
RUN_KEY_TAG = "hibayes.run_key"
#: Tag on runs completed after a store failure ("synced") or left incomplete.
UPLOAD_TAG = "hibayes.upload"
_VERSION = 1
_PENDING_ID = "pending-"
_T = TypeVar("_T")


class DeferringTracker:
    """A tracker for one run that records, instead of losing, what the store refuses.

    :param tracker: the store to send to.
    :param pending_file: where to record calls the store did not take.
    :param offline_reason: why the store is known to be unreachable already; the
        wrapper then records from the first call.
    :param run_key: the run's ``hibayes.run_key`` tag; a new random one if None.
    """

    def __init__(
        self,
        tracker: MlflowTracker,
        pending_file: Path,
        offline_reason: str | None = None,
        run_key: str | None = None,
    ) -> None:
        self.tracker = tracker
        self.uri = scrub_text(tracker.uri)
        self.pending_file = Path(pending_file).resolve()
        self.run_key = run_key or uuid.uuid4().hex
        self.run_id: str | None = None
        self.reason = scrub_text(offline_reason) if offline_reason else None
        self.ops: list[dict[str, Any]] = []

    def __repr__(self) -> str:
        state = f"offline: {self.reason}" if self.reason else "online"
        return f"DeferringTracker({self.uri!r}, {state}, {len(self.ops)} pending)"

    # -- state ------------------------------------------------------------------

    @property
    def pending(self) -> bool:
        """Whether some calls wait in :attr:`pending_file` for the store."""
        return bool(self.ops)

    @property
    def recorded_run_id(self) -> str:
        """The id this tracker's calls take: the run's, or a placeholder until created."""
        return self._public_id()

    @property
    def store(self) -> MlflowTracker:
        """The wrapped tracker, which talks to the store itself."""
        return self.tracker

    @classmethod
    def from_file(cls, path: Path, uri: str | None = None) -> DeferringTracker:
        """Reopen a pending file left by an earlier process (for a replay).

        :param path: an ``upload_pending.json``.
        :param uri: the store to send to; default the one recorded in the file
            (a URI whose password was hidden needs ``uri`` or the env credentials).
        :raises ValueError: the file is not a pending-upload record.
        """
        path = Path(path)
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(
                f"{path}: not a readable pending-upload record: {exc}"
            ) from exc
        return cls.from_record(record, path, uri=uri, source=path)

    @classmethod
    def from_record(
        cls,
        record: Mapping[str, Any],
        pending_file: Path,
        uri: str | None = None,
        source: Path | None = None,
    ) -> DeferringTracker:
        """A tracker that replays ``record`` (the pending-upload format) to its store.

        :param pending_file: where to keep what is still unsent meanwhile.
        :param uri: the store to send to; default the one recorded.
        :param source: the file the record came from, for messages.
        :raises ValueError: the record is not a pending-upload record.
        """
        path = source or pending_file
        if not isinstance(record, Mapping) or record.get("version") != _VERSION:
            raise ValueError(
                f"{path}: not a pending-upload record (version {_VERSION})"
            )
        target = uri or record["tracking_uri"]
        if "***" in target:
            raise ValueError(
                f"{path}: the recorded tracking URI {target} had its password hidden; "
                "pass the URI (--uri) or set MLFLOW_TRACKING_USERNAME/PASSWORD"
            )
        store = MlflowTracker(
            uri=target,
            experiment=record["experiment"],
            artifact_location=record.get("artifact_location"),
        )
        self = cls(
            store,
            pending_file,
            offline_reason=record.get("reason") or "recorded earlier",
            run_key=record["run_key"],
        )
        self.run_id = record.get("run_id")
        self.ops = list(record["ops"])
        return self

    def record(self, ops: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """This run's record in the pending-upload format (with ``ops``, or its own)."""
        ops = self.ops if ops is None else ops
        return {
            "version": _VERSION,
            "tracking_uri": self.uri,
            "experiment": self.tracker.experiment,
            "artifact_location": self.tracker.artifact_location,
            "run_key": self.run_key,
            "run_id": self.run_id,
            "reason": self.reason,
            "pending": [op["op"] for op in ops],
            "ops": ops,
        }

    def opening_record(
        self,
        run_name: str,
        tags: Mapping[str, str] | None,
        parent_run_id: str | None,
        params: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The record of the calls that open this run (for a run marker)."""
        ops = [_start_op(run_name, tags, parent_run_id, self.run_key)]
        if params is not None:
            ops.append(_params_op(params))
        return self.record(ops)

    def _save(self) -> None:
        record = self.record()
        write_text(self.pending_file, json.dumps(record, indent=1, default=str) + "\n")

    def _send(self, op: dict[str, Any], call: Callable[[], _T]) -> _T | None:
        """Make the call while the store answers; once it fails, record instead."""
        if self.reason is None:
            try:
                with shielded():  # a signal must not cut a store transaction in half
                    return call()
            except TrackingError as exc:
                self._go_offline(exc)
        self.ops.append(op)
        self._save()
        return None

    def _go_offline(self, exc: TrackingError) -> None:
        self.reason = scrub_text(str(exc))
        log.warning(
            "%s; the results stay on disk, and what the store did not get is listed "
            "in %s (send it with: python -m hibayes.sync %s)",
            self.reason,
            self.pending_file,
            self.pending_file.parent,
        )

    def _check_run(self, run_id: str) -> None:
        if run_id != self._public_id():
            raise ValueError(
                f"this tracker records run {self._public_id()}, not {run_id}"
            )

    def _public_id(self) -> str:
        return self.run_id or f"{_PENDING_ID}{self.run_key}"

    # -- the Tracker interface ---------------------------------------------------

    def check_reachable(self, timeout_s: float = 10) -> None:
        """Raise :class:`TrackingError` naming the URI if the store is unreachable."""
        self.tracker.check_reachable(timeout_s)

    def start_run(
        self,
        run_name: str,
        tags: Mapping[str, str] | None = None,
        parent_run_id: str | None = None,
    ) -> str:
        """Create the run (or record its creation); return its id or a placeholder."""
        if self.run_id is not None or self.ops:
            raise ValueError(
                "a DeferringTracker records one run; it was started already"
            )
        op = _start_op(run_name, tags, parent_run_id, self.run_key)
        self.run_id = self._send(op, lambda: self._apply_start(op))
        return self._public_id()

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        """Log params (redacted), or record them."""
        self._check_run(run_id)
        op = _params_op(params)
        self._send(op, lambda: self._apply(op))

    def log_metrics(
        self, run_id: str, metrics: Mapping[str, float], step: int = 0
    ) -> None:
        """Log finite metrics with a timestamp fixed now (replays do not duplicate them)."""
        self._check_run(run_id)
        op = {
            "op": "log_metrics",
            "metrics": {k: _as_float(v) for k, v in metrics.items()},
            "step": int(step),
            "timestamp": int(time.time() * 1000),
        }
        self._send(op, lambda: self._apply(op))

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        """Set tags (scrubbed), or record them."""
        self._check_run(run_id)
        op = {"op": "set_tags", "tags": _scrub_map(tags)}
        self._send(op, lambda: self._apply(op))

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
        """Log the table as a dataset input, or record its description (not its rows)."""
        from hibayes.tracking.datasets import dataset_record, frame_digest

        full_digest = digest or frame_digest(df)
        record = dataset_record(df, name=name, source=source, digest=full_digest)
        self.log_dataset_record(
            run_id, record, digest=full_digest, source=source, context=context
        )
        return str(record["digest"])

    def log_dataset_record(
        self,
        run_id: str,
        record: Mapping[str, Any],
        *,
        digest: str,
        source: str,
        context: str = "training",
    ) -> None:
        """Log a dataset input from its description, or record it.

        :param record: the fields of MLflow's ``Dataset`` entity
            (:func:`~hibayes.tracking.datasets.dataset_record`).
        :param digest: the table's whole digest (tag ``hibayes.data_digest``).
        :param source: where it came from (tag ``hibayes.data_source``).
        """
        self._check_run(run_id)
        op = {
            "op": "log_dataset",
            "context": context,
            "dataset": dict(record),
            "tags": {"hibayes.data_digest": digest, "hibayes.data_source": source},
        }
        self._send(op, lambda: self._apply(op))

    def log_artifacts(
        self, run_id: str, local_dir: str | Path, artifact_path: str | None = None
    ) -> None:
        """Upload a directory's files (text files scrubbed first), or record it."""
        self._check_run(run_id)
        op = {
            "op": "log_artifacts",
            "dir": str(Path(local_dir).resolve()),
            "artifact_path": artifact_path,
        }
        self._send(op, lambda: self._apply(op))

    def log_artifact(
        self, run_id: str, local_path: str | Path, artifact_path: str | None = None
    ) -> None:
        """Upload one file (scrubbed first if text), or record it."""
        self._check_run(run_id)
        op = {
            "op": "log_artifact",
            "path": str(Path(local_path).resolve()),
            "artifact_path": artifact_path,
        }
        self._send(op, lambda: self._apply(op))

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        """Write ``text`` (scrubbed) as an artifact, or record it."""
        self._check_run(run_id)
        op = {
            "op": "log_text",
            "text": scrub_text(text),
            "artifact_file": artifact_file,
        }
        self._send(op, lambda: self._apply(op))

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        """Terminate the run, or record the status it should end with."""
        self._check_run(run_id)
        op = {"op": "end_run", "status": status}
        self._send(op, lambda: self._apply(op))

    def get_run(self, run_id: str) -> Any:
        """Fetch a run from the store (raises :class:`TrackingError` when it fails)."""
        return self.tracker.get_run(run_id)

    def children(self, parent_run_id: str) -> list[Any]:
        """Child runs of a parent, from the store."""
        return self.tracker.children(parent_run_id)

    def download_artifact(self, run_id: str, path: str, dst_dir: str | Path) -> Path:
        """Download an artifact from the store."""
        return self.tracker.download_artifact(run_id, path, dst_dir)

    def run_url(self, run_id: str) -> str:
        """Where to look at the run: its UI URL, or the pending file while offline."""
        if self.reason is not None or self.run_id is None:
            return f"{self.pending_file} (not yet in {self.uri})"
        try:
            return scrub_text(self.tracker.run_url(self.run_id))
        except TrackingError:
            return f"run {self.run_id} in {self.uri}"

    # -- sending what was recorded --------------------------------------------------

    def flush(self, timeout_s: float = 10) -> bool:
        """Send the recorded calls if the store answers; return whether none are left.

        The store is asked once, without retries, before anything is sent. Sent
        calls leave the pending file as they succeed; when it is empty the file
        is removed and the run gets the tag ``hibayes.upload=synced``.

        :param timeout_s: how long to wait for the store's first answer.
        """
        if not self.ops:
            return True
        try:
            self.tracker.check_reachable(timeout_s)
        except TrackingError as exc:
            self.reason = scrub_text(str(exc))
            self._save()
            return False
        while self.ops:
            op = self.ops[0]
            try:
                with shielded():
                    if op["op"] == "start_run":
                        self.run_id = self._apply_start(op)
                    else:
                        self._apply(op)
            except TrackingError as exc:
                self.reason = scrub_text(str(exc))
                self._save()
                self._mark_incomplete()
                return False
            self.ops.pop(0)
            self._save()
        self.reason = None
        try:
            self._apply({"op": "set_tags", "tags": {UPLOAD_TAG: "synced"}})
        except TrackingError as exc:  # everything else arrived; say so, keep going
            log.warning(
                "run %s is complete but not tagged %s=synced: %s",
                self.run_id,
                UPLOAD_TAG,
                exc,
            )
        self.pending_file.unlink(missing_ok=True)
        return True

    def _mark_incomplete(self) -> None:
        if self.run_id is None:
            return
        try:
            self.tracker.set_tags(self.run_id, {UPLOAD_TAG: "incomplete"})
        except TrackingError:
            pass  # the pending file says it anyway

    def _find_run(self) -> str | None:
        """The run created earlier under this run key, if the store has it."""
        return self.tracker.find_run(RUN_KEY_TAG, self.run_key)

    def _apply_start(self, op: Mapping[str, Any]) -> str:
        existing = self.run_id or self._find_run()
        if existing:
            return existing
        return self.tracker.start_run(
            op["run_name"], tags=op["tags"], parent_run_id=op.get("parent_run_id")
        )

    def _apply(self, op: Mapping[str, Any]) -> None:
        """Send one recorded call to the store (the run must exist)."""
        if self.run_id is None:
            raise TrackingError(f"MLflow store {self.uri}: the run was never created")
        kind, run_id = op["op"], self.run_id
        if kind == "log_params":
            self.tracker.log_params(run_id, op["params"])
        elif kind == "log_metrics":
            self.tracker.log_metrics(
                run_id, op["metrics"], op["step"], timestamp=op["timestamp"]
            )
        elif kind == "set_tags":
            self.tracker.set_tags(run_id, op["tags"])
        elif kind == "log_dataset":
            self.tracker.log_dataset_record(
                run_id,
                op["dataset"],
                context=op["context"],
                digest=op["tags"]["hibayes.data_digest"],
                source=op["tags"]["hibayes.data_source"],
            )
        elif kind == "log_artifacts":
            self._upload(Path(op["dir"]), op.get("artifact_path"))
        elif kind == "log_artifact":
            self._upload(Path(op["path"]), op.get("artifact_path"))
        elif kind == "log_text":
            self.tracker.log_text(run_id, op["text"], op["artifact_file"])
        elif kind == "end_run":
            self.tracker.end_run(run_id, op["status"])
        else:
            raise ValueError(f"{self.pending_file}: unknown recorded call {kind!r}")

    def _upload(self, local: Path, artifact_path: str | None) -> None:
        """Upload a file or a directory's files, leaving out the pending file itself."""
        if not local.exists():
            raise TrackingError(f"cannot upload {local}: it no longer exists")
        scrub_tree(local)
        if local.is_file():
            self.tracker.log_artifact(self.run_id, local, artifact_path)
            return
        for path in _files(local):
            parent = path.parent.relative_to(local).as_posix()
            where = (
                "/".join(p for p in (artifact_path, parent) if p and p != ".") or None
            )
            self.tracker.log_artifact(self.run_id, path, where)


def _files(root: Path) -> Iterator[Path]:
    """The files of a run's folder to upload: not this module's or the marker's
    records, not a file still being written under a temporary name."""
    for path in sorted(root.rglob("*")):
        name = path.name
        if (
            path.is_file()
            and not name.startswith((PENDING_FILE, MARKER_FILE))
            and not is_temporary(path)  # a write cut short: not an output
        ):
            yield path


def _start_op(
    run_name: str,
    tags: Mapping[str, str] | None,
    parent_run_id: str | None,
    run_key: str,
) -> dict[str, Any]:
    return {
        "op": "start_run",
        "run_name": scrub_text(run_name),
        "tags": _scrub_map({**(tags or {}), RUN_KEY_TAG: run_key}),
        "parent_run_id": parent_run_id,
    }


def _params_op(params: Mapping[str, Any]) -> dict[str, Any]:
    return {"op": "log_params", "params": redact(_scrub_map(params))}


def _scrub_map(values: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): scrub_text(str(v)) for k, v in values.items()}


def _as_float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
