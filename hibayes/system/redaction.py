"""Keep credentials out of what a fit records: run names, tags, texts and files.

Params are redacted key by key (:func:`redact`); this module
does the same for free text — a traceback naming a tracking URI, the
``hibayes.overrides`` tag, Hydra's ``.hydra/overrides.yaml`` — and for the text
files of a job directory before they are uploaded as artifacts. What counts as
a secret is what :func:`redact` hides: the password of a URL
(``scheme://user:password@host``), the value of a key that looks secret
(``password``, ``token``, ``secret``, ``api_key``...), and the value of any
environment variable named ``MLFLOW_TRACKING_TOKEN``, ``*_TOKEN``,
``*_PASSWORD`` or ``*_SECRET*`` when it is 8 or more characters long (a shorter
one, "true" or "1234", would clobber ordinary text). It only hides: nothing here
evaluates or interprets the text.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Mapping
from pathlib import Path

from hibayes.system.atomic import write_text

__all__ = [
    "REDACTED",
    "TEXT_SUFFIXES",
    "redact",
    "scrub_file",
    "scrub_text",
    "scrub_tree",
]

#: What a redacted value becomes.
REDACTED = "***"
_SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "token",
        "secret",
        "apikey",
        "credential",
        "credentials",
        "auth",
        "authorization",
    }
)
_SECRET_ENV_NAMES = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_PASSWORD")
# A secret shorter than this is too likely to equal an ordinary value ("1", "true").
_MIN_PARAM_SECRET_LENGTH = 4
# Only secrets at least this long are searched for inside longer values.
_MIN_EMBEDDED_LENGTH = 8


#: Files of a job directory that are scrubbed before upload.
TEXT_SUFFIXES = frozenset({".yaml", ".yml", ".txt", ".log", ".json"})
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][\w+.-]*://[^/\s:@]+:)[^/\s@]+@")
# "key: value" (YAML) or "key=value" (Hydra override), optionally a list item.
_KEY_VALUE = re.compile(
    r"^(?P<head>\s*(?:-\s+)?['\"]?[+~]{0,2}(?P<key>[\w.\-/]+)['\"]?\s*[:=]\s*)"
    r"(?P<value>\S.*?)(?P<tail>,?)\s*$"
)
_SECRET_ENV = re.compile(r"(_TOKEN|_PASSWORD)$|_SECRET")
# Shorter values ("true", "1234") would clobber ordinary text; real tokens are longer.
_MIN_SECRET_LENGTH = 8
_MAX_SCRUBBED_FILE = 20_000_000  # bytes; larger "text" files are left alone


def _environment_secrets() -> list[str]:
    found = {
        value
        for name, value in os.environ.items()
        if _SECRET_ENV.search(name.upper()) and len(value) >= _MIN_SECRET_LENGTH
    }
    return sorted(found, key=len, reverse=True)  # longest first: no partial leftovers


def scrub_text(text: str) -> str:
    """``text`` with URL passwords, secret-looking values and env secrets as ``***``.

    .. doctest::

        >>> scrub_text("tracking.uri=http://alice:pw1234@host:5000")
        'tracking.uri=http://alice:***@host:5000'

    :param text: any text (a traceback, a YAML file, an override list).
    :return: the same text with secrets replaced.
    """
    if not text:
        return text
    text = _URL_PASSWORD.sub(rf"\g<head>{REDACTED}@", text)
    for secret in _environment_secrets():
        # Bounded by non-word characters, so a short secret does not eat a word.
        text = re.sub(rf"(?<![\w]){re.escape(secret)}(?![\w])", REDACTED, text)
    lines = text.split("\n")
    for i, line in enumerate(lines):
        match = _KEY_VALUE.match(line)
        if match is None or match["value"] == REDACTED:
            continue
        key = match["key"]
        value = match["value"]
        # Ask redact() about the key alone: a placeholder value never equals a secret.
        if redact({key: "\0"})[key] == REDACTED:
            lines[i] = f"{match['head']}{_redacted_like(value)}{match['tail']}"
    return "\n".join(lines)


def _redacted_like(value: str) -> str:
    """``***`` keeping the quotes around (or closing) the value it replaces."""
    if value[:1] in "'\"":
        return f"{value[0]}{REDACTED}{value[0]}"
    if value[-1:] in "'\"":
        return f"{REDACTED}{value[-1]}"
    return REDACTED


def scrub_file(path: Path) -> bool:
    """Rewrite a text file with its secrets hidden; return whether it changed.

    :param path: the file; binary or oversized files are left alone.
    """
    try:
        if path.stat().st_size > _MAX_SCRUBBED_FILE:
            return False
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    clean = scrub_text(text)
    if clean == text:
        return False
    write_text(path, clean)
    return True


def scrub_tree(root: Path) -> list[Path]:
    """Scrub every text file (:data:`TEXT_SUFFIXES`) under ``root``; return those changed."""
    root = Path(root)
    files = [root] if root.is_file() else sorted(root.rglob("*"))
    return [
        path
        for path in files
        if path.is_file() and path.suffix.lower() in TEXT_SUFFIXES and scrub_file(path)
    ]


def redact(params: Mapping[str, str]) -> dict[str, str]:
    """Hide secrets in params before they are logged.

    A value becomes ``***`` when its key looks like a secret (a word such as
    ``password``, ``token``, ``secret``, ``api_key``, ``credential`` or ``auth``
    in the key; ``max_tokens`` is not one) or when it equals the value of
    ``MLFLOW_TRACKING_TOKEN``, ``MLFLOW_TRACKING_PASSWORD`` or any environment
    variable named ``*_TOKEN``, ``*_PASSWORD`` or ``*_SECRET*`` (or contains it,
    for values of 8+ characters; values under 4 characters are ignored).
    Passwords in URLs (``scheme://user:pw@host``) are replaced in place.

    :param params: flattened params.
    :return: a new dict with the same keys.
    """
    secrets = _param_environment_secrets()
    out: dict[str, str] = {}
    for key, value in params.items():
        text = str(value)
        if _key_is_secret(key) or any(_leaks(secret, text) for secret in secrets):
            out[key] = REDACTED
        else:
            out[key] = _URL_PASSWORD.sub(rf"\g<head>{REDACTED}@", text)
    return out


def _leaks(secret: str, text: str) -> bool:
    return secret == text or (len(secret) >= _MIN_EMBEDDED_LENGTH and secret in text)


def _key_words(key: str) -> list[str]:
    # camelCase -> camel_Case, then split on anything that is not a letter/digit.
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", str(key)).lower()
    return [w for w in re.split(r"[^a-z0-9]+", spaced) if w]


def _key_is_secret(key: str) -> bool:
    words = _key_words(key)
    if any(w in _SECRET_WORDS for w in words):
        return True
    return any(a == "api" and b == "key" for a, b in itertools.pairwise(words))


def _param_environment_secrets() -> set[str]:
    found = set()
    for name, value in os.environ.items():
        upper = name.upper()
        if (
            upper in _SECRET_ENV_NAMES
            or upper.endswith(("_TOKEN", "_PASSWORD"))
            or "_SECRET" in upper
        ) and len(value) >= _MIN_PARAM_SECRET_LENGTH:
            found.add(value)
    return found
