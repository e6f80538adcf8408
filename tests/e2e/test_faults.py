"""Faults survived: a tracking server that dies and comes back, interrupted sweeps.

Real parts only: `python -m hibayes.fit` subprocesses, a real `mlflow server`
killed with SIGKILL and restarted on the same port and store, a real SQLite
store, real signals. (A fit that raises is covered in test_fit_e2e.py:
FAILED run with traceback.txt, the sweep goes on and exits non-zero.)
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers.server import (
    FAST_FAIL_ENV,
    FIT_FILES,
    SHORT_FIT,
    MlflowServer,
    all_runs,
    artifact_files,
    run_hibayes,
)

pytestmark = pytest.mark.slow

METRICS = {"rhat_max", "ess_bulk_min", "elpd_loo", "converged", "time_total_s"}
# A fit still busy whenever a test looks: its run appears while the model sleeps
# (a real fit can finish before a poll sees it running), and a signal cuts the sleep.
SLOW_MODEL = textwrap.dedent("""
    import time
    import numpyro, numpyro.distributions as dist
    from hibayes.model import Model, model

    @model
    def slow_model(prior_scale: float = 1.0) -> Model:
        def program(features):
            time.sleep(600)
            mu = numpyro.sample("mu", dist.Normal(0.0, prior_scale))
            numpyro.sample("obs", dist.Binomial(features["n_total"], logits=mu),
                           obs=features["obs"])
        return program
""")


@pytest.fixture(scope="module")
def dying_server(tmp_path_factory):
    """A server of this module's own, to kill and restart."""
    server = MlflowServer(tmp_path_factory.mktemp("dying-server")).start()
    yield server
    server.stop()


def _wait_for(
    predicate, proc: subprocess.Popen, timeout: float = 300, what: str = ""
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(
                f"process ended (rc {proc.returncode}) before {what}:\n" + out[-3000:]
            )
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"timed out waiting for {what}")


def _launch(workdir: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "hibayes.fit", *args],
        cwd=workdir,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _runs_where(client, experiment: str, filter_string: str) -> list:
    try:
        exp = client.get_experiment_by_name(experiment)
        return client.search_runs([exp.experiment_id], filter_string) if exp else []
    except Exception:  # noqa: BLE001 - the store may be down or half-created while polling
        return []


def test_server_killed_mid_sweep_then_sync_completes_every_run(dying_server, tmp_path):
    """Kill the server once the first child is recorded; the rest are fitted anyway
    and recorded in upload_pending.json; after a restart, sync uploads each run once."""
    server, exp = dying_server, "killed-mid-sweep"
    client = server.client()
    proc = _launch(
        tmp_path,
        "-m",
        *SHORT_FIT,
        f"tracking.uri={server.uri}",
        f"tracking.experiment={exp}",
        "model.prior_sigma_group_scale=0.1,0.4,0.6,0.8",
        "hydra.sweep.dir=sweep",
        env=FAST_FAIL_ENV,
    )
    _wait_for(
        lambda: _runs_where(
            client,
            exp,
            "tags.`hibayes.job_num` = '0' and attributes.status = 'FINISHED'",
        ),
        proc,
        what="the first child to finish",
    )
    server.kill()
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode != 0, out[-3000:]
    assert "did not fully reach the MLflow store" in out
    assert f"python -m hibayes.sync {tmp_path / 'sweep'}" in out
    pending = sorted((tmp_path / "sweep").rglob("upload_pending.json"))
    assert pending, out[-3000:]
    for job in ("0", "1", "2", "3"):  # every fit's results are on disk
        assert (tmp_path / "sweep" / job / "idata.nc").exists()
        assert (tmp_path / "sweep" / job / "metrics.json").exists()

    server.start()
    synced = run_hibayes(tmp_path, "sweep", module="hibayes.sync", env=FAST_FAIL_ENV)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert not list((tmp_path / "sweep").rglob("upload_pending.json"))
    runs = all_runs(client, exp)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = [
        r
        for r in runs
        if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id
    ]
    assert len(runs) == 5 and len(children) == 4
    assert sorted(r.data.tags["hibayes.job_num"] for r in children) == [
        "0",
        "1",
        "2",
        "3",
    ]
    for child in children:
        assert child.info.status == "FINISHED"
        assert METRICS <= set(child.data.metrics)
        assert child.data.params["model.name"] == "two_level_group_binomial"
        assert FIT_FILES <= artifact_files(client, child.info.run_id)
        assert "upload_pending.json" not in artifact_files(client, child.info.run_id)
        assert client.get_run(child.info.run_id).inputs.dataset_inputs
    assert {"comparison.csv", "plots/comparison.png"} <= artifact_files(
        client, parents[0].info.run_id
    )

    # Idempotent: a second sync finds nothing and changes nothing.
    before = {
        r.info.run_id: (r.info.status, r.data.metrics, r.data.params) for r in runs
    }
    again = run_hibayes(tmp_path, "sweep", module="hibayes.sync", env=FAST_FAIL_ENV)
    assert again.returncode == 0 and "nothing pending" in again.stdout
    after = {
        r.info.run_id: (r.info.status, r.data.metrics, r.data.params)
        for r in all_runs(client, exp)
    }
    assert after == before
    history = client.get_metric_history(children[0].info.run_id, "elpd_loo")
    assert len(history) == 1


