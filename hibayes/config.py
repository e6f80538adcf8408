"""Turn the sections of a composed config into the objects the pipeline uses.

One function per config group; each validates its section and raises a
specific error naming the offending key, so a bad config fails before sampling.
Nothing here samples, plots or tracks.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from hibayes.diagnostics import Thresholds
from hibayes.errors import InputError

from .data import FeatureSet, example_path, features_from_config, resolve_outcome
from .inference.settings import FitSettings
from .model import (
    ModelError,
    ModelFactory,
    bind_hyperparameters,
    get_model,
    load_models,
)

if TYPE_CHECKING:
    from hibayes.diagnostics.folds import CVSettings

__all__ = [
    "ConfigError",
    "ModelSpec",
    "checked_sections",
    "data_settings",
    "to_plain",
    "model_spec",
    "fit_settings",
    "thresholds",
    "sensitivity_enabled",
    "data_source",
    "data_digest",
    "load_data",
    "cv_settings",
]

# Keys of the model section that configure hibayes, not the model factory.
MODEL_META_KEYS = ("name", "path", "tag")


@dataclass(frozen=True)
class ModelSpec:
    """Which model to fit and with which factory arguments.

    :param name: registered model name.
    :param factory: the ``@model`` factory.
    :param hyperparameters: keyword arguments for the factory.
    :param tag: free-text label of this configuration (shown in run names).
    :param dropped: config keys not passed because the named model does not take them.
    """

    name: str
    factory: ModelFactory
    hyperparameters: dict[str, Any]
    tag: str | None
    dropped: tuple[str, ...] = ()


def to_plain(section: Any) -> Any:
    """A config section as plain Python containers, interpolations resolved."""
    if isinstance(section, DictConfig) or OmegaConf.is_config(section):
        return OmegaConf.to_container(section, resolve=True)
    return section


def _builtin_keys(group_choice: str | None) -> set[str]:
    if not group_choice:
        return set()
    try:
        factory = get_model(group_choice)
    except ModelError:
        return set()
    return set(inspect.signature(factory.builder).parameters)


def model_spec(
    section: Mapping[str, Any], group_choice: str | None = None
) -> ModelSpec:
    """Resolve the model section: load custom files, find the factory, split arguments.

    :param section: the ``model`` config section.
    :param group_choice: which ``conf/model`` option was composed. When
        ``model.name`` names another model (``model.path=x.py model.name=y``), that
        option's prior keys the named model does not take are dropped, not passed.
    """
    values = dict(to_plain(section))
    name = values.get("name")
    if not name:
        raise ModelError(
            "model.name is not set: choose model=<built-in> or set model.name"
        )
    load_models(values.get("path"))
    factory = get_model(str(name))
    hyper = {k: v for k, v in values.items() if k not in MODEL_META_KEYS}
    dropped: list[str] = []
    if group_choice and group_choice != name:
        accepted = set(inspect.signature(factory.builder).parameters)
        for key in list(hyper):
            if key in _builtin_keys(group_choice) and key not in accepted:
                dropped.append(key)
                del hyper[key]
    bind_hyperparameters(
        str(name), factory.builder, (), hyper
    )  # unknown keys fail here
    tag = values.get("tag")
    return ModelSpec(
        str(name), factory, hyper, str(tag) if tag else None, tuple(dropped)
    )


def sweep_keys_not_taken(
    section: Mapping[str, Any], group_choice: str | None, keys: list[str]
) -> list[str]:
    """The ``model.*`` sweep keys of ``keys`` that the model ``section`` names does not take.

    A ``conf/model`` option's prior sweep (``hydra.sweeper.params``) belongs to its own
    model: with ``model.path=x.py model.name=y`` another model is fitted, and sweeping
    a key it does not take would only repeat one fit.
    """
    values = dict(to_plain(section))
    name = values.get("name")
    if not name or not group_choice or name == group_choice:
        return []
    load_models(values.get("path"))
    parameters = inspect.signature(get_model(str(name)).builder).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return []
    accepted = {p.name for p in parameters}
    return [
        k for k in keys if k.startswith("model.") and k.split(".", 1)[1] not in accepted
    ]


class ConfigError(InputError):
    """The composed config has problems: one line each, every section checked."""

    @classmethod
    def listing(cls, problems: list[str]) -> ConfigError:
        """The error for ``problems``: the one line, or a count and a line each."""
        if len(problems) == 1:
            return cls(problems[0])
        return cls(
            f"{len(problems)} problems in the config:\n  " + "\n  ".join(problems)
        )

    def problems(self) -> list[str]:
        """The problems, one a line."""
        lines = str(self).splitlines()
        return [line.strip() for line in (lines[1:] if len(lines) > 1 else lines)]


def checked_sections(
    cfg: Mapping[str, Any], model_choice: str | None = None
) -> tuple[ModelSpec, FitSettings, Thresholds]:
    """The model, data, fit and checks sections, every one checked before any work.

    The data section is checked without reading its table (:func:`data_settings`).

    :raises ConfigError: one line per problem found in any of them.
    """
    problems: list[str] = []

    def checked(build: Any) -> Any:
        try:
            return build()
        except ConfigError as exc:
            problems.extend(exc.problems())
        except InputError as exc:
            problems.extend(str(exc).splitlines())
        return None

    spec = checked(lambda: model_spec(cfg["model"], model_choice))
    if "data" in cfg:
        checked(lambda: data_settings(cfg["data"], spec))
    settings = checked(lambda: fit_settings(cfg["fit"]))
    limits = checked(lambda: thresholds(cfg["checks"]))
    if problems:
        raise ConfigError.listing(problems)
    return spec, settings, limits


def fit_settings(section: Mapping[str, Any]) -> FitSettings:
    """NUTS settings from the ``fit`` section."""
    return FitSettings.from_mapping(to_plain(section))


# Keys of the checks section that switch a check on or off, not thresholds.
CHECK_SWITCHES = ("sensitivity",)


def thresholds(section: Mapping[str, Any]) -> Thresholds:
    """Convergence thresholds from the ``checks`` section."""
    values = dict(to_plain(section))
    return Thresholds.from_mapping(
        {k: v for k, v in values.items() if k not in CHECK_SWITCHES}
    )


def sensitivity_enabled(section: Mapping[str, Any]) -> bool:
    """``checks.sensitivity``: power-scaling sensitivity per fit (default on)."""
    value = dict(to_plain(section)).get("sensitivity", True)
    if not isinstance(value, bool):
        raise InputError(f"checks.sensitivity must be true or false, got {value!r}")
    return value


def cv_settings(
    section: Mapping[str, Any] | None,
    table: Any = None,
    rename: Mapping[str, Any] | None = None,
) -> CVSettings:
    """Cross-validation settings from the ``cv`` section, columns checked against ``table``."""
    from hibayes.diagnostics.folds import CVSettings, group_labels

    settings = CVSettings.from_mapping(
        to_plain(section) if section is not None else None
    )
    if table is not None:  # a misspelt column fails now, not after sampling
        plain = to_plain(rename) if rename else None
        group_labels(table, settings.group_by, "group_by", plain)
        group_labels(table, settings.stratify_by, "stratify_by", plain)
    return settings


def data_source(section: Mapping[str, Any]) -> str:
    """The path of the table a data section reads (a shipped example or a file)."""
    values = to_plain(section)
    if values.get("path") and values["path"] != "???":  # ???: OmegaConf's "missing"
        return str(values["path"])
    if values.get("example"):
        return str(example_path(str(values["example"])))
    raise ValueError(
        "data.path is not set (or choose a shipped example with data.example)"
    )


def data_digest(section: Mapping[str, Any], table: Any = None) -> str:
    """Fingerprint of the data a section reads: the file's bytes, or for a folder
    (Inspect logs) the table read from it (``table``, loaded if not given)."""
    from .data import file_digest, table_digest

    source = Path(data_source(section))
    if source.is_file():
        return file_digest(source)
    return table_digest(load_data(section).table if table is None else table)


def _count_limit(settings: FitSettings) -> Any:
    """``n_rows -> (largest exact count, why)`` for the precision the fit samples in."""

    def limit(n_rows: int) -> tuple[int, str]:
        precision = settings.resolved_precision(n_rows)
        # A float holds whole numbers exactly up to 2^(mantissa bits + 1).
        largest = 2**24 if precision == "float32" else 2**53
        how = "" if settings.precision == precision else f" for {n_rows} rows"
        return largest, f"{precision} (fit.precision={settings.precision}{how})"

    return limit


def load_data(
    section: Mapping[str, Any],
    model: ModelSpec | None = None,
    settings: FitSettings | None = None,
) -> FeatureSet:
    """Read the table named by the ``data`` section and build features.

    ``data.reader`` picks how: ``table`` (the default: CSV, Parquet, JSON) or
    ``inspect`` (Inspect eval logs, options under ``data.inspect``).

    :param section: the ``data`` config section.
    :param model: the model to fit: with ``data.outcome=auto`` the data are
        checked for the outcome kind it declares (``@model(outcome=...)``).
    :param settings: the fit's settings: counts beyond what its precision holds
        exactly are refused.
    """
    path, reader, fmt, values = _data_arguments(section, model)
    if settings is not None:
        values["count_limit"] = _count_limit(settings)
    if reader == "inspect":
        from .data.inspect_logs import features_from_inspect_logs

        return features_from_inspect_logs(
            path, options=values.pop("inspect", None), **values
        )
    return features_from_config(path, fmt=fmt, **values)


def _data_arguments(
    section: Mapping[str, Any], model: ModelSpec | None
) -> tuple[str, str, str | None, dict[str, Any]]:
    """Source path, reader, format and ``make_features`` arguments of a data section."""
    values = dict(to_plain(section))
    path = data_source(values)
    for key in ("path", "example"):
        values.pop(key, None)
    fmt = values.pop("format", None)
    reader = values.pop("reader", None) or "table"
    if reader not in ("table", "inspect"):
        raise ValueError(f"data.reader must be 'table' or 'inspect', got {reader!r}")
    declared = getattr(model.factory, "outcome", None) if model else None
    values["outcome"] = resolve_outcome(
        values.get("outcome"), declared, model.name if model else None
    )
    return path, reader, fmt, values


def data_settings(section: Mapping[str, Any], model: ModelSpec | None = None) -> None:
    """The data section checked without reading its table: source, reader, roles.

    :raises InputError: one line naming the problem (``data.path`` missing, a
        reader that does not exist, column roles no table can satisfy).
    """
    from .data.features import check_arguments

    try:
        path, _, _, values = _data_arguments(section, model)
    except ValueError as exc:  # data_source's and the reader's plain ValueErrors
        if isinstance(exc, InputError):
            raise
        raise InputError(str(exc)) from exc
    if not Path(path).exists():
        # Relative paths name the current folder, which hydra.job.chdir=true moves.
        where = (
            "" if Path(path).is_absolute() else f", resolved to {Path(path).resolve()}"
        )
        raise InputError(f"{path}: file not found (data.path{where})")
    values.pop("inspect", None)
    check_arguments(source=path, **values)
