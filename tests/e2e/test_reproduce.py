"""``python -m hibayes.reproduce``: real sweeps, real MLflow (SQLite), real re-runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from hibayes.reproduce import (
    DRAW_TAGS,
    Reproduction,
    draws_identical,
    environment_differences,
    means_consistent,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "hibayes" / "data" / "examples" / "llm_evals.csv"
SHORT = ("fit.samples=100", "fit.warmup=100", "fit.prior_samples=0")


def run_module(
    module: str, workdir: Path, store: Path, *args: str
) -> subprocess.CompletedProcess:
    """Run ``python -m <module> args`` in ``workdir`` against the SQLite store ``store``."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store}"}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def client(store: Path):
    """An MlflowClient on the store."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{store}")


def fit_runs(store: Path) -> list:
    """Every run of the hibayes experiment, oldest first."""
    c = client(store)
    exp = c.get_experiment_by_name("hibayes")
    return c.search_runs(
        [exp.experiment_id], max_results=1000, order_by=["attributes.start_time ASC"]
    )


def posterior(store: Path, run_id: str, tmp: Path) -> xr.Dataset:
    """A run's posterior, downloaded."""
    from hibayes.inference import load_idata

    path = client(store).download_artifacts(run_id, "idata.nc", str(tmp / run_id))
    return load_idata(path).posterior


# -- unit tests of the judging helpers (fast) -----------------------------------


def _idata(values: dict[str, np.ndarray]):
    import arviz as az

    return az.from_dict(posterior=values)


def test_draws_identical_is_bit_for_bit() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 50))
    a = _idata({"mu": x, "sigma": np.abs(x)})
    assert draws_identical(a, _idata({"mu": x.copy(), "sigma": np.abs(x)})) == []
    nudged = x.copy()
    nudged[1, 7] = np.nextafter(nudged[1, 7], np.inf)  # one ulp
    assert draws_identical(a, _idata({"mu": nudged, "sigma": np.abs(x)})) == ["mu"]
    assert draws_identical(a, _idata({"mu": x})) == ["sigma"]


def test_means_consistent_within_mcse() -> None:
    rng = np.random.default_rng(1)
    a = _idata({"mu": rng.normal(size=(4, 500)), "zero": np.zeros((4, 500))})
    b = _idata({"mu": rng.normal(size=(4, 500)), "zero": np.zeros((4, 500))})
    ok, worst = means_consistent(a, b)
    assert ok and 0 <= worst < 3
    shifted = _idata(
        {"mu": rng.normal(size=(4, 500)) + 0.5, "zero": np.zeros((4, 500))}
    )
    ok, worst = means_consistent(a, shifted)
    assert not ok and worst > 3
    moved_constant = _idata(
        {"mu": rng.normal(size=(4, 500)), "zero": np.ones((4, 500))}
    )
    assert not means_consistent(a, moved_constant)[0]


def test_environment_differences_and_verdict_text() -> None:
    old = {
        "jax_version": "0.10.2",
        "platform": "Linux/x86_64",
        "arviz_version": "0.23.4",
    }
    new = {**old, "jax_version": "0.10.3", "arviz_version": "0.23.5"}
    diff = environment_differences(old, new)
    assert diff == {"jax_version": ("0.10.2", "0.10.3")}  # arviz does not draw
    assert "jax_version" in DRAW_TAGS and "arviz_version" not in DRAW_TAGS
    text = Reproduction("a", "b", "fit", "consistent", diff, ["mu"], 1.2).describe()
    assert (
        "CONSISTENT" in text and "jax_version 0.10.2 -> 0.10.3" in text and "mu" in text
    )


