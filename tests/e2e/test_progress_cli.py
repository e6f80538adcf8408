"""A long fit's progress lines through the real command line."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_cli_fit_shows_progress_when_forced(tmp_path):
    base = [sys.executable, "-m", "hibayes.fit", "fit=quick", "tracking=none"]
    forced = subprocess.run(
        [*base, "fit.progress_after_s=0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert forced.returncode == 0, forced.stderr[-3000:]
    output = forced.stderr + forced.stdout
    lines = [line for line in output.splitlines() if "% (" in line]
    assert len(lines) >= 5, output[-3000:]
    # Each on the fit's stage logger, after the run's name, like the other stages.
    stage = re.compile(
        r"\[hibayes\.fit\]\[INFO\] - two_level_group_binomial .*: "
        r"sampling \d+% \((warmup|draws) \d+ of 200 per chain\), "
        r"\d+ s so far, about .+ left$"
    )
    assert all(stage.search(line) for line in lines), lines
