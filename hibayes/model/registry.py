"""The registry of model factories: find by name, import custom model files.

Built-in models register when :mod:`hibayes.model.models` is imported; custom
models register when their file or module is imported through
:func:`load_models`. A custom model may not take a built-in's name.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ModelError

if TYPE_CHECKING:
    from ._api import ModelFactory

__all__ = ["register", "get_model", "list_models", "load_models", "model_origin"]

_REGISTRY: dict[str, ModelFactory] = {}
_LOADED_FILES: dict[Path, str] = {}


def _origin(factory: ModelFactory) -> str:
    code = getattr(factory.builder, "__code__", None)
    where = code.co_filename if code is not None else factory.builder.__module__
    return f"{where}:{factory.builder.__qualname__}"


def register(factory: ModelFactory) -> None:
    """Add a decorated factory to the registry under its function name."""
    name = factory.__name__
    existing = _REGISTRY.get(name)
    if existing is not None and _origin(existing) != _origin(factory):
        if existing.builtin:
            raise ModelError(
                f"a custom model may not replace the built-in model '{name}' "
                f"(defined in {_origin(factory)}); give it another name"
            )
        raise ModelError(
            f"two different models are named '{name}': {_origin(existing)} and "
            f"{_origin(factory)}; rename one of them"
        )
    _REGISTRY[name] = factory


def list_models() -> list[str]:
    """Names of every registered model, built-in and custom, sorted."""
    return sorted(_REGISTRY)


def get_model(name: str) -> ModelFactory:
    """Return the factory registered as ``name``; suggest a close name if unknown."""
    try:
        return _REGISTRY[name]
    except KeyError:
        plain = _undecorated(name)
        if plain:
            raise ModelError(
                f"model '{name}' in {plain} is a plain function, not a model: put "
                "@model above it (from hibayes.model import model)"
            ) from None
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ModelError(
            f"unknown model '{name}'.{hint} Known models: {', '.join(sorted(_REGISTRY))}. "
            "Custom models are loaded from model.path (a .py file or module name)."
        ) from None


def _undecorated(name: str) -> str | None:
    """The custom model file that defines ``name`` as a function without ``@model``."""
    for path, module_name in _LOADED_FILES.items():
        found = getattr(sys.modules.get(module_name), name, None)
        if inspect.isfunction(found):
            return str(path)
    return None


def model_origin(name: str) -> str:
    """Where the factory registered as ``name`` is defined (file:qualname)."""
    return _origin(get_model(name))


def _import_file(path: Path) -> str:
    resolved = path.expanduser().resolve()
    if resolved in _LOADED_FILES:
        return _LOADED_FILES[resolved]
    if resolved.is_dir():
        raise ModelError(
            f"model.path {path} is a folder ({resolved}): give the .py file that "
            "defines the model"
        )
    if not resolved.is_file():
        raise ModelError(
            f"custom model file not found: {path} (resolved to {resolved})"
        )
    digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:10]
    module_name = f"hibayes_custom_{resolved.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, resolved)
    if spec is None or spec.loader is None:
        raise ModelError(f"cannot import custom model file {resolved}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(module_name, None)
        raise ModelError(
            f"custom model file {resolved} has a syntax error at line {exc.lineno}: "
            f"{exc.msg}"
        ) from exc
    except ModelError:
        sys.modules.pop(module_name, None)
        raise
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise ModelError(
            f"importing custom model file {resolved} failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    _LOADED_FILES[resolved] = module_name
    return module_name


def load_models(paths: str | Path | Iterable[str | Path] | None) -> list[str]:
    """Import custom model files (``.py`` paths) or modules (dotted names).

    :param paths: one path/module name or several; ``None`` loads nothing.
    :return: the names of the models registered by these imports.
    """
    if paths is None:
        return []
    if isinstance(paths, (str, Path)):
        paths = [paths]
    before = set(_REGISTRY)
    for entry in paths:
        text = str(entry)
        if text.endswith(".py") or "/" in text or Path(text).exists():
            _import_file(Path(text))
        else:
            try:
                importlib.import_module(text)
            except ImportError as exc:
                raise ModelError(
                    f"cannot import custom model module '{text}': {exc}"
                ) from exc
    return sorted(set(_REGISTRY) - before)
