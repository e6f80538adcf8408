"""The main job: ``python -m hibayes.fit [overrides] [-m]``.

``main`` is the Hydra entry point; :func:`fit` does the work for one composed
config and can be called from tests and notebooks. Data flows one way:
config -> data -> features -> model -> inference -> diagnostics -> outputs ->
tracking. Every fit is one MLflow run; a failure ends it as FAILED with its
traceback, an interrupt as KILLED. Outputs are written to the job directory before
they are uploaded, and what a failing store did not take waits in the job's
``upload_pending.json`` for ``python -m hibayes.sync`` (:mod:`hibayes.tracking.deferred`);
the MLflow side of this lives in :mod:`hibayes.tracking.run`.
"""

from __future__ import annotations

import functools
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import hydra
from omegaconf import DictConfig

from hibayes.sweep.plot_worker import close_run_once_plotted
from hibayes.system import interrupts
from hibayes.system.command import one_line_errors, run_command
from hibayes.tracking.run import (
    close_run,
    fail_fast,
    open_run,
    opened_run,
    record_failure,
    run_params,
    settle_uploads,
    store_tracker,
)

log = logging.getLogger("hibayes.fit")

__all__ = ["FitOutcome", "JobContext", "fit", "main"]


@dataclass
class JobContext:
    """Where and as what a fit runs.

    :param out_dir: directory for this fit's outputs.
    :param overrides: the job's command-line overrides.
    :param model_choice: the ``conf/model`` option composed (None outside Hydra).
    :param sweep_dir: the multirun's directory (None for a single run).
    :param job_num: the job's number in the sweep.
    """

    out_dir: Path
    overrides: list[str] = field(default_factory=list)
    model_choice: str | None = None
    sweep_dir: Path | None = None
    job_num: int | None = None

    @classmethod
    def from_hydra(cls) -> "JobContext":
        """The context of the Hydra job now running."""
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
        multirun = hc.mode == RunMode.MULTIRUN
        return cls(
            out_dir=Path(hc.runtime.output_dir),
            overrides=list(hc.overrides.task),
            model_choice=hc.runtime.choices.get("model"),
            sweep_dir=Path(hc.sweep.dir) if multirun else None,
            job_num=int(hc.job.num) if multirun else None,
        )


