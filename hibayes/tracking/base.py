"""The tracker interface shared by :class:`MlflowTracker` and :class:`NullTracker`.

Nothing here imports MLflow; the interface exists so the entry point can annotate
``tracker: Tracker`` and swap in the no-op tracker when tracking is off.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from hibayes.errors import HibayesError

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.entities import Run

__all__ = ["RUN_STATUSES", "Tracker", "TrackingError"]

#: Terminal run statuses accepted by ``end_run``.
RUN_STATUSES: tuple[str, ...] = ("FINISHED", "FAILED", "KILLED")


class TrackingError(HibayesError, RuntimeError):
    """Tracking store unreachable or refusing a request."""


class Tracker(Protocol):
    """What the entry point needs from a tracker; run ids are passed explicitly."""

    uri: str

    @property
    def pending(self) -> bool:
        """Whether records wait on disk for the store (only a deferring tracker's do)."""

    @property
    def store(self) -> Tracker:
        """The tracker that talks to the store itself, past any deferring wrapper."""

    def flush(self, timeout_s: float = 10) -> bool:
        """Send records that wait for the store; ``True`` when none are left."""

    def check_reachable(self, timeout_s: float = 10) -> None:
        """Raise :class:`TrackingError` if the store cannot be reached."""

    def start_run(
        self,
        run_name: str,
        tags: Mapping[str, str] | None = None,
        parent_run_id: str | None = None,
    ) -> str:
        """Create a run and return its id."""

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        """Log parameters."""

    def log_metrics(
        self, run_id: str, metrics: Mapping[str, float], step: int = 0
    ) -> None:
        """Log finite metrics."""

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        """Set tags."""

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
        """Log a table as a dataset input and return its digest."""

    def log_dataset_record(
        self,
        run_id: str,
        record: Mapping[str, Any],
        *,
        digest: str,
        source: str,
        context: str = "training",
    ) -> None:
        """Log a dataset input from its description (``datasets.dataset_record``)."""

    def log_artifacts(
        self, run_id: str, local_dir: str | Path, artifact_path: str | None = None
    ) -> None:
        """Log a directory's files as artifacts."""

    def log_artifact(
        self, run_id: str, local_path: str | Path, artifact_path: str | None = None
    ) -> None:
        """Log one file as an artifact."""

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        """Log a string as a text artifact."""

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        """Terminate a run."""

    def get_run(self, run_id: str) -> Run:
        """Fetch a run."""

    def children(self, parent_run_id: str) -> list[Run]:
        """Child runs of a parent, ordered by start time."""

    def download_artifact(self, run_id: str, path: str, dst_dir: str | Path) -> Path:
        """Download an artifact and return its local path."""

    def run_url(self, run_id: str) -> str:
        """Where to look at the run."""


def check_status(status: str) -> str:
    """Validate a terminal run status (``FINISHED``, ``FAILED``, ``KILLED``).

    :param status: the status, any case.
    :return: the status in upper case.
    :raises ValueError: for any other status.
    """
    upper = status.upper()
    if upper not in RUN_STATUSES:
        raise ValueError(f"run status must be one of {RUN_STATUSES}, got {status!r}")
    return upper
