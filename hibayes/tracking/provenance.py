"""Provenance tags: package versions, platform and the git state of the working tree.

Cheap by design: versions come from package metadata (no heavy imports), JAX is
only asked for its backend when something has already imported it, and git is
given a short timeout. A missing piece is left out, never an error.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata

__all__ = ["provenance_tags"]

_VERSION_TAGS = {
    "hibayes.version": "hibayes",
    "numpyro_version": "numpyro",
    "jax_version": "jax",
    "arviz_version": "arviz",
    "mlflow_version": "mlflow",
}
_GIT_TIMEOUT_S = 5.0


def provenance_tags() -> dict[str, str]:
    """Tags describing the software and machine a run came from.

    Keys: ``hibayes.version``, ``numpyro_version``, ``jax_version``,
    ``arviz_version``, ``mlflow_version`` (each absent when the package is not
    installed), ``python_version``, ``platform`` (``system/machine``),
    ``jax_platform`` (only when JAX is already imported in this process),
    ``git_sha`` and ``git_dirty`` (``"true"``/``"false"``, tracked files only; both
    absent outside a git work tree) for the current directory, and ``xla_flags``
    (``$XLA_FLAGS``, when set).

    :return: ``{tag: value}``.
    """
    tags: dict[str, str] = {}
    for tag, package in _VERSION_TAGS.items():
        try:
            tags[tag] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    tags["python_version"] = platform.python_version()
    tags["platform"] = f"{platform.system()}/{platform.machine()}"
    backend = _jax_backend()
    if backend:
        tags["jax_platform"] = backend
    tags.update(_git_state())
    xla_flags = os.environ.get("XLA_FLAGS")
    if xla_flags:
        tags["xla_flags"] = xla_flags
    return tags


def _jax_backend() -> str | None:
    # Asking initialises JAX's backends if nothing has yet, which fixes the CPU
    # device count: every entry point configures the runtime first
    # (hibayes.inference.runtime.configure_runtime), the sweeper included.
    if "jax" not in sys.modules:
        return None
    try:
        return str(sys.modules["jax"].default_backend())
    except Exception:  # noqa: BLE001 - provenance is best-effort
        return None


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args],
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _git_state() -> dict[str, str]:
    sha = _git("rev-parse", "HEAD")
    if not sha:
        return {}
    state = {"git_sha": sha.strip()}
    status = _git("status", "--porcelain", "--untracked-files=no")
    if status is not None:
        state["git_dirty"] = "true" if status.strip() else "false"
    return state
