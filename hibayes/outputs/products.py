"""What one fit computed and wrote, handed from the pipeline to its run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["FitProducts"]


@dataclass
class FitProducts:
    """The products of one fit, as :func:`hibayes.fit.run_pipeline` leaves them.

    :param idata: the posterior and everything drawn with it.
    :param metrics: diagnostics, LOO/WAIC and stage timings, in the order logged.
    :param problems: the convergence checks that failed (empty when converged).
    :param tags: what the fit found out (chain method, precision, structure key...).
    :param loo: the fit's PSIS-LOO, for plots drawn after it.
    :param table: the data as fitted (logged as the run's MLflow dataset).
    :param source: the data file, absolute.
    :param data_digest: the digest that says "same data" across runs.
    :param contract: the files a FINISHED fit has (:mod:`hibayes.outputs.contract`).
    """

    idata: Any
    metrics: dict[str, float]
    problems: list[str]
    tags: dict[str, str]
    loo: Any
    table: Any
    source: str
    data_digest: str
    contract: list[str] = field(default_factory=list)
