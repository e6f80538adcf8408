"""Issue 19, second round of faults through the real CLI: nothing lost, nothing misread.

Each case runs ``python -m hibayes.fit`` in a fresh folder tracking to its own
SQLite store and checks the exit status, the one-line message (no traceback),
what the store holds (no run left RUNNING, no FINISHED run without its outputs)
and what is on disk.
"""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pytest
from helpers.server import SHORT_FIT, all_runs, artifact_files, run_hibayes

pytestmark = pytest.mark.slow

CONTRACT = {
    "config.yaml",
    "idata.nc",
    "summary.csv",
    "loo_pointwise.csv",
    "metrics.json",
}
# A model file whose factory ends the process for one prior value, as careless user
# code does: that job must fail alone.
EXITING_MODEL = textwrap.dedent("""
    import sys
    import numpyro, numpyro.distributions as dist
    from hibayes.model import Model, model

    @model
    def exiting_model(prior_mu_loc: float = 0.0) -> Model:
        if prior_mu_loc == 1.0:
            sys.exit(3)
        def program(features):
            mu = numpyro.sample("mu", dist.Normal(prior_mu_loc, 1.0))
            numpyro.sample("obs", dist.Binomial(features["n_total"], logits=mu),
                           obs=features["obs"])
        return program
""")


def _store(workdir: Path) -> tuple[str, dict]:
    return f"tracking.uri=sqlite:///{workdir}/mlflow.db", {}


def _client(workdir: Path):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{workdir}/mlflow.db")


def _check_store(workdir: Path) -> list:
    """Every run ended; every FINISHED fit run holds its outputs. Returns the runs."""
    client = _client(workdir)
    runs = all_runs(client)
    assert [r.info.run_name for r in runs if r.info.status == "RUNNING"] == []
    for run in runs:
        if run.info.status == "FINISHED" and "hibayes.sweep_id" in run.data.tags:
            assert CONTRACT <= artifact_files(client, run.info.run_id), (
                run.info.run_name
            )
    return runs


def _one_line(stderr: str, expected: str) -> None:
    assert "Traceback" not in stderr, stderr[-3000:]
    assert expected in stderr, stderr[-3000:]


def _taken(root: Path, seconds: int = 240) -> set[Path]:
    """Hydra's timestamped folder names for the next ``seconds``, created and used."""
    now = dt.datetime.now()
    taken = set()
    for s in range(-2, seconds):
        t = now + dt.timedelta(seconds=s)
        folder = root / t.strftime("%Y-%m-%d") / t.strftime("%H-%M-%S")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "previous.txt").write_text("another process's output")
        taken.add(folder)
    return taken


def test_taken_timestamped_folder_gets_a_suffix(tmp_path):
    """Two fits in the same second no longer share a folder: the second takes `_1`."""
    taken = _taken(tmp_path / "outputs")
    uri, _ = _store(tmp_path)
    done = run_hibayes(tmp_path, *SHORT_FIT, uri)
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = _check_store(tmp_path)
    assert run.info.status == "FINISHED"
    out_dir = Path(run.data.tags["hibayes.output_dir"])
    assert out_dir.name.endswith("_1")
    assert out_dir.with_name(out_dir.name[:-2]) in taken
    assert CONTRACT <= {p.name for p in out_dir.iterdir()}
    assert CONTRACT <= artifact_files(_client(tmp_path), run.info.run_id)
    for folder in taken:  # nobody else's folder was written to
        assert [p.name for p in folder.iterdir()] == ["previous.txt"]


@pytest.mark.parametrize("mode", ["run", "sweep"])
def test_reused_explicit_folder_refused_then_emptied_on_request(tmp_path, mode):
    """A named folder holding a previous job's outputs is refused; reuse_output_dir=true
    empties it first, so old outputs never sit next to new ones."""
    folder = tmp_path / "named"
    (folder / ".hydra").mkdir(parents=True)
    (tmp_path / "negative.csv").write_text("group,obs,n\na,3,10\nb,-1,10\n")
    (folder / "idata.nc").write_text("the previous job's posterior")
    uri, _ = _store(tmp_path)
    args = (
        *(["-m"] if mode == "sweep" else []),
        "data=table",
        "data.path=negative.csv",
        "data.observed=obs",
        "data.n_total=n",
        "data.aggregate=false",
        uri,
        f"hydra.{mode}.dir=named",
    )
    refused = run_hibayes(tmp_path, *args)
    assert refused.returncode == 1
    _one_line(refused.stderr, f"error: hydra.{mode}.dir=named: the folder is not empty")
    assert (folder / "idata.nc").read_text() == "the previous job's posterior"
    assert _check_store(tmp_path) == []  # refused before any run was opened

    again = run_hibayes(tmp_path, *args, "reuse_output_dir=true")
    assert again.returncode == 1  # a negative count: the fit itself fails on its data
    _one_line(again.stderr, "negative.csv: column 'obs': negative")
    assert not (folder / "idata.nc").exists()
    runs = _check_store(tmp_path)
    # One run, or the default prior sweep's three jobs and their parent: all FAILED.
    assert [r.info.status for r in runs] == ["FAILED"] * (1 if mode == "run" else 4)


