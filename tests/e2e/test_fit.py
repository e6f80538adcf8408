"""The main job end to end: real `python -m hibayes.fit`, real Hydra, real MLflow store."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from helpers.mlflow_store import all_runs, artifact_paths, client, run_module
from helpers.user_model import USER_MODEL

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
METRICS = {
    "rhat_max",
    "ess_bulk_min",
    "ess_tail_min",
    "divergences",
    "ebfmi_min",
    "tree_depth_hits",
    "elpd_loo",
    "elpd_loo_se",
    "p_loo",
    "pareto_k_max",
    "pareto_k_bad",
    "elpd_waic",
    "elpd_waic_se",
    "p_waic",
    "converged",
    "time_compile_s",
    "time_sampling_s",
    "time_total_s",
    "ess_bulk_per_s",
}
ARTIFACTS = {
    "config.yaml",
    "overrides.yaml",
    "idata.nc",
    "summary.csv",
    "loo_pointwise.csv",
    "metrics.json",
}
PLOTS = {"plots/trace.png", "plots/forest.png", "plots/ppc.png", "plots/pareto_k.png"}


def run_fit(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """Run the main job as a user would, in ``workdir``, tracking to its own SQLite file."""
    return run_module("hibayes.fit", workdir, "fit=quick", *args)


def test_single_fit_is_one_complete_run(tmp_path):
    done = run_fit(tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = all_runs(tmp_path)
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert "mlflow.parentRunId" not in run.data.tags
    assert METRICS <= set(run.data.metrics)
    assert run.data.params["model.name"] == "two_level_group_binomial"
    assert run.data.params["fit.samples"] == "200"
    assert run.data.params["model.prior_sigma_group_scale"] == "0.1"
    for tag in (
        "hibayes.model",
        "hibayes.chain_method",
        "numpyro_version",
        "jax_version",
        "arviz_version",
        "mlflow_version",
        "jax_platform",
    ):
        assert tag in run.data.tags, tag
    assert run.data.tags["hibayes.chain_method"] == "parallel"
    assert (
        run.data.tags["hibayes.likelihood_rows"] == "all"
    )  # one row per group: nothing repeats
    files = artifact_paths(tmp_path, run.info.run_id)
    assert ARTIFACTS | PLOTS <= files
    inputs = client(tmp_path).get_run(run.info.run_id).inputs.dataset_inputs
    assert len(inputs) == 1 and inputs[0].dataset.digest
    local = client(tmp_path).download_artifacts(
        run.info.run_id, "idata.nc", str(tmp_path)
    )
    from hibayes.inference import load_idata

    idata = load_idata(local)
    assert idata.posterior["group_effects"].shape == (2, 200, 6)
    assert "elpd_loo" in done.stderr + done.stdout


def test_default_sweep_makes_parent_children_and_comparison(tmp_path):
    done = run_fit(tmp_path, "model=two_level_group_binomial", "-m")
    assert done.returncode == 0, done.stderr[-3000:]
    runs = all_runs(tmp_path)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    parent = parents[0]
    children = [
        r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    ]
    assert len(children) == 3
    assert sorted(r.info.run_name for r in children) == [
        f"two_level_group_binomial prior_sigma_group_scale={v}"
        for v in ("0.1", "0.4", "0.6")
    ]
    assert {r.data.params["model.prior_sigma_group_scale"] for r in children} == {
        "0.1",
        "0.4",
        "0.6",
    }
    for child in children:
        assert child.info.status == "FINISHED"
        assert METRICS <= set(child.data.metrics)
        assert ARTIFACTS | PLOTS <= artifact_paths(tmp_path, child.info.run_id)
    # The sweep's sampler compiled once: later children reused it.
    compiles = sorted(c.data.metrics["time_compile_s"] for c in children)
    assert compiles[0] == 0.0 and compiles[1] == 0.0
    assert parent.info.status == "FINISHED"
    parent_files = artifact_paths(tmp_path, parent.info.run_id)
    assert {
        "comparison.csv",
        "plots/comparison.png",
        "plots/forest_side_by_side.png",
    } <= parent_files
    import pandas as pd

    table = pd.read_csv(
        client(tmp_path).download_artifacts(
            parent.info.run_id, "comparison.csv", str(tmp_path)
        ),
        index_col=0,
    )
    assert set(table.index) == {r.info.run_name for r in children}
    assert {
        "rank",
        "elpd_loo",
        "p_loo",
        "elpd_diff",
        "weight",
        "se",
        "dse",
        "warning",
    } <= set(table.columns)


def test_failing_job_is_recorded_and_the_sweep_goes_on(tmp_path):
    done = run_fit(
        tmp_path,
        "model=simplified_group_binomial_exponential",
        "model.prior_sigma_group_rate=1.0,-2.0",
        "-m",
    )
    assert done.returncode != 0
    assert "1 of 2 fits failed" in done.stderr
    assert "prior_sigma_group_rate=-2.0" in done.stderr
    runs = all_runs(tmp_path)
    children = {
        r.data.params.get("model.prior_sigma_group_rate"): r
        for r in runs
        if "mlflow.parentRunId" in r.data.tags
    }
    assert children["1.0"].info.status == "FINISHED"
    assert children["-2.0"].info.status == "FAILED"
    assert "traceback.txt" in artifact_paths(tmp_path, children["-2.0"].info.run_id)
    assert "rejected its inputs" in children["-2.0"].data.tags["hibayes.error"]
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert parent.info.status == "FAILED"


def test_custom_model_file_runs(tmp_path):
    (tmp_path / "my_models.py").write_text(USER_MODEL)

    done = run_fit(
        tmp_path,
        "model.path=my_models.py",
        "model.name=my_custom_model",
        "+model.prior_mu_loc=-1.0",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = all_runs(tmp_path)
    assert run.info.status == "FINISHED"
    assert run.data.params["model.prior_mu_loc"] == "-1.0"
    assert run.data.tags["hibayes.model"] == "my_custom_model"


def test_config_typo_fails_before_sampling(tmp_path):
    done = run_fit(tmp_path, "fit.sampels=10")
    assert done.returncode != 0
    assert "fit.sampels" in done.stderr
    assert not (tmp_path / "mlflow.db").exists() or all_runs(tmp_path) == []


def test_explicit_model_and_seed_sweep(tmp_path):
    done = run_fit(
        tmp_path,
        "model=two_level_group_binomial,simplified_group_binomial_exponential",
        "fit.seed=0,1",
        "fit.samples=100",
        "fit.warmup=100",
        "fit.prior_samples=0",
        "-m",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    children = [r for r in all_runs(tmp_path) if "mlflow.parentRunId" in r.data.tags]
    assert sorted(
        (r.data.tags["hibayes.model"], r.data.params["fit.seed"]) for r in children
    ) == [
        ("simplified_group_binomial_exponential", "0"),
        ("simplified_group_binomial_exponential", "1"),
        ("two_level_group_binomial", "0"),
        ("two_level_group_binomial", "1"),
    ]
