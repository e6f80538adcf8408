"""Names the reference tool's model files import from ``hibayes.process``.

Model files written for UK AISI's hibayes start with
``from hibayes.process import Features``; this package re-exports the features
types of :mod:`hibayes.model`, so those files run unchanged. Nothing else lives
here: features are built by :mod:`hibayes.data` from the ``data`` config.
"""

from ..model import Coords, Dims, Features

__all__ = ["Coords", "Dims", "Features"]
