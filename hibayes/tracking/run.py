"""One fit's MLflow run, from opening to closing: :class:`FitRun`.

``hibayes.fit.fit`` runs its pipeline inside ``with FitRun.open(cfg, job) as run``.
The run is opened on a thread while the data loads and JAX compiles and samples
(importing MLflow and opening a SQLite store take seconds); a store that fails
meanwhile leaves its records in the job's ``upload_pending.json``
(:mod:`hibayes.tracking.deferred`), never the fit undone. Leaving the block with
an exception ends the run FAILED (KILLED for an interrupt) with its traceback; in
a sweep a failed fit is reported and the sweep goes on. A run ends FINISHED only
with every file of its contract (:mod:`hibayes.outputs.contract`) on disk; an
output that cannot be written (a full disk) fails it, the error kept on the run
when the disk cannot take it and on disk when the store cannot. Until the run's
end is recorded, ``.hibayes_run.json`` in the job folder names this process, so
that ``python -m hibayes.sync`` can end a run whose process was killed hard
(:mod:`hibayes.tracking.marker`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Mapping
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any

from omegaconf import DictConfig

from hibayes.errors import HibayesError
from hibayes.outputs.contract import check_outputs
from hibayes.outputs.files import write_config, write_json, write_traceback
from hibayes.outputs.products import FitProducts
from hibayes.system import interrupts
from hibayes.system.atomic import write_bytes
from hibayes.system.background import in_background, preload
from hibayes.tracking.base import Tracker, TrackingError
from hibayes.tracking.closing import ClosingRecord
from hibayes.tracking.job import FitOutcome, JobContext, SweepInfo, read_sweep_info
from hibayes.tracking.marker import RunMarker

log = logging.getLogger("hibayes.fit")

__all__ = [
    "FitRun",
    "checked",
    "open_marker",
    "open_tracker",
    "run_name",
    "run_params",
    "settle_uploads",
    "store_tracker",
]

# Needed only after sampling: imported on a thread while JAX compiles and samples.
_POST_SAMPLING_MODULES = (
    "arviz",
    "matplotlib.figure",
    "matplotlib.backends.backend_agg",
)

# Overrides that say where things are, not what was fitted: kept out of run names.
_UNNAMING = ("hydra", "tracking", "runtime", "data.", "model.path")


class FitRun:
    """The MLflow run of one fit; use as ``with FitRun.open(cfg, job) as run:``.

    :ivar outcome: what the job reports back, filled in as the fit goes.
    """

    def __init__(
        self,
        cfg: DictConfig,
        job: JobContext,
        extra_tags: Mapping[str, str] | None = None,
    ) -> None:
        """Name the run and check the store; nothing is opened yet (see :meth:`open`)."""
        self.job = job
        self.out_dir = job.out_dir
        self.sweep: SweepInfo | None = read_sweep_info(job.sweep_dir)
        named_by = job.overrides
        if self.sweep:  # in a sweep, what differs between jobs names them
            named_by = self.sweep.naming(job.overrides)
        self.name = run_name(str(cfg.model.get("name")), cfg.model.get("tag"), named_by)
        self.prefix = (
            f"[job {job.job_num + 1}/{self.sweep.n_jobs}] "
            if self.sweep and job.job_num is not None
            else ""
        )
        self.outcome = FitOutcome(
            status="RUNNING", name=self.name, run_id="", out_dir=str(self.out_dir)
        )
        self._cfg = cfg
        self._tags = self._run_tags(cfg, extra_tags)
        self._cv_method = ""  # which estimate elpd_cv is, once the fit is recorded
        self._tracker: Tracker | None = None
        self._opening: Future | None = None
        self._marker: RunMarker | None = None
        self._started = time.perf_counter()
        self._store = store_tracker(cfg)
        # An unusable store stops a single fit here, before any work. A sweep's job (its
        # parent run exists) records everything for `python -m hibayes.sync` instead.
        if not (self.sweep and self.sweep.parent_run_id):
            _fail_fast(self._store)

    @classmethod
    def open(
        cls,
        cfg: DictConfig,
        job: JobContext,
        extra_tags: Mapping[str, str] | None = None,
    ) -> FitRun:
        """A run for this job: enter it to open it (see the class docstring)."""
        return cls(cfg, job, extra_tags)

    def __enter__(self) -> FitRun:
        """Start opening the run on a thread and write the job's config."""
        preload(_POST_SAMPLING_MODULES)
        pending_file = self.out_dir / _pending_file_name()
        store, tags, params = self._store, self._tags, run_params(self._cfg)
        parent = self.sweep.parent_run_id if self.sweep else None
        run_key = uuid.uuid4().hex
        self._marker = open_marker(
            store,
            self.out_dir,
            "fit",
            run_key,
            self.name,
            tags,
            parent,
            params,
            plots_deferred=not self.draws_plots,
        )
        self._opening = in_background(
            lambda: _open_run(
                store, pending_file, self.name, tags, parent, params, run_key
            ),
            "hibayes-open-run",
        )
        try:
            write_config(self._cfg, self.out_dir)
            overrides_file = self.out_dir / ".hydra" / "overrides.yaml"
            if overrides_file.exists():
                write_bytes(
                    self.out_dir / "overrides.yaml", overrides_file.read_bytes()
                )
        except BaseException as exc:  # the body never runs: end the run here
            self._record(exc)
            raise
        return self

    @property
    def draws_plots(self) -> bool:
        """Whether the fit draws its own plots (not so when a sweep's worker does)."""
        return self.job.plots is None

    def progress(self, message: str) -> None:
        """Log a stage of the fit; a signal received meanwhile is raised here.

        Thread-safe: from another thread (a long stage's timer, sampling ticks)
        it only logs, leaving the signal for the main thread to raise.
        """
        if threading.current_thread() is threading.main_thread():
            interrupts.check()
        log.info("%s%s: %s", self.prefix, self.name, message)

    def record(self, products: FitProducts) -> None:
        """Log what the fit computed, upload its outputs and close the run FINISHED."""
        self.outcome.data_digest = products.data_digest
        self._cv_method = products.tags.get("hibayes.cv_method", "")
        tracker, run_id = self._opened()
        total = time.perf_counter() - self._started
        ess = products.metrics.get("ess_bulk_min", float("nan"))
        metrics = {
            **products.metrics,
            "time_total_s": total,
            "ess_bulk_per_s": ess / total,
        }
        closing = ClosingRecord(
            {
                **products.tags,
                "hibayes.converged": "yes" if metrics.get("converged") == 1.0 else "no",
                "hibayes.problems": "; ".join(products.problems) or "none",
            },
            self._dataset(products),
        )
        # Before metrics.json says the fit is done: a run cut off after that point
        # is closed by hibayes.sync with these tags and this input, as here.
        closing.write(self.out_dir)
        write_json(metrics, self.out_dir / "metrics.json")
        # Never FINISHED with less than the contract: the plots a sweep's worker
        # draws are checked when it has drawn them (_close_once_plotted).
        plots = [f for f in products.contract if f.startswith("plots/")]
        deferred = plots if self.job.plots is not None else []
        check_outputs(self.out_dir, [f for f in products.contract if f not in deferred])
        if closing.dataset is not None:
            tracker.log_dataset_record(run_id, **closing.dataset)
        tracker.log_metrics(run_id, metrics)
        tracker.set_tags(run_id, closing.tags)
        if self.job.plots is None:
            tracker.log_artifacts(run_id, self.out_dir)
            interrupts.check()  # a signal the fit has not acted on yet: not FINISHED
            tracker.end_run(run_id, "FINISHED")
            self._release()
            self.outcome.upload_pending = settle_uploads(tracker, self.prefix)
        else:  # the sweep ends the run once its worker has drawn the plots
            tracker.log_artifacts(
                run_id, self.out_dir
            )  # all but the plots, should we die
            interrupts.check()
            self.job.plots.defer_plots(
                self.out_dir,
                products.idata,
                products.loo,
                lambda seconds, error=None: self._close_once_plotted(
                    metrics, plots, seconds, error
                ),
                self.prefix,
            )
        self.outcome.status = "FINISHED"
        self.outcome.metrics, self.outcome.problems = metrics, list(products.problems)
        log.info("%s%s", self.prefix, self._summary_line(tracker))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        """Record a failure; swallow it in a sweep (the sweep goes on), else re-raise.

        Only the user's interrupt (``KeyboardInterrupt``, which SIGTERM and SIGINT
        become) ends the run KILLED and stops a sweep; anything else, a model's
        ``sys.exit()`` included, fails this fit alone.
        """
        if exc is None:
            return False
        interrupted = self._record(exc)
        if isinstance(exc, SystemExit) and self.sweep is None:
            raise _as_error(exc) from exc  # one line, exit 1, not the fit's own code
        return not interrupted and self.sweep is not None

    def _record(self, exc: BaseException) -> bool:
        """End the run FAILED (KILLED for an interrupt) with ``exc`` recorded where it
        can be: on the run and on disk, either alone when the other fails (a full disk,
        a store gone). Return whether it was an interrupt."""
        interrupted = isinstance(exc, KeyboardInterrupt)
        if interrupted:
            interrupts.acknowledge()  # handled here: the run ends KILLED
        self.outcome.status = "KILLED" if interrupted else "FAILED"
        self.outcome.error = f"{type(exc).__name__}: {exc}"
        tracker, run_id = self._tracker, self.outcome.run_id
        if tracker is None:
            tracker, run_id = self._opened_after_failure()
        if tracker is None:
            _write_traceback(exc, self.out_dir)
        else:
            _record_failure(tracker, run_id, exc, self.out_dir, self.outcome.status)
            self._release()
        log.error(
            "%s%s %s: %s",
            self.prefix,
            self.name,
            self.outcome.status,
            self.outcome.error,
        )
        if not interrupted and tracker is not None:
            self.outcome.upload_pending = _settled(tracker, self.prefix)
        return interrupted

    def _opened(self) -> tuple[Tracker, str]:
        """The tracker and run id once the opening thread is done (its error if not)."""
        if self._tracker is None:
            assert self._opening is not None, "FitRun used outside its with block"
            self._tracker, self.outcome.run_id = self._opening.result()
        return self._tracker, self.outcome.run_id

    def _opened_after_failure(self) -> tuple[Tracker | None, str]:
        """The run the thread opened, waited for; ``(None, "")`` if opening it failed."""
        if self._opening is None:
            return None, ""
        try:
            return self._opened()
        except (KeyboardInterrupt, SystemExit):  # a second signal: stop waiting
            interrupts.acknowledge()
            log.warning(
                "interrupted again: not waiting for the MLflow store to record this"
            )
        except Exception as exc:  # noqa: BLE001 - the fit's own error matters more
            log.warning("could not open the run to record the failure: %s", exc)
        return None, ""

    def _close_once_plotted(
        self,
        metrics: dict[str, float],
        plots: list[str],
        seconds: float | None,
        error: BaseException | None = None,
    ) -> str | None:
        """Upload the plots the sweep's worker drew and end the run FINISHED.

        :param plots: the plots of the fit's contract, all present by now.
        :param seconds: how long they took; ``None``: not drawn in time (the
            sweep was interrupted): the run ends KILLED.
        :param error: why they could not be drawn or saved: the run ends FAILED.
        :raises Exception: ``error``, or the plots missing, once the run is ended.
        """
        tracker, run_id = self._opened()
        if error is None and seconds is None:
            self._record(KeyboardInterrupt("stopped before its plots were drawn"))
            return self.outcome.upload_pending
        try:
            if error is not None:
                raise error
            check_outputs(self.out_dir, plots)
            tracker.log_metrics(run_id, {"time_plots_s": seconds})
            tracker.log_artifact(
                run_id,
                write_json(
                    {**metrics, "time_plots_s": seconds}, self.out_dir / "metrics.json"
                ),
            )
            if (self.out_dir / "plots").is_dir():
                tracker.log_artifacts(run_id, self.out_dir / "plots", "plots")
        except Exception as exc:
            self._record(exc)
            raise
        tracker.end_run(run_id, "FINISHED")
        self._release()
        return settle_uploads(tracker, self.prefix)

    def _dataset(self, products: FitProducts) -> dict[str, Any] | None:
        """The run's dataset input, described without its rows (``log_dataset_record``'s
        arguments); ``None`` without an MLflow store, which alone takes one."""
        from hibayes.tracking import MlflowTracker
        from hibayes.tracking.datasets import dataset_record

        if not isinstance(self._store, MlflowTracker):
            return None
        record = dataset_record(
            products.table,
            name=Path(products.source).stem,
            source=products.source,
            digest=products.data_digest,
        )
        return {
            "record": record,
            "digest": products.data_digest,
            "source": products.source,
            "context": "training",
        }

    def _release(self) -> None:
        """The run's end is recorded: this process no longer holds it open."""
        if self._marker is not None:
            self._marker.release()
            self._marker = None

    def _run_tags(
        self, cfg: DictConfig, extra: Mapping[str, str] | None
    ) -> dict[str, str]:
        """The tags set when the run starts: what, where from, which sweep."""
        tags = {
            "hibayes.model": str(cfg.model.get("name")),
            "hibayes.overrides": " ".join(self.job.overrides),
            "hibayes.output_dir": str(self.out_dir.resolve()),
            # Relative paths in the config (data.path, model.path) mean this directory.
            "hibayes.working_dir": str(Path.cwd()),
            # Which node and process ran the fit (clusters: where to look, what to kill).
            "hibayes.process": f"{socket.gethostname()}:{os.getpid()}",
            **(extra or {}),
        }
        if cfg.model.get("tag"):
            tags["hibayes.tag"] = str(cfg.model.tag)
        if self.sweep:
            tags.update(
                {
                    "hibayes.sweep_id": self.sweep.sweep_id,
                    "hibayes.job_num": str(self.job.job_num),
                }
            )
        return tags

    def _summary_line(self, tracker: Tracker) -> str:
        """One line per finished fit: verdict, elpd, time, where to look."""
        m, outcome = self.outcome.metrics, self.outcome
        verdict = (
            "converged"
            if m.get("converged") == 1.0
            else "NOT converged: " + "; ".join(outcome.problems)
        )
        where = tracker.run_url(outcome.run_id) if outcome.run_id else outcome.out_dir
        return (
            f"{outcome.name}: {verdict} | elpd_loo {m.get('elpd_loo', float('nan')):.1f}"
            f" ± {m.get('elpd_loo_se', float('nan')):.1f} | elpd_cv "
            f"{m.get('elpd_cv', float('nan')):.1f} ± {m.get('elpd_cv_se', float('nan')):.1f}"
            f" ({self._cv_method or '-'}) | {m.get('time_total_s', 0):.1f} s | {where}"
        )


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


