"""Hydra's basic sweeper plus a parent MLflow run per sweep.

Two differences from ``BasicSweeper``: the sweep is wrapped in a
:class:`hibayes.sweep.SweepSession` (parent run, comparison, failure list), and
a model's default prior sweep (``hydra.sweeper.params`` set by its
``conf/model`` file) is dropped when the command line sweeps ``model`` itself,
because those keys belong to one model only.

With ``models_file=hibayes.yaml`` (a file in the reference tool's format) the
jobs are the file's model entries (:mod:`hibayes.compat.reference_config`), crossed
with any sweep on the command line; every entry is checked before the first fit.
"""

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn
from omegaconf import OmegaConf

log = logging.getLogger("hibayes.sweep.session")


@dataclass
class HibayesSweeperConf:
    """Config of the hibayes sweeper (same knobs as Hydra's basic sweeper)."""

    _target_: str = "hydra_plugins.hibayes_sweeper.hibayes_sweeper.HibayesSweeper"
    max_batch_size: int | None = None
    params: dict[str, str] | None = None


ConfigStore.instance().store(
    group="hydra/sweeper", name="hibayes", node=HibayesSweeperConf, provider="hibayes"
)


class HibayesSweeper(BasicSweeper):
    """Basic sweeper that records the sweep as a parent run (hibayes.sweep.session)."""

    _reference: Any = None  # the parsed models_file, when there is one

    def _job_overrides(self, arguments: list[str]) -> list[list[str]]:
        assert self.hydra_context is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        parsed = parser.parse_overrides(arguments)
        models_file = (
            self.config.get("models_file") if self.config is not None else None
        )
        if any(
            o.get_key_element() == "models_file" and o.is_sweep_override()
            for o in parsed
        ):
            from hibayes.compat.reference_config import ReferenceConfigError

            raise ReferenceConfigError(
                "models_file takes one file; list every model in it"
            )
        if models_file:
            return self._models_file_jobs(parser, parsed, arguments, str(models_file))
        if any(
            o.get_key_element() == "model" and o.is_sweep_override() for o in parsed
        ):
            self.params = {
                k: v for k, v in self.params.items() if not k.startswith("model.")
            }
        self._drop_keys_the_model_does_not_take()
        overrides = parser.parse_overrides(self._parse_config() + list(arguments))
        return [job for batch in self.split_arguments(overrides, None) for job in batch]

    def _drop_keys_the_model_does_not_take(self) -> None:
        """Drop, with a warning, a default prior sweep the named model does not take."""
        from hibayes.config import sweep_keys_not_taken

        assert self.config is not None
        if not self.params:
            return
        choice = self.config.hydra.runtime.choices.get("model")
        dropped = sweep_keys_not_taken(self.config.model, choice, list(self.params))
        if dropped:
            log.warning(
                "not swept: %s (model %s does not take %s)",
                ", ".join(f"{k}={self.params[k]}" for k in dropped),
                self.config.model.name,
                "it" if len(dropped) == 1 else "them",
            )
            self.params = {k: v for k, v in self.params.items() if k not in dropped}

    def _check_jobs(self, jobs: list[list[str]]) -> None:
        """Compose and check every job's config before the first fit, one line a problem."""
        from hibayes.config import ConfigError, checked_sections
        from hibayes.errors import InputError

        assert self.hydra_context is not None and self.config is not None
        problems: list[str] = []
        for job in jobs:
            cfg = self.hydra_context.config_loader.load_sweep_config(
                self.config, list(job)
            )
            try:
                checked_sections(cfg, cfg.hydra.runtime.choices.get("model"))
            except ConfigError as exc:
                problems += [p for p in exc.problems() if p not in problems]
            except InputError as exc:
                problems += [p for p in str(exc).splitlines() if p not in problems]
        if problems:
            raise ConfigError.listing(problems)

    def _models_file_jobs(
        self,
        parser: OverridesParser,
        parsed: list[Any],
        arguments: list[str],
        models_file: str,
    ) -> list[list[str]]:
        """One job per model entry of a reference-format file, checked before any fit."""
        from hibayes.compat.reference_config import (
            ReferenceConfigError,
            job_overrides,
            read_reference_config,
            validate_reference_config,
        )

        for o in parsed:
            if o.get_key_element() == "model":
                raise ReferenceConfigError(
                    f"models_file={models_file} chooses the models: drop '{o.input_line}' "
                    "from the command line"
                )
        ref = read_reference_config(models_file)
        validate_reference_config(
            ref
        )  # unknown models or prior keys: fail before any fit
        if ref.ignored:
            log.warning(
                "%s: not used here:\n  %s", ref.source, "\n  ".join(ref.ignored)
            )
        if ref.settings:
            log.info(
                "%s: for every fit: %s",
                ref.source,
                ", ".join(f"{k}={v}" for k, v in ref.settings.items()),
            )
        self._reference = ref
        # The default model's prior sweep belongs to that model, not to the file's.
        self.params = {
            k: v for k, v in self.params.items() if not k.startswith("model.")
        }
        builtins = set(self.hydra_context.config_loader.get_group_options("model"))
        jobs: list[list[str]] = []
        for entry in job_overrides(ref, builtins):
            # Command-line values come last and win over the file's.
            overrides = parser.parse_overrides(
                self._parse_config() + entry + list(arguments)
            )
            jobs.extend(
                job for batch in self.split_arguments(overrides, None) for job in batch
            )
        return jobs

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        """As Hydra's, with each job's ``SystemExit`` failing that job alone."""
        super().setup(
            hydra_context=hydra_context,
            task_function=_FailsAlone(task_function),
            config=config,
        )

    def sweep(self, arguments: list[str]) -> Any:
        """Run every job of the sweep under one parent run; errors as one line."""
        from hibayes.system.command import one_line_errors

        return one_line_errors(self._sweep)(arguments)

    def _sweep(self, arguments: list[str]) -> Any:
        from hibayes.sweep import SweepSession

        assert self.config is not None and self.launcher is not None
        from hibayes.inference.runtime import configure_runtime
        from hibayes.system.output_dir import release_if_unused

        # Before the session's provenance asks JAX for its backend, which fixes the
        # CPU device count: jobs run in this process would then get one device,
        # and their chains would run one after another instead of in parallel.
        configure_runtime(self.config.get("runtime"))

        try:
            jobs = self._job_overrides(arguments)
            self._check_jobs(jobs)  # config errors surface before any fit
        except BaseException:
            release_if_unused(Path(self.config.hydra.sweep.dir))  # refused: no folder
            raise
        size = self.max_batch_size or len(jobs)
        batches = [jobs[i : i + size] for i in range(0, len(jobs), size)]
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        # Hydra's basic launcher runs the jobs here, one after another.
        session = SweepSession(
            self.config, jobs, in_process=isinstance(self.launcher, BasicLauncher)
        )
        if self._reference is not None:
            from hibayes.compat.reference_config import reference_tags

            session.tracker.set_tags(
                session.parent_run_id, reference_tags(self._reference)
            )
        returns: list[Sequence[JobReturn]] = []
        try:
            for batch in batches:
                returns.append(
                    self.launcher.launch(batch, initial_job_idx=sum(map(len, returns)))
                )
        except BaseException:
            session.abort("KILLED")
            raise
        outcomes: list[Any] = []
        for job_return in (r for batch in returns for r in batch):
            try:
                outcomes.append(job_return.return_value)
            except BaseException as exc:  # a job that raised past hibayes.fit
                outcomes.append(exc)
        session.finish(outcomes)
        return returns


class _FailsAlone:
    """A sweep job's task function: a ``SystemExit`` from it fails that job alone.

    Hydra records a job's ``Exception`` as a failed job and goes on, but lets a
    ``SystemExit`` (``sys.exit()`` in a model, a command's one-line error) end the
    whole sweep. Only the user's interrupt (``KeyboardInterrupt``) should.
    """

    def __init__(self, task_function: Any) -> None:
        self.task_function = task_function
        functools.update_wrapper(self, task_function)

    def __call__(self, cfg: Any) -> Any:
        try:
            return self.task_function(cfg)
        except SystemExit as exc:
            raise JobExited(_exit_reason(exc)) from exc


def _exit_reason(exc: SystemExit) -> str:
    """What a job's ``SystemExit`` meant: the error it carries, else its status."""
    from hibayes.errors import HibayesError

    if isinstance(exc.__context__, HibayesError):  # one_line_errors printed it
        return str(exc.__context__)
    return f"the job called sys.exit({exc.code!r})"


class JobExited(RuntimeError):
    """A sweep job that ended with ``SystemExit``: a failed job, not a stopped sweep."""
