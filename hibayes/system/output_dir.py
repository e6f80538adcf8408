"""Every process owns its output folder.

Two commands started in the same second would otherwise share the timestamped
folder Hydra names (``outputs/<date>/<time>``), and one run's record would hold
the other's files. :func:`claim_dir` creates the folder exclusively, with a
``_1``, ``_2``… suffix when the name is taken. A folder the user named
(``hydra.run.dir=…``, ``hydra.sweep.dir=…``) is used only when empty: a previous
job's outputs are never mixed with new ones, unless ``reuse_output_dir=true``
asks for that folder to be emptied first (only a folder hibayes wrote).

:class:`OwnOutputDir` is the Hydra callback (``hydra.callbacks`` in
``hibayes/conf/config.yaml``) that applies this before Hydra writes anything.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hibayes.errors import InputError

__all__ = ["OwnOutputDir", "claim_dir", "claim_explicit_dir", "release_if_unused"]

_MAX_SUFFIX = 10_000
# What marks a folder as one hibayes (through Hydra) wrote: safe to empty on request.
_HIBAYES_MARKS = (".hydra", "multirun.yaml", "config.yaml", "metrics.json")
# Folders this process created: a command refused before writing removes its own.
_CREATED: set[Path] = set()


@contextmanager
def _creating(path: Path, key: str) -> Iterator[None]:
    """A folder that cannot be made (read-only, a file in the way) as one line."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise InputError(
            f"{key}={path}: cannot create the output folder: {reason}"
            + (f" ({exc.filename})" if exc.filename else "")
        ) from exc


def claim_dir(path: Path, key: str = "hydra.run.dir") -> Path:
    """Create ``path`` (or ``path_1``, ``path_2``… if taken) exclusively; return it."""
    with _creating(path, key):
        path.parent.mkdir(parents=True, exist_ok=True)
        for n in range(_MAX_SUFFIX):
            candidate = path if n == 0 else path.with_name(f"{path.name}_{n}")
            try:
                candidate.mkdir()
            except FileExistsError:
                continue
            _CREATED.add(candidate.resolve())
            return candidate
    raise InputError(f"{path}: {_MAX_SUFFIX} folders of that name exist already")


def claim_explicit_dir(path: Path, key: str, reuse: bool) -> Path:
    """The folder the user named under ``key``: created, or refused unless empty.

    :param reuse: empty a folder hibayes wrote before (``reuse_output_dir=true``).
    :raises InputError: the folder holds files and may not be emptied.
    """
    if path.exists() and not path.is_dir():
        raise InputError(f"{key}={path}: is a file, not a folder")
    if path.is_dir() and any(path.iterdir()):
        if not reuse:
            raise InputError(
                f"{key}={path}: the folder is not empty (a previous job's outputs?); "
                "choose a new folder, or add reuse_output_dir=true to empty it first"
            )
        if not any((path / mark).exists() for mark in _HIBAYES_MARKS):
            raise InputError(
                f"{key}={path}: the folder holds files hibayes did not write; "
                "not emptying it, choose another folder"
            )
        for item in path.iterdir():
            if item.is_dir() and not item.is_symlink():
                shutil.rmtree(item)
            else:
                item.unlink()
    with _creating(path, key):
        try:
            path.mkdir(parents=True)
            _CREATED.add(path.resolve())
        except FileExistsError:  # there already (empty, as checked above)
            pass
    return path


def release_if_unused(path: Path) -> None:
    """Remove ``path`` if this process created it and nothing was written to it.

    A sweep refused before its first job (a config error) leaves no empty folder.
    """
    path = Path(path).resolve()
    if path in _CREATED and path.is_dir() and not any(path.iterdir()):
        path.rmdir()
        _CREATED.discard(path)


def _explicit(config: Any, key: str) -> bool:
    """Whether ``key`` was set on the command line (not Hydra's timestamped default)."""
    return any(
        str(o).split("=", 1)[0].lstrip("+~") == key
        for o in config.hydra.overrides.hydra
    )


def _quoted(value: str) -> str:
    """``value`` as a quoted Hydra override value."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _claim(config: Any, section: str) -> None:
    """Claim ``hydra.<section>.dir`` for this process and point the config at it."""
    from omegaconf import open_dict, read_write

    from hibayes.system.command import one_line_errors

    key = f"hydra.{section}.dir"
    wanted = Path(str(config.hydra[section].dir))
    if _explicit(config, key):
        reuse = bool(config.get("reuse_output_dir", False))
        one_line_errors(claim_explicit_dir)(wanted, key, reuse)
        return
    claimed = one_line_errors(claim_dir)(wanted, key)
    if claimed == wanted:
        return
    with read_write(config.hydra), open_dict(config.hydra):
        config.hydra[section].dir = str(claimed)
        # A sweep's jobs recompose their config from these overrides.
        config.hydra.overrides.hydra.append(f"{key}={_quoted(str(claimed))}")


try:
    from hydra.experimental.callback import Callback as _Callback
except ImportError:  # pragma: no cover - Hydra is a dependency
    _Callback = object  # type: ignore[assignment,misc]


class OwnOutputDir(_Callback):  # type: ignore[misc]
    """Hydra callback: each run or sweep gets a folder no other process writes to."""

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        """Claim ``hydra.run.dir`` before Hydra creates it."""
        _claim(config, "run")

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        """Claim ``hydra.sweep.dir`` before the sweep starts."""
        _claim(config, "sweep")
