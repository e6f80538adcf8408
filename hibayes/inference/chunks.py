"""Sampling in chunks: the compiled NUTS loop advanced from Python, a line between calls.

A progress line needs Python to see the chains advance. Host callbacks inside the
compiled loop made sampling ~25% slower, however few they were, and JAX's
persistent compile cache cannot store an executable that holds one. Here there is
no callback: one executable starts the chains (``init``) and one advances every
chain by up to ``chunk`` NUTS iterations from a given state (``advance``), and
Python calls it until warmup and draws are done, saying how far it is in between.

The chain state carries everything a later iteration needs (iteration index,
PRNG key, step size and mass-matrix adaptation), and the kernel knows the warmup
length from ``init``, so the adaptation windows continue across chunks: where
the chunks end changes no draw, and the draws are those of one call of
:class:`numpyro.infer.MCMC` with the same key up to float rounding, which NUTS
turns into other draws of the same posterior after ~100 warmup iterations
(tests/unit/inference/test_chunks.py).
"""

from __future__ import annotations

import math
import operator
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .kernel import EXTRA_FIELDS, nuts_kernel
from .program import Program
from .settings import FitSettings

__all__ = [
    "ADAPTED_FIELDS",
    "CHUNKS",
    "ChunkedSampler",
    "adapted",
    "chain_fns",
    "chunk_length",
    "compile_chunked",
]

#: Calls per run: progress in steps of 5% (lines are at every 10%). Each call is a
#: few tens of microseconds of dispatch and a wait for the slowest chain.
CHUNKS = 20
#: What warmup adapted, kept from a chain's last state (NumPyro's ``HMCAdaptState``
#: names): refits reuse it (:mod:`.refit`).
ADAPTED_FIELDS = (
    "step_size",
    "inverse_mass_matrix",
    "mass_matrix_sqrt",
    "mass_matrix_sqrt_inv",
)
#: Calls queued beyond the one Python waits for (see :meth:`ChunkedSampler.run`).
QUEUED_AHEAD = 3


def chunk_length(iterations: int, chunks: int = CHUNKS) -> int:
    """Iterations per call for a run of ``iterations`` per chain (warmup + draws)."""
    return max(1, math.ceil(int(iterations) / chunks))


def adapted(state: Any) -> dict:
    """The adapted step size and mass matrix of chain states, as host arrays.

    :param state: one ``HMCState`` with a leading chain axis, or a list of them
        (one per chain, sequential chains).
    :return: :data:`ADAPTED_FIELDS` -> leaves with a leading chain axis.
    """
    if isinstance(state, list):
        state = jax.tree.map(lambda *xs: jnp.stack(xs), *state)
    fields = {name: getattr(state.adapt_state, name) for name in ADAPTED_FIELDS}
    return jax.tree.map(np.asarray, jax.device_get(fields))


def chain_fns(program: Program, settings: FitSettings, chunk: int) -> tuple:
    """One chain's ``init`` and ``advance``; trace ``init`` first (it sets up the kernel).

    ``init(rng_key, arrays, hyper, init_params=None) -> state`` starts a chain as
    ``MCMC.run`` does. ``advance(state, arrays, hyper, steps) -> (state, (latent,
    extras))`` runs ``steps <= chunk`` iterations and returns each one's
    constrained values and sampler fields, padded to ``chunk`` rows. ``steps`` is
    traced, so the last, shorter call uses the same executable.
    """
    kernel = nuts_kernel(program, settings)
    traced: list[bool] = []

    def init(
        rng_key: jax.Array, arrays: dict, hyper: dict, init_params: dict | None = None
    ) -> Any:
        traced.append(True)
        return kernel.init(rng_key, settings.warmup, init_params, (arrays, hyper), {})

    def advance(state: Any, arrays: dict, hyper: dict, steps: jax.Array) -> tuple:
        # NumPyro sets up the kernel's sample and constrain functions while it traces
        # init; before that the constrain function would silently be the identity.
        if not traced:
            raise RuntimeError("chain_fns: trace init before advance")
        args = (arrays, hyper)
        constrain = kernel.postprocess_fn(args, {})

        def fields(s: Any) -> tuple[dict, dict]:
            extras = {name: operator.attrgetter(name)(s) for name in EXTRA_FIELDS}
            return constrain(s.z), extras

        shapes = jax.eval_shape(fields, state)
        zeros = jax.tree.map(lambda a: jnp.zeros((chunk,) + a.shape, a.dtype), shapes)

        def body(j: jax.Array, carry: tuple) -> tuple:
            s, out = kernel.sample(carry[0], args, {}), carry[1]
            return s, jax.tree.map(lambda a, v: a.at[j].set(v), out, fields(s))

        return jax.lax.fori_loop(0, steps, body, (state, zeros))

    return init, advance


