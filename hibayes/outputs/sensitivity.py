"""Write a fit's power-scaling sensitivity: ``sensitivity.csv`` and ``plots/sensitivity.png``.

What is logged (metrics ``psense_*``, tag ``hibayes.sensitivity``) comes back
as a :class:`SensitivityRecord` for the entry point to hand to its tracker. A
plot that cannot be drawn is skipped with a warning, never failing the fit; a
file that cannot be written fails it (:class:`~hibayes.errors.CannotWrite`).
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from hibayes.diagnostics.sensitivity import Sensitivity, sensitivity
from hibayes.system.atomic import atomic_path, write_bytes

if TYPE_CHECKING:
    import arviz as az

__all__ = ["SENSITIVITY_TAG", "SensitivityRecord", "write_sensitivity"]

log = logging.getLogger(__name__)

SENSITIVITY_TAG = "hibayes.sensitivity"


@dataclass
class SensitivityRecord:
    """What the sensitivity step produced.

    :param result: the sensitivity of every posterior element (``None``: not available).
    :param metrics: ``psense_prior_max``, ``psense_likelihood_max``... and the seconds.
    :param tags: ``hibayes.sensitivity``: the flagged quantities, or ``none``.
    :param paths: files written.
    """

    result: Sensitivity | None
    metrics: dict[str, float]
    tags: dict[str, str]
    paths: list[Path] = field(default_factory=list)


def write_sensitivity(
    idata: az.InferenceData, out_dir: Path, *, plot: bool = True
) -> SensitivityRecord:
    """Compute the sensitivity and write ``sensitivity.csv`` (and the plot).

    A fit without latent sites or log-likelihood has nothing to power-scale: the
    tag says so and no metric is logged.
    """
    start = time.perf_counter()
    missing = [g for g in ("log_prior", "log_likelihood") if g not in idata.groups()]
    if missing:
        log.warning(
            "no power-scaling sensitivity: the fit has no %s group",
            " or ".join(missing),
        )
        return SensitivityRecord(
            None,
            {},
            {SENSITIVITY_TAG: "not available (no " + " or ".join(missing) + ")"},
        )
    result = sensitivity(idata)
    table = result.table.copy()
    # Say why a likelihood column should not be read, next to the number itself.
    table["note"] = [
        ""
        if ok
        else f"likelihood Pareto k {k:.2f} > {result.k_threshold:.2f}: unreliable"
        for ok, k in zip(table["likelihood_reliable"], table["likelihood_pareto_k"])
    ]
    paths = [out_dir / "sensitivity.csv"]
    with atomic_path(paths[0]) as tmp:
        table.to_csv(tmp, index=False)
    seconds = time.perf_counter() - start
    if plot:
        paths.extend(_plot(idata, result, out_dir / "plots" / "sensitivity.png"))
    metrics = {**result.metrics(), "time_sensitivity_s": seconds}
    return SensitivityRecord(result, metrics, {SENSITIVITY_TAG: result.tag()}, paths)


def _plot(idata: az.InferenceData, result: Sensitivity, path: Path) -> list[Path]:
    png = io.BytesIO()
    try:  # drawn in memory: only what cannot be drawn is skipped
        from hibayes.plots.sensitivity_plot import plot_sensitivity

        plot_sensitivity(idata, result).savefig(png, format="png", dpi=100)
    except Exception as exc:  # noqa: BLE001 - a plot must never stop a run
        log.warning("skipped sensitivity plot: %s: %s", type(exc).__name__, exc)
        return []
    return [write_bytes(path, png.getvalue())]