def store_tracker(cfg: DictConfig) -> Tracker:
    """The tracker the config asks for; nothing is contacted yet."""
    from hibayes.tracking import MlflowTracker, NullTracker

    section = cfg.get("tracking")
    if section is None or not section.get("enabled", True):
        return NullTracker()
    return MlflowTracker(
        uri=section.get("uri"),
        experiment=section.get("experiment") or "hibayes",
        artifact_location=section.get("artifact_location"),
    )


def open_tracker(
    cfg: DictConfig,
    pending_file: Path | None = None,
    *,
    defer_unreachable: bool = False,
) -> Tracker:
    """The config's tracker, its store checked; see :func:`checked`."""
    return checked(
        store_tracker(cfg), pending_file, defer_unreachable=defer_unreachable
    )


def checked(
    tracker: Tracker,
    pending_file: Path | None = None,
    *,
    defer_unreachable: bool = False,
    run_key: str | None = None,
) -> Tracker:
    """``tracker`` once its store answered (a TrackingError naming the URI if not).

    With ``pending_file`` the tracker records what the store fails to take there
    (:mod:`hibayes.tracking.deferred`) instead of failing the fit; with
    ``defer_unreachable`` an unreachable store does not stop the fit either:
    everything is recorded for ``python -m hibayes.sync``. ``run_key`` is the
    run's ``hibayes.run_key`` tag, when chosen already (see :func:`open_marker`).
    """
    from hibayes.system.redaction import scrub_text
    from hibayes.tracking.deferred import DeferringTracker
    from hibayes.tracking.null_tracker import NullTracker

    if isinstance(tracker, NullTracker):
        return tracker
    try:
        tracker.check_reachable()
    except TrackingError as exc:
        if pending_file is None or not defer_unreachable:
            raise
        log.warning(
            "%s; fitting anyway, the records go to %s",
            scrub_text(str(exc)),
            pending_file,
        )
        return DeferringTracker(
            tracker, pending_file, offline_reason=str(exc), run_key=run_key
        )
    if pending_file is None:
        return tracker
    return DeferringTracker(tracker, pending_file, run_key=run_key)


