"""ArviZ's ``az.summary`` (``kind="all"``, unrounded), vectorised over elements.

``az.summary`` computes the HDI and its five diagnostics (``mcse_mean``,
``mcse_sd``, ``ess_bulk``, ``ess_tail``, ``r_hat``) one posterior element at a
time in Python and fills its table row by row: at 20,000 categories (40,000
elements of 8,000 draws) that is most of a fit's post-sampling time. Here the
same arithmetic runs on blocks of elements at once: ArviZ 0.23's ``_hdi`` and
``_multichain_statistics`` step for step, in the input's own precision where
ArviZ computes in it (float32 draws are centred and squared in float32), the
quantiles of the tail ESS as ``mquantiles`` (R's type 7) takes them, and Python's
``max``/``min`` NaN behaviour. The mean and sd are xarray's, as ArviZ takes them.
``tests/unit/diagnostics/test_summary.py`` checks the table against
``az.summary`` on the same draws.

Variables this path does not cover (draws that are not all finite, fewer than 4
draws, repeated coordinate labels, other dtypes) are summarised by ArviZ itself.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
import pandas as pd
import xarray as xr

from .batched import _ess, _rhat, _scores, _split, _z_scale

__all__ = ["relative_ess", "summary_table"]

_SAMPLE_DIMS = ("chain", "draw")
# Elements per block: small blocks keep the temporaries in cache (32 was fastest
# of 16 to 1024 at 8,000 draws).
_BLOCK = 32


def _columns(hdi_prob: float) -> list[str]:
    """The column names ``az.summary`` gives (``hdi_3%``, ``hdi_97%`` at 0.94)."""
    alpha = 1 - hdi_prob
    return [
        "mean",
        "sd",
        f"hdi_{100 * alpha / 2:g}%",
        f"hdi_{100 * (1 - alpha / 2):g}%",
        "mcse_mean",
        "mcse_sd",
        "ess_bulk",
        "ess_tail",
        "r_hat",
    ]


def _labels(var: xr.DataArray, name: str) -> list[str]:
    """Row labels as ArviZ's flat labeller writes them: ``name[level, level]``."""
    dims = [d for d in var.dims if d not in _SAMPLE_DIMS]
    if not dims:
        return [name]
    grids = np.meshgrid(*(var[d].values for d in dims), indexing="ij")
    flat = [g.ravel() for g in grids]
    return [f"{name}[{', '.join(f'{v}' for v in combo)}]" for combo in zip(*flat)]


def _vectorisable(var: xr.DataArray) -> bool:
    """Whether :func:`_diagnostics` reproduces ArviZ for this variable."""
    dims = [d for d in var.dims if d not in _SAMPLE_DIMS]
    unique = all(len(np.unique(var[d].values)) == var.sizes[d] for d in dims)
    return (
        unique
        and var.dtype.kind in "fiu"
        and var.dtype.itemsize >= (4 if var.dtype.kind == "f" else 1)
        and var.sizes["draw"] >= 4
        and bool(np.isfinite(var.values).all())
    )


def _blocks(var: xr.DataArray) -> Iterator[np.ndarray]:
    """The variable's draws as contiguous (element, chain, draw) blocks."""
    values = var.transpose(*_SAMPLE_DIMS, ...).values
    values = values.reshape(*values.shape[:2], -1)
    for start in range(0, values.shape[2], _BLOCK):
        block = values[:, :, start : start + _BLOCK]
        yield np.ascontiguousarray(np.moveaxis(block, 2, 0))


def _work_dtype(dtype: np.dtype) -> np.dtype:
    """The precision ArviZ centres and squares draws in (that of ``x - x.mean()``)."""
    return dtype if dtype in (np.float32, np.float64) else np.dtype(np.float64)


