"""Simulation-based calibration and parameter recovery, as pure functions over arrays.

Talts et al. (2018): if parameters are drawn from the prior, data simulated
from them, and the model fitted to each data set, the rank of each true value
among (nearly independent) posterior draws is uniform on 0..L. A wrong
likelihood, a coding mismatch or a sampler that lies bends the ranks. Here:

- :func:`ranks`: rank of the truth among L draws thinned evenly from all chains
  (ties broken at random), for every scalar and every element of a vector.
- :func:`uniformity_test`: the ECDF test of Säilynoja, Bürkner & Vehtari (2022):
  the smallest two-sided binomial tail probability of the rank ECDF at K points,
  against its distribution under uniform ranks (simulated, exact for discrete
  ranks); the same simulation gives the simultaneous 1 - alpha band.
- convergence of every simulated fit: :func:`~.batched.convergence_by_fit`
  (ArviZ's rank-normalised R-hat and ESS, vectorised), against the
  :class:`~hibayes.diagnostics.Thresholds` a real fit must meet.
- :func:`recovery`: coverage of the central 50% and 94% intervals, and the
  correlation of the posterior mean with the truth.

Nothing here samples, plots or writes files.

**References:** Talts, Betancourt, Simpson, Vehtari & Gelman (2018),
arXiv:1804.06788; Säilynoja, Bürkner & Vehtari (2022), Statistics and Computing
32:32; Modrák et al. (2023), Bayesian Analysis.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from hibayes.diagnostics.metrics import Thresholds

from .batched import convergence_by_fit

__all__ = [
    "Calibration",
    "UniformityTest",
    "calibrate",
    "element_labels",
    "flatten_sites",
    "ranks",
    "recovery",
    "uniformity_test",
]


def element_labels(
    name: str,
    shape: Sequence[int],
    coords: Mapping[str, Sequence] | None = None,
    dims: Sequence[str] | None = None,
) -> list[str]:
    """``name`` for a scalar, ``name[level, ...]`` per element of a vector site."""
    if not shape:
        return [name]
    axes = []
    for i, size in enumerate(shape):
        dim = dims[i] if dims and i < len(dims) else None
        levels = list((coords or {}).get(dim, [])) if dim else []
        axes.append(
            [str(v) for v in levels]
            if len(levels) == size
            else [str(j) for j in range(size)]
        )
    return [f"{name}[{', '.join(combo)}]" for combo in itertools.product(*axes)]


def flatten_sites(
    values: Mapping[str, np.ndarray], lead: int, labels: Mapping[str, list[str]]
) -> tuple[np.ndarray, list[str]]:
    """Stack every element of every site as the last axis: (*lead axes, element)."""
    parts, names = [], []
    for site, label in labels.items():
        arr = np.asarray(values[site], dtype=np.float64)
        parts.append(arr.reshape(arr.shape[:lead] + (-1,)))
        names.extend(label)
    return np.concatenate(parts, axis=-1), names


def _thin(n_total: int, n_keep: int) -> np.ndarray:
    """Evenly spaced indices into the draws of all chains (at most every draw)."""
    return np.unique(
        np.linspace(0, n_total - 1, min(n_keep, n_total)).round().astype(int)
    )


def ranks(
    truth: np.ndarray, draws: np.ndarray, n_draws: int, rng: np.random.Generator
) -> tuple[np.ndarray, int]:
    """Rank of each truth among ``n_draws`` draws thinned evenly from all chains.

    :param truth: (simulation, element).
    :param draws: (simulation, chain, draw, element).
    :return: ranks (simulation, element) in 0..L, and L (the draws used).
    """
    s, c, d, p = draws.shape
    flat = draws.reshape(s, c * d, p)[:, _thin(c * d, n_draws), :]
    below = (flat < truth[:, None, :]).sum(axis=1)
    ties = (flat == truth[:, None, :]).sum(axis=1)
    # A tie (a parameter fixed by the data, or float32 rounding) gets a random rank
    # among the tied positions, as Talts et al. prescribe.
    return below + rng.integers(0, ties + 1), flat.shape[1]


@dataclass(frozen=True)
class UniformityTest:
    """The ECDF uniformity test of one set of ranks.

    :param p_value: probability, under uniform ranks, of a smallest tail
        probability at least as extreme as the one observed.
    :param z: evaluation points (fractions of the rank range), K - 1 of them.
    :param ecdf: the ranks' ECDF at ``z``.
    :param lower: lower edge of the simultaneous band at ``z`` (ECDF scale).
    :param upper: upper edge of the band.
    """

    p_value: float
    z: np.ndarray
    ecdf: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


def _n_points(n_ranks: int, n_values: int) -> int:
    """K: the largest divisor of the number of rank values that is at most
    min(N, 50), so each of the K bins holds the same number of rank values."""
    cap = max(2, min(n_ranks, 50, n_values))
    return max(k for k in range(2, cap + 1) if n_values % k == 0) if n_values > 1 else 1


def _min_tail(counts: np.ndarray, n: int, z: np.ndarray) -> np.ndarray:
    """Smallest two-sided binomial tail probability over the points, per row."""
    low = stats.binom.cdf(counts, n, z)
    high = stats.binom.sf(counts - 1, n, z)
    return np.minimum(low, high).min(axis=-1)


@functools.lru_cache(maxsize=64)
def _null_min_tail(n: int, n_values: int, k: int, n_null: int, seed: int) -> np.ndarray:
    """The statistic under uniform discrete ranks, ``n_null`` times (sorted)."""
    rng = np.random.default_rng(seed)
    simulated = rng.integers(0, n_values, size=(n_null, n))
    edges = np.arange(1, k) * (n_values // k)
    counts = (simulated[:, :, None] < edges).sum(axis=1)
    return np.sort(_min_tail(counts, n, edges / n_values))


def uniformity_test(
    rank: np.ndarray,
    n_draws: int,
    alpha: float = 0.05,
    n_null: int = 5000,
    seed: int = 0,
) -> UniformityTest:
    """Säilynoja et al.'s ECDF test that ``rank`` is uniform on 0..``n_draws``.

    :param rank: ranks of one quantity over the simulations.
    :param n_draws: L, so the ranks take L + 1 values.
    :param alpha: 1 - coverage of the simultaneous band.
    """
    rank = np.asarray(rank)
    n, n_values = rank.size, n_draws + 1
    k = _n_points(n, n_values)
    edges = np.arange(1, k) * (n_values // k)
    z = edges / n_values
    counts = (rank[:, None] < edges).sum(axis=0)
    observed = float(_min_tail(counts[None, :], n, z)[0])
    null = _null_min_tail(n, n_values, k, n_null, seed)
    p_value = float(np.searchsorted(null, observed, side="right") / null.size)
    # Band: every point inside it with probability 1 - alpha under uniformity.
    level = float(np.quantile(null, alpha))
    lower = stats.binom.ppf(level, n, z) / n
    upper = stats.binom.isf(level, n, z) / n
    return UniformityTest(p_value, z, counts / n, lower, upper)


def recovery(truth: np.ndarray, draws: np.ndarray) -> pd.DataFrame:
    """Coverage of central 50% and 94% intervals, and posterior mean vs truth.

    :param truth: (simulation, element).
    :param draws: (simulation, chain, draw, element).
    :return: one row per element: ``coverage_50``, ``coverage_94``,
        ``mean_truth_correlation``, ``rmse`` (posterior mean - truth) and
        ``prior_sd`` (of the truths, for scale).
    """
    s, c, d, p = draws.shape
    flat = draws.reshape(s, c * d, p)
    q = np.quantile(flat, [0.03, 0.25, 0.75, 0.97], axis=1)  # (4, s, p)
    inside50 = (q[1] <= truth) & (truth <= q[2])
    inside94 = (q[0] <= truth) & (truth <= q[3])
    mean = flat.mean(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        tc, mc = truth - truth.mean(axis=0), mean - mean.mean(axis=0)
        corr = (tc * mc).sum(axis=0) / np.sqrt(
            (tc**2).sum(axis=0) * (mc**2).sum(axis=0)
        )
    return pd.DataFrame(
        {
            "coverage_50": inside50.mean(axis=0),
            "coverage_94": inside94.mean(axis=0),
            "mean_truth_correlation": corr,
            "rmse": np.sqrt(((mean - truth) ** 2).mean(axis=0)),
            "prior_sd": truth.std(axis=0),
        }
    )


@dataclass(frozen=True)
class Calibration:
    """The outcome of one simulation-based calibration.

    :param quantities: one row per tested quantity: ``parameter``, ``p_value``
        (all simulations), ``p_value_converged`` (converged ones only, for
        comparison), ``converged_fraction`` (simulations whose fit passed every
        check), ``element_converged_fraction`` (R-hat and bulk ESS of this
        quantity passed), the recovery columns and ``passed``.
    :param ranks: long table, one row per (simulation, quantity): ``truth``,
        ``rank``, ``posterior_mean``, interval ends, ``converged``.
    :param fits: :func:`~.batched.convergence_by_fit` of every simulation.
    :param tests: quantity -> :class:`UniformityTest` (all simulations).
    :param n_draws: L, the thinned draws each rank is taken among.
    :param alpha: family-wise level; each quantity is tested at
        ``alpha / number of quantities`` (Bonferroni).
    :param constant: quantities left out because the prior fixes them.
    :param max_unusable: the largest fraction of simulated fits whose draws may be
        unusable for ranks (``fits["rank_usable"]``) for a ``pass`` (more:
        ``inconclusive``).
    """

    quantities: pd.DataFrame
    ranks: pd.DataFrame
    fits: pd.DataFrame
    tests: dict[str, UniformityTest]
    n_draws: int
    alpha: float
    constant: list[str]
    max_unusable: float = 1.0

    @property
    def alpha_each(self) -> float:
        """The level at which each quantity is tested."""
        return self.alpha / max(len(self.quantities), 1)

    @property
    def failed(self) -> list[str]:
        """Quantities whose ranks are not uniform."""
        return list(self.quantities.loc[~self.quantities["passed"], "parameter"])

    @property
    def verdict(self) -> str:
        """``pass``, ``fail: <quantities>`` or ``inconclusive: <why>``.

        Uniform ranks prove nothing when the draws behind them are not a fair
        sample of the posterior: above ``max_unusable`` such fits, a calibration
        whose ranks pass is inconclusive (ranks that fail still fail).
        """
        failed = self.failed
        if not failed:
            n_bad = int((~self.fits["rank_usable"]).sum())
            if n_bad > self.max_unusable * len(self.fits):
                return (
                    f"inconclusive: {n_bad} of {len(self.fits)} simulated fits have "
                    f"divergent transitions or a bulk ESS below the {self.n_draws} "
                    f"draws ranked (more than calibrate.max_unusable "
                    f"{self.max_unusable:g})"
                )
            return "pass"
        shown = ", ".join(failed[:10]) + (
            f" and {len(failed) - 10} more" if len(failed) > 10 else ""
        )
        return f"fail: {shown}"


def calibrate(
    truth: np.ndarray,
    draws: np.ndarray,
    labels: Sequence[str],
    diverging: np.ndarray,
    energy: np.ndarray,
    thresholds: Thresholds,
    n_draws: int = 99,
    alpha: float = 0.05,
    seed: int = 0,
    max_unusable: float = 1.0,
) -> Calibration:
    """Ranks, uniformity tests, convergence and recovery of one calibration.

    Every simulation counts in the test, converged or not: leaving out the ones
    that did not converge would itself bend the ranks (failures happen at
    particular parameter values). They are counted and reported instead, and a
    second p-value over the converged ones only is given for comparison.

    :param truth: (simulation, element) values drawn from the prior.
    :param draws: (simulation, chain, draw, element) posterior draws.
    :param labels: element names.
    """
    rng = np.random.default_rng(seed)
    labels = list(labels)
    fits = convergence_by_fit(draws, diverging, energy, thresholds)
    fits.index.name = "simulation"
    constant_mask = np.ptp(truth, axis=0) == 0
    keep = np.flatnonzero(~constant_mask)
    rank, n_used = ranks(truth[:, keep], draws[..., keep], n_draws, rng)
    # Usable for ranks (Talts et al. 2018, section 4): draws without divergent
    # transitions (which bias the sampler), and at least as many effective draws
    # as are ranked (autocorrelated thinned draws bend the ranks of a correct
    # model). Looser than a fit's own checks, which ask for 100 ESS per chain.
    fits["rank_usable"] = (fits["divergences"] <= thresholds.divergences_max) & (
        fits["ess_bulk_min"].fillna(np.inf) >= n_used
    )
    rec = recovery(truth[:, keep], draws[..., keep])
    converged = fits["converged"].to_numpy()
    rhat_ok = fits.attrs["rhat"][:, keep] <= thresholds.rhat_max
    ess_ok = fits.attrs["ess_bulk"][:, keep] >= thresholds.ess_bulk_min
    tests, rows = {}, []
    for j, col in enumerate(keep):
        name = labels[col]
        tests[name] = uniformity_test(rank[:, j], n_used, seed=seed)
        p_conv = (
            uniformity_test(rank[converged, j], n_used, seed=seed).p_value
            if converged.sum() >= 2
            else float("nan")
        )
        rows.append(
            {
                "parameter": name,
                "p_value": tests[name].p_value,
                "p_value_converged": p_conv,
                "converged_fraction": float(converged.mean()),
                "element_converged_fraction": float(
                    (rhat_ok[:, j] & ess_ok[:, j]).mean()
                ),
                **rec.iloc[j].to_dict(),
            }
        )
    quantities = pd.DataFrame(rows)
    alpha_each = alpha / max(len(quantities), 1)
    quantities["passed"] = quantities["p_value"] >= alpha_each
    flat = draws.reshape(draws.shape[0], -1, draws.shape[-1])[..., keep]
    q = np.quantile(flat, [0.03, 0.25, 0.75, 0.97], axis=1)
    s, p = rank.shape
    long = pd.DataFrame(
        {
            "simulation": np.repeat(np.arange(s), p),
            "parameter": np.tile([labels[c] for c in keep], s),
            "truth": truth[:, keep].ravel(),
            "rank": rank.ravel(),
            "rank_draws": n_used,
            "posterior_mean": flat.mean(axis=1).ravel(),
            "q03": q[0].ravel(),
            "q25": q[1].ravel(),
            "q75": q[2].ravel(),
            "q97": q[3].ravel(),
            "converged": np.repeat(converged, p),
        }
    )
    constant = [labels[c] for c in np.flatnonzero(constant_mask)]
    return Calibration(
        quantities, long, fits, tests, n_used, alpha, constant, max_unusable
    )
