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
import jax.numpy as jnp
import numpy as np
from numpyro.infer import (
    MCMC,
    NUTS,
    Predictive,
    init_to_feasible,
    init_to_mean,
    init_to_median,
    init_to_sample,
    init_to_uniform,
)
from numpyro.infer.util import log_likelihood
from numpyro.primitives import Messenger

from . import progress as _progress
from .program import Program
from .settings import FitSettings, resolve_dense_mass

__all__ = [
    "CompiledSampler",
    "get_sampler",
    "latent_size",
    "resolve_chain_method",
    "predictive_fns",
]

_EXTRA_FIELDS = (
    "diverging",
    "energy",
    "num_steps",
    "accept_prob",
    "adapt_state.step_size",
    "potential_energy",
)
_INIT = {
    "median": init_to_median,
    "mean": init_to_mean,
    "uniform": init_to_uniform,
    "sample": init_to_sample,
    "feasible": init_to_feasible,
}


@dataclass
class CompiledSampler:
    """A compiled multi-chain NUTS run.

    :param chain_method: ``parallel``, ``vectorized`` or ``sequential``.
    :param run_fn: ``run_fn(chain_keys, arrays, hyper) -> (samples, extras)``,
        every leaf with leading (chain, draw) axes.
    :param compile_s: seconds spent compiling (0 for a cache hit).
    :param dense_mass: whether a dense mass matrix is adapted (``auto`` resolved).
    """

    chain_method: str
    run_fn: Callable[..., tuple[dict, dict]]
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


def latent_size(program: Program) -> int:
    """Latent values per draw: the dimension the mass matrix adapts over."""
    return sum(
        int(np.prod(program.sites.shapes[name])) for name in program.sites.latent
    )


def _dense(program: Program, settings: FitSettings) -> bool:
    return resolve_dense_mass(
        settings.dense_mass, latent_size(program), settings.warmup
    )


class _TickingNUTS(NUTS):
    """NUTS that calls :func:`hibayes.inference.progress.tick` every ``every`` iterations.

    Under ``vmap`` (``axis``: the chains' axis name) the chains tick once together,
    their iteration counter reduced over the axis so that the condition stays a real
    branch; under ``pmap`` and alone each chain ticks for itself.
    """

    def __init__(
        self, *args: Any, every: int, axis: str | None, weight: int, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._every, self._axis, self._weight = every, axis, weight

    def sample(self, state: Any, model_args: Any, model_kwargs: Any) -> Any:
        """One NUTS iteration, then a tick when the iteration count says so."""
        new = super().sample(state, model_args, model_kwargs)
        i = new.i if self._axis is None else jax.lax.pmax(new.i, self._axis)
        jax.lax.cond(
            i % self._every == 0,
            lambda: jax.debug.callback(_progress.tick, self._weight),
            lambda: None,
        )
        return new


def _one_chain(
    program: Program, settings: FitSettings, ticks: str | None = None
) -> Callable:
    """One chain's run; ``ticks`` (``chain`` or an axis name) adds progress ticks."""
    options: dict[str, Any] = {}
    kernel_class: type = NUTS
    if ticks is not None:
        every = _progress.tick_every(settings.warmup + settings.samples)
        vmapped = ticks != "chain"
        kernel_class = _TickingNUTS
        options = {
            "every": every,
            "axis": ticks if vmapped else None,
            "weight": every * (settings.chains if vmapped else 1),
        }
    kernel = kernel_class(
        program.fn,
        target_accept_prob=settings.target_accept,
        max_tree_depth=settings.max_tree_depth,
        init_strategy=_INIT[settings.init_strategy],
        dense_mass=_dense(program, settings),
        **options,
    )

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
            rng_key, arrays, hyper, extra_fields=_EXTRA_FIELDS, init_params=init_params
        )
        return mcmc.get_samples(), mcmc.get_extra_fields()

    return run


def _sampler_key(
    program: Program, settings: FitSettings, method: str, progress: bool
) -> tuple:
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
        progress,
    )


def get_sampler(
    program: Program,
    settings: FitSettings,
    chain_keys: jax.Array,
    progress: bool = False,
) -> CompiledSampler:
    """Return the compiled sampler for this program and settings, compiling once.

    :param progress: compile it with progress ticks (:mod:`.progress`); the
        ticking and the plain sampler are cached apart.
    """
    method = resolve_chain_method(settings.chain_method, settings.chains)
    key = _sampler_key(program, settings, method, progress)
    cached = _SAMPLERS.get(key)
    if cached is not None:
        return CompiledSampler(
            cached.chain_method, cached.run_fn, 0.0, cached.dense_mass
        )
    ticks = None
    if progress:
        ticks = "chains" if method == "vectorized" else "chain"
    one_chain = _one_chain(program, settings, ticks)
    start = time.perf_counter()
    if method == "parallel":
        if jax.local_device_count() < settings.chains:
            raise ValueError(
                f"fit.chain_method=parallel needs {settings.chains} devices, JAX has "
                f"{jax.local_device_count()}; set HIBAYES_HOST_DEVICES before start-up "
                "or use chain_method=sequential"
            )
        devices = jax.local_devices()[: settings.chains]
        compiled = (
            jax.pmap(one_chain, in_axes=(0, None, None), devices=devices)
            .lower(chain_keys, program.sampled_arrays, program.hyper)
            .compile()
        )
        run_fn = compiled
    elif method == "vectorized":
        run_fn = (
            jax.jit(jax.vmap(one_chain, in_axes=(0, None, None), axis_name="chains"))
            .lower(chain_keys, program.sampled_arrays, program.hyper)
            .compile()
        )
    else:
        single = (
            jax.jit(one_chain)
            .lower(chain_keys[0], program.sampled_arrays, program.hyper)
            .compile()
        )

        def run_fn(keys: jax.Array, arrays: dict, hyper: dict) -> tuple[dict, dict]:
            outs = [single(k, arrays, hyper) for k in keys]
            return jax.tree.map(lambda *xs: jnp.stack(xs), *outs)

    compile_s = time.perf_counter() - start
    sampler = CompiledSampler(method, run_fn, compile_s, _dense(program, settings))
    _SAMPLERS[key] = sampler
    return sampler


class _ResampleObs(Messenger):
    """Turn the observed ``obs`` site into a free one, for predictive draws."""

    def process_message(self, msg: dict) -> None:
        if msg["type"] == "sample" and msg["name"] == "obs":
            msg["value"] = None
            msg["is_observed"] = False


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
