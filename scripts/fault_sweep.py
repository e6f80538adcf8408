"""Fault-injection figure: a sweep hit by a hard kill, a full disk and a dead server.

    sudo python scripts/fault_sweep.py [--jobs 24] [--workers 2]

Runs ``python -m hibayes.fit -m`` over ``--jobs`` short fits of the shipped example
(joblib, ``--workers`` at once) against a tracking-only ``mlflow server``, with
the sweep folder on a small tmpfs of its own (root only; without root the disk
is not filled and the table says so). While the sweep runs, the script

1. fills the output disk once (after ``--fill-after`` jobs have finished) and
   frees it again once one more job has ended (it failed: its disk was full) or
   60 s have passed;
2. stops the tracking server once (after ``--stop-after`` jobs) for
   ``--outage`` seconds, then starts it again on the same port and store;
3. SIGKILLs one job process mid-fit (after ``--kill-after`` jobs): a joblib
   worker, with the fit it is running;

then runs ``python -m hibayes.sync`` on the sweep folder and prints one table:
jobs finished on disk, runs by status, runs left RUNNING (goal 0), FINISHED runs
missing a metric or an artifact (goal 0), duplicate runs of a job (goal 0), and
what sync did. Exit status 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_sweep import (  # noqa: E402 - a script beside this one
    FILES,
    METRICS,
    PRIORS,
    artifact_files,
    free_port,
    start_server,
)


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _job_worker(sweep_pid: int) -> int | None:
    """A joblib (loky) worker of the sweep: the process running one fit."""
    for pid in _children(sweep_pid):
        if "loky" in _cmdline(pid) and "resource_tracker" not in _cmdline(pid):
            return pid
    return None


def _finished(sweep: Path) -> int:
    """Jobs whose outputs are complete on disk (their metrics.json is written last)."""
    return sum(1 for d in sweep.glob("*/") if (d / "metrics.json").is_file())


def _ended(log: Path) -> int:
    """Jobs that ended, finished or failed: the sweep logs one line for each."""
    try:
        return log.read_text(errors="replace").count(" done] ")
    except OSError:
        return 0


def _mount_tmpfs(path: Path, size_mb: int) -> bool:
    """A tmpfs of its own at ``path`` (root only): a disk the script can fill."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode == 0


def _fill(path: Path) -> Path:
    """Fill the disk holding ``path``; return the filler file."""
    filler = path / "filler.bin"
    free = shutil.disk_usage(path).free
    with open(filler, "wb") as out:
        try:
            out.write(b"\0" * max(free, 0))
            out.flush()
            os.fsync(out.fileno())
        except OSError:
            pass  # full: that is the point
    return filler


