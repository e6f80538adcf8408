"""The browser the UI and report tests drive: Debian's chromium, as .ci/run installs it."""

from __future__ import annotations

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
# No sandbox, GPU or network chatter in a container; --headless is added by the caller
# (Playwright adds its own).
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
