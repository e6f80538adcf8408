"""Benchmark simulation-based calibration; prints one table.

200 simulations of ``two_level_group_binomial`` on the shipped ``llm_evals``
example's shape, 4 chains x (500 warmup + 500 draws) each, through
``python -m hibayes.calibrate`` in a fresh process with the persistent JAX cache
off (a cold compile), JAX's compile log on: the table gives the wall time of
the command, its stages (from the run's metrics.json), how many times the
batched sampler was compiled, every XLA compile JAX logged, and the load on
the machine before and after (the benchmark is only as good as the machine is
idle).

    python scripts/bench_calibrate.py [--simulations 200] [--batch 50]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PY = sys.executable


def main() -> None:
    """Run the case and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulations", type=int, default=200)
    parser.add_argument("--batch", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        cmd = [
            PY,
            "-m",
            "hibayes.calibrate",
            f"calibrate.simulations={args.simulations}",
            f"calibrate.batch={args.batch}",
            "runtime.jax_cache_dir=off",
            f"hydra.run.dir={out}",
        ]
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db",
            "JAX_LOG_COMPILES": "1",
        }
        load_before = os.getloadavg()
        start = time.perf_counter()
        done = subprocess.run(
            cmd, cwd=tmp, env=env, capture_output=True, text=True, check=False
        )
        wall = time.perf_counter() - start
        load_after = os.getloadavg()
        if done.returncode != 0:
            sys.exit(f"calibrate failed:\n{done.stderr[-4000:]}")
        metrics = json.loads((out / "metrics.json").read_text())
        log = done.stdout + done.stderr
        xla = log.count("Finished XLA compilation")
        verdict = [
            line for line in log.splitlines() if "simulated fits converged" in line
        ]
    rows = [
        (
            "simulations x chains x (warmup + draws)",
            f"{args.simulations} x 4 x (500 + 500), batch {args.batch}",
        ),
        ("wall time of the command (s)", f"{wall:.1f}"),
        ("  simulate from the prior (s)", f"{metrics['time_simulate_s']:.1f}"),
        ("  compile the batched sampler (s)", f"{metrics['time_compile_s']:.1f}"),
        ("  sample every simulation (s)", f"{metrics['time_sampling_s']:.1f}"),
        ("  ranks, tests, convergence checks (s)", f"{metrics['time_checks_s']:.1f}"),
        ("batched sampler compiles", f"{metrics['sampler_compiles']:.0f}"),
        ("XLA compiles logged by JAX (all functions)", str(xla)),
        (
            "converged fraction of simulated fits",
            f"{metrics['converged_fraction']:.2f}",
        ),
        ("verdict line", verdict[-1].split(": ", 1)[-1] if verdict else "?"),
        (
            "load average before / after (1 min)",
            f"{load_before[0]:.1f} / {load_after[0]:.1f} on {os.cpu_count()} cores",
        ),
        (
            "machine",
            (
                f"{platform.processor() or platform.machine()}, Python "
                f"{platform.python_version()}"
            ),
        ),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"| {'quantity'.ljust(width)} | value |")
    print(f"|{'-' * (width + 2)}|-------|")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value} |")


if __name__ == "__main__":
    main()
