"""The wrapper every command runs under: environment, logging, one-line errors, exit.

``python -m hibayes.<command>`` ends in :func:`run_command`. An error hibayes
raised on purpose (:class:`~hibayes.errors.HibayesError`) is printed as one line,
secrets scrubbed, and becomes the exit status: ``error: …`` 1, ``refused: …`` 2.
Anything else is a bug and keeps its traceback. Hydra catches exceptions inside
the task function itself, so Hydra commands wrap that function with
:func:`one_line_errors` as well.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

from hibayes.errors import HibayesError, Refused
from hibayes.system.atomic import write_errno
from hibayes.system.exit import run_then_exit
from hibayes.system.redaction import scrub_text

__all__ = ["command_environment", "one_line_errors", "run_command"]

_F = TypeVar("_F", bound=Callable[..., object])

# MLflow settings no command of ours wants (each may still be set by the user).
_MLFLOW_ENVIRONMENT = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


def command_environment() -> None:
    """Set the MLflow environment every command runs with, unless the user set it,
    and keep a library's echoes of a failed write off stderr."""
    for name, value in _MLFLOW_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    sys.unraisablehook = _unraisable
    logging.FileHandler.handleError = _log_file_failed  # type: ignore[method-assign]


_HANDLE_ERROR = logging.FileHandler.handleError
_FULL_LOGS: set[str] = set()


def _log_file_failed(handler: logging.FileHandler, record: logging.LogRecord) -> None:
    """A log file that cannot be written (a full disk) is said once, in one line,
    instead of a traceback per log line; the console keeps logging."""
    exc = sys.exc_info()[1]
    code = write_errno(exc) if exc is not None else None
    if code is None:
        _HANDLE_ERROR(handler, record)
        return
    if handler.baseFilename not in _FULL_LOGS:
        _FULL_LOGS.add(handler.baseFilename)
        print(
            f"warning: cannot write the log {handler.baseFilename}: "
            f"{os.strerror(code)}",
            file=sys.stderr,
        )


def _unraisable(unraisable: sys.UnraisableHookArgs) -> None:
    """A failed write echoed from a destructor (h5py closing a file on a full disk)
    goes to the log: the write itself has already failed with one line."""
    if unraisable.exc_value is not None and write_errno(unraisable.exc_value):
        logging.getLogger("hibayes").debug(
            "ignored in %r: %s", unraisable.object, unraisable.exc_value
        )
        return
    sys.__unraisablehook__(unraisable)


def exit_status(exc: HibayesError) -> int:
    """The exit status of a command stopped by ``exc``: 2 refused, 1 otherwise."""
    return 2 if isinstance(exc, Refused) else 1


def one_line_errors(fn: _F) -> _F:
    """Wrap a command body: a :class:`HibayesError` becomes one line and an exit status."""

    @functools.wraps(fn)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            return fn(*args, **kwargs)
        except HibayesError as exc:
            word = "refused" if isinstance(exc, Refused) else "error"
            print(f"{word}: {scrub_text(str(exc))}", file=sys.stderr)
            raise SystemExit(exit_status(exc)) from None

    return wrapper  # type: ignore[return-value]


def run_command(
    main: Callable[[], object], *, log_format: str | None = None
) -> NoReturn:
    """Run a command's ``main`` and exit with its status (see the module docstring).

    :param main: the command; an int it returns is the exit status.
    :param log_format: set up plain logging in this format (commands without
        Hydra, which configures its own); ``hibayes`` loggers log at INFO.
    """
    command_environment()
    if log_format is not None:
        logging.basicConfig(level=logging.WARNING, format=log_format)
        logging.getLogger("hibayes").setLevel(logging.INFO)
    run_then_exit(one_line_errors(main))
