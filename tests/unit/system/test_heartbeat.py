"""Long stages say so while they run; quick ones print nothing."""

from __future__ import annotations

import threading
import time

from hibayes.system.heartbeat import stage


def test_a_long_stage_says_it_is_running_and_how_long_it_took():
    lines: list[str] = []
    threads: set[str] = set()

    def say(line: str) -> None:
        lines.append(line)
        threads.add(threading.current_thread().name)

    with stage("writing idata.nc", say, after_s=0.05, every_s=0.05):
        time.sleep(0.3)
    assert lines[0].startswith("writing idata.nc: still running")
    assert len(lines) >= 3  # first line, at least one repeat, the end
    assert lines[-1].startswith("writing idata.nc: done in ")
    assert "stage: writing idata.nc" in threads  # said during the stage, not after


def test_a_quick_stage_prints_nothing_and_errors_pass_through():
    lines: list[str] = []
    with stage("summary", lines.append, after_s=5):
        pass
    assert lines == []
    try:
        with stage("summary", lines.append, after_s=5):
            raise ValueError("boom")
    except ValueError as exc:
        assert str(exc) == "boom"
    assert lines == []
    assert not [t for t in threading.enumerate() if t.name.startswith("stage: ")]
