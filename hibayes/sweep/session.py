"""One Hydra multirun as one parent MLflow run with a child run per job.

The sweeper plugin (``hydra_plugins/hibayes_sweeper``) calls :class:`SweepSession`
in the launching process: it opens the parent run, writes the parent's id into
the sweep directory (``.hibayes_sweep.json``) where every job, in whatever
process or machine, reads it explicitly, and when the jobs are done it compares
the finished children on the parent and closes it. A sweep with failed jobs
ends FAILED and raises :class:`SweepFailed` listing them, so the process exits
non-zero after every job ran; a job that failed before its fit opened a run
gets a FAILED child run from the sweep (:mod:`hibayes.sweep.failed_jobs`).
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import asdict
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from hibayes.errors import HibayesError
from hibayes.system import interrupts
from hibayes.system.atomic import write_text
from hibayes.tracking.base import Tracker
from hibayes.tracking.job import SWEEP_FILE, SweepInfo, read_sweep_info

log = logging.getLogger("hibayes.sweep.session")

__all__ = [
    "SweepInfo",
    "SweepSession",
    "SweepFailed",
    "in_process_session",
    "read_sweep_info",
    "SWEEP_FILE",
]


# An interrupted sweep waits this long for plots in hand before closing their runs.
ABORT_PLOT_WAIT_S = 30.0

# Posteriors the comparison may take from memory instead of re-reading idata.nc;
# beyond this many bytes in all it reads them from disk.
KEEP_POSTERIOR_BYTES = 512 * 2**20

# Sweeps whose jobs run in this process (basic launcher), by sweep directory.
_IN_PROCESS: dict[str, SweepSession] = {}


def in_process_session(sweep_dir: Path | None) -> SweepSession | None:
    """The session of a sweep whose jobs run in this very process, if this is one."""
    return _IN_PROCESS.get(str(Path(sweep_dir).resolve())) if sweep_dir else None


class SweepFailed(HibayesError, RuntimeError):
    """Some jobs of a sweep failed; every other job still ran."""


def varying_keys(jobs: Sequence[Sequence[str]]) -> tuple[str, ...]:
    """Override keys that take more than one value across the jobs."""
    values: dict[str, set[str]] = {}
    for job in jobs:
        for item in job:
            key, _, value = item.partition("=")
            values.setdefault(key, set()).add(value)
    return tuple(k for k, v in values.items() if len(v) > 1)


def _sweep_name(cfg: DictConfig, jobs: Sequence[Sequence[str]]) -> str:
    models = []
    for job in jobs:
        choice = next((o.split("=", 1)[1] for o in job if o.startswith("model=")), None)
        name = choice or str(cfg.model.get("name"))
        if name not in models:
            models.append(name)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    return f"sweep {'+'.join(models)} ({len(jobs)} fits) {stamp}"


class SweepSession:
    """The parent run of one multirun, from opening to comparison and closing."""

    def __init__(
        self, cfg: DictConfig, jobs: Sequence[Sequence[str]], in_process: bool = False
    ) -> None:
        """Open the parent run and write the sweep file.

        :param in_process: the jobs run one after another in this process (Hydra's
            basic launcher): they hand their plots to a worker process and their
            posteriors to the comparison (:meth:`hand_over`, :meth:`keep_posterior`).
        """
        from hibayes.tracking import TrackingError, provenance_tags
        from hibayes.tracking.run import open_marker, open_tracker

        self.cfg = cfg
        self.jobs = [list(j) for j in jobs]
        self.sweep_dir = Path(cfg.hydra.sweep.dir).resolve()
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        from hibayes.tracking.deferred import PENDING_FILE

        # The store must answer now (no fit has run); later failures are recorded in
        # the sweep dir's upload_pending.json for `python -m hibayes.sync`.
        self.tracker = open_tracker(cfg, self.sweep_dir / PENDING_FILE)
        _warn_sqlite_parallel(cfg, self.tracker)
        name = _sweep_name(cfg, self.jobs)
        tags = {
            **provenance_tags(),
            "hibayes.sweep_id": str(self.sweep_dir),
            "hibayes.n_jobs": str(len(self.jobs)),
            "hibayes.output_dir": str(self.sweep_dir),
        }
        self.parent_run_id = self.tracker.start_run(name, tags=tags)
        if self.tracker.pending:  # the store went away just now
            self.tracker.pending_file.unlink(missing_ok=True)
            raise TrackingError(
                f"could not create the sweep's parent run: {self.tracker.reason}"
            )
        self.info = SweepInfo(
            str(self.sweep_dir),
            self.parent_run_id,
            name,
            len(self.jobs),
            varying_keys(self.jobs),
        )
        try:
            write_text(
                self.sweep_dir / SWEEP_FILE, json.dumps(asdict(self.info), indent=2)
            )
        except HibayesError as exc:  # a full disk: no job could run; say so on the run
            self.tracker.set_tags(self.parent_run_id, {"hibayes.error": str(exc)})
            self.tracker.end_run(self.parent_run_id, "FAILED")
            raise
        # Until the parent's end is recorded: `hibayes.sync` ends it if we are killed.
        self._marker = open_marker(
            self.tracker,
            self.sweep_dir,
            "sweep",
            None,
            name,
            tags,
            None,
        )
        self.tracker.log_text(
            self.parent_run_id,
            "\n".join(" ".join(j) for j in self.jobs) + "\n",
            "jobs.txt",
        )
        # SIGTERM/Ctrl-C become KeyboardInterrupt, never in the middle of a store call.
        self._restore_signals = interrupts.install()
        self._unfinished: list[
            tuple[str, Future, Callable[[float | None], str | None]]
        ] = []
        self._closed: dict[str, str | None] = {}  # out_dir -> its pending-upload file
        self._failed_late: dict[str, str] = {}  # out_dir -> why closing its run failed
        self._posteriors: dict[str, Any] = {}
        self._kept_bytes = 0
        self.plot_worker = None
        if in_process:
            _IN_PROCESS[str(self.sweep_dir)] = self
            if len(self.jobs) > 1:  # one fit has nothing to overlap its plots with
                from hibayes.sweep.plot_worker import PlotWorker

                self.plot_worker = PlotWorker()
        log.info("sweep of %d fits: %s", len(self.jobs), name)

    def hand_over(
        self,
        out_dir: str,
        plots: Future,
        close_run: Callable[[float | None], str | None],
    ) -> None:
        """Close the runs whose plots are drawn; take one that waits for its plots.

        :param close_run: ``close_run(timeout)`` waits for the plots (at most
            ``timeout`` s), ends the run and returns its pending-upload file, if any.
        """
        self._close_unfinished(only_ready=True)
        self._unfinished.append((out_dir, plots, close_run))

    def _close_unfinished(
        self, only_ready: bool = False, timeout: float | None = None
    ) -> None:
        for item in list(self._unfinished):
            out_dir, plots, close_run = item
            if only_ready and not plots.done():
                continue
            self._unfinished.remove(item)  # tried once, whatever happens next
            try:
                self._closed[out_dir] = close_run(timeout)
            except Exception as exc:  # noqa: BLE001 - the other runs still close
                # The run ended FAILED (its plots could not be saved): the sweep's
                # failure summary names it, though its job had returned.
                self._failed_late[out_dir] = f"{type(exc).__name__}: {exc}"

    def defer_plots(
        self,
        out_dir: Path,
        idata: Any,
        loo: Any,
        close: Callable[[float | None], str | None],
        prefix: str = "",
    ) -> Future:
        """Draw a finished fit's plots on the worker while the next fit runs.

        :param close: ``close(seconds, error)`` ends the fit's run once its plots are
            in (``seconds`` None if they never came; ``error`` why they could not be
            saved, which fails the run and is raised) and returns its pending-upload
            file.
        :return: the worker's future for the plots.
        """
        from hibayes.sweep.plot_worker import wait_for_plots

        plots_dir = Path(out_dir) / "plots"
        assert self.plot_worker is not None, "defer_plots needs the sweep's plot worker"
        plots = self.plot_worker.submit(idata, plots_dir, loo)

        def close_run(timeout: float | None) -> str | None:
            try:
                seconds = wait_for_plots(plots, idata, loo, plots_dir, timeout, prefix)
            except Exception as exc:  # noqa: BLE001 - e.g. a full disk: the run fails
                return close(None, exc)
            return close(seconds)

        self.hand_over(str(out_dir), plots, close_run)
        self.keep_posterior(str(out_dir), idata)
        return plots

    def keep_posterior(self, out_dir: str, idata: Any) -> None:
        """Keep a finished job's posterior for the comparison, within the memory budget."""
        size = sum(idata[g].nbytes for g in idata.groups())
        if self._kept_bytes + size <= KEEP_POSTERIOR_BYTES:
            self._posteriors[out_dir] = idata
            self._kept_bytes += size

    def _release(self, timeout: float | None = None) -> None:
        """Close the runs still waiting for plots, stop the worker, forget this sweep."""
        try:
            # Plots the worker has not started are drawn here meanwhile (it lags on
            # a busy machine): cancelled, so their runs draw them, and closed first.
            stolen = [item for item in reversed(self._unfinished) if item[1].cancel()]
            self._unfinished = stolen + [i for i in self._unfinished if i not in stolen]
            self._close_unfinished(timeout=timeout)
        finally:
            _IN_PROCESS.pop(str(self.sweep_dir), None)
            if self.plot_worker is not None:
                self.plot_worker.close(wait=timeout is None)
                self.plot_worker = None

    def abort(self, status: str = "KILLED") -> None:
        """End the parent run early (interrupt or launcher failure)."""
        interrupts.acknowledge()  # handled here
        try:
            with interrupts.shielded():
                # Fits that are done end FINISHED, not KILLED, even if their plots lag.
                self._release(timeout=ABORT_PLOT_WAIT_S)
                self._kill_running_children()
                try:
                    self.tracker.end_run(self.parent_run_id, status)
                    self._release_marker()
                except Exception as exc:
                    log.warning("could not end the sweep's parent run: %s", exc)
        finally:
            self._restore_signals()

    def _kill_running_children(self) -> None:
        """End as KILLED the children still RUNNING (their worker processes are gone).

        Jobs in this process end their own runs; jobs in launcher workers (joblib,
        submitit, Ray) may be stopped without a chance to, so the sweep does it.
        """
        if self.tracker.pending or not self.parent_run_id:
            return
        try:
            running = [
                r
                for r in self.tracker.children(self.parent_run_id)
                if r.info.status == "RUNNING"
            ]
            for run in running:
                self.tracker.store.end_run(run.info.run_id, "KILLED")
        except Exception as exc:  # noqa: BLE001 - interrupted: do what can be done quickly
            log.warning("could not end the sweep's running children as KILLED: %s", exc)
            return
        if running:
            log.warning("ended %d running child run(s) as KILLED", len(running))

    def finish(self, outcomes: Sequence[dict[str, Any] | BaseException]) -> None:
        """Compare finished children on the parent, close it, raise if jobs failed."""
        try:
            interrupts.check()  # a signal no job acted on
            self._finish(outcomes)
        except KeyboardInterrupt:
            self.abort("KILLED")
            raise
        finally:
            self._restore_signals()

    def _finish(self, outcomes: Sequence[dict[str, Any] | BaseException]) -> None:
        finished = [
            o for o in outcomes if isinstance(o, dict) and o.get("status") == "FINISHED"
        ]
        compared: tuple[Any, dict[str, Any]] = (None, {})
        try:
            compared = self._compare(finished)
        except Exception as exc:
            log.warning("sweep comparison failed: %s", exc)
            self.tracker.set_tags(
                self.parent_run_id,
                {"hibayes.comparison_error": f"{type(exc).__name__}: {exc}"},
            )
        # The comparison needs no plots: drawn above while the worker finished the
        # last fits' plots, which the report embeds.
        self._release()
        # Every job has returned: a child still RUNNING lost its process (scancel,
        # a killed Ray worker) before it could end its run.
        self._kill_running_children()
        # A job that failed before its fit opened a run gets a FAILED one here.
        unsent = self._record_failed_jobs(outcomes)
        for outcome in outcomes:  # a run closed after its job returned
            if isinstance(outcome, dict) and self._closed.get(outcome.get("out_dir")):
                outcome["upload_pending"] = self._closed[outcome["out_dir"]]
            if (
                isinstance(outcome, dict)
                and outcome.get("out_dir") in self._failed_late
            ):
                outcome["status"] = "FAILED"
                outcome["error"] = self._failed_late[outcome["out_dir"]]
        failures = [
            f"{' '.join(job)}: {type(o).__name__}: {o}"
            if isinstance(o, BaseException)
            else f"{o.get('name')}: {o.get('error')}"
            for job, o in zip(self.jobs, outcomes)
            if isinstance(o, BaseException) or o.get("status") != "FINISHED"
        ]
        finished = [o for o in finished if o.get("status") == "FINISHED"]
        self._report(outcomes, *compared)
        self.tracker.log_metrics(
            self.parent_run_id,
            {
                "jobs_finished": float(len(finished)),
                "jobs_failed": float(len(failures)),
                "jobs_converged": float(
                    sum(o["metrics"].get("converged", 0) for o in finished)
                ),
            },
        )
        self.tracker.end_run(self.parent_run_id, "FAILED" if failures else "FINISHED")
        self._release_marker()
        pending = [
            str(Path(o["upload_pending"]).parent)
            for o in outcomes
            if isinstance(o, dict) and o.get("upload_pending")
        ] + [str(path.parent) for path in unsent]
        if self.tracker.pending and not self.tracker.flush():
            pending.insert(0, f"{self.sweep_dir} (the sweep's parent run)")
        problems = []
        if failures:
            problems.append(
                f"{len(failures)} of {len(self.jobs)} fits failed:\n  "
                + "\n  ".join(failures)
            )
        if pending:
            problems.append(
                f"{len(pending)} run(s) did not fully reach the MLflow store "
                f"{self.tracker.uri}; their results are on disk. Once the store is back: "
                f"python -m hibayes.sync {self.sweep_dir}\n  " + "\n  ".join(pending)
            )
        if problems:
            raise SweepFailed("\n".join(problems))

    def _record_failed_jobs(
        self, outcomes: Sequence[dict[str, Any] | BaseException]
    ) -> list[Path]:
        """A FAILED child run for each job that raised before its fit opened one
        (:mod:`hibayes.sweep.failed_jobs`); return the pending files of those the
        store did not wholly take. Never fails the sweep: the failure list names them."""
        from hibayes.sweep.failed_jobs import FailedJob, record_failed_jobs

        try:
            failed = [
                FailedJob(num, list(job), outcome, self._job_dir(num))
                for num, (job, outcome) in enumerate(zip(self.jobs, outcomes))
                if isinstance(outcome, BaseException)
            ]
            return record_failed_jobs(self.tracker, self.info, failed, self.cfg.model)
        except Exception as exc:  # noqa: BLE001 - the jobs are done; their runs are extra
            log.warning("could not record the failed jobs' runs: %s", exc)
            return []

    def _job_dir(self, num: int) -> Path:
        """Job ``num``'s folder, as Hydra names it (``hydra.sweep.subdir``)."""
        cfg = copy.deepcopy(self.cfg)
        with read_write(cfg), open_dict(cfg):
            cfg.hydra.job.num = num
            return self.sweep_dir / str(cfg.hydra.sweep.subdir)

    def _release_marker(self) -> None:
        if self._marker is not None:
            self._marker.release()
            self._marker = None

    def _compare(self, finished: list[dict[str, Any]]) -> tuple[Any, dict[str, Any]]:
        """comparison.csv, comparison plot and side-by-side forest on the parent.

        :return: the comparison table (None with fewer than two fits) and the fits
            it loaded, by name, for the report.
        """
        from hibayes.diagnostics.comparison import compare_fits, group_by_data
        from hibayes.inference import load_idata
        from hibayes.outputs.comparison import write_comparison, write_comparison_csv

        by_dir = {o["out_dir"]: o for o in finished}
        by_digest = group_by_data({d: o.get("data_digest") for d, o in by_dir.items()})
        group = [by_dir[d] for d in next(iter(by_digest.values()), [])]
        if len(by_digest) > 1:
            log.warning(
                "children were fitted to different data; comparing the %d on the "
                "most common dataset",
                len(group),
            )
        if len(group) < 2:
            return None, {}
        idatas = {
            o["name"]: self._posteriors[o["out_dir"]]
            if o["out_dir"] in self._posteriors
            else load_idata(Path(o["out_dir"]) / "idata.nc")
            for o in group
        }
        table = compare_fits(idatas)
        # Kept in the sweep dir, not a temp dir: a store that is down gets it later.
        out = self.sweep_dir / "parent_artifacts"
        write_comparison(out, table, idatas)
        self.tracker.log_artifacts(self.parent_run_id, out)
        write_comparison_csv(table, self.sweep_dir / "comparison.csv")
        by = "elpd_cv" if "elpd_cv" in table.columns else "LOO"
        log.info("comparison of %d fits (%s):\n%s", len(group), by, table.to_string())
        return table, idatas

    def _report(
        self,
        outcomes: Sequence[dict[str, Any] | BaseException],
        table: Any,
        idatas: dict[str, Any],
    ) -> None:
        """report.html in the sweep dir and on the parent run; never fails the sweep."""
        from hibayes.outputs.report import FitRecord, write_sweep_report

        try:
            fits = [
                FitRecord.from_outcome(o, job, self.info.varying)
                for job, o in zip(self.jobs, outcomes)
            ]
            links = {
                "MLflow parent run": self.tracker.run_url(self.parent_run_id),
                "sweep folder": str(self.sweep_dir),
            }
            plots = self.sweep_dir / "parent_artifacts" / "plots"  # drawn by _compare
            path = write_sweep_report(
                self.sweep_dir / "report.html",
                fits,
                title=self.info.name,
                comparison=table,
                idatas=idatas,
                links=links,
                drawn={
                    name: plots / f"{name}.png"
                    for name in ("comparison", "forest_side_by_side")
                },
            )
            self.tracker.log_artifact(self.parent_run_id, path)
            log.info("sweep report: %s", path)
        except Exception as exc:  # noqa: BLE001 - the fits are done; a report is extra
            log.warning("sweep report failed: %s: %s", type(exc).__name__, exc)
            self.tracker.set_tags(
                self.parent_run_id,
                {"hibayes.report_error": f"{type(exc).__name__}: {exc}"},
            )


def _warn_sqlite_parallel(cfg: DictConfig, tracker: Tracker) -> None:
    """Say loudly that parallel workers and a SQLite store do not mix well."""
    target = str(OmegaConf.select(cfg, "hydra.launcher._target_", default="") or "")
    uri = str(tracker.uri)
    if uri.startswith("sqlite:") and target and not target.endswith("BasicLauncher"):
        log.warning(
            "the %s launcher runs jobs in parallel processes, all writing to the SQLite "
            "store %s: SQLite takes one writer at a time, so runs may be refused "
            "('database is locked'). Refused records are kept in each job's "
            "upload_pending.json and the sweep exits non-zero; prefer a tracking "
            "server (tracking=server) for parallel sweeps.",
            target.rsplit(".", 1)[-1],
            uri,
        )
