"""Bad input through the real CLI: a clear error before any sampling, nothing half-written.

Each case runs `python -m hibayes.fit` and checks: a non-zero exit, a one-line error
that names the file, column, key or value at fault, no sampling started, no idata.nc.
One case per layer (data, model, sampler settings, config) also tracks to a SQLite
store shared by the module (one experiment per case) and checks that no FINISHED run
was recorded; the others use tracking=none, which saves MLflow's import time. The
README's troubleshooting table lists the same cases.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from helpers.server import all_runs, run_hibayes

pytestmark = pytest.mark.slow

TABLE = (
    "data=table",
    "data.observed=obs",
    "data.n_total=n",
    "data.categorical=[group]",
)
NO_OBS_MODEL = textwrap.dedent("""
    import numpyro, numpyro.distributions as dist
    from hibayes.model import Model, model

    @model
    def no_obs_model(prior_scale: float = 1.0) -> Model:
        def program(features):
            numpyro.sample("x", dist.Normal(0.0, prior_scale))
        return program
""")
FILES = {
    "ok.csv": "group,obs,n\na,3,10\nb,4,10\n",
    "nan.csv": "group,obs,n\na,3,10\nb,,10\n",
    "text.csv": "group,obs,n\na,3,10\nb,three,10\n",
    "over.csv": "group,obs,n\na,3,10\nb,12,10\n",
    "negative.csv": "group,obs,n\na,3,10\nb,-1,10\n",
    "grades.csv": "group,score\na,0\nb,5\n",
    "broken.parquet": "this is not parquet",
    "syntax_error.py": "def broken(:\n",
    "no_obs.py": NO_OBS_MODEL,
    "empty_trials.csv": "group,obs,n\na,3,10\nb,0,0\n",
    "huge.csv": "group,obs,n\na,3,10\nb,5,20000000\n",
    "duplicate.csv": "group,obs,n,group\na,3,10,b\n",
    "nested.jsonl": '{"group": "a", "obs": 3, "n": 10}\n{"group": "b", "obs": 1, "n": [10]}\n',
    "gap.csv": "group,obs,n\na,3,10\n,4,10\n",
}

# (id, overrides, what the error must say)
CASES = [
    ("missing_file", (*TABLE, "data.path=missing.csv"), "missing.csv: file not found"),
    (
        "unreadable_file",
        (*TABLE, "data.path=broken.parquet"),
        "broken.parquet: cannot read as parquet",
    ),
    ("directory_not_file", (*TABLE, "data.path=plots"), "is a directory"),
    (
        "missing_column",
        (*TABLE, "data.path=ok.csv", "data.observed=successes"),
        "missing column(s) ['successes']",
    ),
    (
        "nan_count",
        (*TABLE, "data.path=nan.csv"),
        "column 'obs': missing value in observed column; e.g. data row 1",
    ),
    (
        "non_numeric_count",
        (*TABLE, "data.path=text.csv"),
        (
            "column 'obs': non-numeric value in observed column; e.g. data row 1 (0-based) has "
            "value 'three'"
        ),
    ),
    (
        "obs_over_n_total",
        (*TABLE, "data.path=over.csv"),
        "column 'obs': observed exceeds 'n'",
    ),
    (
        "negative_count",
        (*TABLE, "data.path=negative.csv"),
        "column 'obs': negative value in observed column",
    ),
    (
        "ordinal_class_out_of_range",
        (
            "model=ordered_logistic_model",
            "data=table",
            "data.path=grades.csv",
            "data.observed=score",
            "data.categorical=[group]",
            "model.num_classes=3",
        ),
        "ordinal class outside the allowed range 0..2",
    ),
    (
        "empty_after_filter",
        (*TABLE, "data.path=ok.csv", "+data.filters.group=[zzz]"),
        "filters left no rows",
    ),
    (
        "zero_trials",
        (*TABLE, "data.path=empty_trials.csv"),
        "column 'n': row with no trials (n = 0), which carries no information",
    ),
    (
        "count_beyond_float32",
        (*TABLE, "data.path=huge.csv"),
        "column 'n': count beyond 16777216, the largest whole number float32",
    ),
    (
        "duplicate_column",
        (*TABLE, "data.path=duplicate.csv"),
        "duplicate.csv: column 'group': appears twice in the header (columns 1 and 4)",
    ),
    (
        "nested_value",
        (*TABLE, "data.path=nested.jsonl"),
        "nested.jsonl: column 'n': nested value (a list) in data row 1 (0-based)",
    ),
    (
        "empty_category_cell",
        (*TABLE, "data.path=gap.csv"),
        "column 'group': missing value in categorical column; e.g. data row 1 (0-based) "
        "has an empty cell",
    ),
    (
        "outcome_the_model_does_not_model",
        (*TABLE, "data.path=ok.csv", "data.outcome=continuous"),
        "data.outcome=continuous, but model 'two_level_group_binomial' models count",
    ),
    ("unknown_model", ("model.name=nope_model",), "unknown model 'nope_model'"),
    (
        "model_file_missing",
        ("model.path=missing_models.py", "model.name=mine"),
        "custom model file not found: missing_models.py",
    ),
    (
        "model_file_syntax_error",
        ("model.path=syntax_error.py", "model.name=mine"),
        "syntax_error.py has a syntax error at line 1",
    ),
    (
        "model_without_obs",
        ("model.path=no_obs.py", "model.name=no_obs_model"),
        "never samples a site named 'obs'",
    ),
    (
        "negative_prior_scale",
        ("model.prior_mu_overall_scale=-1",),
        "must be > 0: prior_mu_overall_scale=-1",
    ),
    (
        "zero_prior_scale",
        ("model.prior_sigma_group_scale=0",),
        "must be > 0: prior_sigma_group_scale=0",
    ),
    (
        "text_prior_value",
        ("model.prior_sigma_group_scale=abc",),
        "prior_sigma_group_scale must be a number (its default is 0.1), got 'abc'",
    ),
    ("zero_samples", ("fit.samples=0",), "fit.samples must be > 0, got 0"),
    ("negative_chains", ("fit.chains=-2",), "fit.chains must be > 0, got -2"),
    ("zero_chains", ("fit.chains=0",), "fit.chains must be > 0, got 0"),
    ("unknown_config_key", ("fit.sampels=10",), "Key 'sampels' is not in struct"),
    (
        "unknown_model_key",
        ("+model.prior_typo=1",),
        "model 'two_level_group_binomial' does not take 'prior_typo'",
    ),
]


# Cases that also track to SQLite: one per layer.
TRACKED = {
    "missing_column",
    "obs_over_n_total",
    "model_without_obs",
    "negative_prior_scale",
    "zero_samples",
    "unknown_config_key",
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """The input files of every case, and one SQLite store for all of them."""
    root = tmp_path_factory.mktemp("bad-input")
    for name, text in FILES.items():
        (root / name).write_text(text)
    (root / "plots").mkdir()
    return root


@pytest.mark.parametrize(
    ("overrides", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_is_refused_before_sampling(workdir, request, overrides, message):
    case = request.node.callspec.id
    db = workdir / "mlflow.db"
    tracking = (
        (f"tracking.uri=sqlite:///{db}", f"tracking.experiment={case}")
        if case in TRACKED
        else ("tracking=none",)
    )
    done = run_hibayes(
        workdir, "fit=quick", *tracking, f"hydra.run.dir=runs/{case}", *overrides
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert message in done.stderr, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "compiling the sampler" not in output
    assert not list((workdir / "runs").rglob("idata.nc"))
    if case in TRACKED and db.exists():
        from mlflow import MlflowClient

        statuses = {
            r.info.status for r in all_runs(MlflowClient(f"sqlite:///{db}"), case)
        }
        assert statuses <= {"FAILED"}
        if statuses:  # a run was opened: its failure and traceback are recorded on disk
            assert (workdir / "runs" / case / "traceback.txt").exists()


def test_a_store_that_is_not_a_database_is_refused_before_any_work(workdir):
    (workdir / "notes.db").write_text("these are my notes, not an MLflow store\n")
    done = run_hibayes(
        workdir,
        "fit=quick",
        "tracking.uri=sqlite:///notes.db",
        "hydra.run.dir=runs/not_a_database",
    )
    assert done.returncode != 0
    assert "cannot open the database" in done.stderr and "notes.db" in done.stderr
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "compiling the sampler" not in done.stdout + done.stderr
    assert not (workdir / "runs" / "not_a_database" / "config.yaml").exists()
    assert (workdir / "notes.db").read_text().startswith("these are my notes")
