"""Refits that reuse the fit's adaptation (issue 14, ``cv.adapt: reuse``).

Checked against NumPyro's own NUTS given the same step size and mass matrix with
adaptation off (an independent path: one MCMC call, no weights, no shared
executable), and the adaptation must stay a traced input: a second fit's values
run through the same compiled refit batch.
"""

from __future__ import annotations

import os
from dataclasses import replace

import jax
import numpy as np
import pytest
from numpyro.infer import MCMC, NUTS

from hibayes.inference import FitSettings, build_program, fit_model
from hibayes.inference import refit as refit_module
from hibayes.inference.collapse import ROW_WEIGHTS
from hibayes.inference.kernel import EXTRA_FIELDS
from hibayes.inference.refit import (
    _PADDING_WEIGHT,
    _REFIT_STREAM,
    _unconstrained_start,
    refit_compiles,
    refit_weighted,
)
from hibayes.model import get_model

MODEL = "two_level_group_binomial"
SETTINGS = FitSettings(samples=100, warmup=200, chains=2, prior_samples=0)
# No warmup: the refit samples with exactly the adaptation it was given.
FIXED = replace(SETTINGS, warmup=0, samples=15)


def _fit(group_data, seed: int):
    features, _, _ = group_data
    return fit_model(get_model(MODEL), features, {}, replace(SETTINGS, seed=seed))


def _start(result) -> dict:
    post = result.idata.posterior
    return {k: np.asarray(post[k].values)[:, -1] for k in result.program.sites.latent}


def test_fit_keeps_the_step_size_it_sampled_with(group_data):
    result = _fit(group_data, 0)
    adaptation = result.adaptation
    sampled = np.asarray(result.idata.sample_stats["step_size"].values)  # (chain, draw)
    # After warmup the step size is fixed: every draw's equals the kept one.
    np.testing.assert_array_equal(
        sampled, np.broadcast_to(adaptation["step_size"][:, None], sampled.shape)
    )
    (block,) = adaptation["inverse_mass_matrix"].values()  # diagonal: one block
    assert block.shape == (
        2,
        sum(result.idata.posterior[k][0, 0].size for k in result.program.sites.latent),
    )
    assert np.all(block > 0) and not np.allclose(block, 1.0)  # adapted, not the unit


def _numpyro_reference(result, chain: int) -> dict:
    """Chain ``chain`` of the refit as plain NumPyro: the given tuning, adaptation off."""
    a = result.adaptation
    kernel = NUTS(
        result.program.fn,
        step_size=float(a["step_size"][chain]),
        inverse_mass_matrix={k: v[chain] for k, v in a["inverse_mass_matrix"].items()},
        adapt_step_size=False,
        adapt_mass_matrix=False,
        target_accept_prob=FIXED.target_accept,
        max_tree_depth=FIXED.max_tree_depth,
    )
    mcmc = MCMC(kernel, num_warmup=0, num_samples=FIXED.samples, progress_bar=False)
    # refit_weighted's key of (chain, refit 0) for a batch of one refit.
    base = jax.random.fold_in(jax.random.PRNGKey(FIXED.seed), _REFIT_STREAM)
    key = jax.random.split(base, FIXED.chains).reshape(FIXED.chains, 1, -1)[chain, 0]
    init = _unconstrained_start(result.program, _start(result), FIXED.chains)
    n_rows = np.size(result.program.arrays["obs"])
    arrays = {**result.program.sampled_arrays, ROW_WEIGHTS: np.ones(n_rows, np.float32)}
    mcmc.run(
        key,
        arrays,
        result.program.hyper,
        init_params={k: v[chain] for k, v in init.items()},
        extra_fields=EXTRA_FIELDS,
    )
    return {**mcmc.get_samples(), **mcmc.get_extra_fields()}


def test_refit_samples_with_the_fits_step_size_and_mass_matrix(group_data):
    result = _fit(group_data, 0)
    n_rows = np.size(result.program.arrays["obs"])
    batch = refit_weighted(
        result.program,
        FIXED,
        np.ones((1, n_rows)),
        start=_start(result),
        pad=False,
        adaptation=result.adaptation,
    )
    step = batch.extras["adapt_state.step_size"][0]  # (chain, draw)
    np.testing.assert_array_equal(
        step, np.broadcast_to(result.adaptation["step_size"][:, None], step.shape)
    )
    for chain in range(FIXED.chains):
        want = _numpyro_reference(result, chain)
        # Same tuning, key and start: the same trajectories up to float rounding
        # (a unit mass matrix or another step size gives other draws at once).
        np.testing.assert_array_equal(
            batch.extras["num_steps"][0, chain], want["num_steps"]
        )
        np.testing.assert_allclose(
            batch.samples["group_effects"][0, chain],
            want["group_effects"],
            rtol=1e-3,
            atol=1e-4,
        )


