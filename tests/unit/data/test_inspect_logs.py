"""Inspect eval logs as data: real .eval/.json logs written with inspect_ai's own API.

The logs are hand-built ``EvalLog``/``EvalSample``/``Score`` objects (no model
calls, no network) written with ``inspect_ai.log.write_eval_log``.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

if not os.environ.get("CI"):  # CI installs .[dev]: there a missing package must fail
    pytest.importorskip("inspect_ai")

from helpers.server import run_hibayes
from hydra import compose, initialize_config_dir
from inspect_ai.log import (
    EvalConfig,
    EvalDataset,
    EvalError,
    EvalLog,
    EvalSample,
    EvalSpec,
    write_eval_log,
)
from inspect_ai.scorer import Score

from hibayes.config import load_data
from hibayes.data import DataError, example_path, load_table
from hibayes.data.inspect_logs import (
    INSPECT_COLUMNS,
    features_from_inspect_logs,
    inspect_log_files,
    read_inspect_logs,
)

ROOT = Path(__file__).resolve().parents[3]
CONF = ROOT / "hibayes" / "conf"


def eval_log(model: str, task: str, samples: list[EvalSample]) -> EvalLog:
    """A finished Inspect log of one model on one task."""
    spec = EvalSpec(
        created="2026-01-01T00:00:00+00:00",
        task=task,
        model=model,
        dataset=EvalDataset(name=task, samples=len(samples)),
        config=EvalConfig(),
    )
    return EvalLog(status="success", eval=spec, samples=samples)


def sample(
    i: int | str, value, epoch: int = 1, scorer: str = "match", **metadata
) -> EvalSample:
    """One scored sample."""
    return EvalSample(
        id=i,
        epoch=epoch,
        input="question",
        target="answer",
        scores={scorer: Score(value=value)},
        metadata=metadata,
    )


@pytest.fixture(scope="module")
def llm_logs(tmp_path_factory) -> Path:
    """The shipped llm_evals example as 30 .eval logs, one per model x task."""
    folder = tmp_path_factory.mktemp("logs")
    table = load_table(example_path("llm_evals"))
    for (model, task), rows in table.groupby(["model", "task"]):
        samples = [
            sample(
                r.sample_id,
                r.score,
                epoch=int(r.epoch),
                difficulty="hard" if n % 2 else "easy",
                source={"split": "test"},
            )
            for n, r in enumerate(rows.itertuples())
        ]
        path = folder / task / f"2026-01-01T00-00-00+00-00_{task}_{model}.eval"
        write_eval_log(eval_log(model, task, samples), str(path))
    return folder


def composed(*overrides: str):
    """conf/config.yaml composed with overrides."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def test_reads_one_row_per_sample_with_metadata(llm_logs):
    files = inspect_log_files(llm_logs)
    assert len(files) == 30 and all(f.suffix == ".eval" for f in files)
    table = read_inspect_logs(llm_logs, metadata=["difficulty", "source.split"])
    assert list(table.columns) == [*INSPECT_COLUMNS, "difficulty", "source.split"]
    source = load_table(example_path("llm_evals"))
    assert len(table) == len(source) == 1200
    assert set(table["score"]) == {0.0, 1.0}
    assert table["scorer"].unique().tolist() == ["match"]
    assert set(table["difficulty"]) == {"easy", "hard"}
    assert set(table["source.split"]) == {"test"}
    merged = table.merge(
        source, on=["model", "task", "sample_id"], suffixes=("", "_csv")
    )
    assert len(merged) == 1200
    assert (merged["score"] == merged["score_csv"].map({"C": 1.0, "I": 0.0})).all()


def test_preset_gives_the_same_features_as_the_csv_preset(llm_logs):
    from_logs = load_data(composed("data=inspect", f"data.path={llm_logs}").data)
    from_csv = load_data(composed("data=llm_evals").data)
    assert (
        from_logs.coords["group"]
        == from_csv.coords["group"]
        == [f"model-{c}" for c in "abcdef"]
    )
    np.testing.assert_array_equal(from_logs.features["obs"], from_csv.features["obs"])
    np.testing.assert_array_equal(
        from_logs.features["n_total"], from_csv.features["n_total"]
    )


def test_preset_by_model_and_task(llm_logs):
    cfg = composed(
        "data=inspect",
        f"data.path={llm_logs}",
        "data.categorical=[model,task]",
        "~data.rename",
        "model=linear_group_binomial",
    )
    data = load_data(cfg.data)
    assert data.features["num_model"] == 6 and data.features["num_task"] == 5
    assert data.features["n_total"].tolist() == [40] * 30


