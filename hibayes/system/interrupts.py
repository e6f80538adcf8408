"""SIGTERM and Ctrl-C as ``KeyboardInterrupt``, raised where it cannot do harm.

A signal handler that raises runs between any two bytecodes of the main thread.
Two places make that unsafe for a fit: inside a tracking call (a SQLite commit
cut in half leaves the store locked for the rest of the process, so the run can
no longer be ended KILLED), and inside a garbage-collector callback (JAX's, for
one), where Python prints "Exception ignored" and drops the interrupt. So the
handler here raises at once except inside :func:`shielded` sections, where it only
remembers the signal; a shielded section that ends, and :func:`check` at the
fit's stage boundaries, raise a remembered signal nobody has acknowledged yet.
Whoever handles the interrupt (ends runs KILLED) calls :func:`acknowledge`.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["acknowledge", "check", "install", "pending", "shielded"]

_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_state: dict[str, Any] = {"signal": None, "depth": 0}


def _handler(signum: int, frame: Any) -> None:
    _state["signal"] = signum
    if _state["depth"] == 0:
        raise KeyboardInterrupt(f"signal {signum}")


def install() -> Callable[[], None]:
    """Handle SIGTERM and SIGINT as above; return a function that restores the old handlers.

    Outside the main thread (where Python allows no handlers) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.signal(sig, _handler) for sig in _SIGNALS}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


def pending() -> int | None:
    """The signal received and not yet acknowledged, if any."""
    return _state["signal"]


def acknowledge() -> None:
    """The interrupt is being handled: do not raise it again."""
    _state["signal"] = None


def check() -> None:
    """Raise ``KeyboardInterrupt`` for a signal received and not yet acknowledged."""
    signum = _state["signal"]
    if signum is not None and _state["depth"] == 0:
        _state["signal"] = None
        raise KeyboardInterrupt(f"signal {signum}")


@contextmanager
def shielded() -> Iterator[None]:
    """A section a signal must not cut in half; the interrupt comes at its end.

    Only the main thread is ever interrupted: on other threads this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _state["depth"] += 1
    try:
        yield
    finally:
        _state["depth"] -= 1
    check()
