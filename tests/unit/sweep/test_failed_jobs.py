"""A FAILED child run for sweep jobs that failed before their fit opened one: one run a job."""

from __future__ import annotations

import time
from pathlib import Path

from hibayes.sweep.failed_jobs import FailedJob, record_failed_jobs
from hibayes.tracking import MlflowTracker
from hibayes.tracking.deferred import PENDING_FILE, DeferringTracker
from hibayes.tracking.job import SweepInfo
from hibayes.tracking.marker import RunMarker

FULL = OSError(28, "No space left on device")
MODEL = {"name": "m"}


def _failed(sweep: Path, nums: range) -> list[FailedJob]:
    return [
        FailedJob(n, [f"+x={n}", "fit.samples=100"], FULL, sweep / str(n)) for n in nums
    ]


def test_only_jobs_without_a_run_get_one(tmp_path: Path) -> None:
    store = MlflowTracker(uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="e")
    sweep = tmp_path / "sweep"
    parent = store.start_run("sweep", tags={"hibayes.sweep_id": str(sweep)})
    info = SweepInfo(str(sweep), parent, "sweep", 4, ("+x",))
    mine = {"hibayes.sweep_id": str(sweep)}
    # Job 0's fit opened its run, then its worker died: the run is in the store.
    store.start_run("m x=0", {**mine, "hibayes.job_num": "0"}, parent_run_id=parent)
    # Job 1's fit opened its run while the store was away: only its marker says so.
    opening = DeferringTracker(store, sweep / "1" / PENDING_FILE).opening_record(
        "m x=1", {**mine, "hibayes.job_num": "1"}, parent
    )
    assert RunMarker.create(sweep / "1", "fit", opening) is not None
    # Job 3's run waits in its upload_pending.json for `hibayes.sync`.
    offline = DeferringTracker(store, sweep / "3" / PENDING_FILE, offline_reason="down")
    offline.start_run("m x=3", {**mine, "hibayes.job_num": "3"}, parent_run_id=parent)

    left = record_failed_jobs(store, info, _failed(sweep, range(4)), MODEL)

    assert left == []
    by_job = {r.data.tags["hibayes.job_num"]: r for r in store.children(parent)}
    assert sorted(by_job) == ["0", "2"]
    assert by_job["0"].info.status == "RUNNING"  # not this module's to end
    new = by_job["2"]
    assert new.info.status == "FAILED"
    assert new.info.run_name == "m x=2"
    error = new.data.tags["hibayes.error"]
    assert error == "OSError: [Errno 28] No space left on device"
    assert new.data.tags["hibayes.overrides"] == "+x=2 fit.samples=100"
    assert new.data.tags["hibayes.output_dir"] == str(sweep / "2")
    assert new.data.params == {"x": "2", "fit.samples": "100"}
    files = [a.path for a in store.client.list_artifacts(new.info.run_id)]
    assert files == ["traceback.txt"]
    assert not (sweep / "2").exists()  # nothing written to the job's folder

    again = record_failed_jobs(store, info, _failed(sweep, range(4)), MODEL)
    assert again == [] and len(store.children(parent)) == 2  # still one run a job


def test_a_store_that_does_not_answer_gets_no_run_and_nothing_on_disk(
    tmp_path: Path,
) -> None:
    store = MlflowTracker(uri="http://127.0.0.1:9", experiment="e")  # nothing listens
    sweep = tmp_path / "sweep"
    info = SweepInfo(str(sweep), "parent-id", "sweep", 1, ())
    started = time.monotonic()
    assert record_failed_jobs(store, info, _failed(sweep, range(1)), MODEL) == []
    # Asked once: MLflow's client alone retries a refused request for minutes.
    assert time.monotonic() - started < 30
    assert list(tmp_path.iterdir()) == []
