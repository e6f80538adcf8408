"""The main job: ``python -m hibayes.fit [overrides] [-m]``.

``main`` is the Hydra entry point; :func:`fit` does the work for one composed
config and can be called from tests and notebooks. :func:`run_pipeline` is the
pipeline, one stage a line: config -> data -> features -> model -> inference ->
diagnostics -> outputs. :class:`~hibayes.tracking.run.FitRun` wraps it: every fit
is one MLflow run, a failure ends it FAILED with its traceback, an interrupt
KILLED, and what a failing store did not take waits for ``python -m hibayes.sync``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig

from hibayes.compat.reference_config import ReferenceConfigError
from hibayes.config import (
    checked_sections,
    cv_settings,
    data_digest,
    data_source,
    load_data,
    sensitivity_enabled,
)
from hibayes.outputs.products import FitProducts
from hibayes.system import interrupts
from hibayes.system.command import one_line_errors, run_command
from hibayes.system.heartbeat import stage
from hibayes.tracking.job import FitOutcome, JobContext
from hibayes.tracking.run import FitRun

__all__ = ["FitOutcome", "JobContext", "fit", "job_from_hydra", "main", "run_pipeline"]


def fit(
    cfg: DictConfig,
    job: JobContext | None = None,
    *,
    extra_tags: Mapping[str, str] | None = None,
) -> FitOutcome:
    """Fit the model the config describes and record it as one run.

    :param cfg: a composed config (``hibayes/conf/config.yaml`` and its groups).
    :param job: where to write outputs; from Hydra when ``None``.
    :param extra_tags: more tags for the run (e.g. ``hibayes.reproduced_from``).
    :raises Exception: outside a sweep, whatever failed (after recording it).
    """
    job = job or job_from_hydra()
    with FitRun.open(cfg, job, extra_tags) as run:
        products = run_pipeline(cfg, job, progress=run.progress, plots=run.draws_plots)
        run.record(products)
    return run.outcome


def run_pipeline(
    cfg: DictConfig,
    job: JobContext,
    *,
    progress: Callable[[str], None],
    plots: bool = True,
) -> FitProducts:
    """Load, fit, diagnose and write one fit's outputs into ``job.out_dir``."""
    from hibayes.diagnostics import (
        convergence_failures,
        cross_validate,
        diagnose,
        information_criteria,
        summarize,
    )
    from hibayes.inference import fit_model
    from hibayes.outputs.contract import fit_contract
    from hibayes.outputs.files import write_fit_outputs
    from hibayes.outputs.sensitivity import write_sensitivity

    spec, settings, limits = checked_sections(cfg, job.model_choice)
    if spec.dropped:
        progress(
            f"not passed to {spec.name} (it does not take them): "
            + ", ".join(spec.dropped)
        )
    source = str(Path(data_source(cfg.data)).resolve())  # absolute: reproducible
    data = load_data(cfg.data, spec, settings)
    digest = data_digest(cfg.data, data.table)
    cv_config = cv_settings(cfg.get("cv"), data.table, cfg.data.get("rename"))
    result = fit_model(
        spec.factory,
        data.features,
        spec.hyperparameters,
        settings,
        data.coords,
        progress=progress,
    )
    started = time.perf_counter()
    rows = result.program.rows
    posterior, n_obs = result.idata.posterior, int(np.size(data.features["obs"]))
    n_values = sum(
        v.size // (v.sizes["chain"] * v.sizes["draw"]) for v in posterior.values()
    )
    # Stages past ~10 s say so (hibayes.system.heartbeat); quick ones print nothing.
    with stage(f"summary of {n_values} posterior values", progress):
        summary = summarize(result.idata)
    with stage(f"PSIS-LOO and WAIC of {n_obs} observations", progress):
        criteria = information_criteria(result.idata, rows.inverse if rows else None)
        metrics = diagnose(result.idata, limits, summary=summary, criteria=criteria)
    problems = convergence_failures(metrics, limits)
    # The reliable elpd (issue 14): refits where PSIS fails; stored in idata for comparisons.
    with stage("cross-validation", progress):
        cv = cross_validate(
            result,
            limits,
            cv_config,
            criteria,
            table=data.table,
            rename=cfg.data.get("rename"),
            progress=progress,
        )
    metrics.update(cv.metrics)
    write_fit_outputs(
        result.idata,
        metrics,
        job.out_dir,
        summary=summary,
        criteria=criteria,
        plots=plots,
        cv=cv,
        progress=progress,
    )
    # Power-scaling sensitivity (checks.sensitivity): hibayes.outputs.sensitivity.
    sens = None
    if sensitivity_enabled(cfg.checks):
        with stage(f"power-scaling sensitivity of {n_values} values", progress):
            sens = write_sensitivity(result.idata, job.out_dir)
    timings = {
        f"time_{stage}_s": result.timings[stage]
        for stage in ("compile", "sampling", "predictive")
    }
    timings["time_outputs_s"] = time.perf_counter() - started
    # elpd_loo first: MLflow's compare view plots the first logged metric by default.
    first = {k: metrics[k] for k in ("elpd_loo",) if k in metrics}
    return FitProducts(
        idata=result.idata,
        problems=problems,
        loo=criteria.loo,
        metrics={**first, **metrics, **(sens.metrics if sens else {}), **timings},
        tags={**_fit_tags(result), **cv.tags, **(sens.tags if sens else {})},
        table=data.table,
        source=source,
        data_digest=digest,
        contract=fit_contract(
            loo=criteria.loo is not None,
            folds=cv.folds is not None,
            sensitivity=sens is not None and sens.result is not None,
            groups=result.idata.groups(),
        ),
    )