def test_preset_ordinal_scores_for_the_ordered_logistic_model(tmp_path):
    rng = np.random.default_rng(0)
    for model in ("m1", "m2"):
        for task in ("essay", "proof"):
            samples = [sample(i, int(v)) for i, v in enumerate(rng.integers(0, 11, 20))]
            write_eval_log(
                eval_log(model, task, samples), str(tmp_path / f"{model}-{task}.eval")
            )
    cfg = composed(
        "data=inspect",
        f"data.path={tmp_path}",
        "data.inspect.ordinal=true",
        "data.aggregate=false",
        "data.categorical=[model,task]",
        "~data.rename",
        "model=ordered_logistic_model",
        "model.main_effects=[model,task]",
    )
    data = load_data(cfg.data)
    assert data.features["num_classes"] == 11 and len(data.features["obs"]) == 80
    import numpyro

    from hibayes.config import model_spec

    spec = model_spec(cfg.model, "ordered_logistic_model")
    with numpyro.handlers.seed(rng_seed=0):
        spec.factory(**spec.hyperparameters)(
            data.features
        )  # the model reads these features


def test_json_logs_and_lists_of_paths(tmp_path):
    one = tmp_path / "2026-02-01T10-00-00+00-00_qa_x.json"
    two = tmp_path / "elsewhere" / "mine.eval"
    write_eval_log(
        eval_log("openai/gpt-x", "qa", [sample(1, "C"), sample(2, "I")]), str(one)
    )
    write_eval_log(
        eval_log("openai/gpt-y", "qa", [sample(1, True), sample(2, "N")]), str(two)
    )
    assert inspect_log_files(tmp_path) == sorted([one, two])
    table = read_inspect_logs([one, two])
    assert table[["model", "sample_id", "score"]].values.tolist() == [
        ["openai/gpt-x", "1", 1.0],
        ["openai/gpt-x", "2", 0.0],
        ["openai/gpt-y", "1", 1.0],
        ["openai/gpt-y", "2", 0.0],
    ]
    assert table["log_file"].tolist() == [one.name, one.name, two.name, two.name]


def test_numeric_scores_are_normalised_or_kept_as_classes(tmp_path):
    path = tmp_path / "graded.eval"
    samples = [
        sample(i, v, epoch=e) for i, v in enumerate([0, 3, 7, 10]) for e in (1, 2)
    ]
    write_eval_log(eval_log("m", "essay", samples), str(path))
    with pytest.raises(DataError, match=r"score_range.*observed 0\.\.10"):
        read_inspect_logs(path)
    scaled = read_inspect_logs(path, score_range=[0, 10]).sort_values(
        ["sample_id", "epoch"]
    )
    assert scaled["score"].tolist() == [0.0, 0.0, 0.3, 0.3, 0.7, 0.7, 1.0, 1.0]
    assert scaled["epoch"].tolist() == [1, 2] * 4
    classes = read_inspect_logs(path, ordinal=True).sort_values(["sample_id", "epoch"])
    assert classes["score"].dtype == np.int64
    assert classes["score"].tolist() == [0, 0, 3, 3, 7, 7, 10, 10]
    shifted = read_inspect_logs(path, ordinal=True, score_range=[-1, 10])
    assert sorted(shifted["score"]) == [1, 1, 4, 4, 8, 8, 11, 11]
    with pytest.raises(DataError, match=r"outside score_range \[0, 5\].*graded.eval"):
        read_inspect_logs(path, score_range=[0, 5])
    data = features_from_inspect_logs(
        path,
        options={"ordinal": True},
        observed="score",
        categorical=["model"],
        num_classes=11,
    )
    assert data.features["num_classes"] == 11 and data.features["obs"].max() == 10


def test_letter_grades_partial_credit_and_score_map(tmp_path):
    path = tmp_path / "letters.eval"
    write_eval_log(
        eval_log("m", "t", [sample(1, "C"), sample(2, "P"), sample(3, "I")]), str(path)
    )
    assert read_inspect_logs(path)["score"].tolist() == [1.0, 0.5, 0.0]
    with pytest.raises(DataError, match="score_map"):
        read_inspect_logs(path, ordinal=True)
    mapped = read_inspect_logs(path, ordinal=True, score_map={"I": 0, "P": 1, "C": 2})
    assert mapped["score"].tolist() == [2, 1, 0]
    # Partial credit cannot be counted as a success: the feature builder says where.
    with pytest.raises(DataError, match="invalid score"):
        features_from_inspect_logs(
            path, observed="score", categorical=["model"], aggregate=True
        )


