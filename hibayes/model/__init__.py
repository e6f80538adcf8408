"""Models: the ``@model`` API, the registry and the built-in models."""

from . import models  # noqa: F401  (importing it registers the built-in models)
from ._api import Model, ModelFactory, bind_hyperparameters, model
from .errors import ModelError
from .registry import get_model, list_models, load_models, model_origin

__all__ = [
    "Model",
    "ModelError",
    "ModelFactory",
    "bind_hyperparameters",
    "model",
    "get_model",
    "list_models",
    "load_models",
    "model_origin",
]
