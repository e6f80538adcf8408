"""The model layer's error: a model, its factory arguments or its registration."""

from __future__ import annotations

from hibayes.errors import InputError

__all__ = ["ModelError"]


class ModelError(InputError):
    """A model, its factory arguments or its registration is not usable."""
