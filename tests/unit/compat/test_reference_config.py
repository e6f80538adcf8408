"""Reference-format hibayes.yaml files: parsing, job overrides, and real sweeps of them."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from hibayes.compat.reference_config import (
    CHECKER_THRESHOLDS,
    ModelEntry,
    ReferenceConfigError,
    job_overrides,
    parse_reference_config,
    read_reference_config,
    reference_tags,
    render_value,
    validate_reference_config,
)
from hibayes.config import fit_settings, model_spec, thresholds
from hibayes.diagnostics import Thresholds
from hibayes.model import ModelError

ROOT = Path(__file__).resolve().parents[3]
CONF = ROOT / "hibayes" / "conf"
BUILTINS = {p.stem for p in (CONF / "model").glob("*.yaml")}

# The issue's example, with fits short enough for a test.
ISSUE_EXAMPLE = """\
model:
  path: my_models.py
  models:
    - name: simplified_group_binomial_exponential
      config:
        tag: "exponential_prior"
    - name: two_level_group_binomial
      config:
        tag: "halfnormal_prior"
        fit: {samples: 100, warmup: 100, chains: 2}
        prior_mu_overall_loc: 0.5
        prior_mu_overall_scale: 1.0
"""

CUSTOM_MODELS = """
from hibayes.model import Model, model
from hibayes.model.models import check_features
import numpyro, numpyro.distributions as dist, jax

@model
def my_reference_model(prior_mu_loc: float = 0.0, prior_mu_scale: float = 1.0) -> Model:
    def program(features):
        check_features(features, ["obs", "num_group", "group_index", "n_total"])
        mu = numpyro.sample("overall_mean", dist.Normal(prior_mu_loc, prior_mu_scale))
        sigma = numpyro.sample("sigma_group", dist.HalfNormal(0.5))
        z = numpyro.sample("z_group", dist.Normal(0, 1).expand([features["num_group"]]))
        effects = numpyro.deterministic("group_effects", mu + sigma * z)
        numpyro.sample("obs", dist.Binomial(total_count=features["n_total"],
                       logits=effects[features["group_index"]]), obs=features["obs"])
    return program
