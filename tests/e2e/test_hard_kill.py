"""Issue 19: a fit or sweep killed hard (SIGKILL) is repaired by ``hibayes.sync``.

Real parts only: ``python -m hibayes.fit`` subprocesses killed with SIGKILL
mid-sampling, a file-backed SQLite store, ``python -m hibayes.sync`` run as a
user would. Checked each time: exit status, the one-line report, what the store
holds (no run RUNNING, FINISHED runs with every output of their contract), the
run markers gone, and that a second sync has nothing to do. The sweep's helper
processes (plot worker, multiprocessing's resource tracker) must end within
seconds of their parent.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.server import FIT_FILES, all_runs, artifact_files, run_hibayes

from hibayes.system.processes import proc_stat

pytestmark = pytest.mark.slow

# A fit that samples for minutes unless killed (about 1 ms per draw here).
LONG = "200000"
QUICK_ARGS = (
    "fit=quick",
    "fit.warmup=100",
    "fit.prior_samples=0",
    "cv=psis",
    "checks.sensitivity=false",
)
KILLED_FILES = {"config.yaml", "fit.log", "overrides.yaml"}
MARKER = ".hibayes_run.json"
# Tags that tell two runs of one config apart: where and by whom they ran, and how
# they were ended. Every other tag of a repaired run equals a normal run's.
OWN_TAGS = {
    "hibayes.output_dir",
    "hibayes.process",
    "hibayes.run_key",
    "hibayes.ended_by",  # repaired: ended by sync
    "hibayes.upload",  # repaired: "synced", its calls replayed
}
# What the fit tags its run with at its end (hibayes.fit._fit_tags, the
# cross-validation's tags, the verdict), and its dataset input's tags.
CLOSING_TAGS = {
    "hibayes.chain_method",
    "hibayes.precision",
    "hibayes.structure_key",
    "hibayes.likelihood_rows",
    "hibayes.cv_method",
    "hibayes.cv_problems",
    "hibayes.converged",
    "hibayes.problems",
    "hibayes.data_digest",
    "hibayes.data_source",
}


def _client(workdir: Path):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{workdir}/mlflow.db")


def _start(workdir: Path, *args: str) -> tuple[subprocess.Popen, Path]:
    log = workdir / "command.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hibayes.fit",
                *args,
                f"tracking.uri=sqlite:///{workdir}/mlflow.db",
            ],
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return proc, log


def _wait_for(proc: subprocess.Popen, log: Path, done, what: str) -> None:
    deadline = time.monotonic() + 400
    while not done(log.read_text()):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise AssertionError(f"never saw {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def _recorded(out_dir: Path) -> bool:
    """Whether the fit has written its final metrics.json (FitRun.record has begun)."""
    try:
        return "time_total_s" in json.loads((out_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return False


def _kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL


def _sync(workdir: Path, target: str) -> subprocess.CompletedProcess:
    return run_hibayes(workdir, target, module="hibayes.sync")


def _check_nothing_left(workdir: Path, target: str) -> None:
    again = _sync(workdir, target)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.strip() == f"nothing pending under {target}"
    assert not list((workdir / target).rglob(MARKER))


def _children(pid: int) -> dict[int, str]:
    """pid -> command line of the direct children of ``pid`` (Linux)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := proc_stat(int(entry.name))):
            if int(stat[1]) == pid:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
                found[int(entry.name)] = cmd.decode(errors="replace")
    return found


def _gone(pid: int) -> bool:
    stat = proc_stat(pid)
    return stat is None or stat[0] == "Z"


