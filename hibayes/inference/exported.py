"""Traced functions kept across processes (``jax.export``), keyed by what they compute.

JAX's persistent compile cache (:mod:`.runtime`) keys an executable by its HLO, so
a new process must still trace the function to find it. For NUTS vmapped over
chains x refits that trace costs 4-8 s on the 2-core machine, several times the
refits' sampling. Here the lowered function (StableHLO, ~0.1 MB) is written
next to the compile cache the first time, and a later process loads it and
compiles it straight from that cache: no trace.

A stored function is only as right as its key. The key holds everything a trace
reads: the versions of Python, JAX and NumPyro, hibayes's own inference code,
the shapes, dtypes and tree of the arguments, the devices, the caller's settings,
and a digest of the model as JAX sees it (:func:`computation_digest`: the jaxpr and
constants of the model's computation, so an edited helper function or a changed
module-level table changes the key even where the model's own code does not).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

__all__ = ["computation_digest", "load_or_export", "stored_functions"]

_log = logging.getLogger(__name__)
_FORMAT = 1  # bump when what is stored, or how it is keyed, changes
_SUBDIR = "hibayes-exported"
_COUNTS = {"loaded": 0, "exported": 0}


def stored_functions() -> dict[str, int]:
    """How many functions this process loaded from disk and exported (tests, benches)."""
    return dict(_COUNTS)


def computation_digest(fn: Callable, *args: Any) -> str:
    """Digest of what ``fn`` computes on arguments shaped like ``args``.

    The jaxpr's text names every operation and the shapes it runs on; the
    constants it closes over (arrays a model reads from its module) are hashed by
    value, since the text only names them.
    """
    closed = jax.make_jaxpr(fn)(*args)
    h = hashlib.sha256(str(closed.jaxpr).encode())
    for const in closed.consts:
        value = np.asarray(const)
        h.update(f"{value.dtype}{value.shape}".encode())
        h.update(np.ascontiguousarray(value).tobytes())
    return h.hexdigest()


@functools.cache
def _code_digest() -> str:
    """Digest of hibayes's inference code, which builds every stored function."""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _store() -> Path | None:
    """Where functions are kept: beside JAX's compile cache, or nowhere without one."""
    cache_dir = jax.config.jax_compilation_cache_dir
    return Path(cache_dir) / _SUBDIR if cache_dir else None


def _key(identity: dict, leaves: list, in_tree: Any, devices: int) -> str:
    import jaxlib
    import numpyro

    payload = {
        "format": _FORMAT,
        "python": list(sys.version_info[:2]),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "numpyro": numpyro.__version__,
        "hibayes_inference": _code_digest(),
        "platform": jax.default_backend(),
        "device_kind": jax.devices()[0].device_kind,
        "devices": devices,
        "x64": bool(jax.config.jax_enable_x64),
        "tree": str(in_tree),
        "leaves": [[list(np.shape(x)), str(jax.numpy.result_type(x))] for x in leaves],
        "identity": identity,
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _load(path: Path) -> jax.export.Exported | None:
    try:
        # Trusted input: written by this user's own processes, like the compile cache.
        return jax.export.deserialize(bytearray(path.read_bytes()))
    except FileNotFoundError:
        return None
    except Exception as exc:  # a torn or foreign file: trace again and replace it
        _log.warning("ignoring stored function %s (%s); tracing it again", path, exc)
        return None


def _save(path: Path, exported: jax.export.Exported) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole or not at all: concurrent fits may store the same function.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "wb") as out:
            out.write(exported.serialize())
        os.replace(tmp, path)
    except OSError as exc:  # a read-only cache costs the next process a trace, no more
        _log.warning("could not store %s (%s)", path, exc)


def load_or_export(
    fn: Callable, args: tuple, identity: dict, mesh: jax.sharding.Mesh | None = None
) -> Callable:
    """Compile ``fn`` for ``args``, loading its trace from disk when another process made it.

    :param fn: the function, traceable with ``args``; it must return a tree of
        arrays whose dicts have string keys (what :mod:`jax.export` can store).
    :param args: example arguments (their shapes, dtypes and tree are keyed).
    :param identity: JSON-able description of everything else ``fn``'s trace
        depends on: its name, the settings it closes over, a
        :func:`computation_digest` of the model.
    :param mesh: the devices ``fn`` spans (its ``shard_map``'s mesh); ``None``: one.
    :return: ``compiled(*args)``, compiled once for these shapes.
    """
    leaves, in_tree = jax.tree.flatten(args)

    def flat(leaves: list) -> Any:
        # Arguments go in as a flat list: jax.export stores trees of string-keyed
        # dicts only, and an inverse mass matrix is keyed by a tuple of sites.
        return fn(*jax.tree.unflatten(in_tree, leaves))

    # Inputs are replicated over the mesh (they are small: data, starts, keys);
    # fn's shard_map splits them. Without a mesh everything is on one device.
    jit = (
        functools.partial(jax.jit, in_shardings=NamedSharding(mesh, PartitionSpec()))
        if mesh is not None
        else jax.jit
    )
    devices = 1 if mesh is None else mesh.size
    store = _store()
    path = (
        store / f"{_key(identity, leaves, in_tree, devices)}.jaxexport"
        if store
        else None
    )
    exported = _load(path) if path else None
    if exported is None:
        # Exported even when nothing is stored: a function then compiles the same
        # way, and draws the same numbers, whether it was traced or loaded.
        exported = jax.export.export(jit(flat))(leaves)
        _COUNTS["exported"] += 1
        if path:
            _save(path, exported)
    else:
        _COUNTS["loaded"] += 1
    # Compiling the stored StableHLO hits JAX's persistent cache after the first time.
    return _flat_call(jit(exported.call).lower(leaves).compile(), in_tree)


def _flat_call(compiled: Callable, in_tree: Any) -> Callable:
    def call(*args: Any) -> Any:
        leaves, tree = jax.tree.flatten(args)
        if tree != in_tree:
            raise ValueError(f"arguments shaped {tree}, compiled for {in_tree}")
        return compiled(leaves)

    return call