"""


def write_example(
    tmp_path: Path, text: str = ISSUE_EXAMPLE, name: str = "hibayes.yaml"
) -> Path:
    """The yaml file and the custom model file beside it."""
    (tmp_path / "my_models.py").write_text(CUSTOM_MODELS)
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def parse(text: str) -> object:
    return parse_reference_config(
        yaml.safe_load(textwrap.dedent(text)), source="test.yaml"
    )


# --- parsing -----------------------------------------------------------------


def test_issue_example_parses(tmp_path):
    ref = read_reference_config(write_example(tmp_path))
    assert ref.paths == (str(tmp_path / "my_models.py"),)
    assert ref.entries == (
        ModelEntry("simplified_group_binomial_exponential", "exponential_prior"),
        ModelEntry(
            "two_level_group_binomial",
            "halfnormal_prior",
            {"samples": 100, "warmup": 100, "chains": 2},
            {"prior_mu_overall_loc": 0.5, "prior_mu_overall_scale": 1.0},
        ),
    )
    assert ref.ignored == () and ref.settings == {}
    jobs = job_overrides(ref, BUILTINS)
    path = f"model.path='{tmp_path / 'my_models.py'}'"
    assert jobs == [
        [
            "model=simplified_group_binomial_exponential",
            path,
            "model.tag='exponential_prior'",
        ],
        [
            "model=two_level_group_binomial",
            path,
            "model.tag='halfnormal_prior'",
            "fit.samples=100",
            "fit.warmup=100",
            "fit.chains=2",
            "model.prior_mu_overall_loc=0.5",
            "model.prior_mu_overall_scale=1.0",
        ],
    ]


def test_each_accepted_form_gives_the_same_jobs():
    names = ["two_level_group_binomial", "simplified_group_binomial_exponential"]
    bare = [
        {"models": names},
        {"models": [{"name": n} for n in names]},
        {"models": [{"name": n, "config": None} for n in names]},
        {"models": {n: None for n in names}},
        {"models": {n: {} for n in names}},
    ]
    expected = [[f"model={n}"] for n in names]
    for section in bare:
        assert (
            job_overrides(parse_reference_config({"model": section}), BUILTINS)
            == expected
        )
    configs = {
        names[0]: {"tag": "a", "prior_sigma_group_scale": 0.3, "fit": {"seed": 2}},
        names[1]: {"tag": "b", "prior_sigma_group_rate": 2.0},
    }
    full = [
        {"models": [{"name": n, "config": c} for n, c in configs.items()]},
        {"models": configs},
    ]
    jobs = [job_overrides(parse_reference_config({"model": s}), BUILTINS) for s in full]
    assert (
        jobs[0]
        == jobs[1]
        == [
            [
                f"model={names[0]}",
                "model.tag='a'",
                "fit.seed=2",
                "model.prior_sigma_group_scale=0.3",
            ],
            [f"model={names[1]}", "model.tag='b'", "model.prior_sigma_group_rate=2.0"],
        ]
    )


def test_no_models_means_the_reference_default():
    ref = parse_reference_config({"model": {}})
    assert [e.name for e in ref.entries] == ["two_level_group_binomial"]
    assert any("none listed" in line for line in ref.ignored)


def test_extra_kwargs_are_prior_arguments_and_plot_keys_are_not():
    ref = parse("""
        model:
          models:
            - name: linear_group_binomial
              config:
                extra_kwargs: {prior_intercept_scale: 2.0}
                main_effects: [model, task]
                main_effect_params: [model_effects]
                link_function: logit
    """)
    assert ref.entries[0].hyperparameters == {
        "prior_intercept_scale": 2.0,
        "main_effects": ["model", "task"],
    }
    assert sum("plotting setting" in line for line in ref.ignored) == 2


@pytest.mark.parametrize(
    "text, match",
    [
        ("model: {models: [{name: x, tag: y}]}", "beside 'name' and 'config'"),
        ("model: {models: [{x: {tag: y}}]}", "expected a model name"),
        ("model: {models: 3}", "a list of names"),
        ("model: {models: {x: 3}}", "config must be a mapping"),
        (
            "model: {models: [{name: a, config: {tag: t}}, {name: a, config: {tag: t}}]}",
            "distinct tag",
        ),
        ("model: {path: nowhere/missing.py, models: [a]}", "not found"),
        ("[1, 2]", "mapping of sections"),
        ("check: {checkers: [{r_hat: 1.01}]}", "arguments must be a mapping"),
        ("check: {checkers: [{r_hat: {threshold: high}}]}", "must be a number"),
        ("platform: {chain_method: sideways}", "is not one of"),
    ],
)
def test_malformed_files_are_refused_naming_the_key(text, match):
    with pytest.raises(ReferenceConfigError, match=match):
        parse(text)


def test_model_path_may_be_a_list_and_is_found_beside_the_file(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.py").write_text("")
    (tmp_path / "a.py").write_text("")
    path = tmp_path / "h.yaml"
    path.write_text("model: {path: [a.py, sub/b.py, some.module], models: [x]}")
    ref = read_reference_config(path)
    assert ref.paths == (
        str(tmp_path / "a.py"),
        str(tmp_path / "sub" / "b.py"),
        "some.module",
    )
    (job,) = job_overrides(ref, BUILTINS)
    assert (
        job[1]
        == f"model.path=['{tmp_path / 'a.py'}','{tmp_path / 'sub' / 'b.py'}','some.module']"
    )


def test_missing_file_and_bad_yaml_are_refused(tmp_path):
    with pytest.raises(ReferenceConfigError, match="models_file not found"):
        read_reference_config(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("model: [unclosed")
    with pytest.raises(ReferenceConfigError, match="not valid YAML"):
        read_reference_config(tmp_path / "bad.yaml")


# --- fit, platform, check, ignored sections ---------------------------------


def test_fit_keys_map_onto_our_settings():
    ref = parse("""
        model:
          models:
            two_level_group_binomial:
              fit: {method: NUTS, samples: 300, warmup: 200, chains: 3, seed: 7,
                    target_accept: 0.9, max_tree_depth: 8, chain_method: vectorised,
                    progress_bar: false, dense_mass: true}
    """)
    assert ref.entries[0].fit == {
        "samples": 300,
        "warmup": 200,
        "chains": 3,
        "seed": 7,
        "target_accept": 0.9,
        "max_tree_depth": 8,
        "chain_method": "vectorized",
        "dense_mass": True,
    }
    assert any("fit.progress_bar: not used" in line for line in ref.ignored)


@pytest.mark.parametrize(
    "fit, match",
    [
        (
            "{sampels: 10}",
            "unknown fit setting 'sampels' \\(did you mean 'samples'\\?\\)",
        ),
        ("{method: HMC}", "only NUTS"),
        ("{samples: 0}", "fit.samples must be > 0"),
        ("{chain_method: sideways}", "fit.chain_method must be one of"),
    ],
)
def test_bad_fit_settings_are_refused(fit, match):
    with pytest.raises(ReferenceConfigError, match=match):
        parse(f"model: {{models: {{two_level_group_binomial: {{fit: {fit}}}}}}}")


def test_other_sections_are_reported_or_honoured():
    ref = parse("""
        data_loader: {paths: {files_to_process: [data/]}}
        data_process: {processors: [groupby]}
        communicate: {communicators: [forest_plot]}
        platform: {chain_method: sequential, device_type: gpu}
        check:
          checkers:
            - prior_predictive_plot: {interactive: false}
            - r_hat: {threshold: 1.05}
            - ess_bulk: {threshold: 1000}
            - ess_tail
            - divergences: {threshold: 2}
            - bfmi: {threshold: 0.2}
            - loo
        model: {models: [two_level_group_binomial]}
        extra_section: 1
    """)
    assert ref.settings == {
        "fit.chain_method": "sequential",
        "checks.rhat_max": 1.05,
        "checks.ess_bulk_min": 1000,
        "checks.divergences_max": 2,
        "checks.ebfmi_min": 0.2,
    }
    text = "\n".join(ref.ignored)
    for word in (
        "data_loader",
        "data_process",
        "communicate",
        "platform.device_type",
        "check ess_tail: no threshold",
        "prior_predictive_plot, loo",
        "extra_section",
    ):
        assert word in text, word
    (job,) = job_overrides(ref, BUILTINS)
    assert job == [
        "model=two_level_group_binomial",
        "fit.chain_method='sequential'",
        "checks.rhat_max=1.05",
        "checks.ess_bulk_min=1000",
        "checks.divergences_max=2",
        "checks.ebfmi_min=0.2",
    ]
    tags = reference_tags(ref)
    assert tags["hibayes.models_file"] == "test.yaml"
    assert "data_loader" in tags["hibayes.models_file_ignored"]


def test_checker_thresholds_as_a_bare_mapping():
    ref = parse("""
        check: {r_hat: {threshold: 1.02}, ess_tail: {threshold: 200}}
        model: {models: [two_level_group_binomial]}
    """)
    assert ref.settings == {"checks.rhat_max": 1.02, "checks.ess_tail_min": 200}


def test_checker_thresholds_name_our_threshold_fields():
    assert set(CHECKER_THRESHOLDS.values()) <= set(Thresholds.__dataclass_fields__)


# --- prior keys checked before sampling --------------------------------------


def test_misspelt_prior_key_is_refused_with_a_suggestion():
    ref = parse("""
        model:
          models:
            - name: two_level_group_binomial
              config: {prior_mu_overal_loc: 0.5}
    """)
    with pytest.raises(
        ModelError,
        match=r"model.models\[0\].*did you mean "
        r"'prior_mu_overall_loc'.*it accepts: prior_mu_overall_loc",
    ):
        validate_reference_config(ref)


def test_unknown_model_is_refused():
    ref = parse("model: {models: [two_level_group_binomal]}")
    with pytest.raises(ModelError, match="Did you mean 'two_level_group_binomial'"):
        validate_reference_config(ref)


# --- values as Hydra overrides -----------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "exponential_prior",
        "1.0",
        "null",
        "true",
        "a,b",
        "x y",
        "it's",
        "back\\",
        "q\\'s",
        "",
        "[a]",
        "{k: v}",
        "=:()",
        0,
        -3,
        0.5,
        -1e-05,
        1e16,
        True,
        False,
        None,
        ["grader", "LLM"],
        [["grader", "LLM"]],
        [1, "b", None],
        {"a": 1, "b": [2, "c"]},
    ],
)
def test_values_render_as_overrides_that_read_back_unchanged(value):
    override = OverridesParser.create().parse_override(f"model.x={render_value(value)}")
    assert not override.is_sweep_override()
    assert override.value() == value
    # and through OmegaConf, as the job's config will hold it
    assert (
        OmegaConf.to_container(OmegaConf.create({"x": override.value()}))["x"] == value
    )


def test_special_floats_and_interpolation_syntax_stay_literal():
    parser = OverridesParser.create()
    assert math.isnan(parser.parse_override(f"a={render_value(float('nan'))}").value())
    assert parser.parse_override(f"a={render_value(float('-inf'))}").value() == float(
        "-inf"
    )
    value = parser.parse_override(f"a={render_value('${oops}')}").value()
    assert (
        OmegaConf.to_container(OmegaConf.create({"a": value}), resolve=True)["a"]
        == "${oops}"
    )


def test_unrenderable_values_are_refused():
    with pytest.raises(ReferenceConfigError, match="keys must be identifiers"):
        render_value({"a b": 1})
    with pytest.raises(ReferenceConfigError, match="cannot be passed"):
        render_value(object())


# --- the jobs compose to the configs the fits need (no sampling) ------------


def test_jobs_compose_to_the_right_model_fit_and_checks(tmp_path):
    path = write_example(
        tmp_path,
        """\
        model:
          path: my_models.py
          models:
            two_level_group_binomial:
              tag: halfnormal_prior
              fit: {samples: 100}
              prior_mu_overall_loc: 0.5
            my_reference_model:
              tag: custom
              prior_mu_loc: -1.0
        platform: {chain_method: sequential}
        check: {checkers: [{r_hat: {threshold: 1.05}}]}
    """,
    )
    ref = read_reference_config(path)
    validate_reference_config(ref)
    jobs = job_overrides(ref, BUILTINS)
    assert jobs[1][0] == "model.name='my_reference_model'"
    assert "++model.prior_mu_loc=-1.0" in jobs[1]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        builtin = compose("config", overrides=jobs[0])
        custom = compose("config", overrides=jobs[1])
    spec = model_spec(builtin.model, "two_level_group_binomial")
    assert (spec.name, spec.tag) == ("two_level_group_binomial", "halfnormal_prior")
    assert spec.hyperparameters["prior_mu_overall_loc"] == 0.5
    assert fit_settings(builtin.fit).samples == 100
    assert fit_settings(builtin.fit).chain_method == "sequential"
    assert thresholds(builtin.checks).rhat_max == 1.05
    spec = model_spec(custom.model, "two_level_group_binomial")
    assert (spec.name, spec.tag) == ("my_reference_model", "custom")
    assert spec.hyperparameters == {"prior_mu_loc": -1.0}
    assert fit_settings(custom.fit).samples == 2000  # conf/fit's default


# --- end to end: real CLI, real MLflow ---------------------------------------


def run_fit(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m hibayes.fit`` in ``workdir`` with its own SQLite store."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{workdir}/mlflow.db"}
    return subprocess.run(
        [sys.executable, "-m", "hibayes.fit", *args],
        cwd=workdir,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )


def all_runs(workdir: Path) -> list:
    """Every run of the hibayes experiment in the test's store."""
    if not (workdir / "mlflow.db").exists():
        return []
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{workdir}/mlflow.db")
    exp = client.get_experiment_by_name("hibayes")
    return client.search_runs([exp.experiment_id], max_results=100) if exp else []


