"""Hydra's basic sweeper plus a parent MLflow run per sweep.

Two differences from ``BasicSweeper``: the sweep is wrapped in a
:class:`hibayes.sweep.SweepSession` (parent run, comparison, failure list), and
a model's default prior sweep (``hydra.sweeper.params`` set by its
``conf/model`` file) is dropped when the command line sweeps ``model`` itself,
because those keys belong to one model only.
"""


from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn
from omegaconf import OmegaConf


@dataclass
class HibayesSweeperConf:
    """Config of the hibayes sweeper (same knobs as Hydra's basic sweeper)."""

    _target_: str = "hydra_plugins.hibayes_sweeper.hibayes_sweeper.HibayesSweeper"
    max_batch_size: Optional[int] = None
    params: Optional[Dict[str, str]] = None


ConfigStore.instance().store(
    group="hydra/sweeper", name="hibayes", node=HibayesSweeperConf, provider="hibayes"
)


class HibayesSweeper(BasicSweeper):
    """Basic sweeper that records the sweep as a parent run (hibayes.sweep)."""

    def _job_overrides(self, arguments: List[str]) -> List[List[str]]:
        assert self.hydra_context is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        parsed = parser.parse_overrides(arguments)
        if any(o.get_key_element() == "model" and o.is_sweep_override() for o in parsed):
            self.params = {k: v for k, v in self.params.items() if not k.startswith("model.")}
        overrides = parser.parse_overrides(self._parse_config() + list(arguments))
        return [job for batch in self.split_arguments(overrides, None) for job in batch]

    def sweep(self, arguments: List[str]) -> Any:
        """Run every job of the sweep under one parent run."""
        from hibayes.sweep import SweepSession

        assert self.config is not None and self.launcher is not None
        jobs = self._job_overrides(arguments)
        self.validate_batch_is_legal(jobs)  # config errors surface before any fit
        size = self.max_batch_size or len(jobs)
        batches = [jobs[i : i + size] for i in range(0, len(jobs), size)]
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        session = SweepSession(self.config, jobs)
        returns: List[Sequence[JobReturn]] = []
        try:
            for batch in batches:
                returns.append(self.launcher.launch(batch, initial_job_idx=sum(map(len, returns))))
        except BaseException:
            session.abort("KILLED")
            raise
        outcomes: List[Any] = []
        for job_return in (r for batch in returns for r in batch):
            try:
                outcomes.append(job_return.return_value)
            except BaseException as exc:  # a job that raised past hibayes.fit
                outcomes.append(exc)
        session.finish(outcomes)
        return returns
