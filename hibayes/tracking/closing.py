"""What a fit gives its run as it closes it, kept in the job folder: ``tags.json``.

At its end a fit tags its run with what it found out (chain method, precision,
structure key, cross-validation method and problems, sensitivity, convergence
verdict and problems) and logs its data as the run's dataset input. Those exist
only in the fit's memory until then, so :meth:`FitRun.record
<hibayes.tracking.run.FitRun.record>` writes them here first, atomically and
before ``metrics.json`` gains ``time_total_s`` (the sign that the fit recorded
everything). A run whose process was killed hard after that point is closed by
``python -m hibayes.sync`` (:mod:`hibayes.tracking.recovery`) with the same tags
and input as a run that closed itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hibayes.outputs.contract import TAGS_FILE
from hibayes.system.atomic import write_text

__all__ = ["ClosingRecord"]


@dataclass
class ClosingRecord:
    """The tags and dataset input a fit gives its run at its end.

    :param tags: tag name -> value.
    :param dataset: the keyword arguments of ``log_dataset_record`` (``record``,
        ``digest``, ``source``, ``context``); ``None`` without a tracking store
        (nothing to describe the table for).
    """

    tags: dict[str, str]
    dataset: dict[str, Any] | None = None

    def write(self, out_dir: Path) -> Path:
        """Write ``tags.json`` in ``out_dir`` (whole or not at all); return its path."""
        data = {"tags": self.tags, "dataset": self.dataset}
        return write_text(
            Path(out_dir) / TAGS_FILE,
            json.dumps(data, indent=2, sort_keys=True, default=str) + "\n",
        )

    @classmethod
    def read(cls, out_dir: Path) -> ClosingRecord:
        """The record in ``out_dir``'s ``tags.json``.

        :raises ValueError: the file is missing or not such a record.
        """
        path = Path(out_dir) / TAGS_FILE
        try:
            data = json.loads(path.read_text())
            tags, dataset = data["tags"], data.get("dataset")
            if not isinstance(tags, dict) or not isinstance(dataset, dict | None):
                raise TypeError("tags must be an object, dataset an object or null")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: not a readable tags record: {exc}") from exc
        return cls({str(k): str(v) for k, v in tags.items()}, dataset)
