"""Secrets never reach what a fit records: params, free text, job-dir files."""

from __future__ import annotations

from pathlib import Path

import pytest

from hibayes.system.redaction import REDACTED, redact, scrub_text, scrub_tree

TOKEN = "s3cr3t-t0ken-value"


@pytest.fixture(autouse=True)
def _secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", TOKEN)


def test_params_by_key_by_value_and_in_urls() -> None:
    out = redact(
        {
            "tracking.api_key": "abc",
            "model.max_tokens": "512",
            "note": f"uses {TOKEN} inside",
            "uri": "http://u:pw99@host:5000/x",
        }
    )
    assert out == {
        "tracking.api_key": REDACTED,
        "model.max_tokens": "512",
        "note": REDACTED,
        "uri": f"http://u:{REDACTED}@host:5000/x",
    }


def test_free_text_keeps_its_shape() -> None:
    text = (
        f"Traceback: cannot reach https://alice:hunter22@mlflow:443 with {TOKEN}\n"
        "tracking.password=letmein99\n- data.path=results.csv\n"
    )
    out = scrub_text(text)
    assert TOKEN not in out and "hunter22" not in out and "letmein99" not in out
    assert "https://alice:***@mlflow:443" in out and "data.path=results.csv" in out
    assert out.count("\n") == text.count("\n")


def test_job_dir_text_files_are_scrubbed_in_place(tmp_path: Path) -> None:
    (tmp_path / ".hydra").mkdir()
    overrides = tmp_path / ".hydra" / "overrides.yaml"
    overrides.write_text(f"- tracking.uri=http://bob:{TOKEN}@host\n- fit.seed=1\n")
    binary = tmp_path / "idata.nc"
    binary.write_bytes(TOKEN.encode())  # not a text file: left alone
    changed = scrub_tree(tmp_path)
    assert changed == [overrides]
    assert TOKEN not in overrides.read_text() and "fit.seed=1" in overrides.read_text()
    assert binary.read_bytes() == TOKEN.encode()