@dataclass
class FitOutcome:
    """What one job reports back (to the sweep, and as Hydra's return value)."""

    status: str
    name: str
    run_id: str
    out_dir: str
    metrics: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    error: str | None = None
    data_digest: str | None = None
    upload_pending: str | None = None  # the pending-upload file, if the store missed some

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (picklable across launcher processes)."""
        return asdict(self)


# Needed only after sampling: imported on a thread while JAX compiles and samples.
_POST_SAMPLING_MODULES = ("arviz", "matplotlib.figure", "matplotlib.backends.backend_agg")


# Overrides that say where things are, not what was fitted: kept out of run names.
_UNNAMING = ("hydra", "tracking", "runtime", "data.", "model.path")


def run_name(model_name: str, tag: str | None, overrides: list[str]) -> str:
    """A run name a person can read: model, tag, and what this job changed."""
    changed = []
    for item in overrides:
        key = item.split("=", 1)[0].lstrip("+~")
        if key in ("model", "model.name", "model.tag") or key.startswith(_UNNAMING):
            continue
        changed.append(item.lstrip("+~").removeprefix("model."))
    parts = [model_name] + ([f"[{tag}]"] if tag else []) + changed
    return " ".join(parts)


def _summary_line(outcome: FitOutcome, tracker: Any) -> str:
    m = outcome.metrics
    verdict = "converged" if m.get("converged") == 1.0 else "NOT converged: " + "; ".join(
        outcome.problems
    )
    where = tracker.run_url(outcome.run_id) if outcome.run_id else outcome.out_dir
    return (
        f"{outcome.name}: {verdict} | elpd_loo {m.get('elpd_loo', float('nan')):.1f} "
        f"± {m.get('elpd_loo_se', float('nan')):.1f} | {m.get('time_total_s', 0):.1f} s | {where}"
    )


def fit(cfg: DictConfig, job: JobContext | None = None, *,
        extra_tags: Mapping[str, str] | None = None) -> FitOutcome:
    """Fit the model the config describes and record it; see the module docstring.

    :param cfg: a composed config (``conf/config.yaml`` and its groups).
    :param job: where to write outputs; from Hydra when ``None``.
    :param extra_tags: more tags for the run, set when it starts (e.g.
        ``hibayes.reproduced_from``).
    :raises Exception: in a single run, whatever failed (after recording it).
    """
    from hibayes.inference.runtime import (
        configure_compilation_cache,
        configure_host_devices,
    )

    runtime = cfg.get("runtime") or {}
    configure_host_devices(runtime.get("host_devices"))  # before anything starts JAX
    configure_compilation_cache(runtime.get("jax_cache_dir"))
    from hibayes.system.background import in_background, preload

    preload(_POST_SAMPLING_MODULES)

    from hibayes.diagnostics import (
        convergence_failures,
        diagnose,
        information_criteria,
        summarize,
    )
    from hibayes.outputs.files import (
        write_config,
        write_fit_outputs,
        write_json,
        write_traceback,
    )
    from hibayes.sweep import in_process_session, read_sweep_info
    from hibayes.tracking.deferred import PENDING_FILE

    from .config import (
        data_digest,
        data_source,
        fit_settings,
        load_data,
        model_spec,
        thresholds,
    )
    from .inference import fit_model

    start = time.perf_counter()
    job = job or JobContext.from_hydra()
    out_dir = job.out_dir
    sweep = read_sweep_info(job.sweep_dir) if job.sweep_dir else None
    session = in_process_session(job.sweep_dir) if sweep else None
    plot_worker = session.plot_worker if session else None
    named_by = job.overrides
    if sweep:  # in a sweep, what differs between jobs names them
        named_by = [o for o in job.overrides if o.split("=", 1)[0] in sweep.varying]
    name = run_name(str(cfg.model.get("name")), cfg.model.get("tag"), named_by)
    prefix = f"[job {job.job_num + 1}/{sweep.n_jobs}] " if sweep and job.job_num is not None else ""
    # An unusable store stops a single fit here, before any work. A sweep's job (its
    # parent run exists) records everything for `python -m hibayes.sync` instead.
    store = store_tracker(cfg)
    if not (sweep and sweep.parent_run_id):
        fail_fast(store)
    tags = {
        "hibayes.model": str(cfg.model.get("name")),
        "hibayes.overrides": " ".join(job.overrides),
        "hibayes.output_dir": str(out_dir.resolve()),
        # Relative paths in the config (data.path, model.path) mean this directory.
        "hibayes.working_dir": str(Path.cwd()),
        **(extra_tags or {}),
    }
    if cfg.model.get("tag"):
        tags["hibayes.tag"] = str(cfg.model.tag)
    if sweep:
        tags.update({"hibayes.sweep_id": sweep.sweep_id, "hibayes.job_num": str(job.job_num)})
    # Importing MLflow and opening a SQLite store take seconds: done on a thread
    # while the data loads and JAX compiles and samples. The run is needed only
    # when the fit has something to log; a store that fails meanwhile leaves the
    # records in upload_pending.json, never the fit undone.
    params, parent_run_id = run_params(cfg), sweep.parent_run_id if sweep else None
    opening = in_background(
        lambda: open_run(store, out_dir / PENDING_FILE, name, tags, parent_run_id, params),
        "hibayes-open-run")
    outcome = FitOutcome(status="RUNNING", name=name, run_id="", out_dir=str(out_dir))
    tracker = None
    try:
        write_config(cfg, out_dir)
        overrides_file = out_dir / ".hydra" / "overrides.yaml"
        if overrides_file.exists():
            shutil.copy(overrides_file, out_dir / "overrides.yaml")
        spec = model_spec(cfg.model, job.model_choice)
        if spec.dropped:
            log.info("%snot passed to %s (it does not take them): %s",
                     prefix, spec.name, ", ".join(spec.dropped))
        settings, limits = fit_settings(cfg.fit), thresholds(cfg.checks)
        source = str(Path(data_source(cfg.data)).resolve())  # absolute: reproducible
        data = load_data(cfg.data, spec, settings)
        outcome.data_digest = data_digest(cfg.data, data.table)
        result = fit_model(spec.factory, data.features, spec.hyperparameters, settings,
                           data.coords, progress=lambda msg: _progress(prefix, name, msg))
        t_post = time.perf_counter()
        rows = result.program.rows
        summary = summarize(result.idata)
        criteria = information_criteria(result.idata, rows.inverse if rows else None)
        metrics = diagnose(result.idata, limits, summary=summary, criteria=criteria)
        problems = convergence_failures(metrics, limits)
        write_fit_outputs(result.idata, metrics, out_dir, summary=summary, criteria=criteria,
                          plots=plot_worker is None)
        timings = {
            "time_compile_s": result.timings["compile"],
            "time_sampling_s": result.timings["sampling"],
            "time_predictive_s": result.timings["predictive"],
            "time_outputs_s": time.perf_counter() - t_post,
        }
        tracker, outcome.run_id = opening.result()
        timings["time_total_s"] = time.perf_counter() - start
        timings["ess_bulk_per_s"] = metrics["ess_bulk_min"] / timings["time_total_s"]
        # elpd_loo first: MLflow's compare view plots the first logged metric by default.
        metrics = {**{k: metrics[k] for k in ("elpd_loo",) if k in metrics}, **metrics,
                   **timings}
        write_json(metrics, out_dir / "metrics.json")
        run_id = outcome.run_id
        tracker.log_dataset(run_id, data.table, name=Path(source).stem, source=source,
                            digest=outcome.data_digest)
        tracker.log_metrics(run_id, metrics)
        tracker.set_tags(run_id, {
            "hibayes.chain_method": result.chain_method,
            "hibayes.precision": result.precision,
            "hibayes.converged": "yes" if metrics["converged"] == 1.0 else "no",
            "hibayes.problems": "; ".join(problems) or "none",
            "hibayes.structure_key": result.program.structure_key,
            "hibayes.likelihood_rows": _likelihood_rows(result.program),
        })
        if plot_worker is None:
            outcome.upload_pending = close_run(tracker, run_id, out_dir, prefix)
        else:  # the sweep closes the run once the worker has drawn the plots
            tracker.log_artifacts(run_id, out_dir)  # all but the plots, should this process die
            interrupts.check()
            plots = plot_worker.submit(result.idata, out_dir / "plots", criteria.loo)
            session.hand_over(str(out_dir), plots, functools.partial(
                close_run_once_plotted, tracker, run_id, out_dir, metrics, prefix, plots,
                result.idata, criteria.loo))
            session.keep_posterior(str(out_dir), result.idata)
        outcome.status, outcome.metrics, outcome.problems = "FINISHED", metrics, problems
        log.info("%s%s", prefix, _summary_line(outcome, tracker))
        return outcome
    except BaseException as exc:
        interrupted = isinstance(exc, (KeyboardInterrupt, SystemExit))
        if interrupted:
            interrupts.acknowledge()  # handled here: the run ends KILLED
        outcome.status = "KILLED" if interrupted else "FAILED"
        outcome.error = f"{type(exc).__name__}: {exc}"
        if tracker is None:
            tracker, outcome.run_id = opened_run(opening)
        if tracker is None:
            write_traceback(exc, out_dir)
        else:
            record_failure(tracker, outcome.run_id, exc, out_dir, outcome.status)
        log.error("%s%s %s: %s", prefix, name, outcome.status, outcome.error)
        if not interrupted and tracker is not None:
            outcome.upload_pending = settle_uploads(tracker, prefix)
        if interrupted or sweep is None:
            raise
        return outcome


def _likelihood_rows(program: Any) -> str:
    """How many rows the likelihood visited, for the run's tags."""
    rows = program.rows
    if rows is None:
        return "all"
    return f"{rows.n_unique} distinct of {rows.n_rows} (fit.collapse_identical_rows)"


