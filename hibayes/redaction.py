"""Keep credentials out of what a fit records: run names, tags, texts and files.

Params are redacted key by key (:func:`hibayes.tracking.redact`); this module
does the same for free text — a traceback naming a tracking URI, the
``hibayes.overrides`` tag, Hydra's ``.hydra/overrides.yaml`` — and for the text
files of a job directory before they are uploaded as artifacts. What counts as
a secret is what :func:`~hibayes.tracking.redact` hides: the password of a URL
(``scheme://user:password@host``), the value of a key that looks secret
(``password``, ``token``, ``secret``, ``api_key``...), and the value of any
environment variable named ``MLFLOW_TRACKING_TOKEN``, ``*_TOKEN``,
``*_PASSWORD`` or ``*_SECRET*`` when it is 8 or more characters long (a shorter
one, "true" or "1234", would clobber ordinary text). It only hides: nothing here
evaluates or interprets the text.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .tracking import redact
from .tracking.params import REDACTED

__all__ = ["TEXT_SUFFIXES", "scrub_file", "scrub_text", "scrub_tree"]

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
    path.write_text(clean, encoding="utf-8")
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
