"""NUTS settings: one frozen record, validated once, shared by config and code."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from numpyro.infer.hmc_util import build_adaptation_schedule

from hibayes.errors import InputError
from hibayes.system.typed import wrong_types

__all__ = [
    "FitSettings",
    "FitSettingsError",
    "INIT_STRATEGIES",
    "CHAIN_METHODS",
    "PRECISIONS",
    "FLOAT64_ABOVE_ROWS",
    "DENSE_MASS_DRAWS_PER_DIM",
    "resolve_dense_mass",
]

INIT_STRATEGIES = ("median", "mean", "uniform", "sample", "feasible")
CHAIN_METHODS = ("auto", "parallel", "vectorized", "sequential")
PRECISIONS = ("auto", "float32", "float64")
# Above this many data rows ``precision: auto`` samples in float64: the log density
# is a sum over rows, and at 1M ordinal rows (|log p| ~ 2e6) float32 rounding of it
# (~0.1) swamped NUTS's energy check: 988 leapfrog steps, R-hat 1.7, where float64
# gave 17 steps and R-hat 1.00; 500k rows were still fine in float32 (16 steps).
FLOAT64_ABOVE_ROWS = 250_000
# ``dense_mass: auto`` adapts a dense mass matrix only when warmup's last slow window
# holds at least this many draws per latent dimension. A covariance of d dimensions
# estimated from n autocorrelated draws is noisy unless n >> d: on a 20k-row ordinal
# design (210 latent values, 500 warmup: a 200-draw window) dense mass took 220-260
# leapfrog steps per iteration and diagonal 15; with 1500 warmup (1000-draw window)
# both took 15; with 33 values dense took 7-10 and diagonal 8-14, and on the grader
# example (19 values) 12 against 20. See scripts/bench_fit.py.
DENSE_MASS_DRAWS_PER_DIM = 4


def resolve_dense_mass(dense_mass: bool | str, latent_size: int, warmup: int) -> bool:
    """Whether to adapt a dense mass matrix (``auto``: by latent size and warmup)."""
    if dense_mass != "auto":
        return bool(dense_mass)
    windows = build_adaptation_schedule(int(warmup)) if warmup > 0 else []
    # The windows between the initial and final buffers adapt the mass matrix;
    # the last of them is what the sampling phase uses.
    last = windows[-2] if len(windows) >= 3 else None
    draws = last.end - last.start + 1 if last is not None else 0
    return 0 < latent_size <= draws / DENSE_MASS_DRAWS_PER_DIM


class FitSettingsError(InputError):
    """A sampler setting is out of range."""


@dataclass(frozen=True)
class FitSettings:
    """Sampler settings for one NUTS fit.

    :param samples: post-warmup draws per chain.
    :param warmup: warmup (adaptation) iterations per chain.
    :param chains: number of chains.
    :param seed: seed of the PRNG key; same seed, same draws.
    :param target_accept: NUTS target acceptance probability.
    :param max_tree_depth: NUTS maximum tree depth.
    :param init_strategy: one of :data:`INIT_STRATEGIES`.
    :param chain_method: one of :data:`CHAIN_METHODS`; ``auto`` picks parallel
        chains on CPU when there are enough devices, vectorized on GPU.
    :param dense_mass: adapt a dense mass matrix instead of a diagonal one;
        ``auto``: dense only where warmup has enough draws per latent value to
        learn one (:func:`resolve_dense_mass`).
    :param collapse_identical_rows: let the likelihood visit each distinct data row
        once, weighted by how often it occurs (exact for models whose rows are
        independent given the parameters; see :mod:`hibayes.inference.collapse`).
    :param precision: ``float32``, ``float64`` or ``auto`` (float64 above
        :data:`FLOAT64_ABOVE_ROWS` data rows, where float32 sums of the log
        density lose the precision NUTS needs).
    :param prior_samples: draws of the prior and prior predictive (0: skip).
    :param posterior_predictive_samples: posterior draws pushed through the
        likelihood (``None``: all of them, within ``max_predictive_values``).
    :param max_predictive_values: with ``posterior_predictive_samples: null``,
        the most replicated values (draws x data rows) to draw; larger data get
        that many draws' worth, chosen at random. Caps prior predictive draws too.
    :param progress_after_s: show sampling progress with the time left when the
        sampling is expected to take longer than this (seconds; 0: always, ``None``:
        never); see :mod:`hibayes.inference.progress`.
    """

    samples: int = 2000
    warmup: int = 1000
    chains: int = 4
    seed: int = 0
    target_accept: float = 0.95
    max_tree_depth: int = 10
    init_strategy: str = "median"
    chain_method: str = "auto"
    dense_mass: bool | str = False
    collapse_identical_rows: bool = False
    precision: str = "auto"
    prior_samples: int = 500
    posterior_predictive_samples: int | None = None
    max_predictive_values: int = 20_000_000
    progress_after_s: float | None = 15.0

    def __post_init__(self) -> None:
        for name in ("samples", "chains"):
            if int(getattr(self, name)) <= 0:
                raise FitSettingsError(
                    f"fit.{name} must be > 0, got {getattr(self, name)}"
                )
        for name in ("warmup", "prior_samples"):
            if int(getattr(self, name)) < 0:
                raise FitSettingsError(
                    f"fit.{name} must be >= 0, got {getattr(self, name)}"
                )
        if not 0.0 < float(self.target_accept) < 1.0:
            raise FitSettingsError(
                f"fit.target_accept must be in (0, 1), got {self.target_accept}"
            )
        if not 1 <= int(self.max_tree_depth) <= 20:
            raise FitSettingsError(
                f"fit.max_tree_depth must be in 1..20, got {self.max_tree_depth}"
            )
        if self.init_strategy not in INIT_STRATEGIES:
            raise FitSettingsError(
                f"fit.init_strategy must be one of {INIT_STRATEGIES}, got "
                f"{self.init_strategy!r}"
            )
        if self.chain_method not in CHAIN_METHODS:
            raise FitSettingsError(
                f"fit.chain_method must be one of {CHAIN_METHODS}, got {self.chain_method!r}"
            )
        if not isinstance(self.dense_mass, bool) and self.dense_mass != "auto":
            raise FitSettingsError(
                f"fit.dense_mass must be true, false or auto, got {self.dense_mass!r}"
            )
        if self.precision not in PRECISIONS:
            raise FitSettingsError(
                f"fit.precision must be one of {PRECISIONS}, got {self.precision!r}"
            )
        if int(self.max_predictive_values) <= 0:
            raise FitSettingsError(
                f"fit.max_predictive_values must be > 0, got {self.max_predictive_values}"
            )
        after = self.progress_after_s
        if after is not None and not float(after) >= 0.0:
            raise FitSettingsError(
                f"fit.progress_after_s must be >= 0 or null, got {after}"
            )
        pps = self.posterior_predictive_samples
        if pps is not None and int(pps) <= 0:
            raise FitSettingsError(
                f"fit.posterior_predictive_samples must be > 0 or null, got {pps}"
            )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> FitSettings:
        """Build from a config mapping, refusing keys that are not settings."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        problems = wrong_types("fit", values, cls)
        if unknown:
            problems.insert(
                0, f"unknown fit setting(s) {unknown}; known: {sorted(known)}"
            )
        if problems:
            raise FitSettingsError("\n".join(problems))
        return cls(**dict(values))

    def resolved_precision(self, n_rows: int) -> str:
        """``float32`` or ``float64`` for data of ``n_rows`` rows."""
        if self.precision != "auto":
            return self.precision
        return "float64" if n_rows > FLOAT64_ABOVE_ROWS else "float32"

    def predictive_draws(self, n_rows: int) -> tuple[int | None, int]:
        """Posterior predictive draws (``None``: every draw) and prior draws for ``n_rows``.

        Per-row replicated data grow as draws x rows: 8000 draws of 200k rows are
        6.4 GB in memory and in idata.nc, for checks that a few hundred draws serve.
        """
        fits = max(1, int(self.max_predictive_values) // max(int(n_rows), 1))
        wanted = self.posterior_predictive_samples
        if wanted is None and self.chains * self.samples > fits:
            wanted = fits
        prior = min(int(self.prior_samples), fits) if self.prior_samples > 0 else 0
        return wanted, prior

    def as_dict(self) -> dict[str, Any]:
        """Plain dict of the settings."""
        return asdict(self)
