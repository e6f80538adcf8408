"""Collecting cluster jobs one by one (for hydra_plugins/hibayes_launchers).

Hydra's submitit and Ray launchers gather results with one ``results()`` /
``ray.get`` after another, so the first job that dies (``scancel``, a killed Ray
worker) raises out of the whole launch while the other jobs still run, and their
results are lost to the sweep. These subclasses keep the plugins' submission code
and replace only that last step (:func:`collect`): each job is waited for on its
own, a job that died becomes a FAILED ``JobReturn`` naming why, and one progress
line per finished job says its verdict, as the basic launcher prints.

Without SLURM accounting (no ``slurmdbd``) ``sacct`` fails on every poll: submitit
then logs "Bypassing sacct error" each time and never learns that a cancelled job
ended, so it would wait for it forever. :class:`SqueueWatcher` asks ``squeue``
instead when ``sacct`` says accounting is disabled.
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import Any

from hydra.core.utils import JobReturn, JobStatus, filter_overrides

__all__ = ["SqueueWatcher", "collect", "verdict"]

log = logging.getLogger("hibayes.sweep.cluster")
_POLL_S = 2.0


def verdict(value: Any) -> str:
    """One word or phrase for a finished job's outcome (a FitOutcome dict or an error)."""
    if isinstance(value, BaseException):
        # submitit puts the job's state on the second line ("... (state: CANCELLED)").
        message = " ".join(str(value).splitlines()[:2])[:400]
        return f"FAILED: {type(value).__name__}: {message}"
    if isinstance(value, dict):
        if value.get("status") != "FINISHED":
            return f"{value.get('status')}: {value.get('error')}"
        converged = value.get("metrics", {}).get("converged") == 1.0
        return "FINISHED, " + ("converged" if converged else "NOT converged")
    return "FINISHED"


def collect(
    handles: Sequence[Any],
    overrides: Sequence[Sequence[str]],
    first_idx: int,
    done: Callable[[Any], bool],
    result: Callable[[Any], JobReturn],
) -> list[JobReturn]:
    """Wait for every job on its own; a job that raised becomes a FAILED JobReturn.

    :param handles: the launcher's job handles, in job order.
    :param overrides: each job's overrides (for the progress line and the failure).
    :param first_idx: the first job's number in the sweep.
    :param done: whether a handle's job has ended (never blocks).
    :param result: the job's ``JobReturn`` (raises if the job died).
    """
    from hibayes.sweep.session import varying_keys

    varying = set(varying_keys(overrides))
    returns: list[JobReturn | None] = [None] * len(handles)
    waiting = set(range(len(handles)))
    total = first_idx + len(handles)
    while waiting:
        for i in sorted(waiting):
            if not done(handles[i]):
                continue
            waiting.discard(i)
            try:
                returns[i] = result(handles[i])
                value: Any = returns[i]._return_value
            except Exception as exc:  # noqa: BLE001 - the job died: that is its result
                returns[i] = JobReturn(
                    overrides=list(overrides[i]),
                    status=JobStatus.FAILED,
                    _return_value=exc,
                )
                value = exc
            # What tells this job from the others; every override if nothing does.
            name = " ".join(
                o for o in overrides[i] if o.partition("=")[0] in varying
            ) or " ".join(filter_overrides(overrides[i]))
            log.info(
                "[job %d/%d done] %s: %s",
                first_idx + i + 1,
                total,
                name,
                verdict(value),
            )
        if waiting:
            time.sleep(_POLL_S)
    return [r for r in returns if r is not None]


def _squeue_watcher_class() -> type:
    from submitit.slurm.slurm import SlurmInfoWatcher

    class _SqueueWatcher(SlurmInfoWatcher):
        """submitit's SLURM watcher, reading ``squeue`` where ``sacct`` has no accounting."""

        use_squeue = False

        def _make_command(self) -> list[str] | None:
            command = super()._make_command()
            if command is None or not self.use_squeue:
                return command
            ids = ",".join(
                command[i + 1] for i, arg in enumerate(command) if arg == "-j"
            )
            # Finished jobs stay listed for MinJobAge (300 s by default).
            return ["squeue", "--noheader", "--states=all", "-o", "%i|%T|%N", "-j", ids]

        def update(self) -> None:
            command = self._make_command()
            if command is None:
                return
            self._num_calls += 1
            done = subprocess.run(command, capture_output=True, check=False)
            if (
                done.returncode != 0
                and not self.use_squeue
                and b"accounting storage is disabled" in done.stderr
            ):
                self.use_squeue = True
                log.debug("SLURM accounting is disabled: job states come from squeue")
                self.update()
                return
            if done.returncode == 0:
                out = done.stdout
                if self.use_squeue:
                    out = b"JobID|State|NodeList\n" + out
                self._info_dict.update(self.read_info(out))
            else:
                log.debug(
                    "job state query failed (%s): %s",
                    " ".join(command),
                    done.stderr.decode(errors="replace").strip(),
                )
            self._last_status_check = time.time()

    return _SqueueWatcher


def SqueueWatcher(delay_s: int = 60) -> Any:
    """A submitit SLURM watcher that falls back to ``squeue`` without accounting."""
    return _squeue_watcher_class()(delay_s=delay_s)
