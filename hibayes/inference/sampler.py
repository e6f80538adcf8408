"""Compiled NUTS samplers and predictive functions, cached per program structure.

Every function here is compiled once per :attr:`Program.structure_key` and
settings, and then called with the traced parts (PRNG keys, array features,
numeric hyperparameters). A sweep over priors, or a second seed, therefore
reuses the executable instead of compiling again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
from numpyro.infer import MCMC, Predictive
from numpyro.infer.util import log_likelihood
from numpyro.primitives import Messenger

from .chunks import ChunkedSampler, compile_chunked
from .fast_draws import with_fast_draws
from .kernel import EXTRA_FIELDS, dense_mass, latent_size, nuts_kernel
from .program import Program
from .settings import FitSettings

__all__ = [
    "CompiledSampler",
    "get_sampler",
    "latent_size",
    "resolve_chain_method",
    "predictive_fns",
]


@dataclass
class CompiledSampler:
    """A compiled multi-chain NUTS run, advanced in chunks (:mod:`.chunks`).

    :param chain_method: ``parallel``, ``vectorized`` or ``sequential``.
    :param chunked: ``chunked.run(chain_keys, arrays, hyper, on_chunk) -> (samples,
        extras)``, every leaf with leading (chain, draw) axes.
    :param compile_s: seconds spent compiling (0 for a cache hit).
    :param dense_mass: whether a dense mass matrix is adapted (``auto`` resolved).
    """

    chain_method: str
    chunked: ChunkedSampler
    compile_s: float
    dense_mass: bool = False


_SAMPLERS: dict[tuple, CompiledSampler] = {}
_PREDICTIVE: dict[tuple, Callable] = {}


def resolve_chain_method(requested: str, chains: int) -> str:
    """Pick how chains run: vectorized on accelerators, parallel on many CPUs."""
    if requested != "auto":
        return requested
    if jax.default_backend() != "cpu":
        return "vectorized"
    if chains > 1 and jax.local_device_count() >= chains:
        return "parallel"
    return "sequential"


def _one_chain(program: Program, settings: FitSettings) -> Callable:
    """One chain's whole run in one call of NumPyro's MCMC (refits and calibration).

    Its draws equal the chunked sampler's only up to float rounding (XLA compiles
    the two loops differently), so a fit always uses the chunked one.
    """
    kernel = nuts_kernel(program, settings)

    def run(
        rng_key: jax.Array, arrays: dict, hyper: dict, init_params: dict | None = None
    ) -> tuple[dict, dict]:
        mcmc = MCMC(
            kernel,
            num_warmup=settings.warmup,
            num_samples=settings.samples,
            num_chains=1,
            progress_bar=False,
        )
        # init_params (unconstrained, traced): refits start where the fit ended.
        mcmc.run(
            rng_key, arrays, hyper, extra_fields=EXTRA_FIELDS, init_params=init_params
        )
        return mcmc.get_samples(), mcmc.get_extra_fields()

    return run


def _sampler_key(program: Program, settings: FitSettings, method: str) -> tuple:
    s = settings
    return (
        program.structure_key,
        method,
        s.samples,
        s.warmup,
        s.chains,
        s.target_accept,
        s.max_tree_depth,
        s.init_strategy,
        s.dense_mass,
    )


def get_sampler(
    program: Program, settings: FitSettings, chain_keys: jax.Array
) -> CompiledSampler:
    """Return the compiled sampler for this program and settings, compiling once.

    The same executable serves fits with and without progress lines: whether a
    line is said between two chunks changes nothing that is compiled.
    """
    method = resolve_chain_method(settings.chain_method, settings.chains)
    key = _sampler_key(program, settings, method)
    cached = _SAMPLERS.get(key)
    if cached is not None:
        return CompiledSampler(
            cached.chain_method, cached.chunked, 0.0, cached.dense_mass
        )
    devices = None
    if method == "parallel":
        if jax.local_device_count() < settings.chains:
            raise ValueError(
                f"fit.chain_method=parallel needs {settings.chains} devices, JAX has "
                f"{jax.local_device_count()}; set HIBAYES_HOST_DEVICES before start-up "
                "or use chain_method=sequential"
            )
        devices = jax.local_devices()[: settings.chains]
    start = time.perf_counter()
    chunked = compile_chunked(program, settings, method, chain_keys, devices)
    compile_s = time.perf_counter() - start
    sampler = CompiledSampler(method, chunked, compile_s, dense_mass(program, settings))
    _SAMPLERS[key] = sampler
    return sampler


class _ResampleObs(Messenger):
    """Turn the observed ``obs`` site into a free one, for predictive draws."""

    def process_message(self, msg: dict) -> None:
        if msg["type"] == "sample" and msg["name"] == "obs":
            msg["value"] = None
            msg["is_observed"] = False
            msg["fn"] = with_fast_draws(msg["fn"])


def predictive_fns(program: Program) -> dict[str, Callable]:
    """Jitted log-likelihood, posterior-predictive and prior functions."""
    key = (program.structure_key,)
    cached = _PREDICTIVE.get(key)
    if cached is not None:
        return cached  # type: ignore[return-value]
    fn = program.fn

    def loglik(samples: dict, arrays: dict, hyper: dict) -> jax.Array:
        return log_likelihood(fn, samples, arrays, hyper, batch_ndims=2)["obs"]

    def posterior_predictive(
        rng_key: jax.Array, samples: dict, arrays: dict, hyper: dict
    ) -> jax.Array:
        pred = Predictive(
            _ResampleObs(fn),
            posterior_samples=samples,
            return_sites=["obs"],
            batch_ndims=1,
        )
        return pred(rng_key, arrays, hyper)["obs"]

    def prior(rng_key: jax.Array, num_samples: int, arrays: dict, hyper: dict) -> dict:
        return Predictive(_ResampleObs(fn), num_samples=num_samples)(
            rng_key, arrays, hyper
        )

    fns = {
        "log_likelihood": jax.jit(loglik),
        "posterior_predictive": jax.jit(posterior_predictive),
        "prior": jax.jit(prior, static_argnums=1),
    }
    _PREDICTIVE[key] = fns  # type: ignore[assignment]
    return fns


def to_numpy(tree: Any) -> Any:
    """Bring a pytree of device arrays to host numpy."""
    return jax.tree.map(np.asarray, jax.device_get(tree))
