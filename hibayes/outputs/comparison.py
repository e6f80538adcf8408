"""A comparison's files: ``comparison.csv`` and its two plots, for a sweep and for compare."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hibayes.diagnostics.comparison import comparison_to_csv

__all__ = ["write_comparison"]

log = logging.getLogger(__name__)


def write_comparison(
    out_dir: Path, table: Any, idatas: Mapping[str, Any]
) -> list[Path]:
    """Write comparison.csv, plots/comparison.png and plots/forest_side_by_side.png.

    :param table: the table :func:`hibayes.diagnostics.comparison.compare_fits` made.
    :param idatas: the compared fits by name (for the side-by-side forest plot).
    :return: the files written (no forest plot when the fits share no parameter).
    """
    from matplotlib import pyplot as plt

    from hibayes.plots import plot_comparison, plot_forest_side_by_side

    plots = out_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    written = [comparison_to_csv(table, out_dir / "comparison.csv")]
    with warnings.catch_warnings():
        # Long run names squeeze the axes; bbox_inches="tight" still fits them in.
        warnings.filterwarnings("ignore", message="constrained_layout not applied")
        path = plots / "comparison.png"
        plot_comparison(table).savefig(path, dpi=100, bbox_inches="tight")
        written.append(path)
        try:
            path = plots / "forest_side_by_side.png"
            plot_forest_side_by_side(dict(idatas)).savefig(
                path, dpi=100, bbox_inches="tight"
            )
            written.append(path)
        except ValueError as exc:  # the fits share no parameter: nothing side by side
            log.warning("no side-by-side forest plot: %s", exc)
    plt.close("all")
    return written
