"""A comparison's files: ``comparison.csv`` and its two plots, for a sweep and for compare."""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hibayes.diagnostics.comparison import comparison_to_csv
from hibayes.system.atomic import atomic_path, write_bytes

__all__ = ["write_comparison", "write_comparison_csv"]

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
    written = [write_comparison_csv(table, out_dir / "comparison.csv")]
    figures = {"comparison": lambda: plot_comparison(table)}
    figures["forest_side_by_side"] = lambda: plot_forest_side_by_side(dict(idatas))
    for name, draw in figures.items():
        png = io.BytesIO()
        with warnings.catch_warnings():
            # Long run names squeeze the axes; bbox_inches="tight" still fits them in.
            warnings.filterwarnings("ignore", message="constrained_layout not applied")
            try:
                draw().savefig(png, format="png", dpi=100, bbox_inches="tight")
            except ValueError as exc:  # the fits share no parameter: no forest
                if name == "comparison":
                    raise
                log.warning("no side-by-side forest plot: %s", exc)
                continue
        written.append(write_bytes(plots / f"{name}.png", png.getvalue()))
    plt.close("all")
    return written


def write_comparison_csv(table: Any, path: Path) -> Path:
    """Write a comparison table as CSV, whole or not at all; return ``path``."""
    with atomic_path(path) as tmp:
        comparison_to_csv(table, tmp)
    return path
