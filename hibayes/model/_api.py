"""The public model API: the ``Model`` protocol and the ``@model`` decorator.

A model *factory* is a function whose arguments are prior hyperparameters (and
structural options) and which returns a NumPyro program ``model(features)``.
``@model`` registers the factory by name and wraps the program it returns so the
``obs`` contract is enforced; ``@model(outcome="continuous")`` also declares what
kind of outcome the model reads, so the data are checked for that kind. It does
no inference and no I/O.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, overload

from numpyro.primitives import Messenger

from .errors import ModelError
from .registry import register

__all__ = [
    "OUTCOME_KINDS",
    "Coords",
    "Dims",
    "Features",
    "Model",
    "ModelFactory",
    "ModelError",
    "model",
    "bind_hyperparameters",
    "check_features",
]

OBS_SITE = "obs"
#: What a model program reads: ``obs``, ``<c>_index`` arrays, ``num_<c>`` ints...
Features = dict[str, Any]
#: ArviZ coordinates: dimension name -> labels.
Coords = dict[str, list[Any]]
#: ArviZ dims: variable name -> its dimension names.
Dims = dict[str, list[str]]
#: What ``@model(outcome=...)`` accepts (``data.outcome`` without ``auto``).
OUTCOME_KINDS = ("count", "binary", "ordinal", "continuous")


class Model(Protocol):
    """A NumPyro program that reads a ``features`` dict and observes ``obs``."""

    def __call__(self, features: Mapping[str, Any]) -> None:
        """Run the program on ``features``."""


class ModelFactory(Protocol):
    """A ``@model``-decorated factory: hyperparameters in, :class:`Model` out."""

    __name__: str
    builder: Callable[..., Model]
    builtin: bool
    outcome: str | None

    def __call__(self, *args: Any, **kwargs: Any) -> Model:
        """Build the program for these hyperparameters."""


class _SiteRecorder(Messenger):
    """Records the names of the sample sites a program visits."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.names: set[str] = set()
        super().__init__(fn)

    def process_message(self, msg: dict) -> None:
        if msg["type"] == "sample":
            self.names.add(msg["name"])


def check_features(features: Mapping[str, Any], required: Sequence[str]) -> None:
    """Raise ``ValueError`` naming every required feature that is missing."""
    missing = [key for key in required if key not in features]
    if missing:
        raise ValueError(
            f"missing required features: {', '.join(missing)}. Declare them in the "
            f"data config (categorical columns give '<col>_index' and 'num_<col>'). "
            f"Features present: {sorted(features)}"
        )