def test_server_lost_during_a_single_fit_keeps_results_and_sync_completes_the_run(
    dying_server, tmp_path
):
    """The run exists when the server dies; the fit finishes, exits non-zero naming
    the sync command, and sync completes that same run (no second run)."""
    server, exp = dying_server, "killed-mid-fit"
    if not server.healthy():
        server.start()
    client = server.client()
    proc = _launch(
        tmp_path,
        "fit=quick",
        f"tracking.uri={server.uri}",
        f"tracking.experiment={exp}",
        "hydra.run.dir=single",
        env=FAST_FAIL_ENV,
    )
    _wait_for(
        lambda: _runs_where(client, exp, "attributes.status = 'RUNNING'"),
        proc,
        what="the run to be created",
    )
    server.kill()
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode != 0
    assert "python -m hibayes.sync" in out and "not every record reached" in out
    job = tmp_path / "single"
    record = json.loads((job / "upload_pending.json").read_text())
    assert record["run_id"] and record["pending"][-1] == "end_run"
    assert "log_artifacts" in record["pending"] and "log_metrics" in record["pending"]
    assert (job / "idata.nc").exists() and (job / "metrics.json").exists()

    server.start()
    synced = run_hibayes(tmp_path, "single", module="hibayes.sync", env=FAST_FAIL_ENV)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    (run,) = all_runs(client, exp)
    assert run.info.run_id == record["run_id"]
    assert run.info.status == "FINISHED"
    assert run.data.tags["hibayes.upload"] == "synced"
    assert METRICS <= set(run.data.metrics)
    assert FIT_FILES <= artifact_files(client, run.info.run_id)
    assert not (job / "upload_pending.json").exists()


def _sqlite_runs(db: Path) -> list:
    """The store's runs, once the process that writes it has ended."""
    from mlflow import MlflowClient

    return all_runs(MlflowClient(f"sqlite:///{db}"))


def _peek_statuses(db: Path) -> list[tuple[str, bool]]:
    """(status, is_child) of every run, read-only: an MLflow client here could race
    the writer's schema migration of a new database."""
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            rows = conn.execute(
                "SELECT r.status, EXISTS(SELECT 1 FROM tags t WHERE t.run_uuid = r.run_uuid "
                "AND t.key = 'mlflow.parentRunId') FROM runs r"
            ).fetchall()
    except sqlite3.Error:  # tables not there yet, or locked for a moment
        return []
    return [(status, bool(child)) for status, child in rows]


@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"]
)
def test_interrupted_sweep_ends_its_runs_killed(tmp_path, sig):
    db = tmp_path / "mlflow.db"
    (tmp_path / "slow.py").write_text(SLOW_MODEL)
    proc = _launch(
        tmp_path,
        "-m",
        "fit=quick",
        f"tracking.uri=sqlite:///{db}",
        "model.path=slow.py",
        "model.name=slow_model",
        "fit.seed=0,1",
    )
    _wait_for(
        lambda: ("RUNNING", True) in _peek_statuses(db),
        proc,
        what="a child run to start",
    )
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 128 + sig, out[-3000:]
    assert f"interrupted: {sig.name}" in out and "Traceback" not in out, out[-3000:]
    runs = _sqlite_runs(db)
    statuses = sorted(r.info.status for r in runs)
    assert "RUNNING" not in statuses, out[-3000:]
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert parent.info.status == "KILLED"
    assert any(
        r.info.status == "KILLED" for r in runs if "mlflow.parentRunId" in r.data.tags
    )
    assert not list(tmp_path.rglob(".hibayes_run.json"))  # every end was recorded


