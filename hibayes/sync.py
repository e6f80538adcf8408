"""Complete what a tracking store missed: ``python -m hibayes.sync PATH [--uri URI]``.

PATH is a fit's output directory, a sweep directory, or any tree above them
(``outputs/``, ``multirun/``). Every ``upload_pending.json`` under it was left by
a fit or a sweep whose store failed (:mod:`hibayes.tracking.deferred`); each is sent in
order — the run found again or created (under its sweep's parent), then its
params, dataset, metrics, tags, artifacts and end status — and removed once
the store has all of it. A sweep's parent goes before its children. Runs that
were uploaded whole are left alone, and a second sync finds nothing to do.

Then every run left open by a process killed hard (SIGKILL, the OOM killer, a
lost node), found by the ``.hibayes_run.json`` its process left in its folder, is
ended (:mod:`hibayes.tracking.recovery`): FINISHED with its metrics when all of a
finished fit's outputs are on disk, KILLED otherwise, with what is complete on
disk uploaded; a sweep's parent before its jobs. A run whose process still runs
is left alone and listed. The process exits 1 while something is still pending.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from hibayes.system.command import run_command
from hibayes.tracking.deferred import PENDING_FILE, DeferringTracker
from hibayes.tracking.recovery import find_markers, recover

__all__ = ["SyncReport", "find_pending", "main", "sync"]

log = logging.getLogger("hibayes.sync")


@dataclass
class SyncReport:
    """What a sync did.

    :param synced: output directories whose runs are now complete.
    :param created: of those, runs that the store never had and sync created.
    :param failed: ``(directory, reason)`` for records still pending.
    :param ended: ``(directory, status)`` for runs of killed processes ended now.
    :param left: ``(directory, why)`` for open runs left alone (process alive).
    """

    synced: list[Path] = field(default_factory=list)
    created: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    ended: list[tuple[Path, str]] = field(default_factory=list)
    left: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def acted(self) -> bool:
        """Whether there was anything to send or end."""
        return bool(self.synced or self.failed or self.ended)

    def summary(self) -> str:
        """The one-line report."""
        parts = []
        if self.synced or (self.failed and not self.ended):
            parts.append(
                f"synced {len(self.synced)} run(s) ({len(self.created)} created)"
            )
        if self.ended:
            by_status = {
                status: sum(1 for _, s in self.ended if s == status)
                for status in ("KILLED", "FINISHED")
            }
            parts.append(
                f"ended {len(self.ended)} run(s) of killed processes ("
                + ", ".join(f"{n} {s}" for s, n in by_status.items() if n)
                + ")"
            )
        parts.append(f"{len(self.failed)} still pending")
        if self.left:
            parts.append(f"{len(self.left)} left alone (process still running)")
        return ", ".join(parts)

    @property
    def ok(self) -> bool:
        """Whether nothing is left pending."""
        return not self.failed


def find_pending(path: Path) -> list[Path]:
    """Pending-upload files under ``path``, shallowest first (parents before children).

    :param path: a directory (or one ``upload_pending.json``).
    :raises FileNotFoundError: ``path`` does not exist.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    if path.is_file():
        return [path]
    found = list(path.rglob(PENDING_FILE))
    return sorted(found, key=lambda p: (len(p.parts), str(p)))


def sync(
    path: Path, uri: str | None = None, lost_hosts: Collection[str] = ()
) -> SyncReport:
    """Send every pending record under ``path``, then end the runs of killed
    processes; see the module docstring.

    :param path: an output directory, a sweep directory, or a tree of them.
    :param uri: the tracking store; default the one each record names.
    :param lost_hosts: hosts whose processes are gone (their runs are ended too).
    :return: what was sent, ended, left alone and is still pending.
    """
    report = SyncReport()
    _send_pending(Path(path), uri, report)
    still_pending = {where for where, _ in report.failed}
    for marker in find_markers(Path(path)):
        if marker.parent in still_pending:
            continue  # its records must reach the store first
        done = recover(marker, uri, lost_hosts)
        if done.ended:
            report.ended.append((done.out_dir, done.action))
        elif done.action in ("running", "elsewhere"):
            report.left.append((done.out_dir, done.detail))
        elif done.action == "failed":
            report.failed.append((done.out_dir, done.detail))
            log.error("%s: still open (%s)", done.out_dir, done.detail)
    return report


def _send_pending(path: Path, uri: str | None, report: SyncReport) -> None:
    """Replay every ``upload_pending.json`` under ``path`` into ``report``."""
    for pending in find_pending(path):
        where = pending.parent
        try:
            tracker = DeferringTracker.from_file(pending, uri=uri)
        except ValueError as exc:
            report.failed.append((where, str(exc)))
            continue
        never_created = tracker.run_id is None
        if tracker.flush():
            report.synced.append(where)
            if never_created:
                report.created.append(where)
            log.info("%s: run %s complete in %s", where, tracker.run_id, tracker.uri)
        else:
            report.failed.append((where, tracker.reason or "unknown"))
            log.error("%s: still pending (%s)", where, tracker.reason)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m hibayes.sync",
        description="Upload fit results that did not reach the MLflow store, and "
        "end the runs of processes that were killed hard.",
    )
    parser.add_argument(
        "path",
        type=Path,
        help="a fit's output dir, a sweep dir, or a tree (outputs/, multirun/)",
    )
    parser.add_argument(
        "--uri",
        default=None,
        help="tracking URI to send to (default: the one each record names)",
    )
    parser.add_argument(
        "--lost-host",
        action="append",
        default=[],
        metavar="HOST",
        help="a host (node) whose processes are gone: end their open runs too "
        "(repeatable; by default runs opened on another host are left alone)",
    )
    args = parser.parse_args(argv)
    try:
        report = sync(args.path, args.uri, args.lost_host)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not report.acted:
        extra = f"; {len(report.left)} open run(s) left alone" if report.left else ""
        print(f"nothing pending under {args.path}{extra}")
    else:
        print(report.summary())
    for where, why in report.left:
        print(f"  left alone: {where}: {why}")
    for where, reason in report.failed:
        print(f"  pending: {where}: {reason}", file=sys.stderr)
    return 0 if report.ok else 1


def cli() -> None:
    """Console script ``hibayes-sync``: as ``python -m hibayes.sync``."""
    run_command(main, log_format="%(message)s")


if __name__ == "__main__":
    cli()
