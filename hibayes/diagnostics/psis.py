"""ArviZ's Pareto-smoothed importance sampling and PSIS-LOO, vectorised over columns.

``az.psislw`` smooths one column at a time in Python (argsort of every draw, a
generalized Pareto fit to the tail, smoothed order statistics). At 20,000
categories a fit runs it over 20,000 columns for PSIS-LOO, 40,000 for the
per-trial LOO and 20,000 again for the LOO-PIT: about 0.3 ms a column, most of
the cross-validation stage. Here the same steps run on blocks of columns:
ArviZ 0.23's ``_psislw`` and ``_gpdfit`` step for step (the cutoff, the
empirical-Bayes GPD fit of Zhang & Stephens with ArviZ's prior, the smoothed
tail, truncation at the largest raw weight, normalisation), with a partial sort
instead of a full one. A column whose tail is not the plain case (ties at the
cutoff, weights below the smallest float, a GPD fit that fails) is handed to
``az.psislw`` itself. :func:`loo` assembles ``az.loo``'s result from these
weights and also returns them, so the LOO-PIT reuses them rather than
smoothing again. ``tests/unit/diagnostics/test_psis.py`` checks both against
ArviZ on the same values.

**References:** Vehtari, Simpson, Gelman, Yao & Gabry (2024), *Pareto smoothed
importance sampling*, JMLR 25(72); Zhang & Stephens (2009), Technometrics 51(3).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["elpd_data", "good_k", "loo", "psislw"]

# ArviZ's prior of the GPD fit (``_gpdfit``): prior_bs and prior_k.
_PRIOR_BS, _PRIOR_K = 3.0, 10.0
# Columns per block: the GPD fit's (column, candidate, tail) array stays ~50 MB.
_BLOCK = 1024


def good_k(n_samples: int) -> float:
    """The Pareto k above which PSIS is unreliable: min(1 - 1/log10(S), 0.7)."""
    return min(1 - 1 / np.log10(n_samples), 0.7)


def psislw(log_ratios: np.ndarray, reff: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed, normalised log weights and Pareto k per column, as ``az.psislw``.

    :param log_ratios: (..., draw) log importance ratios (``-log_lik`` for LOO).
    :param reff: relative MCMC efficiency (ess / draws).
    :return: log weights (same shape, float64) and k (the leading shape).
    """
    x = np.array(log_ratios, dtype=np.float64)  # a copy: smoothed in place
    shape = x.shape
    x = x.reshape(-1, shape[-1])
    k = np.empty(x.shape[0])
    for start in range(0, x.shape[0], _BLOCK):
        block = slice(start, start + _BLOCK)
        x[block], k[block] = _smooth(x[block], reff)
    return x.reshape(shape), k.reshape(shape[:-1])


def _smooth(x: np.ndarray, reff: float) -> tuple[np.ndarray, np.ndarray]:
    """``_psislw`` of every row of ``x`` (row, draw); irregular rows by ArviZ."""
    n_rows, n = x.shape
    tail_len = int(np.ceil(min(n / 5.0, 3 * (n / reff) ** 0.5)))
    x = x - x.max(axis=1, keepdims=True)  # ArviZ's shift, for accuracy
    # The cutoff is the (tail_len + 1)-th largest value; only the tail is sorted.
    part = np.argpartition(x, n - tail_len - 1, axis=1)
    rows = np.arange(n_rows)[:, None]
    cutoff = x[rows[:, 0], part[:, n - tail_len - 1]]
    tail_idx = part[:, n - tail_len :]
    tail = x[rows, tail_idx]
    order = np.argsort(tail, axis=1)
    tail_idx = np.take_along_axis(tail_idx, order, axis=1)
    tail = np.take_along_axis(tail, order, axis=1)
    # ArviZ's tail is every value above the cutoff: the top tail_len unless ties
    # or the floor at the smallest float change it; those rows go to ArviZ.
    floor = np.log(np.finfo(float).tiny)
    regular = (cutoff >= floor) & (tail[:, 0] > cutoff) & (tail_len > 4)
    # Tied tail values get their smoothed values in sort order, which is arbitrary
    # among ties: ArviZ's order is kept by letting it smooth those rows.
    regular &= np.all(np.diff(tail, axis=1) > 0, axis=1)
    k = np.full(n_rows, np.inf)
    with np.errstate(all="ignore"):
        exp_cutoff = np.exp(cutoff)[:, None]
        k_fit, sigma = _gpdfit(np.exp(tail) - exp_cutoff)
        eps = np.finfo(float).eps
        regular &= np.isfinite(k_fit) & (sigma > 0) & (np.abs(k_fit) >= eps)
        probs = (np.arange(tail_len) + 0.5) / tail_len
        smoothed = np.log(
            np.expm1(-k_fit[:, None] * np.log1p(-probs))
            / k_fit[:, None]
            * sigma[:, None]
            + exp_cutoff
        )
    out = x.copy()
    r = np.flatnonzero(regular)
    out[r[:, None], tail_idx[r]] = smoothed[r]
    out[r] = np.minimum(out[r], 0.0)  # truncate at the largest raw weight
    out[r] -= _logsumexp(out[r])
    k[r] = k_fit[r]
    rest = np.flatnonzero(~regular)
    if rest.size:
        import arviz as az

        out[rest], k[rest] = az.psislw(x[rest], reff)
    return out, k


