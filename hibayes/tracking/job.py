"""Who a fit runs as: its job context, its sweep's record, and what it reports back.

A job is one fit: a single run (``python -m hibayes.fit``), one job of a Hydra
multirun, or one re-run of :mod:`hibayes.reproduce`. The command that starts it
builds the :class:`JobContext` (only ``hibayes.fit`` reads Hydra's runtime) and
hands it to :class:`~hibayes.tracking.run.FitRun`; nothing below the commands
looks anything up.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "SWEEP_FILE",
    "FitOutcome",
    "JobContext",
    "PlotDeferral",
    "SweepInfo",
    "read_sweep_info",
]

#: The sweep's record in its directory, read by every job in whatever process.
SWEEP_FILE = ".hibayes_sweep.json"


@dataclass(frozen=True)
class SweepInfo:
    """What each job of a sweep needs to know about it.

    :param sweep_id: unique id of the sweep (its directory, made absolute).
    :param parent_run_id: the parent MLflow run ("" when tracking is off).
    :param name: the parent run's name.
    :param n_jobs: number of jobs in the sweep.
    :param varying: override keys whose values differ between jobs (they name runs).
    """

    sweep_id: str
    parent_run_id: str
    name: str
    n_jobs: int
    varying: tuple[str, ...] = ()

    def naming(self, overrides: Sequence[str]) -> list[str]:
        """The overrides that name a job's run: those of keys that vary between jobs."""
        return [o for o in overrides if o.split("=", 1)[0] in self.varying]


def read_sweep_info(sweep_dir: Path | None) -> SweepInfo | None:
    """The sweep's record from its directory, or ``None`` outside a hibayes sweep."""
    if sweep_dir is None:
        return None
    path = Path(sweep_dir) / SWEEP_FILE
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    record["varying"] = tuple(record.get("varying", ()))
    return SweepInfo(**record)


class PlotDeferral(Protocol):
    """A sweep that draws a finished fit's plots on a worker while the next fit runs."""

    def defer_plots(
        self,
        out_dir: Path,
        idata: Any,
        loo: Any,
        close: Callable[[float | None], str | None],
        prefix: str,
    ) -> Future:
        """Draw the plots elsewhere; ``close(seconds)`` ends the run once they are in.

        ``close`` gets the seconds the plots took (``None`` if they never came) and
        returns the run's pending-upload file, if any.
        """
        ...


@dataclass
class JobContext:
    """Where and as what a fit runs.

    :param out_dir: directory for this fit's outputs.
    :param overrides: the job's command-line overrides.
    :param model_choice: the ``conf/model`` option composed (None outside Hydra).
    :param sweep_dir: the multirun's directory (None for a single run).
    :param job_num: the job's number in the sweep.
    :param plots: the in-process sweep that draws this job's plots, if any.
    """

    out_dir: Path
    overrides: list[str] = field(default_factory=list)
    model_choice: str | None = None
    sweep_dir: Path | None = None
    job_num: int | None = None
    plots: PlotDeferral | None = None


@dataclass
class FitOutcome:
    """What one job reports back (to the sweep, and as Hydra's return value)."""

    status: str
    name: str
    run_id: str
    out_dir: str
    metrics: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    error: str | None = None
    data_digest: str | None = None
    upload_pending: str | None = (
        None  # the pending-upload file, if the store missed some
    )

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (picklable across launcher processes)."""
        return asdict(self)