@dataclass
class ChunkedSampler:
    """Compiled ``init`` and ``advance`` over all chains (leading axis: chain).

    :param chunk: iterations per ``advance`` call.
    :param warmup: warmup iterations per chain (their draws are dropped).
    :param samples: draws kept per chain.
    """

    init: Callable
    advance: Callable
    chunk: int
    warmup: int
    samples: int

    def run(
        self,
        chain_keys: jax.Array,
        arrays: dict,
        hyper: dict,
        on_chunk: Callable[[int], None] | None = None,
    ) -> tuple[dict, dict]:
        """Sample every chain; ``on_chunk(iterations)`` after each call is done.

        :return: ``(samples, extras)`` as host arrays with leading (chain, draw) axes.
        """
        samples, extras, _ = self.run_adapted(chain_keys, arrays, hyper, on_chunk)
        return samples, extras

    def run_adapted(
        self,
        chain_keys: jax.Array,
        arrays: dict,
        hyper: dict,
        on_chunk: Callable[[int], None] | None = None,
    ) -> tuple[dict, dict, dict]:
        """:meth:`run`, and what warmup adapted per chain (:func:`adapted`)."""
        total = self.warmup + self.samples
        state = self.init(chain_keys, arrays, hyper)
        queued: deque = deque()
        kept: list[Any] = []

        def wait_for_oldest() -> None:
            out, start, steps = queued.popleft()
            rows = self._keep(out, start, steps)
            if rows is not None:
                kept.append(rows)
            if on_chunk is not None:
                on_chunk(steps)

        for start in range(0, total, self.chunk):
            steps = min(self.chunk, total - start)
            state, out = self.advance(state, arrays, hyper, np.int32(steps))
            queued.append((out, start, steps))
            # JAX dispatches asynchronously and each call waits only for its own
            # chains' state: with calls queued ahead, a chain that finishes its
            # chunk early goes on instead of waiting for the slowest chain while
            # Python reports. Few enough that an interrupt (raised in Python once
            # a wait returns) does not leave most of the run queued.
            if len(queued) > QUEUED_AHEAD:
                wait_for_oldest()
        while queued:
            wait_for_oldest()
        samples, extras = jax.tree.map(lambda *xs: np.concatenate(xs, axis=1), *kept)
        return samples, extras, adapted(state)

    def _keep(self, out: Any, start: int, steps: int) -> Any:
        """The post-warmup rows of one call's output, on the host."""
        lo = max(self.warmup - start, 0)
        if lo >= steps:  # warmup only: wait for it, bring nothing back
            jax.block_until_ready(out)
            return None
        host = jax.device_get(out)
        return jax.tree.map(lambda a: np.asarray(a)[:, lo:steps], host)


def compile_chunked(
    program: Program,
    settings: FitSettings,
    method: str,
    chain_keys: jax.Array,
    devices: list | None = None,
    chunks: int = CHUNKS,
) -> ChunkedSampler:
    """Compile ``init`` and ``advance`` for ``method`` (parallel, vectorized, sequential)."""
    chunk = chunk_length(settings.warmup + settings.samples, chunks)
    init, advance = chain_fns(program, settings, chunk)
    arrays, hyper = program.sampled_arrays, program.hyper
    steps = np.int32(chunk)
    if method == "sequential":
        init_one = jax.jit(init).lower(chain_keys[0], arrays, hyper).compile()
        state = jax.eval_shape(init, chain_keys[0], arrays, hyper)
        adv_one = jax.jit(advance).lower(state, arrays, hyper, steps).compile()

        def init_all(keys: jax.Array, arrays: dict, hyper: dict) -> list:
            return [init_one(k, arrays, hyper) for k in keys]

        def advance_all(states: list, arrays: dict, hyper: dict, n: Any) -> tuple:
            outs = [adv_one(s, arrays, hyper, n) for s in states]
            stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *[o[1] for o in outs])
            return [o[0] for o in outs], stacked

        return ChunkedSampler(
            init_all, advance_all, chunk, settings.warmup, settings.samples
        )
    if method == "parallel":

        def over_chains(fn: Callable, n_args: int) -> Any:
            axes = (0,) + (None,) * (n_args - 1)
            return jax.pmap(fn, in_axes=axes, devices=devices)

    else:

        def over_chains(fn: Callable, n_args: int) -> Any:
            axes = (0,) + (None,) * (n_args - 1)
            return jax.jit(jax.vmap(fn, in_axes=axes))

    init_all = over_chains(init, 3).lower(chain_keys, arrays, hyper).compile()
    state = jax.eval_shape(
        jax.vmap(init, in_axes=(0, None, None)), chain_keys, arrays, hyper
    )
    advance_all = over_chains(advance, 4).lower(state, arrays, hyper, steps).compile()
    return ChunkedSampler(
        init_all, advance_all, chunk, settings.warmup, settings.samples
    )