def _fit_tags(result: Any) -> dict[str, str]:
    """What the sampler did, as run tags."""
    rows = result.program.rows
    return {
        "hibayes.chain_method": result.chain_method,
        "hibayes.precision": result.precision,
        "hibayes.structure_key": result.program.structure_key,
        "hibayes.likelihood_rows": "all"
        if rows is None
        else f"{rows.n_unique} distinct of {rows.n_rows} (fit.collapse_identical_rows)",
    }


def job_from_hydra() -> JobContext:
    """The context of the Hydra job now running, with its in-process sweep if any."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from hibayes.sweep import in_process_session

    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    sweep_dir = Path(hc.sweep.dir) if multirun else None
    session = in_process_session(sweep_dir)
    return JobContext(
        out_dir=Path(hc.runtime.output_dir),
        overrides=list(hc.overrides.task),
        model_choice=hc.runtime.choices.get("model"),
        sweep_dir=sweep_dir,
        job_num=int(hc.job.num) if multirun else None,
        plots=session if session is not None and session.plot_worker else None,
    )


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
@one_line_errors
def main(cfg: DictConfig) -> dict[str, Any]:
    """Hydra entry point: one fit per composed config."""
    from hibayes.inference.runtime import configure_runtime

    configure_runtime(cfg.get("runtime"))  # before anything starts JAX
    job = job_from_hydra()
    if job.sweep_dir is not None:
        return fit(cfg, job).as_dict()
    if cfg.get("models_file"):
        # Without -m the file's models would be silently replaced by the default one.
        raise ReferenceConfigError(
            f"models_file={cfg.models_file} fits every model the file lists as one sweep: "
            "add -m to the command"
        )
    restore = interrupts.install()  # SIGTERM ends the fit KILLED
    try:
        outcome = fit(cfg, job)
    finally:
        restore()
    if outcome.upload_pending:
        raise SystemExit(
            f"error: the fit finished but not every record reached the MLflow store; "
            f"results are in {outcome.out_dir}; send them with: "
            f"python -m hibayes.sync {outcome.out_dir}"
        )
    return outcome.as_dict()


def cli() -> None:
    """Console script ``hibayes-fit``: as ``python -m hibayes.fit``."""
    run_command(main)


if __name__ == "__main__":
    cli()