@pytest.mark.slow
def test_issue_example_runs_as_a_sweep_of_two_children(tmp_path):
    write_example(
        tmp_path,
        ISSUE_EXAMPLE
        + textwrap.dedent("""\
        data_loader: {paths: {files_to_process: [../data/]}}
        platform: {chain_method: parallel}
        check:
          checkers:
            - r_hat: {threshold: 1.05}
            - loo
    """),
    )
    done = run_fit(
        tmp_path, "models_file=hibayes.yaml", "fit=quick", "fit.prior_samples=0", "-m"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    log = done.stdout + done.stderr
    assert log.count("data_loader: not used") == 1  # reported once, by the sweeper
    runs = all_runs(tmp_path)
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = {
        r.info.run_name: r
        for r in runs
        if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    }
    assert sorted(children) == [
        "simplified_group_binomial_exponential [exponential_prior]",
        "two_level_group_binomial [halfnormal_prior]",
    ]
    first = children["simplified_group_binomial_exponential [exponential_prior]"].data
    second = children["two_level_group_binomial [halfnormal_prior]"].data
    assert first.tags["hibayes.tag"] == "exponential_prior"
    assert second.tags["hibayes.tag"] == "halfnormal_prior"
    # fit: the entry's settings over conf/fit (fit=quick: 200 draws, 200 warmup)
    assert (first.params["fit.samples"], first.params["fit.warmup"]) == ("200", "200")
    assert (
        second.params["fit.samples"],
        second.params["fit.warmup"],
        second.params["fit.chains"],
    ) == ("100", "100", "2")
    # priors: the entry's, the model's defaults elsewhere
    assert second.params["model.prior_mu_overall_loc"] == "0.5"
    assert second.params["model.prior_sigma_group_scale"] == "0.1"
    assert first.params["model.prior_sigma_group_rate"] == "1.0"
    for data in (first, second):
        assert data.params["checks.rhat_max"] == "1.05"
        assert data.params["fit.chain_method"] == "parallel"
        assert data.params["model.path"] == str(tmp_path / "my_models.py")
    assert all(r.info.status == "FINISHED" for r in runs)
    assert parent.data.tags["hibayes.models_file"] == str(tmp_path / "hibayes.yaml")
    assert "data_loader" in parent.data.tags["hibayes.models_file_ignored"]
    assert parent.data.metrics["jobs_finished"] == 2.0
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    files = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert (
        "comparison.csv" in files
    )  # the parent compares the children as for any sweep


@pytest.mark.slow
def test_custom_model_entry_runs_with_its_priors(tmp_path):
    write_example(
        tmp_path,
        """\
        model:
          path: my_models.py
          models:
            my_reference_model: {tag: custom, prior_mu_loc: -1.0,
                                 fit: {samples: 100, warmup: 100, chains: 2}}
    """,
    )
    done = run_fit(tmp_path, "models_file=hibayes.yaml", "fit.prior_samples=0", "-m")
    assert done.returncode == 0, done.stderr[-3000:]
    (child,) = [r for r in all_runs(tmp_path) if "mlflow.parentRunId" in r.data.tags]
    assert child.info.status == "FINISHED"
    assert child.info.run_name == "my_reference_model [custom]"
    assert child.data.tags["hibayes.model"] == "my_reference_model"
    assert child.data.params["model.prior_mu_loc"] == "-1.0"
    assert child.data.params["fit.samples"] == "100"


@pytest.mark.slow
def test_misspelt_prior_key_is_refused_before_any_run(tmp_path):
    write_example(
        tmp_path,
        ISSUE_EXAMPLE.replace("prior_mu_overall_scale", "prior_mu_overal_scale"),
    )
    done = run_fit(tmp_path, "models_file=hibayes.yaml", "-m")
    assert done.returncode != 0
    assert "did you mean 'prior_mu_overall_scale'" in done.stderr
    assert "it accepts: prior_mu_overall_loc, prior_mu_overall_scale" in done.stderr
    assert all_runs(tmp_path) == []  # no parent, no child: nothing sampled


@pytest.mark.slow
@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "model: [unclosed\n",
            "hibayes.yaml: not valid YAML: expected ',' or ']', but got '<stream end>' "
            "at line 2, column 1",
        ),
        (
            "model: {models: [no_such_model]}\n",
            "hibayes.yaml: model.models[0] (no_such_model): unknown model "
            "'no_such_model'",
        ),
    ],
    ids=["not_yaml", "unknown_model"],
)
def test_models_file_problems_are_one_line(tmp_path, text, message):
    write_example(tmp_path, text)
    done = run_fit(tmp_path, "models_file=hibayes.yaml", "tracking=none", "-m")
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and message in line, done.stderr
    assert not (tmp_path / "multirun").exists() or not list(
        (tmp_path / "multirun").rglob("idata.nc")
    )