def _progress(prefix: str, name: str, message: str) -> None:
    """Log a stage of the fit; a signal received meanwhile is raised here."""
    interrupts.check()
    log.info("%s%s: %s", prefix, name, message)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
@one_line_errors
def main(cfg: DictConfig) -> dict[str, Any]:
    """Hydra entry point: one fit per composed config."""
    in_sweep = JobContext.from_hydra().sweep_dir is not None
    if cfg.get("models_file") and not in_sweep:
        from hibayes.compat.reference_config import ReferenceConfigError

        # Without -m the file's models would be silently replaced by the default one.
        raise ReferenceConfigError(
            f"models_file={cfg.models_file} fits every model the file lists as one sweep: "
            "add -m to the command")
    if in_sweep:
        return fit(cfg).as_dict()
    return _single_fit(cfg)


def _single_fit(cfg: DictConfig) -> dict[str, Any]:
    """One fit outside a sweep: SIGTERM ends it KILLED; lost uploads exit 1."""
    restore = interrupts.install()
    try:
        outcome = fit(cfg)
    finally:
        restore()
    if outcome.upload_pending:
        raise SystemExit(
            f"error: the fit finished but not every record reached the MLflow store; "
            f"results are in {outcome.out_dir}; send them with: "
            f"python -m hibayes.sync {outcome.out_dir}")
    return outcome.as_dict()


def cli() -> None:
    """Console script ``hibayes-fit``: as ``python -m hibayes.fit``."""
    run_command(main)


if __name__ == "__main__":
    cli()
