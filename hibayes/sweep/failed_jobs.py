"""A FAILED child run for each sweep job that failed before its fit opened one.

A job can fail before ``hibayes.fit`` opens its run: Hydra cannot write the job's
folder (a full disk), the job's ``runtime`` section cannot be applied, its worker
process died before the fit began. The sweep's failure list names such a job;
:func:`record_failed_jobs` also gives it a FAILED child run under the sweep's
parent, as a fit that fails has, so the MLflow UI shows every job of the sweep:
its overrides as params and as the tag ``hibayes.overrides``, the failure list's
reason as ``hibayes.error``, the traceback as ``traceback.txt`` (sent from memory).

Nothing is written to the job's folder while the store takes the calls (the job
may have failed because its disk is full). A store that fails midway leaves the
rest in the folder's ``upload_pending.json`` for ``python -m hibayes.sync``
(:class:`~hibayes.tracking.deferred.DeferringTracker`, the one way records reach
the store). One run per job: a job that has a run already, in the store (a fit
whose worker was killed, its run ended KILLED by the sweep) or recorded for it on
disk (a run marker, a pending upload under the sweep folder), gets none. When the
store does not answer, that cannot be told, and no run is created: the failure
list alone names the job.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hibayes.errors import HibayesError
from hibayes.tracking import MlflowTracker, TrackingError
from hibayes.tracking.base import Tracker
from hibayes.tracking.deferred import PENDING_FILE, DeferringTracker
from hibayes.tracking.job import SweepInfo
from hibayes.tracking.marker import MARKER_FILE, RunMarker
from hibayes.tracking.run import run_name

__all__ = ["RECORDED_BY_TAG", "FailedJob", "record_failed_jobs"]

log = logging.getLogger("hibayes.sweep.session")

#: Tag on a run the sweep created for a job that failed before its fit started.
RECORDED_BY_TAG = "hibayes.recorded_by"


@dataclass
class FailedJob:
    """A sweep job that raised instead of returning its fit's outcome.

    :param num: its job number (``hydra.job.num``).
    :param overrides: its overrides.
    :param error: what it raised.
    :param out_dir: its job folder (it may not exist).
    """

    num: int
    overrides: list[str]
    error: BaseException
    out_dir: Path

    @property
    def reason(self) -> str:
        """The reason the sweep's failure list gives."""
        return f"{type(self.error).__name__}: {self.error}"


def record_failed_jobs(
    tracker: Tracker,
    info: SweepInfo,
    failed: Sequence[FailedJob],
    model: Mapping[str, Any],
) -> list[Path]:
    """Give each failed job without a run a FAILED child run (see the module docstring).

    :param tracker: the sweep's tracker; nothing is recorded without an MLflow store.
    :param info: the sweep (parent run, id, what varies between jobs).
    :param model: the sweep's ``model`` section, for names a job does not override.
    :return: the pending-upload files of runs the store did not wholly take.
    """
    store = tracker.store
    if not failed or not isinstance(store, MlflowTracker):
        return []
    try:
        store.check_reachable()  # once, without the client's minutes of retries
        have_runs = {
            r.data.tags.get("hibayes.job_num")
            for r in store.children(info.parent_run_id)
        }
    except TrackingError as exc:
        log.warning(
            "%s: %d job(s) that failed before their fit started have no run (the "
            "failure list names them)",
            exc,
            len(failed),
        )
        return []
    # A sweep's id is its folder, made absolute (SweepInfo).
    have_runs |= _recorded_on_disk(Path(info.sweep_id), info.sweep_id)
    left = []
    for job in failed:
        if str(job.num) in have_runs:
            continue
        try:
            pending = _record(store, info, job, model)
        except HibayesError as exc:  # the store failed, and the disk is full too
            log.warning("job %d failed and has no run: %s", job.num, exc)
            continue
        if pending is not None:
            left.append(pending)
    return left


def _recorded_on_disk(sweep_dir: Path, sweep_id: str) -> set[str | None]:
    """Job numbers of runs recorded under ``sweep_dir`` for the store: opened by a
    process now gone (a marker) or waiting for the store (a pending upload)."""
    ops: list[dict[str, Any]] = []
    for path in sweep_dir.rglob(MARKER_FILE):
        try:
            ops += RunMarker.read(path).record.get("ops", [])
        except ValueError:
            continue
    for path in sweep_dir.rglob(PENDING_FILE):
        try:
            ops += DeferringTracker.from_file(path).ops
        except (ValueError, KeyError):
            continue
    return {
        op["tags"].get("hibayes.job_num")
        for op in ops
        if op.get("op") == "start_run"
        and op.get("tags", {}).get("hibayes.sweep_id") == sweep_id
    }


def _record(
    store: MlflowTracker, info: SweepInfo, job: FailedJob, model: Mapping[str, Any]
) -> Path | None:
    """Create the job's FAILED run; return its pending file if the store missed some."""
    values = _override_values(job.overrides)
    name = values.get("model.name") or values.get("model") or str(model.get("name"))
    tag = values.get("model.tag") or model.get("tag")
    tags = {
        "hibayes.model": name,
        "hibayes.overrides": " ".join(job.overrides),
        "hibayes.output_dir": str(job.out_dir),
        "hibayes.sweep_id": info.sweep_id,
        "hibayes.job_num": str(job.num),
        "hibayes.error": job.reason[:5000],
        RECORDED_BY_TAG: "the sweep: the job failed before its fit started",
    }
    if tag:
        tags["hibayes.tag"] = str(tag)
    tracker = DeferringTracker(store, job.out_dir / PENDING_FILE)
    run_id = tracker.start_run(
        run_name(name, tag, info.naming(job.overrides)),
        tags=tags,
        parent_run_id=info.parent_run_id,
    )
    tracker.log_params(run_id, values)
    text = "".join(traceback.format_exception(job.error))
    tracker.log_text(run_id, text, "traceback.txt")
    tracker.end_run(run_id, "FAILED")
    log.info("job %d failed before its fit started: FAILED run %s", job.num, run_id)
    return tracker.pending_file if tracker.pending else None


def _override_values(overrides: Iterable[str]) -> dict[str, str]:
    """``key=value`` overrides as params (``+``/``~`` prefixes dropped, deletions left out)."""
    values = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if sep:
            values[key.lstrip("+~")] = value
    return values
