"""Helpers for end-to-end tests: run a hibayes module in a folder with its own SQLite store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def store_uri(workdir: Path) -> str:
    """The tracking URI of the test's store: ``workdir/mlflow.db``."""
    return f"sqlite:///{workdir}/mlflow.db"


def run_module(module: str, workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m <module> args`` in ``workdir``, tracking to ``workdir/mlflow.db``."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": store_uri(workdir)}
    from helpers.server import psis_unless_chosen

    args = psis_unless_chosen(module, args)
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def client(workdir: Path):
    """An MlflowClient on the test's store."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=store_uri(workdir))


def all_runs(workdir: Path) -> list:
    """Every run of the hibayes experiment, oldest first."""
    c = client(workdir)
    exp = c.get_experiment_by_name("hibayes")
    if exp is None:
        return []
    return c.search_runs(
        [exp.experiment_id], max_results=1000, order_by=["attributes.start_time ASC"]
    )


def artifact_paths(workdir: Path, run_id: str, path: str = "") -> set[str]:
    """Every artifact file path of a run, recursively."""
    out = set()
    for item in client(workdir).list_artifacts(run_id, path):
        if item.is_dir:
            out |= artifact_paths(workdir, run_id, item.path)
        else:
            out.add(item.path)
    return out
