"""Power-scaling plot: how flagged quantities move as the prior or likelihood is scaled.

For each quantity, two panels: the prior raised to alpha, and the likelihood
raised to alpha (0.8 to 1.25, log scale), with the power-scaled posterior mean
and its 5-95% interval, all from reweighted draws (no refit). A flat band means
the posterior does not care; a band that slides with alpha is the sensitivity.
Points whose importance weights have a high Pareto k are drawn hollow: there
the reweighting is not to be trusted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

from hibayes.diagnostics.sensitivity import Sensitivity, power_scaled_quantities

if TYPE_CHECKING:
    import arviz as az

__all__ = ["ALPHAS", "plot_sensitivity", "sensitivity_plot_parameters"]

ALPHAS = tuple(np.geomspace(0.8, 1.25, 9))
MAX_ROWS = 6


def sensitivity_plot_parameters(
    sens: Sensitivity, max_rows: int = MAX_ROWS
) -> tuple[list[str], bool]:
    """The flagged quantities (most prior-sensitive first), or if none the most
    prior-sensitive ones; and whether they were flagged."""
    reported = sens.reported.sort_values("prior", ascending=False)
    flagged = reported[reported["diagnosis"] != ""]
    chosen = flagged if len(flagged) else reported
    return list(chosen["parameter"][:max_rows]), bool(len(flagged))


def plot_sensitivity(
    idata: az.InferenceData,
    sens: Sensitivity,
    parameters: Sequence[str] | None = None,
    alphas: Sequence[float] = ALPHAS,
) -> Figure:
    """Power-scaled posterior mean and 5-95% interval against alpha, per quantity.

    :param parameters: element labels (default: :func:`sensitivity_plot_parameters`).
    """
    flagged = True
    if parameters is None:
        parameters, flagged = sensitivity_plot_parameters(sens)
    parameters = list(parameters)
    if not parameters:
        raise ValueError("no posterior quantity to plot")
    rows = sens.table.set_index("parameter")
    height = 1.9 * len(parameters) + 1.2
    fig = Figure(figsize=(10, height))
    fig.subplots_adjust(
        left=0.1,
        right=0.97,
        bottom=0.55 / height,
        top=1 - 0.95 / height,
        hspace=0.6,
        wspace=0.2,
    )
    axes = fig.subplots(len(parameters), 2, squeeze=False, sharex=True)
    for col, component in enumerate(("prior", "likelihood")):
        table = power_scaled_quantities(idata, parameters, alphas, component)
        for row, name in enumerate(parameters):
            ax = axes[row][col]
            part = table[table["parameter"] == name]
            a = part["alpha"].to_numpy()
            ax.fill_between(
                a, part["q0.05"], part["q0.95"], color=f"C{col}", alpha=0.25, lw=0
            )
            ax.plot(a, part["q0.5"], color=f"C{col}", lw=1, ls="--")
            bad = part["pareto_k"].to_numpy() > sens.k_threshold
            ax.plot(a[~bad], part["mean"].to_numpy()[~bad], "o-", color=f"C{col}", ms=4)
            if bad.any():
                ax.plot(
                    a[bad],
                    part["mean"].to_numpy()[bad],
                    "o",
                    mfc="none",
                    color=f"C{col}",
                    ms=5,
                )
            ax.axvline(1.0, color="0.6", lw=0.8)
            ax.set_xscale("log")
            value = rows.loc[name, component]
            verdict = rows.loc[name, "diagnosis"]
            ax.set_title(
                f"{name}: {component} sensitivity {value:.3f}"
                + (f" ({verdict})" if verdict and col == 0 else ""),
                fontsize=9,
            )
    for ax in axes[-1]:
        ax.set_xticks([0.8, 0.9, 1.0, 1.1, 1.25], ["0.8", "0.9", "1", "1.1", "1.25"])
        ax.minorticks_off()
    axes[-1][0].set_xlabel("alpha: prior raised to this power")
    axes[-1][1].set_xlabel("alpha: likelihood raised to this power")
    for row in axes:
        row[0].set_ylabel("value")
    head = (
        "quantities flagged"
        if flagged
        else "nothing flagged; the most prior-sensitive quantities"
    )
    fig.suptitle(
        "Power-scaling sensitivity: power-scaled posterior mean (dots), median (dashed) "
        f"and 5-95% interval\n{head}; hollow dots: Pareto k > {sens.k_threshold:.2f}, "
        "reweighting unreliable",
        fontsize=10,
    )
    return fig
