"""Which process holds a run open, written in the run's output folder.

When a fit or a sweep opens its run it writes ``.hibayes_run.json`` in its
folder: the owning process (host, pid, start time; see
:class:`~hibayes.system.processes.ProcessId`), where the run lives and how to
create it (the opening calls, in the format of ``upload_pending.json``), and
whether a sweep's worker draws its plots. The process removes the file once it
has recorded the run's end (in the store, or in ``upload_pending.json``). A file
left behind by a process that is gone marks a run cut off by a hard kill
(SIGKILL, the OOM killer, a lost node): ``python -m hibayes.sync`` ends it
(:mod:`hibayes.tracking.recovery`). Writing or removing the file never fails a
fit: it only loses that chance of repair, and says so.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hibayes.system.processes import ProcessId

__all__ = ["MARKER_FILE", "RunMarker"]

log = logging.getLogger("hibayes.tracking.marker")

#: The file, in a run's output directory, naming the process that holds it open.
MARKER_FILE = ".hibayes_run.json"
_VERSION = 1


@dataclass
class RunMarker:
    """An open run and its owner, as recorded in ``path``.

    :param path: the marker file.
    :param kind: ``"fit"`` or ``"sweep"`` (a sweep's parent run).
    :param owner: the process holding the run open.
    :param record: the run's store and opening calls (``upload_pending.json`` format).
    :param plots_deferred: a sweep's worker draws the fit's plots, after the fit.
    """

    path: Path
    kind: str
    owner: ProcessId
    record: dict[str, Any]
    plots_deferred: bool = False

    @property
    def out_dir(self) -> Path:
        """The run's output folder."""
        return self.path.parent

    @property
    def run_key(self) -> str:
        """The ``hibayes.run_key`` tag that finds the run in its store."""
        return str(self.record["run_key"])

    @classmethod
    def create(
        cls,
        out_dir: Path,
        kind: str,
        record: dict[str, Any],
        plots_deferred: bool = False,
    ) -> RunMarker | None:
        """Write the marker of a run this process opens now (None if it cannot)."""
        marker = cls(
            Path(out_dir) / MARKER_FILE,
            kind,
            ProcessId.current(),
            record,
            plots_deferred,
        )
        try:
            marker._write()
        except OSError as exc:
            log.warning(
                "could not write %s (%s): if this process is killed hard, "
                "python -m hibayes.sync cannot end its run",
                marker.path,
                exc,
            )
            return None
        return marker

    @classmethod
    def read(cls, path: Path) -> RunMarker:
        """The marker in ``path``.

        :raises ValueError: the file is not a readable marker.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            if data.get("version") != _VERSION:
                raise ValueError(f"version {data.get('version')!r}")
            return cls(
                path,
                str(data["kind"]),
                ProcessId.from_dict(data["owner"]),
                dict(data["record"]),
                bool(data.get("plots_deferred", False)),
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{path}: not a readable run marker: {exc}") from exc

    def _write(self) -> None:
        data = {
            "version": _VERSION,
            "kind": self.kind,
            "owner": self.owner.as_dict(),
            "plots_deferred": self.plots_deferred,
            "record": self.record,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")
        tmp.replace(self.path)  # never a half-written marker

    def release(self) -> None:
        """The run's end is recorded: remove the marker (a failure is only logged)."""
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not remove %s: %s", self.path, exc)
