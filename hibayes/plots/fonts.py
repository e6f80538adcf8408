"""Labels in any script: category names are the user's (CJK, emoji, ...).

Matplotlib's default font (DejaVu Sans) has no CJK glyphs, and each missing glyph is
a warning on stderr at every save. Fonts named here are added as fallbacks when
installed: a CJK font draws the labels; the Last Resort font that recent
Matplotlib releases bundle draws a placeholder for anything else, without a
warning. Without it (older Matplotlib), the glyph warnings are silenced instead.
"""

from __future__ import annotations

import warnings

from matplotlib import font_manager, rcParams

__all__ = ["use_fallback_fonts"]

# Vector fonts only: Matplotlib cannot draw bitmap emoji fonts (Noto Color Emoji).
FALLBACKS = (
    "Noto Sans CJK JP",
    "Noto Sans CJK SC",
    "Noto Sans CJK TC",
    "Noto Sans CJK KR",
    "WenQuanYi Zen Hei",
    "Droid Sans Fallback",
    "Last Resort High-Efficiency",
)


def use_fallback_fonts() -> list[str]:
    """Append the installed :data:`FALLBACKS` to ``font.family``; return those added."""
    installed = {f.name for f in font_manager.fontManager.ttflist}
    families = list(rcParams["font.family"])
    added = [name for name in FALLBACKS if name in installed and name not in families]
    rcParams["font.family"] = families + added
    if FALLBACKS[-1] not in installed:
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from font")
    return added
