"""The public @model API, the registry and the obs contract."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
from helpers.user_model import USER_MODEL

from hibayes.inference import fit_model
from hibayes.model import ModelError, get_model, list_models, load_models


def test_user_model_verbatim_registers_builds_and_fits(tmp_path, group_data, quick):
    path = tmp_path / "my_models.py"
    path.write_text(USER_MODEL)
    assert load_models(str(path)) == ["my_custom_model"]
    factory = get_model("my_custom_model")
    program = factory(prior_mu_loc=0.5)
    assert program.hyperparameters == {"prior_mu_loc": 0.5, "prior_mu_scale": 1.0}
    features, coords, _ = group_data
    result = fit_model(factory, features, {"prior_mu_loc": -1.0}, quick, coords)
    post = result.idata.posterior
    assert post["group_effects"].shape == (2, 300, 8)
    assert list(post["group_effects"].dims) == ["chain", "draw", "group"]
    assert set(post.data_vars) == {
        "overall_mean",
        "sigma_group",
        "z_group",
        "group_effects",
    }
    # Loading the same file again is a no-op, not a duplicate registration.
    assert load_models(str(path)) == []


def test_positional_arguments_bind_like_keywords():
    factory = get_model("two_level_group_binomial")
    program = factory(0.5, 2.0)
    assert program.hyperparameters["prior_mu_overall_loc"] == 0.5
    assert program.hyperparameters["prior_mu_overall_scale"] == 2.0
    assert program.hyperparameters["prior_sigma_group_scale"] == 0.1


def test_unknown_factory_argument_suggests_the_right_one():
    factory = get_model("two_level_group_binomial")
    with pytest.raises(
        ModelError,
        match="prior_sigma_grup_scale.*did you mean 'prior_sigma_group_scale'",
    ):
        factory(prior_sigma_grup_scale=0.3)


def test_unknown_model_name_suggests_close_name():
    with pytest.raises(ModelError, match="Did you mean 'two_level_group_binomial'"):
        get_model("two_level_group_binomal")


def test_all_six_builtins_registered():
    assert {
        "simplified_group_binomial_exponential",
        "two_level_group_binomial",
        "three_level_group_binomial",
        "three_level_group_binomial_exponential",
        "linear_group_binomial",
        "ordered_logistic_model",
    } <= set(list_models())


def test_custom_model_may_not_replace_builtin(tmp_path):
    path = tmp_path / "clash.py"
    path.write_text(
        textwrap.dedent("""
        from hibayes.model import model
        @model
        def two_level_group_binomial():
            def program(features):
                pass
            return program
    """)
    )
    with pytest.raises(
        ModelError,
        match="may not replace the built-in model 'two_level_group_binomial'",
    ):
        load_models(str(path))


def test_custom_model_file_errors_are_named(tmp_path):
    with pytest.raises(ModelError, match="not found: .*nope.py"):
        load_models(str(tmp_path / "nope.py"))
    bad = tmp_path / "broken.py"
    bad.write_text("def oops(:\n    pass\n")
    with pytest.raises(ModelError, match="broken.py has a syntax error at line 1"):
        load_models(str(bad))
    with pytest.raises(ModelError, match=r"model.path .* is a folder .*give the .py"):
        load_models(str(tmp_path))


def test_a_plain_function_is_named_as_missing_its_decorator(tmp_path):
    path = tmp_path / "undecorated.py"
    path.write_text(
        textwrap.dedent("""
        def my_plain_model(mu=0.0):
            def program(features):
                pass
            return program
    """)
    )
    load_models(str(path))
    with pytest.raises(ModelError) as caught:
        get_model("my_plain_model")
    assert str(caught.value) == (
        f"model 'my_plain_model' in {path.resolve()} is a plain function, not a "
        "model: put @model above it (from hibayes.model import model)"
    )
    with pytest.raises(ModelError, match="unknown model 'elsewhere'"):
        get_model("elsewhere")  # a name no loaded file defines: the usual message


def test_check_features_names_every_missing_feature():
    from hibayes.model.models import check_features

    with pytest.raises(ValueError) as err:
        check_features({"obs": 1, "n_total": 2}, ["obs", "group_index", "num_group"])
    text = str(err.value)
    assert "group_index, num_group" in text
    assert "Features present: ['n_total', 'obs']" in text


def test_obs_rules_name_the_model(tmp_path, group_data):
    path = tmp_path / "no_obs.py"
    path.write_text(
        textwrap.dedent("""
        import numpyro, numpyro.distributions as dist
        from hibayes.model import model
        @model
        def model_without_obs(prior_loc: float = 0.0):
            def program(features):
                numpyro.sample("y", dist.Normal(prior_loc, 1.0), obs=features["obs"])
            return program
    """)
    )
    load_models(str(path))
    program = get_model("model_without_obs")()
    with pytest.raises(
        ModelError, match="model 'model_without_obs' never samples a site named 'obs'"
    ):
        import numpyro

        with numpyro.handlers.seed(rng_seed=0):
            program({"obs": np.zeros(3)})
    features, _, _ = group_data
    no_obs = {k: v for k, v in features.items() if k != "obs"}
    with pytest.raises(
        ModelError, match="model 'two_level_group_binomial' needs a feature named 'obs'"
    ):
        get_model("two_level_group_binomial")()(no_obs)


def test_invalid_prior_value_fails_before_sampling(group_data, quick):
    features, coords, _ = group_data
    with pytest.raises(
        ModelError, match="two_level_group_binomial.*rejected its inputs"
    ):
        fit_model(
            get_model("two_level_group_binomial"),
            features,
            {"prior_sigma_group_scale": -1.0},
            quick,
            coords,
        )


def test_a_prior_value_that_is_not_a_number_is_refused_by_name():
    factory = get_model("two_level_group_binomial")
    for bad in ("abc", None, True):
        with pytest.raises(
            ModelError, match="prior_sigma_group_scale must be a number"
        ):
            factory(prior_sigma_group_scale=bad)
    factory(
        prior_sigma_group_scale=np.array(0.3)
    )  # arrays (traced values) stay allowed
    factory(prior_sigma_group_scale=1)  # an int where the default is a float
