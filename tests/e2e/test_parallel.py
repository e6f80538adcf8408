"""Parallel and cluster launchers: every job's child run under the right parent, once.

Real launchers (hibayes's joblib launcher with loky worker processes, the submitit
local executor), a real `mlflow server`, real fits with short chains. The Ray
launcher is tested on a real Ray head in test_clusters.py (a second, private Ray
started here would only repeat it, and its `ray.init()` could join that head).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.server import FIT_FILES, SHORT_FIT, all_runs, artifact_files, run_hibayes

ROOT = Path(__file__).resolve().parents[2]
FILES = FIT_FILES | {"plots/forest.png"}
METRICS = {"rhat_max", "ess_bulk_min", "elpd_loo", "converged", "time_total_s"}
# Replaces the model's default three-prior sweep: jobs = the seeds listed.
ONE_PRIOR = "model.prior_sigma_group_scale=0.4"


@pytest.mark.parametrize(
    ("launcher", "target", "setting"),
    [
        (
            "joblib",
            "hibayes_launchers.launchers.JoblibLauncher",
            ("n_jobs", 2),
        ),
        (
            "submitit_local",
            "hydra_submitit_launcher.submitit_launcher.LocalLauncher",
            ("timeout_min", 60),
        ),
        (
            "submitit_slurm",
            "hibayes_launchers.launchers.SlurmLauncher",
            ("max_num_timeout", 0),
        ),
        ("ray", "hibayes_launchers.launchers.RayLauncher", ("ray", None)),
    ],
)
@pytest.mark.filterwarnings(r"ignore:\s*'hydra/launcher/\w+' is validated:UserWarning")
def test_launcher_presets_compose(launcher, target, setting):
    """``hydra/launcher=<name>`` picks our preset (merged onto the plugin's schema)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(ROOT / "hibayes" / "conf"), version_base="1.3"):
        cfg = compose(
            "config", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True
        )
    assert cfg.hydra.launcher._target_ == f"hydra_plugins.{target}"
    key, value = setting
    assert key in cfg.hydra.launcher
    if value is not None:
        assert cfg.hydra.launcher[key] == value


def _family(client, exp: str) -> tuple:
    runs = all_runs(client, exp)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    return runs, parents


def _check_children(client, exp: str, n_jobs: int, sweep_dir: Path) -> list:
    """One parent, ``n_jobs`` FINISHED children under it, complete, no duplicates."""
    runs, parents = _family(client, exp)
    assert len(parents) == 1
    parent = parents[0]
    children = [
        r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    ]
    assert len(runs) == n_jobs + 1 and len(children) == n_jobs
    assert sorted(int(r.data.tags["hibayes.job_num"]) for r in children) == list(
        range(n_jobs)
    )
    info = json.loads((sweep_dir / ".hibayes_sweep.json").read_text())
    assert info["parent_run_id"] == parent.info.run_id
    for child in children:
        assert child.info.status == "FINISHED"
        assert METRICS <= set(child.data.metrics)
        assert FILES <= artifact_files(client, child.info.run_id)
        # Each run holds its own job's config and outputs (no state from another job).
        job_dir = sweep_dir / child.data.tags["hibayes.job_num"]
        assert child.data.tags["hibayes.output_dir"] == str(job_dir.resolve())
        local = json.loads((job_dir / "metrics.json").read_text())
        assert child.data.metrics["elpd_loo"] == pytest.approx(local["elpd_loo"])
        overrides = (job_dir / ".hydra" / "overrides.yaml").read_text()
        assert f"fit.seed={child.data.params['fit.seed']}" in overrides
        # XLA host devices were set before JAX started in the worker: chains ran in parallel.
        assert child.data.tags["hibayes.chain_method"] == "parallel"
    assert parent.info.status == "FINISHED"
    assert not list(sweep_dir.rglob("upload_pending.json"))
    return children


@pytest.mark.slow
def test_joblib_sweep_of_6_jobs_on_3_workers(mlflow_server, tmp_path):
    exp = "joblib-6"
    done = run_hibayes(
        tmp_path,
        "-m",
        *SHORT_FIT,
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=3",
        "tracking=server",
        f"tracking.experiment={exp}",
        "hydra.sweep.dir=sweep",
        "model.prior_sigma_group_scale=0.1,0.4",
        "fit.seed=0,1,2",
        env={"MLFLOW_TRACKING_URI": mlflow_server.uri, "HIBAYES_HOST_DEVICES": "2"},
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "joblib sweep of 6 fits on 3 workers" in done.stderr + done.stdout
    children = _check_children(mlflow_server.client(), exp, 6, tmp_path / "sweep")
    pairs = {
        (r.data.params["model.prior_sigma_group_scale"], r.data.params["fit.seed"])
        for r in children
    }
    assert len(pairs) == 6


# A job whose process dies (SIGKILL to itself, as the OOM killer would) while its
# model is traced; the others fit. It takes the default model's prior key (one value).
DYING_MODEL = """
import os, signal
import numpyro, numpyro.distributions as dist
from hibayes.model import Model, model

@model
def dying(mode: str = "ok", prior_sigma_group_scale: float = 1.0) -> Model:
    def program(features):
        if mode == "die":
            os.kill(os.getpid(), signal.SIGKILL)
        mu = numpyro.sample("mu", dist.Normal(0.0, prior_sigma_group_scale))
        numpyro.sample("obs", dist.Binomial(features["n_total"], logits=mu),
                       obs=features["obs"])
    return program
"""


@pytest.mark.slow
def test_joblib_worker_killed_fails_its_job_and_the_sweep_goes_on(
    mlflow_server, tmp_path
):
    """The worker of the first job dies: that job fails (never run twice), and the
    jobs the broken pool had not started run on a fresh one and finish."""
    exp = "joblib-dies"
    (tmp_path / "dying.py").write_text(DYING_MODEL)
    done = run_hibayes(
        tmp_path,
        "-m",
        *SHORT_FIT,
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=1",
        "tracking=server",
        f"tracking.experiment={exp}",
        "hydra.sweep.dir=sweep",
        f"model.path={tmp_path / 'dying.py'}",
        "model.name=dying",
        ONE_PRIOR,
        "+model.mode=die,ok,ok2",
        env={"MLFLOW_TRACKING_URI": mlflow_server.uri, "HIBAYES_HOST_DEVICES": "2"},
    )
    out = done.stdout + done.stderr
    assert done.returncode != 0
    assert "1 of 3 fits failed" in out and "+model.mode=die" in out, out[-4000:]
    runs, parents = _family(mlflow_server.client(), exp)
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    by_job: dict = {}
    for r in children:
        by_job.setdefault(r.data.tags["hibayes.job_num"], []).append(r.info.status)
    assert all(len(v) == 1 for v in by_job.values()), by_job  # no job run twice
    assert by_job["1"] == ["FINISHED"] and by_job["2"] == ["FINISHED"], by_job
    assert by_job.get("0", ["KILLED"])[0] in {"KILLED", "FAILED"}, by_job
    assert "RUNNING" not in {r.info.status for r in runs}
    # A run its fit had begun to open (its marker written) is not the sweep's to
    # create; sync ends it, and job 0 then has one run, never two.
    synced = run_hibayes(tmp_path, "sweep", module="hibayes.sync")
    assert synced.returncode == 0, synced.stderr[-3000:]
    runs, _ = _family(mlflow_server.client(), exp)
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert sorted(r.data.tags["hibayes.job_num"] for r in children) == ["0", "1", "2"]
    (job0,) = [r for r in children if r.data.tags["hibayes.job_num"] == "0"]
    assert job0.info.status in {"KILLED", "FAILED"}


@pytest.mark.slow
def test_submitit_local_sweep(mlflow_server, tmp_path):
    exp = "submitit-local"
    done = run_hibayes(
        tmp_path,
        "-m",
        *SHORT_FIT,
        "hydra/launcher=submitit_local",
        "tracking=server",
        f"tracking.experiment={exp}",
        "hydra.sweep.dir=sweep",
        "fit.seed=0,1",
        ONE_PRIOR,
        env={"MLFLOW_TRACKING_URI": mlflow_server.uri, "HIBAYES_HOST_DEVICES": "2"},
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert (tmp_path / "sweep" / ".submitit").is_dir()
    _check_children(mlflow_server.client(), exp, 2, tmp_path / "sweep")


@pytest.mark.slow
def test_interrupted_joblib_sweep_leaves_nothing_running(mlflow_server, tmp_path):
    """SIGTERM to the launching process: workers are stopped, and the sweep ends the
    children they were running (and its parent) as KILLED."""
    exp = "joblib-interrupted"
    client = mlflow_server.client()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hibayes.fit",
            "-m",
            "fit=quick",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            "tracking=server",
            f"tracking.experiment={exp}",
            "fit.seed=0,1,2,3",
            ONE_PRIOR,
        ],
        cwd=tmp_path,
        env={**os.environ, "MLFLOW_TRACKING_URI": mlflow_server.uri},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        runs, _ = _family(client, exp)
        if (
            sum(
                r.info.status == "RUNNING" and "mlflow.parentRunId" in r.data.tags
                for r in runs
            )
            >= 2
        ):
            break
        time.sleep(0.5)
    assert proc.poll() is None, "the sweep ended before two children were running"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0
    runs, parents = _family(client, exp)
    assert [r.info.status for r in runs if r.info.status == "RUNNING"] == [], out[
        -3000:
    ]
    assert parents[0].info.status == "KILLED"
    assert (
        sum(r.info.status == "KILLED" for r in runs) >= 3
    )  # parent + children in flight


@pytest.mark.slow
def test_parallel_jobs_on_a_locked_sqlite_store_fail_loudly_and_lose_nothing(tmp_path):
    """Another writer holds the SQLite store while two parallel jobs run: they fit
    anyway, keep what the store refused in upload_pending.json, the sweep exits
    non-zero saying so, and sync completes every run once the store is free."""
    db = tmp_path / "mlflow.db"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hibayes.fit",
            "-m",
            *SHORT_FIT,
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            f"tracking.uri=sqlite:///{db}",
            "hydra.sweep.dir=sweep",
            "fit.seed=0,1",
            ONE_PRIOR,
        ],
        cwd=tmp_path,
        env={**os.environ, "HIBAYES_HOST_DEVICES": "2"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    sweep_file = tmp_path / "sweep" / ".hibayes_sweep.json"
    deadline = time.monotonic() + 300
    while (
        not sweep_file.exists() and proc.poll() is None and time.monotonic() < deadline
    ):
        time.sleep(0.1)
    assert sweep_file.exists(), "the sweep's parent run was not created"
    blocker = sqlite3.connect(db, timeout=60, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # another writer, for the whole sweep
    try:
        out, _ = proc.communicate(timeout=600)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert proc.returncode != 0
    assert "SQLite takes one writer at a time" in out
    assert "did not fully reach the MLflow store" in out
    for job in ("0", "1"):
        assert (tmp_path / "sweep" / job / "idata.nc").exists()
        assert (tmp_path / "sweep" / job / "upload_pending.json").exists()

    synced = run_hibayes(tmp_path, "sweep", module="hibayes.sync")
    assert synced.returncode == 0, synced.stdout + synced.stderr
    from mlflow import MlflowClient

    _check_children(MlflowClient(f"sqlite:///{db}"), "hibayes", 2, tmp_path / "sweep")


def test_a_sweep_run_in_process_samples_its_chains_in_parallel(tmp_path):
    """Hydra's basic launcher runs the jobs in the sweep's own process.

    The sweep's parent run asks JAX for its backend (provenance), which fixes the
    CPU device count: the runtime must be configured before that, or every fit
    of the sweep gets one device and runs its chains one after another.
    """
    from helpers.mlflow_store import all_runs as store_runs
    from helpers.mlflow_store import store_uri

    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("XLA_FLAGS", "HIBAYES_HOST_DEVICES")  # as a user's shell has it
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "hibayes.fit",
            "model=two_level_group_binomial",
            "fit=quick",
            "cv=psis",
            "model.prior_sigma_group_scale=0.1,0.4",
            "-m",
        ],
        cwd=tmp_path,
        env={**env, "MLFLOW_TRACKING_URI": store_uri(tmp_path)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    children = [r for r in store_runs(tmp_path) if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 2
    assert {r.data.tags["hibayes.chain_method"] for r in children} == {"parallel"}
