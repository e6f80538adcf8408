"""The one exception type of the data layer.

Every problem with an input table (a missing file, a missing column, a bad count)
raises :class:`DataError`. Its message names the source (a path, or ``"<table>"``
for an in-memory DataFrame), the column and, where rows are at fault, one example
row and its value, so a user can fix the file without reading a traceback.
"""

from __future__ import annotations

from typing import Any

from hibayes.errors import InputError

__all__ = ["DataError"]


class DataError(InputError):
    """Bad input data; the message says where (source, column, row, value).

    Subclasses :class:`ValueError` so callers that already catch bad values keep
    working. The structured fields are optional and ``None`` where they do not apply.

    :param message: full human-readable message.
    :param source: path of the file, or ``"<table>"``.
    :param column: the offending column, if any.
    :param row: an example offending row (0-based data row or index label), if any.
    :param value: the offending value in that row, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        column: str | None = None,
        row: Any = None,
        value: Any = None,
    ) -> None:
        """Store the message and the structured location of the problem."""
        super().__init__(message)
        self.source = source
        self.column = column
        self.row = row
        self.value = value
