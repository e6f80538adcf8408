"""Benchmark hibayes fits against plain NumPyro; prints one table.

Every case runs in a fresh process; each number is the median of --repeats runs.

1. one two-level binomial fit, 20 groups, 4 chains x (1000 warmup + 1000 draws),
   through ``python -m hibayes.fit``: cold and warm JAX compile cache;
2. an eight-value prior sweep of the same model through ``python -m hibayes.fit -m``,
   against eight independent fresh-process fits;
3. the ordered-logistic model at 20k, 50k and 200k rows (2 chains x (500 + 500)),
   identical rows collapsed as its config does, and per row up to --per-row-max;
4. the same models written as plain NumPyro by hand (the baseline for 1 and 3);
5. the cost of sampling in chunks, which lets long fits say progress
   (``fit.progress_after_s``): case 1's model in one process, compile excluded,
   alternating rounds (one seed per round) of NumPyro's MCMC in one call, the
   chunked loop in one call, 20 chunks (every fit) and 20 chunks with progress
   lines; then each sampler's compile in a fresh process with a warm compile cache.
6. cross-validation (``cv``): exact LOO refits (reloo) of the shipped 6-row example
   (``python -m hibayes.fit`` defaults) and 5-fold CV of ``nested_evals`` grouped by
   LLM, each against one sampling of the same fit (warm compile cache, fresh process).

7. the ordered-logistic model on two crossed factors and their interaction
   (``--designs``, default 20k rows of 10 x 20 levels and 200k of 30 x 50), one
   fit per ``--seeds`` seed in one process (compiled once): leapfrog steps per
   iteration, R-hat, ESS, convergence under the default checks and time, for the
   parameterisation and mass matrix shipped before (free effect-coded levels,
   dense mass) and now (orthonormal contrasts, ``dense_mass: auto``), collapsed
   and per row (up to --per-row-max rows; --modes picks which), with plain NumPyro
   NUTS on iid normals of the same dimension as a control.

8. large category counts (``--categories``, default 2,000 and 20,000 groups of the
   two-level binomial, one row per group, ``python -m hibayes.fit`` defaults unless
   --cat-chains/--cat-warmup/--cat-samples): seconds per stage from the run's
   metrics (sampling; log-likelihood and predictive draws; summary, LOO, CV,
   idata.nc, plots and sensitivity), the post-sampling/sampling ratio, and the
   longest silence in the log after sampling; with --baseline DIR the same fits
   with the code in DIR (e.g. ``git worktree add DIR main``) as "before".

    python scripts/bench_fit.py [--repeats 3] [--rows 20000,50000,200000] [--cases 1,2,3,5,6]
    python scripts/bench_fit.py --cases 7 --designs 20000x10x20 --seeds 0,1,2,3,4
    python scripts/bench_fit.py --cases 8 --categories 2000,20000 --baseline /tmp/before
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np

PY = sys.executable
SWEEP = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0]


def write_group_data(path: Path, groups: int = 20, seed: int = 0) -> Path:
    """Counts for ``groups`` groups from a two-level binomial process."""
    rng = np.random.default_rng(seed)
    effects = 0.3 + 0.5 * rng.standard_normal(groups)
    n = np.full(groups, 60)
    obs = rng.binomial(n, 1 / (1 + np.exp(-effects)))
    lines = ["group,n_correct,n_total"] + [
        f"g{i:02d},{o},{t}" for i, (o, t) in enumerate(zip(obs, n))
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def ordinal_arrays(rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Ordinal scores 0..10 from grader and LLM effects (the shipped example's process)."""
    rng = np.random.default_rng(seed)
    g, llm = rng.integers(0, 4, rows), rng.integers(0, 5, rows)
    eta = np.array([-0.5, -0.1, 0.2, 0.4])[g] + np.array([-1, -0.5, 0, 0.5, 1.0])[llm]
    cut = -4 + np.concatenate([[0], np.cumsum(np.full(9, np.exp(-0.5) + 0.3))])
    cdf = 1 / (1 + np.exp(-(cut[None] - eta[:, None])))
    obs = (rng.random(rows)[:, None] > cdf).sum(1)
    return {"obs": obs, "grader_index": g, "llm_index": llm}


