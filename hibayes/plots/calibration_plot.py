"""Simulation-based calibration plot: ECDF difference of the ranks with its band.

One panel per quantity: the ECDF of the fractional ranks minus the uniform CDF,
against the fractional rank, inside the simultaneous 95% band of Säilynoja et
al. (2022). Under a calibrated model and sampler the line stays in the band. Above
zero throughout: ranks too low, the posterior overestimates (below: underestimates);
above in the first half and below in the second: ranks at both ends, the posterior
is too narrow; below then above: ranks in the middle, too wide.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from hibayes.diagnostics.calibration import UniformityTest

__all__ = ["MAX_PANELS", "plot_calibration"]

MAX_PANELS = 24


def plot_calibration(
    tests: Mapping[str, UniformityTest],
    alpha_each: float,
    order: Sequence[str] | None = None,
    max_panels: int = MAX_PANELS,
) -> Figure:
    """ECDF-difference panels, least uniform first, at most ``max_panels``.

    :param tests: quantity -> its :class:`UniformityTest`.
    :param alpha_each: the p-value below which one quantity fails (drawn red).
    :param order: quantities to draw, in this order (default: by p-value).
    """
    names = list(order or sorted(tests, key=lambda n: tests[n].p_value))
    shown = names[:max_panels]
    if not shown:
        raise ValueError("no ranks to plot")
    cols = min(4, len(shown))
    rows = int(np.ceil(len(shown) / cols))
    height = 2.3 * rows + 1.1
    fig = Figure(figsize=(3.2 * cols + 0.6, height))
    fig.subplots_adjust(
        left=0.08,
        right=0.98,
        bottom=0.5 / height,
        top=1 - 0.9 / height,
        hspace=0.55,
        wspace=0.3,
    )
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, name in zip(axes, shown):
        t = tests[name]
        z = np.concatenate([[0.0], t.z, [1.0]])
        lo = np.concatenate([[0.0], t.lower - t.z, [0.0]])
        hi = np.concatenate([[0.0], t.upper - t.z, [0.0]])
        diff = np.concatenate([[0.0], t.ecdf - t.z, [0.0]])
        bad = t.p_value < alpha_each
        ax.fill_between(z, lo, hi, step="post", color="0.85", lw=0)
        ax.step(z, diff, where="post", color="C3" if bad else "C0", lw=1.3)
        ax.axhline(0, color="0.5", lw=0.6)
        ax.set_title(
            f"{name}\np = {t.p_value:.3g}", fontsize=8, color="C3" if bad else "black"
        )
        ax.tick_params(labelsize=7)
    for ax in axes[len(shown) :]:
        ax.set_visible(False)
    for ax in axes[(rows - 1) * cols : (rows - 1) * cols + cols]:
        ax.set_xlabel("fractional rank", fontsize=8)
    more = len(names) - len(shown)
    fig.suptitle(
        "Simulation-based calibration: ECDF of ranks minus uniform, with 95% "
        "simultaneous band\n(inside the band: calibrated; red: p below "
        f"{alpha_each:.2g})"
        + (f"; {more} more quantities in ranks.csv" if more > 0 else ""),
        fontsize=10,
    )
    return fig
