"""Atomic writes: a file appears whole or not at all, and a failed write names it."""

from __future__ import annotations

import pickle

import pytest

from hibayes.errors import CannotWrite
from hibayes.system.atomic import (
    atomic_path,
    cannot_write,
    is_temporary,
    write_errno,
    write_text,
)


def test_renamed_into_place_only_when_complete(tmp_path):
    path = tmp_path / "sub" / "summary.csv"
    with atomic_path(path) as tmp:
        assert tmp.parent == path.parent and tmp.suffix == ".csv"
        assert is_temporary(tmp) and not is_temporary(path)
        tmp.write_text("a,b\n")
        assert not path.exists()  # nobody sees it before it is whole
    assert path.read_text() == "a,b\n"
    assert list(path.parent.iterdir()) == [path]


def test_a_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "metrics.json"
    write_text(path, "old\n")
    with pytest.raises(CannotWrite) as caught, atomic_path(path) as tmp:
        tmp.write_text("half")
        raise OSError(28, "No space left on device")
    assert str(caught.value) == f"cannot write {path}: No space left on device"
    assert path.read_text() == "old\n"
    assert list(tmp_path.iterdir()) == [path]


def test_other_errors_pass_through_and_still_clean_up(tmp_path):
    path = tmp_path / "plot.png"
    with pytest.raises(ValueError, match="bad figure"), atomic_path(path) as tmp:
        tmp.write_bytes(b"x")
        raise ValueError("bad figure")
    assert list(tmp_path.iterdir()) == []


def test_hdf5_errno_quoted_in_text_is_a_failed_write():
    """h5py reports a full disk as a RuntimeError quoting the errno."""
    exc = RuntimeError(
        "Can't decrement id ref count (file write failed: time = ..., "
        "errno = 28, error message = 'No space left on device', buf = 0x1)"
    )
    assert write_errno(exc) == 28
    assert cannot_write("/x/idata.nc", exc).reason == "No space left on device"
    assert write_errno(RuntimeError("errno = 0, nothing")) is None
    wrapped = ValueError("outer")
    wrapped.__cause__ = OSError(13, "Permission denied")
    assert write_errno(wrapped) == 13


def test_cannot_write_pickles_for_worker_processes():
    exc = pickle.loads(pickle.dumps(CannotWrite("/x/trace.png", "No space left")))
    assert str(exc) == "cannot write /x/trace.png: No space left"
