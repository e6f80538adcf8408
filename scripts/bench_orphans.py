"""How long a sweep's helper processes outlive a SIGKILLed sweep; prints one table.

Starts ``python -m hibayes.fit -m`` on the shipped example (two jobs: a short
one, then a long one), waits until the second job is sampling (the first job's
plots have gone to the plot worker, so the worker and multiprocessing's resource
tracker are running), notes every descendant process of the sweep, SIGKILLs the
sweep, and times how long each descendant stays alive (a zombie counts as gone).
Linux only (reads /proc).

    python scripts/bench_orphans.py [--limit 300] [--repeats 1]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _stat(pid: int) -> tuple[str, int, str] | None:
    """(state, ppid, start ticks) of a process, or None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), fields[19]


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def _descendants(root: int) -> dict[int, tuple[str, str]]:
    """pid -> (start ticks, what it is) for every descendant of ``root``."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))):
            parents[int(entry.name)] = stat[1]
    found, frontier = {}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                stat = _stat(pid)
                if stat:
                    found[pid] = (stat[2], _kind(_cmdline(pid)))
                    frontier.append(pid)
    return found


def _kind(cmdline: str) -> str:
    if "resource_tracker" in cmdline:
        return "resource tracker"
    if "multiprocessing" in cmdline or "spawn_main" in cmdline:
        return "plot worker (spawned)"
    return cmdline[:60]


def _alive(pid: int, ticks: str) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[2] == ticks and stat[0] != "Z"


def one_run(limit: float) -> list[tuple[str, float | None]]:
    """Kill one sweep mid-way; (kind, seconds survived or None past ``limit``)."""
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "sweep.log"
        with open(log, "w") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "hibayes.fit",
                    "-m",
                    "fit=quick",
                    "fit.warmup=100",
                    "fit.samples=100,200000",
                    "model.prior_sigma_group_scale=0.4",  # not the model's own sweep
                    "fit.prior_samples=0",
                    "cv=psis",
                    "checks.sensitivity=false",
                    f"tracking.uri=sqlite:///{tmp}/mlflow.db",
                    "hydra.sweep.dir=sweep",
                ],
                cwd=tmp,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 600
        while not re.search(r"\[job 2/2\][^\n]*: sampling", log.read_text()):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise RuntimeError("the sweep never reached job 2:\n" + log.read_text())
            time.sleep(0.2)
        time.sleep(1.0)  # the worker is drawing job 1's plots or waiting
        children = _descendants(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        killed = time.monotonic()
        proc.wait()
        survived: dict[int, float | None] = {pid: None for pid in children}
        while time.monotonic() - killed < limit and None in survived.values():
            for pid, (ticks, _) in children.items():
                if survived[pid] is None and not _alive(pid, ticks):
                    survived[pid] = time.monotonic() - killed
            time.sleep(0.05)
        for pid, seconds in survived.items():
            if seconds is None:  # past the limit: end what this script started
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        return [(children[pid][1], survived[pid]) for pid in sorted(children)]


def main() -> None:
    """Run the measurement and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=float, default=300.0)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    print("| run | process | alive after the sweep's SIGKILL (s) |")
    print("|---|---|---|")
    for run in range(1, args.repeats + 1):
        for kind, seconds in one_run(args.limit):
            shown = (
                f"> {args.limit:.0f} (killed)" if seconds is None else f"{seconds:.2f}"
            )
            print(f"| {run} | {kind} | {shown} |")


if __name__ == "__main__":
    main()
