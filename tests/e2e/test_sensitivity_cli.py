"""Power-scaling sensitivity through `python -m hibayes.fit`: metrics, tag, files."""

from __future__ import annotations

import pytest
from helpers.mlflow_store import all_runs, artifact_paths, client, run_module


@pytest.mark.slow
def test_fit_command_logs_sensitivity(tmp_path):
    """`python -m hibayes.fit`: metrics, tag, sensitivity.csv and the plot on the run."""
    import pandas as pd

    done = run_module("hibayes.fit", tmp_path, "fit=quick")
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = all_runs(tmp_path)
    metrics, tags = run.data.metrics, run.data.tags
    assert metrics["psense_prior_max"] > 0 and metrics["psense_likelihood_max"] > 0
    files = artifact_paths(tmp_path, run.info.run_id)
    assert {"sensitivity.csv", "plots/sensitivity.png"} <= files
    local = client(tmp_path).download_artifacts(
        run.info.run_id, "sensitivity.csv", str(tmp_path)
    )
    table = pd.read_csv(local, keep_default_na=False)
    shown = table[table["internal"].astype(str) == "False"]
    assert metrics["psense_prior_max"] == pytest.approx(
        shown["prior"].astype(float).max()
    )
    flagged = shown[shown["diagnosis"] != ""]["parameter"].tolist()
    # The tag names every flagged quantity with its diagnosis, or says none.
    if not flagged:
        assert tags["hibayes.sensitivity"] == "none"
    for name, verdict in zip(
        flagged[:20], shown["diagnosis"][shown["diagnosis"] != ""]
    ):
        assert f"{name} ({verdict})" in tags["hibayes.sensitivity"]

    off = tmp_path / "off"
    off.mkdir()
    done = run_module("hibayes.fit", off, "fit=quick", "checks.sensitivity=false")
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = all_runs(off)
    assert "psense_prior_max" not in run.data.metrics
    assert "hibayes.sensitivity" not in run.data.tags
