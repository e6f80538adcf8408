"""End the runs of processes killed hard: the second half of ``hibayes.sync``.

A fit or sweep killed by SIGKILL, the OOM killer or a lost node leaves its run
RUNNING in the store and its ``.hibayes_run.json`` in its folder
(:mod:`hibayes.tracking.marker`). :func:`recover` reads such a marker and,
when the process it names is gone and the store still shows the run RUNNING
(or never got it), ends the run:

- FINISHED, with its metrics, tags and dataset input, when the fit's folder
  holds every output of a finished fit (:func:`finished_fit`; the tags and
  input from its ``tags.json``, :mod:`hibayes.tracking.closing`): the process
  was killed after the work was done (a sweep's fit waiting for its plots, or a
  store call in flight).
  Plots a sweep's worker never finished are drawn again from ``idata.nc``.
- KILLED otherwise (always for a sweep's parent run), with what is complete on
  disk: the config, the log, a traceback, the outputs written so far.

The closing calls are recorded in the folder's ``upload_pending.json`` and sent
by :class:`~hibayes.tracking.deferred.DeferringTracker`, the one way a run's
files reach the store: a recovery cut short is completed by the next sync. A
run whose process still runs is left alone, as is one whose process ran on
another host (nothing here can tell whether it lives), unless that host is
named as lost. A marker whose run has ended anyway (its sweep ended it) is
removed without a word.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hibayes.outputs.contract import ALWAYS, missing_outputs
from hibayes.system.processes import Liveness
from hibayes.tracking.base import TrackingError
from hibayes.tracking.closing import ClosingRecord
from hibayes.tracking.deferred import PENDING_FILE, RUN_KEY_TAG, DeferringTracker
from hibayes.tracking.marker import MARKER_FILE, RunMarker

__all__ = [
    "ENDED_BY_TAG",
    "Recovery",
    "find_markers",
    "finished_fit",
    "recover",
]

log = logging.getLogger("hibayes.sync")

#: Tag on a run that sync ended after its process was gone.
ENDED_BY_TAG = "hibayes.ended_by"

# Written into metrics.json by FitRun.record once every output is on disk.
_RECORDED_METRIC = "time_total_s"
# Written into metrics.json once a sweep's worker has drawn the fit's plots.
_PLOTTED_METRIC = "time_plots_s"


@dataclass
class Recovery:
    """What :func:`recover` did with one marker.

    :param out_dir: the run's folder.
    :param action: ``KILLED`` or ``FINISHED`` (the run was ended so), ``running``
        (its process is alive, left alone), ``elsewhere`` (its process ran on
        another host, left alone), ``closed`` (the run had ended; marker removed)
        or ``failed`` (not done; see ``detail``).
    :param detail: a reason or a description, for the report.
    """

    out_dir: Path
    action: str
    detail: str = ""

    @property
    def ended(self) -> bool:
        """Whether this sync ended the run."""
        return self.action in ("KILLED", "FINISHED")


def find_markers(path: Path) -> list[Path]:
    """Run markers under ``path``, shallowest first (a sweep before its jobs)."""
    path = Path(path)
    if path.is_file():
        return [path] if path.name == MARKER_FILE else []
    found = list(path.rglob(MARKER_FILE))
    return sorted(found, key=lambda p: (len(p.parts), str(p)))


def finished_fit(out_dir: Path) -> tuple[dict[str, Any], ClosingRecord] | None:
    """The metrics and closing record of a fit whose outputs are all on disk; None
    if some are missing.

    ``metrics.json`` holds ``time_total_s`` only once ``FitRun.record`` has run,
    after every output and ``tags.json`` were written; the files are checked too.
    """
    out_dir = Path(out_dir)
    try:
        metrics = json.loads((out_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(metrics, dict) or _RECORDED_METRIC not in metrics:
        return None
    needed = list(ALWAYS)
    if metrics.get("elpd_loo") is not None:
        needed.append("loo_pointwise.csv")
    try:
        if missing_outputs(out_dir, needed):
            return None
        return metrics, ClosingRecord.read(out_dir)
    except (OSError, ValueError):  # cannot be read: not known to be finished
        return None


def recover(
    marker_path: Path, uri: str | None = None, lost_hosts: Collection[str] = ()
) -> Recovery:
    """End the run of ``marker_path`` if its process is gone; see the module docstring.

    :param uri: the store to send to; default the one the marker names.
    :param lost_hosts: hosts whose processes are known to be gone (a lost node).
    """
    marker_path = Path(marker_path)
    out_dir = marker_path.parent
    try:
        marker = RunMarker.read(marker_path)
        replay = DeferringTracker.from_record(
            marker.record, out_dir / PENDING_FILE, uri=uri, source=marker_path
        )
    except ValueError as exc:
        return Recovery(out_dir, "failed", str(exc))
    store = replay.store
    try:
        store.check_reachable()
        run_id = store.find_run(RUN_KEY_TAG, marker.run_key)
        run = store.get_run(run_id) if run_id else None
    except TrackingError as exc:
        return Recovery(out_dir, "failed", str(exc))
    if run is not None and run.info.status != "RUNNING":
        marker.release()  # ended meanwhile (by its sweep, or just now by its process)
        return Recovery(out_dir, "closed", run.info.status)
    owner = marker.owner
    liveness = owner.liveness()
    if liveness is Liveness.ELSEWHERE and owner.host in lost_hosts:
        liveness = Liveness.GONE
    if liveness is Liveness.ALIVE:
        return Recovery(out_dir, "running", f"{owner} is still running")
    if liveness is Liveness.ELSEWHERE:
        return Recovery(
            out_dir,
            "elsewhere",
            f"{owner}: cannot tell from here whether it runs; run the sync on "
            f"{owner.host}, or pass --lost-host {owner.host} if that node is gone",
        )
    logged = set(run.data.metrics) if run is not None else set()
    return _end(marker, replay, logged)


def _end(marker: RunMarker, replay: DeferringTracker, logged: set[str]) -> Recovery:
    """Record the closing calls of a cut-off run and send them."""
    out_dir, owner = marker.out_dir, marker.owner
    finished = finished_fit(out_dir) if marker.kind == "fit" else None
    status = "FINISHED" if finished is not None else "KILLED"
    if (
        finished is not None
        and marker.plots_deferred
        and _PLOTTED_METRIC not in finished[0]
    ):
        _draw_plots(out_dir)
    replay.reason = f"{owner} was gone before it ended the run"
    run = replay.recorded_run_id
    tags = {ENDED_BY_TAG: f"python -m hibayes.sync: {owner} was gone"}
    if marker.kind == "fit":
        replay.log_artifacts(run, out_dir)
    if finished is not None:
        metrics, closing = finished
        # The tags and input the fit gave, or was about to give, its run: sent again
        # whole, as each call changes nothing the second time.
        if closing.dataset is not None:
            replay.log_dataset_record(run, **closing.dataset)
        missing = {k: v for k, v in metrics.items() if k not in logged}
        if missing:
            replay.log_metrics(run, missing)
        tags = {**closing.tags, **tags}
    replay.set_tags(run, tags)
    replay.end_run(run, status)
    if not replay.flush():
        return Recovery(out_dir, "failed", replay.reason or "unknown")
    marker.release()
    log.info("%s: run %s ended %s (%s was gone)", out_dir, replay.run_id, status, owner)
    return Recovery(out_dir, status, f"run {replay.run_id}")


def _draw_plots(out_dir: Path) -> None:
    """Draw the fit's plots that its sweep's worker did not finish."""
    from hibayes.inference import load_idata
    from hibayes.plots import save_fit_plots

    try:
        save_fit_plots(load_idata(out_dir / "idata.nc"), out_dir / "plots")
    except Exception as exc:  # noqa: BLE001 - the run still ends, with what is there
        log.warning("%s: could not draw the plots again: %s", out_dir, exc)
