"""SIGTERM and Ctrl-C as ``KeyboardInterrupt``, raised where it cannot do harm.

A signal handler that raises runs between any two bytecodes of the main thread.
Two places make that unsafe for a fit. Inside a tracking call, a SQLite commit
cut in half leaves the store locked for the rest of the process, so the run can
no longer be ended KILLED: the handler here raises at once except inside
:func:`shielded` sections, where it only remembers the signal; a shielded section
that ends, and :func:`check` at the fit's stage boundaries, raise a remembered
signal nobody has acknowledged yet. Inside a garbage-collector callback (JAX's,
for one) or a finaliser, Python prints "Exception ignored" and drops the
interrupt, and a fit blocked after that (a model that sleeps, a long sampler
call) would never stop: so the unraisable-exception hook recognises a dropped
interrupt and delivers the signal again a moment later, outside that callback.
Whoever handles the interrupt (ends runs KILLED) calls :func:`acknowledge`.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["acknowledge", "check", "install", "pending", "shielded"]

_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_state: dict[str, Any] = {"signal": None, "depth": 0}
# Long enough for the callback that dropped the interrupt to have returned.
REDELIVER_AFTER_S = 0.1


def _handler(signum: int, frame: Any) -> None:
    _state["signal"] = signum
    if _state["depth"] == 0:
        raise KeyboardInterrupt(f"signal {signum}")


def _redeliver(signum: int) -> None:
    """Send the main thread ``signum`` again, unless it has been handled meanwhile."""
    if _state["signal"] == signum:
        signal.pthread_kill(threading.main_thread().ident, signum)


def _unraisable_hook(previous: Callable[[Any], None]) -> Callable[[Any], None]:
    """``sys.unraisablehook`` that turns a dropped interrupt of ours into a late one."""

    def hook(unraisable: Any) -> None:
        exc, signum = unraisable.exc_value, _state["signal"]
        if (
            isinstance(exc, KeyboardInterrupt)
            and signum is not None
            and exc.args == (f"signal {signum}",)
        ):
            # Not from this thread: the hook still runs inside the callback.
            timer = threading.Timer(REDELIVER_AFTER_S, _redeliver, (signum,))
            timer.daemon = True
            timer.start()
            return
        previous(unraisable)

    return hook


def install() -> Callable[[], None]:
    """Handle SIGTERM and SIGINT as above; return a function that restores the old handlers.

    Outside the main thread (where Python allows no handlers) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.signal(sig, _handler) for sig in _SIGNALS}
    previous_hook = sys.unraisablehook
    sys.unraisablehook = _unraisable_hook(previous_hook)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)
        sys.unraisablehook = previous_hook

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
