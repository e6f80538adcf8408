"""SIGTERM/SIGINT as KeyboardInterrupt: never lost, never inside a shielded section."""

from __future__ import annotations

import gc
import os
import signal
import time

import pytest

from hibayes.system import interrupts


@pytest.fixture
def installed():
    """The handlers of a command, restored (and nothing left pending) afterwards."""
    restore = interrupts.install()
    yield
    restore()
    interrupts.acknowledge()


def _signal_inside_a_gc_callback() -> list[str]:
    """Collect once with a callback that receives SIGTERM; return what it saw."""
    seen: list[str] = []

    def callback(phase: str, info: dict) -> None:
        if phase != "start" or seen:
            return
        seen.append("signalled")
        os.kill(os.getpid(), signal.SIGTERM)
        # The handler runs at this callback's next bytecode, so its interrupt is
        # raised here and Python drops it ("Exception ignored in ...").
        for _ in range(1000):
            pass
        seen.append("callback went on")  # pragma: no cover - the interrupt ends it

    gc.callbacks.append(callback)
    try:
        gc.collect()
    finally:
        gc.callbacks.remove(callback)
    return seen


def test_an_interrupt_dropped_by_a_gc_callback_is_delivered_again(installed):
    # Seen in CI: a sweep sent SIGTERM while JAX's gc callback ran, then slept in
    # the model for ten minutes with the interrupt lost.
    with pytest.raises(KeyboardInterrupt, match="signal 15"):
        assert _signal_inside_a_gc_callback() == ["signalled"]
        time.sleep(30)  # only a second delivery ends this: no raise, no pass
    assert interrupts.pending() == signal.SIGTERM  # not yet handled by anyone


def test_other_unraisable_errors_still_reach_the_previous_hook(monkeypatch):
    seen = []
    monkeypatch.setattr("sys.unraisablehook", lambda u: seen.append(u.exc_value))
    restore = interrupts.install()
    try:

        class Finalised:
            def __del__(self) -> None:
                raise ValueError("from a finaliser")

        Finalised()
        gc.collect()
    finally:
        restore()
    assert [str(e) for e in seen] == ["from a finaliser"]


def test_a_signal_in_a_shielded_section_is_raised_at_its_end(installed):
    with pytest.raises(KeyboardInterrupt, match="signal 2"):
        with interrupts.shielded():
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):
                pass
            assert interrupts.pending() == signal.SIGINT  # remembered, not raised
        pytest.fail("the shielded section's end did not raise")  # pragma: no cover