def _hdi(sorted_draws: np.ndarray, hdi_prob: float) -> np.ndarray:
    """ArviZ's unimodal ``_hdi`` of each sorted row: (member, 2)."""
    n = sorted_draws.shape[1]
    inc = int(np.floor(hdi_prob * n))
    width = np.subtract(
        sorted_draws[:, inc:], sorted_draws[:, : n - inc], dtype=np.float64
    )
    low = np.argmin(width, axis=1)
    rows = np.arange(sorted_draws.shape[0])
    return np.stack([sorted_draws[rows, low], sorted_draws[rows, low + inc]], axis=1)


def _type7(sorted_draws: np.ndarray, probs: tuple[float, ...]) -> list[np.ndarray]:
    """``scipy.stats.mstats.mquantiles`` (alphap = betap = 1) of each sorted row."""
    n = sorted_draws.shape[1]
    out = []
    for p in probs:
        aleph = n * p + (1.0 - p)
        k = int(np.floor(np.clip(aleph, 1, n - 1)))
        gamma = float(np.clip(aleph - k, 0, 1))
        out.append(
            (1.0 - gamma) * sorted_draws[:, k - 1].astype(np.float64)
            + gamma * sorted_draws[:, k].astype(np.float64)
        )
    return out


def _median(sorted_draws: np.ndarray) -> np.ndarray:
    """``np.median`` of each sorted row, in the precision NumPy gives it."""
    n = sorted_draws.shape[1]
    rows = sorted_draws if sorted_draws.dtype.kind == "f" else sorted_draws * 1.0
    if n % 2:
        return rows[:, n // 2]
    return (rows[:, n // 2 - 1] + rows[:, n // 2]) / 2


def _z_split(x: np.ndarray, sorted_draws: np.ndarray, order: np.ndarray) -> np.ndarray:
    """``_z_scale(_split_chains(ary))`` of each member.

    With an even number of draws the split chains hold the same values, so the
    ranks come from the sort already made; an odd one drops each middle draw.
    """
    if x.shape[2] % 2:
        return _z_scale(_split(x.astype(np.float64)))
    return _split(_scores(sorted_draws, order).reshape(x.shape))


def _diagnostics(
    x: np.ndarray, sorted_draws: np.ndarray, order: np.ndarray
) -> np.ndarray:
    """``_multichain_statistics`` of each (chain, draw) member: (member, 5)."""
    n_chain = x.shape[1]
    size = x.shape[1] * x.shape[2]
    x64 = x.astype(np.float64)
    z_split = _z_split(x, sorted_draws, order)
    q05, q95 = _type7(sorted_draws, (0.05, 0.95))
    low = _ess(_split((x <= q05[:, None, None]).astype(np.float64)))
    high = _ess(_split((x <= q95[:, None, None]).astype(np.float64)))
    ess_tail = np.where(high < low, high, low)  # Python's min(low, high)

    if n_chain < 2:
        rhat = np.full(x.shape[0], np.nan)
    else:
        bulk = _rhat(z_split)
        folded = np.abs(x - _median(sorted_draws)[:, None, None])
        tail = _rhat(_z_scale(_split(folded)))
        rhat = np.where(tail > bulk, tail, bulk)  # Python's max(bulk, tail)

    work = _work_dtype(x.dtype)
    # Sums over each member's values as one row: NumPy adds a (chain, draw) array
    # pairwise over all its values, so float32 sums round as ArviZ's own do.
    flat = x.reshape(x.shape[0], size).astype(work, copy=False)
    mean = (flat.sum(axis=1) / size).astype(work)
    sims_c2 = (flat - mean[:, None]) ** 2
    sims_c2_sum = sims_c2.sum(axis=1)
    var = (sims_c2_sum / (size - 1)).astype(work)
    mcse_mean = np.sqrt(var / _ess(_split(x64)))
    evar = (sims_c2_sum / size).astype(work)
    ess_sims = _ess(_split(sims_c2.reshape(x.shape).astype(np.float64)))
    mean_sq = ((sims_c2**2).sum(axis=1) / size).astype(work)
    varvar = (mean_sq - evar**2) / ess_sims
    mcse_sd = np.sqrt(varvar / evar / 4)
    bulk_ess = _ess(z_split)
    return np.stack([mcse_mean, mcse_sd, bulk_ess, ess_tail, rhat], axis=1)


def _variable_rows(var: xr.DataArray, hdi_prob: float) -> np.ndarray:
    """HDI and diagnostics of every element of one variable: (element, 7)."""
    parts = []
    with np.errstate(invalid="ignore", divide="ignore"):  # constants: NaN, as ArviZ
        for block in _blocks(var):
            flat = block.reshape(block.shape[0], -1)
            order = np.argsort(flat, axis=1)  # one sort: HDI, quantiles, median, ranks
            sorted_draws = np.take_along_axis(flat, order, axis=1)
            stats = _diagnostics(block, sorted_draws, order)
            parts.append(np.hstack([_hdi(sorted_draws, hdi_prob), stats]))
    return np.vstack(parts)


def _arviz_rows(posterior: xr.Dataset, name: str, hdi_prob: float) -> pd.DataFrame:
    """``az.summary`` of one variable, for what the vectorised path does not cover."""
    import arviz as az

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return az.summary(
            posterior[[name]], kind="all", round_to="none", hdi_prob=hdi_prob
        )


def summary_table(posterior: xr.Dataset, hdi_prob: float = 0.94) -> pd.DataFrame:
    """``az.summary(posterior, kind="all", round_to="none")``, element blocks at a time.

    :param posterior: draws with ``chain`` and ``draw`` dims (a fit's posterior).
    :param hdi_prob: mass of the highest-density interval (ArviZ's default 0.94).
    :return: one row per element, labelled and ordered as ArviZ's table.
    """
    columns = _columns(hdi_prob)
    mean = posterior.mean(dim=_SAMPLE_DIMS, skipna=False)
    sd = posterior.std(dim=_SAMPLE_DIMS, ddof=1, skipna=False)
    frames = []
    for name, var in posterior.data_vars.items():
        name = str(name)
        if not _vectorisable(var):
            frames.append(_arviz_rows(posterior, name, hdi_prob))
            continue
        dims = [d for d in var.dims if d not in _SAMPLE_DIMS]
        values = np.column_stack(
            [
                np.ravel(mean[name].transpose(*dims).values),
                np.ravel(sd[name].transpose(*dims).values),
                _variable_rows(var, hdi_prob),
            ]
        ).astype(np.float64)
        frames.append(pd.DataFrame(values, index=_labels(var, name), columns=columns))
    if not frames:
        return pd.DataFrame(columns=columns, dtype=np.float64)
    return pd.concat(frames)


def relative_ess(posterior: xr.Dataset) -> float:
    """The relative efficiency ``az.loo`` gives PSIS: mean ESS-for-the-mean / draws.

    ArviZ's ``loo`` computes it one posterior element at a time
    (``ess(posterior, method="mean")``); this is the same mean over every
    element, in blocks (pass it to ``az.loo(..., reff=...)``).
    """
    n_chains, n_draws = posterior.sizes["chain"], posterior.sizes["draw"]
    if n_chains == 1:
        return 1.0
    if n_draws < 4:  # ArviZ's own answer (NaN) for what it does not estimate
        import arviz as az

        ess = az.ess(posterior, method="mean")
        values = [np.ravel(ess[v].values) for v in ess.data_vars]
        return float(np.hstack(values).mean() / (n_chains * n_draws))
    per_element = []
    with np.errstate(invalid="ignore", divide="ignore"):
        for var in posterior.data_vars.values():
            for block in _blocks(var):
                x = block.astype(np.float64)
                missing = np.isnan(x).any(axis=(1, 2))  # ArviZ: NaN draws, NaN ESS
                per_element.append(np.where(missing, np.nan, _ess(_split(x))))
    return float(np.hstack(per_element).mean() / (n_chains * n_draws))
