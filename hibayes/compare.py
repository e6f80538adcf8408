"""Compare recorded fits: ``python -m hibayes.compare parent=RUN_ID`` (see ``conf/compare.yaml``).

Runs are picked by a sweep's parent run, an experiment, an MLflow filter string
(these narrow one search of FINISHED fit runs) and explicit run ids. Their
``idata.nc`` are downloaded and compared with :func:`hibayes.diagnostics.comparison.compare_fits`
(ArviZ's LOO comparison); a table of the runs' diagnostics flags fits that did
not converge or have bad Pareto k. The result is printed, written to the Hydra
output directory and logged as a new MLflow run named ``compare <n> runs``.
Runs fitted to different data (different ``hibayes.data_digest``) are refused
unless ``allow_different_data=true``. Nothing here fits a model or changes the
compared runs.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from hibayes.errors import Refused
from hibayes.outputs.comparison import write_comparison
from hibayes.outputs.files import write_csv
from hibayes.system.command import one_line_errors, run_command

# Imported before MLflow: it switches MLflow's telemetry and URL printing off.
from .tracking import TrackingError, check_store_exists, resolve_tracking_uri

log = logging.getLogger("hibayes.compare")

__all__ = [
    "CompareError",
    "ComparisonResult",
    "check_same_data",
    "compare",
    "diagnostics_table",
    "main",
    "report",
    "run_labels",
    "select_runs",
]

#: Run metrics shown next to each run (logged by every fit).
DIAGNOSTICS = ("converged", "rhat_max", "ess_bulk_min", "divergences", "pareto_k_bad")
_DIGEST_TAG = "hibayes.data_digest"
_PARENT_TAG = "mlflow.parentRunId"
_PAGE = 1000


class CompareError(Refused, RuntimeError):
    """The runs cannot be compared (none selected, different data, missing posteriors)."""


@dataclass
class ComparisonResult:
    """What :func:`compare` produced.

    :param runs: one row per run: label, run id, diagnostics and flags.
    :param table: ArviZ's comparison table (index: run labels, best first).
    :param run_id: the comparison run ("" when not logged).
    :param out_dir: where the files were written.
    """

    runs: Any
    table: Any
    run_id: str
    out_dir: Path

    @property
    def flagged(self) -> list[str]:
        """Labels of runs that did not converge or have bad Pareto k."""
        return [str(r.run) for r in self.runs.itertuples() if r.flags]


def _search(client: Any, experiment_ids: list[str], clauses: list[str]) -> list[Any]:
    """Every run matching all clauses (MLflow filters know AND only), oldest first."""
    runs, token = [], None
    while True:
        page = client.search_runs(
            experiment_ids,
            filter_string=" and ".join(clauses),
            max_results=_PAGE,
            page_token=token,
            order_by=["attributes.start_time ASC"],
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _get_run(client: Any, run_id: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException as exc:
        raise CompareError(f"run {run_id} not found: {exc}") from exc


def select_runs(
    client: Any,
    *,
    parent: str | None = None,
    experiment: str | None = None,
    runs: list[str] | None = None,
    filter_string: str | None = None,
) -> list[Any]:
    """The FINISHED fit runs chosen by parent, experiment, filter and explicit ids.

    :param client: an ``MlflowClient``.
    :param parent: a sweep's parent run id: its children.
    :param experiment: an experiment name.
    :param runs: run ids added to what the search finds.
    :param filter_string: an MLflow search filter, e.g. ``metrics.converged = 1``.
    :return: runs in search order, then explicit ids; each once.
    :raises CompareError: nothing selects, an unknown experiment, an explicit run
        that is not a finished fit.
    """
    from mlflow.exceptions import MlflowException

    if not (parent or experiment or filter_string or runs):
        raise CompareError(
            "choose runs: parent=RUN_ID, experiment=NAME, runs=[ID,...] "
            "or 'filter=\"metrics.converged = 1\"'"
        )
    chosen: list[Any] = []
    if parent or experiment or filter_string:
        clauses = ["attributes.status = 'FINISHED'"]
        if experiment:
            found = client.get_experiment_by_name(experiment)
            if found is None:
                raise CompareError(f"no experiment named {experiment!r}")
            ids = [found.experiment_id]
        elif parent:
            ids = [_get_run(client, parent).info.experiment_id]
        else:
            ids = [e.experiment_id for e in client.search_experiments()]
        if parent:
            clauses.append(f"tags.`{_PARENT_TAG}` = '{parent}'")
        if filter_string:
            clauses.append(filter_string)
        try:
            found_runs = _search(client, ids, clauses)
        except MlflowException as exc:
            raise CompareError(
                f"search {' and '.join(clauses)!r} failed: {exc}"
            ) from exc
        # Parent runs and earlier comparisons are not fits: they have no data digest.
        chosen = [r for r in found_runs if _DIGEST_TAG in r.data.tags]
    for run_id in runs or []:
        run = _get_run(client, str(run_id))
        if run.info.status != "FINISHED" or _DIGEST_TAG not in run.data.tags:
            raise CompareError(
                f"run {run_id} ({run.info.run_name}) is not a finished fit "
                f"(status {run.info.status})"
            )
        chosen.append(run)
    return list({r.info.run_id: r for r in chosen}.values())


def check_same_data(runs: list[Any], labels: list[str]) -> None:
    """Refuse runs whose recorded data digests differ, naming digests and runs."""
    from hibayes.diagnostics.comparison import group_by_data

    named = {f"{label!r} ({run.info.run_id})": run for run, label in zip(runs, labels)}
    groups = group_by_data(
        {name: r.data.tags[_DIGEST_TAG] for name, r in named.items()}
    )
    sources = {
        r.data.tags[_DIGEST_TAG]: r.data.tags.get("hibayes.data_source", "?")
        for r in runs
    }
    if len(groups) > 1:
        listing = "; ".join(
            f"digest {d} ({sources[d]}): {', '.join(r)}" for d, r in groups.items()
        )
        raise CompareError(
            f"runs were fitted to different data: {listing}. Compare runs "
            "of one dataset, or set allow_different_data=true"
        )


def check_finite_elpd(table: Any, ic: str, runs: list[Any], labels: list[str]) -> None:
    """Refuse a comparison in which some run has no finite elpd, naming those runs.

    A NaN or infinite elpd (a fit with no usable pointwise log-likelihood) would
    still get a rank and a weight: a ranking that means nothing.
    """
    import numpy as np

    ids = dict(zip(labels, (r.info.run_id for r in runs)))
    column = f"elpd_{ic}"
    bad = [
        f"{label!r} ({ids.get(label, '?')}): elpd_{ic} = {value}"
        for label, value in table[column].items()
        if not np.isfinite(float(value))
    ]
    if bad:
        raise CompareError(
            f"{len(bad)} run(s) have no finite elpd_{ic} and cannot be "
            "ranked: " + "; ".join(bad) + ". Leave them out of the selection"
        )


def run_labels(runs: list[Any]) -> list[str]:
    """Run names; a name used twice gets the first 8 characters of its run id."""
    names = [str(r.info.run_name or r.info.run_id) for r in runs]
    return [
        f"{n} [{r.info.run_id[:8]}]" if names.count(n) > 1 else n
        for n, r in zip(names, runs)
    ]


def diagnostics_table(runs: list[Any], labels: list[str]) -> Any:
    """One row per run: label, run id, :data:`DIAGNOSTICS`, and what is wrong."""
    import pandas as pd

    rows = []
    for run, label in zip(runs, labels):
        metrics = run.data.metrics
        row = {"run": label, "run_id": run.info.run_id}
        row.update({k: metrics.get(k, float("nan")) for k in DIAGNOSTICS})
        flags = []
        if row["converged"] != 1.0:
            flags.append(
                f"NOT converged ({run.data.tags.get('hibayes.problems', '?')})"
            )
        after = metrics.get(
            "pareto_k_bad_after"
        )  # runs with cross-validation (issue 14)
        row["cv_method"] = run.data.tags.get("hibayes.cv_method", "-")
        if after is not None and after > 0:
            flags.append(
                f"{after:.0f} rows unresolved by cross-validation "
                f"({row['cv_method']}; {row['pareto_k_bad']:.0f} bad Pareto k)"
            )
        elif after is None and row["pareto_k_bad"] > 0:
            flags.append(f"{row['pareto_k_bad']:.0f} bad Pareto k")
        row["flags"] = "; ".join(flags)
        rows.append(row)
    return pd.DataFrame(rows)


def _load_posteriors(client: Any, runs: list[Any], labels: list[str]) -> dict[str, Any]:
    from .inference import load_idata

    idatas = {}
    with tempfile.TemporaryDirectory() as tmp:
        for run, label in zip(runs, labels):
            run_id = run.info.run_id
            try:
                path = client.download_artifacts(
                    run_id, "idata.nc", str(Path(tmp) / run_id)
                )
            except Exception as exc:
                raise CompareError(
                    f"run {run_id} ({label}): cannot download idata.nc: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            idatas[label] = load_idata(path)
    return idatas


def _log_run(
    cfg: DictConfig, uri: str, runs: list[Any], out_dir: Path, runs_table: Any
) -> str:
    from mlflow import MlflowClient

    from .tracking import MlflowTracker, provenance_tags

    experiment = (
        cfg.tracking.get("experiment")
        or MlflowClient(uri).get_experiment(runs[0].info.experiment_id).name
    )
    tracker = MlflowTracker(uri=uri, experiment=str(experiment))
    selection = {k: cfg.get(k) for k in ("parent", "experiment", "runs", "filter")}
    digests = sorted({r.data.tags[_DIGEST_TAG] for r in runs})
    run_id = tracker.start_run(
        f"compare {len(runs)} runs",
        tags={
            **provenance_tags(),
            "hibayes.compared_runs": ",".join(r.info.run_id for r in runs),
            "hibayes.compare_selection": " ".join(
                f"{k}={v}" for k, v in selection.items() if v
            ),
            "hibayes.compare_ic": str(cfg.ic),
            "hibayes.compared_data_digests": ",".join(digests),
        },
    )
    try:
        tracker.log_metrics(
            run_id,
            {
                "runs_compared": float(len(runs)),
                "runs_flagged": float((runs_table["flags"] != "").sum()),
            },
        )
        tracker.log_artifacts(run_id, out_dir)
    except BaseException:
        tracker.end_run(run_id, "FAILED")
        raise
    tracker.end_run(run_id, "FINISHED")
    return run_id


def compare(cfg: DictConfig, out_dir: Path | None = None) -> ComparisonResult:
    """Select runs, compare them, write and log the result; see the module docstring.

    :param cfg: a config shaped like ``conf/compare.yaml``.
    :param out_dir: where to write files; default the Hydra output directory.
    :raises CompareError: fewer than two runs, different data, missing posteriors.
    """
    from mlflow import MlflowClient

    from hibayes.diagnostics.comparison import compare_fits

    if out_dir is None:
        from hydra.core.hydra_config import HydraConfig

        out_dir = Path(HydraConfig.get().runtime.output_dir)
    uri = resolve_tracking_uri(cfg.tracking.get("uri"))
    try:
        check_store_exists(uri)
    except TrackingError as exc:
        raise CompareError(str(exc)) from exc
    client = MlflowClient(uri)
    runs = select_runs(
        client,
        parent=cfg.get("parent"),
        experiment=cfg.get("experiment"),
        runs=list(cfg.get("runs") or []),
        filter_string=cfg.get("filter"),
    )
    if len(runs) < 2:
        raise CompareError(
            f"comparing needs at least two finished fit runs; the selection "
            f"found {len(runs)} in {uri}"
        )
    labels = run_labels(runs)
    if not cfg.get("allow_different_data"):
        check_same_data(runs, labels)
    runs_table = diagnostics_table(runs, labels)
    idatas = _load_posteriors(client, runs, labels)
    try:
        table = compare_fits(idatas, ic=str(cfg.get("ic", "loo")))
    except ValueError as exc:
        raise CompareError(str(exc)) from exc
    check_finite_elpd(table, str(cfg.get("ic", "loo")), runs, labels)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_comparison(out_dir, table, idatas)
    write_csv(runs_table, out_dir / "runs.csv", index=False)
    run_id = (
        _log_run(cfg, uri, runs, out_dir, runs_table)
        if cfg.tracking.get("log_run", True)
        else ""
    )
    return ComparisonResult(runs_table, table, run_id, out_dir)


def _table_title(table: Any) -> str:
    """What the comparison ranks by, for the console."""
    if "elpd_cv" in table.columns:
        return (
            "Comparison by cross-validated elpd (elpd_cv; cv_method says which "
            "estimate each fit's number is; elpd_loo: PSIS for reference), best first:"
        )
    return "LOO comparison (ArviZ, best first):"


def report(result: ComparisonResult) -> str:
    """The comparison as text: runs with diagnostics, ArviZ's table, flags."""
    import pandas as pd

    with pd.option_context(
        "display.width",
        200,
        "display.max_columns",
        20,
        "display.max_colwidth",
        60,
        "display.float_format",
        "{:.3f}".format,
    ):
        runs = result.runs.drop(columns="flags")
        width = int(runs["run"].str.len().max())
        lines = [
            f"{len(runs)} runs:",
            runs.to_string(index=False, formatters={"run": f"{{:<{width}}}".format}),
            "",
            _table_title(result.table),
            result.table.drop(columns="scale", errors="ignore").to_string(),
        ]
    lines += [f"flag: {r.run}: {r.flags}" for r in result.runs.itertuples() if r.flags]
    # ArviZ's advice (Pareto k, ...), not library deprecation notices.
    lines += [
        f"arviz: {w}"
        for w in result.table.attrs.get("warnings", [])
        if "deprecat" not in w.lower()
    ]
    where = f"comparison run {result.run_id}, " if result.run_id else ""
    lines.append(f"written: {where}{result.out_dir}")
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path="conf", config_name="compare")
@one_line_errors
def main(cfg: DictConfig) -> None:
    """Hydra entry point: compare the selected runs, print the result."""
    print(report(compare(cfg)))


def cli() -> None:
    """Console script ``hibayes-compare``: as ``python -m hibayes.compare``."""
    run_command(main)


if __name__ == "__main__":
    cli()
