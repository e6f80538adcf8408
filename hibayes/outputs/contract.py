"""The files a FINISHED fit has: its contract, checked before the run ends FINISHED.

A fit whose folder lacks one of them did not finish, whatever else it computed:
its run ends FAILED, naming what is missing. What the contract lists depends only
on what the fit computed (its LOO, K-fold folds, sensitivity, predictive draws),
never on what happened to be written.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from hibayes.errors import HibayesError
from hibayes.system.atomic import is_temporary

__all__ = [
    "ALWAYS",
    "IncompleteOutputs",
    "TAGS_FILE",
    "check_outputs",
    "fit_contract",
    "missing_outputs",
    "plot_contract",
]

#: The tags and dataset input a fit gives its run as it closes it
#: (:mod:`hibayes.tracking.closing`), written before ``metrics.json`` says it is done.
TAGS_FILE = "tags.json"
#: What every FINISHED fit has, whatever its model and settings.
ALWAYS = ("config.yaml", "idata.nc", "summary.csv", "metrics.json", TAGS_FILE)


class IncompleteOutputs(HibayesError):
    """A fit that would end FINISHED lacks files its contract lists."""


def fit_contract(
    *, loo: bool, folds: bool, sensitivity: bool, groups: Iterable[str] = ()
) -> list[str]:
    """The files (relative to the job folder) a FINISHED fit has, plots included.

    :param loo: PSIS-LOO was computed (``loo_pointwise.csv``, ``plots/pareto_k.png``).
    :param folds: K-fold cross-validation ran (``cv_folds.csv``).
    :param sensitivity: power-scaling sensitivity ran (``sensitivity.csv``).
    :param groups: the InferenceData's groups, which decide the plots.
    """
    files = list(ALWAYS)
    files += ["loo_pointwise.csv"] if loo else []
    files += ["cv_folds.csv"] if folds else []
    files += ["sensitivity.csv"] if sensitivity else []
    return files + plot_contract(loo=loo, groups=groups)


def plot_contract(*, loo: bool, groups: Iterable[str]) -> list[str]:
    """The plots a FINISHED fit has (drawn by the fit, or by a sweep's worker)."""
    groups = set(groups)
    if "posterior" not in groups:
        return []
    plots = ["trace", "forest"]
    plots += ["ppc"] if "posterior_predictive" in groups else []
    plots += ["pareto_k"] if loo else []
    plots += ["loo_pit"] if "cross_validation" in groups else []
    return [f"plots/{name}.png" for name in plots]


def missing_outputs(out_dir: Path, contract: Sequence[str]) -> list[str]:
    """The files of ``contract`` that ``out_dir`` lacks (or holds empty)."""
    missing = []
    for name in contract:
        path = Path(out_dir) / name
        if is_temporary(path) or not path.is_file() or path.stat().st_size == 0:
            missing.append(name)
    return missing


def check_outputs(out_dir: Path, contract: Sequence[str]) -> None:
    """Raise :class:`IncompleteOutputs` if ``out_dir`` lacks a file of ``contract``."""
    missing = missing_outputs(out_dir, contract)
    if missing:
        raise IncompleteOutputs(
            f"{out_dir}: the fit's outputs are incomplete, missing "
            + ", ".join(missing)
        )
