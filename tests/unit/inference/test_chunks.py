"""Sampling in chunks (hibayes.inference.chunks) draws what one call would.

Where the chunks end must change no draw at all; against NumPyro's own one-call
MCMC (what refits and calibration use) the draws are the same up to float rounding
over a short run and the same posterior over a long one.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hibayes.inference import FitSettings, build_program, fit_model
from hibayes.inference.chunks import chain_fns, compile_chunked
from hibayes.inference.sampler import _one_chain
from hibayes.model import get_model

MODEL = "two_level_group_binomial"


@pytest.fixture(scope="module")
def program(group_data):
    """The eight-group binomial model on the shared test data."""
    features, _, _ = group_data
    return build_program(get_model(MODEL), features, {})


# Each case compiles two samplers: the CPU's usual method runs everywhere, the
# others (vectorized: what accelerators use) in the full suite.
@pytest.mark.parametrize(
    "method",
    [
        "parallel",
        pytest.param("vectorized", marks=pytest.mark.slow),
        pytest.param("sequential", marks=pytest.mark.slow),
    ],
)
def test_chunk_boundaries_change_no_draw(program, method):
    # 60 iterations in calls of 9: the warmup ends inside a call (at 40), the mass
    # matrix adapts at the end of the window 6..35, and the last call runs 6.
    settings = FitSettings(samples=20, warmup=40, chains=2, chain_method=method)
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    devices = jax.local_devices()[:2]
    args = (keys, program.sampled_arrays, program.hyper)
    whole = compile_chunked(program, settings, method, keys, devices, chunks=1)
    chunked = compile_chunked(program, settings, method, keys, devices, chunks=7)
    assert (whole.chunk, chunked.chunk) == (60, 9)
    calls: list[int] = []
    got = chunked.run(*args, on_chunk=calls.append)
    want = whole.run(*args)
    assert calls == [9] * 6 + [6]
    for part_got, part_want in zip(got, want):
        assert part_got.keys() == part_want.keys()
        for name in part_want:
            assert part_got[name].shape[:2] == (2, 20), name
            np.testing.assert_array_equal(part_got[name], part_want[name], err_msg=name)


def _chunked_chain(program, settings, key, init_params, chunk=4):
    """One chain through ``chain_fns``: its post-warmup draws and fields."""
    init, advance = chain_fns(program, settings, chunk)
    arrays, hyper = program.sampled_arrays, program.hyper
    state = jax.jit(init)(key, arrays, hyper, init_params)
    step = jax.jit(advance)
    total, outs = settings.warmup + settings.samples, []
    for start in range(0, total, chunk):
        state, out = step(state, arrays, hyper, np.int32(min(chunk, total - start)))
        outs.append(jax.device_get(out))
    return jax.tree.map(lambda *xs: np.concatenate(xs)[settings.warmup : total], *outs)


@pytest.mark.parametrize(
    "start", ["init strategy", pytest.param("init_params", marks=pytest.mark.slow)]
)
def test_same_draws_as_numpyro_mcmc_up_to_rounding(program, start):
    key = jax.random.PRNGKey(3)
    init_params = None
    if start == "init_params":  # how refits start: unconstrained values per site
        init_params = {
            name: jnp.full(program.sites.shapes[name], 0.1, jnp.float32)
            for name in program.sites.latent
        }
    arrays, hyper = program.sampled_arrays, program.hyper
    # No warmup: no adaptation arithmetic, and the draws are bit-identical.
    settings = FitSettings(samples=12, warmup=0, chains=1)
    want = jax.jit(_one_chain(program, settings))(key, arrays, hyper, init_params)
    got = _chunked_chain(program, settings, key, init_params)
    for part_got, part_want in zip(got, jax.device_get(want)):
        for name in part_want:
            np.testing.assert_array_equal(part_got[name], part_want[name], err_msg=name)
    # With warmup, XLA compiles the adaptation arithmetic of the two loops a little
    # differently: the same draws to ~1e-5 over a short run (NUTS amplifies the
    # rounding, so after ~100 iterations they are other draws of the same posterior).
    settings = FitSettings(samples=10, warmup=30, chains=1)
    want = jax.jit(_one_chain(program, settings))(key, arrays, hyper, init_params)
    got = _chunked_chain(program, settings, key, init_params)
    for part_got, part_want in zip(got, jax.device_get(want)):
        for name in part_want:
            np.testing.assert_allclose(
                part_got[name], part_want[name], rtol=1e-3, atol=1e-4, err_msg=name
            )


def test_posterior_matches_numpyro_mcmc_within_mcse(group_data, program):
    features, coords, _ = group_data
    settings = FitSettings(
        samples=500, warmup=500, chains=2, prior_samples=0, chain_method="parallel"
    )
    fit = fit_model(get_model(MODEL), features, {}, settings, coords)
    keys = jax.random.split(jax.random.PRNGKey(11), 2)  # another stream on purpose
    one = jax.pmap(_one_chain(program, settings), in_axes=(0, None, None))
    samples, _ = jax.device_get(one(keys, program.sampled_arrays, program.hyper))
    ours = fit.idata.posterior
    theirs = az.convert_to_dataset({k: np.asarray(v) for k, v in samples.items()})
    for site in ("group_effects", "mu_overall", "sigma_group"):
        a = ours[site].values.reshape(2, 500, -1)
        b = theirs[site].values.reshape(2, 500, -1)
        for j in range(a.shape[-1]):
            se = np.hypot(
                float(az.mcse(a[..., j], method="mean")),
                float(az.mcse(b[..., j], method="mean")),
            )
            diff = abs(a[..., j].mean() - b[..., j].mean())
            assert diff < 4 * se, (site, j, diff, se)


_CACHE_RUN = textwrap.dedent("""
    import json, sys
    import jax
    import numpy as np
    from hibayes.inference.runtime import configure_compilation_cache, configure_host_devices
    configure_host_devices()
    from hibayes.inference import FitSettings, build_program
    from hibayes.inference.sampler import get_sampler
    from hibayes.model import get_model
    configure_compilation_cache(sys.argv[1])
    events = []
    jax.monitoring.register_event_listener(lambda name, **kw: events.append(name))
    features = {"obs": np.array([3, 5, 7]), "n_total": np.array([10, 10, 10]),
                "group_index": np.arange(3), "num_group": 3}
    program = build_program(get_model("two_level_group_binomial"), features, {})
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    settings = FitSettings(samples=20, warmup=20, chains=2)
    events.clear()
    sampler = get_sampler(program, settings, keys)
    print(json.dumps({
        "hits": events.count("/jax/compilation_cache/cache_hits"),
        "misses": events.count("/jax/compilation_cache/cache_misses"),
        "method": sampler.chain_method,
    }))
""")


@pytest.mark.slow
def test_a_fresh_process_loads_the_sampler_from_the_persistent_cache(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(_CACHE_RUN)

    def run() -> dict:
        done = subprocess.run(
            [sys.executable, str(script), str(tmp_path / "cache")],
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
        return json.loads(done.stdout.strip().splitlines()[-1])

    first, second = run(), run()
    assert first["method"] == "parallel"
    assert first["misses"] >= 2  # init and advance (and a few small helpers)
    assert second["misses"] == 0 and second["hits"] >= 2
