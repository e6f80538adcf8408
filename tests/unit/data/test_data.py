"""Tests for hibayes.data: reading tables, building features, shipped examples."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hibayes.data import (
    EXAMPLES,
    EXAMPLES_DIR,
    DataError,
    FeatureSet,
    example_path,
    features_from_config,
    file_digest,
    load_table,
    make_features,
    table_digest,
)


@pytest.fixture
def counts() -> pd.DataFrame:
    """Small binomial table with two categorical columns."""
    return pd.DataFrame(
        {
            "model": ["b", "a", "b", "a"],
            "task": ["x", "x", "y", "y"],
            "n_correct": [3, 1, 0, 5],
            "n_total": [4, 2, 1, 5],
        }
    )


@pytest.fixture
def counts_csv(tmp_path: Path, counts: pd.DataFrame) -> Path:
    """The counts table written as CSV."""
    path = tmp_path / "counts.csv"
    counts.to_csv(path, index=False)
    return path


def _error(path_or_df, **kwargs) -> str:
    """Run features_from_config / make_features and return the DataError text."""
    with pytest.raises(DataError) as info:
        if isinstance(path_or_df, pd.DataFrame):
            make_features(path_or_df, **kwargs)
        else:
            features_from_config(path_or_df, **kwargs)
    return str(info.value)


# --------------------------------------------------------------------------- io


def test_load_csv_parquet_jsonl_json(tmp_path: Path, counts: pd.DataFrame) -> None:
    """Every supported format reads back the same table: CSV/TSV as text, the
    typed formats with their types."""
    counts.to_csv(tmp_path / "t.csv", index=False)
    counts.to_csv(tmp_path / "t.tsv", index=False, sep="\t")
    counts.to_parquet(tmp_path / "t.parquet", index=False)
    counts.to_json(tmp_path / "t.jsonl", orient="records", lines=True)
    counts.to_json(tmp_path / "lines.json", orient="records", lines=True)
    counts.to_json(tmp_path / "records.json", orient="records")
    for name in [
        "t.csv",
        "t.tsv",
        "t.parquet",
        "t.jsonl",
        "lines.json",
        "records.json",
    ]:
        got = load_table(tmp_path / name)
        if name.endswith("sv"):
            assert got["n_correct"].tolist() == ["3", "1", "0", "5"], name
            got = got.assign(
                n_correct=got["n_correct"].astype(int),
                n_total=got["n_total"].astype(int),
            )
        else:
            assert got["n_correct"].dtype == np.int64, name
        pd.testing.assert_frame_equal(got, counts, check_dtype=False, obj=name)


def test_load_fmt_overrides_suffix(tmp_path: Path, counts: pd.DataFrame) -> None:
    """An explicit fmt reads a file whose suffix says nothing."""
    path = tmp_path / "data.txt"
    counts.to_csv(path, index=False)
    pd.testing.assert_frame_equal(
        load_table(path, fmt="csv"), counts.astype(str), check_dtype=False
    )
    with pytest.raises(DataError, match="unknown format 'xls'"):
        load_table(path, fmt="xls")


@pytest.mark.parametrize(
    ("name", "content", "pattern"),
    [
        ("missing.csv", None, "file not found"),
        ("t.xlsx", b"a,b\n1,2\n", "cannot tell the format from suffix '.xlsx'"),
        ("bad.parquet", b"not parquet at all", "cannot read as parquet"),
        ("bad.csv", b"a,b\n1,2\n1,2,3,4\n", "cannot read as csv"),
        ("bin.csv", b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x00", "cannot read as csv"),
        ("empty.csv", b"", "file is empty"),
        ("bad.jsonl", b'{"a": 1}\n{"a": \n', "line 2 is not valid JSON"),
        ("bad.json", b'[{"a": 1}, ', "not valid JSON"),
        ("scalars.json", b"[1, 2]", "record 0 is a JSON int"),
    ],
)
def test_load_bad_files_name_the_path(
    tmp_path: Path, name: str, content: bytes | None, pattern: str
) -> None:
    """Missing, unknown and garbled files raise DataError naming the path."""
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=pattern) as info:
        load_table(path)
    assert str(path) in str(info.value)


def test_load_directory(tmp_path: Path) -> None:
    """A directory is not a table."""
    with pytest.raises(DataError, match="is a directory") as info:
        load_table(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_digests(tmp_path: Path, counts: pd.DataFrame, counts_csv: Path) -> None:
    """table_digest is content-based; file_digest is the sha256 of the bytes."""
    assert table_digest(counts) == table_digest(counts.copy())
    assert table_digest(counts) == table_digest(load_table(counts_csv))
    changed = counts.assign(n_correct=[3, 1, 0, 4])
    assert table_digest(changed) != table_digest(counts)
    assert len(table_digest(counts)) == 64
    expected = hashlib.sha256(counts_csv.read_bytes()).hexdigest()
    assert file_digest(counts_csv) == expected
    with pytest.raises(DataError, match="file not found"):
        file_digest(tmp_path / "nope.csv")


# ---------------------------------------------------------------- make_features


def test_binomial_features(counts: pd.DataFrame) -> None:
    """Counts, codes, coords and dims for a plain binomial table."""
    fs = make_features(
        counts, observed="n_correct", n_total="n_total", categorical=["model", "task"]
    )
    assert isinstance(fs, FeatureSet)
    assert fs.source == "<table>"
    f = fs.features
    assert f["obs"].dtype == np.int64 and f["n_total"].dtype == np.int64
    np.testing.assert_array_equal(f["obs"], [3, 1, 0, 5])
    np.testing.assert_array_equal(f["n_total"], [4, 2, 1, 5])
    assert f["model_index"].dtype == np.int32
    np.testing.assert_array_equal(f["model_index"], [1, 0, 1, 0])
    np.testing.assert_array_equal(f["task_index"], [0, 0, 1, 1])
    assert f["num_model"] == 2 and isinstance(f["num_model"], int)
    assert fs.coords == {
        "model": ["a", "b"],
        "task": ["x", "y"],
        "observation": [0, 1, 2, 3],
    }
    assert fs.dims == {"obs": ["observation"]}
    assert list(fs.table.index) == [0, 1, 2, 3]


def test_natural_sort_and_category_order() -> None:
    """Numbers sort numerically, labels are strings, category_order wins."""
    df = pd.DataFrame(
        {"k": [10, 2, 1, 2], "s": ["b", "B", "a", "a"], "y": [0, 1, 1, 0]}
    )
    fs = make_features(df, observed="y", categorical=["k", "s"])
    assert fs.coords["k"] == ["1", "2", "10"]
    np.testing.assert_array_equal(fs.features["k_index"], [2, 1, 0, 1])
    assert fs.coords["s"] == ["B", "a", "b"]
    fs = make_features(
        df, observed="y", categorical=["k"], category_order={"k": [10, 1, 2]}
    )
    assert fs.coords["k"] == ["10", "1", "2"]
    np.testing.assert_array_equal(fs.features["k_index"], [0, 2, 1, 2])


def test_bad_category_order() -> None:
    """Missing or extra levels in category_order are named."""
    df = pd.DataFrame({"m": ["a", "b", "c"], "y": [0, 1, 1]})
    msg = _error(
        df, observed="y", categorical=["m"], category_order={"m": ["a", "b", "z"]}
    )
    assert "column 'm'" in msg and "missing ['c']" in msg and "not present ['z']" in msg
    msg = _error(df, observed="y", categorical=["m"], category_order={"x": ["a"]})
    assert "category_order given for ['x']" in msg


def test_rename_and_filters(counts: pd.DataFrame) -> None:
    """Rename comes first; filters use the new names and keep matching rows."""
    fs = make_features(
        counts,
        observed="n_correct",
        n_total="n_total",
        categorical=["group"],
        rename={"model": "group"},
        filters={"task": ["y"], "group": "a"},
    )
    np.testing.assert_array_equal(fs.features["obs"], [5])
    assert fs.coords["group"] == ["a"]
    assert list(fs.table.columns) == ["group", "task", "n_correct", "n_total"]
    num = make_features(counts, observed="n_correct", filters={"n_total": [4, 5]})
    np.testing.assert_array_equal(num.features["obs"], [3, 5])
    msg = _error(counts, observed="n_correct", rename={"provider": "group"})
    assert "rename refers to missing column(s) ['provider']" in msg


def test_empty_after_filtering(counts_csv: Path) -> None:
    """The message says which filter matched nothing."""
    msg = _error(
        counts_csv, observed="n_correct", filters={"model": ["a"], "task": ["zzz"]}
    )
    assert str(counts_csv) in msg and "filters left no rows" in msg
    assert "task in ['zzz'] matches 0 row(s)" in msg
    assert "model in ['a'] matches 2 row(s)" in msg


def test_missing_columns_listed(counts_csv: Path) -> None:
    """All missing columns are listed together with those present."""
    msg = _error(
        counts_csv,
        observed="correct",
        n_total="n_total",
        categorical=["model", "provider"],
    )
    assert str(counts_csv) in msg
    assert "missing column(s) ['correct', 'provider']" in msg
    assert "columns present: ['model', 'task', 'n_correct', 'n_total']" in msg
    msg = _error(counts_csv, observed="n_correct", filters={"family": ["x"]})
    assert "missing column(s) ['family']" in msg


def test_empty_table(tmp_path: Path) -> None:
    """A header-only file has no rows."""
    path = tmp_path / "empty.csv"
    path.write_text("model,n_correct,n_total\n")
    msg = _error(path, observed="n_correct", n_total="n_total")
    assert str(path) in msg and "no rows" in msg


@pytest.mark.parametrize(
    ("column", "values", "problem", "row", "value"),
    [
        ("n_correct", [3, None, 0, 5], "missing value", 1, None),
        ("n_total", [4, 2, "lots", 5], "non-numeric value in n_total", 2, "'lots'"),
        ("n_correct", [3, 1.5, 0, 5], "non-integer value in observed", 1, "1.5"),
        ("n_total", [4, 2, 0, -5], "negative value in n_total", 3, "-5"),
        ("n_correct", [3, 1, 2, 5], "observed exceeds 'n_total'", 2, "2 (n_total 1"),
        ("n_total", [4, 2, 0, 5], "row with no trials (n_total = 0)", 2, "0"),
    ],
)
def test_bad_counts_name_file_column_row_value(
    tmp_path: Path,
    counts: pd.DataFrame,
    column: str,
    values: list,
    problem: str,
    row: int,
    value: str,
) -> None:
    """Every bad count names the file, column, an example row and its value."""
    path = tmp_path / "bad.csv"
    counts.assign(**{column: values}).to_csv(path, index=False)
    msg = _error(path, observed="n_correct", n_total="n_total", categorical=["model"])
    assert msg.startswith(f"{path}: column '{column}'")
    assert problem in msg
    if value is None:
        assert f"data row {row} (0-based) has an empty cell" in msg
    else:
        assert f"data row {row} (0-based) has value {value}" in msg


def test_row_numbers_survive_filters_and_rename(counts: pd.DataFrame) -> None:
    """Rows are numbered as in the source even after filtering; renames are shown."""
    df = counts.assign(n_correct=[3, 1, 0, 9])
    msg = _error(
        df,
        observed="k",
        n_total="n_total",
        rename={"n_correct": "k"},
        filters={"task": ["y"]},
    )
    assert "column 'k' (renamed from 'n_correct')" in msg
    assert "data row 3 (0-based) has value 9" in msg
    msg = _error(df.set_index("model"), observed="n_correct", n_total="n_total")
    assert "row with index label 'a' has value 9" in msg


def test_ordinal() -> None:
    """Ordinal mode checks 0..K-1 and exposes num_classes."""
    df = pd.DataFrame({"g": ["a", "b", "a"], "score": [0, 10, 4]})
    fs = make_features(df, observed="score", categorical=["g"], num_classes=11)
    assert fs.features["num_classes"] == 11
    np.testing.assert_array_equal(fs.features["obs"], [0, 10, 4])
    for bad, row in [(11, 1), (-1, 1)]:
        msg = _error(df.assign(score=[0, bad, 4]), observed="score", num_classes=11)
        assert "column 'score'" in msg and "allowed range 0..10" in msg
        assert f"data row {row} (0-based) has value {bad}" in msg
    msg = _error(df.assign(score=[0, 2.5, 4]), observed="score", num_classes=11)
    assert "non-integer" in msg and "has value 2.5" in msg


def test_counts_must_be_non_negative_other_outcomes_need_not() -> None:
    """outcome='count' wants non-negative integers; auto without n_total or
    num_classes takes any finite number."""
    df = pd.DataFrame({"y": [1, -2]})
    assert "negative value" in _error(df, observed="y", outcome="count")
    fs = make_features(df, observed="y")
    assert fs.outcome == "numeric" and fs.features["obs"].dtype == np.int64


def test_aggregate_scores() -> None:
    """All accepted score spellings count as success/failure per sorted group."""
    df = pd.DataFrame(
        {
            "model": ["b", "a", "a", "b", "a", "b", "a"],
            "score": ["C", "i", "correct", "INCORRECT", True, "1", 0],
        }
    )
    fs = make_features(df, observed="score", categorical=["model"], aggregate=True)
    np.testing.assert_array_equal(fs.features["obs"], [2, 2])
    np.testing.assert_array_equal(fs.features["n_total"], [4, 3])
    assert fs.coords["model"] == ["a", "b"]
    assert list(fs.table.columns) == ["model", "score", "n_total"]
    again = make_features(
        fs.table, observed="score", n_total="n_total", categorical=["model"]
    )
    np.testing.assert_array_equal(again.features["obs"], fs.features["obs"])
    one = make_features(df, observed="score", aggregate=True)
    np.testing.assert_array_equal(one.features["obs"], [4])
    np.testing.assert_array_equal(one.features["n_total"], [7])


def test_aggregate_bools_and_floats() -> None:
    """Boolean and 0.0/1.0 columns aggregate too."""
    df = pd.DataFrame({"m": ["a", "a", "b"], "ok": [True, False, True]})
    fs = make_features(df, observed="ok", categorical=["m"], aggregate=True)
    np.testing.assert_array_equal(fs.features["obs"], [1, 1])
    fs = make_features(df.assign(ok=[1.0, 0.0, 1.0]), observed="ok", aggregate=True)
    np.testing.assert_array_equal(fs.features["obs"], [2])


@pytest.mark.parametrize(("bad", "shown"), [("X", "'X'"), (0.5, "0.5"), (2, "2")])
def test_aggregate_bad_score(tmp_path: Path, bad: object, shown: str) -> None:
    """An unknown score names file, column, row and value."""
    path = tmp_path / "samples.csv"
    pd.DataFrame({"model": ["a", "a", "b"], "score": [1, 0, bad]}).to_csv(
        path, index=False
    )
    msg = _error(path, observed="score", categorical=["model"], aggregate=True)
    assert str(path) in msg and "column 'score'" in msg and "invalid score" in msg
    assert f"data row 2 (0-based) has value {shown}" in msg


def test_aggregate_rules() -> None:
    """No continuous with aggregate, no n_total, and passthrough constant per group."""
    df = pd.DataFrame({"m": ["a", "a", "b"], "s": ["C", "I", "C"], "size": [7, 7, 3]})
    msg = _error(
        df, observed="s", categorical=["m"], continuous=["size"], aggregate=True
    )
    assert "cannot be used with aggregate=True" in msg
    assert "n_total must not be given" in _error(
        df, observed="s", n_total="size", aggregate=True
    )
    fs = make_features(
        df, observed="s", categorical=["m"], passthrough=["size"], aggregate=True
    )
    np.testing.assert_array_equal(fs.features["size"], [7, 3])
    assert fs.dims["size"] == ["observation"]
    msg = _error(
        df.assign(size=[7, 8, 3]),
        observed="s",
        categorical=["m"],
        passthrough=["size"],
        aggregate=True,
    )
    assert "column 'size'" in msg and "not constant" in msg and "data row 0" in msg


def test_categorical_nan(tmp_path: Path) -> None:
    """A missing category label is named by row."""
    path = tmp_path / "t.csv"
    path.write_text("model,y\na,1\n,0\n")
    msg = _error(path, observed="y", categorical=["model"])
    assert str(path) in msg and "column 'model'" in msg
    assert "missing value in categorical column" in msg and "data row 1" in msg


def test_continuous_and_standardize() -> None:
    """Continuous arrays are float64; standardize scales and records mean/sd."""
    df = pd.DataFrame({"y": [0, 1, 1, 0], "x": [1, 2, 3, 4], "w": [2.0, 2.0, 2.0, 5.0]})
    fs = make_features(df, observed="y", continuous=["x", "w"])
    assert fs.features["x"].dtype == np.float64
    assert fs.dims == {
        "obs": ["observation"],
        "x": ["observation"],
        "w": ["observation"],
    }
    assert fs.standardization == {}
    fs = make_features(df, observed="y", continuous=["x", "w"], standardize=["x"])
    sd = np.std([1, 2, 3, 4])
    np.testing.assert_allclose(fs.features["x"], (np.array([1, 2, 3, 4]) - 2.5) / sd)
    np.testing.assert_array_equal(fs.features["w"], [2, 2, 2, 5])
    assert fs.standardization == {"x": {"mean": 2.5, "sd": pytest.approx(sd)}}
    np.testing.assert_array_equal(fs.table["x"], [1, 2, 3, 4])  # raw units kept
    both = make_features(df, observed="y", continuous=["x", "w"], standardize=True)
    assert set(both.standardization) == {"x", "w"}
    msg = _error(df.assign(w=3.0), observed="y", continuous=["w"], standardize=True)
    assert "column 'w'" in msg and "sd 0" in msg
    msg = _error(df, observed="y", continuous=["x"], standardize=["w"])
    assert "standardize names ['w']" in msg
    msg = _error(df.assign(x=[1, None, 3, 4]), observed="y", continuous=["x"])
    assert "column 'x'" in msg and "missing value" in msg and "data row 1" in msg


def test_passthrough() -> None:
    """Passthrough keeps integers as int64 and floats as float64; text is rejected."""
    df = pd.DataFrame(
        {"y": [0, 1], "i": [3, 4], "f": [0.5, 1.5], "b": [True, False], "t": ["u", "v"]}
    )
    fs = make_features(df, observed="y", passthrough=["i", "f", "b"])
    assert fs.features["i"].dtype == np.int64
    assert fs.features["f"].dtype == np.float64
    np.testing.assert_array_equal(fs.features["b"], [1, 0])
    msg = _error(df, observed="y", passthrough=["t"])
    assert "column 't'" in msg and "non-numeric" in msg and "'u'" in msg


def test_role_conflicts() -> None:
    """A column in two roles or shadowing a generated name is rejected."""
    df = pd.DataFrame({"y": [0, 1], "m": ["a", "b"], "obs": [1.0, 2.0]})
    assert "more than one role" in _error(
        df, observed="y", categorical=["m"], continuous=["m"]
    )
    assert "collide" in _error(df, observed="y", continuous=["obs"])
    assert "num_classes" in _error(df, observed="y", n_total="y", num_classes=3)


def test_features_from_config_sets_source(counts_csv: Path) -> None:
    """The file path becomes the FeatureSet source."""
    fs = features_from_config(
        counts_csv, observed="n_correct", n_total="n_total", categorical=["task"]
    )
    assert fs.source == str(counts_csv)
    assert fs.coords["task"] == ["x", "y"]


# --------------------------------------------------------------------- examples


def test_example_files_and_truth() -> None:
    """Every example exists, is small, and matches true_values.json."""
    truth = json.loads((EXAMPLES_DIR / "true_values.json").read_text())
    assert truth["generator"] == "scripts/make_example_data.py"
    listed = {}
    for name, spec in truth["datasets"].items():
        assert isinstance(spec["seed"], int) and spec["params"], name
        listed.update(spec["files"])
    assert sorted(listed) == sorted(f"{n}.csv" for n in EXAMPLES)
    for name in EXAMPLES:
        path = example_path(name)
        assert path == example_path(f"{name}.csv")
        assert path.stat().st_size < 200_000
        df = load_table(path)
        assert list(df.columns) == listed[path.name]["columns"]
        assert len(df) == listed[path.name]["rows"]
    with pytest.raises(DataError, match="available: .*llm_evals"):
        example_path("nope")


def test_example_llm_evals_aggregate() -> None:
    """Aggregated per-sample scores match a manual pandas count."""
    fs = features_from_config(
        example_path("llm_evals"),
        observed="score",
        categorical=["group"],
        rename={"model": "group"},
        aggregate=True,
    )
    raw = load_table(example_path("llm_evals"))
    manual = raw.groupby("model")["score"].agg(
        n_correct=lambda s: int((s == "C").sum()), n_total="size"
    )
    assert fs.coords["group"] == list(manual.index) == [f"model-{c}" for c in "abcdef"]
    np.testing.assert_array_equal(fs.features["obs"], manual["n_correct"])
    np.testing.assert_array_equal(fs.features["n_total"], manual["n_total"])
    assert fs.features["num_group"] == 6
    np.testing.assert_array_equal(fs.features["group_index"], np.arange(6))


def test_example_llm_evals_counts_agree() -> None:
    """The counted file equals the per-sample file aggregated by model x task."""
    by_cell = features_from_config(
        example_path("llm_evals"),
        observed="score",
        categorical=["model", "task"],
        aggregate=True,
    )
    counted = features_from_config(
        example_path("llm_evals_counts"),
        observed="n_correct",
        n_total="n_total",
        categorical=["model", "task"],
    )
    for key in ["obs", "n_total", "model_index", "task_index"]:
        np.testing.assert_array_equal(by_cell.features[key], counted.features[key])


def test_example_nested_and_binary() -> None:
    """Nested 3x4x5 counts and the 4x3 binary table encode as expected."""
    fs = features_from_config(
        example_path("nested_evals"),
        observed="n_correct",
        n_total="n_total",
        categorical=["group", "subgroup", "subsubgroup"],
    )
    truth = json.loads((EXAMPLES_DIR / "true_values.json").read_text())
    levels = truth["datasets"]["nested_evals"]["levels"]
    assert [fs.features[f"num_{k}"] for k in levels] == [3, 4, 5]
    for key, labels in levels.items():
        assert fs.coords[key] == labels  # truth arrays use the default order
    assert len(fs.features["obs"]) == 60
    assert (fs.features["n_total"] == 30).all()
    fs = features_from_config(
        example_path("binary_evals"),
        observed="n_correct",
        n_total="n_total",
        categorical=["model", "task"],
    )
    assert fs.features["num_model"] == 4 and fs.features["num_task"] == 3
    assert (fs.features["obs"] <= 50).all()


def test_example_grader_scores() -> None:
    """Ordinal scores use 0..10 and every class appears."""
    fs = features_from_config(
        example_path("grader_scores"),
        observed="score",
        categorical=["grader", "llm"],
        num_classes=11,
    )
    assert fs.features["num_grader"] == 4 and fs.features["num_llm"] == 5
    assert len(fs.features["obs"]) == 600
    assert set(fs.features["obs"].tolist()) == set(range(11))


def test_hydra_style_config_values() -> None:
    """OmegaConf lists and dicts (as Hydra passes them) work as arguments."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(
        {
            "observed": "score",
            "categorical": ["group"],
            "rename": {"model": "group"},
            "aggregate": True,
            "filters": {"task": ["arith", "code"]},
            "category_order": {"group": [f"model-{c}" for c in "fedcba"]},
        }
    )
    fs = features_from_config(example_path("llm_evals"), **cfg)
    np.testing.assert_array_equal(fs.features["n_total"], [80] * 6)
    np.testing.assert_array_equal(fs.features["group_index"], [5, 4, 3, 2, 1, 0])
