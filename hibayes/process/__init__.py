"""Names the reference tool's model files import from ``hibayes.process``.

Model files written for UK AISI's hibayes start with
``from hibayes.process import Features``; this package gives them the same
names, so those files run unchanged. It holds type aliases only: features here
are built by :mod:`hibayes.data` from the ``data`` config, not by processors.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Coords", "Dims", "Features"]

#: What a model program reads: ``obs``, ``<c>_index`` arrays, ``num_<c>`` ints...
Features = dict[str, Any]
#: ArviZ coordinates: dimension name -> labels.
Coords = dict[str, list[Any]]
#: ArviZ dims: variable name -> its dimension names.
Dims = dict[str, list[str]]
