"""Issue 19: a full output disk fails the fit honestly, through the real CLI.

The job folder is on a small tmpfs that this test mounts (root only; CI runs as
root and sets ``HIBAYES_TEST_TMPFS=1``, under which a missing capability fails
instead of skipping). The SQLite store and its artifacts are outside it, so the
store stays healthy while the disk is full. Each case asserts the exit status,
the one line ``error: cannot write <path>: <reason>``, the run FAILED with the
error on it, no run RUNNING, no FINISHED run without its contract, and no
partial file left on disk.

Sizes of a ``SHORT_FIT`` of the shipped example (2 chains x 100 draws), measured
2026-12-02; tmpfs counts whole 4 KiB pages per file:

| file | bytes | pages |
|---|---|---|
| .hydra/*.yaml (3), config.yaml, overrides.yaml, fit.log | 150-4,037 each | 6-7 |
| idata.nc | 215,325 | 53 |
| summary.csv, loo_pointwise.csv, metrics.json | 3,341; 739; 1,092 | 3 |
| plots/trace.png (drawn first), forest, ppc, pareto_k, loo_pit | 303,317; 24-35 k | 75; 7-9 each |

So 128 KiB holds the files written before sampling and not idata.nc, and
384 KiB holds everything up to the plots (about 260 KiB) and not trace.png.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from pathlib import Path

import pytest
from helpers.server import SHORT_FIT, all_runs, artifact_files, run_hibayes

from hibayes.outputs.contract import ALWAYS, TAGS_FILE
from hibayes.system.atomic import is_temporary

pytestmark = pytest.mark.slow

NO_SPACE = "No space left on device"
# Every plot the shipped example's fit draws (its contract: hibayes.outputs.contract).
PLOTS = {f"plots/{n}.png" for n in ("trace", "forest", "ppc", "pareto_k", "loo_pit")}


@pytest.fixture
def small_disk(tmp_path):
    """Mount a tmpfs of a given size under ``tmp_path``; unmounted afterwards."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        where = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
        where.mkdir()
        reason = None
        if os.geteuid() != 0:
            reason = "mounting a tmpfs needs root (CI runs as root)"
        else:
            done = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                reason = f"cannot mount a tmpfs: {done.stderr.strip()}"
        if reason is not None:
            if os.environ.get("HIBAYES_TEST_TMPFS"):
                pytest.fail(f"HIBAYES_TEST_TMPFS is set but {reason}")
            pytest.skip(reason)
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fit(workdir: Path, *args: str):
    return run_hibayes(
        workdir,
        *SHORT_FIT,
        "checks.sensitivity=false",
        f"tracking.uri=sqlite:///{workdir}/mlflow.db",
        *args,
    )


def _client(workdir: Path):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{workdir}/mlflow.db")


def _error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr[-3000:]
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def _no_partial_files(root: Path) -> None:
    left = [p for p in root.rglob("*") if is_temporary(p)]
    assert left == [], left


def _check_store(workdir: Path) -> list:
    """No run RUNNING; every FINISHED fit holds its contract; FAILED ones say why."""
    client = _client(workdir)
    runs = all_runs(client)
    assert [r.info.run_name for r in runs if r.info.status == "RUNNING"] == []
    for run in runs:
        if "hibayes.n_jobs" in run.data.tags:  # a sweep's parent
            continue
        files = artifact_files(client, run.info.run_id)
        if run.info.status == "FINISHED":
            assert set(ALWAYS) | {"loo_pointwise.csv"} | PLOTS <= files, (
                run.info.run_name
            )
        else:
            assert run.info.status == "FAILED", run.info.status
            assert "cannot write" in run.data.tags["hibayes.error"]
            assert NO_SPACE in run.data.tags["hibayes.error"]
            assert "traceback.txt" in files
    return runs


