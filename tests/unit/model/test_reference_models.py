"""Model files written for the reference tool (UK AISI's hibayes) run unchanged.

The model file below is written in the reference tool's style: its imports
(``hibayes.model``, ``hibayes.model.utils``, ``hibayes.process``), a bare
``@model``, ``check_features``, and a cat x cat interaction through
``create_interaction_effects``. It runs through ``model.path`` and through a
``models_file`` with two tagged variants, end to end through the real CLI.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import arviz as az
import numpy as np
import numpyro.distributions as dist
import pandas as pd
import pytest
from helpers.server import all_runs, run_hibayes
from numpyro.handlers import seed, substitute, trace
from scipy.special import expit
from scipy.stats import norm

REFERENCE_STYLE_MODELS = '''
from typing import List, Optional, Tuple

import jax.numpy as jnp
import numpyro
from numpyro import distributions as dist

from hibayes.model import Model, check_features, model
from hibayes.model.utils import create_interaction_effects
from hibayes.process import Features


@model
def hierarchical_logistic_model(
    main_effects: Optional[List[str]] = None,
    continuous_effects: Optional[List[str]] = None,
    interactions: Optional[List[Tuple[str, str]]] = None,
    prior_intercept_loc: float = 0.0,
    prior_intercept_scale: float = 1.0,
    prior_main_effects_scale: float = 1.0,
    prior_grader_sigma_scale: float = 1.0,
    prior_slope_scale: float = 1.0,
    prior_interaction_scale: float = 0.5,
) -> Model:
    """Bernoulli outcomes: hierarchical grader effects, effect-coded main
    effects, slopes for continuous covariates, cat x cat interactions."""

    def model(features: Features) -> None:
        required = ["obs", "grader_index", "num_grader"]
        for effect in main_effects or []:
            required.extend([f"{effect}_index", f"num_{effect}"])
        for var1, var2 in interactions or []:
            required.extend([f"{var1}_index", f"num_{var1}", f"{var2}_index", f"num_{var2}"])
        required.extend(continuous_effects or [])
        check_features(features, required)

        eta = numpyro.sample(
            "intercept", dist.Normal(prior_intercept_loc, prior_intercept_scale)
        )
        sigma = numpyro.sample("grader_sigma", dist.HalfNormal(prior_grader_sigma_scale))
        raw = numpyro.sample(
            "grader_raw_effects", dist.Normal(0, 1).expand([features["num_grader"]])
        )
        grader_effects = sigma * raw
        numpyro.deterministic("grader_effects", grader_effects)
        eta = eta + grader_effects[features["grader_index"]]

        for effect in main_effects or []:
            n_levels = features[f"num_{effect}"]
            free = numpyro.sample(
                f"{effect}_effects_constrained",
                dist.Normal(0, prior_main_effects_scale).expand([n_levels - 1]),
            )
            coefs = jnp.concatenate([free, jnp.array([-jnp.sum(free)])])
            numpyro.deterministic(f"{effect}_effects", coefs)
            eta = eta + coefs[features[f"{effect}_index"]]

        for effect in continuous_effects or []:
            slope = numpyro.sample(f"{effect}_coef", dist.Normal(0, prior_slope_scale))
            eta = eta + slope * features[effect]

        if interactions:
            for var1, var2 in interactions:
                interaction_matrix = create_interaction_effects(
                    var1, var2, features, dist.Normal(0, prior_interaction_scale)
                )
                eta = eta + interaction_matrix[
                    features[f"{var1}_index"], features[f"{var2}_index"]
                ]

        numpyro.sample("obs", dist.Bernoulli(logits=eta), obs=features["obs"])

    return model
'''

TRUE_SLOPE = 1.0


def _reference_matrix(raw: np.ndarray, n1: int, n2: int) -> np.ndarray:
    """The reference tool's construction, step by step: free block, then the last
    row from the column sums, then the last column from the row sums."""
    full = np.zeros((n1, n2))
    full[: n1 - 1, : n2 - 1] = raw.reshape(n1 - 1, n2 - 1)
    full[n1 - 1, : n2 - 1] = -full[: n1 - 1, : n2 - 1].sum(axis=0)
    full[:, n2 - 1] = -full[:, : n2 - 1].sum(axis=1)
    return full


def test_reference_imports_resolve() -> None:
    from hibayes.model import Model, check_features, model  # noqa: F401
    from hibayes.model.models import check_features as from_models
    from hibayes.model.utils import (  # noqa: F401
        cloglog_to_prob,
        create_interaction_effects,
        infer_jax_dtype,
        link_to_key,
        logit_to_prob,
        probit_to_prob,
    )
    from hibayes.process import Coords, Dims, Features  # noqa: F401

    assert from_models is check_features
    with pytest.raises(ValueError, match="missing required features: num_task"):
        check_features({"obs": 1}, ["obs", "num_task"])


@pytest.mark.parametrize(("n1", "n2"), [(3, 2), (2, 4), (4, 5)])
def test_create_interaction_effects_matches_the_reference_construction(n1, n2) -> None:
    from hibayes.model.utils import create_interaction_effects

    features = {"num_a": n1, "num_b": n2}
    raw = np.random.default_rng(n1 * 10 + n2).normal(size=(n1 - 1) * (n2 - 1))

    def program():
        return create_interaction_effects("a", "b", features, dist.Normal(0, 1))

    fixed = substitute(program, data={"a_b_effects_constrained": raw})
    tr = trace(seed(fixed, 0)).get_trace()
    assert [k for k in tr] == ["a_b_effects_constrained", "a_b_effects"]
    assert tr["a_b_effects_constrained"]["type"] == "sample"
    assert tr["a_b_effects_constrained"]["value"].shape == ((n1 - 1) * (n2 - 1),)
    assert tr["a_b_effects"]["type"] == "deterministic"
    full = np.asarray(tr["a_b_effects"]["value"])
    np.testing.assert_allclose(full, _reference_matrix(raw, n1, n2), atol=1e-6)
    np.testing.assert_allclose(full.sum(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(full.sum(axis=1), 0, atol=1e-5)


def test_single_level_interaction_is_zero_and_creates_no_site() -> None:
    from hibayes.model.utils import create_interaction_effects

    def program():
        return create_interaction_effects(
            "a", "b", {"num_a": 1, "num_b": 3}, dist.Normal(0, 1)
        )

    tr = trace(seed(program, 0)).get_trace()
    assert len(tr) == 0
    np.testing.assert_array_equal(seed(program, 0)(), np.zeros((1, 3)))


def test_link_helpers_and_dtypes() -> None:
    from hibayes.model.utils import (
        cloglog_to_prob,
        infer_jax_dtype,
        link_to_key,
        logit_to_prob,
        probit_to_prob,
    )

    x = np.array([-2.0, 0.0, 1.5])
    np.testing.assert_allclose(logit_to_prob(x), 1 / (1 + np.exp(-x)))
    np.testing.assert_allclose(probit_to_prob(x), norm.cdf(x))
    np.testing.assert_allclose(cloglog_to_prob(x), 1 - np.exp(-np.exp(x)))
    links = {"logit": logit_to_prob, "probit": probit_to_prob}
    assert link_to_key(probit_to_prob, links) == "probit"
    assert link_to_key("logit", links) == "logit"
    with pytest.raises(ValueError, match="Unknown link function"):
        link_to_key(cloglog_to_prob, links)
    import jax.numpy as jnp

    assert infer_jax_dtype(pd.Series([1, 2])) == jnp.int32
    assert infer_jax_dtype(pd.Series([1.0], dtype="float32")) == jnp.float32
    assert infer_jax_dtype(pd.Series([1], dtype="uint64")) == jnp.uint64
    with pytest.raises(ValueError, match="Unsupported pandas dtype"):
        infer_jax_dtype(pd.Series(["a"]))


# --- end to end: the real CLI -------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """The reference-style model file and 600 simulated graded pairs."""
    root = tmp_path_factory.mktemp("reference-models")
    (root / "ref_models.py").write_text(REFERENCE_STYLE_MODELS)
    rng = np.random.default_rng(7)
    n = 600
    grader = rng.integers(0, 4, n)
    llm = rng.integers(0, 3, n)
    task = rng.integers(0, 2, n)
    length = rng.normal(size=n)
    inter = _reference_matrix(np.array([0.6, -0.4]), 3, 2)
    eta = (
        0.3
        + np.array([-0.5, 0.0, 0.2, 0.4])[grader]
        + np.array([0.5, -0.2, -0.3])[llm]
        + inter[llm, task]
        + TRUE_SLOPE * length
    )
    pd.DataFrame(
        {
            "grader": [f"g{g}" for g in grader],
            "llm": np.array(["A", "B", "C"])[llm],
            "task": np.array(["t1", "t2"])[task],
            "length_diff": length.round(4),
            "y": rng.binomial(1, expit(eta)),
        }
    ).to_csv(root / "pairs.csv", index=False)
    return root


DATA = (
    "data=table",
    "data.path=pairs.csv",
    "data.observed=y",
    "data.categorical=[grader,llm,task]",
    "data.continuous=[length_diff]",
)
MODEL = (
    "model.path=ref_models.py",
    "model.name=hierarchical_logistic_model",
    "+model.main_effects=[llm,task]",
    "+model.continuous_effects=[length_diff]",
)


def _check_posterior(idata: az.InferenceData, interaction: bool) -> None:
    post = idata.posterior
    assert post["grader_effects"].shape[-1] == 4
    slope = float(post["length_diff_coef"].mean())
    assert abs(slope - TRUE_SLOPE) < 0.4, slope  # 600 rows pin the slope to ~±0.1
    if interaction:
        effects = post["llm_task_effects"]
        assert effects.shape[-2:] == (3, 2)
        assert post["llm_task_effects_constrained"].shape[-1] == 2
        np.testing.assert_allclose(effects.sum(effects.dims[-1]), 0, atol=1e-4)
        np.testing.assert_allclose(effects.sum(effects.dims[-2]), 0, atol=1e-4)
    else:
        assert "llm_task_effects" not in post


@pytest.mark.slow
def test_reference_style_model_runs_through_model_path(workdir: Path) -> None:
    done = run_hibayes(
        workdir,
        *DATA,
        *MODEL,
        "+model.interactions=[[llm,task]]",
        "fit=quick",
        "tracking=none",
        "hydra.run.dir=single",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    _check_posterior(az.from_netcdf(workdir / "single" / "idata.nc"), interaction=True)


@pytest.mark.slow
def test_reference_style_model_runs_as_two_tagged_variants(workdir: Path) -> None:
    (workdir / "hibayes.yaml").write_text(
        textwrap.dedent("""\
        model:
          path: ref_models.py
          models:
            - name: hierarchical_logistic_model
              config:
                tag: with_interaction
                main_effects: [llm, task]
                continuous_effects: [length_diff]
                interactions: [[llm, task]]
            - name: hierarchical_logistic_model
              config:
                tag: main_effects_only
                main_effects: [llm, task]
                continuous_effects: [length_diff]
    """)
    )
    db = workdir / "mlflow.db"
    done = run_hibayes(
        workdir,
        "models_file=hibayes.yaml",
        *DATA,
        "fit=quick",
        "fit.prior_samples=0",
        f"tracking.uri=sqlite:///{db}",
        "hydra.sweep.dir=sweep",
        "-m",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    from mlflow import MlflowClient

    runs = all_runs(MlflowClient(f"sqlite:///{db}"))
    children = {r.info.run_name: r for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert sorted(children) == [
        "hierarchical_logistic_model [main_effects_only]",
        "hierarchical_logistic_model [with_interaction]",
    ]
    assert {r.info.status for r in runs} == {"FINISHED"}
    for job, interaction in ((0, True), (1, False)):  # jobs in the file's order
        idata = az.from_netcdf(workdir / "sweep" / str(job) / "idata.nc")
        _check_posterior(idata, interaction=interaction)
    tags = {r.data.tags["hibayes.tag"] for r in children.values()}
    assert tags == {"with_interaction", "main_effects_only"}
    with_inter = children["hierarchical_logistic_model [with_interaction]"]
    out_dir = Path(with_inter.data.tags["hibayes.output_dir"])
    assert "llm_task_effects" in az.from_netcdf(out_dir / "idata.nc").posterior
