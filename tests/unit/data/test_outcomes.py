"""Outcome kinds, counts checked against the model, and column names as written.

Unit level (make_features, load_data with a real composed config); the CLI cases
are in test_bad_input.py and test_outcomes_e2e.py.
"""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from hibayes.config import load_data, model_spec
from hibayes.data import DataError, make_features, resolve_outcome
from hibayes.inference import FitSettings
from hibayes.model import ModelError, load_models, model

CONF = Path(__file__).resolve().parents[3] / "hibayes" / "conf"


def _error(df: pd.DataFrame, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        make_features(df, **kwargs)
    return str(info.value)


def composed(*overrides: str):
    """conf/config.yaml composed with overrides."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides))


# ------------------------------------------------------------------ outcome kinds


def test_continuous_takes_negative_and_fractional_values() -> None:
    df = pd.DataFrame({"y": [-1.25, 0.5, 3.0], "g": ["a", "b", "a"]})
    fs = make_features(df, observed="y", categorical=["g"], outcome="continuous")
    assert fs.outcome == "continuous" and fs.features["obs"].dtype == np.float64
    np.testing.assert_array_equal(fs.features["obs"], [-1.25, 0.5, 3.0])
    auto = make_features(df, observed="y", categorical=["g"])  # no kind declared
    assert auto.outcome == "numeric"
    np.testing.assert_array_equal(auto.features["obs"], [-1.25, 0.5, 3.0])
    assert "non-integer value in observed" in _error(df, observed="y", outcome="count")
    assert "negative value in observed" in _error(
        df.assign(y=[1, -2, 3]), observed="y", outcome="count"
    )


@pytest.mark.parametrize(
    ("values", "problem", "row", "shown"),
    [
        (["0.5", "", "1"], "missing value in observed", 1, "has an empty cell"),
        (["0.5", "nan", "1"], "non-numeric value in observed", 1, "'nan'"),
        (["0.5", "1", "inf"], "infinite value in observed", 2, "has value 'inf'"),
        (["0.5", "x", "1"], "non-numeric value in observed", 1, "'x'"),
    ],
)
def test_every_outcome_must_be_a_finite_number(values, problem, row, shown) -> None:
    df = pd.DataFrame({"y": values})
    for kind in ("auto", "continuous"):
        msg = _error(df, observed="y", outcome=kind)
        assert problem in msg and f"data row {row} (0-based)" in msg and shown in msg


def test_binary_outcome() -> None:
    df = pd.DataFrame({"y": ["C", "I", "1", "0", "true"]})
    fs = make_features(df, observed="y", outcome="binary")
    np.testing.assert_array_equal(fs.features["obs"], [1, 0, 1, 0, 1])
    msg = _error(df.assign(y=["C", "I", "2", "0", "1"]), observed="y", outcome="binary")
    assert "invalid binary outcome" in msg and "data row 2 (0-based) has value 2" in msg


def test_kinds_refuse_settings_that_contradict_them() -> None:
    df = pd.DataFrame({"y": [0, 1], "n": [1, 1]})
    for kind in ("binary", "continuous", "ordinal"):
        msg = _error(df, observed="y", n_total="n", outcome=kind)
        assert f"outcome '{kind}' cannot be combined with n_total" in msg
    assert "needs num_classes" in _error(df, observed="y", outcome="ordinal")
    assert "cannot be combined with num_classes" in _error(
        df, observed="y", outcome="continuous", num_classes=3
    )
    assert "outcome must be one of" in _error(df, observed="y", outcome="gaussian")


def test_passthrough_and_continuous_take_any_finite_number() -> None:
    df = pd.DataFrame({"y": [0.1, 0.2], "se": ["-0.5", "1e-3"], "x": ["-2", "7.25"]})
    fs = make_features(df, observed="y", passthrough=["se"], continuous=["x"])
    np.testing.assert_array_equal(fs.features["se"], [-0.5, 1e-3])
    np.testing.assert_array_equal(fs.features["x"], [-2.0, 7.25])
    np.testing.assert_array_equal(fs.table["se"], [-0.5, 1e-3])  # numbers in the table
    for column, role in (("se", "passthrough"), ("x", "continuous")):
        for bad, problem in (
            ("nan", "non-numeric"),
            ("-inf", "infinite"),
            ("", "missing"),
        ):
            values = df[column].tolist()
            values[1] = bad
            msg = _error(
                df.assign(**{column: values}),
                observed="y",
                passthrough=["se"],
                continuous=["x"],
            )
            assert f"column '{column}': {problem} value in {role} column" in msg
            assert "data row 1 (0-based)" in msg


def test_resolve_outcome_from_the_model() -> None:
    assert resolve_outcome("auto", "count", "m") == "count"
    assert resolve_outcome(None, None, "m") == "auto"
    assert resolve_outcome("continuous", None, "m") == "continuous"
    assert resolve_outcome("ordinal", "ordinal", "m") == "ordinal"
    with pytest.raises(
        DataError, match="data.outcome=continuous, but model 'm' models count outcomes"
    ):
        resolve_outcome("continuous", "count", "m")
    with pytest.raises(DataError, match="data.outcome must be one of"):
        resolve_outcome("poisson", None, "m")


def test_model_declares_its_outcome(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="outcome must be one of count, binary"):
        model(outcome="gaussian")
    path = tmp_path / "outcome_models.py"
    path.write_text(
        textwrap.dedent("""
        import numpyro, numpyro.distributions as dist
        from hibayes.model import Model, model

        @model(outcome="continuous")
        def declared_gaussian(prior_scale: float = 1.0) -> Model:
            def program(features):
                numpyro.sample("obs", dist.Normal(0.0, prior_scale), obs=features["obs"])
            return program

        @model
        def undeclared_gaussian(prior_scale: float = 1.0) -> Model:
            def program(features):
                numpyro.sample("obs", dist.Normal(0.0, prior_scale), obs=features["obs"])
            return program
    """)
    )
    assert load_models(str(path)) == ["declared_gaussian", "undeclared_gaussian"]
    csv = tmp_path / "diffs.csv"
    csv.write_text("item,y\na,-0.75\nb,1.5\n")
    data = (
        "data=table",
        f"data.path={csv}",
        "data.observed=y",
        "data.categorical=[item]",
        f"model.path={path}",
    )
    for name, kind in (
        ("declared_gaussian", "continuous"),
        ("undeclared_gaussian", "numeric"),
    ):
        cfg = composed(*data, f"model.name={name}")
        fs = load_data(cfg.data, model_spec(cfg.model, "two_level_group_binomial"))
        assert fs.outcome == kind
        np.testing.assert_array_equal(fs.features["obs"], [-0.75, 1.5])
    # The built-in binomial models declare counts: the same file is refused.
    cfg = composed(*data[:4], "data.aggregate=false")
    with pytest.raises(DataError, match="non-integer value in observed column"):
        load_data(cfg.data, model_spec(cfg.model, "two_level_group_binomial"))
    cfg = composed(*data, "model.name=declared_gaussian", "data.outcome=count")
    with pytest.raises(DataError, match="models continuous outcomes"):
        load_data(cfg.data, model_spec(cfg.model, "two_level_group_binomial"))


def test_builtin_models_declare_their_kinds() -> None:
    from hibayes.model import get_model, list_models

    kinds = {
        name: get_model(name).outcome
        for name in list_models()
        if get_model(name).builtin
    }
    assert kinds.pop("ordered_logistic_model") == "ordinal"
    assert set(kinds.values()) == {"count"} and len(kinds) == 5


# ------------------------------------------------------- counts against the model


def test_zero_trials_are_refused_or_dropped(caplog) -> None:
    df = pd.DataFrame({"g": ["a", "b", "c", "d"], "k": [1, 0, 2, 0], "n": [3, 0, 4, 0]})
    msg = _error(df, observed="k", n_total="n", categorical=["g"])
    assert "column 'n': row with no trials (n = 0)" in msg
    assert "data row 1 (0-based) has value 0 (2 offending rows)" in msg
    assert "data.drop_empty=true" in msg
    with caplog.at_level(logging.INFO, logger="hibayes.data"):
        fs = make_features(
            df, observed="k", n_total="n", categorical=["g"], drop_empty=True
        )
    assert "dropped 2 row(s) with n = 0 (data.drop_empty=true); 2 left" in caplog.text
    np.testing.assert_array_equal(fs.features["n_total"], [3, 4])
    assert fs.coords["g"] == ["a", "c"]  # levels only of the rows kept
    np.testing.assert_array_equal(fs.features["g_index"], [0, 1])
    msg = _error(df.assign(n=0, k=0), observed="k", n_total="n", drop_empty=True)
    assert "every row has n = 0" in msg


def test_counts_beyond_what_the_sampler_holds_exactly(tmp_path: Path) -> None:
    # float32 holds every whole number up to 2^24 and no longer all after it.
    assert np.float32(2**24 + 1) == np.float32(2**24)
    assert np.float64(2**24 + 1) != np.float64(2**24)
    csv = tmp_path / "big.csv"
    csv.write_text(f"group,k,n\na,5,10\nb,{2**24},{2**24 + 1}\n")
    cfg = composed(
        "data=table",
        f"data.path={csv}",
        "data.observed=k",
        "data.n_total=n",
        "data.categorical=[group]",
    )
    spec = model_spec(cfg.model, "two_level_group_binomial")
    with pytest.raises(DataError) as info:
        load_data(cfg.data, spec, FitSettings())
    msg = str(info.value)
    assert msg.startswith(f"{csv}: column 'n': count beyond 16777216")
    assert "float32 (fit.precision=auto for 2 rows)" in msg
    assert "data row 1 (0-based) has value 16777217" in msg
    assert "fit.precision=float64" in msg
    fs = load_data(cfg.data, spec, FitSettings(precision="float64"))
    np.testing.assert_array_equal(fs.features["n_total"], [10, 2**24 + 1])
    csv.write_text("group,k,n\na,5,10\nb,1,20000000000000000\n")
    with pytest.raises(DataError, match="beyond 2\\^53"):
        load_data(cfg.data, spec, FitSettings(precision="float64"))


# ------------------------------------------------------ column names as written


@pytest.fixture
def evals() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "model": ["m1", "m2", "m1", "m2"],
            "task": ["x", "x", "y", "y"],
            "score": ["C", "I", "C", "C"],
            "len": ["1", "2", "3", "4"],
            "w": [1, 2, 3, 4],
        }
    )


def test_file_names_and_role_names_both_work_after_rename(evals) -> None:
    rename = {"model": "group", "len": "length", "task": "subgroup"}
    as_written = make_features(
        evals,
        observed="score",
        categorical=["model", "task"],
        rename=rename,
        continuous=["len"],
        passthrough=["w"],
        filters={"task": ["x", "y"]},
        category_order={"model": ["m2", "m1"]},
        standardize=["len"],
        outcome="binary",
    )
    as_roles = make_features(
        evals,
        observed="score",
        categorical=["group", "subgroup"],
        rename=rename,
        continuous=["length"],
        passthrough=["w"],
        filters={"subgroup": ["x", "y"]},
        category_order={"group": ["m2", "m1"]},
        standardize=["length"],
        outcome="binary",
    )
    for fs in (as_written, as_roles):
        assert fs.coords["group"] == ["m2", "m1"]
        np.testing.assert_array_equal(fs.features["group_index"], [1, 0, 1, 0])
        assert set(fs.features) >= {"subgroup_index", "length", "w", "num_group"}
        assert fs.standardization["length"]["mean"] == 2.5
    swapped = make_features(
        evals,
        observed="score",
        categorical=["model"],
        rename={"model": "task", "task": "model"},
        outcome="binary",
    )
    assert swapped.coords["model"] == ["x", "y"]  # a rename's target is the role name


def test_missing_column_says_what_the_rename_did(evals) -> None:
    msg = _error(
        evals,
        observed="score",
        categorical=["modle"],
        rename={"model": "group"},
        outcome="binary",
    )
    assert "missing column(s) ['modle']" in msg
    assert (
        "columns present (after data.rename: 'model' -> 'group'): ['group', 'task'"
        in msg
    )


def test_readme_own_data_example_composes_and_loads(tmp_path: Path) -> None:
    csv = tmp_path / "results.csv"
    csv.write_text("model,task,score\nm1,x,C\nm1,y,I\nm2,x,C\n")
    cfg = composed(
        "data=table",
        f"data.path={csv}",
        "data.observed=score",
        "data.categorical=[model]",
        "data.rename={model: group}",
        "data.aggregate=true",
    )
    fs = load_data(
        cfg.data, model_spec(cfg.model, "two_level_group_binomial"), FitSettings()
    )
    assert fs.coords["group"] == ["m1", "m2"]
    np.testing.assert_array_equal(fs.features["obs"], [1, 1])
    np.testing.assert_array_equal(fs.features["n_total"], [2, 1])
