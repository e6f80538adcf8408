"""Load figure: a sweep of many short fits through a tracking server with parallel workers.

    python scripts/load_sweep.py                      # 48 jobs, 2 joblib workers, own server
    python scripts/load_sweep.py --jobs 12 --workers 3 --uri http://127.0.0.1:5000
    python scripts/load_sweep.py --launcher slurm --jobs 12   # scripts/slurm_cluster.sh start
    python scripts/load_sweep.py --launcher ray --ray-address 127.0.0.1:6379 --jobs 12

Without ``--uri`` it starts a tracking-only ``mlflow server`` on a free 127.0.0.1
port (SQLite store and artifacts in a temp dir) and stops it afterwards. It runs
``python -m hibayes.fit -m`` (joblib, SLURM array tasks or Ray tasks) over ``--jobs`` fits of the
shipped example (the model's three default priors x seeds; 100 warmup + 100 draws,
2 chains), then prints: jobs finished on disk, runs recorded, runs with every
expected metric and artifact, duplicates, pending uploads, wall time.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

FILES = {
    "config.yaml",
    "overrides.yaml",
    "idata.nc",
    "summary.csv",
    "loo_pointwise.csv",
    "metrics.json",
    "plots/trace.png",
    "plots/forest.png",
    "plots/ppc.png",
    "plots/pareto_k.png",
}
METRICS = {
    "rhat_max",
    "ess_bulk_min",
    "ess_tail_min",
    "divergences",
    "elpd_loo",
    "elpd_waic",
    "pareto_k_max",
    "converged",
    "time_total_s",
}
#: Launcher overrides; SLURM and Ray run `workers` fits at once on one CPU each.
LAUNCHERS = {
    "joblib": ("hydra/launcher=joblib", "hydra.launcher.n_jobs={workers}"),
    "slurm": (
        "hydra/launcher=submitit_slurm",
        "hydra.launcher.partition=debug",
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.mem_gb=1",
        "hydra.launcher.array_parallelism={workers}",
    ),
    "ray": ("hydra/launcher=ray", "hydra.launcher.ray.init.address={ray}"),
}
PRIORS = (
    3  # two_level_group_binomial's default sweep: prior_sigma_group_scale=0.1,0.4,0.6
)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(root: Path, port: int | None = None) -> tuple[subprocess.Popen, str]:
    """A tracking-only ``mlflow server`` on a store in ``root``; (process, URI)."""
    port = port or free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(root / "server.log", "a") as log:
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("mlflow")),
                "server",
                "--workers",
                "1",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--backend-store-uri",
                f"sqlite:///{root / 'mlflow.db'}",
                "--artifacts-destination",
                str(root / "artifacts"),
            ],
            cwd=root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    uri = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2):
                return proc, uri
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"mlflow server did not start; see {root / 'server.log'}")


def artifact_files(client, run_id: str, path: str | None = None) -> set[str]:
    """Every artifact path of a run, recursively."""
    out: set[str] = set()
    for item in client.list_artifacts(run_id, path):
        out |= artifact_files(client, run_id, item.path) if item.is_dir else {item.path}
    return out


def main() -> int:
    """Run the sweep and print the figures; exit 1 if anything is missing."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=48, help="a multiple of 3")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--uri", default=None, help="an existing server (default: start one)"
    )
    parser.add_argument("--launcher", choices=sorted(LAUNCHERS), default="joblib")
    parser.add_argument(
        "--ray-address", default=None, help="a running Ray head (HOST:PORT)"
    )
    args = parser.parse_args()
    if args.jobs % PRIORS:
        parser.error(f"--jobs must be a multiple of {PRIORS}")
    work = Path(tempfile.mkdtemp(prefix="hibayes-load-"))
    server = None
    uri = args.uri
    if uri is None:
        (work / "server").mkdir()
        server, uri = start_server(work / "server")
    experiment = f"load-{args.jobs}x{args.workers}-{int(time.time())}"
    launcher = [
        a.format(workers=args.workers, ray=args.ray_address)
        for a in LAUNCHERS[args.launcher]
    ]
    if args.launcher == "ray" and not args.ray_address:
        parser.error("--launcher ray needs --ray-address (ray start --head)")
    # Absolute sweep dir and explicit URI: Ray workers start elsewhere, without our env.
    command = [
        sys.executable,
        "-m",
        "hibayes.fit",
        "-m",
        *launcher,
        "fit=quick",
        "fit.samples=100",
        "fit.warmup=100",
        "fit.prior_samples=0",
        "tracking=server",
        f"tracking.uri={uri}",
        f"tracking.experiment={experiment}",
        f"hydra.sweep.dir={work / 'sweep'}",
        "runtime.host_devices=2",
        f"fit.seed=range(0,{args.jobs // PRIORS})",
    ]
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": uri,
        "HIBAYES_HOST_DEVICES": os.environ.get("HIBAYES_HOST_DEVICES", "2"),
    }
    try:
        start = time.perf_counter()
        done = subprocess.run(
            command, cwd=work, env=env, capture_output=True, text=True, check=False
        )
        wall = time.perf_counter() - start
        (work / "sweep.log").write_text(done.stdout + done.stderr)
        from mlflow import MlflowClient

        client = MlflowClient(uri)
        exp = client.get_experiment_by_name(experiment)
        runs = client.search_runs([exp.experiment_id], max_results=5000) if exp else []
        parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
        children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
        finished = [r for r in children if r.info.status == "FINISHED"]
        complete = [
            r
            for r in finished
            if METRICS <= set(r.data.metrics)
            and FILES <= artifact_files(client, r.info.run_id)
        ]
        job_nums = [r.data.tags.get("hibayes.job_num") for r in children]
        sweep = work / "sweep"
        on_disk = (
            [
                d
                for d in sweep.iterdir()
                if (d / "metrics.json").exists() and (d / "idata.nc").exists()
            ]
            if sweep.exists()
            else []
        )
        pending = list(sweep.rglob("upload_pending.json")) if sweep.exists() else []
        artifacts = sum(len(artifact_files(client, r.info.run_id)) for r in children)
        compare_at = [
            line
            for line in (done.stdout + done.stderr).splitlines()
            if "comparison of" in line
        ]
        print(
            f"jobs requested            {args.jobs} ({args.launcher}, "
            f"{args.workers} at once)"
        )
        print(f"sweep exit status         {done.returncode}")
        print(
            f"wall time                 {wall:.0f} s ({wall / args.jobs:.1f} s per fit)"
        )
        print(f"jobs finished on disk     {len(on_disk)}")
        print(
            f"parent runs               {len(parents)} "
            f"({', '.join(p.info.status for p in parents)})"
        )
        print(f"child runs recorded       {len(children)} ({len(finished)} FINISHED)")
        print(f"runs with every metric and artifact  {len(complete)}")
        print(f"artifact files recorded   {artifacts}")
        print(f"duplicate job numbers     {len(job_nums) - len(set(job_nums))}")
        print(f"pending uploads           {len(pending)}")
        print(f"comparison logged         {'yes' if compare_at else 'no'}")
        print(f"outputs and sweep log     {work}")
        lost = args.jobs - len(complete)
        print(f"lost                      {lost}")
        return 0 if lost == 0 and done.returncode == 0 else 1
    finally:
        if server is not None:
            os.killpg(server.pid, 15)
            server.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