def test_bad_threshold_refused_before_sampling(tmp_path):
    """checks.* not a number: one line naming every bad key, no draws thrown away."""
    uri, _ = _store(tmp_path)
    done = run_hibayes(
        tmp_path,
        *SHORT_FIT,
        uri,
        "checks.rhat_max=abc",
        "checks.ess_bulk_min=null",
        "hydra.run.dir=out",
    )
    assert done.returncode == 1
    _one_line(
        done.stderr,
        "error: 2 problems in the config:\n"
        "  checks.rhat_max must be a number, got 'abc'\n"
        "  checks.ess_bulk_min must be a number, got None",
    )
    assert "sampling" not in done.stdout + done.stderr
    (run,) = _check_store(tmp_path)
    assert run.info.status == "FAILED"
    assert "traceback.txt" in artifact_files(_client(tmp_path), run.info.run_id)
    assert not (tmp_path / "out" / "idata.nc").exists()
    assert "ConfigError" in (tmp_path / "out" / "traceback.txt").read_text()


def test_bad_threshold_in_one_sweep_job_refuses_the_sweep_before_any_fit(tmp_path):
    uri, _ = _store(tmp_path)
    done = run_hibayes(
        tmp_path,
        "-m",
        *SHORT_FIT,
        uri,
        "checks.rhat_max=1.01,abc",
        "hydra.sweep.dir=sweep",
    )
    assert done.returncode == 1
    _one_line(done.stderr, "error: checks.rhat_max must be a number, got 'abc'")
    assert _check_store(tmp_path) == []
    assert not (tmp_path / "sweep").exists()  # refused: no empty folder left behind


def test_sweep_runs_every_job_in_its_own_folder(tmp_path):
    """A custom model's sweep: the default model's prior sweep is dropped (2 fits, not
    6), the job whose model calls sys.exit() fails alone, the sweep ends with one
    line listing it and exit 1, and the timestamped folder taken gets a suffix."""
    (tmp_path / "exiting_model.py").write_text(EXITING_MODEL)
    taken = _taken(tmp_path / "multirun", seconds=120)
    uri, _ = _store(tmp_path)
    done = run_hibayes(
        tmp_path,
        "-m",
        *SHORT_FIT,
        uri,
        "model.path=exiting_model.py",
        "model.name=exiting_model",
        "+model.prior_mu_loc=0.0,1.0",
    )
    assert done.returncode == 1, done.stderr[-3000:]
    _one_line(
        done.stderr,
        "error: 1 of 2 fits failed:\n  exiting_model prior_mu_loc=1.0: SystemExit: 3",
    )
    assert (
        "not swept: model.prior_sigma_group_scale=0.1,0.4,0.6 (model exiting_model "
        "does not take it)"
    ) in done.stdout + done.stderr
    runs = _check_store(tmp_path)
    children = sorted(
        (r for r in runs if "hibayes.job_num" in r.data.tags),
        key=lambda r: r.data.tags["hibayes.job_num"],
    )
    assert [c.info.status for c in children] == ["FINISHED", "FAILED"]
    (parent,) = [r for r in runs if "hibayes.job_num" not in r.data.tags]
    assert parent.info.status == "FAILED"
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    sweep_dir = Path(children[0].data.tags["hibayes.output_dir"]).parent
    assert sweep_dir.name.endswith("_1")
    assert sweep_dir.with_name(sweep_dir.name[:-2]) in taken
    assert CONTRACT <= {p.name for p in (sweep_dir / "0").iterdir()}
    assert "SystemExit: 3" in (sweep_dir / "1" / "traceback.txt").read_text()
    assert not (sweep_dir / "1" / "idata.nc").exists()


