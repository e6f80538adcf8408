"""Which process owns something, whether it still runs, and dying with a parent.

:class:`ProcessId` names a process by host, pid and start time: a pid alone is
reused once its process is gone, the start time is not. On Linux the start
time is read from ``/proc`` (ticks since boot, with the boot's id); elsewhere
from psutil when it is installed; without either, only the pid is checked.

:func:`die_with_parent` makes a helper process (the sweep's plot worker) end
promptly when the process that started it is killed, even by SIGKILL, which
gives the parent no chance to stop it: Linux's ``PR_SET_PDEATHSIG``, plus a
thread that polls the parent pid everywhere else (and covers the moment before
``prctl`` took effect).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from typing import Any

__all__ = ["Liveness", "ProcessId", "die_with_parent", "proc_stat"]

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_PARENT_POLL_S = 0.5


class Liveness(Enum):
    """What can be said about a recorded process from here."""

    ALIVE = "alive"
    GONE = "gone"
    ELSEWHERE = "on another host"


@dataclass(frozen=True)
class ProcessId:
    """A process, told apart from a later one that reuses its pid.

    :param host: the machine's host name.
    :param pid: the process id.
    :param started: an opaque token of the process's start (None: not known here).
    """

    host: str
    pid: int
    started: str | None = None

    @classmethod
    def current(cls) -> ProcessId:
        """This process."""
        return cls(socket.gethostname(), os.getpid(), _start_token(os.getpid()))

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> ProcessId:
        """Read back :meth:`as_dict`'s record."""
        return cls(str(record["host"]), int(record["pid"]), record.get("started"))

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready record."""
        return asdict(self)

    def __str__(self) -> str:
        return f"process {self.pid} on {self.host}"

    def liveness(self) -> Liveness:
        """Whether this process still runs (a zombie does not); another host's: unknown."""
        if self.host != socket.gethostname():
            return Liveness.ELSEWHERE
        if not _pid_exists(self.pid):
            return Liveness.GONE
        now = _start_token(self.pid)
        if now is None:  # gone meanwhile, a zombie, or nothing to compare with
            return Liveness.GONE if _zombie_or_gone(self.pid) else Liveness.ALIVE
        if self.started is not None and now != self.started:
            return Liveness.GONE  # the pid belongs to a later process
        return Liveness.ALIVE


def proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name, or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "?"


def _start_token(pid: int) -> str | None:
    """The process's start as a comparable token; None if gone, a zombie or unknown."""
    if sys.platform.startswith("linux"):
        fields = proc_stat(pid)
        if fields is None or fields[0] == "Z":
            return None
        return f"{_boot_id()}:{fields[19]}"  # field 22: start time, ticks since boot
    try:
        import psutil
    except ImportError:
        return None
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return f"{process.create_time():.3f}"
    except psutil.Error:
        return None


def _zombie_or_gone(pid: int) -> bool:
    if sys.platform.startswith("linux"):
        fields = proc_stat(pid)
        return fields is None or fields[0] == "Z"
    return not _pid_exists(pid)


def _pid_exists(pid: int) -> bool:
    if os.name != "posix":  # os.kill(pid, 0) would send CTRL_C_EVENT on Windows
        try:
            import psutil
        except ImportError:
            return True  # cannot tell: never call a live process gone
        return bool(psutil.pid_exists(pid))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def die_with_parent(parent_pid: int | None = None) -> None:
    """End this process (SIGKILL) as soon as its parent is gone.

    Call it first thing in a child process. ``PR_SET_PDEATHSIG`` acts when the
    parent's thread that started the child ends, so the poll below also checks
    that the parent pid is the one this process started with.

    :param parent_pid: the parent to watch; default ``os.getppid()`` now.
    """
    parent = parent_pid or os.getppid()
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the poll below still does it
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
    watcher = threading.Thread(
        target=_watch_parent, args=(parent,), name="hibayes-parent-watch", daemon=True
    )
    watcher.start()


def _watch_parent(parent: int) -> None:
    """Poll: an orphan is re-parented (its ppid changes), so exit then."""
    while True:
        time.sleep(_PARENT_POLL_S)
        if os.getppid() != parent or (os.name != "posix" and not _pid_exists(parent)):
            os._exit(1)  # nothing to clean up: the parent decided what happens
