"""Every option of every config group composes and turns into real objects."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

from hibayes.config import (
    ConfigError,
    checked_sections,
    data_settings,
    fit_settings,
    load_data,
    model_spec,
    thresholds,
)
from hibayes.errors import InputError
from hibayes.model import ModelError

CONF = Path(__file__).resolve().parents[2] / "hibayes" / "conf"


def options(group: str) -> list[str]:
    """The option names of one config group."""
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def composed(*overrides: str, hydra_cfg: bool = False):
    """Compose conf/config.yaml with overrides."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(
            "config", overrides=list(overrides), return_hydra_config=hydra_cfg
        )


@pytest.mark.parametrize("name", options("model"))
def test_every_model_config_composes_loads_its_data_and_binds(name):
    cfg = composed(f"model={name}", hydra_cfg=True)
    spec = model_spec(cfg.model, name)
    assert spec.name == name
    program = spec.factory(**spec.hyperparameters)
    data = load_data(cfg.data)
    program_features = data.features
    import numpyro

    with numpyro.handlers.seed(rng_seed=0):
        program(program_features)  # the model's default data has what it reads
    # The default prior sweep names a key the model really has.
    for key in cfg.hydra.sweeper.params:
        assert key.removeprefix("model.") in spec.hyperparameters


def test_model_configs_match_the_factories():
    script = Path(__file__).resolve().parents[2] / "scripts" / "make_model_configs.py"
    done = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name", options("fit"))
def test_every_fit_config_is_valid(name):
    settings = fit_settings(composed(f"fit={name}").fit)
    assert settings.samples > 0


@pytest.mark.parametrize("name", options("checks"))
def test_every_checks_config_is_valid(name):
    assert thresholds(composed(f"checks={name}").checks).rhat_max >= 1.0


@pytest.mark.parametrize(
    "name", [o for o in options("data") if o not in ("table", "inspect")]
)
def test_every_shipped_data_config_loads(name):
    data = load_data(composed(f"data={name}").data)
    assert len(data.features["obs"]) > 0


def test_table_data_config_reads_a_users_file(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text("grader,score\na,3\nb,7\na,10\n")
    cfg = composed(
        "data=table",
        f"data.path={path}",
        "data.observed=score",
        "data.categorical=[grader]",
        "model=ordered_logistic_model",
        "model.main_effects=[grader]",
    )
    data = load_data(cfg.data)
    assert data.features["num_grader"] == 2
    assert data.features["num_classes"] == 11


@pytest.mark.parametrize(
    "name", [o for o in options("data") if o not in ("table", "inspect")]
)
def test_every_shipped_data_config_passes_the_check_before_reading(name):
    data_settings(composed(f"data={name}").data)


# Data sections no table can satisfy: (overrides, what the one line says).
BAD_DATA = [
    (("data.n_total=n",), "n_total must not be given with aggregate=True"),
    (("data.standardize=[zz]",), "standardize names ['zz'] that are not continuous"),
    (("data.category_order={task: [a]}",), "category_order given for ['task']"),
    (("data.outcome=ordinal",), "outcome"),
    (("data.continuous=[x]",), "cannot be used with aggregate=True"),
    (("data.passthrough=[group]",), "more than one role"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_DATA)
def test_a_bad_data_section_is_refused_before_reading_as_after(overrides, message):
    cfg = composed(*overrides)
    with pytest.raises(ConfigError, match=re.escape(message)) as before:
        checked_sections(cfg, "two_level_group_binomial")
    assert len(str(before.value).splitlines()) == 1
    # The independent path: the same section refused when the table is read.
    with pytest.raises(InputError) as after:
        load_data(cfg.data, model_spec(cfg.model, "two_level_group_binomial"))
    assert str(before.value) == str(after.value)


def test_data_source_problems_are_one_line_each(tmp_path):
    with pytest.raises(ConfigError, match="missing.csv: file not found"):
        checked_sections(composed("data=table", "data.path=missing.csv"))
    with pytest.raises(ConfigError, match=r"data.path is not set"):
        checked_sections(composed("data=table"))
    both = composed("data=table", "data.path=missing.csv", "fit.samples=0")
    with pytest.raises(ConfigError, match="2 problems") as caught:
        checked_sections(both)
    assert caught.value.problems() == [
        f"missing.csv: file not found (data.path, resolved to {Path.cwd()}/missing.csv)",
        "fit.samples must be > 0, got 0",
    ]


@pytest.mark.parametrize("name", options("tracking"))
def test_every_tracking_config_composes(name):
    cfg = composed(f"tracking={name}")
    assert "uri" in cfg.tracking


def test_config_typo_is_refused_by_hydra():
    with pytest.raises(ConfigCompositionException, match="fit.sampels"):
        composed("fit.sampels=3")


def test_custom_model_keeps_only_its_own_keys(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text(
        "from hibayes.model import model\n"
        "@model\n"
        "def mine_for_config(prior_mu_loc: float = 0.0):\n"
        "    def program(features):\n"
        "        pass\n"
        "    return program\n"
    )
    cfg = composed(
        f"model.path={path}", "model.name=mine_for_config", "+model.prior_mu_loc=-1.0"
    )
    spec = model_spec(cfg.model, "two_level_group_binomial")
    assert spec.hyperparameters == {"prior_mu_loc": -1.0}
    assert "prior_sigma_group_scale" in spec.dropped
    cfg = composed(
        f"model.path={path}", "model.name=mine_for_config", "+model.prior_mu_lco=1"
    )
    with pytest.raises(ModelError, match="did you mean 'prior_mu_loc'"):
        model_spec(cfg.model, "two_level_group_binomial")
