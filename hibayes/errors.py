"""The errors hibayes raises on purpose, and what each means to a command.

Every error the tool raises for a reason it can name derives from
:class:`HibayesError`. A command (:func:`hibayes.system.command.run_command`)
prints such an error as one line, ``error: …`` with exit status 1 or, for a
:class:`Refused` request, ``refused: …`` with exit status 2; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["HibayesError", "InputError", "Refused"]


class HibayesError(Exception):
    """An error hibayes raised on purpose; its message says what and where."""


class InputError(HibayesError, ValueError):
    """Input the user can fix: data, model, fit settings, config, a reference config."""


class Refused(HibayesError):
    """A command declined a request it cannot honour faithfully (compare, reproduce)."""
