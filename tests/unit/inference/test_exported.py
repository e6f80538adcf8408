"""Traced functions kept across processes (:mod:`hibayes.inference.exported`).

A stored trace must give the draws a fresh trace gives, be found by a new
process without tracing, never be found for a model that computes something else
(the model's own code unchanged, a helper or a module-level table edited), and a
broken file must cost a trace, not a fit.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from hibayes.inference import build_program
from hibayes.inference import exported as exported_module
from hibayes.inference.exported import (
    computation_digest,
    load_or_export,
    stored_functions,
)
from hibayes.inference.refit import _model_digest
from hibayes.model import Model, model

_TABLE = np.zeros(3, np.float32)  # read by the model through a helper


def _shift(x: jax.Array) -> jax.Array:
    return x + jnp.asarray(_TABLE)[0]


@model
def shifted_binomial(prior_mu_scale: float = 1.0) -> Model:
    """A model whose computation partly lives outside its own code."""

    def program(features: dict) -> None:
        mu = numpyro.sample("mu", dist.Normal(0.0, prior_mu_scale))
        numpyro.sample(
            "obs",
            dist.Binomial(features["n_total"], logits=_shift(mu)),
            obs=features["obs"],
        )

    return program


FEATURES = {"obs": np.array([3, 5, 7]), "n_total": np.array([10, 10, 10])}


def _digest() -> tuple[str, str]:
    program = build_program(shifted_binomial, FEATURES, {})
    return program.structure_key, _model_digest(program, jnp.ones((1, 3)))


def test_the_key_sees_helpers_and_tables_the_models_code_does_not(monkeypatch):
    structure, digest = _digest()
    assert _digest() == (structure, digest)  # the same model: the same key
    monkeypatch.setattr(sys.modules[__name__], "_TABLE", np.ones(3, np.float32))
    structure_table, digest_table = _digest()
    monkeypatch.setattr(sys.modules[__name__], "_shift", lambda x: x * 2.0)
    structure_helper, digest_helper = _digest()
    # The structure key (the model's bytecode, shapes, settings) cannot tell...
    assert structure_table == structure_helper == structure
    # ...what the model computes can.
    assert len({digest, digest_table, digest_helper}) == 3


def test_computation_digest_hashes_constants_by_value():
    def reads(table: np.ndarray):
        return lambda x: x + jnp.asarray(table)

    x = jnp.zeros(3)
    zeros, ones = np.zeros(3, np.float32), np.ones(3, np.float32)
    assert computation_digest(reads(zeros), x) == computation_digest(reads(zeros), x)
    assert computation_digest(reads(zeros), x) != computation_digest(reads(ones), x)


def _step(scale: dict, x: jax.Array) -> dict:
    # A dict keyed by a tuple, like NumPyro's inverse mass matrix: not storable
    # as a tree by jax.export, so the arguments travel flat.
    (block,) = scale.values()
    return {"y": x * block, "total": jnp.sum(x * block)}


def test_a_stored_function_is_loaded_and_a_broken_one_traced_again(
    tmp_path, monkeypatch, caplog
):
    monkeypatch.setattr(exported_module, "_store", lambda: tmp_path)
    args = ({("a", "b"): jnp.arange(3.0)}, jnp.full(3, 2.0))
    want = _step(*args)
    identity = {"function": "test-step"}

    before = stored_functions()
    first = load_or_export(_step, args, identity)(*args)
    (path,) = tmp_path.glob("*.jaxexport")
    second = load_or_export(_step, args, identity)(*args)
    after = stored_functions()
    assert after["exported"] - before["exported"] == 1
    assert after["loaded"] - before["loaded"] == 1
    for got in (first, second):
        for name in want:
            np.testing.assert_array_equal(got[name], want[name])
    # Another identity is another function: its own file.
    load_or_export(_step, args, {"function": "test-step", "settings": 2})
    assert len(list(tmp_path.glob("*.jaxexport"))) == 2

    path.write_bytes(b"torn")
    with caplog.at_level(logging.WARNING, logger=exported_module.__name__):
        third = load_or_export(_step, args, identity)(*args)
    assert "tracing it again" in caplog.text and str(path) in caplog.text
    np.testing.assert_array_equal(third["y"], want["y"])
    assert path.read_bytes() != b"torn"  # replaced by a good trace
    assert load_or_export(_step, args, identity)(*args)["total"] == want["total"]


_REFIT_RUN = textwrap.dedent("""
    import hashlib, json, sys
    import jax
    import numpy as np
    from hibayes.inference.runtime import configure_compilation_cache, configure_host_devices
    configure_host_devices()
    from hibayes.inference import FitSettings, build_program
    from hibayes.inference.exported import stored_functions
    from hibayes.inference.refit import refit_weighted
    from hibayes.model import get_model
    configure_compilation_cache(sys.argv[1])
    events = []
    jax.monitoring.register_event_listener(lambda name, **kw: events.append(name))
    features = {"obs": np.array([3, 5, 7, 2]), "n_total": np.array([10, 10, 10, 10]),
                "group_index": np.arange(4), "num_group": 4}
    program = build_program(get_model("two_level_group_binomial"), features, {})
    settings = FitSettings(samples=30, warmup=30, chains=2, chain_method=sys.argv[2])
    weights = np.ones((3, 4))
    weights[[0, 1, 2], [0, 1, 2]] = 0.0
    batch = refit_weighted(program, settings, weights)
    draws = hashlib.sha256(b"".join(
        np.ascontiguousarray(batch.samples[k]).tobytes() for k in sorted(batch.samples)
    )).hexdigest()
    print(json.dumps({**stored_functions(), "draws": draws, "method": batch.chain_method,
                      "misses": events.count("/jax/compilation_cache/cache_misses")}))
""")


def test_a_new_process_loads_the_refit_batch_instead_of_tracing_it(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(_REFIT_RUN)

    def run(method: str) -> dict:
        done = subprocess.run(
            [sys.executable, str(script), str(tmp_path / "cache"), method],
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
        return json.loads(done.stdout.strip().splitlines()[-1])

    for method in ("parallel", "sequential"):
        first, second = run(method), run(method)
        assert first["method"] == second["method"] == method
        assert (first["exported"], first["loaded"]) == (1, 0)
        assert (second["exported"], second["loaded"]) == (0, 1)
        assert second["misses"] == 0  # compiled from JAX's cache too
        assert second["draws"] == first["draws"]  # bit for bit
