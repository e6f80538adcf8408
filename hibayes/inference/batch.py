"""Many fits of one program at once: data sets simulated from the prior, fitted batched.

Simulation-based calibration (:mod:`hibayes.calibrate`) fits the same program to
hundreds of data sets that differ only in their ``obs`` values. Here the whole
multi-chain NUTS run becomes one function of (PRNG keys, ``obs``) and is
vectorised over (simulation, chain) pairs, split over the host devices: one
compile for every batch of every calibration of that structure, and no Python
loop around the sampler. A batch runs as long as its slowest chain (the
vectorised tree building waits for the longest trajectory), so batches of a few
dozen simulations trade that waiting against per-call overhead.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from .program import Program
from .sampler import _one_chain, predictive_fns, to_numpy
from .settings import FitSettings

__all__ = [
    "BatchFits",
    "BatchSampler",
    "fit_batches",
    "get_batch_sampler",
    "simulate_from_prior",
]

_BATCH_SAMPLERS: dict[tuple, BatchSampler] = {}


@dataclass
class BatchSampler:
    """A compiled sampler of ``batch`` data sets x ``chains`` chains at once.

    :param run_fn: ``run_fn(keys, obs, arrays, hyper)``; ``keys`` and ``obs``
        shaped (devices, per-device, ...), one row per (simulation, chain).
    :param batch: simulations per call.
    :param devices: devices the (simulation, chain) pairs are split over.
    :param compile_s: seconds spent compiling (0 for a cache hit).
    """

    run_fn: Callable
    batch: int
    devices: int
    compile_s: float


@dataclass
class BatchFits:
    """Posterior draws of every simulated data set.

    :param samples: site -> (simulation, chain, draw, ...), latent and deterministic.
    :param diverging: (simulation, chain, draw) divergent transitions.
    :param energy: (simulation, chain, draw) total Hamiltonian, for E-BFMI.
    :param compile_s: seconds spent compiling the batched sampler.
    :param sampling_s: seconds spent sampling.
    :param compiles: how many times a batched sampler was compiled (0 or 1).
    """

    samples: dict[str, np.ndarray]
    diverging: np.ndarray
    energy: np.ndarray
    compile_s: float
    sampling_s: float
    compiles: int


def simulate_from_prior(
    program: Program, n: int, rng_key: jax.Array
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Draw ``n`` parameter sets from the prior and an ``obs`` for each, by the program.

    :return: every latent and deterministic site (n, ...), and ``obs`` (n, rows...).
    """
    draws = to_numpy(
        predictive_fns(program)["prior"](rng_key, int(n), program.arrays, program.hyper)
    )
    obs = draws.pop("obs")
    return draws, obs


def _split(n_pairs: int) -> int:
    """Devices to split ``n_pairs`` (simulation, chain) pairs over: all that divide it."""
    devices = jax.local_device_count()
    while devices > 1 and n_pairs % devices:
        devices -= 1
    return devices


def get_batch_sampler(
    program: Program, settings: FitSettings, batch: int, obs_example: np.ndarray
) -> BatchSampler:
    """The compiled batched sampler for this program, settings and batch size."""
    key = (
        program.structure_key,
        batch,
        settings.samples,
        settings.warmup,
        settings.chains,
        settings.target_accept,
        settings.max_tree_depth,
        settings.init_strategy,
        settings.dense_mass,
        str(np.asarray(obs_example).dtype),
    )
    cached = _BATCH_SAMPLERS.get(key)
    if cached is not None:
        return BatchSampler(cached.run_fn, cached.batch, cached.devices, 0.0)
    one_chain = _one_chain(program, settings)
    arrays = {k: v for k, v in program.arrays.items() if k != "obs"}

    def per_pair(
        rng_key: jax.Array, obs: jax.Array, arrays: dict, hyper: dict
    ) -> tuple:
        samples, extras = one_chain(rng_key, {**arrays, "obs": obs}, hyper)
        return samples, {"diverging": extras["diverging"], "energy": extras["energy"]}

    n_pairs = batch * settings.chains
    devices = _split(n_pairs)
    per_device = n_pairs // devices
    keys = jnp.zeros((devices, per_device, 2), dtype=jnp.uint32)
    obs = jnp.zeros(
        (devices, per_device) + np.shape(obs_example),
        dtype=jnp.asarray(obs_example).dtype,
    )
    start = time.perf_counter()
    vmapped = jax.vmap(per_pair, in_axes=(0, 0, None, None))
    if devices > 1:
        run_fn = (
            jax.pmap(
                vmapped,
                in_axes=(0, 0, None, None),
                devices=jax.local_devices()[:devices],
            )
            .lower(keys, obs, arrays, program.hyper)
            .compile()
        )
    else:
        run_fn = (
            jax.jit(jax.vmap(vmapped, in_axes=(0, 0, None, None)))
            .lower(keys, obs, arrays, program.hyper)
            .compile()
        )
    sampler = BatchSampler(run_fn, batch, devices, time.perf_counter() - start)
    _BATCH_SAMPLERS[key] = sampler
    return sampler


