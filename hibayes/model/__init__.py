"""Models: the ``@model`` API, the registry and the built-in models.

The names a model file imports are those of the reference tool (UK AISI's
hibayes): ``from hibayes.model import Model, check_features, model``,
``from hibayes.model.utils import create_interaction_effects`` and
``from hibayes.process import Features``, so its model files run unchanged.
"""

from . import models  # noqa: F401  (importing it registers the built-in models)
from ._api import (
    OUTCOME_KINDS,
    Coords,
    Dims,
    Features,
    Model,
    ModelFactory,
    bind_hyperparameters,
    check_features,
    model,
)
from .errors import ModelError
from .registry import get_model, list_models, load_models, model_origin

__all__ = [
    "OUTCOME_KINDS",
    "Coords",
    "Dims",
    "Features",
    "Model",
    "ModelError",
    "ModelFactory",
    "bind_hyperparameters",
    "check_features",
    "model",
    "get_model",
    "list_models",
    "load_models",
    "model_origin",
]
