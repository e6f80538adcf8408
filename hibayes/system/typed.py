"""Config values checked against the record they fill, one line per wrong value.

A setting of the wrong type (``checks.rhat_max=abc``, ``fit.samples=null``)
would otherwise pass through and fail far away: a ``TypeError`` after sampling,
the draws lost. The records (``FitSettings``, ``Thresholds``) call
:func:`wrong_types` before they are built.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

__all__ = ["wrong_types"]

_KINDS = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "str": "a string",
}


def _fits(kind: str, value: Any) -> bool:
    """Whether ``value`` is of the config type ``kind`` (YAML's ``1e3`` is an int)."""
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if math.isnan(value):
        return False
    return kind == "float" or float(value).is_integer()


def wrong_types(prefix: str, values: Mapping[str, Any], record: type) -> list[str]:
    """One line per value of ``values`` whose type its field in ``record`` does not take.

    :param prefix: the config section, for the message (``checks``, ``fit``).
    :param record: a dataclass whose annotations name ``int``, ``float``, ``bool``,
        ``str``, optionally ``| None``.
    """
    problems = []
    for field in dataclasses.fields(record):
        if field.name not in values:
            continue
        value = values[field.name]
        kinds = [k.strip() for k in str(field.type).split("|")]
        if value is None and "None" in kinds:
            continue
        wanted = [k for k in kinds if k in _KINDS]
        if wanted and not any(_fits(k, value) for k in wanted):
            allowed = " or ".join(_KINDS[k] for k in wanted)
            allowed += " or null" if "None" in kinds else ""
            problems.append(f"{prefix}.{field.name} must be {allowed}, got {value!r}")
    return problems