def _batches(n: int, batch: int) -> Iterator[np.ndarray]:
    """Simulation indices per call; the last batch padded by repeating its first."""
    for start in range(0, n, batch):
        idx = np.arange(start, min(start + batch, n))
        yield np.concatenate([idx, np.full(batch - idx.size, idx[0])])


def fit_batches(
    program: Program,
    settings: FitSettings,
    obs: np.ndarray,
    rng_key: jax.Array,
    batch: int,
    progress: Callable[[str], None] | None = None,
) -> BatchFits:
    """Fit the program to every data set in ``obs`` (simulation first), batched.

    :param batch: simulations per call of the compiled sampler (the last call is
        padded, never recompiled).
    """
    say = progress or (lambda message: None)
    n = int(obs.shape[0])
    batch = max(1, min(int(batch), n))
    sampler = get_batch_sampler(program, settings, batch, obs[0])
    say(
        f"batched sampler: {batch} simulations x {settings.chains} chains per call on "
        f"{sampler.devices} device(s)"
        + (
            f"; compiled in {sampler.compile_s:.1f} s"
            if sampler.compile_s
            else "; compiled sampler reused"
        )
    )
    arrays = {k: v for k, v in program.arrays.items() if k != "obs"}
    keys = np.asarray(jax.random.split(rng_key, n * settings.chains))
    keys = keys.reshape((n, settings.chains) + keys.shape[1:])
    parts: list[tuple[dict, dict]] = []
    start = time.perf_counter()
    for i, idx in enumerate(_batches(n, batch)):
        pairs_obs = np.repeat(obs[idx], settings.chains, axis=0)
        pairs_keys = keys[idx].reshape(batch * settings.chains, -1)
        shape = (sampler.devices, -1)
        out = sampler.run_fn(
            pairs_keys.reshape(shape + pairs_keys.shape[1:]),
            pairs_obs.reshape(shape + pairs_obs.shape[1:]),
            arrays,
            program.hyper,
        )
        samples, extras = to_numpy(jax.block_until_ready(out))
        keep = int(min(batch, n - i * batch))

        def unpair(x: np.ndarray, keep: int = keep) -> np.ndarray:
            x = x.reshape((batch, settings.chains) + x.shape[2:])
            return x[:keep]

        parts.append((jax.tree.map(unpair, samples), jax.tree.map(unpair, extras)))
        say(
            f"fitted {min((i + 1) * batch, n)} of {n} simulated data sets "
            f"({time.perf_counter() - start:.0f} s)"
        )
    sampling_s = time.perf_counter() - start
    samples = {k: np.concatenate([p[0][k] for p in parts]) for k in parts[0][0]}
    extras = {k: np.concatenate([p[1][k] for p in parts]) for k in parts[0][1]}
    return BatchFits(
        samples,
        extras["diverging"].astype(bool),
        extras["energy"],
        sampler.compile_s,
        sampling_s,
        int(sampler.compile_s > 0),
    )