@pytest.mark.slow
def test_models_file_without_multirun_is_refused(tmp_path):
    write_example(tmp_path)
    done = run_fit(tmp_path, "models_file=hibayes.yaml", "tracking=none")
    assert done.returncode != 0
    assert "add -m" in done.stderr
    assert not (tmp_path / "outputs").exists() or not list(
        (tmp_path / "outputs").rglob("idata.nc")
    )


@pytest.mark.slow
def test_tag_names_an_ordinary_run(tmp_path):
    done = run_fit(
        tmp_path,
        "model.tag=baseline",
        "fit.samples=100",
        "fit.warmup=100",
        "fit.chains=2",
        "fit.prior_samples=0",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = all_runs(tmp_path)
    assert run.info.run_name.startswith("two_level_group_binomial [baseline] ")
    assert run.data.tags["hibayes.tag"] == "baseline"
    assert run.data.params["model.tag"] == "baseline"


@pytest.mark.slow
def test_a_command_line_sweep_runs_for_every_model(tmp_path):
    write_example(
        tmp_path,
        "model: {models: [two_level_group_binomial, "
        "simplified_group_binomial_exponential]}\n",
    )
    # A table with a negative count fails every job when it reads its data, before
    # sampling: only the job list matters here.
    (tmp_path / "bad.csv").write_text("model,score,n\na,3,10\nb,-1,10\n")
    done = run_fit(
        tmp_path,
        "models_file=hibayes.yaml",
        "fit.seed=0,1",
        "data.path=bad.csv",
        "data.n_total=n",
        "data.aggregate=false",
        "tracking=none",
        "-m",
    )
    log = done.stdout + done.stderr
    assert "Launching 4 jobs" in log
    for model in ("two_level_group_binomial", "simplified_group_binomial_exponential"):
        for seed in (0, 1):
            assert f"model={model} models_file=hibayes.yaml fit.seed={seed}" in log
    assert "4 of 4 fits failed" in log
    assert "bad.csv" in log and "negative" in log