@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_a_job_failing_before_its_fit_has_a_failed_run_under_the_sweep(
    tmp_path, launcher
):
    """Job 1's runtime section cannot be applied (its JAX cache folder would be under
    a file), so it fails before its fit opens a run: the sweep names it and exits 1,
    and the parent holds a FAILED child for it, as for a fit that fails: the reason
    as hibayes.error, the overrides as params and tag, the traceback. One run a job,
    and nothing written to the failed job's folder for its run."""
    (tmp_path / "afile").write_text("in the way")
    uri, _ = _store(tmp_path)
    done = run_hibayes(
        tmp_path,
        "-m",
        *SHORT_FIT,
        uri,
        "hydra.sweep.dir=sweep",
        "model.prior_sigma_group_scale=0.4",  # one value: two jobs, not six
        "runtime.jax_cache_dir=off,afile/cache",
        *(
            ["hydra/launcher=joblib", "hydra.launcher.n_jobs=1"]
            * (launcher == "joblib")
        ),
    )
    assert done.returncode == 1, done.stderr[-3000:]
    reason = "NotADirectoryError: [Errno 20] Not a directory: 'afile/cache'"
    _one_line(done.stderr, "error: 1 of 2 fits failed:\n  ")
    (listed,) = [line for line in done.stderr.splitlines() if reason in line]
    assert listed.startswith("  ") and "runtime.jax_cache_dir=afile/cache" in listed
    client = _client(tmp_path)
    runs = _check_store(tmp_path)
    (parent,) = [r for r in runs if "hibayes.n_jobs" in r.data.tags]
    assert parent.info.status == "FAILED"
    by_job: dict[str, list] = {}
    for run in runs:
        if run is not parent:
            by_job.setdefault(run.data.tags["hibayes.job_num"], []).append(run)
    assert {job: len(v) for job, v in by_job.items()} == {"0": 1, "1": 1}
    (fitted,), (failed,) = by_job["0"], by_job["1"]
    assert fitted.info.status == "FINISHED"
    assert failed.info.status == "FAILED"
    assert failed.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert failed.data.tags["hibayes.error"] == reason
    assert failed.data.tags["hibayes.sweep_id"] == fitted.data.tags["hibayes.sweep_id"]
    assert failed.data.tags["hibayes.model"] == "two_level_group_binomial"
    job_dir = tmp_path / "sweep" / "1"
    assert failed.data.tags["hibayes.output_dir"] == str(job_dir)
    assert "runtime.jax_cache_dir=afile/cache" in failed.data.tags["hibayes.overrides"]
    assert failed.data.params["runtime.jax_cache_dir"] == "afile/cache"
    assert failed.data.params["model.prior_sigma_group_scale"] == "0.4"
    assert failed.data.params["fit.samples"] == "100"
    assert failed.info.run_name == fitted.info.run_name == "two_level_group_binomial"
    assert artifact_files(client, failed.info.run_id) == {"traceback.txt"}
    text = Path(
        client.download_artifacts(failed.info.run_id, "traceback.txt", str(tmp_path))
    ).read_text()
    assert reason in text
    if launcher == "basic":  # a worker's exception comes back without its frames
        assert "configure_compilation_cache" in text
    assert not (job_dir / "upload_pending.json").exists()
    assert not (job_dir / "traceback.txt").exists()


BRANCHING_MODEL = textwrap.dedent("""
    import numpyro, numpyro.distributions as dist
    from hibayes.model import Model, model

    @model
    def branching_model(prior_scale: float = 1.0) -> Model:
        def program(features):
            mu = numpyro.sample("mu", dist.Normal(0.0, prior_scale))
            if mu > 0:  # a Python `if` on a sampled value
                mu = mu * 2
            numpyro.sample("obs", dist.Binomial(features["n_total"], logits=mu),
                           obs=features["obs"])
        return program
""")
TWICE_MODEL = textwrap.dedent("""
    import numpyro, numpyro.distributions as dist
    from hibayes.model import Model, model

    @model
    def twice_model() -> Model:
        def program(features):
            mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
            numpyro.sample("obs", dist.Binomial(features["n_total"], logits=mu),
                           obs=features["obs"])
            numpyro.sample("obs", dist.Binomial(features["n_total"], logits=mu),
                           obs=features["obs"])
        return program
""")


@pytest.mark.parametrize(
    ("source", "name", "message"),
    [
        (
            BRANCHING_MODEL,
            "branching_model",
            "error: model 'branching_model' uses a sampled value (or a data array) in Python "
            "control flow (TracerBoolConversionError",
        ),
        (
            TWICE_MODEL,
            "twice_model",
            "error: model 'twice_model' samples the site 'obs' twice",
        ),
    ],
)
def test_model_mistakes_named_in_one_line(tmp_path, source, name, message):
    (tmp_path / "mine.py").write_text(source)
    uri, _ = _store(tmp_path)
    done = run_hibayes(
        tmp_path,
        *SHORT_FIT,
        uri,
        "model.path=mine.py",
        f"model.name={name}",
        "hydra.run.dir=out",
    )
    assert done.returncode == 1
    _one_line(done.stderr, message)
    if name == "branching_model":
        assert "jnp.where(condition, a, b)" in done.stderr
    (run,) = _check_store(tmp_path)
    assert run.info.status == "FAILED"
    assert "traceback.txt" in artifact_files(_client(tmp_path), run.info.run_id)
    assert not (tmp_path / "out" / "idata.nc").exists()


@pytest.mark.parametrize("mode", ["run", "sweep"])
def test_an_output_folder_that_cannot_be_made_is_one_line(tmp_path, mode):
    """A file where the output folder should go (as a read-only folder would): one
    line naming the key, the folder and why, exit 1, no run opened."""
    (tmp_path / "afile").write_text("in the way")
    uri, _ = _store(tmp_path)
    done = run_hibayes(
        tmp_path,
        *(["-m"] if mode == "sweep" else []),
        uri,
        f"hydra.{mode}.dir=afile/out",
    )
    assert done.returncode == 1
    _one_line(
        done.stderr,
        f"error: hydra.{mode}.dir=afile/out: cannot create the output folder: "
        "Not a directory (afile/out)",
    )
    assert _check_store(tmp_path) == []