def test_disk_full_while_idata_is_written(tmp_path, small_disk):
    """The earlier files fit, idata.nc does not: FAILED, one line, nothing half-written."""
    out = small_disk("128k") / "out"
    done = _fit(tmp_path, f"hydra.run.dir={out}")
    assert done.returncode == 1, done.stderr[-3000:]
    assert _error_lines(done.stderr) == [
        f"error: cannot write {out}/idata.nc: {NO_SPACE}"
    ]
    (run,) = _check_store(tmp_path)
    assert run.info.status == "FAILED"
    assert (out / "config.yaml").is_file()  # written before: the sizing holds
    assert not (out / "idata.nc").exists()
    _no_partial_files(out)
    # The partial file's space came back: the traceback is on disk as well.
    assert "CannotWrite" in (out / "traceback.txt").read_text()


def test_disk_full_at_plot_time(tmp_path, small_disk):
    """Everything but the plots fits: the run fails instead of ending FINISHED."""
    out = small_disk("384k") / "out"
    done = _fit(tmp_path, f"hydra.run.dir={out}")
    assert done.returncode == 1, done.stderr[-3000:]
    assert _error_lines(done.stderr) == [
        f"error: cannot write {out}/plots/trace.png: {NO_SPACE}"
    ]
    (run,) = _check_store(tmp_path)
    assert run.info.status == "FAILED"
    # Written before the plots (the sizing holds); tags.json comes once the run is
    # recorded, after them.
    for name in set(ALWAYS) - {TAGS_FILE}:
        assert (out / name).stat().st_size > 0, name
    assert not (out / TAGS_FILE).exists()
    assert not (out / "plots" / "trace.png").exists()
    _no_partial_files(out)


def test_disk_already_full_when_the_fit_starts(tmp_path, small_disk):
    """Room for Hydra's own files and little more: the fit stops before sampling,
    its run (opened meanwhile) FAILED, the log file's failure said once."""
    disk = small_disk("64k")
    (disk / "filler").write_bytes(bytes(48 * 1024))  # 16 KiB left: 4 pages
    out = disk / "out"
    done = _fit(tmp_path, f"hydra.run.dir={out}")
    assert done.returncode == 1, done.stderr[-3000:]
    (line,) = _error_lines(done.stderr)
    assert re.fullmatch(
        rf"error: cannot write {re.escape(str(out))}/(config|overrides)\.yaml: "
        + NO_SPACE,
        line,
    ), line
    assert "--- Logging error ---" not in done.stderr
    (run,) = _check_store(tmp_path)
    assert run.info.status == "FAILED"
    assert "hibayes.structure_key" not in run.data.tags  # nothing was sampled
    _no_partial_files(out)


def test_disk_full_in_a_sweep_fails_that_fit_and_the_sweep_goes_on(
    tmp_path, small_disk
):
    """Room for one fit (about 700 KiB) and not two: the second fails, the sweep
    ends, its failure summary names the fit, and every run is ended."""
    sweep = small_disk("840k") / "sweep"
    done = _fit(
        tmp_path,
        f"hydra.sweep.dir={sweep}",
        "model.prior_sigma_group_scale=0.1,0.4",
        "-m",  # last: Hydra takes one run of overrides
    )
    assert done.returncode == 1, done.stderr[-3000:]
    (summary,) = _error_lines(done.stderr)
    failed = [line for line in done.stderr.splitlines() if "cannot write" in line]
    assert summary.startswith("error: ") and "of 2 fits failed" in summary
    assert failed and all(NO_SPACE in line for line in failed), done.stderr[-3000:]
    runs = _check_store(tmp_path)
    children = [r for r in runs if "hibayes.n_jobs" not in r.data.tags]
    assert len(children) == 2
    statuses = sorted(r.info.status for r in children)
    assert "FAILED" in statuses, statuses
    for run in children:
        if run.info.status == "FAILED":
            assert run.info.run_name in done.stderr
    _no_partial_files(sweep)
