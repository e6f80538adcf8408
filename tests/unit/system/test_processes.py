"""Which process owns a run, whether it lives, and helpers that die with their parent.

Real processes only: subprocesses started, killed with SIGKILL and reaped (or
left as zombies) by the test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest

import hibayes
from hibayes.system.processes import Liveness, ProcessId

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX processes")

_SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]


def _pid_of_started(pid: int) -> ProcessId:
    """The ProcessId a child would record for itself (read from outside)."""
    from hibayes.system.processes import _start_token

    return replace(ProcessId.current(), pid=pid, started=_start_token(pid))


def test_this_process_is_alive_and_round_trips() -> None:
    me = ProcessId.current()
    assert me.liveness() is Liveness.ALIVE
    assert ProcessId.from_dict(me.as_dict()) == me


def test_a_killed_process_is_gone_reaped_or_zombie() -> None:
    proc = subprocess.Popen(_SLEEP)
    owner = _pid_of_started(proc.pid)
    assert owner.liveness() is Liveness.ALIVE
    os.kill(proc.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while owner.liveness() is not Liveness.GONE and time.monotonic() < deadline:
        time.sleep(0.05)  # not reaped yet: a zombie, which is gone too
    assert owner.liveness() is Liveness.GONE
    proc.wait()
    assert owner.liveness() is Liveness.GONE


def test_a_reused_pid_is_not_the_recorded_process() -> None:
    proc = subprocess.Popen(_SLEEP)
    try:
        live = _pid_of_started(proc.pid)
        if live.started is None:
            pytest.skip("no process start time on this platform (no /proc, no psutil)")
        earlier = replace(live, started=live.started + "0")
        assert live.liveness() is Liveness.ALIVE
        assert earlier.liveness() is Liveness.GONE
    finally:
        proc.kill()
        proc.wait()


def test_another_hosts_process_cannot_be_judged_here() -> None:
    other = replace(ProcessId.current(), host="some-other-node")
    assert other.liveness() is Liveness.ELSEWHERE


@pytest.mark.parametrize("prctl", [True, False], ids=["pdeathsig", "poll-only"])
def test_a_child_dies_with_its_parent_killed_hard(tmp_path, prctl: bool) -> None:
    """SIGKILL the middle of parent -> child: the child, which called
    die_with_parent, ends within seconds (by prctl, or by the poll alone)."""
    script = tmp_path / "family.py"
    script.write_text(
        textwrap.dedent(f"""
        import subprocess, sys, time
        if sys.argv[1] == "middle":
            child = subprocess.Popen([sys.executable, __file__, "child"])
            print(child.pid, flush=True)
            time.sleep(120)
        else:
            import hibayes.system.processes as p
            if not {prctl}:
                p._PR_SET_PDEATHSIG = 0  # prctl(0, ...) is refused: the poll is left
            p.die_with_parent()
            print("ready", flush=True)
            time.sleep(120)
        """)
    )
    middle = subprocess.Popen(
        [sys.executable, str(script), "middle"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(hibayes.__file__).parents[1])},
    )
    child_pid = int(middle.stdout.readline())
    assert middle.stdout.readline().strip() == "ready"
    child = _pid_of_started(child_pid)
    assert child.liveness() is Liveness.ALIVE
    os.kill(middle.pid, signal.SIGKILL)
    middle.wait()
    killed = time.monotonic()
    while child.liveness() is not Liveness.GONE and time.monotonic() - killed < 10:
        time.sleep(0.02)
    survived = time.monotonic() - killed
    if child.liveness() is not Liveness.GONE:
        os.kill(child_pid, signal.SIGKILL)  # the test's own grandchild
    assert survived < 3, f"the child outlived its parent by {survived:.1f} s"