def test_several_scorers_need_a_choice(tmp_path, caplog):
    path = tmp_path / "two.eval"
    both = EvalSample(
        id=1,
        epoch=1,
        input="q",
        target="a",
        scores={"match": Score(value="C"), "judge": Score(value="I")},
    )
    only_match = sample(2, "I", scorer="match")
    write_eval_log(eval_log("m", "t", [both, only_match]), str(path))
    with pytest.raises(DataError, match=r"several scorers \['judge', 'match'\]"):
        read_inspect_logs(path)
    assert read_inspect_logs(path, scorer="match")["score"].tolist() == [1.0, 0.0]
    with caplog.at_level(logging.WARNING, logger="hibayes.data.inspect_logs"):
        judged = read_inspect_logs(path, scorer="judge")
    assert judged["sample_id"].tolist() == ["1"]
    assert "left out 1 sample(s)" in caplog.text
    with pytest.raises(DataError, match="no samples scored by scorer 'nope'"):
        read_inspect_logs(path, scorer="nope")


def test_errored_and_unscored_samples_are_left_out(tmp_path, caplog):
    path = tmp_path / "partial.eval"
    failed = sample(2, "C")
    failed.error = EvalError(message="boom", traceback="", traceback_ansi="")
    unscored = sample(3, math.nan)
    no_scores = EvalSample(id=4, epoch=1, input="q", target="a")
    write_eval_log(
        eval_log("m", "t", [sample(1, "C"), failed, unscored, no_scores]), str(path)
    )
    with caplog.at_level(logging.WARNING, logger="hibayes.data.inspect_logs"):
        table = read_inspect_logs(path)
    assert table["sample_id"].tolist() == ["1"]
    assert "left out 3 sample(s)" in caplog.text


def test_bad_inputs_name_the_file_sample_or_key(tmp_path):
    with pytest.raises(DataError, match="no such Inspect log"):
        read_inspect_logs(tmp_path / "missing")
    (tmp_path / "table.csv").write_text("a\n1\n")
    with pytest.raises(DataError, match="expected a .eval or .json"):
        read_inspect_logs(tmp_path / "table.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no Inspect logs"):
        read_inspect_logs(tmp_path / "empty")
    (tmp_path / "broken.eval").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="broken.eval: cannot read as an Inspect log"):
        read_inspect_logs(tmp_path / "broken.eval")
    path = tmp_path / "meta.eval"
    write_eval_log(
        eval_log("m", "t", [sample("q-7", "C", level=1), sample("q-8", "I")]), str(path)
    )
    with pytest.raises(
        DataError, match=r"meta.eval: sample 'q-8' epoch 1: no metadata field"
    ):
        read_inspect_logs(path, metadata=["level"])
    with pytest.raises(DataError, match=r"\['score'\] clash with columns"):
        read_inspect_logs(path, metadata=["score"])
    with pytest.raises(DataError, match=r"score value \{'a': 1\}"):
        write_eval_log(
            eval_log("m", "t", [sample(1, {"a": 1})]), str(tmp_path / "d.eval")
        )
        read_inspect_logs(tmp_path / "d.eval")
    with pytest.raises(DataError, match="unknown data.inspect option"):
        features_from_inspect_logs(path, options={"scorrer": "x"}, observed="score")


def test_unknown_reader_is_refused(llm_logs):
    with pytest.raises(ValueError, match="data.reader must be 'table' or 'inspect'"):
        load_data(
            composed("data=inspect", f"data.path={llm_logs}", "data.reader=excel").data
        )


def test_inspect_logs_table_is_a_dataframe_mlflow_can_profile(llm_logs):
    from hibayes.tracking.datasets import dataset_input, frame_digest

    table = load_data(composed("data=inspect", f"data.path={llm_logs}").data).table
    assert isinstance(table, pd.DataFrame)
    entity = dataset_input(
        table,
        name="logs",
        source=str(llm_logs),
        digest=frame_digest(table),
        context="training",
    )
    assert entity.dataset.digest


@pytest.mark.slow
def test_cli_fits_inspect_logs(llm_logs, tmp_path):
    done = run_hibayes(
        tmp_path,
        "data=inspect",
        f"data.path={llm_logs}",
        "fit=quick",
        "tracking=none",
        f"hydra.run.dir={tmp_path}/out",
        env={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "out"
    assert {"idata.nc", "summary.csv", "metrics.json"} <= {
        p.name for p in out.iterdir()
    }
    summary = pd.read_csv(out / "summary.csv", index_col=0)
    assert "group_effects[model-a]" in summary.index
    assert "elpd_loo" in done.stderr + done.stdout