def main() -> int:  # noqa: PLR0915 - one timeline, read top to bottom
    """Run the sweep with its faults, repair with sync, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=24, help="a multiple of 3")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--fill-after", type=int, default=3)
    parser.add_argument("--stop-after", type=int, default=8)
    parser.add_argument("--kill-after", type=int, default=14)
    parser.add_argument("--outage", type=float, default=20.0, help="seconds")
    parser.add_argument("--disk-mb", type=int, default=256)
    args = parser.parse_args()
    if args.jobs % PRIORS:
        parser.error(f"--jobs must be a multiple of {PRIORS}")
    work = Path(tempfile.mkdtemp(prefix="hibayes-faults-"))
    (work / "server").mkdir()
    port = free_port()
    server, uri = start_server(work / "server", port)
    sweep = work / "sweep"
    mounted = _mount_tmpfs(sweep, args.disk_mb)
    experiment = f"faults-{args.jobs}-{int(time.time())}"
    command = [
        sys.executable,
        "-m",
        "hibayes.fit",
        "-m",
        "hydra/launcher=joblib",
        f"hydra.launcher.n_jobs={args.workers}",
        "fit=quick",
        "fit.samples=100",
        "fit.warmup=100",
        "fit.prior_samples=0",
        "cv=psis",
        "tracking=server",
        f"tracking.uri={uri}",
        f"tracking.experiment={experiment}",
        f"hydra.sweep.dir={sweep}",
        "runtime.host_devices=2",
        f"fit.seed=range(0,{args.jobs // PRIORS})",
    ]
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "HIBAYES_HOST_DEVICES": "2"}
    events: list[str] = []
    start = time.perf_counter()
    log = open(work / "sweep.log", "w")  # noqa: SIM115 - the sweep writes to it
    proc = subprocess.Popen(command, cwd=work, env=env, stdout=log, stderr=log)
    filler: Path | None = None
    fill_state = "pending" if mounted else "skipped (needs root for a tmpfs)"
    fill_ended_at, filled_at = 0, 0.0
    server_state, outage_end = "pending", 0.0
    kill_state = "pending"
    try:
        while proc.poll() is None:
            time.sleep(0.5)
            now = time.perf_counter() - start
            done, ended = _finished(sweep), _ended(work / "sweep.log")
            if fill_state == "pending" and done >= args.fill_after:
                filler, fill_ended_at, filled_at = _fill(sweep), ended, now
                fill_state = "full"
                events.append(f"{now:5.0f} s: output disk filled ({done} jobs done)")
            elif fill_state == "full" and (
                ended >= fill_ended_at + 1 or now > filled_at + 60
            ):
                assert filler is not None
                filler.unlink()
                fill_state = "done"
                events.append(f"{now:5.0f} s: output disk freed")
            if server_state == "pending" and done >= args.stop_after:
                os.killpg(server.pid, signal.SIGTERM)
                server.wait(timeout=30)
                server_state, outage_end = "down", now + args.outage
                events.append(f"{now:5.0f} s: tracking server stopped ({done} done)")
            elif server_state == "down" and now >= outage_end:
                server, _ = start_server(work / "server", port)
                server_state = "done"
                events.append(f"{now:5.0f} s: tracking server started again")
            if kill_state == "pending" and done >= args.kill_after:
                victim = _job_worker(proc.pid)
                if victim is not None:
                    os.kill(victim, signal.SIGKILL)
                    kill_state = "done"
                    events.append(
                        f"{now:5.0f} s: SIGKILL to job process {victim} ({done} done)"
                    )
        wall = time.perf_counter() - start
        if server_state == "down":  # the sweep ended during the outage
            server, _ = start_server(work / "server", port)
        synced = subprocess.run(
            [sys.executable, "-m", "hibayes.sync", str(sweep), "--uri", uri],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        from mlflow import MlflowClient

        client = MlflowClient(uri)
        exp = client.get_experiment_by_name(experiment)
        runs = client.search_runs([exp.experiment_id], max_results=5000) if exp else []
        children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
        parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
        status: dict[str, int] = {}
        for r in children:
            status[r.info.status] = status.get(r.info.status, 0) + 1
        running = [r for r in runs if r.info.status == "RUNNING"]
        incomplete = [
            r
            for r in children
            if r.info.status == "FINISHED"
            and not (
                METRICS <= set(r.data.metrics)
                and FILES <= artifact_files(client, r.info.run_id)
            )
        ]
        jobs = [r.data.tags.get("hibayes.job_num") for r in children]
        duplicates = len(jobs) - len(set(jobs))
        rows = [
            ("jobs", f"{args.jobs} ({args.workers} joblib workers)"),
            ("sweep exit status", str(proc.returncode)),
            ("wall time of the sweep", f"{wall:.0f} s"),
            ("faults injected", "; ".join(e.split(": ", 1)[1] for e in events)),
            ("output disk", fill_state),
            ("jobs finished on disk", str(_finished(sweep))),
            (
                "child runs by status",
                ", ".join(f"{k} {v}" for k, v in sorted(status.items())),
            ),
            ("parent runs", ", ".join(p.info.status for p in parents) or "none"),
            ("runs left RUNNING (goal 0)", str(len(running))),
            (
                "FINISHED runs missing a metric or artifact (goal 0)",
                str(len(incomplete)),
            ),
            ("duplicate runs of one job (goal 0)", str(duplicates)),
            ("runs recorded for jobs", f"{len(set(jobs))} of {args.jobs}"),
            ("sync", (synced.stdout.strip().splitlines() or ["(no output)"])[0]),
        ]
        print("| quantity | value |\n|---|---|")
        for name, value in rows:
            print(f"| {name} | {value} |")
        print("\nevents:\n  " + "\n  ".join(events))
        print(f"outputs (sweep-outputs/), sweep.log and server.log: {work}")
        ok = not running and not incomplete and duplicates == 0
        return 0 if ok else 1
    finally:
        log.close()
        if proc.poll() is None:
            proc.kill()
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        if mounted:  # keep the outputs for a look, then give the memory back
            shutil.copytree(sweep, work / "sweep-outputs", dirs_exist_ok=True)
            subprocess.run(["umount", "-l", str(sweep)], check=False)


if __name__ == "__main__":
    sys.exit(main())
