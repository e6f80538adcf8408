"""Tables read as written, in every format load_table reads.

Category labels stay the text in the file (no number parsing, no NA guessing),
only a truly empty cell is missing (an error naming the row), and duplicate
column names and nested values are refused naming the column (and row).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hibayes.data import DataError, features_from_config, load_table

# Labels that a number parser or NA guesser would merge or blank out.
LABELS = ["1", "1.0", "01", "NA", "None", "null", "nan", "N/A", "2", "10"]


def _write(path: Path, columns: dict[str, list]) -> None:
    """Write a table of text cells in the format the suffix names."""
    df = pd.DataFrame(columns)
    suffix = path.suffix
    if suffix == ".csv":
        df.to_csv(path, index=False)
    elif suffix == ".tsv":
        df.to_csv(path, index=False, sep="\t")
    elif suffix == ".parquet":
        pq.write_table(
            pa.table({k: pa.array(v, pa.string()) for k, v in columns.items()}), path
        )
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in df.to_dict("records")))
    else:
        path.write_text(json.dumps(df.to_dict("records")))


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet", ".jsonl", ".json"])
def test_category_labels_are_kept_exactly(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"labels{suffix}"
    _write(path, {"grader": LABELS, "y": ["1", "0"] * 5})
    table = load_table(path)
    assert table["grader"].tolist() == LABELS
    fs = features_from_config(path, observed="y", categorical=["grader"])
    # Ten distinct levels; labels that spell numbers sort numerically.
    # (equal numbers in the order of their text).
    assert fs.coords["grader"] == [
        "01",
        "1",
        "1.0",
        "2",
        "10",
        "N/A",
        "NA",
        "None",
        "nan",
        "null",
    ]
    labels = [fs.coords["grader"][i] for i in fs.features["grader_index"]]
    assert labels == LABELS
    np.testing.assert_array_equal(fs.features["obs"], [1, 0] * 5)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet", ".jsonl", ".json"])
def test_only_an_empty_cell_is_missing(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"gap{suffix}"
    if suffix in (".jsonl", ".json"):  # JSON's empty value is null
        records = [{"g": "NA", "y": 1}, {"g": "a", "y": 0}, {"g": None, "y": 1}]
        text = (
            "".join(json.dumps(r) + "\n" for r in records)
            if suffix == ".jsonl"
            else json.dumps(records)
        )
        path.write_text(text)
    elif suffix == ".parquet":
        pq.write_table(pa.table({"g": ["NA", "a", None], "y": [1, 0, 1]}), path)
    else:
        sep = "\t" if suffix == ".tsv" else ","
        path.write_text(f"g{sep}y\nNA{sep}1\na{sep}0\n{sep}1\n")
    with pytest.raises(DataError) as info:
        features_from_config(path, observed="y", categorical=["g"])
    msg = str(info.value)
    assert msg.startswith(f"{path}: column 'g': missing value in categorical column")
    assert "e.g. data row 2 (0-based)" in msg and "(1 offending row)" in msg


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet", ".jsonl", ".json"])
def test_duplicate_column_names_are_refused(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"dup{suffix}"
    if suffix in (".csv", ".tsv"):
        sep = "\t" if suffix == ".tsv" else ","
        path.write_text(
            sep.join(["model", "score", "model"])
            + "\n"
            + sep.join(["a", "1", "b"])
            + "\n"
        )
        where = "appears twice in the header (columns 1 and 3)"
    elif suffix == ".parquet":
        pq.write_table(
            pa.table(
                [pa.array(["a"]), pa.array([1]), pa.array(["b"])],
                names=["model", "score", "model"],
            ),
            path,
        )
        where = "appears twice in the header (columns 1 and 3)"
    else:
        record = '{"model": "a", "score": 1, "model": "b"}'
        ok = '{"model": "a", "score": 1}'
        path.write_text(
            f"{ok}\n{record}\n" if suffix == ".jsonl" else f"[{ok}, {record}]"
        )
        where = "named twice in data row 1 (0-based)"
    with pytest.raises(DataError) as info:
        load_table(path)
    assert str(info.value).startswith(f"{path}: column 'model': {where}")


@pytest.mark.parametrize(
    ("suffix", "kind"),
    [(".jsonl", "a JSON object"), (".json", "a list"), (".parquet", "nested values")],
)
def test_nested_values_are_refused(tmp_path: Path, suffix: str, kind: str) -> None:
    path = tmp_path / f"nested{suffix}"
    if suffix == ".jsonl":
        path.write_text('{"model": "a", "meta": 1}\n{"model": "b", "meta": {"k": 2}}\n')
    elif suffix == ".json":
        path.write_text('[{"model": "a", "meta": 1}, {"model": "b", "meta": [1, 2]}]')
    else:
        pq.write_table(pa.table({"model": ["a", "b"], "meta": [None, [1, 2]]}), path)
    with pytest.raises(DataError) as info:
        load_table(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: column 'meta': nested value")
    assert kind in msg and "data row 1 (0-based)" in msg
    assert "flatten it into columns" in msg


def test_numeric_roles_read_from_text(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("g,k,n,x,flag\na,3,10,-1.5,true\nb,4,10,2e-1,FALSE\n")
    fs = features_from_config(
        path,
        observed="k",
        n_total="n",
        categorical=["g"],
        continuous=["x"],
        passthrough=["flag"],
    )
    assert fs.features["obs"].dtype == np.int64
    np.testing.assert_array_equal(fs.features["n_total"], [10, 10])
    np.testing.assert_array_equal(fs.features["x"], [-1.5, 0.2])
    np.testing.assert_array_equal(fs.features["flag"], [1, 0])
    # "NA" in a count column is not guessed to be missing: it is not a number.
    path.write_text("g,k,n\na,3,10\nb,NA,10\n")
    with pytest.raises(
        DataError,
        match="non-numeric value in observed column; e.g. "
        "data row 1 \\(0-based\\) has value 'NA'",
    ):
        features_from_config(path, observed="k", n_total="n", categorical=["g"])


def test_filters_match_text_cells_as_written_and_as_numbers(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("size,y\n0.50,1\n1,0\n01,1\n")
    fs = features_from_config(path, observed="y", filters={"size": [0.5, "01"]})
    np.testing.assert_array_equal(fs.features["obs"], [1, 1])
    assert fs.table["size"].tolist() == ["0.50", "01"]
