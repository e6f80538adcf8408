"""Send what a tracking store missed: ``python -m hibayes.sync PATH [--uri URI]``.

PATH is a fit's output directory, a sweep directory, or any tree above them
(``outputs/``, ``multirun/``). Every ``upload_pending.json`` under it was left by
a fit or a sweep whose store failed (:mod:`hibayes.tracking.deferred`); each is sent in
order — the run found again or created (under its sweep's parent), then its
params, dataset, metrics, tags, artifacts and end status — and removed once
the store has all of it. A sweep's parent goes before its children. Runs that
were uploaded whole are left alone, and a second sync finds nothing to do.
The process exits 1 while something is still pending.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from hibayes.system.command import run_command
from hibayes.tracking.deferred import PENDING_FILE, DeferringTracker

__all__ = ["SyncReport", "find_pending", "main", "sync"]

log = logging.getLogger("hibayes.sync")


@dataclass
class SyncReport:
    """What a sync did.

    :param synced: output directories whose runs are now complete.
    :param created: of those, runs that the store never had and sync created.
    :param failed: ``(directory, reason)`` for records still pending.
    """

    synced: list[Path] = field(default_factory=list)
    created: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)

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


def sync(path: Path, uri: str | None = None) -> SyncReport:
    """Send every pending record under ``path``; see the module docstring.

    :param path: an output directory, a sweep directory, or a tree of them.
    :param uri: the tracking store; default the one each record names.
    :return: what was sent and what is still pending.
    """
    report = SyncReport()
    for pending in find_pending(Path(path)):
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
    return report


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m hibayes.sync",
        description="Upload fit results that did not reach the MLflow store.",
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
    args = parser.parse_args(argv)
    try:
        report = sync(args.path, args.uri)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not report.synced and not report.failed:
        print(f"nothing pending under {args.path}")
        return 0
    print(
        f"synced {len(report.synced)} run(s) ({len(report.created)} created), "
        f"{len(report.failed)} still pending"
    )
    for where, reason in report.failed:
        print(f"  pending: {where}: {reason}", file=sys.stderr)
    return 0 if report.ok else 1


def cli() -> None:
    """Console script ``hibayes-sync``: as ``python -m hibayes.sync``."""
    run_command(main, log_format="%(message)s")


if __name__ == "__main__":
    cli()