# -- end to end ------------------------------------------------------------------


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A three-fit prior sweep (short chains) in its own store."""
    workdir = tmp_path_factory.mktemp("sweep")
    store = workdir / "mlflow.db"
    done = run_module(
        "hibayes.fit", workdir, store, "model=two_level_group_binomial", *SHORT, "-m"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    runs = fit_runs(store)
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    children = [
        r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    ]
    assert len(children) == 3
    return {"workdir": workdir, "store": store, "parent": parent, "children": children}


@pytest.mark.slow
def test_reproduce_sweep_child_is_bit_identical(sweep: dict, tmp_path: Path) -> None:
    store = sweep["store"]
    # The second job reused the sampler the first compiled; here it compiles afresh.
    original = sorted(sweep["children"], key=lambda r: r.data.tags["hibayes.job_num"])[
        1
    ]
    start = time.perf_counter()
    done = run_module(
        "hibayes.reproduce",
        tmp_path,
        store,
        original.info.run_id,
        "--out-dir",
        str(tmp_path / "again"),
    )
    seconds = time.perf_counter() - start
    print(f"reproduce of one run took {seconds:.1f} s (process start to exit)")
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "IDENTICAL" in done.stdout
    new = [
        r
        for r in fit_runs(store)
        if r.data.tags.get("hibayes.reproduced_from") == original.info.run_id
    ]
    assert len(new) == 1 and new[0].info.status == "FINISHED"
    assert new[0].info.run_name == original.info.run_name
    assert new[0].data.params["fit.seed"] == original.data.params["fit.seed"]
    a = posterior(store, original.info.run_id, tmp_path)
    b = posterior(store, new[0].info.run_id, tmp_path)
    assert set(a.data_vars) == set(b.data_vars)
    for name in a.data_vars:
        assert np.array_equal(a[name].values, b[name].values), name


@pytest.mark.slow
def test_reproduce_whole_sweep_under_a_new_parent(sweep: dict, tmp_path: Path) -> None:
    store, parent = sweep["store"], sweep["parent"]
    done = run_module(
        "hibayes.reproduce",
        tmp_path,
        store,
        parent.info.run_id,
        "--out-dir",
        str(tmp_path / "sweep"),
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert done.stdout.count("IDENTICAL") == 3, done.stdout
    runs = fit_runs(store)
    new_parent = [
        r
        for r in runs
        if r.data.tags.get("hibayes.reproduced_from") == parent.info.run_id
    ]
    assert len(new_parent) == 1 and new_parent[0].info.status == "FINISHED"
    assert new_parent[0].info.run_name == f"reproduce {parent.info.run_name}"
    new_children = [
        r
        for r in runs
        if r.data.tags.get("mlflow.parentRunId") == new_parent[0].info.run_id
    ]
    originals = {r.info.run_id: r.info.run_name for r in sweep["children"]}
    assert {r.data.tags["hibayes.reproduced_from"] for r in new_children} == set(
        originals
    )
    assert {r.info.run_name for r in new_children} == set(originals.values())


@pytest.mark.slow
def test_reproduce_refuses_changed_data(tmp_path: Path) -> None:
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    store = tmp_path / "mlflow.db"
    data = project / "evals.csv"
    data.write_text(EXAMPLE.read_text().replace("model,", "group,", 1))
    done = run_module(
        "hibayes.fit",
        project,
        store,
        "fit=quick",
        *SHORT,
        "data=table",
        "data.path=evals.csv",
        "data.observed=score",
        "data.categorical=[group]",
        "data.aggregate=true",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (original,) = fit_runs(store)
    recorded = original.data.tags["hibayes.data_digest"]
    assert original.data.tags["hibayes.data_source"] == str(data)  # absolute

    with data.open("a") as fh:  # a blank line: new bytes, the same table
        fh.write("\n")
    from hibayes.data import file_digest

    changed = file_digest(data)
    refused = run_module("hibayes.reproduce", elsewhere, store, original.info.run_id)
    assert refused.returncode == 2, refused.stdout + refused.stderr[-3000:]
    message = refused.stderr
    assert recorded in message and changed in message and str(data) in message
    assert len(fit_runs(store)) == 1  # nothing ran

    # Told to go on, from another directory: the relative data.path still resolves.
    forced = run_module(
        "hibayes.reproduce",
        elsewhere,
        store,
        original.info.run_id,
        "--force",
        "--out-dir",
        str(tmp_path / "forced"),
    )
    assert forced.returncode == 0, forced.stdout + forced.stderr[-3000:]
    assert "IDENTICAL" in forced.stdout

    # The data file gone: nothing can be fitted, so --force is not what to advise.
    data.unlink()
    gone = run_module(
        "hibayes.reproduce", elsewhere, store, original.info.run_id, "--force"
    )
    assert gone.returncode == 2, gone.stdout + gone.stderr[-3000:]
    (line,) = [x for x in gone.stderr.splitlines() if x.startswith("refused:")]
    assert f"restore {data}" in line and "--force" not in line
    assert (
        len(fit_runs(store)) == 2
    )  # the original and the forced re-run: no FAILED one

    # Started where no store is: refused, and no empty mlflow.db is left behind.
    nowhere = tmp_path / "no-store-here" / "mlflow.db"
    nowhere.parent.mkdir()
    lost = run_module(
        "hibayes.reproduce", nowhere.parent, nowhere, original.info.run_id
    )
    assert lost.returncode == 2, lost.stdout + lost.stderr[-3000:]
    assert f"no tracking store at {nowhere}" in lost.stderr
    assert not nowhere.exists()