def test_sigterm_ends_a_single_fit_killed(tmp_path):
    db = tmp_path / "mlflow.db"
    (tmp_path / "slow.py").write_text(SLOW_MODEL)
    proc = _launch(
        tmp_path,
        "fit=quick",
        f"tracking.uri=sqlite:///{db}",
        "model.path=slow.py",
        "model.name=slow_model",
    )
    _wait_for(
        lambda: ("RUNNING", False) in _peek_statuses(db), proc, what="the run to start"
    )
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, out[-3000:]
    assert out.rstrip().endswith("interrupted: SIGTERM"), out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    (run,) = _sqlite_runs(db)
    assert run.info.status == "KILLED", out[-3000:]
    assert not list(tmp_path.rglob(".hibayes_run.json"))  # the end was recorded


SECOND_JOB_HANGS = textwrap.dedent("""
    import time
    import numpyro, numpyro.distributions as dist
    from hibayes.model import Model, model

    @model
    def second_hangs(hang: bool = False, prior_scale: float = 1.0) -> Model:
        def program(features):
            if hang:
                time.sleep(600)
            mu = numpyro.sample("mu", dist.Normal(0.0, prior_scale))
            numpyro.sample("obs", dist.Binomial(features["n_total"], logits=mu),
                           obs=features["obs"])
        return program
""")


@pytest.mark.parametrize(
    "sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"]
)
def test_a_stopped_sweep_keeps_what_a_finished_fit_computed(tmp_path, sig):
    """Job 1's run waits for its plots from the worker while job 2 hangs. Ctrl-C (the
    whole process group, worker included) must not end job 1 KILLED: it ends FINISHED
    with its plots. A hard kill leaves job 1 RUNNING, but everything but the plots is
    in the store already, and ``hibayes.sync`` then ends it FINISHED with its plots
    (drawn again: the worker died with the sweep) and the rest KILLED."""
    db = tmp_path / "mlflow.db"
    (tmp_path / "model.py").write_text(SECOND_JOB_HANGS)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hibayes.fit",
            "-m",
            *SHORT_FIT,
            f"tracking.uri=sqlite:///{db}",
            "model.path=model.py",
            "model.name=second_hangs",
            "+model.hang=false,true",
            "hydra.sweep.dir=sweep",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )  # its own process group, as a terminal's job is
    # The default model config's own prior sweep multiplies the jobs; model.hang
    # varies fastest, so job 1 (hang=false) is done when job 2 (hang=true) starts.
    _wait_for(
        lambda: (
            (tmp_path / "sweep" / "0" / "metrics.json").exists()
            and sum(child for _, child in _peek_statuses(db)) == 2
        ),
        proc,
        what="job 1 to finish and job 2 to start",
    )
    os.killpg(proc.pid, sig)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{db}")
    runs = all_runs(client)
    children = {
        r.data.params.get("model.hang"): r
        for r in runs
        if "mlflow.parentRunId" in r.data.tags
    }
    first = artifact_files(client, children["False"].info.run_id)
    assert {"idata.nc", "summary.csv", "metrics.json", "config.yaml"} <= first, out[
        -3000:
    ]
    if sig == signal.SIGKILL:
        assert children["False"].info.status == "RUNNING"
        synced = run_hibayes(tmp_path, "sweep", module="hibayes.sync")
        assert synced.returncode == 0, synced.stderr[-3000:]
        assert synced.stdout.strip() == (
            "ended 3 run(s) of killed processes (2 KILLED, 1 FINISHED), 0 still pending"
        )
        runs = all_runs(client)
        children = {
            r.data.params.get("model.hang"): r
            for r in runs
            if "mlflow.parentRunId" in r.data.tags
        }
        first = artifact_files(client, children["False"].info.run_id)
    assert children["False"].info.status == "FINISHED", out[-3000:]
    assert {"plots/trace.png", "plots/pareto_k.png"} <= first
    assert children["True"].info.status == "KILLED"
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert parent.info.status == "KILLED"
