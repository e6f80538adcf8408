"""JAX process set-up that must happen before JAX initialises its backends.

Parallel chains on a CPU need several XLA host devices, and the device count can
only be chosen before the first computation; the persistent compilation cache is
a process-wide setting too. Both are decided here, once, and nowhere else.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

__all__ = [
    "configure_compilation_cache",
    "configure_host_devices",
    "configure_runtime",
    "jax_platform",
    "use_float_precision",
]

_DEVICE_FLAG = "--xla_force_host_platform_device_count"


def _backends_initialised() -> bool:
    if "jax" not in sys.modules:
        return False
    try:
        from jax._src import xla_bridge

        return bool(getattr(xla_bridge, "_backends", {}))
    except Exception:  # private API moved: assume the worst, change nothing
        return True


def configure_host_devices(count: int | None = None) -> int | None:
    """Ask XLA for ``count`` CPU devices (default: max(cores, 4)) if still possible.

    :param count: devices wanted; ``HIBAYES_HOST_DEVICES`` overrides the default.
    :return: the count set, or ``None`` when JAX was already initialised or the
        user's ``XLA_FLAGS`` already chose one.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if _DEVICE_FLAG in flags or _backends_initialised():
        return None
    if count is None:
        env = os.environ.get("HIBAYES_HOST_DEVICES")
        # Four devices even on two cores: four chains then compile once and run as
        # one pmap instead of falling back to sequential chains.
        count = int(env) if env else max(os.cpu_count() or 1, 4)
    os.environ["XLA_FLAGS"] = f"{flags} {_DEVICE_FLAG}={int(count)}".strip()
    return int(count)


def host_device_flag() -> int | None:
    """The host device count requested through ``XLA_FLAGS``, if any."""
    match = re.search(rf"{_DEVICE_FLAG}=(\d+)", os.environ.get("XLA_FLAGS", ""))
    return int(match.group(1)) if match else None


def configure_compilation_cache(cache_dir: str | Path | None = None) -> Path | None:
    """Turn on JAX's persistent on-disk compilation cache.

    :param cache_dir: directory to use; default ``$HIBAYES_JAX_CACHE`` or
        ``~/.cache/hibayes/jax``. ``"off"`` (or the env var set to ``off``)
        disables the cache.
    :return: the directory in use, or ``None`` when disabled.
    """
    import jax

    chosen = cache_dir if cache_dir is not None else os.environ.get("HIBAYES_JAX_CACHE")
    if chosen is None:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        chosen = Path(base) / "hibayes" / "jax"
    if str(chosen).lower() in {"off", "none", "false", "0", ""}:
        return None
    path = Path(chosen).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    # Cache everything, even the tiny op-by-op executables of the pre-flight model
    # check: loading them is ~5x faster than compiling them again in a new process.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


def use_float_precision(precision: str) -> None:
    """Make JAX compute in ``float32`` or ``float64`` from here on (process-wide)."""
    import jax

    if precision not in ("float32", "float64"):
        raise ValueError(f"precision must be float32 or float64, got {precision!r}")
    jax.config.update("jax_enable_x64", precision == "float64")


def jax_platform() -> str:
    """The default JAX backend's platform name (``cpu``, ``gpu``, ``tpu``)."""
    import jax

    return jax.default_backend()


def configure_runtime(section: Any = None) -> None:
    """Apply a config's ``runtime`` section (host devices, compile cache) before JAX starts."""
    section = section or {}
    configure_host_devices(section.get("host_devices"))
    configure_compilation_cache(section.get("jax_cache_dir"))