def ordinal_design(rows: int, n1: int, n2: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Scores 0..4 from two crossed factors (effect sds 0.5) and their interaction (0.2)."""
    rng = np.random.default_rng(seed)
    e1, e2 = 0.5 * rng.standard_normal(n1), 0.5 * rng.standard_normal(n2)
    e12 = 0.2 * rng.standard_normal((n1, n2))
    i, j = rng.integers(0, n1, rows), rng.integers(0, n2, rows)
    eta = e1[i] + e2[j] + e12[i, j]
    cut = np.array([-2.0, -0.7, 0.5, 1.8])
    cdf = 1 / (1 + np.exp(-(cut[None] - eta[:, None])))
    obs = (rng.random(rows)[:, None] > cdf).sum(1)
    return {"obs": obs, "x1_index": i, "x2_index": j}


def run(cmd: list[str], cwd: Path, env: dict | None = None) -> tuple[float, str]:
    """Run a command; return its wall time and stdout+stderr."""
    start = time.perf_counter()
    done = subprocess.run(
        cmd,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=3600,
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return wall, done.stdout + done.stderr


def hibayes_fit(work: Path, data: Path, cache: Path, *extra: str) -> dict:
    """One fresh-process ``python -m hibayes.fit``; wall time plus the run's metrics."""
    out = work / f"run-{time.time_ns()}"
    wall, _ = run(
        [
            PY,
            "-m",
            "hibayes.fit",
            "data=table",
            f"data.path={data}",
            "data.observed=n_correct",
            "data.n_total=n_total",
            "data.categorical=[group]",
            "fit.samples=1000",
            "fit.warmup=1000",
            f"hydra.run.dir={out}",
            f"tracking.uri=sqlite:///{work}/mlflow.db",
            *extra,
        ],
        work,
        {"HIBAYES_JAX_CACHE": str(cache)},
    )
    metrics = json.loads((out / "metrics.json").read_text())
    return {"wall": wall, **metrics}


PLAIN_GROUP = textwrap.dedent("""
    import sys, time, json
    t0 = time.perf_counter()
    import numpyro
    numpyro.set_host_device_count(4)
    import jax, numpy as np, pandas as pd, numpyro.distributions as dist
    from numpyro.infer import MCMC, NUTS
    import arviz as az
    df = pd.read_csv(sys.argv[1])
    G = len(df)
    def model(obs, n, idx):
        mu = numpyro.sample("mu_overall", dist.Normal(0, 1))
        so = numpyro.sample("sigma_overall", dist.HalfNormal(0.5))
        zo = numpyro.sample("z_overall", dist.Normal(0, 1))
        sg = numpyro.sample("sigma_group", dist.HalfNormal(0.1))
        z = numpyro.sample("z_group", dist.Normal(0, 1).expand([G]))
        eff = mu + so * zo + sg * z
        numpyro.sample("obs", dist.Binomial(n, logits=eff[idx]), obs=obs)
    mcmc = MCMC(NUTS(model, target_accept_prob=0.95), num_warmup=1000, num_samples=1000,
                num_chains=4, chain_method="parallel", progress_bar=False)
    t1 = time.perf_counter()
    mcmc.run(jax.random.PRNGKey(0), df.n_correct.values, df.n_total.values, np.arange(G))
    jax.block_until_ready(mcmc.get_samples())  # run() returns before the work is done
    t2 = time.perf_counter()
    ess = float(az.ess(az.from_numpyro(mcmc)).to_array().min())
    print(json.dumps({"import": t1 - t0, "run": t2 - t1, "ess_bulk_min": ess,
                      "total": time.perf_counter() - t0}))
""")

PLAIN_ORDINAL = textwrap.dedent("""
    import sys, time, json
    t0 = time.perf_counter()
    import numpyro
    numpyro.set_host_device_count(2)
    import jax, jax.numpy as jnp, numpy as np, numpyro.distributions as dist
    from numpyro.infer import MCMC, NUTS
    import arviz as az
    d = np.load(sys.argv[1])
    def model(obs, g, l):
        b0 = numpyro.sample("intercept", dist.Normal(0, 1))
        gf = numpyro.sample("grader_free", dist.Normal(0, 1).expand([3]))
        lf = numpyro.sample("llm_free", dist.Normal(0, 1).expand([4]))
        ge = jnp.concatenate([gf, -gf.sum(keepdims=True)])
        le = jnp.concatenate([lf, -lf.sum(keepdims=True)])
        c1 = numpyro.sample("first_cutpoint", dist.Normal(-4, 0.2))
        diffs = numpyro.sample("cutpoint_diffs", dist.LogNormal(-0.5, 0.3).expand([9]))
        cut = jnp.concatenate([c1[None], c1 + jnp.cumsum(diffs + 0.3)])
        numpyro.sample("obs", dist.OrderedLogistic(b0 + ge[g] + le[l], cut), obs=obs)
    mcmc = MCMC(NUTS(model, target_accept_prob=0.95), num_warmup=500, num_samples=500,
                num_chains=2, chain_method="parallel", progress_bar=False)
    t1 = time.perf_counter()
    mcmc.run(jax.random.PRNGKey(0), d["obs"], d["grader_index"], d["llm_index"],
             extra_fields=("num_steps",))
    jax.block_until_ready(mcmc.get_samples())  # run() returns before the work is done
    t2 = time.perf_counter()
    ess = float(az.ess(az.from_numpyro(mcmc)).to_array().min())
    steps = float(mcmc.get_extra_fields()["num_steps"].mean())
    print(json.dumps({"run": t2 - t1, "ess_bulk_min": ess, "steps": steps,
                      "total": time.perf_counter() - t0}))
""")

HIBAYES_ORDINAL = textwrap.dedent("""
    import sys, time, json
    t0 = time.perf_counter()
    import numpy as np
    from hibayes.inference.runtime import configure_compilation_cache, configure_host_devices
    configure_host_devices()  # as python -m hibayes.fit does: chains in parallel
    from hibayes.inference import FitSettings, fit_model
    from hibayes.diagnostics import diagnose, information_criteria
    from hibayes.model import get_model
    configure_compilation_cache(sys.argv[2])
    d = dict(np.load(sys.argv[1]))
    d.update(num_grader=4, num_llm=5)
    r = fit_model(get_model("ordered_logistic_model"), d, {"main_effects": ["grader", "llm"]},
                  FitSettings(samples=500, warmup=500, chains=int(sys.argv[4]), dense_mass=True,
                              collapse_identical_rows=sys.argv[3] == "collapse",
                              prior_samples=0, posterior_predictive_samples=100))
    rows = r.program.rows  # what python -m hibayes.fit does: LOO per distinct row
    m = diagnose(r.idata, criteria=information_criteria(r.idata, rows.inverse if rows else None))
    print(json.dumps({"compile": r.timings["compile"], "run": r.timings["sampling"],
                      "ess_bulk_min": m["ess_bulk_min"], "rhat_max": m["rhat_max"],
                      "steps": float(r.idata.sample_stats.n_steps.mean()),
                      "total": time.perf_counter() - t0}))
""")


# Case 5: argv = data.csv cache rounds. Every fit samples in chunks; "lines" only
# says progress between them. Round r samples with seed r in every mode, so the
# chunked modes draw the same numbers; NumPyro's one call draws others (rounding).
HIBAYES_PROGRESS = textwrap.dedent("""
    import sys, time, json, os
    import numpy as np, pandas as pd
    from hibayes.inference.runtime import configure_compilation_cache, configure_host_devices
    configure_host_devices()
    import jax
    from hibayes.inference import FitSettings, build_program, fit_model
    from hibayes.inference.chunks import compile_chunked
    from hibayes.inference.sampler import _one_chain, get_sampler
    from hibayes.model import get_model
    configure_compilation_cache(sys.argv[2])
    events = []
    jax.monitoring.register_event_listener(lambda name, **kw: events.append(name))
    df = pd.read_csv(sys.argv[1])
    features = {"obs": df.n_correct.values, "n_total": df.n_total.values,
                "group_index": np.arange(len(df)), "num_group": len(df)}
    factory = get_model("two_level_group_binomial")
    def settings(seed, after):
        return FitSettings(samples=1000, warmup=1000, chains=4, prior_samples=0, seed=seed,
                           posterior_predictive_samples=10, progress_after_s=after)
    def keys(seed):  # as fit_model splits the seed
        return jax.random.split(jax.random.split(jax.random.PRNGKey(seed), 3)[0], 4)
    def fit(seed, after):
        lines = []
        said = lambda line: lines.append((line, time.process_time()))
        r = fit_model(factory, features, {}, settings(seed, after), progress=said)
        # CPU seconds of the process (XLA's threads included) from the sampling
        # line to the line after it: the work done, whatever else the cores run.
        cpu = [t for line, t in lines if line.startswith(("sampling ", "sampled "))]
        n = sum("% (" in line for line, _ in lines)
        steps = float(r.idata.sample_stats.n_steps.mean("draw").max())
        return r, {"s": r.timings["sampling"], "cpu": cpu[-1] - cpu[0], "lines": n,
                   "steps": steps}
    def loads(before):
        new = events[before:]
        return {"hits": new.count("/jax/compilation_cache/cache_hits"),
                "misses": new.count("/jax/compilation_cache/cache_misses")}
    compile_s, cache = {}, {}
    program = build_program(factory, features, {})
    devices = jax.local_devices()[:4]
    arrays, hyper = program.sampled_arrays, program.hyper
    n = len(events)
    # The chunked sampler every fit uses (fit_model finds it compiled).
    compile_s["chunks"] = get_sampler(program, settings(0, None), keys(0)).compile_s
    cache["chunks"] = loads(n)
    fit(0, None)  # the predictive functions compile here, outside the rounds
    n, t = len(events), time.perf_counter()
    one = (jax.pmap(_one_chain(program, settings(0, None)), in_axes=(0, None, None),
                    devices=devices).lower(keys(0), arrays, hyper).compile())
    compile_s["numpyro"], cache["numpyro"] = time.perf_counter() - t, loads(n)
    n, t = len(events), time.perf_counter()
    whole = compile_chunked(program, settings(0, None), "parallel", keys(0), devices, chunks=1)
    compile_s["whole"], cache["whole"] = time.perf_counter() - t, loads(n)
    def timed(run, seed):
        t, c = time.perf_counter(), time.process_time()
        _, extras = run(keys(seed), arrays, hyper)
        return {"s": time.perf_counter() - t, "cpu": time.process_time() - c,
                "steps": float(extras["num_steps"].mean(1).max())}
    run_numpyro = lambda seed: timed(lambda *a: jax.device_get(one(*a)), seed)
    run_whole = lambda seed: timed(whole.run, seed)
    modes = {"numpyro": run_numpyro, "whole": run_whole,
             "chunks": lambda seed: fit(seed, None)[1], "lines": lambda seed: fit(seed, 0.0)[1]}
    sampling = {mode: [] for mode in modes}
    for seed in range(int(sys.argv[3])):
        for mode, run in modes.items():
            sampling[mode].append(run(seed))
    print(json.dumps({"compile": compile_s, "cache": cache, "sampling": sampling,
                      "load": os.getloadavg()}))
""")


def cv_fit(work: Path, cache: Path, *extra: str) -> dict:
    """One fresh-process ``python -m hibayes.fit`` with its config's data; its metrics."""
    out = work / f"cv-{time.time_ns()}"
    wall, _ = run(
        [
            PY,
            "-m",
            "hibayes.fit",
            f"hydra.run.dir={out}",
            f"tracking.uri=sqlite:///{work}/mlflow.db",
            *extra,
        ],
        work,
        {"HIBAYES_JAX_CACHE": str(cache)},
    )
    return {"wall": wall, **json.loads((out / "metrics.json").read_text())}


def cv_cases(work: Path, repeats: int, add: Any, adapts: list[str]) -> None:
    """Case 6: what exact cross-validation adds to a fit (the second run of each is warm).

    One line per ``cv.adapt`` value; their runs alternate round by round, so each
    line's baseline ran under the same load.
    """
    cases = [
        (
            "reloo, shipped llm_evals (6 rows, all k bad)",
            ["model=two_level_group_binomial", "cv=reloo"],
        ),
        (
            "5-fold grouped by LLM, nested_evals (60 rows)",
            [
                "model=three_level_group_binomial",
                "cv=kfold",
                "cv.k=5",
                "cv.group_by=[group,subgroup]",
            ],
        ),
    ]
    for label, extra in cases:
        cache = work / f"cv-cache-{label[:5]}"
        runs: dict[str, list[dict]] = {adapt: [] for adapt in adapts}
        for adapt in adapts:  # fills the compile cache (fit and refit batch)
            cv_fit(work, cache, *extra, f"cv.adapt={adapt}")
        for _ in range(repeats):
            for adapt in adapts:
                runs[adapt].append(cv_fit(work, cache, *extra, f"cv.adapt={adapt}"))
        for adapt, res in runs.items():
            sampling = med([r["time_sampling_s"] for r in res])
            added = med([r["cv_time_s"] for r in res])
            refits = med([r["cv_sampling_s"] for r in res])
            elpds = ", ".join(f"{r['elpd_cv']:.2f}" for r in res)
            add(
                "6",
                f"{label}, cv.adapt={adapt}: {int(res[0]['cv_refits'])} refits in one "
                f"batch, failed {max(r['cv_refits_failed'] for r in res):.0f}, "
                f"pareto_k_bad_after {med([r['pareto_k_bad_after'] for r in res]):.0f}, "
                f"elpd_cv {elpds}",
                compile_s=med([r["cv_compile_s"] for r in res]),
                sampling_s=sampling,
                total_s=added,
                ess_min=f"refits sampled {refits:.1f} s (x{refits / sampling:.1f})",
                ess_per_s=f"cv adds x{added / sampling:.1f} of one sampling",
            )


def progress_case(work: Path, data: Path, repeats: int, add: Any) -> None:
    """Case 5: what sampling in chunks (and saying progress between them) costs."""
    script = work / "hibayes_progress.py"
    script.write_text(HIBAYES_PROGRESS)
    cache = work / "progress-cache"
    load_before = os.getloadavg()
    # Fresh process, empty cache: everything compiles and is written to the cache;
    # then rounds of the four modes, alternating, one seed per round.
    _, text = run([PY, str(script), str(data), str(cache), str(repeats * 3)], work)
    first = last_json(text)
    # Fresh process, warm cache: what each sampler costs to load.
    _, text = run([PY, str(script), str(data), str(cache), "0"], work)
    second = last_json(text)
    s = first["sampling"]

    def ratio(mode: str, base: str) -> str:
        out = []
        for what in ("s", "cpu"):
            per_round = [a[what] / b[what] for a, b in zip(s[mode], s[base])]
            out.append(
                f"{'wall' if what == 's' else 'cpu'} x{med(per_round):.3f} "
                f"({min(per_round):.2f}-{max(per_round):.2f})"
            )
        return ", ".join(out)

    def warm(mode: str) -> str:
        c = second["cache"][mode]
        return (
            f"warm cache: {second['compile'][mode]:.1f} s, {c['hits']} loaded, "
            f"{c['misses']} compiled"
        )

    rows = (
        ("numpyro", "NumPyro's MCMC in one call (fits before; refits now)", "-"),
        ("whole", "the chunked loop in one call (same draws as below)", "-"),
        ("chunks", "20 chunks, no lines: every fit now", ratio("chunks", "whole")),
        ("lines", "20 chunks with progress lines", ratio("lines", "whole")),
    )
    for mode, label, vs_whole in rows:
        steps = med([r["steps"] for r in s[mode]])
        lines = f", {s[mode][0]['lines']} lines" if mode == "lines" else ""
        add(
            "5",
            f"case 1 model, {label} (slowest chain {steps:.1f} steps/draw{lines})",
            compile_s=first["compile"].get(mode, 0.0),
            sampling_s=med([r["s"] for r in s[mode]]),
            total_s="-",
            ess_min=f"vs one call of the loop {vs_whole}; "
            f"vs NumPyro {ratio(mode, 'numpyro')}",
            ess_per_s=warm(mode) if mode in second["compile"] else "same executable",
        )
    for what in ("s", "cpu"):
        print(
            f"case 5 sampling {what} per round:",
            {m: [round(r[what], 3) for r in v] for m, v in s.items()},
        )
    print(
        f"case 5 load average before {load_before[0]:.1f}, after the rounds "
        f"{first['load'][0]:.1f}"
    )


# Case 7: argv = arrays.npz cache collapse|per-row before|after seeds samples warmup chains
DESIGN_ORDINAL = textwrap.dedent("""
    import sys, time, json
    import numpy as np
    from hibayes.inference.runtime import configure_compilation_cache, configure_host_devices
    configure_host_devices()
    from hibayes.inference import FitSettings, fit_model
    from hibayes.diagnostics import Criteria, diagnose
    from hibayes.model import get_model
    configure_compilation_cache(sys.argv[2])
    d = dict(np.load(sys.argv[1]))
    d.update(num_x1=int(d["x1_index"].max()) + 1, num_x2=int(d["x2_index"].max()) + 1)
    after = sys.argv[4] == "after"
    hyper = {"main_effects": ["x1", "x2"], "interactions": [["x1", "x2"]], "num_classes": 5,
             "prior_first_cutpoint_loc": -2, "prior_first_cutpoint_scale": 1,
             "prior_cutpoint_diffs_loc": 0, "prior_cutpoint_diffs_scale": 0.5,
             "sample_effects_as_contrasts": after}
    samples, warmup, chains = (int(v) for v in sys.argv[6:9])
    for seed in [int(v) for v in sys.argv[5].split(",")]:
        t0 = time.perf_counter()
        r = fit_model(get_model("ordered_logistic_model"), d, hyper,
                      FitSettings(samples=samples, warmup=warmup, chains=chains, seed=seed,
                                  target_accept=0.8, dense_mass="auto" if after else True,
                                  collapse_identical_rows=sys.argv[3] == "collapse",
                                  prior_samples=0, posterior_predictive_samples=10))
        wall = time.perf_counter() - t0
        m = diagnose(r.idata, criteria=Criteria(None, None))
        print(json.dumps({"seed": seed, "compile": r.timings["compile"],
                          "run": r.timings["sampling"], "wall": wall,
                          "steps": float(r.idata.sample_stats.n_steps.mean()),
                          "rhat_max": m["rhat_max"], "ess_bulk_min": m["ess_bulk_min"],
                          "ess_tail_min": m["ess_tail_min"], "converged": m["converged"],
                          "mass": r.idata.posterior.attrs["mass_matrix"]}), flush=True)
""")


# Case 7 control: argv = dims seeds samples warmup chains. Plain NumPyro NUTS on iid
# N(0, 1) in ``dims`` dimensions: the best-conditioned posterior there is, for what the
# default checks say about NUTS's draws of that size.
CONTROL_GAUSSIAN = textwrap.dedent("""
    import sys, time, json
    import numpyro
    numpyro.set_host_device_count(2)
    import jax, numpyro.distributions as dist, arviz as az
    from numpyro.infer import MCMC, NUTS
    from hibayes.diagnostics import Criteria, diagnose
    dims = int(sys.argv[1])
    samples, warmup, chains = (int(v) for v in sys.argv[3:6])
    def model():
        numpyro.sample("x", dist.Normal(0, 1).expand([dims]))
    for seed in [int(v) for v in sys.argv[2].split(",")]:
        mcmc = MCMC(NUTS(model, target_accept_prob=0.8), num_warmup=warmup,
                    num_samples=samples, num_chains=chains, progress_bar=False)
        t0 = time.perf_counter()
        mcmc.run(jax.random.PRNGKey(seed), extra_fields=("num_steps", "energy"))
        run = time.perf_counter() - t0
        m = diagnose(az.from_numpyro(mcmc), criteria=Criteria(None, None))
        print(json.dumps({"seed": seed, "compile": 0.0, "run": run, "wall": run,
                          "steps": float(mcmc.get_extra_fields()["num_steps"].mean()),
                          "rhat_max": m["rhat_max"], "ess_bulk_min": m["ess_bulk_min"],
                          "ess_tail_min": m["ess_tail_min"], "converged": m["converged"],
                          "mass": "diagonal"}), flush=True)
""")


def all_json(text: str) -> list[dict]:
    """Every JSON object line a script printed."""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def steps_range(fits: list[dict]) -> str:
    """Median leapfrog steps per iteration over fits, with their range."""
    steps = [f["steps"] for f in fits]
    return f"{med(steps):.0f} ({min(steps):.0f}-{max(steps):.0f})"


def design_case(args: argparse.Namespace, work: Path) -> list[tuple[str, ...]]:
    """Case 7: before/after on crossed-factor ordinal designs; one table row per fit set."""
    script = work / "design_ordinal.py"
    script.write_text(DESIGN_ORDINAL)
    control = work / "control_gaussian.py"
    control.write_text(CONTROL_GAUSSIAN)
    out = []

    def add(what: str, mode: str, variant: str, fits: list[dict]) -> None:
        rhat = [f["rhat_max"] for f in fits]
        row = (
            what,
            mode,
            variant,
            fits[0]["mass"],
            steps_range(fits),
            f"{min(rhat):.3f}-{max(rhat):.3f}",
            f"{min(f['ess_bulk_min'] for f in fits):.0f}",
            f"{min(f['ess_tail_min'] for f in fits):.0f}",
            f"{sum(f['converged'] == 1.0 for f in fits)}/{len(fits)}",
            f"{fits[0]['compile']:.1f}",
            f"{med([f['run'] for f in fits]):.1f}",
            f"{med([f['wall'] for f in fits[1:] or fits]):.1f}",
        )
        print(" | ".join(row), flush=True)
        out.append(row)

    for design in filter(None, args.designs.split(",")):
        rows, n1, n2 = (int(v) for v in design.split("x"))
        arrays = work / f"design-{design}.npz"
        np.savez(arrays, **ordinal_design(rows, n1, n2))
        modes = ("collapse", "per-row") if rows <= args.per_row_max else ("collapse",)
        for mode in [m for m in modes if m in args.modes.split(",")]:
            for variant in args.variants.split(","):
                _, text = run(
                    [
                        PY,
                        str(script),
                        str(arrays),
                        str(work / "design-cache"),
                        mode,
                        variant,
                        args.seeds,
                        str(args.samples),
                        str(args.warmup),
                        str(args.chains),
                    ],
                    work,
                )
                add(f"{rows} rows, {n1}x{n2}", mode, variant, all_json(text))
    if args.control:
        _, text = run(
            [
                PY,
                str(control),
                str(args.control),
                args.seeds,
                str(args.samples),
                str(args.warmup),
                str(args.chains),
            ],
            work,
        )
        add(
            f"control: iid N(0, 1) in {args.control} dims",
            "-",
            "plain NumPyro",
            all_json(text),
        )
    return out


def _longest_silence_after_sampling(log_text: str) -> float:
    """Seconds of the longest gap between log lines from "sampled in" to the end."""
    import datetime as dt

    stamps, after = [], False
    for line in log_text.splitlines():
        after = after or "sampled in" in line
        if after and line.startswith("[20"):
            stamp = line[1:24]
            stamps.append(dt.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f"))
    gaps = [(b - a).total_seconds() for a, b in zip(stamps, stamps[1:])]
    return max(gaps, default=float("nan"))


def categories_case(args: argparse.Namespace, work: Path) -> list[tuple[str, ...]]:
    """Case 8: per-stage seconds of fits with many categories, before and after."""
    codes = [("after", None)] + (
        [("before", str(Path(args.baseline).resolve()))] if args.baseline else []
    )
    out = []
    for n in (int(c) for c in args.categories.split(",")):
        data = write_group_data(work / f"groups{n}.csv", groups=n)
        for label, code in codes:
            run_dir = work / f"categories-{n}-{label}"
            env = {"HIBAYES_JAX_CACHE": str(work / "cache-categories")}
            if code:
                env["PYTHONPATH"] = code
            wall, _ = run(
                [
                    PY,
                    "-m",
                    "hibayes.fit",
                    "data=table",
                    f"data.path={data}",
                    "data.observed=n_correct",
                    "data.n_total=n_total",
                    "data.categorical=[group]",
                    f"fit.chains={args.cat_chains}",
                    f"fit.warmup={args.cat_warmup}",
                    f"fit.samples={args.cat_samples}",
                    f"hydra.run.dir={run_dir}",
                    f"tracking.uri=sqlite:///{work}/mlflow.db",
                    *args.cat_overrides.split(),
                ],
                work,
                env,
            )
            m = json.loads((run_dir / "metrics.json").read_text())
            after = m["time_predictive_s"] + m["time_outputs_s"]
            # The cross-validation stage (refits; with cv=psis the per-trial LOO and
            # LOO-PIT) is shown apart: refits are sampling work, not outputs.
            cv_s = m.get("cv_time_s", 0.0)
            silence = _longest_silence_after_sampling((run_dir / "fit.log").read_text())
            out.append(
                (
                    str(n),
                    label,
                    f"{m['time_sampling_s']:.1f}",
                    f"{m['time_predictive_s']:.1f}",
                    f"{m['time_outputs_s']:.1f}",
                    f"{m.get('time_sensitivity_s', float('nan')):.1f}",
                    f"{m.get('cv_time_s', float('nan')):.1f}",
                    f"{after / m['time_sampling_s']:.2f}",
                    f"{(after - cv_s) / m['time_sampling_s']:.2f}",
                    f"{silence:.0f}",
                    f"{wall:.0f}",
                )
            )
            print(" | ".join(out[-1]), flush=True)
    return out


def last_json(text: str) -> dict:
    """The last JSON object line a script printed."""
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError(text[-2000:])


def med(values: list[float]) -> float:
    """Median."""
    return statistics.median(values)


def main() -> None:
    """Run the cases and print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", default="20000,50000,200000")
    parser.add_argument("--cases", default="1,2,3,5")
    parser.add_argument("--chains", type=int, default=2, help="chains of case 3")
    parser.add_argument(
        "--per-row-max",
        type=int,
        default=20000,
        help="also time the per-row likelihood up to this many rows",
    )
    parser.add_argument(
        "--designs",
        default="20000x10x20,200000x30x50",
        help="case 7: ROWSxLEVELS1xLEVELS2, comma-separated",
    )
    parser.add_argument("--seeds", default="0,1,2,3,4", help="case 7: one fit per seed")
    parser.add_argument(
        "--modes",
        default="collapse,per-row",
        help="case 7: likelihoods to time (per-row only up to --per-row-max)",
    )
    parser.add_argument(
        "--control",
        type=int,
        default=210,
        help="case 7: dims of the iid Gaussian control (0: skip)",
    )
    parser.add_argument(
        "--variants",
        default="before,after",
        help="case 7: before (free levels, dense mass), after (contrasts, auto)",
    )
    parser.add_argument(
        "--samples", type=int, default=500, help="case 7: draws per chain"
    )
    parser.add_argument(
        "--warmup", type=int, default=500, help="case 7: warmup per chain"
    )
    parser.add_argument(
        "--categories", default="2000,20000", help="case 8: groups, comma-separated"
    )
    parser.add_argument("--cat-chains", type=int, default=4, help="case 8: chains")
    parser.add_argument("--cat-warmup", type=int, default=1000, help="case 8: warmup")
    parser.add_argument("--cat-samples", type=int, default=2000, help="case 8: draws")
    parser.add_argument(
        "--baseline",
        default=None,
        help="case 8: a checkout of the code before, run as 'before'",
    )
    parser.add_argument(
        "--cat-overrides",
        default="",
        help="case 8: more fit overrides, space-separated (e.g. 'cv=psis')",
    )
    parser.add_argument(
        "--cv-adapt",
        default="full,reuse",
        help="case 6: cv.adapt values to time, alternating (full: before issue 14's "
        "reuse)",
    )
    args = parser.parse_args()
    cases = set(args.cases.split(","))
    work = Path(tempfile.mkdtemp(prefix="hibayes-bench-"))
    data = write_group_data(work / "groups20.csv")
    rows_out: list[tuple[str, ...]] = []

    def add(case: str, what: str, **cols: float | str) -> None:
        rows_out.append(
            (
                case,
                what,
                *(
                    f"{v:.1f}" if isinstance(v, float) else str(v)
                    for v in cols.values()
                ),
            )
        )
        print(" | ".join(rows_out[-1]), flush=True)

    if "1" in cases:
        cold, warm, plain = [], [], []
        for i in range(args.repeats):
            cache = work / f"cache-{i}"
            cold.append(hibayes_fit(work, data, cache))
            warm.append(hibayes_fit(work, data, cache))
            script = work / "plain_group.py"
            script.write_text(PLAIN_GROUP)
            wall, text = run([PY, str(script), str(data)], work)
            plain.append({"wall": wall, **last_json(text)})
        for label, res in (("hibayes cold cache", cold), ("hibayes warm cache", warm)):
            add(
                "1",
                label,
                compile_s=med([r["time_compile_s"] for r in res]),
                sampling_s=med([r["time_sampling_s"] for r in res]),
                total_s=med([r["wall"] for r in res]),
                ess_min=med([r["ess_bulk_min"] for r in res]),
                ess_per_s=med([r["ess_bulk_min"] / r["wall"] for r in res]),
            )
        add(
            "4",
            "plain NumPyro (case 1 model)",
            compile_s="-",
            sampling_s=med([p["run"] for p in plain]),
            total_s=med([p["wall"] for p in plain]),
            ess_min=med([p["ess_bulk_min"] for p in plain]),
            ess_per_s=med([p["ess_bulk_min"] / p["wall"] for p in plain]),
        )

    if "2" in cases:
        sweep_walls, single_walls, one_compile, samplings = [], [], [], []
        values = ",".join(map(str, SWEEP))
        for i in range(args.repeats):
            cache = work / f"sweep-cache-{i}"
            out = work / f"sweep-{i}"
            wall, _ = run(
                [
                    PY,
                    "-m",
                    "hibayes.fit",
                    "-m",
                    "data=table",
                    f"data.path={data}",
                    "data.observed=n_correct",
                    "data.n_total=n_total",
                    "data.categorical=[group]",
                    "fit.samples=1000",
                    "fit.warmup=1000",
                    f"model.prior_sigma_group_scale={values}",
                    f"hydra.sweep.dir={out}",
                    f"tracking.uri=sqlite:///{work}/mlflow.db",
                ],
                work,
                {"HIBAYES_JAX_CACHE": str(cache)},
            )
            sweep_walls.append(wall)
            metrics = [
                json.loads((out / str(j) / "metrics.json").read_text())
                for j in range(len(SWEEP))
            ]
            one_compile.append(max(m["time_compile_s"] for m in metrics))
            samplings.append(sum(m["time_sampling_s"] for m in metrics))
        cache = work / "indep-cache"
        for value in SWEEP:
            single_walls.append(
                hibayes_fit(
                    work, data, cache, f"model.prior_sigma_group_scale={value}"
                )["wall"]
            )
        sweep_med = med(sweep_walls)
        ideal = med(one_compile) + med(samplings)
        add(
            "2",
            "8-fit sweep, one process",
            compile_s=med(one_compile),
            sampling_s=med(samplings),
            total_s=sweep_med,
            ess_min="-",
            ess_per_s=f"x{sweep_med / ideal:.2f} of compile+8 samplings",
        )
        add(
            "2",
            "per additional fit in sweep",
            compile_s=0.0,
            sampling_s=med(samplings) / 8,
            total_s=(sweep_med - single_walls[0]) / 7 if single_walls else float("nan"),
            ess_min="-",
            ess_per_s="-",
        )
        add(
            "2",
            "8 independent processes (1 cold, 7 warm)",
            compile_s="-",
            sampling_s="-",
            total_s=sum(single_walls),
            ess_min="-",
            ess_per_s="-",
        )

    if "6" in cases:
        cv_cases(work, args.repeats, add, args.cv_adapt.split(","))

    if "3" in cases:
        for rows in [int(r) for r in args.rows.split(",")]:
            arrays = work / f"ord-{rows}.npz"
            np.savez(arrays, **ordinal_arrays(rows))
            script = work / "hibayes_ordinal.py"
            script.write_text(HIBAYES_ORDINAL)
            # The shipped config collapses identical rows; per-row likelihood for contrast.
            for mode in (
                ("collapse", "per-row") if rows <= args.per_row_max else ("collapse",)
            ):
                res = []
                for _ in range(args.repeats):
                    wall, text = run(
                        [
                            PY,
                            str(script),
                            str(arrays),
                            str(work / "ord-cache"),
                            mode,
                            str(args.chains),
                        ],
                        work,
                    )
                    res.append({"wall": wall, **last_json(text)})
                add(
                    "3",
                    f"hibayes ordinal {rows} rows, {args.chains} chains, {mode} "
                    f"(steps {med([r['steps'] for r in res]):.0f})",
                    compile_s=med([r["compile"] for r in res]),
                    sampling_s=med([r["run"] for r in res]),
                    total_s=med([r["wall"] for r in res]),
                    ess_min=med([r["ess_bulk_min"] for r in res]),
                    ess_per_s=med([r["ess_bulk_min"] / r["wall"] for r in res]),
                )
            if rows <= 20000:
                script = work / "plain_ordinal.py"
                script.write_text(PLAIN_ORDINAL)
                res = []
                for _ in range(args.repeats):
                    wall, text = run([PY, str(script), str(arrays)], work)
                    res.append({"wall": wall, **last_json(text)})
                add(
                    "4",
                    f"plain NumPyro ordinal {rows} rows (steps "
                    f"{med([r['steps'] for r in res]):.0f})",
                    compile_s="-",
                    sampling_s=med([r["run"] for r in res]),
                    total_s=med([r["wall"] for r in res]),
                    ess_min=med([r["ess_bulk_min"] for r in res]),
                    ess_per_s=med([r["ess_bulk_min"] / r["wall"] for r in res]),
                )

    if "5" in cases:
        progress_case(work, data, args.repeats, add)

    design_rows = design_case(args, work) if "7" in cases else []
    category_rows = categories_case(args, work) if "8" in cases else []

    print()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, repeats {args.repeats}"
    )
    header = (
        "case",
        "what",
        "compile s",
        "sampling s",
        "total s",
        "min bulk ESS",
        "ESS/s total",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows_out:
        print("| " + " | ".join(row) + " |")
    if design_rows:
        print(
            f"\ncase 7: {args.chains} chains x ({args.warmup} warmup + {args.samples} draws), "
            f"target_accept 0.8, seeds {args.seeds}; wall s per fit excludes the first "
            "(compiling) fit"
        )
        header = (
            "design",
            "likelihood",
            "parameterisation",
            "mass",
            "steps/iter (range)",
            "R-hat max",
            "min bulk ESS",
            "min tail ESS",
            "converged",
            "compile s",
            "sampling s",
            "wall s",
        )
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in design_rows:
            print("| " + " | ".join(row) + " |")
    if category_rows:
        print(
            f"\ncase 8: two-level binomial, one row per group, {args.cat_chains} chains x "
            f"({args.cat_warmup} warmup + {args.cat_samples} draws); seconds from "
            "metrics.json; after/sampling = (predictive + outputs) / sampling; "
            f"overrides: {args.cat_overrides or 'none'}"
        )
        header = (
            "groups",
            "code",
            "sampling s",
            "predictive s",
            "outputs s",
            "of which sensitivity s",
            "of which CV s",
            "after/sampling",
            "after without CV/sampling",
            "longest silence s",
            "wall s",
        )
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in category_rows:
            print("| " + " | ".join(row) + " |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