def test_adaptation_is_traced_one_compile_for_every_fit(group_data):
    first, second = _fit(group_data, 0), _fit(group_data, 1)
    assert not np.allclose(
        first.adaptation["step_size"], second.adaptation["step_size"]
    )
    n_rows = np.size(first.program.arrays["obs"])
    weights = np.ones((2, n_rows))
    weights[0, 0] = weights[1, 3] = 0.0
    before = refit_compiles()
    steps = []
    for result in (first, second):
        batch = refit_weighted(
            result.program,
            FIXED,
            weights,
            start=_start(result),
            adaptation=result.adaptation,
        )
        steps.append(batch.extras["adapt_state.step_size"][:, :, 0])  # (refit, chain)
        assert batch.compile_s == 0.0 or result is first
    assert refit_compiles() - before <= 1  # 0 if another test compiled this batch
    for result, step in zip((first, second), steps):
        np.testing.assert_array_equal(
            step, np.broadcast_to(result.adaptation["step_size"], step.shape)
        )


@pytest.mark.parametrize(
    "method, lock_step",
    [
        ("sequential", False),
        ("parallel", True),  # a small model: lock-step on every device
        ("parallel", False),  # as a large model: in turn on every device
        ("vectorized", True),
    ],
)
def test_padding_refits_leave_the_others_alone(
    group_data, method, lock_step, monkeypatch
):
    """Refits in turn skip a padding refit; in lock-step it samples the full data."""
    if method == "parallel":  # this small model's lanes split over both devices
        monkeypatch.setattr(refit_module, "_ONE_DEVICE_MAX_SIZE", 0)
        if not lock_step:
            monkeypatch.setattr(refit_module, "_LOCK_STEP_MAX_SIZE", 0)
    result = _fit(group_data, 0)
    settings = replace(FIXED, chain_method=method)
    n_rows = np.size(result.program.arrays["obs"])
    weights = np.ones((3, n_rows))
    weights[[0, 1], [0, 1]] = 0.0  # the third refit keeps every row
    padded = weights.copy()
    padded[2] = _PADDING_WEIGHT  # what refit_weighted pads a batch with
    full, part = (
        refit_weighted(
            result.program,
            settings,
            w,
            start=_start(result),
            pad=False,
            adaptation=result.adaptation,
        )
        for w in (weights, padded)
    )
    assert (full.chain_method, full.lock_step) == (method, lock_step)
    assert full.devices == (min(2, os.cpu_count()) if method == "parallel" else 1)
    # Same batch size, so the same keys: the real refits are unchanged.
    for site, draws in full.samples.items():
        np.testing.assert_array_equal(part.samples[site][:2], draws[:2])
    assert np.all(full.extras["num_steps"][2] > 0)  # at least one step a draw
    if lock_step:  # sampled with unit weights, not weights of 1e30
        for site, draws in full.samples.items():
            np.testing.assert_array_equal(part.samples[site][2], draws[2])
    else:  # one refit after another: never sampled
        assert np.all(part.extras["num_steps"][2] == 0)
    (five,) = {
        v.shape[0]
        for v in refit_weighted(
            result.program, settings, weights[[0, 1, 2, 0, 1]], start=_start(result)
        ).samples.values()
    }
    assert five == 5  # padded to 6 in the call, the padding dropped


@pytest.mark.slow
def test_short_warmup_retunes_then_holds_the_step_size(group_data):
    result = _fit(group_data, 0)
    n_rows = np.size(result.program.arrays["obs"])
    weights = np.ones((1, n_rows))
    weights[0, 0] = 0.0
    batch = refit_weighted(
        result.program,
        replace(FIXED, warmup=50),
        weights,
        start=_start(result),
        pad=False,
        adaptation=result.adaptation,
    )
    step = batch.extras["adapt_state.step_size"][0]
    assert np.all(step == step[:, :1])  # fixed after warmup
    assert not np.allclose(step[:, 0], result.adaptation["step_size"])  # re-tuned


@pytest.mark.parametrize("groups, lock_step", [(6, True), (60, True), (200, False)])
def test_cpu_refits_run_in_lock_step_only_for_small_models(groups, lock_step):
    """Lock-step on CPU pays where a gradient is cheap (measured, _LOCK_STEP_MAX_SIZE)."""
    features = {
        "obs": np.arange(groups) % 7,
        "n_total": np.full(groups, 10),
        "group_index": np.arange(groups),
        "num_group": groups,
    }
    program = build_program(get_model(MODEL), features, {})
    size = refit_module._gradient_size(program)
    # latent: overall_mean, sigma_overall, z_overall, sigma_group, z_group[groups];
    # plus one row per group
    assert size == (groups + 4) + groups
    assert refit_module._runs_in_lock_step(size, "parallel") is lock_step
    # the smallest on one device, the rest over one per core (2 here) and chain
    devices = refit_module._lane_devices(4, "parallel", size)
    assert len(devices) == (1 if groups == 6 else min(2, os.cpu_count()))
    assert refit_module._runs_in_lock_step(size, "vectorized")  # accelerators
    assert not refit_module._runs_in_lock_step(size, "sequential")