def test_single_fit_killed_mid_sampling_is_left_alone_while_alive_then_ended_killed(
    tmp_path,
):
    """SIGKILL mid-sampling leaves the run RUNNING; sync leaves a live fit alone,
    and once the process is gone ends its run KILLED with its config and log."""
    proc, log = _start(
        tmp_path, *QUICK_ARGS, f"fit.samples={LONG}", "hydra.run.dir=out"
    )
    _wait_for(proc, log, lambda text: ": sampling" in text, "sampling start")

    alive = _sync(tmp_path, "out")  # the fit is sampling: not ours to end
    assert alive.returncode == 0, alive.stderr[-3000:]
    assert alive.stdout.startswith(
        "nothing pending under out; 1 open run(s) left alone"
    )
    assert f"process {proc.pid} on" in alive.stdout and "still running" in alive.stdout
    assert proc.poll() is None, "the fit ended before it could be killed"
    _kill(proc)
    runs = all_runs(_client(tmp_path))
    assert [r.info.status for r in runs] in ([], ["RUNNING"])  # what a kill leaves

    synced = _sync(tmp_path, "out")
    assert synced.returncode == 0, synced.stderr[-3000:]
    assert synced.stdout.strip() == (
        "ended 1 run(s) of killed processes (1 KILLED), 0 still pending"
    )
    client = _client(tmp_path)
    (run,) = all_runs(client)
    assert run.info.status == "KILLED"
    assert f"process {proc.pid} on" in run.data.tags["hibayes.ended_by"]
    assert run.data.params["fit.samples"] == LONG
    files = artifact_files(client, run.info.run_id)
    assert KILLED_FILES <= files and "idata.nc" not in files
    assert MARKER not in files and "upload_pending.json" not in files
    _check_nothing_left(tmp_path, "out")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sweep_killed_mid_way_ends_parent_and_children_and_its_helpers(tmp_path):
    """A sweep SIGKILLed while its second fit samples: the plot worker and the
    resource tracker end within seconds; sync ends the parent KILLED, the first
    fit (all outputs on disk, its run waiting for its plots) FINISHED with its
    metrics, the second KILLED; the third never started."""
    proc, log = _start(
        tmp_path,
        "-m",
        *QUICK_ARGS,
        f"fit.samples=100,{LONG},100",
        "model.prior_sigma_group_scale=0.4",  # not the model's own prior sweep
        "hydra.sweep.dir=sweep",
    )
    sweep = tmp_path / "sweep"
    _wait_for(
        proc,
        log,
        lambda text: (
            re.search(r"\[job 2/3\][^\n]*: sampling", text)
            and (sweep / "0" / "plots" / "loo_pit.png").exists()
        ),
        "job 2 sampling after job 1's plots",
    )
    helpers = _children(proc.pid)
    assert any("resource_tracker" in cmd for cmd in helpers.values()), helpers
    assert any("spawn_main" in cmd for cmd in helpers.values()), helpers
    _kill(proc)
    deadline = time.monotonic() + 5
    while not all(_gone(pid) for pid in helpers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert {cmd for pid, cmd in helpers.items() if not _gone(pid)} == set()
    # Parent, job 0 (waiting for its plots) and job 1 if its run was opened yet.
    statuses = [r.info.status for r in all_runs(_client(tmp_path))]
    assert statuses in (["RUNNING"] * 2, ["RUNNING"] * 3), statuses

    synced = _sync(tmp_path, "sweep")
    assert synced.returncode == 0, synced.stderr[-3000:]
    assert synced.stdout.strip() == (
        "ended 3 run(s) of killed processes (2 KILLED, 1 FINISHED), 0 still pending"
    )
    client = _client(tmp_path)
    runs = all_runs(client)
    by_job = {r.data.tags.get("hibayes.job_num"): r for r in runs}
    assert set(by_job) == {None, "0", "1"}
    parent = by_job[None]
    assert parent.info.status == "KILLED"
    done, killed = by_job["0"], by_job["1"]
    assert done.info.status == "FINISHED"
    assert FIT_FILES <= artifact_files(client, done.info.run_id)
    assert {"elpd_loo", "converged", "time_total_s"} <= set(done.data.metrics)
    assert done.data.tags["hibayes.converged"] in ("yes", "no")
    assert CLOSING_TAGS <= set(done.data.tags)
    assert len(done.inputs.dataset_inputs) == 1  # sent again by sync: not twice
    assert killed.info.status == "KILLED"
    assert KILLED_FILES <= artifact_files(client, killed.info.run_id)
    for child in (done, killed):
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert not (sweep / "2").exists()
    _check_nothing_left(tmp_path, "sweep")


def test_fit_killed_while_closing_its_run_is_finished_by_sync_with_every_tag(
    tmp_path,
):
    """SIGKILL after the fit wrote every output but before the store took its
    closing calls (another writer holds the SQLite store, as a busy store or a slow
    server would): sync ends the run FINISHED with the same tags, dataset input and
    metrics as a normal run of the same config, apart from where, by whom and how
    each was ended."""
    args = (*QUICK_ARGS, "fit.samples=300")
    normal = run_hibayes(
        tmp_path,
        *args,
        "hydra.run.dir=normal",
        f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
    )
    assert normal.returncode == 0, normal.stderr[-3000:]
    client = _client(tmp_path)
    out = tmp_path / "out"
    proc, log = _start(tmp_path, *args, "hydra.run.dir=out")

    def opened(_text: str) -> bool:  # the run exists in the store, with its params
        found = [
            r
            for r in all_runs(client)
            if r.data.tags.get("hibayes.output_dir") == str(out)
        ]
        return bool(found and found[0].data.params)

    _wait_for(proc, log, opened, "the run opened with its params")
    lock = sqlite3.connect(tmp_path / "mlflow.db", isolation_level=None)
    try:
        lock.execute("BEGIN IMMEDIATE")  # the fit's next write waits (20 s at most)
        _wait_for(proc, log, lambda _: _recorded(out), "metrics.json with its total")
        _kill(proc)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    (cut,) = [
        r for r in all_runs(client) if r.data.tags["hibayes.output_dir"] == str(out)
    ]
    assert cut.info.status == "RUNNING"
    assert "hibayes.chain_method" not in cut.data.tags  # only in the fit's memory
    assert cut.data.metrics == {} and cut.inputs.dataset_inputs == []

    synced = _sync(tmp_path, "out")
    assert synced.returncode == 0, synced.stderr[-3000:]
    assert synced.stdout.strip() == (
        "ended 1 run(s) of killed processes (1 FINISHED), 0 still pending"
    )
    runs = {r.data.tags["hibayes.output_dir"]: r for r in all_runs(client)}
    done, repaired = runs[str(tmp_path / "normal")], runs[str(out)]
    assert done.info.status == repaired.info.status == "FINISHED"
    assert f"process {proc.pid} on" in repaired.data.tags["hibayes.ended_by"]
    assert repaired.data.tags["hibayes.upload"] == "synced"
    assert set(done.data.tags) | {"hibayes.ended_by", "hibayes.upload"} == set(
        repaired.data.tags
    )
    same = {k: v for k, v in done.data.tags.items() if k not in OWN_TAGS}
    assert {k: repaired.data.tags[k] for k in same} == same
    assert CLOSING_TAGS <= set(same)
    # The values this config gives (QUICK_ARGS: 2 chains on 2+ devices, PSIS, data as is).
    assert repaired.data.tags["hibayes.chain_method"] == "parallel"
    assert repaired.data.tags["hibayes.cv_method"] == "psis"
    assert repaired.data.tags["hibayes.precision"] == "float32"
    assert repaired.data.tags["hibayes.likelihood_rows"] == "all"
    assert repaired.data.tags["hibayes.converged"] in ("yes", "no")
    assert repaired.data.tags["hibayes.data_source"].endswith("llm_evals.csv")

    def inputs(run) -> list[tuple]:
        return [
            (d.dataset.name, d.dataset.digest, d.dataset.source, d.dataset.profile)
            for d in run.inputs.dataset_inputs
        ]

    assert len(inputs(repaired)) == 1 and inputs(repaired) == inputs(done)
    assert set(repaired.data.metrics) == set(done.data.metrics)
    assert repaired.data.metrics["elpd_loo"] == done.data.metrics["elpd_loo"]
    assert FIT_FILES | {"tags.json"} <= artifact_files(client, repaired.info.run_id)
    _check_nothing_left(tmp_path, "out")
