"""Process set-up: host devices for parallel chains, the persistent compile cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap


def run_python(code: str, env: dict[str, str]) -> dict:
    """Run ``code`` in a fresh interpreter and parse the JSON it prints last."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("XLA_FLAGS", "HIBAYES_HOST_DEVICES")
    }
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_host_devices_are_set_by_the_entry_point_not_at_import():
    out = run_python(
        """
        import json, os
        import hibayes.inference, hibayes.fit  # importing changes no process setting
        untouched = "XLA_FLAGS" not in os.environ
        from hibayes.inference.runtime import configure_host_devices
        configure_host_devices()  # what the entry points do, before JAX starts
        import jax
        print(json.dumps({"untouched": untouched, "devices": jax.local_device_count()}))
    """,
        {"HIBAYES_HOST_DEVICES": "3"},
    )
    assert out == {"untouched": True, "devices": 3}


def test_explicit_xla_flags_are_left_alone():
    out = run_python(
        """
        import json
        from hibayes.inference.runtime import configure_host_devices
        configure_host_devices()
        import jax
        print(json.dumps({"devices": jax.local_device_count()}))
    """,
        {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
    )
    assert out["devices"] == 2


def test_compile_cache_is_written_and_reused_across_processes(tmp_path):
    code = f"""
        import json, numpy as np
        from hibayes.inference.runtime import configure_compilation_cache
        from hibayes.inference import FitSettings, fit_model
        from hibayes.model import get_model
        configure_compilation_cache({str(tmp_path / "cache")!r})
        f = {{"obs": np.array([3, 5, 7]), "n_total": np.array([10, 10, 10]),
             "group_index": np.arange(3), "num_group": 3}}
        r = fit_model(get_model("simplified_group_binomial_exponential"), f, None,
                      FitSettings(samples=50, warmup=50, chains=2, prior_samples=0))
        print(json.dumps({{"draws": r.idata.posterior["z_group"].values.ravel()[:5].tolist()}}))
    """
    first = run_python(code, {"HIBAYES_HOST_DEVICES": "2"})
    entries = list((tmp_path / "cache").iterdir())
    assert entries, "no compiled executables were cached"
    second = run_python(code, {"HIBAYES_HOST_DEVICES": "2"})
    # A cached executable gives bit-identical draws, and nothing new was needed.
    assert second["draws"] == first["draws"]
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(
        p.name for p in entries
    )


def test_compile_cache_can_be_switched_off(tmp_path):
    from hibayes.inference.runtime import configure_compilation_cache

    assert configure_compilation_cache("off") is None
