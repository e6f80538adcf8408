"""SweepSession in process: the parent run, the order in which runs close, the end."""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from hibayes.sweep import SWEEP_FILE, SweepFailed, SweepSession, read_sweep_info
from hibayes.tracking import MlflowTracker

JOBS = [["model.prior=0.1"], ["model.prior=0.2"], ["model.prior=0.3"]]


def _session(tmp_path: Path) -> tuple[SweepSession, MlflowTracker]:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = OmegaConf.create(
        {
            "hydra": {"sweep": {"dir": str(tmp_path / "sweep")}},
            "tracking": {"enabled": True, "uri": uri, "experiment": "e"},
            "model": {"name": "two_level_group_binomial"},
        }
    )
    return SweepSession(cfg, JOBS), MlflowTracker(uri=uri, experiment="e")


def test_the_sweep_file_tells_every_job_its_parent(tmp_path: Path) -> None:
    session, store = _session(tmp_path)
    info = read_sweep_info(tmp_path / "sweep")
    assert (tmp_path / "sweep" / SWEEP_FILE).exists()
    assert info.parent_run_id == session.parent_run_id and info.n_jobs == 3
    assert info.varying == ("model.prior",)
    assert store.get_run(session.parent_run_id).info.status == "RUNNING"
    session.abort("KILLED")
    assert store.get_run(session.parent_run_id).info.status == "KILLED"


def test_runs_close_as_their_plots_arrive_and_the_rest_on_abort(tmp_path: Path) -> None:
    session, _ = _session(tmp_path)
    closed: list[tuple[str, float | None]] = []

    def closer(name: str):
        return lambda timeout: closed.append((name, timeout))

    plots = {name: Future() for name in ("a", "b", "c")}
    session.hand_over("a", plots["a"], closer("a"))
    plots["a"].set_running_or_notify_cancel()  # the worker is drawing a's plots
    session.hand_over("b", plots["b"], closer("b"))
    assert closed == []  # nothing drawn yet: nothing closes
    plots["a"].set_result(([], 0.5))
    session.hand_over("c", plots["c"], closer("c"))
    assert closed == [("a", None)]  # a's plots arrived: closed when the next came in
    session.abort("KILLED")
    # Plots not started yet are taken back (drawn by their closers), newest first, and
    # closed within the abort's wait.
    assert [name for name, _ in closed] == ["a", "c", "b"]
    assert all(timeout is not None for _, timeout in closed[1:])
    assert plots["b"].cancelled() and plots["c"].cancelled()


def test_a_sweep_with_a_failed_job_ends_failed_naming_it(tmp_path: Path) -> None:
    session, store = _session(tmp_path)
    outcomes = [
        {
            "status": "FINISHED",
            "name": "fit 1",
            "out_dir": "x",
            "metrics": {"converged": 1.0},
        },
        {
            "status": "FAILED",
            "name": "fit 2",
            "out_dir": "y",
            "error": "ValueError: bad",
        },
        RuntimeError("worker lost"),
    ]
    with pytest.raises(SweepFailed) as failed:
        session.finish(outcomes)
    message = str(failed.value)
    assert "2 of 3 fits failed" in message
    assert (
        "fit 2: ValueError: bad" in message
        and "model.prior=0.3: RuntimeError" in message
    )
    parent = store.get_run(session.parent_run_id)
    assert parent.info.status == "FAILED"
    assert parent.data.metrics["jobs_failed"] == 2.0
