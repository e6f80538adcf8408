"""Batched refits with per-row likelihood weights: exact cross-validation, compiled once.

A row left out of a fit is a likelihood weight of 0 (:class:`~.collapse.WeightObs`).
The weights enter the compiled sampler as a traced argument, so every refit of
one structure runs the same executable: :func:`refit_weighted` runs the
single-chain NUTS over a batch of weight vectors (one per refit) in one compiled
call. Every chain of every refit is one lane, and the lanes are split over the
chains' host devices on CPU (one device on an accelerator); a device runs its
lanes in lock-step (one vmapped NUTS) or one after another, whichever is faster
for the model's size (:func:`_lanes`). Nothing is compiled or traced again for
the next batch of the same size, the next prior of a sweep, the next seed, or
the next process (:mod:`.exported`); batches are padded to a few sizes
(:func:`batch_size`) so that fits with different numbers of refits share one.

A refit's posterior differs from the fit's by one row or one fold, so its chains
can start with the fit's adapted step size and mass matrix (``adaptation``, per
chain and traced like the weights: still one executable) and warm up briefly
(:func:`_reusing_chain`: one mass-matrix window, then the step size), instead of
NumPyro's full windowed adaptation from a unit mass matrix.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from .collapse import ROW_WEIGHTS
from .exported import computation_digest, load_or_export
from .kernel import EXTRA_FIELDS, latent_size, nuts_kernel
from .program import Program
from .sampler import _one_chain, _sampler_key, resolve_chain_method, to_numpy
from .settings import FitSettings

__all__ = [
    "RefitBatch",
    "batch_size",
    "pointwise_log_likelihood",
    "refit_compiles",
    "refit_weighted",
    "replicate",
    "sampling_weights",
    "trial_log_probs",
]

# Distinguishes refit keys from the fit's own (same seed, independent draws).
_REFIT_STREAM = 7919
_REFITS: dict[tuple, Callable] = {}
# Padding refits weigh every row more than any refit can (a left-out row is 0,
# a kept one 1, a collapsed row its count): recognisable inside the compiled call.
_PADDING_WEIGHT = 1e30
# CPU refits run in lock-step up to this size (latent values + data rows: what a
# gradient costs), in turn above it. Measured on 2 cores, lock-step against in
# turn: the shipped reloo (10 latent values, 6 rows; 6 refits x 4 chains) 1.0
# against 1.7 s; 5-fold nested_evals (79, 60) 4.3 against 5.0-6.5 s; simulated
# two-level binomials of G groups (G + 4, G; 5 folds x 4 chains) G=30 0.7-1.4
# against 1.2 s, G=60 1.1 against 1.4 s, G=100 1.9 against 1.6 s, G=200 6.1
# against 3.3 s.
_LOCK_STEP_MAX_SIZE = 150
# ...and on one device up to this size (:func:`_lane_devices`).
_ONE_DEVICE_MAX_SIZE = 32
_COMPILES = {"count": 0}


@dataclass
class RefitBatch:
    """Draws of a batch of weighted refits.

    :param samples: site -> array with leading (refit, chain, draw) axes.
    :param extras: NUTS extra fields, leading (refit, chain, draw) axes.
    :param chain_method: how the chains ran.
    :param compile_s: seconds spent compiling (0 when the executable was cached).
    :param sampling_s: seconds the batch took to sample.
    :param lock_step: whether each device ran its lanes (chain x refit) in
        lock-step, or one after another.
    :param devices: how many devices the lanes were split over.
    """

    samples: dict[str, np.ndarray]
    extras: dict[str, np.ndarray]
    chain_method: str
    compile_s: float
    sampling_s: float
    lock_step: bool = False
    devices: int = 1


def refit_compiles() -> int:
    """How many refit executables this process has compiled (for tests and benches)."""
    return _COMPILES["count"]


def sampling_weights(program: Program, row_weights: np.ndarray) -> np.ndarray:
    """Per-data-row weights (refit, row) as the sampler reads them.

    Collapsed programs sample distinct rows weighted by their counts: a row's
    weight is added to its distinct row's, so leaving out one copy lowers that
    count by one.
    """
    row_weights = np.asarray(row_weights, dtype=np.float32)
    if program.rows is None:
        return row_weights
    n_unique = program.rows.n_unique
    return np.stack(
        [
            np.bincount(program.rows.inverse, weights=w, minlength=n_unique)
            for w in row_weights
        ]
    ).astype(np.float32)


def _reusing_chain(program: Program, settings: FitSettings) -> Callable:
    """One chain that starts with a given step size and mass matrix and warms up briefly.

    ``run(rng_key, arrays, hyper, init_params, adaptation) -> (samples, extras)``
    with the fields :class:`numpyro.infer.MCMC` would collect. The warmup is
    NumPyro's own adaptation entered at its last mass-matrix window: from the
    first iteration on, the draws (made with the given tuning) feed one estimate
    of the mass matrix, which replaces the given one at that window's end, and
    the terminal window re-tunes the step size for it; under 20 iterations
    (NumPyro's schedule then has no mass-matrix window) only the step size adapts.
    """
    import operator

    from numpyro.infer.hmc_util import build_adaptation_schedule, dual_averaging

    windows = len(build_adaptation_schedule(settings.warmup))
    adapt_mass = windows >= 3  # initial buffer, mass-matrix window(s), terminal
    # Measured on the shipped reloo (seeds 1-3, 200 warmup): with the mass matrix
    # fixed at the fit's, 17.1-17.6 leapfrog steps per draw and an MC SE of the
    # elpd of 0.47-0.66, against 15.3-16.3 and 0.39-0.48 for full adaptation; the
    # one re-estimate gave 15.3-17.1 and 0.41-0.55. Leaving a row out widens that
    # row's group effect, which the fit's mass matrix does not know.
    first_window = windows - 2 if adapt_mass else max(windows - 1, 0)
    kernel = nuts_kernel(program, settings, adapt_mass_matrix=adapt_mass)
    start_averaging, _ = dual_averaging()

    def run(
        rng_key: jax.Array,
        arrays: dict,
        hyper: dict,
        init_params: dict | None,
        adaptation: dict,
    ) -> tuple[dict, dict]:
        args = (arrays, hyper)
        state = kernel.init(rng_key, settings.warmup, init_params, args, {})
        step = adaptation["step_size"]
        # As NumPyro starts a window: dual averaging shrinks towards 10 x the step.
        # Skipping the earlier windows: the initial buffer exists to reach the
        # typical set (the chains start at the fit's last draws, already near it),
        # and short windows from a unit matrix are what the fit's replaces.
        state = state._replace(
            adapt_state=state.adapt_state._replace(
                **adaptation,
                ss_state=start_averaging(jnp.log(10 * step)),
                window_idx=jnp.asarray(
                    first_window, state.adapt_state.window_idx.dtype
                ),
            )
        )
        state = jax.lax.fori_loop(
            0, settings.warmup, lambda _, s: kernel.sample(s, args, {}), state
        )
        constrain = kernel.postprocess_fn(args, {})

        def draw(s: object, _: None) -> tuple:
            s = kernel.sample(s, args, {})
            extras = {name: operator.attrgetter(name)(s) for name in EXTRA_FIELDS}
            return s, (constrain(s.z), extras)

        _, out = jax.lax.scan(draw, state, None, length=settings.samples)
        return out

    return run


def _weighted_chain(
    program: Program, settings: FitSettings, reuse: bool = False
) -> Callable:
    one_chain = (_reusing_chain if reuse else _one_chain)(program, settings)

    def run(
        rng_key: jax.Array,
        weights: jax.Array,
        init: dict,
        arrays: dict,
        hyper: dict,
        adaptation: dict | None,
    ) -> tuple[dict, dict]:
        data = {**arrays, ROW_WEIGHTS: weights}
        if reuse:
            return one_chain(rng_key, data, hyper, init, adaptation)
        return one_chain(rng_key, data, hyper, init)

    return run


def _model_digest(program: Program, weights: jax.Array) -> str:
    """What the refits read of the model: its prior draw, log density and constraints."""
    from numpyro.handlers import seed, trace
    from numpyro.infer.util import constrain_fn, potential_energy, unconstrain_fn

    fn = program.fn

    def computation(key: jax.Array, arrays: dict, hyper: dict) -> tuple:
        args = (arrays, hyper)
        sites = trace(seed(fn, key)).get_trace(*args)
        params = {
            name: site["value"]
            for name, site in sites.items()
            if site["type"] == "sample" and not site["is_observed"]
        }
        z = unconstrain_fn(fn, args, {}, params)
        energy = potential_energy(fn, args, {}, z)
        return energy, constrain_fn(fn, args, {}, z, return_deterministic=True)

    arrays = {**program.sampled_arrays, ROW_WEIGHTS: weights[0]}
    return computation_digest(computation, jax.random.PRNGKey(0), arrays, program.hyper)


def _runs_in_lock_step(size: int, method: str) -> bool:
    """Whether a device's lanes run in lock-step (vmap) rather than in turn.

    :param size: the model's :func:`_gradient_size`.
    """
    if method == "sequential":
        return False
    return method == "vectorized" or size <= _LOCK_STEP_MAX_SIZE


def _compile(
    program: Program,
    settings: FitSettings,
    method: str,
    args: tuple,
    lock_step: bool,
    devices: list,
) -> Callable:
    """Compile ``run(keys[chain, refit], weights[refit, row], init[chain], arrays,
    hyper, adaptation[chain])`` for arguments shaped like ``args``; its draws have
    leading (chain, refit) axes.

    The trace is kept across processes (:mod:`.exported`): tracing NUTS under
    vmap costs more than the refits it batches, and a new process would repeat it.
    """
    identity = {
        "function": "refit",
        "sampler": _sampler_key(program, settings, method),
        "lock_step": lock_step,
        "padding": _PADDING_WEIGHT,
        "model": _model_digest(program, args[1]),
    }
    one = _weighted_chain(program, settings, reuse=args[-1] is not None)
    return _lanes(one, identity, devices, args, lock_step)


def _gradient_size(program: Program) -> int:
    """Latent values plus sampled data rows: how much one gradient computes."""
    obs = program.sampled_arrays.get("obs")
    return latent_size(program) + (0 if obs is None else int(np.shape(obs)[0]))


def _lanes(
    one: Callable, identity: dict, devices: list, args: tuple, lock_step: bool
) -> Callable:
    """Every chain of every refit as one lane; lanes split over ``devices``.

    ``shard_map`` gives each device its own share of the lanes and its own loop.
    A device runs its lanes in lock-step (one vmapped NUTS: each iteration waits
    for the longest trajectory, masked steps for the rest) or in turn
    (``lax.map``: a padding lane is skipped there). Lock-step pays on small
    models, where an XLA CPU operation costs about the same for 12 lanes as for
    one; in turn pays on larger ones, where the masked steps are real work
    (:data:`_LOCK_STEP_MAX_SIZE`).
    """
    mesh = Mesh(np.array(devices), ("lane",))

    def refit(lane: tuple, arrays: dict, hyper: dict) -> tuple[dict, dict]:
        # A lane is (key, weights, start, adaptation); data and hyper are shared.
        key, weights, init, adaptation = lane
        return one(key, weights, init, arrays, hyper, adaptation)

    def lock_stepped(lanes: tuple, arrays: dict, hyper: dict) -> tuple[dict, dict]:
        # A padding lane is sampled too, with unit weights: a posterior as easy
        # as the fit's, so it never slows the batch.
        keys, weights, init, adaptation = lanes
        weights = jnp.where(weights >= _PADDING_WEIGHT, 1.0, weights)
        in_axes = (0, None, None)
        return jax.vmap(refit, in_axes)(
            (keys, weights, init, adaptation), arrays, hyper
        )

    def in_turn(lanes: tuple, arrays: dict, hyper: dict) -> tuple[dict, dict]:
        # The skip's zeros need a lane's output shapes: a second trace of the
        # chain, paid once (the trace is stored across processes).
        first = jax.tree.map(lambda v: v[0], lanes)
        shapes = jax.eval_shape(refit, first, arrays, hyper)

        def refit_unless_padding(lane: tuple) -> tuple[dict, dict]:
            # A padding refit (no weight below 1: nothing left out) only shares
            # the executable: skipped, its draws are dropped anyway. A real
            # branch here, unlike under vmap.
            return jax.lax.cond(
                jnp.all(lane[1] >= _PADDING_WEIGHT),
                lambda: jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes),
                lambda: refit(lane, arrays, hyper),
            )

        return jax.lax.map(refit_unless_padding, lanes)

    spread = jax.shard_map(
        lock_stepped if lock_step else in_turn,
        mesh=mesh,
        in_specs=(PartitionSpec("lane"), PartitionSpec(), PartitionSpec()),
        out_specs=PartitionSpec("lane"),
        # NumPyro's loops start from values no one device owns (its init carry).
        check_vma=False,
    )
    n_chains, n_refits = args[0].shape[:2]

    def as_lanes(args: tuple) -> tuple:
        # lane = chain * n_refits + refit: each chain's key, start and adaptation
        # for each of its refits, each refit's weights for every chain.
        keys, weights, init, arrays, hyper, adaptation = args

        def per_lane(tree: dict | None) -> dict | None:
            return jax.tree.map(lambda v: jnp.repeat(v, n_refits, axis=0), tree)

        lanes = (
            keys.reshape(n_chains * n_refits, *keys.shape[2:]),
            jnp.tile(weights, (n_chains, 1)),
            per_lane(init),
            per_lane(adaptation),
        )
        return lanes, arrays, hyper

    compiled = load_or_export(spread, as_lanes(args), identity, mesh=mesh)

    def run(*args: object) -> tuple[dict, dict]:
        out = compiled(*as_lanes(args))
        return jax.tree.map(lambda v: v.reshape(n_chains, n_refits, *v.shape[1:]), out)

    return run


def _lane_devices(chains: int, method: str, size: int) -> list:
    """The devices the lanes are split over: one per core, at most one per chain.

    The count divides the chains, so every device gets as many lanes. An
    accelerator (``vectorized``) takes every lane itself; ``sequential`` runs
    every lane in turn on one device. The smallest models run in lock-step on one
    device: on the shipped reloo (size 16, 24 lanes, 2 cores) one device took
    1.0-1.06 s and 1.0 CPU-s a batch, two 0.95-1.0 s and 1.9 CPU-s, and now and
    then 1.7-2.0 s; from nested_evals' size (139) on, two devices pay (4.3-6.4 s
    against 6.5-7.2 s).
    """
    if method != "parallel" or size <= _ONE_DEVICE_MAX_SIZE:
        return jax.local_devices()[:1]
    cores = min(os.cpu_count() or 1, chains, jax.local_device_count())
    count = max(d for d in range(1, cores + 1) if chains % d == 0)
    return jax.local_devices()[:count]


def _unconstrained_start(program: Program, start: dict, chains: int) -> dict:
    """Each chain's last draw of the fit (constrained) on the sampler's scale."""
    from numpyro.infer.util import unconstrain_fn

    arrays = program.sampled_arrays
    latent = {k: jnp.asarray(np.asarray(start[k])) for k in program.sites.latent}

    def one(params: dict) -> dict:
        return unconstrain_fn(program.fn, (arrays, program.hyper), {}, params)

    init = jax.vmap(one)(latent)
    return {k: v[:chains] for k, v in init.items()}


def batch_size(n_refits: int) -> int:
    """The batch a number of refits is padded to, so other counts reuse its executable.

    Steps of at most x1.5 (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, ...): a padded refit
    (all weights 1) costs sampling time, a new batch size costs a compile.
    """
    size = 1
    while size < n_refits:
        size = (
            size * 3 // 2
            if size >= 4 and (size & (size - 1)) == 0
            else (size * 4 // 3 if size >= 3 else size + 1)
        )
    return size


def refit_weighted(
    program: Program,
    settings: FitSettings,
    row_weights: np.ndarray,
    start: dict | None = None,
    pad: bool = True,
    adaptation: dict | None = None,
) -> RefitBatch:
    """Refit ``program`` once per row of ``row_weights`` (refit, data row), in one call.

    :param program: the fitted program (its arrays and hyperparameters).
    :param settings: sampler settings of the refits (the fit's, or shorter).
    :param row_weights: likelihood weight of every data row in every refit
        (0 leaves a row out, 1 keeps it).
    :param start: site -> one draw per chain (leading chain axis) where each
        refit's chains start, e.g. the fit's last draws; ``None``: the fit's
        init strategy.
    :param pad: pad the batch to :func:`batch_size` refits (extra ones skipped where
        the refits run one after another, and dropped).
    :param adaptation: the fit's adapted step size and mass matrix per chain
        (:attr:`~.fit.FitResult.adaptation`): each refit chain starts with its
        chain's, and ``settings.warmup`` re-estimates them once
        (:func:`_reusing_chain`); ``None``: NumPyro's full adaptation from scratch.
    :return: the refits' draws, leading (refit, chain, draw) axes.
    """
    n_wanted = int(np.shape(row_weights)[0])
    weights = sampling_weights(program, row_weights)
    if pad and batch_size(n_wanted) > n_wanted:
        extra = np.full(
            (batch_size(n_wanted) - n_wanted, weights.shape[1]), _PADDING_WEIGHT
        )
        weights = np.concatenate([weights, extra.astype(weights.dtype)])
    weights = jnp.asarray(weights)
    arrays = {k: v for k, v in program.sampled_arrays.items() if k != ROW_WEIGHTS}
    n_refits = int(weights.shape[0])
    init = (
        None if start is None else _unconstrained_start(program, start, settings.chains)
    )
    if adaptation is not None:
        adaptation = jax.tree.map(
            lambda v: jnp.asarray(v)[: settings.chains], adaptation
        )
    base = jax.random.fold_in(jax.random.PRNGKey(int(settings.seed)), _REFIT_STREAM)
    # keys[chain, refit]: each refit's chains get independent streams.
    keys = jax.random.split(base, settings.chains * n_refits).reshape(
        settings.chains, n_refits, -1
    )
    method = resolve_chain_method(settings.chain_method, settings.chains)
    size = _gradient_size(program)
    lock_step = _runs_in_lock_step(size, method)
    devices = _lane_devices(settings.chains, method, size)
    cache_key = (
        _sampler_key(program, settings, method),
        "refit",
        lock_step,
        len(devices),
        n_refits,
        tuple(weights.shape),
        init is None,
        adaptation is None,
    )
    run_fn = _REFITS.get(cache_key)
    compile_s = 0.0
    if run_fn is None:
        t0 = time.perf_counter()
        args = (keys, weights, init, arrays, program.hyper, adaptation)
        run_fn = _compile(program, settings, method, args, lock_step, devices)
        compile_s = time.perf_counter() - t0
        _REFITS[cache_key] = run_fn
        _COMPILES["count"] += 1
    t0 = time.perf_counter()
    samples, extras = run_fn(keys, weights, init, arrays, program.hyper, adaptation)
    samples, extras = to_numpy(jax.block_until_ready((samples, extras)))
    sampling_s = time.perf_counter() - t0
    # (chain, refit, draw, ...) -> (refit, chain, draw, ...), padding dropped
    samples, extras = (
        {k: np.swapaxes(v, 0, 1)[:n_wanted] for k, v in tree.items()}
        for tree in (samples, extras)
    )
    return RefitBatch(
        samples, extras, method, compile_s, sampling_s, lock_step, len(devices)
    )


def pointwise_log_likelihood(program: Program, samples: dict) -> np.ndarray:
    """log p(y_i | theta) of every data row, (chain, draw, row), for draws ``samples``."""
    from .fit import _log_likelihood
    from .sampler import predictive_fns

    latent = {k: samples[k] for k in program.sites.latent}
    return _log_likelihood(predictive_fns(program)["log_likelihood"], latent, program)


def _binomial_obs(program: Program) -> bool:
    """Whether ``obs`` is Binomial(n_total) (per-trial LOO is defined for it)."""
    from numpyro.handlers import seed, trace

    if "n_total" not in program.arrays:
        return False
    tr = trace(seed(program.fn, jax.random.PRNGKey(0))).get_trace(
        program.arrays, program.hyper
    )
    site = tr.get("obs")
    return site is not None and type(site["fn"]).__name__.startswith("Binomial")


def trial_log_probs(
    program: Program, samples: dict
) -> tuple[np.ndarray, np.ndarray] | None:
    """log P(a trial succeeds) and log P(it fails) per cell, each (chain, draw, row).

    A Binomial(1, p) is p at 1 and 1 - p at 0: the model's own likelihood with
    every total set to one gives both, through the compiled log-likelihood (same
    shapes, nothing recompiles). ``None`` when ``obs`` is not Binomial(n_total).
    """
    if not _binomial_obs(program):
        return None
    from .sampler import predictive_fns

    latent = {k: samples[k] for k in program.sites.latent}
    fn = predictive_fns(program)["log_likelihood"]
    out = []
    for outcome in (1, 0):
        arrays = {
            **program.arrays,
            "n_total": np.ones_like(program.arrays["n_total"]),
            "obs": np.full_like(program.arrays["obs"], outcome),
        }
        out.append(np.asarray(fn(latent, arrays, program.hyper), dtype=np.float64))
    return out[0], out[1]


def replicate(program: Program, samples: dict, seed: int) -> np.ndarray:
    """Replicated data ``y_rep`` (draw, row), one per (chain, draw) of ``samples``."""
    from .sampler import predictive_fns

    latent = {k: np.asarray(samples[k]) for k in program.sites.latent}
    flat = {k: v.reshape((-1,) + v.shape[2:]) for k, v in latent.items()}
    key = jax.random.fold_in(jax.random.PRNGKey(int(seed)), _REFIT_STREAM + 1)
    fn = predictive_fns(program)["posterior_predictive"]
    return np.asarray(fn(key, flat, program.arrays, program.hyper))
