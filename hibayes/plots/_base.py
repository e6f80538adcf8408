"""Shared pieces of the plots: which variables to show, flattening, the forest drawer."""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
import warnings
from collections.abc import Iterator, Sequence

import arviz as az
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.figure import Figure

log = logging.getLogger(__name__)

MAX_TRACE_VARS = 8
# Levels of one effect overlaid in a trace panel: past ten the lines are no longer
# told apart (the forest plot shows every level), and each costs a KDE per chain.
MAX_TRACE_LEVELS = 10
MAX_FOREST_ROWS = 50
MAX_PPC_ROWS = 40
# Observations named on the Pareto k plot (those with the largest k above the threshold).
MAX_K_LABELS = 20
HDI_PROB = 0.94
_SAMPLE_DIMS = ("chain", "draw")
_DEFAULT_DIM = re.compile(r"_dim_\d+$")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Close any pyplot figure opened inside, and keep ArviZ warnings off stderr."""
    before = set(plt.get_fignums())
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
        for message in dict.fromkeys(str(w.message) for w in caught):
            log.debug("while plotting: %s", message)
    finally:
        for num in set(plt.get_fignums()) - before:
            plt.close(num)


def _internal(name: str) -> bool:
    """Sampling-internal sites: non-centred ``z_*``, coded ``*_constrained/_raw``,
    reparameterised ``*_offset`` and ``*_contrasts`` (the model records the quantity
    itself too)."""
    return name.startswith("z_") or name.endswith(
        ("_constrained", "_raw", "_offset", "_contrasts")
    )


def _category_dims(idata: az.InferenceData) -> set[str]:
    """Posterior dims that are data categories (labelled by level name)."""
    constant = idata.constant_data if "constant_data" in idata.groups() else {}
    out = set()
    for dim in idata.posterior.dims:
        dim = str(dim)
        if dim in _SAMPLE_DIMS or _DEFAULT_DIM.search(dim) or _internal(dim):
            continue
        labels = idata.posterior[dim].values
        if f"{dim}_index" in constant or labels.dtype.kind in "OUS":
            out.add(dim)
    return out


def effect_vars(idata: az.InferenceData) -> list[str]:
    """Posterior variables whose non-sample dims are all named data categories.

    For example ``group_effects``, ``grader_effects``, ``model_task_effects``;
    ``z_*`` and ``*_constrained``/``*_raw`` sampling-internal sites are excluded.
    """
    cats = _category_dims(idata)
    out = []
    for name, var in idata.posterior.data_vars.items():
        dims = [d for d in var.dims if d not in _SAMPLE_DIMS]
        if dims and not _internal(str(name)) and all(d in cats for d in dims):
            out.append(str(name))
    return out


def scalar_vars(idata: az.InferenceData) -> list[str]:
    """Scalar posterior variables (``sigma_group``, ``overall_mean``, ``intercept``).

    Non-centred ``z_*`` and coded ``*_constrained``/``*_raw`` sites are excluded.
    """
    return [
        str(name)
        for name, var in idata.posterior.data_vars.items()
        if set(var.dims) <= set(_SAMPLE_DIMS) and not _internal(str(name))
    ]


def _flatten(
    posterior: xr.Dataset,
    names: Sequence[str],
    max_rows: int | None = None,
    per_var: int | None = None,
) -> tuple[xr.Dataset, list[str]]:
    """One labelled dim per variable ("p1 / small / t1"), rows capped.

    ``max_rows`` caps the rows of all variables together: the budget is shared
    out smallest variable first, so a huge variable is truncated (keeping its
    first levels) before a small one loses a row. ``per_var`` caps each one.
    """
    sizes = {
        n: int(
            np.prod(
                [posterior.sizes[d] for d in posterior[n].dims if d not in _SAMPLE_DIMS]
            )
        )
        for n in names
    }
    keep, left = {}, max_rows if max_rows is not None else sum(sizes.values())
    for i, n in enumerate(sorted(names, key=lambda n: sizes[n])):
        keep[n] = max(1, min(sizes[n], left // (len(names) - i), per_var or sizes[n]))
        left -= keep[n]
    out, notes = {}, []
    for n in names:
        var = posterior[n]
        dims = [d for d in var.dims if d not in _SAMPLE_DIMS]
        if len(dims) > 1:
            labels = [
                " / ".join(str(v) for v in combo)
                for combo in itertools.product(*(var[d].values for d in dims))
            ]
            values = var.values.reshape((*var.shape[:2], -1))
            var = xr.DataArray(
                values,
                dims=(*_SAMPLE_DIMS, f"{n}_level"),
                coords={f"{n}_level": labels},
            )
            dims = [f"{n}_level"]
        if keep[n] < sizes[n]:
            var = var.isel({dims[0]: slice(0, keep[n])})
            notes.append(f"{n}: first {keep[n]} of {sizes[n]}")
        out[n] = var.drop_vars([c for c in var.coords if c in _SAMPLE_DIMS])
    return xr.Dataset(out), notes


def _default_forest_vars(idata: az.InferenceData) -> list[str]:
    return effect_vars(idata) or scalar_vars(idata)


def _forest(
    datasets: list[xr.Dataset],
    model_names: list[str] | None,
    notes: list[str],
    title: str,
) -> Figure:
    rows = sum(
        int(np.prod([s for d, s in v.sizes.items() if d not in _SAMPLE_DIMS]))
        for v in datasets[0].data_vars.values()
    )
    per_row = 0.28 * (len(datasets) if model_names else 1)
    fig = Figure(figsize=(10, max(3.0, per_row * rows + 1.4)), layout="constrained")
    ax = fig.add_subplot()
    with _quiet():
        az.plot_forest(
            datasets,
            model_names=model_names,
            combined=True,
            var_names=list(datasets[0].data_vars),
            hdi_prob=HDI_PROB,
            textsize=9,
            ax=ax,
            show=False,
        )
    legend = ax.get_legend()
    if legend is not None:  # below the plot, off the rows
        handles, texts = (
            legend.legend_handles,
            [t.get_text() for t in legend.get_texts()],
        )
        legend.remove()
        fig.legend(handles, texts, loc="outside lower center", ncols=min(len(texts), 4))
    ax.set_xlabel("posterior value (model scale)")
    ax.set_title(title + (f"\n(rows capped: {'; '.join(notes)})" if notes else ""))
    return fig
