"""One Hydra multirun as one parent MLflow run with a child run per job.

The sweeper plugin (``hydra_plugins/hibayes_sweeper``) calls :class:`SweepSession`
in the launching process: it opens the parent run, writes the parent's id into
the sweep directory (``.hibayes_sweep.json``) where every job, in whatever
process or machine, reads it explicitly, and when the jobs are done it compares
the finished children on the parent and closes it. A sweep with failed jobs
ends FAILED and raises :class:`SweepFailed` listing them, so the process exits
non-zero after every job ran.
"""

from __future__ import annotations

import json
import logging
import signal
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig

log = logging.getLogger("hibayes.sweep")

__all__ = ["SweepInfo", "SweepSession", "SweepFailed", "read_sweep_info", "SWEEP_FILE"]

SWEEP_FILE = ".hibayes_sweep.json"


class SweepFailed(RuntimeError):
    """Some jobs of a sweep failed; every other job still ran."""


@dataclass(frozen=True)
class SweepInfo:
    """What each job of a sweep needs to know about it.

    :param sweep_id: unique id of the sweep (its directory, made absolute).
    :param parent_run_id: the parent MLflow run ("" when tracking is off).
    :param name: the parent run's name.
    :param n_jobs: number of jobs in the sweep.
    :param varying: override keys whose values differ between jobs (they name runs).
    """

    sweep_id: str
    parent_run_id: str
    name: str
    n_jobs: int
    varying: tuple[str, ...] = ()


def read_sweep_info(sweep_dir: Path | None) -> SweepInfo | None:
    """The sweep's record from its directory, or ``None`` outside a hibayes sweep."""
    if sweep_dir is None:
        return None
    path = Path(sweep_dir) / SWEEP_FILE
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    record["varying"] = tuple(record.get("varying", ()))
    return SweepInfo(**record)


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

    def __init__(self, cfg: DictConfig, jobs: Sequence[Sequence[str]]) -> None:
        from .fit import _open_tracker
        from .tracking import provenance_tags

        self.cfg = cfg
        self.jobs = [list(j) for j in jobs]
        self.sweep_dir = Path(cfg.hydra.sweep.dir).resolve()
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        self.tracker = _open_tracker(cfg)
        name = _sweep_name(cfg, self.jobs)
        tags = {
            **provenance_tags(),
            "hibayes.sweep_id": str(self.sweep_dir),
            "hibayes.n_jobs": str(len(self.jobs)),
            "hibayes.output_dir": str(self.sweep_dir),
        }
        self.parent_run_id = self.tracker.start_run(name, tags=tags)
        self.info = SweepInfo(str(self.sweep_dir), self.parent_run_id, name, len(self.jobs),
                              varying_keys(self.jobs))
        (self.sweep_dir / SWEEP_FILE).write_text(json.dumps(asdict(self.info), indent=2))
        self.tracker.log_text(
            self.parent_run_id, "\n".join(" ".join(j) for j in self.jobs) + "\n", "jobs.txt"
        )
        self._previous_sigterm = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _raise_interrupt)
        log.info("sweep of %d fits: %s", len(self.jobs), name)

    def abort(self, status: str = "KILLED") -> None:
        """End the parent run early (interrupt or launcher failure)."""
        signal.signal(signal.SIGTERM, self._previous_sigterm)
        try:
            self.tracker.end_run(self.parent_run_id, status)
        except Exception as exc:
            log.warning("could not end the sweep's parent run: %s", exc)

    def finish(self, outcomes: Sequence[dict[str, Any] | BaseException]) -> None:
        """Compare finished children on the parent, close it, raise if jobs failed."""
        signal.signal(signal.SIGTERM, self._previous_sigterm)
        failures, finished = [], []
        for job, outcome in zip(self.jobs, outcomes):
            if isinstance(outcome, BaseException):
                failures.append(f"{' '.join(job)}: {type(outcome).__name__}: {outcome}")
            elif outcome.get("status") != "FINISHED":
                failures.append(f"{outcome.get('name')}: {outcome.get('error')}")
            else:
                finished.append(outcome)
        try:
            self._compare(finished)
        except Exception as exc:
            log.warning("sweep comparison failed: %s", exc)
            self.tracker.set_tags(self.parent_run_id,
                                  {"hibayes.comparison_error": f"{type(exc).__name__}: {exc}"})
        self.tracker.log_metrics(self.parent_run_id, {
            "jobs_finished": float(len(finished)),
            "jobs_failed": float(len(failures)),
            "jobs_converged": float(sum(o["metrics"].get("converged", 0) for o in finished)),
        })
        self.tracker.end_run(self.parent_run_id, "FAILED" if failures else "FINISHED")
        if failures:
            raise SweepFailed(
                f"{len(failures)} of {len(self.jobs)} fits failed:\n  " + "\n  ".join(failures)
            )

    def _compare(self, finished: list[dict[str, Any]]) -> None:
        """comparison.csv, comparison plot and side-by-side forest on the parent."""
        from .comparison import compare_fits, comparison_to_csv
        from .inference import load_idata

        by_digest: dict[str | None, list[dict]] = {}
        for outcome in finished:
            by_digest.setdefault(outcome.get("data_digest"), []).append(outcome)
        group = max(by_digest.values(), key=len, default=[])
        if len(by_digest) > 1:
            log.warning("children were fitted to different data; comparing the %d on the "
                        "most common dataset", len(group))
        if len(group) < 2:
            return
        idatas = {o["name"]: load_idata(Path(o["out_dir"]) / "idata.nc") for o in group}
        table = compare_fits(idatas)
        from .plots import plot_comparison, plot_forest_side_by_side

        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            comparison_to_csv(table, out / "comparison.csv")
            (out / "plots").mkdir()
            plot_comparison(table).savefig(out / "plots" / "comparison.png", dpi=100,
                                           bbox_inches="tight")
            plot_forest_side_by_side(idatas).savefig(out / "plots" / "forest_side_by_side.png",
                                                     dpi=100, bbox_inches="tight")
            import matplotlib.pyplot as plt

            plt.close("all")
            self.tracker.log_artifacts(self.parent_run_id, out)
            comparison_to_csv(table, self.sweep_dir / "comparison.csv")
        log.info("comparison of %d fits (LOO):\n%s", len(group), table.to_string())


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
