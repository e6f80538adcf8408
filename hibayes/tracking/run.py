"""The MLflow side of one fit: the store checked, the run opened and closed, failures recorded.

:func:`hibayes.fit.fit` opens its run on a thread (:func:`open_run`) while the data
loads and JAX compiles and samples; a store that fails meanwhile leaves its records
in the job's ``upload_pending.json`` (:mod:`hibayes.tracking.deferred`), never the fit undone.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from hibayes.system import interrupts

log = logging.getLogger("hibayes.fit")

__all__ = ["checked", "close_run", "fail_fast", "open_run", "open_tracker", "opened_run",
           "record_failure", "run_params", "settle_uploads", "store_tracker"]


def store_tracker(cfg: DictConfig) -> Any:
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


def open_tracker(cfg: DictConfig, pending_file: Path | None = None, *,
                 defer_unreachable: bool = False) -> Any:
    """The config's tracker, its store checked; see :func:`checked`."""
    return checked(store_tracker(cfg), pending_file, defer_unreachable=defer_unreachable)


def checked(tracker: Any, pending_file: Path | None = None, *,
            defer_unreachable: bool = False) -> Any:
    """``tracker`` once its store answered (a TrackingError naming the URI if not).

    With ``pending_file`` the tracker records what the store fails to take there
    (:mod:`hibayes.tracking.deferred`) instead of failing the fit; with ``defer_unreachable``
    an unreachable store does not stop the fit either: everything is recorded for
    ``python -m hibayes.sync``.
    """
    from hibayes.tracking import NullTracker, TrackingError
    from hibayes.tracking.deferred import DeferringTracker

    if isinstance(tracker, NullTracker):
        return tracker
    try:
        tracker.check_reachable()
    except TrackingError as exc:
        if pending_file is None or not defer_unreachable:
            raise
        from hibayes.system.redaction import scrub_text

        log.warning("%s; fitting anyway, the records go to %s", scrub_text(str(exc)),
                    pending_file)
        return DeferringTracker(tracker, pending_file, offline_reason=str(exc))
    return tracker if pending_file is None else DeferringTracker(tracker, pending_file)


def fail_fast(tracker: Any) -> None:
    """Refuse an unusable store before any work: SQLite in milliseconds, others fully."""
    from hibayes.tracking import MlflowTracker
    from hibayes.tracking.store import check_sqlite_openable, sqlite_db_path

    if not isinstance(tracker, MlflowTracker):
        return
    if sqlite_db_path(tracker.uri) is not None:
        check_sqlite_openable(tracker.uri)
    else:
        tracker.check_reachable()


def open_run(tracker: Any, pending_file: Path, name: str, tags: dict[str, str],
             parent_run_id: str | None, params: dict[str, str]) -> tuple[Any, str]:
    """Open the store, start the run and log its params (on a thread, see :func:`hibayes.fit.fit`)."""
    from hibayes.tracking import provenance_tags

    tracker = checked(tracker, pending_file, defer_unreachable=True)
    run_id = tracker.start_run(name, tags={**provenance_tags(), **tags},
                               parent_run_id=parent_run_id)
    tracker.log_params(run_id, params)
    return tracker, run_id


def settle_uploads(tracker: Any, prefix: str) -> str | None:
    """Send what the store missed if it is back; else say where it waits."""
    if not getattr(tracker, "pending", False):
        return None
    if tracker.flush():
        log.info("%sthe store is back: every record of this fit arrived", prefix)
        return None
    log.error("%snot every record reached %s (%s); the results are on disk: "
              "python -m hibayes.sync %s", prefix, tracker.uri, tracker.reason,
              tracker.pending_file.parent)
    return str(tracker.pending_file)


def close_run(tracker: Any, run_id: str, out_dir: Path, prefix: str) -> str | None:
    """Upload the job dir and end the run FINISHED.

    :return: the pending-upload file if the store missed records, else ``None``.
    """
    tracker.log_artifacts(run_id, out_dir)
    interrupts.check()  # a signal the fit has not acted on yet: not FINISHED
    tracker.end_run(run_id, "FINISHED")
    return settle_uploads(tracker, prefix)


def run_params(cfg: DictConfig) -> dict[str, str]:
    """The resolved config as flat, redacted MLflow params (Hydra's own section left out)."""
    from hibayes.config import to_plain
    from hibayes.tracking import flatten_config, redact

    plain = {k: v for k, v in to_plain(cfg).items() if k != "hydra"}
    return redact(flatten_config(plain))


def opened_run(opening: Any) -> tuple[Any, str]:
    """The run the thread opened, waited for; ``(None, "")`` if opening it failed."""
    try:
        return opening.result()
    except (KeyboardInterrupt, SystemExit):  # a second signal: stop waiting for the store
        interrupts.acknowledge()
        log.warning("interrupted again: not waiting for the MLflow store to record this")
    except Exception as exc:  # noqa: BLE001 - the fit's own error matters more
        log.warning("could not open the run to record the failure: %s", exc)
    return None, ""


def record_failure(tracker: Any, run_id: str, exc: BaseException, out_dir: Path,
                   status: str) -> None:
    """Best effort: traceback on disk and on the run, run ended with ``status``."""
    from hibayes.outputs.files import write_traceback

    path = write_traceback(exc, out_dir)
    try:
        tracker.log_artifact(run_id, path)
        tracker.set_tags(run_id, {"hibayes.error": f"{type(exc).__name__}: {exc}"[:5000]})
    except Exception as log_exc:  # the store may be why we failed
        log.warning("could not record the failure on the run: %s", log_exc)
    finally:
        try:
            tracker.end_run(run_id, status)
        except Exception as end_exc:
            log.warning("could not mark run %s as %s: %s", run_id, status, end_exc)