def bind_hyperparameters(
    name: str, builder: Callable[..., Any], args: tuple, kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    """Bind factory arguments to parameter names, defaults filled in.

    :param name: the model's registered name, for error messages.
    :param builder: the undecorated factory.
    :param args: positional arguments as the user gave them.
    :param kwargs: keyword arguments as the user gave them.
    :return: every parameter of ``builder`` mapped to its value.
    :raises ModelError: for unknown or surplus arguments, with suggestions.
    """
    sig = inspect.signature(builder)
    accepted = [
        p.name
        for p in sig.parameters.values()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    takes_var_kw = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
    if not takes_var_kw:
        unknown = [k for k in kwargs if k not in accepted]
        if unknown:
            hints = []
            for key in unknown:
                close = difflib.get_close_matches(key, accepted, n=1)
                hints.append(
                    f"'{key}'" + (f" (did you mean '{close[0]}'?)" if close else "")
                )
            raise ModelError(
                f"model '{name}' does not take {', '.join(hints)}; "
                f"it accepts: {', '.join(accepted) or '(no arguments)'}"
            )
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError as exc:
        raise ModelError(
            f"model '{name}': {exc}; it accepts: {', '.join(accepted)}"
        ) from exc
    _check_numbers(name, sig, kwargs)
    bound.apply_defaults()
    values = dict(bound.arguments)
    for p in sig.parameters.values():
        if p.kind == p.VAR_KEYWORD:
            values.update(values.pop(p.name, {}))
        elif p.kind == p.VAR_POSITIONAL:
            values.pop(p.name, None)
    return values


def _check_numbers(name: str, sig: inspect.Signature, given: Mapping[str, Any]) -> None:
    """Refuse text, null or true/false where the factory's default is a number.

    Found here, before sampling, instead of as a NumPy type error deep in a
    distribution. Arrays and lists stay allowed (vector-valued priors, traced values).
    """
    for key, value in given.items():
        param = sig.parameters.get(key)
        default = param.default if param is not None else None
        if isinstance(default, bool) or not isinstance(default, int | float):
            continue
        if value is None or isinstance(value, bool | str | bytes):
            raise ModelError(
                f"model '{name}': {key} must be a number (its default is "
                f"{default!r}), got {value!r}"
            )


def _wrap_program(name: str, program: Callable[..., Any]) -> Model:
    """Wrap a program so that a missing ``obs`` feature or site fails by name."""

    @functools.wraps(program)
    def checked(features: Mapping[str, Any]) -> None:
        if OBS_SITE not in features:
            raise ModelError(
                f"model '{name}' needs a feature named '{OBS_SITE}' (the observed "
                f"data); features present: {sorted(features)}"
            )
        recorder = _SiteRecorder(program)
        result = recorder(features)
        if OBS_SITE not in recorder.names:
            raise ModelError(
                f"model '{name}' never samples a site named '{OBS_SITE}'; the "
                f"observed data must be `numpyro.sample('{OBS_SITE}', ..., "
                f"obs=features['{OBS_SITE}'])` (sample sites seen: "
                f"{sorted(recorder.names)})"
            )
        return result

    checked.model_name = name  # type: ignore[attr-defined]
    return checked


@overload
def model(builder: Callable[..., Model]) -> ModelFactory: ...


@overload
def model(
    builder: None = None, *, outcome: str | None = None
) -> Callable[[Callable[..., Model]], ModelFactory]: ...


def model(
    builder: Callable[..., Model] | None = None, *, outcome: str | None = None
) -> Any:
    """Register a model factory under its function name and enforce ``obs``.

    Used bare (``@model``, as in the reference tool) or with the kind of outcome
    the model reads (``@model(outcome="continuous")``): one of ``count``,
    ``binary``, ``ordinal``, ``continuous``. With ``data.outcome=auto`` the data
    are checked for that kind; a model that declares none gets the checks every
    outcome needs (numeric, finite, nothing missing).

    .. doctest::

        >>> from hibayes.model import Model, model
        >>> @model(outcome="continuous")
        ... def my_model(prior_loc: float = 0.0) -> Model:  # doctest: +SKIP
        ...     def program(features): ...
        ...     return program
    """
    if outcome is not None and outcome not in OUTCOME_KINDS:
        raise ModelError(
            f"@model(outcome={outcome!r}): outcome must be one of "
            f"{', '.join(OUTCOME_KINDS)}"
        )
    if builder is None:
        return lambda fn: _register(fn, outcome)
    if not callable(builder):
        raise ModelError(
            f"@model takes the factory function (or outcome=...), got {builder!r}"
        )
    return _register(builder, outcome)


def _register(builder: Callable[..., Model], outcome: str | None) -> ModelFactory:
    """Wrap ``builder`` as a factory, note its outcome kind, and register it."""
    name = builder.__name__

    @functools.wraps(builder)
    def factory(*args: Any, **kwargs: Any) -> Model:
        values = bind_hyperparameters(name, builder, args, kwargs)
        program = builder(**values)
        if not callable(program):
            raise ModelError(
                f"model factory '{name}' must return the NumPyro program (a "
                f"function of features), got {type(program).__name__}"
            )
        wrapped = _wrap_program(name, program)
        wrapped.hyperparameters = values  # type: ignore[attr-defined]
        return wrapped

    factory.builder = builder  # type: ignore[attr-defined]
    factory.builtin = builder.__module__ == "hibayes.model.models"  # type: ignore[attr-defined]
    factory.outcome = outcome  # type: ignore[attr-defined]
    register(factory)  # type: ignore[arg-type]
    return factory  # type: ignore[return-value]
