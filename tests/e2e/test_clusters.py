"""Sweeps on real cluster engines: a one-node SLURM cluster and a local Ray cluster.

Real parts only: `python -m hibayes.fit -m` against a real `mlflow server`, SLURM
(slurmctld + slurmd, started by scripts/slurm_cluster.sh; .ci/run does it) and a
Ray head started here with `ray start --head` on 127.0.0.1. Fits are short; one
job's model can fail on purpose or hang (so it can be cancelled or killed mid-fit).

In CI (HIBAYES_TEST_SLURM=1 / HIBAYES_TEST_RAY=1) a missing cluster fails the test;
elsewhere the test skips, saying what is missing.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers.server import SHORT_FIT, all_runs, artifact_files, free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CHILD_FILES = {
    "config.yaml",
    "idata.nc",
    "summary.csv",
    "metrics.json",
    "plots/trace.png",
}
PARENT_FILES = {"comparison.csv", "report.html"}
# One model whose jobs fit, fail or hang: `+model.mode=ok,fail,hang`. It takes the
# default model config's prior key, set to one value (ONE_PRIOR), so that config's
# own three-prior sweep does not multiply the jobs.
MODES_MODEL = textwrap.dedent("""
    import time
    import numpyro, numpyro.distributions as dist
    from hibayes.model import Model, model

    @model
    def modes(mode: str = "ok", prior_sigma_group_scale: float = 1.0) -> Model:
        def program(features):
            if mode == "fail":
                raise ValueError("this job fails on purpose")
            if mode == "hang":
                time.sleep(900)  # cancelled or killed by the test long before
            mu = numpyro.sample("mu", dist.Normal(0.0, prior_sigma_group_scale))
            numpyro.sample("obs", dist.Binomial(features["n_total"], logits=mu),
                           obs=features["obs"])
        return program
""")
ONE_PRIOR = "model.prior_sigma_group_scale=0.4"
QUIET = (
    "Bypassing sacct",
    "accounting storage is disabled",
    "not installed",
    "libtpu",
    "Unable to initialize backend",
)


def _need(env_var: str, ok: bool, reason: str) -> None:
    """Skip locally, fail in CI, when an engine is missing."""
    if ok:
        return
    if os.environ.get(env_var) == "1":
        pytest.fail(f"{env_var}=1 but {reason}")
    pytest.skip(reason)


def _slurm_idle() -> bool:
    if shutil.which("sinfo") is None:
        return False
    done = subprocess.run(
        ["sinfo", "-h", "-N", "-o", "%T"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    return done.returncode == 0 and "idle" in done.stdout.split()


@pytest.fixture
def slurm():
    """A running SLURM cluster with an idle node (scripts/slurm_cluster.sh start)."""
    _need(
        "HIBAYES_TEST_SLURM",
        _slurm_idle(),
        "no idle SLURM node (run `scripts/slurm_cluster.sh start` as root)",
    )


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """A local Ray cluster, `ray start --head --num-cpus 2` on 127.0.0.1; its address.

    One for the module: starting it takes 30-120 s here."""
    try:
        import hydra_plugins.hydra_ray_launcher  # noqa: F401

        installed = True
    except ImportError:
        installed = False
    _need("HIBAYES_TEST_RAY", installed, "hydra-ray-launcher is not installed")
    ray = Path(sys.executable).with_name("ray")
    port = free_port()
    temp = tmp_path_factory.mktemp("ray")
    log_path = temp / "ray-start.log"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    # --block keeps `ray start` in the foreground with the head's processes in its own
    # process group: teardown stops exactly this cluster (`ray stop` would stop every
    # Ray on the machine).
    with open(log_path, "w") as log:
        head = subprocess.Popen(
            [
                str(ray),
                "start",
                "--head",
                "--block",
                "--num-cpus",
                "2",
                "--node-ip-address",
                "127.0.0.1",
                "--port",
                str(port),
                "--include-dashboard",
                "false",
                "--temp-dir",
                str(temp),
                "--disable-usage-stats",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 300
        while "Ray runtime started" not in log_path.read_text():
            assert head.poll() is None, "ray start failed:\n" + log_path.read_text()
            assert time.monotonic() < deadline, "ray start: no head after 300 s"
            time.sleep(1)
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(timeout=30)
        try:
            os.killpg(head.pid, signal.SIGKILL)  # any worker left in the group
        except ProcessLookupError:
            pass


def _launch(workdir: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "hibayes.fit", "-m", *SHORT_FIT, *args],
        cwd=workdir,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _family(client, exp: str) -> tuple:
    runs = all_runs(client, exp)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1, [r.info.run_name for r in runs]
    children = {
        r.data.tags["hibayes.job_num"]: r
        for r in runs
        if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id
    }
    assert len(runs) == len(children) + 1  # no run outside the family, no duplicates
    return parents[0], children


def _wait_running(
    client, exp: str, job: str, proc: subprocess.Popen, timeout: float = 420
):
    """The child run of job ``job`` once it is RUNNING."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, (
            "the sweep ended early:\n" + proc.stdout.read()[-3000:]
        )
        exp_ = client.get_experiment_by_name(exp)
        if exp_ is not None:
            for run in all_runs(client, exp):
                if (
                    run.data.tags.get("hibayes.job_num") == job
                    and run.info.status == "RUNNING"
                ):
                    return run
        time.sleep(1)
    proc.kill()
    raise AssertionError(f"job {job} never ran")


def _check_quiet_and_progress(out: str, n_jobs: int) -> None:
    print(out[-5000:])  # shown with `pytest -rP`: what a user sees
    for noise in QUIET:
        assert noise not in out, f"{noise!r} in the sweep's log"
    done = [line for line in out.splitlines() if " done] " in line]
    assert len(done) == n_jobs, done
    assert all(f"/{n_jobs} done]" in line for line in done)


