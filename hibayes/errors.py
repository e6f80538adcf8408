"""The errors hibayes raises on purpose, and what each means to a command.

Every error the tool raises for a reason it can name derives from
:class:`HibayesError`. A command (:func:`hibayes.system.command.run_command`)
prints such an error as one line, ``error: …`` with exit status 1 or, for a
:class:`Refused` request, ``refused: …`` with exit status 2; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["CannotWrite", "HibayesError", "InputError", "Refused"]


class HibayesError(Exception):
    """An error hibayes raised on purpose; its message says what and where."""


class InputError(HibayesError, ValueError):
    """Input the user can fix: data, model, fit settings, config, a reference config."""


class Refused(HibayesError):
    """A command declined a request it cannot honour faithfully (compare, reproduce)."""


class CannotWrite(HibayesError):
    """An output file could not be written (a full disk, a read-only folder...).

    Printed as ``error: cannot write <path>: <reason>``; nothing half-written is
    left at ``path`` (see :mod:`hibayes.system.atomic`).
    """

    def __init__(self, path: object, reason: str) -> None:
        """Name the file and why (kept as ``args`` so the error pickles)."""
        super().__init__(path, reason)
        self.path, self.reason = str(path), reason

    def __str__(self) -> str:
        """``cannot write <path>: <reason>``."""
        return f"cannot write {self.path}: {self.reason}"
