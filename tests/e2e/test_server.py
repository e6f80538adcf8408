"""A real `mlflow server`: sweeps recorded through it, unreachable servers refused early,
credentials kept out of everything a run records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.server import (
    FAST_FAIL_ENV,
    SHORT_FIT,
    all_runs,
    artifact_files,
    free_port,
    run_hibayes,
)

pytestmark = pytest.mark.slow

METRICS = {
    "rhat_max",
    "ess_bulk_min",
    "ess_tail_min",
    "divergences",
    "elpd_loo",
    "elpd_waic",
    "pareto_k_max",
    "converged",
    "time_total_s",
}
FILES = {
    "config.yaml",
    "overrides.yaml",
    "idata.nc",
    "summary.csv",
    "loo_pointwise.csv",
    "metrics.json",
    "plots/trace.png",
    "plots/forest.png",
    ".hydra/config.yaml",
}


def test_sweep_through_the_server(mlflow_server, tmp_path):
    exp = "server-sweep"
    done = run_hibayes(
        tmp_path,
        "-m",
        *SHORT_FIT,
        "tracking=server",
        f"tracking.experiment={exp}",
        "model.prior_sigma_group_scale=0.1,0.6",
        env={"MLFLOW_TRACKING_URI": mlflow_server.uri},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    client = mlflow_server.client()
    runs = all_runs(client, exp)
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [
        r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    ]
    assert len(runs) == 3 and len(children) == 2
    assert parent.info.status == "FINISHED"
    for child in children:
        assert child.info.status == "FINISHED"
        assert METRICS <= set(child.data.metrics)
        assert FILES <= artifact_files(client, child.info.run_id)
        assert client.get_run(child.info.run_id).inputs.dataset_inputs
        assert "hibayes.upload" not in child.data.tags  # uploaded as it went
    assert "comparison.csv" in artifact_files(client, parent.info.run_id)
    assert not list(tmp_path.rglob("upload_pending.json"))


def test_unreachable_server_fails_a_fit_before_sampling(tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"
    done = run_hibayes(tmp_path, *SHORT_FIT, f"tracking.uri={uri}", env=FAST_FAIL_ENV)
    assert done.returncode != 0
    assert f"MLflow tracking server {uri} is not reachable" in done.stderr
    assert "Traceback" not in done.stderr  # one clear line, not a stack
    assert "compiling the sampler" not in done.stdout + done.stderr
    assert not list(tmp_path.rglob("idata.nc"))
    assert not list(tmp_path.rglob("upload_pending.json"))


def test_unreachable_server_stops_a_sweep_before_any_fit(tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"
    done = run_hibayes(
        tmp_path,
        "-m",
        *SHORT_FIT,
        f"tracking.uri={uri}",
        "fit.seed=0,1",
        env=FAST_FAIL_ENV,
    )
    assert done.returncode != 0
    assert uri in done.stderr and "not reachable" in done.stderr
    assert "compiling the sampler" not in done.stdout + done.stderr
    assert not list(tmp_path.rglob("idata.nc"))
    assert not list(tmp_path.rglob("config.yaml"))


def test_credentials_never_reach_params_tags_or_artifacts(mlflow_server, tmp_path):
    """A token in the environment and a password in the tracking URI (the server
    ignores both) appear in no param, tag, run name or artifact."""
    token, password = "tok-3f9a1c7e5d2b8a64", "pw-9d8c7b6a5f4e"
    uri = mlflow_server.uri.replace("http://", f"http://alice:{password}@")
    exp = "credentials"
    done = run_hibayes(
        tmp_path,
        *SHORT_FIT,
        f"tracking.uri={uri}",
        f"tracking.experiment={exp}",
        f"+tracking.note=reach me at https://bob:{password}@example.org",
        "hydra.run.dir=job",
        env={"MLFLOW_TRACKING_TOKEN": token},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    client = mlflow_server.client()
    (run,) = all_runs(client, exp)
    recorded = json.dumps([run.info.run_name, run.data.params, run.data.tags])
    assert "alice:***@" in run.data.params["tracking.uri"]
    assert "alice:***@" in run.data.tags["hibayes.overrides"]
    local = Path(
        client.download_artifacts(run.info.run_id, "", str(tmp_path / "download"))
    )
    files = [p for p in local.rglob("*") if p.is_file()]
    assert {
        "config.yaml",
        "overrides.yaml",
        ".hydra/overrides.yaml",
        ".hydra/config.yaml",
        ".hydra/hydra.yaml",
    } <= {p.relative_to(local).as_posix() for p in files}
    texts = [p.read_bytes() for p in files] + [
        p.read_bytes() for p in (tmp_path / "job").rglob("*") if p.is_file()
    ]
    for secret in (token, password):
        assert secret not in recorded
        assert not [t for t in texts if secret.encode() in t]
    assert b"alice:***@" in (local / "config.yaml").read_bytes()
