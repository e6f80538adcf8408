"""joblib, SLURM and Ray launchers that report each job on its own (sweep.cluster).

The plugins end their ``launch`` with ``Parallel(...)(jobs)``,
``[j.results()[0] for j in jobs]`` and ``[ray.get(run) for run in runs]``: the
first job that dies (a full disk while Hydra writes its folder, a worker killed)
raises out of the sweep while the others still run or never start. These
subclasses repeat the plugins' submission steps and wait for each job on its
own. Hydra loads launchers only from ``hydra_plugins``, so they live here; a
plugin that is not installed leaves its class undefined (no import warning for
users without it).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, filter_overrides
from omegaconf import OmegaConf, open_dict

log = logging.getLogger("hibayes.sweep.cluster")

try:
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import (
        SlurmLauncher as _SubmititSlurm,
    )
except ImportError:  # the `parallel` extra is not installed
    _SubmititSlurm = None  # type: ignore[assignment,misc]

try:
    from hydra_plugins.hydra_joblib_launcher.joblib_launcher import (
        JoblibLauncher as _Joblib,
    )
except ImportError:  # the `parallel` extra is not installed
    _Joblib = None  # type: ignore[assignment,misc]

try:
    from hydra_plugins.hydra_ray_launcher.ray_launcher import RayLauncher as _Ray
except ImportError:  # the Ray launcher is not installed
    _Ray = None  # type: ignore[assignment,misc]


def _start_sweep(launcher: Any) -> Path:
    """What the joblib and Ray plugins do before submitting: globals, logging, and
    the sweep folder; return that folder."""
    from hydra.core.utils import configure_log, setup_globals

    setup_globals()
    assert launcher.config is not None and launcher.hydra_context is not None
    assert launcher.task_function is not None
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    sweep_dir = Path(str(launcher.config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    return sweep_dir


if _Joblib is not None:

    class _JoblibJob:
        """One job on a loky executor, resubmitted if the pool broke before it began."""

        def __init__(self, submit: Callable[[], Any], job_dir: Path) -> None:
            self.submit, self.job_dir = submit, job_dir
            self.future = submit()

        def done(self) -> bool:
            """Whether the job ended; a job lost with a broken pool before it began
            (no job folder yet: another job's worker died) is submitted again."""
            from joblib.externals.loky.process_executor import (
                BrokenProcessPool,
                TerminatedWorkerError,
            )

            if not self.future.done():
                return False
            broken = isinstance(
                self.future.exception(), (BrokenProcessPool, TerminatedWorkerError)
            )
            if broken and not self.job_dir.exists():
                self.future = self.submit()
                return False
            return True

    class JoblibLauncher(_Joblib):
        """hydra-joblib-launcher's launcher; each job collected on its own.

        A job that raises in its worker (before the fit could record it) fails
        alone; a worker killed mid-fit fails its own job, and jobs the broken pool
        had not started run on a fresh one (never a job run twice).
        """

        def launch(
            self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
        ) -> Sequence[JobReturn]:
            """Submit every job to loky's reusable executor, as the plugin's
            ``Parallel`` does; wait for each."""
            from hydra_plugins.hydra_joblib_launcher._core import execute_job
            from joblib.externals.loky import get_reusable_executor

            from hibayes.sweep.cluster import collect

            # As hydra_joblib_launcher._core.launch (hydra-joblib-launcher 1.2).
            sweep_dir = _start_sweep(self)
            workers = int(self.joblib.get("n_jobs") or 1)
            log.info(
                "joblib sweep of %d fits on %d workers, output dir %s",
                len(job_overrides),
                workers,
                sweep_dir,
            )
            state = Singleton.get_state()

            def job(i: int, overrides: Sequence[str]) -> _JoblibJob:
                idx = initial_job_idx + i
                cfg = self.hydra_context.config_loader.load_sweep_config(
                    self.config, list(overrides)
                )
                with open_dict(cfg):
                    cfg.hydra.job.num = idx
                job_dir = sweep_dir / str(cfg.hydra.sweep.subdir)
                return _JoblibJob(
                    lambda: get_reusable_executor(max_workers=workers).submit(
                        execute_job,
                        idx,
                        list(overrides),
                        self.hydra_context,
                        self.config,
                        self.task_function,
                        state,
                    ),
                    job_dir,
                )

            jobs = [job(i, o) for i, o in enumerate(job_overrides)]
            try:
                return collect(
                    jobs,
                    job_overrides,
                    initial_job_idx,
                    done=lambda j: j.done(),
                    result=lambda j: j.future.result(),
                )
            except BaseException:
                # An interrupt: stop the workers with the fits they are running
                # (the sweep then ends those runs KILLED), as Parallel does.
                get_reusable_executor(max_workers=workers).shutdown(
                    wait=False, kill_workers=True
                )
                raise


if _SubmititSlurm is not None:

    class SlurmLauncher(_SubmititSlurm):
        """hydra-submitit-launcher's SLURM launcher; each array task collected alone."""

        def launch(
            self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
        ) -> Sequence[JobReturn]:
            """Submit the jobs as one SLURM array, as the plugin does; wait for each."""
            import submitit

            from hibayes.sweep.cluster import SqueueWatcher, collect

            assert self.config is not None and len(job_overrides) > 0
            # As BaseSubmititLauncher.launch (hydra-submitit-launcher 1.2).
            init_keys = {"max_num_timeout", "submitit_folder"}
            executor = submitit.AutoExecutor(
                cluster=self._EXECUTOR,
                folder=self.params["submitit_folder"],
                **{f"{self._EXECUTOR}_max_num_timeout": self.params["max_num_timeout"]},
            )
            baseparams = set(OmegaConf.structured(BaseQueueConf).keys())
            executor.update_parameters(
                **{
                    k if k in baseparams else f"{self._EXECUTOR}_{k}": v
                    for k, v in self.params.items()
                    if k not in init_keys
                }
            )
            sweep_dir = Path(str(self.config.hydra.sweep.dir))
            sweep_dir.mkdir(parents=True, exist_ok=True)
            if "mode" in self.config.hydra.sweep:
                os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
            log.info(
                "SLURM sweep of %d fits, output dir %s", len(job_overrides), sweep_dir
            )
            job_params: list[Any] = [
                (
                    list(overrides),
                    "hydra.sweep.dir",
                    initial_job_idx + i,
                    f"job_id_for_{initial_job_idx + i}",
                    Singleton.get_state(),
                )
                for i, overrides in enumerate(job_overrides)
            ]
            jobs = executor.map_array(self, *zip(*job_params))
            watcher = SqueueWatcher()  # sacct may have no accounting to read
            for job in jobs:
                job.watcher = watcher
                watcher.register_job(job.job_id)
            log.info("submitted SLURM array %s", jobs[0].job_id.split("_")[0])
            return collect(
                jobs,
                job_overrides,
                initial_job_idx,
                done=lambda job: job.done(),
                result=lambda job: job.results()[0],
            )


if _Ray is not None:

    class RayLauncher(_Ray):
        """hydra-ray-launcher's launcher; a crashed Ray worker fails its own job only."""

        def launch(
            self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
        ) -> Sequence[JobReturn]:
            """Submit one Ray task per job, as the plugin does; wait for each."""
            import ray
            from hydra_plugins.hydra_ray_launcher._launcher_util import (
                launch_job_on_ray,
                start_ray,
            )

            from hibayes.sweep.cluster import collect

            # As hydra_ray_launcher._core.launch (hydra-ray-launcher 1.2.2).
            sweep_dir = _start_sweep(self)
            log.info(
                "Ray sweep of %d fits, output dir %s", len(job_overrides), sweep_dir
            )
            # The plugin's default (too little object store memory otherwise in CI),
            # for a Ray it starts only: it sets it always, and ray.init then refuses
            # to connect to a running cluster.
            if self.ray_cfg.init.get("address") is None:
                self.ray_cfg.init.setdefault("object_store_memory", 78643200)
            start_ray(self.ray_cfg.init)
            refs = []
            for i, overrides in enumerate(job_overrides):
                idx = initial_job_idx + i
                log.debug("#%d : %s", idx, " ".join(filter_overrides(overrides)))
                sweep_config = self.hydra_context.config_loader.load_sweep_config(
                    self.config, list(overrides)
                )
                with open_dict(sweep_config):
                    sweep_config.hydra.job.id = f"job_id_for_{idx}"
                    sweep_config.hydra.job.num = idx
                refs.append(
                    launch_job_on_ray(
                        self.hydra_context,
                        self.ray_cfg.remote,
                        sweep_config,
                        self.task_function,
                        Singleton.get_state(),
                    )
                )

            def done(ref: Any) -> bool:
                return bool(ray.wait([ref], timeout=0)[0])

            return collect(
                refs, job_overrides, initial_job_idx, done=done, result=ray.get
            )
