"""Work a fit can do on a thread while JAX compiles and samples.

JAX's compile and XLA's sampling release the GIL, so imports and store I/O done
on a thread meanwhile cost a fresh process almost nothing in wall time.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import TypeVar

__all__ = ["in_background", "preload"]

_T = TypeVar("_T")


def in_background(fn: Callable[[], _T], name: str) -> Future[_T]:
    """Call ``fn`` on a daemon thread; its result or exception comes from the future."""
    future: Future[_T] = Future()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(fn())
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits
            future.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


def preload(modules: Iterable[str]) -> None:
    """Import ``modules`` on a daemon thread; the main thread's import waits if early."""

    def load() -> None:
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception:  # the main thread's own import will report it
                return

    threading.Thread(target=load, name="hibayes-preload", daemon=True).start()