def open_marker(
    store: Tracker,
    out_dir: Path,
    kind: str,
    run_key: str | None,
    name: str,
    tags: Mapping[str, str],
    parent_run_id: str | None,
    params: Mapping[str, str] | None = None,
    plots_deferred: bool = False,
) -> RunMarker | None:
    """Say in ``out_dir`` that this process holds the run open (MLflow stores only).

    :param run_key: the run's ``hibayes.run_key`` tag; default that of ``store``,
        a :class:`~hibayes.tracking.deferred.DeferringTracker` that opened the run.
    """
    from hibayes.tracking import MlflowTracker
    from hibayes.tracking.deferred import DeferringTracker

    if isinstance(store, DeferringTracker):
        run_key = run_key or store.run_key
        store = store.store
    if not isinstance(store, MlflowTracker):
        return None
    opening = DeferringTracker(
        store, out_dir / _pending_file_name(), run_key=run_key
    ).opening_record(name, tags, parent_run_id, params)
    return RunMarker.create(out_dir, kind, opening, plots_deferred)


def settle_uploads(tracker: Tracker, prefix: str = "") -> str | None:
    """Send what the store missed if it is back; else say where it waits."""
    if not tracker.pending:
        return None
    if tracker.flush():
        log.info("%sthe store is back: every record of this fit arrived", prefix)
        return None
    log.error(
        "%snot every record reached %s (%s); the results are on disk: "
        "python -m hibayes.sync %s",
        prefix,
        tracker.uri,
        tracker.reason,
        tracker.pending_file.parent,
    )
    return str(tracker.pending_file)