def _check_finished(client, children: dict) -> None:
    for child in children.values():
        assert child.info.status == "FINISHED", child.info.run_name
        assert {"elpd_loo", "converged"} <= set(child.data.metrics)
        assert CHILD_FILES <= artifact_files(client, child.info.run_id)


SLURM_ARGS = (
    "hydra/launcher=submitit_slurm",
    "hydra.launcher.partition=debug",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
    "runtime.host_devices=2",
    "tracking=server",
)


def test_slurm_sweep_all_children_finished(slurm, mlflow_server, tmp_path):
    """Two SLURM array tasks: both FINISHED under one parent, comparison and report."""
    exp = "slurm-ok"
    proc = _launch(
        tmp_path,
        *SLURM_ARGS,
        f"tracking.uri={mlflow_server.uri}",
        f"tracking.experiment={exp}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ONE_PRIOR,
        "fit.seed=0,1",
    )
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-4000:]
    client = mlflow_server.client()
    parent, children = _family(client, exp)
    assert sorted(children) == ["0", "1"]
    _check_finished(client, children)
    assert parent.info.status == "FINISHED"
    assert PARENT_FILES <= artifact_files(client, parent.info.run_id)
    assert (tmp_path / "sweep" / ".submitit").is_dir()
    _check_quiet_and_progress(out, 2)


def test_slurm_failed_and_cancelled_jobs_are_named(slurm, mlflow_server, tmp_path):
    """Job 0 fits, job 1's fit raises, job 2 is scancelled mid-fit: 0 FINISHED, 1 FAILED
    with its traceback, 2 KILLED or FAILED (never RUNNING); the sweep exits non-zero
    naming jobs 1 and 2."""
    exp = "slurm-faults"
    (tmp_path / "modes.py").write_text(MODES_MODEL)
    client = mlflow_server.client()
    proc = _launch(
        tmp_path,
        *SLURM_ARGS,
        f"tracking.uri={mlflow_server.uri}",
        f"tracking.experiment={exp}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        f"model.path={tmp_path / 'modes.py'}",
        "model.name=modes",
        ONE_PRIOR,
        "+model.mode=ok,fail,hang",
    )
    try:
        _wait_running(client, exp, "2", proc)
        task = next((tmp_path / "sweep" / ".submitit").glob("*_2")).name
        subprocess.run(["scancel", task], check=True, timeout=60)
        out, _ = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    parent, children = _family(client, exp)
    assert children["0"].info.status == "FINISHED"
    assert children["1"].info.status == "FAILED"
    assert "traceback.txt" in artifact_files(client, children["1"].info.run_id)
    assert "fails on purpose" in children["1"].data.tags["hibayes.error"]
    assert children["2"].info.status in {"KILLED", "FAILED"}
    assert parent.info.status == "FAILED"
    assert "2 of 3 fits failed" in out, out[-4000:]
    assert "+model.mode=fail" in out and "+model.mode=hang" in out
    assert "CANCELLED" in out  # the cancelled task's SLURM state, named
    assert "done] +model.mode=ok: FINISHED" in out
    assert (
        "done] +model.mode=fail: FAILED: ModelError: model 'modes' rejected its inputs"
        in out
    )
    assert "done] +model.mode=hang: FAILED: UncompletedJobError" in out
    _check_quiet_and_progress(out, 3)


RAY_ARGS = ("hydra/launcher=ray", "runtime.host_devices=2", "tracking=server")


def test_ray_sweep_all_children_finished(ray_head, mlflow_server, tmp_path):
    """Two Ray tasks on a running Ray cluster: both FINISHED, nothing lost."""
    exp = "ray-ok"
    proc = _launch(
        tmp_path,
        *RAY_ARGS,
        f"hydra.launcher.ray.init.address={ray_head}",
        f"tracking.uri={mlflow_server.uri}",
        f"tracking.experiment={exp}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ONE_PRIOR,
        "fit.seed=0,1",
    )
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-4000:]
    client = mlflow_server.client()
    parent, children = _family(client, exp)
    assert sorted(children) == ["0", "1"]
    _check_finished(client, children)
    assert parent.info.status == "FINISHED"
    assert PARENT_FILES <= artifact_files(client, parent.info.run_id)
    _check_quiet_and_progress(out, 2)


def test_ray_killed_worker_fails_its_job_only(ray_head, mlflow_server, tmp_path):
    """SIGKILL to the Ray worker running job 1 mid-fit: that child ends KILLED or
    FAILED, is not run again, job 0 finishes, the sweep exits non-zero naming job 1."""
    exp = "ray-kill"
    (tmp_path / "modes.py").write_text(MODES_MODEL)
    client = mlflow_server.client()
    proc = _launch(
        tmp_path,
        *RAY_ARGS,
        f"hydra.launcher.ray.init.address={ray_head}",
        f"tracking.uri={mlflow_server.uri}",
        f"tracking.experiment={exp}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        f"model.path={tmp_path / 'modes.py'}",
        "model.name=modes",
        ONE_PRIOR,
        "+model.mode=ok,hang",
    )
    try:
        run = _wait_running(client, exp, "1", proc)
        pid = int(run.data.tags["hibayes.process"].rsplit(":", 1)[1])
        os.kill(pid, signal.SIGKILL)  # the worker that runs job 1, nothing else
        out, _ = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    parent, children = _family(client, exp)  # one run per job: no silent retry
    assert children["0"].info.status == "FINISHED"
    assert children["1"].info.status in {"KILLED", "FAILED"}
    assert parent.info.status == "FAILED"
    assert "1 of 2 fits failed" in out and "+model.mode=hang" in out, out[-4000:]
    _check_quiet_and_progress(out, 2)
