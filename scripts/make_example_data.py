"""Simulate the example datasets shipped in ``hibayes/data/examples/``.

Each dataset comes from a known generative process with fixed true values, so a
fit can be checked against ``true_values.json``. Deterministic: fixed seeds, and
only ``Generator.random`` and ``Generator.standard_normal`` (stable streams).
Needs numpy only.

Run from the repository root::

    python scripts/make_example_data.py            # writes hibayes/data/examples/
    python scripts/make_example_data.py --out DIR
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "binary_evals",
    "grader_scores",
    "llm_evals",
    "main",
    "nested_evals",
]

GENERATOR = "scripts/make_example_data.py"
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "hibayes" / "data" / "examples"

Rows = list[dict[str, Any]]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function."""
    return 1.0 / (1.0 + np.exp(-x))


def _rounded(x: np.ndarray | float, digits: int = 6) -> Any:
    """JSON-friendly nested lists (or a float) rounded for readability."""
    return np.round(np.asarray(x, dtype=float), digits).tolist()


def _z(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard-normal draws rounded to 4 decimals, so the JSON holds exact truth."""
    return np.round(rng.standard_normal(shape), 4)


def llm_evals() -> tuple[dict[str, Rows], dict[str, Any]]:
    """Per-sample C/I scores of 6 models on 5 tasks; only the model matters."""
    seed = 101
    rng = np.random.default_rng(seed)
    models = [f"model-{c}" for c in "abcdef"]
    tasks = ["arith", "code", "logic", "qa", "reading"]
    n_samples = 40
    mu_overall, sigma_overall, z_overall = 0.3, 0.2, 0.5
    overall_mean = mu_overall + sigma_overall * z_overall
    sigma_group = 0.6
    # z chosen (not drawn) to spread success rates over ~0.3-0.85.
    z_group = np.array([-1.9, -1.0, -0.3, 0.4, 1.1, 1.9])
    group_effects = overall_mean + sigma_group * z_group
    p = _sigmoid(group_effects)

    samples: Rows = []
    counts: Rows = []
    for g, model in enumerate(models):
        for task in tasks:
            hits = rng.random(n_samples) < p[g]
            for i, hit in enumerate(hits):
                samples.append(
                    {
                        "model": model,
                        "task": task,
                        "sample_id": f"{task}-{i + 1:03d}",
                        "epoch": 1,
                        "score": "C" if hit else "I",
                    }
                )
            counts.append(
                {
                    "model": model,
                    "task": task,
                    "n_correct": int(hits.sum()),
                    "n_total": n_samples,
                }
            )
    truth = {
        "process": "two_level_group_binomial",
        "description": "p = sigmoid(group_effects[model]); task has no effect",
        "seed": seed,
        "roles": {"group": "model"},
        "levels": {"model": models, "task": tasks},
        "samples_per_cell": n_samples,
        "params": {
            "mu_overall": mu_overall,
            "sigma_overall": sigma_overall,
            "z_overall": z_overall,
            "overall_mean": _rounded(overall_mean),
            "sigma_group": sigma_group,
            "z_group": z_group.tolist(),
            "group_effects": _rounded(group_effects),
            "p": _rounded(p),
        },
    }
    return {"llm_evals.csv": samples, "llm_evals_counts.csv": counts}, truth


def nested_evals() -> tuple[dict[str, Rows], dict[str, Any]]:
    """Counts for 3 providers x 4 model sizes x 5 tasks, three nested levels."""
    seed = 202
    rng = np.random.default_rng(seed)
    groups = ["provider-a", "provider-b", "provider-c"]
    # Sorted, so the arrays below follow make_features' default level order.
    subgroups = sorted(["small", "medium", "large", "xl"])
    subsubgroups = ["arith", "code", "logic", "qa", "reading"]
    n_g, n_s, n_ss = len(groups), len(subgroups), len(subsubgroups)
    n_trials = 30
    overall_mean, sigma_group, sigma_subgroup, sigma_subsubgroup = 0.4, 0.5, 0.4, 0.3
    z_group = _z(rng, (n_g,))
    z_subgroup = _z(rng, (n_g, n_s))
    z_subsubgroup = _z(rng, (n_g, n_s, n_ss))
    group_effects = overall_mean + sigma_group * z_group
    subgroup_effects = group_effects[:, None] + sigma_subgroup * z_subgroup
    subsubgroup_effects = (
        subgroup_effects[:, :, None] + sigma_subsubgroup * z_subsubgroup
    )
    p = _sigmoid(subsubgroup_effects)

    rows: Rows = []
    for g, group in enumerate(groups):
        for s, sub in enumerate(subgroups):
            for ss, subsub in enumerate(subsubgroups):
                hits = int((rng.random(n_trials) < p[g, s, ss]).sum())
                rows.append(
                    {
                        "group": group,
                        "subgroup": sub,
                        "subsubgroup": subsub,
                        "n_correct": hits,
                        "n_total": n_trials,
                    }
                )
    truth = {
        "process": "three_level_group_binomial",
        "description": "p = sigmoid(subsubgroup_effects[group, subgroup, subsubgroup])",
        "seed": seed,
        "levels": {"group": groups, "subgroup": subgroups, "subsubgroup": subsubgroups},
        "trials_per_cell": n_trials,
        "params": {
            "overall_mean": overall_mean,
            "sigma_group": sigma_group,
            "z_group": z_group.tolist(),
            "group_effects": _rounded(group_effects),
            "sigma_subgroup": sigma_subgroup,
            "z_subgroup": z_subgroup.tolist(),
            "subgroup_effects": _rounded(subgroup_effects),
            "sigma_subsubgroup": sigma_subsubgroup,
            "z_subsubgroup": z_subsubgroup.tolist(),
            "subsubgroup_effects": _rounded(subsubgroup_effects),
            "p": _rounded(p),
        },
    }
    return {"nested_evals.csv": rows}, truth


def grader_scores() -> tuple[dict[str, Rows], dict[str, Any]]:
    """Ordinal 0-10 scores from 4 graders on 5 LLMs, ordered-logistic truth."""
    seed = 303
    rng = np.random.default_rng(seed)
    graders = [f"grader-{i}" for i in range(1, 5)]
    llms = [f"llm-{c}" for c in "abcde"]
    n_items, num_classes = 30, 11
    intercept = 0.0
    grader_effects = np.array([-0.5, -0.1, 0.1, 0.5])  # sum to zero
    llm_effects = np.array([-1.0, -0.4, 0.0, 0.4, 1.0])  # sum to zero
    first_cutpoint = -4.0
    cutpoint_diffs = np.full(num_classes - 2, np.round(np.exp(-0.5), 4))
    cutpoints = np.concatenate(
        [[first_cutpoint], first_cutpoint + np.cumsum(cutpoint_diffs + 0.3)]
    )

    rows: Rows = []
    for g, grader in enumerate(graders):
        for m, llm in enumerate(llms):
            eta = intercept + grader_effects[g] + llm_effects[m]
            cdf = _sigmoid(cutpoints - eta)  # P(y <= k), k = 0..num_classes-2
            draws = rng.random(n_items)
            scores = (draws[:, None] > cdf[None, :]).sum(axis=1)
            for i, score in enumerate(scores):
                rows.append(
                    {
                        "grader": grader,
                        "llm": llm,
                        "item_id": f"item-{i + 1:02d}",
                        "score": int(score),
                    }
                )
    truth = {
        "process": "ordered_logistic",
        "description": (
            "eta = intercept + grader_effects[grader] + llm_effects[llm] "
            "(effect-coded, sum to zero); P(score <= k) = sigmoid(cutpoints[k] - eta); "
            "cutpoints = first_cutpoint, then first_cutpoint + cumsum(cutpoint_diffs + 0.3)"
        ),
        "seed": seed,
        "levels": {"grader": graders, "llm": llms},
        "items_per_cell": n_items,
        "num_classes": num_classes,
        "params": {
            "intercept": intercept,
            "grader_effects": grader_effects.tolist(),
            "llm_effects": llm_effects.tolist(),
            "first_cutpoint": first_cutpoint,
            "cutpoint_diffs": cutpoint_diffs.tolist(),
            "cutpoints": _rounded(cutpoints),
        },
    }
    return {"grader_scores.csv": rows}, truth


def binary_evals() -> tuple[dict[str, Rows], dict[str, Any]]:
    """Counts for 4 models x 3 tasks from a linear logistic (effect-coded) truth."""
    seed = 404
    rng = np.random.default_rng(seed)
    models = [f"model-{c}" for c in "abcd"]
    tasks = ["arith", "code", "qa"]
    n_trials = 50
    intercept = 0.4
    model_effects = np.array([-0.6, -0.2, 0.2, 0.6])  # sum to zero
    task_effects = np.array([-0.5, 0.1, 0.4])  # sum to zero
    logit_p = intercept + model_effects[:, None] + task_effects[None, :]
    p = _sigmoid(logit_p)

    rows: Rows = []
    for m, model in enumerate(models):
        for t, task in enumerate(tasks):
            hits = int((rng.random(n_trials) < p[m, t]).sum())
            rows.append(
                {"model": model, "task": task, "n_correct": hits, "n_total": n_trials}
            )
    truth = {
        "process": "linear_logistic_binomial",
        "description": (
            "logit p = intercept + model_effects[model] + task_effects[task] "
            "(effect-coded, sum to zero)"
        ),
        "seed": seed,
        "levels": {"model": models, "task": tasks},
        "trials_per_cell": n_trials,
        "params": {
            "intercept": intercept,
            "model_effects": model_effects.tolist(),
            "task_effects": task_effects.tolist(),
            "logit_p": _rounded(logit_p),
            "p": _rounded(p),
        },
    }
    return {"binary_evals.csv": rows}, truth


def _write_csv(path: Path, rows: Rows) -> None:
    """Write rows (dicts with the same keys) as a CSV with ``\\n`` line ends."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def main(argv: list[str] | None = None) -> None:
    """Write every example CSV and ``true_values.json`` into the output folder."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    datasets: dict[str, Any] = {}
    for build in (llm_evals, nested_evals, grader_scores, binary_evals):
        tables, truth = build()
        files = {}
        for name, rows in tables.items():
            _write_csv(args.out / name, rows)
            files[name] = {"columns": list(rows[0]), "rows": len(rows)}
        datasets[build.__name__] = {"files": files, **truth}

    record = {
        "generator": GENERATOR,
        "rng": "numpy.random.default_rng(seed); per-dataset seed below",
        "note": (
            "Arrays follow the level order under 'levels' (make_features' default "
            "sorted order). Derived values are rounded to 6 decimals."
        ),
        "datasets": datasets,
    }
    with (args.out / "true_values.json").open("w", encoding="utf-8") as fh:
        json.dump(record, fh, indent=2)
        fh.write("\n")


if __name__ == "__main__":
    main()
