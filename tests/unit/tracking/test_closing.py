"""tags.json: what a fit gives its run at its end, read back by hibayes.sync."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hibayes.outputs.contract import ALWAYS, TAGS_FILE
from hibayes.tracking.closing import ClosingRecord
from hibayes.tracking.recovery import finished_fit

DATASET = {
    "record": {
        "name": "llm_evals",
        "digest": "0b7a603c",
        "source_type": "local",
        "source": '{"uri": "/data/llm_evals.csv"}',
        "schema": None,
        "profile": '{"num_rows": 40}',
    },
    "digest": "0b7a603c" + "f" * 56,
    "source": "/data/llm_evals.csv",
    "context": "training",
}


def test_written_record_reads_back_equal(tmp_path: Path) -> None:
    tags = {"hibayes.chain_method": "parallel", "hibayes.problems": "R-hat 1.03 > 1.01"}
    path = ClosingRecord(tags, DATASET).write(tmp_path)
    assert path == tmp_path / TAGS_FILE
    assert json.loads(path.read_text()) == {"tags": tags, "dataset": DATASET}
    again = ClosingRecord.read(tmp_path)
    assert again.tags == tags and again.dataset == DATASET
    assert (
        ClosingRecord.read(ClosingRecord(tags).write(tmp_path).parent).dataset is None
    )


@pytest.mark.parametrize(
    "content", [None, "{not json", '{"dataset": null}', '{"tags": [], "dataset": 1}']
)
def test_unreadable_record_is_refused_naming_the_file(
    tmp_path: Path, content: str | None
) -> None:
    if content is not None:
        (tmp_path / TAGS_FILE).write_text(content)
    with pytest.raises(ValueError, match=f"{tmp_path / TAGS_FILE}: not a readable"):
        ClosingRecord.read(tmp_path)


def _finished_folder(out: Path) -> dict:
    metrics = {"elpd_loo": None, "converged": 1.0, "time_total_s": 12.5}
    for name in ALWAYS:
        (out / name).write_text("x\n")
    (out / "metrics.json").write_text(json.dumps(metrics))
    ClosingRecord({"hibayes.cv_method": "psis"}, DATASET).write(out)
    return metrics


def test_a_finished_fit_is_known_by_its_outputs_and_its_tags(tmp_path: Path) -> None:
    metrics = _finished_folder(tmp_path)
    found = finished_fit(tmp_path)
    assert found is not None
    assert found[0] == metrics
    assert found[1].tags == {"hibayes.cv_method": "psis"}
    assert found[1].dataset == DATASET


@pytest.mark.parametrize("tags_file", ["missing", "garbled"])
def test_a_fit_without_readable_tags_is_not_known_finished(
    tmp_path: Path, tags_file: str
) -> None:
    _finished_folder(tmp_path)
    if tags_file == "missing":
        (tmp_path / TAGS_FILE).unlink()
    else:
        (tmp_path / TAGS_FILE).write_text('{"tags": ')
    assert finished_fit(tmp_path) is None
