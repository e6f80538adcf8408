"""``python -m hibayes.compare``: real sweeps in a SQLite store, real Hydra, real ArviZ."""

from __future__ import annotations

import warnings
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import pytest
from helpers.mlflow_store import all_runs, client, run_module
from omegaconf import OmegaConf

from hibayes.compare import CompareError, compare, run_labels

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "hibayes" / "data" / "examples" / "llm_evals.csv"
# cv=psis: each fit's elpd_cv is its PSIS-LOO, so az.compare is the independent check.
SHORT = ("fit.samples=100", "fit.warmup=100", "fit.prior_samples=0", "cv=psis")
NUMERIC = ["rank", "elpd_cv", "p_cv", "elpd_diff", "weight", "se", "dse"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A three-fit prior sweep on the shipped data, and one fit on other data."""
    workdir = tmp_path_factory.mktemp("compare")
    done = run_module(
        "hibayes.fit", workdir, "model=two_level_group_binomial", *SHORT, "-m"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    other = workdir / "other.csv"  # the shipped table with the first ten scores flipped
    lines = EXAMPLE.read_text().replace("model,", "group,", 1).splitlines()
    for i in range(1, 11):
        lines[i] = lines[i][:-1] + ("C" if lines[i].endswith("I") else "I")
    other.write_text("\n".join(lines) + "\n")
    done = run_module(
        "hibayes.fit",
        workdir,
        "fit=quick",
        *SHORT,
        "data=table",
        f"data.path={other}",
        "data.observed=score",
        "data.categorical=[group]",
        "data.aggregate=true",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    runs = all_runs(workdir)
    parent = next(r for r in runs if r.info.run_name.startswith("sweep "))
    children = [
        r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    ]
    (elsewhere,) = [r for r in runs if r.data.params.get("data.path") == str(other)]
    assert len(children) == 3
    return {
        "workdir": workdir,
        "parent": parent,
        "children": children,
        "other": elsewhere,
    }


def comparison_run(workdir: Path, compared: list) -> object:
    """The comparison run that compared exactly these runs."""
    ids = {r.info.run_id for r in compared}
    found = [
        r
        for r in all_runs(workdir)
        if set(r.data.tags.get("hibayes.compared_runs", "").split(",")) == ids
    ]
    assert len(found) == 1, [r.info.run_name for r in all_runs(workdir)]
    return found[0]


def assert_matches_arviz(workdir: Path, tmp: Path, compared: list) -> None:
    """The logged comparison.csv equals az.compare on the runs' posteriors."""
    from hibayes.inference import load_idata

    run = comparison_run(workdir, compared)
    assert run.info.run_name == f"compare {len(compared)} runs"
    assert run.info.status == "FINISHED"
    c = client(workdir)
    files = {a.path for a in c.list_artifacts(run.info.run_id)}
    files |= {a.path for a in c.list_artifacts(run.info.run_id, "plots")}
    assert {
        "comparison.csv",
        "runs.csv",
        "plots/comparison.png",
        "plots/forest_side_by_side.png",
    } <= files
    logged = pd.read_csv(
        c.download_artifacts(run.info.run_id, "comparison.csv", str(tmp)),
        index_col="fit",
    )
    idatas = {
        label: load_idata(
            c.download_artifacts(r.info.run_id, "idata.nc", str(tmp / r.info.run_id))
        )
        for label, r in zip(run_labels(compared), compared)
    }
    # The fits smooth PSIS in float64 (hibayes.diagnostics.psis); ArviZ smooths
    # float32 draws in float32, so it is given them in float64.
    for idata in idatas.values():
        idata.log_likelihood["obs"] = idata.log_likelihood["obs"].astype(np.float64)
    with warnings.catch_warnings():  # Pareto k advice: the short chains earn it
        warnings.simplefilter("ignore")
        expected = az.compare(idatas, ic="loo", method="stacking").rename(
            columns={"elpd_loo": "elpd_cv", "p_loo": "p_cv"}
        )
    assert list(logged.index) == list(expected.index)
    np.testing.assert_allclose(
        logged[NUMERIC].to_numpy(float),
        expected[NUMERIC].to_numpy(float),
        rtol=1e-12,
        atol=1e-12,
    )
    assert list(logged["warning"]) == list(expected["warning"])


def test_compare_sweep_children_matches_arviz(store: dict, tmp_path: Path) -> None:
    workdir, children = store["workdir"], store["children"]
    done = run_module(
        "hibayes.compare", workdir, f"parent={store['parent'].info.run_id}"
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    for column in (
        "converged",
        "rhat_max",
        "ess_bulk_min",
        "divergences",
        "pareto_k_bad",
        "elpd_cv",
        "p_cv",
        "cv_method",
        "elpd_diff",
        "weight",
        "se",
        "dse",
        "warning",
    ):
        assert column in done.stdout, column
    for run in children:
        assert run.info.run_name in done.stdout
    # Short chains: nothing converges, and the run table says so.
    assert done.stdout.count("NOT converged") == 3
    ordered = sorted(children, key=lambda r: r.info.start_time)
    assert_matches_arviz(workdir, tmp_path, ordered)


def test_compare_runs_picked_by_filter(store: dict, tmp_path: Path) -> None:
    workdir = store["workdir"]
    picked = [
        r
        for r in sorted(store["children"], key=lambda r: r.info.start_time)
        if r.data.params["model.prior_sigma_group_scale"] != "0.1"
    ]
    assert len(picked) == 2
    done = run_module(
        "hibayes.compare",
        workdir,
        "filter=\"params.`model.prior_sigma_group_scale` != '0.1'\"",
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert done.stdout.startswith("2 runs:")
    assert_matches_arviz(workdir, tmp_path, picked)


def test_compare_refuses_runs_on_different_data(store: dict, tmp_path: Path) -> None:
    workdir, other = store["workdir"], store["other"]
    child = store["children"][0]
    done = run_module(
        "hibayes.compare", workdir, f"runs=[{child.info.run_id},{other.info.run_id}]"
    )
    assert done.returncode == 2, done.stdout + done.stderr[-3000:]
    for text in (
        child.data.tags["hibayes.data_digest"],
        other.data.tags["hibayes.data_digest"],
        child.info.run_id,
        other.info.run_id,
        "different data",
    ):
        assert text in done.stderr, text
    before = len(all_runs(workdir))

    # Picked by experiment, the other run comes along: refused before any download.
    cfg = OmegaConf.load(ROOT / "hibayes" / "conf" / "compare.yaml")
    del cfg["hydra"]
    cfg.experiment = "hibayes"
    cfg.tracking.uri = f"sqlite:///{workdir}/mlflow.db"
    with pytest.raises(CompareError, match="different data"):
        compare(cfg, out_dir=tmp_path / "refused")
    # Allowed, the digests are not checked, but ELPDs of different observations are
    # still not comparable: compare_fits refuses them, naming the fit.
    cfg.allow_different_data = True
    with pytest.raises(CompareError, match="observed data"):
        compare(cfg, out_dir=tmp_path / "allowed")
    assert len(all_runs(workdir)) == before  # no comparison run was logged


def test_run_without_finite_elpd_refused_and_named(store, tmp_path):
    """A finished run whose pointwise log-likelihood is NaN would be ranked with a
    weight; compare refuses it by name, exit 2, and records no comparison run."""
    from hibayes.inference import load_idata

    workdir, good = store["workdir"], store["children"][0]
    c = client(workdir)
    idata = load_idata(
        c.download_artifacts(good.info.run_id, "idata.nc", str(tmp_path))
    )
    for name in idata.log_likelihood.data_vars:
        idata.log_likelihood[name][:] = np.nan
    broken = tmp_path / "broken" / "idata.nc"
    broken.parent.mkdir()
    idata.to_netcdf(broken)
    run = c.create_run(
        good.info.experiment_id,
        run_name="nan elpd",
        tags={
            k: v
            for k, v in good.data.tags.items()
            if k.startswith("hibayes.") and k != "hibayes.sweep_id"
        },
    )
    c.log_artifact(run.info.run_id, str(broken))
    c.set_terminated(run.info.run_id, "FINISHED")
    before = len(all_runs(workdir))
    done = run_module(
        "hibayes.compare", workdir, f"runs=[{good.info.run_id},{run.info.run_id}]"
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert (
        f"refused: 1 run(s) have no finite elpd_loo and cannot be ranked: "
        f"'nan elpd' ({run.info.run_id}): elpd_loo = nan"
    ) in done.stderr
    assert len(all_runs(workdir)) == before  # no comparison run recorded


def test_compare_where_no_store_is_refused_without_creating_one(tmp_path: Path) -> None:
    done = run_module("hibayes.compare", tmp_path, "parent=0123456789abcdef")
    assert done.returncode == 2, done.stdout + done.stderr[-3000:]
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("refused:")]
    assert f"no tracking store at {tmp_path / 'mlflow.db'}" in line
    assert not (tmp_path / "mlflow.db").exists()
