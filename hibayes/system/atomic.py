"""Write a file all at once or not at all: a temporary name, then a rename.

Every file a fit, sweep, calibration or comparison writes goes through
:func:`atomic_path` (or :func:`write_text`/:func:`write_bytes`): the content is
written to a hidden temporary name in the same folder and renamed into place
only once complete, so a reader, an upload or ``hibayes.sync`` never sees half
a file. On any error the temporary file is removed (which also gives back the
space a full disk needs to record the failure), and an ``OSError`` becomes
:class:`~hibayes.errors.CannotWrite` naming the file.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

from hibayes.errors import CannotWrite

__all__ = [
    "TEMPORARY_MARK",
    "atomic_path",
    "cannot_write",
    "is_temporary",
    "write_errno",
    "write_bytes",
    "write_text",
]

#: In the name of every temporary file: never an output, never uploaded.
TEMPORARY_MARK = ".hibayes-tmp-"
# HDF5 (idata.nc) reports a failed write as a RuntimeError quoting the errno.
_QUOTED_ERRNO = re.compile(r"\berrno = (\d+)")


def is_temporary(path: str | Path) -> bool:
    """Whether ``path`` is a temporary file of :func:`atomic_path` (a write cut short)."""
    return TEMPORARY_MARK in Path(path).name


def write_errno(exc: BaseException) -> int | None:
    """The errno of a failed write in ``exc`` or its causes (HDF5 quotes it in text)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and isinstance(exc.errno, int):
            return exc.errno
        quoted = _QUOTED_ERRNO.search(str(exc))
        if quoted and int(quoted[1]) != 0:
            return int(quoted[1])
        exc = exc.__cause__ or exc.__context__
    return None


def cannot_write(path: str | Path, exc: BaseException) -> CannotWrite:
    """``exc`` as a :class:`CannotWrite` for ``path``, its reason in plain words."""
    if isinstance(exc, CannotWrite):
        return exc
    code = write_errno(exc)
    reason = os.strerror(code) if code else " ".join(str(exc).split())
    return CannotWrite(path, reason or type(exc).__name__)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place if the block ends well.

    The temporary name keeps ``path``'s suffix, so writers that choose a format by
    suffix (matplotlib, pandas) still do. Parent folders are created.

    :raises CannotWrite: writing, or renaming, failed with an ``OSError``.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}{TEMPORARY_MARK}{os.getpid()}{path.suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) or (
            isinstance(exc, Exception) and write_errno(exc) is not None
        ):
            raise cannot_write(path, exc) from exc
        raise


def write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; return ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; return ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)
