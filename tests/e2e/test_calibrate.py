"""`hibayes.calibrate`: a miscoded model fails, built-in models pass, the run is complete."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.miscoded_model import miscoded_group_binomial  # noqa: F401 - registers it
from helpers.mlflow_store import all_runs, artifact_paths, run_module, store_uri
from hydra import compose, initialize_config_dir

from hibayes.calibrate import calibrate

CONF = Path(__file__).resolve().parents[2] / "hibayes" / "conf"
# Small and quick: 2 chains x (300 + 300), ranks among 49 thinned draws. With 30-40
# simulations a few divergent fits are more than 10%, so these tests judge the ranks
# alone (calibrate.max_unusable=1); unusable and unconverged fits are still counted.
SMALL = [
    "fit.chains=2",
    "fit.warmup=300",
    "fit.samples=300",
    "calibrate.rank_draws=49",
    "calibrate.max_unusable=1",
]


def composed(*overrides: str):
    """The calibrate config with these overrides (no Hydra run directory)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("calibrate", overrides=list(overrides))


def test_miscoded_model_fails_calibration(tmp_path):
    """Simulated with the group levels reversed, fitted with the right coding: the
    group effects' ranks are far from uniform, and the run says so."""
    cfg = composed(
        "model.name=miscoded_group_binomial",
        "model.prior_sigma_group_scale=1.0",
        "calibrate.simulations=40",
        "calibrate.batch=20",
        f"tracking.uri={store_uri(tmp_path)}",
        *SMALL,
    )
    outcome = calibrate(cfg, tmp_path / "out", "two_level_group_binomial")
    assert outcome.status == "FINISHED"
    assert outcome.verdict.startswith("fail: ")
    assert "group_effects[" in outcome.verdict
    (run,) = all_runs(tmp_path)
    assert run.data.tags["hibayes.calibration"] == outcome.verdict
    assert (
        min(
            v
            for k, v in run.data.metrics.items()
            if k.startswith("sbc_p/group_effects")
        )
        < 0.05 / 17
    )
    assert run.data.metrics["sampler_compiles"] == 1.0
    # Failed convergence checks are counted and named, not dropped.
    assert run.data.tags["hibayes.calibration_unconverged"].endswith(" of 40")
    assert {
        "ranks.csv",
        "calibration.csv",
        "fits.csv",
        "calibration.png",
        "report.html",
    } <= artifact_paths(tmp_path, run.info.run_id)


@pytest.mark.slow
def test_calibrate_command_passes_for_the_default_model(tmp_path):
    """`python -m hibayes.calibrate` as a user runs it: two_level_group_binomial on the
    shipped example's shape is calibrated; everything is on one FINISHED run."""
    import pandas as pd

    done = run_module(
        "hibayes.calibrate",
        tmp_path,
        "calibrate.simulations=40",
        "calibrate.batch=20",
        *SMALL,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = all_runs(tmp_path)
    assert run.info.status == "FINISHED"
    assert run.data.tags["hibayes.calibration"] == "pass"
    assert run.data.metrics["simulations"] == 40
    assert 0 <= run.data.metrics["converged_fraction"] <= 1
    out = Path(run.data.tags["hibayes.output_dir"])
    ranks = pd.read_csv(out / "ranks.csv")
    assert ranks["simulation"].nunique() == 40
    assert set(ranks["rank"].unique()) <= set(range(50))
    quantities = pd.read_csv(out / "calibration.csv")
    assert {"sigma_group", "overall_mean", "group_effects[model-a]"} <= set(
        quantities["parameter"]
    )
    # A calibrated model covers about nominally (40 simulations: +-3 binomial sd).
    assert quantities["coverage_94"].mean() > 0.94 - 3 * (0.94 * 0.06 / 40) ** 0.5
    assert "Verdict" in (out / "report.html").read_text()


# The built-in models on their shipped example's shape, 30 simulations each. The
# three-level models need 2 x (500 + 500): at 2 x (300 + 300) up to 4 of 30 of the
# exponential model's fits have a bulk ESS below the 49 draws ranked. They are held to
# the default max_unusable (10%): at fit's default target_accept (0.95) more than half
# of the exponential model's fits diverge, at its config's 0.995 at most 1 of 30 did
# (seeds 0, 1, 2), so this fails if that setting is lost. Their seed is 2:
# with seed 0 the HalfNormal model's first 30 simulated data sets give one of its 154
# quantities (z_subgroup[provider-c, medium]) p = 0.0000, and the same data sets give
# the same low ranks at full length (4 x (500 + 500)), where 100 simulations pass: a
# false alarm of the family-wise 5% test, not of the short chains. Seeds 1 and 2 pass
# for both three-level models. The ordinal model (600 rows of 11 classes, 45
# quantities) needs nothing more: at 2 x (300 + 300), seeds 0, 1 and 2 passed with
# no divergent fit, every fit usable (bulk ESS at least 448, against 49 draws ranked)
# and smallest p 0.084, 0.24 and 0.033 (level 0.05 / 45 = 0.0011), 45-75 s each on a
# shared machine. All six are calibrated at full length in the README's table.
THREE_LEVEL = [
    "fit.warmup=500",
    "fit.samples=500",
    "calibrate.seed=2",
    "calibrate.max_unusable=0.1",
]
BUILT_IN = {
    "two_level_group_binomial": [],
    "simplified_group_binomial_exponential": [],
    "linear_group_binomial": [],
    "ordered_logistic_model": [],
    "three_level_group_binomial": THREE_LEVEL,
    "three_level_group_binomial_exponential": THREE_LEVEL,
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(BUILT_IN))
def test_built_in_models_are_calibrated_at_default_priors(name, tmp_path):
    """A built-in model on its shipped example's shape passes with 30 simulations."""
    settings = dict(o.split("=", 1) for o in SMALL + BUILT_IN[name])
    cfg = composed(
        f"model={name}",
        "calibrate.simulations=30",
        "calibrate.batch=30",
        "tracking=none",
        *(f"{k}={v}" for k, v in settings.items()),
    )
    outcome = calibrate(cfg, tmp_path, name)
    assert outcome.status == "FINISHED"
    assert outcome.verdict == "pass", outcome.verdict