def run_params(cfg: DictConfig) -> dict[str, str]:
    """The resolved config as flat, redacted MLflow params (Hydra's own section left out)."""
    from hibayes.config import to_plain
    from hibayes.tracking import flatten_config, redact

    plain = {k: v for k, v in to_plain(cfg).items() if k != "hydra"}
    return redact(flatten_config(plain))


def _pending_file_name() -> str:
    from hibayes.tracking.deferred import PENDING_FILE

    return PENDING_FILE


def _fail_fast(tracker: Tracker) -> None:
    """Refuse an unusable store before any work: SQLite in milliseconds, others fully."""
    from hibayes.tracking import MlflowTracker
    from hibayes.tracking.store import check_sqlite_openable, sqlite_db_path

    if not isinstance(tracker, MlflowTracker):
        return
    if sqlite_db_path(tracker.uri) is not None:
        check_sqlite_openable(tracker.uri)
    else:
        tracker.check_reachable()


def _open_run(
    tracker: Tracker,
    pending_file: Path,
    name: str,
    tags: dict[str, str],
    parent_run_id: str | None,
    params: dict[str, str],
    run_key: str,
) -> tuple[Tracker, str]:
    """Open the store, start the run and log its params (on the opening thread)."""
    from hibayes.tracking import provenance_tags

    tracker = checked(tracker, pending_file, defer_unreachable=True, run_key=run_key)
    run_id = tracker.start_run(
        name, tags={**provenance_tags(), **tags}, parent_run_id=parent_run_id
    )
    tracker.log_params(run_id, params)
    return tracker, run_id


