"""Turning configs into MLflow-safe params: flattening, key clean-up.

Secrets are hidden by :func:`hibayes.system.redaction.redact` (re-exported here).

Pure functions over mappings and strings; nothing here talks to a store or
imports MLflow. MLflow's limits are copied as constants (checked against
``mlflow.utils.validation`` of MLflow 3.17) so callers need not import it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from hibayes.system.redaction import REDACTED, redact

__all__ = [
    "MAX_KEY_LENGTH",
    "MAX_PARAM_VALUE_LENGTH",
    "MAX_TAG_VALUE_LENGTH",
    "REDACTED",
    "flatten_config",
    "redact",
    "sanitize_key",
    "truncate_value",
]

#: ``MAX_ENTITY_KEY_LENGTH`` in MLflow: params, metrics and tags.
MAX_KEY_LENGTH = 250
#: ``MAX_PARAM_VAL_LENGTH`` in MLflow.
MAX_PARAM_VALUE_LENGTH = 6000
#: ``MAX_TAG_VAL_LENGTH`` in MLflow.
MAX_TAG_VALUE_LENGTH = 8000

_TRUNCATION_MARK = "..."
# MLflow allows [/\w.\- :] on POSIX and no colon on Windows; use the portable set.
_BAD_KEY_CHARS = re.compile(r"[^/\w.\- ]")


def flatten_config(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Flatten a nested config into dotted keys with string values.

    Dicts and OmegaConf ``DictConfig``/``ListConfig`` are accepted; interpolations
    are resolved where possible and missing values (``???``) are kept as text.
    Lists become their JSON text, empty mappings ``"{}"``.

    .. doctest::

        >>> cfg = {"model": {"prior_x": 0.1}, "data": {"categorical": ["group"]}}
        >>> flatten_config(cfg)
        {'model.prior_x': '0.1', 'data.categorical': '["group"]'}

    :param cfg: the config.
    :param prefix: prepended to every key, joined with a dot.
    :return: ``{dotted key: str(value)}``.
    """
    plain = _to_container(cfg)
    if isinstance(plain, Sequence) and not isinstance(plain, str):
        plain = {str(i): item for i, item in enumerate(plain)}
    if not isinstance(plain, Mapping):
        raise TypeError(f"flatten_config needs a mapping, got {type(cfg).__name__}")
    out: dict[str, str] = {}
    _flatten_into(out, plain, prefix)
    return out


def _to_container(cfg: Any) -> Any:
    try:
        from omegaconf import Container, OmegaConf
    except ImportError:  # omegaconf is a dependency, but stay usable without it
        return cfg
    if not isinstance(cfg, Container):
        return cfg
    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    except Exception:  # noqa: BLE001 - e.g. ${hydra:...} outside a Hydra job
        return OmegaConf.to_container(cfg, resolve=False, throw_on_missing=False)


def _flatten_into(out: dict[str, str], node: Mapping[Any, Any], prefix: str) -> None:
    for key, value in node.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            if value:
                _flatten_into(out, value, dotted)
            else:
                out[dotted] = "{}"
        elif isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
            out[dotted] = json.dumps(list(value), default=str)
        else:
            out[dotted] = str(value)


def sanitize_key(key: str) -> str:
    """Make ``key`` acceptable to MLflow as a param, metric or tag name.

    Characters outside letters, digits, ``_ - . / space`` become ``_``; the key
    must not normalise to another path (no ``//``, ``.``/``..`` segments, no
    leading or trailing ``/``); over-long keys are cut and given a hash suffix so
    that distinct keys stay distinct.

    :param key: the raw key.
    :return: the cleaned key.
    """
    cleaned = _BAD_KEY_CHARS.sub("_", str(key))
    parts = [p if p not in {".", ".."} else "_" for p in cleaned.split("/") if p]
    cleaned = "/".join(parts) or "_"
    if len(cleaned) > MAX_KEY_LENGTH:
        suffix = hashlib.sha1(str(key).encode()).hexdigest()[:8]
        cleaned = f"{cleaned[: MAX_KEY_LENGTH - 9].rstrip('/')}-{suffix}"
    return cleaned


def truncate_value(value: Any, limit: int = MAX_PARAM_VALUE_LENGTH) -> str:
    """``str(value)``, cut to ``limit`` characters ending in ``...`` when too long.

    :param value: anything.
    :param limit: the maximum length (MLflow's param limit by default).
    :return: the string.
    """
    text = str(value)
    if len(text) <= limit:
        return text
    return text[: limit - len(_TRUNCATION_MARK)] + _TRUNCATION_MARK
