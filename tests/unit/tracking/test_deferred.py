"""DeferringTracker in process: records kept while the store is away, replayed once."""

from __future__ import annotations

import shutil
from pathlib import Path

from hibayes.tracking import MlflowTracker
from hibayes.tracking.deferred import DeferringTracker


def _record_a_run(tracker: DeferringTracker, artifact: Path) -> str:
    run_id = tracker.start_run("offline fit", tags={"hibayes.model": "m"})
    tracker.log_params(run_id, {"fit.samples": "100", "model.prior": "0.5"})
    tracker.log_metrics(run_id, {"rhat_max": 1.001, "elpd_loo": -12.5})
    tracker.set_tags(run_id, {"hibayes.converged": "yes"})
    tracker.log_artifact(run_id, artifact)
    tracker.end_run(run_id, "FINISHED")
    return run_id


def test_replaying_the_same_records_twice_changes_nothing(tmp_path: Path) -> None:
    store = MlflowTracker(uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="e")
    artifact = tmp_path / "summary.csv"
    artifact.write_text("a,b\n1,2\n")
    pending = tmp_path / "job" / "upload_pending.json"
    offline = DeferringTracker(store, pending, offline_reason="store down")
    _record_a_run(offline, artifact)
    assert offline.pending and pending.exists()
    # A process that dies after sending but before removing the file leaves it behind.
    leftover = tmp_path / "leftover.json"
    shutil.copy(pending, leftover)

    assert offline.flush() is True
    assert not offline.pending and not pending.exists()
    again = DeferringTracker.from_file(leftover)
    assert again.flush() is True

    runs = store.client.search_runs([store.experiment_id])
    assert len(runs) == 1, "the second replay created a duplicate run"
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params == {"fit.samples": "100", "model.prior": "0.5"}
    assert run.data.metrics == {"rhat_max": 1.001, "elpd_loo": -12.5}
    assert run.data.tags["hibayes.converged"] == "yes"
    assert run.data.tags["hibayes.upload"] == "synced"
    names = [a.path for a in store.client.list_artifacts(run.info.run_id)]
    assert names == ["summary.csv"]


def test_a_store_still_away_keeps_every_record(tmp_path: Path) -> None:
    store = MlflowTracker(uri="http://127.0.0.1:9", experiment="e")  # nothing listens
    artifact = tmp_path / "summary.csv"
    artifact.write_text("x\n")
    pending = tmp_path / "upload_pending.json"
    offline = DeferringTracker(store, pending, offline_reason="store down")
    _record_a_run(offline, artifact)
    assert offline.flush(timeout_s=1) is False
    reopened = DeferringTracker.from_file(pending)
    assert [op["op"] for op in reopened.ops] == [op["op"] for op in offline.ops]
    assert len(reopened.ops) == 6  # start, params, metrics, tags, artifact, end