def _as_error(exc: SystemExit) -> BaseException:
    """A fit's own ``sys.exit()`` as the error it is: the fit failed, it did not end."""
    from hibayes.errors import HibayesError

    return HibayesError(
        f"the fit called sys.exit({exc.code!r}) and failed; see "
        "traceback.txt in its output folder"
    )


def _write_traceback(exc: BaseException, out_dir: Path) -> Path | None:
    """``traceback.txt`` in the job folder, or ``None`` if it cannot be written."""
    try:
        return write_traceback(exc, out_dir)
    except HibayesError as write_exc:  # a full disk: the run still records it
        log.warning("no traceback.txt on disk: %s", write_exc)
        return None


def _settled(tracker: Tracker, prefix: str) -> str | None:
    """:func:`settle_uploads`, when the disk may be too full to note what waits."""
    try:
        return settle_uploads(tracker, prefix)
    except HibayesError as exc:
        log.warning("%snot every record reached the store, and %s", prefix, exc)
        return None


def _record_failure(
    tracker: Tracker, run_id: str, exc: BaseException, out_dir: Path, status: str
) -> None:
    """Best effort: traceback on disk and on the run, run ended with ``status``.

    A full disk leaves the traceback on the run only (``traceback.txt`` sent from
    memory), a store gone leaves it on disk only; the run is ended either way.
    """
    path = _write_traceback(exc, out_dir)
    text = "".join(traceback.format_exception(exc))
    for what, record in (
        (
            "the traceback",
            lambda: (
                tracker.log_artifact(run_id, path)
                if path is not None
                else tracker.log_text(run_id, text, "traceback.txt")
            ),
        ),
        (
            "the error",
            lambda: tracker.set_tags(
                run_id, {"hibayes.error": f"{type(exc).__name__}: {exc}"[:5000]}
            ),
        ),
        ("the status", lambda: tracker.end_run(run_id, status)),
    ):
        try:
            record()
        except Exception as log_exc:  # noqa: BLE001 - the store may be why we failed
            log.warning("could not record %s on run %s: %s", what, run_id, log_exc)