def _logsumexp(x: np.ndarray) -> np.ndarray:
    """log sum exp over each row's draws, (row, 1); the plain formula is enough
    here (no signs or scale factors) and several times faster than scipy's."""
    top = x.max(axis=1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    return top + np.log(np.exp(x - top).sum(axis=1, keepdims=True))


def _gpdfit(tail: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ArviZ's ``_gpdfit`` of every row of a sorted (row, tail) array: k and sigma."""
    n = tail.shape[1]
    m_est = 30 + int(n**0.5)
    b = 1 - np.sqrt(m_est / (np.arange(1, m_est + 1, dtype=float) - 0.5))
    b = b[None, :] / (_PRIOR_BS * tail[:, int(n / 4 + 0.5) - 1 : int(n / 4 + 0.5)])
    b += 1 / tail[:, -1:]
    k = np.log1p(-b[:, :, None] * tail[:, None, :]).mean(axis=2)
    len_scale = n * (np.log(-(b / k)) - k - 1)
    weights = 1 / np.exp(len_scale[:, None, :] - len_scale[:, :, None]).sum(axis=2)
    # ArviZ drops negligible weights before normalising; a zero weight is the same.
    weights = np.where(weights >= 10 * np.finfo(float).eps, weights, 0.0)
    weights /= weights.sum(axis=1, keepdims=True)
    b_post = np.sum(b * weights, axis=1)
    k_post = np.log1p(-b_post[:, None] * tail).mean(axis=1)
    sigma = -k_post / b_post
    k_post = (n * k_post + _PRIOR_K * 0.5) / (n + _PRIOR_K)
    return k_post, sigma


def loo(
    log_lik: xr.DataArray, reff: float, weights: bool = True
) -> tuple[Any, np.ndarray | None]:
    """``az.loo(..., pointwise=True, scale="log", reff=reff)``, and its log weights.

    :param log_lik: log-likelihood (chain, draw, *observation dims).
    :param weights: also return the weights (else ``None``: they are as large as
        the log-likelihood in float64).
    :return: ArviZ's ``ELPDData`` (same fields and values as ``az.loo``) and the
        normalised smoothed log weights, (observation, chain x draw) flat.
    """
    template = log_lik.isel(chain=0, draw=0, drop=True)
    values = np.asarray(log_lik.values)
    n_samples = values.shape[0] * values.shape[1]
    flat = values.reshape(n_samples, -1)  # (draw, observation), a view
    n_obs = flat.shape[1]
    loo_i, lppd_i, k = np.empty(n_obs), np.empty(n_obs), np.empty(n_obs)
    log_w = np.empty((n_obs, n_samples)) if weights else None
    for start in range(0, n_obs, _BLOCK):
        cols = slice(start, start + _BLOCK)
        block = flat[:, cols].T.astype(np.float64)  # (observation, draw)
        lw, k[cols] = _smooth(-block, reff)
        loo_i[cols] = _logsumexp(lw + block)[:, 0]
        lppd_i[cols] = _logsumexp(block)[:, 0] - np.log(n_samples)
        if log_w is not None:
            log_w[cols] = lw
    threshold = good_k(n_samples)
    result = elpd_data(
        loo_i,
        lppd=float(lppd_i.sum()),
        n_samples=n_samples,
        warning=bool(np.any(k > threshold)),
        pareto_k=k,
        good_k=threshold,
        template=template,
    )
    return result, log_w


def elpd_data(
    loo_i: np.ndarray,
    lppd: float,
    n_samples: int,
    warning: bool,
    pareto_k: np.ndarray,
    good_k: float,
    template: xr.DataArray | None = None,
) -> Any:
    """``az.loo``'s result (``ELPDData``, log scale, pointwise) from pointwise values.

    The totals are ArviZ's: elpd = sum, se = sqrt(n var), p_loo = lppd - elpd.

    :param template: a DataArray over the observations whose dims and coords the
        pointwise values take (``None``: a plain dimension).
    """
    import xarray as xr
    from arviz.stats.stats_utils import ELPDData

    loo_i = np.asarray(loo_i, dtype=np.float64).ravel()
    pareto_k = np.asarray(pareto_k, dtype=np.float64).ravel()
    if template is None:
        template = xr.DataArray(np.empty(loo_i.size))

    def pointwise(values: np.ndarray, name: str) -> xr.DataArray:
        return template.copy(data=values.reshape(template.shape)).rename(name)

    elpd = float(loo_i.sum())
    return ELPDData(
        data=[
            elpd,
            float((loo_i.size * np.var(loo_i)) ** 0.5),
            lppd - elpd,
            n_samples,
            loo_i.size,
            warning,
            pointwise(loo_i, "loo_i"),
            pointwise(pareto_k, "pareto_shape"),
            "log",
            good_k,
        ],
        index=[
            "elpd_loo",
            "se",
            "p_loo",
            "n_samples",
            "n_data_points",
            "warning",
            "loo_i",
            "pareto_k",
            "scale",
            "good_k",
        ],
    )
