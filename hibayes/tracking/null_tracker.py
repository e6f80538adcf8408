"""``NullTracker``: the tracker used when tracking is off (``tracking: none``).

Same methods as :class:`~hibayes.tracking.MlflowTracker`; every call does nothing
and run ids are empty strings, so the entry point needs no ``if tracker`` checks.
Reading runs back is the one thing it cannot fake: ``get_run`` and
``download_artifact`` raise :class:`~hibayes.tracking.TrackingError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hibayes.tracking.base import TrackingError, check_status

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.entities import Run

__all__ = ["NullTracker"]


class NullTracker:
    """A tracker that records nothing; takes (and ignores) MlflowTracker's arguments."""

    uri: str = ""
    experiment: str = ""
    experiment_id: str = ""

    def __init__(
        self,
        uri: str | None = None,
        experiment: str = "hibayes",
        artifact_location: str | None = None,
    ) -> None:
        del uri, experiment, artifact_location

    def __repr__(self) -> str:
        return "NullTracker()"

    def check_reachable(self, timeout_s: float = 10) -> None:
        """Nothing to reach."""

    def start_run(
        self,
        run_name: str,
        tags: Mapping[str, str] | None = None,
        parent_run_id: str | None = None,
    ) -> str:
        """Return ``""`` as the run id."""
        return ""

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        """Check ``status`` like MlflowTracker does, then do nothing."""
        check_status(status)

    def get_run(self, run_id: str) -> Run:
        """Raise: there is no run to read back."""
        raise TrackingError("tracking is off (NullTracker): no run to read back")

    def children(self, parent_run_id: str) -> list[Run]:
        """Return an empty list."""
        return []

    # -- deferred records: a direct tracker keeps none ---------------------------

    @property
    def pending(self) -> bool:
        """Always ``False``: every call reaches the store or raises."""
        return False

    @property
    def store(self) -> NullTracker:
        """This tracker: it talks to the store itself."""
        return self

    def flush(self, timeout_s: float = 10) -> bool:
        """Nothing waits: ``True``."""
        return True

    def run_url(self, run_id: str) -> str:
        """Return ``""``."""
        return ""

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        """Do nothing."""

    def log_metrics(
        self, run_id: str, metrics: Mapping[str, float], step: int = 0
    ) -> None:
        """Do nothing."""

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        """Do nothing."""

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
        """Return ``digest`` (or ``""``) without logging anything."""
        return digest or ""

    def log_dataset_record(
        self,
        run_id: str,
        record: Mapping[str, Any],
        *,
        digest: str,
        source: str,
        context: str = "training",
    ) -> None:
        """Do nothing."""

    def log_artifacts(
        self, run_id: str, local_dir: str | Path, artifact_path: str | None = None
    ) -> None:
        """Do nothing."""

    def log_artifact(
        self, run_id: str, local_path: str | Path, artifact_path: str | None = None
    ) -> None:
        """Do nothing."""

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        """Do nothing."""

    def download_artifact(self, run_id: str, path: str, dst_dir: str | Path) -> Path:
        """Raise: nothing was stored."""
        raise TrackingError("tracking is off (NullTracker): no artifacts to download")
