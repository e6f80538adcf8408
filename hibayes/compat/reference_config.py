"""Read a reference-format ``hibayes.yaml`` and turn its model list into sweep jobs.

The reference tool (UK AISI's hibayes) configures a whole pipeline in one YAML
file. This module honours the parts that map onto ours: ``model.path``,
``model.models`` (each entry's ``tag``, ``fit`` settings and prior
hyperparameters), ``platform.chain_method`` and the convergence checkers'
thresholds. Everything else is listed in :attr:`ReferenceConfig.ignored`, never
dropped silently. :func:`job_overrides` renders each entry as Hydra overrides;
the sweeper (``hydra_plugins/hibayes_sweeper``) runs one job per entry.

Nothing here composes configs, samples or tracks; only
:func:`validate_reference_config` imports model files.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from hibayes.errors import InputError

__all__ = [
    "ModelEntry",
    "ReferenceConfig",
    "ReferenceConfigError",
    "job_overrides",
    "parse_reference_config",
    "read_reference_config",
    "reference_tags",
    "render_value",
    "validate_reference_config",
]

# The reference tool's model when a file lists none.
DEFAULT_MODEL = "two_level_group_binomial"
# Top-level sections of the reference format with nothing to map onto here.
UNUSED_SECTIONS = {
    "data_loader": "data is chosen with data=... (conf/data)",
    "data_process": "features are built by the data config (conf/data)",
    "communicate": "every fit writes its plots, summary and comparison",
}
# Keys of a model entry's config that configure the reference tool's plots,
# not the model factory (the reference keeps them out of the factory too).
ENTRY_PLOT_KEYS = ("main_effect_params", "link_function")
# Reference fit keys with no counterpart here.
FIT_UNUSED = {
    "progress_bar": "progress is logged",
    "parallel": "use chain_method",
}
# Reference checker -> our checks key; each of these takes ``threshold``.
CHECKER_THRESHOLDS = {
    "r_hat": "rhat_max",
    "ess_bulk": "ess_bulk_min",
    "ess_tail": "ess_tail_min",
    "divergences": "divergences_max",
    "bfmi": "ebfmi_min",
}
PLATFORM_UNUSED = ("device_type", "num_devices", "gpu_memory_fraction")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ReferenceConfigError(InputError):
    """A reference-format file cannot be read or asks for something we cannot run."""


@dataclass(frozen=True)
class ModelEntry:
    """One model the file asks for.

    :param name: registered model name.
    :param tag: label of this configuration (names the run), or ``None``.
    :param fit: sampler settings overriding ``conf/fit`` (our key names).
    :param hyperparameters: keyword arguments for the model factory.
    """

    name: str
    tag: str | None = None
    fit: Mapping[str, Any] = field(default_factory=dict)
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReferenceConfig:
    """What a reference-format file asks for, in our terms.

    :param source: the file read (or a description of the mapping parsed).
    :param paths: custom model files or modules (``model.path``), resolved.
    :param entries: the models to fit, in file order.
    :param settings: overrides for every job, dotted key to value, from other
        sections (``fit.chain_method``, ``checks.rhat_max``, ...).
    :param ignored: one line per section or key not used, saying why.
    """

    source: str
    paths: tuple[str, ...] = ()
    entries: tuple[ModelEntry, ...] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)
    ignored: tuple[str, ...] = ()


def read_reference_config(path: str | Path) -> ReferenceConfig:
    """Read and parse a reference-format ``hibayes.yaml``.

    Relative ``model.path`` entries are found beside the file first, then in the
    working directory (where the reference tool looked).

    :param path: the YAML file.
    :raises ReferenceConfigError: unreadable file, bad YAML or bad content.
    """
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise ReferenceConfigError(
            f"models_file not found: {path} (resolved to {file})"
        )
    try:
        data = yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        raise ReferenceConfigError(
            f"{file}: not valid YAML: {_yaml_problem(exc)}"
        ) from exc
    return parse_reference_config(data, source=str(file), base_dir=file.parent)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's error as one line: what and where (1-based line and column)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return f"{problem}{where}"


def parse_reference_config(
    data: Any, source: str = "<mapping>", base_dir: Path | None = None
) -> ReferenceConfig:
    """Parse the content of a reference-format file (see the module docstring).

    :param data: the file's content, as ``yaml.safe_load`` returns it.
    :param source: what to call it in messages.
    :param base_dir: where relative ``model.path`` entries are looked for first.
    :raises ReferenceConfigError: naming the file and key at fault.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ReferenceConfigError(
            f"{source}: expected a mapping of sections, got {type(data).__name__}"
        )
    ignored: list[str] = []
    settings: dict[str, Any] = {}
    for key, value in data.items():
        if key in UNUSED_SECTIONS and value:
            ignored.append(f"{key}: not used ({UNUSED_SECTIONS[key]})")
        elif key not in (*UNUSED_SECTIONS, "model", "check", "platform"):
            ignored.append(f"{key}: not a section of the reference format")
    settings.update(_platform_settings(data.get("platform"), source, ignored))
    settings.update(_check_settings(data.get("check"), source, ignored))
    section = data.get("model") or {}
    if not isinstance(section, Mapping):
        raise ReferenceConfigError(
            f"{source}: model must be a mapping with 'models' "
            f"(and optionally 'path'), got {type(section).__name__}"
        )
    for key in section:
        if key not in ("path", "models"):
            ignored.append(f"model.{key}: not used (model takes 'path' and 'models')")
    paths = _model_paths(section.get("path"), source, base_dir)
    entries = _model_entries(section.get("models"), source, ignored)
    if not entries:
        ignored.append(
            f"model.models: none listed; fitting the reference default {DEFAULT_MODEL}"
        )
        entries = [ModelEntry(DEFAULT_MODEL)]
    _refuse_duplicates(entries, source)
    return ReferenceConfig(source, paths, tuple(entries), settings, tuple(ignored))


def validate_reference_config(config: ReferenceConfig) -> None:
    """Load the custom model files and check every entry's model and arguments.

    :raises hibayes.model.ModelError: an unknown model or an argument its factory
        does not take (with the accepted arguments and a close match listed).
    """
    from hibayes.model import ModelError, bind_hyperparameters, get_model, load_models

    load_models(list(config.paths) or None)
    for i, entry in enumerate(config.entries):
        where = f"{config.source}: model.models[{i}] ({entry.name})"
        try:
            factory = get_model(entry.name)
            bind_hyperparameters(
                entry.name, factory.builder, (), dict(entry.hyperparameters)
            )
        except ModelError as exc:
            raise ModelError(f"{where}: {exc}") from exc


def job_overrides(
    config: ReferenceConfig, builtin_models: Collection[str]
) -> list[list[str]]:
    """One list of Hydra overrides per model entry.

    A model with a ``conf/model`` option is chosen as ``model=<name>`` and its
    arguments set as ``model.<key>=...`` (every factory argument is in that
    file). Any other model is named with ``model.name=...`` and its arguments
    added with ``++model.<key>=...``, which sets a key whether or not the
    composed model config has it.

    :param config: the parsed file.
    :param builtin_models: the options of the ``model`` config group.
    """
    shared = [f"{key}={render_value(value)}" for key, value in config.settings.items()]
    if config.paths:
        paths = config.paths[0] if len(config.paths) == 1 else list(config.paths)
        shared.insert(0, f"model.path={render_value(paths)}")
    jobs = []
    for entry in config.entries:
        if entry.name in builtin_models:
            job, prefix = [f"model={entry.name}"], "model."
        else:
            job, prefix = [f"model.name={render_value(entry.name)}"], "++model."
        job += shared
        if entry.tag is not None:
            job.append(f"model.tag={render_value(entry.tag)}")
        job += [f"fit.{key}={render_value(value)}" for key, value in entry.fit.items()]
        job += [
            f"{prefix}{key}={render_value(value)}"
            for key, value in entry.hyperparameters.items()
        ]
        jobs.append(job)
    return jobs


def reference_tags(config: ReferenceConfig) -> dict[str, str]:
    """Tags for the sweep's parent run: which file, and what it asked for that was not used."""
    return {
        "hibayes.models_file": config.source,
        "hibayes.models_file_ignored": "; ".join(config.ignored)[:5000] or "none",
    }


def render_value(value: Any) -> str:
    """A YAML value as the value of a Hydra override, read back as the same value.

    Strings are always quoted (so ``"1.0"``, ``"null"`` or ``"a,b"`` stay strings
    and never become numbers or sweeps) and ``${`` is escaped (the reference
    format has no interpolation). Lists render as ``[a,b]``, mappings as
    ``{k:v}``, ``None`` as ``null``.

    :raises ReferenceConfigError: for a value the override grammar cannot hold.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        from hydra.core.override_parser.types import Quote, QuotedString

        return QuotedString(
            text=value.replace("${", "\\${"), quote=Quote.single
        ).with_quotes()
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(render_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        items = []
        for key, item in value.items():
            if not isinstance(key, str) or not _IDENTIFIER.fullmatch(key):
                raise ReferenceConfigError(
                    f"mapping key {key!r} cannot be passed on Hydra's command line "
                    "(keys must be identifiers)"
                )
            items.append(f"{key}:{render_value(item)}")
        return "{" + ",".join(items) + "}"
    raise ReferenceConfigError(
        f"value {value!r} of type {type(value).__name__} cannot be "
        "passed on Hydra's command line"
    )


def _model_paths(value: Any, source: str, base_dir: Path | None) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    resolved = []
    for item in items:
        if not isinstance(item, str) or not item:
            raise ReferenceConfigError(
                f"{source}: model.path must be a path or a list of paths, got {item!r}"
            )
        resolved.append(_resolve_path(item, source, base_dir))
    return tuple(resolved)


def _resolve_path(item: str, source: str, base_dir: Path | None) -> str:
    path = Path(item).expanduser()
    if path.is_absolute():
        return str(path)
    candidates = ([base_dir / path] if base_dir else []) + [Path.cwd() / path]
    for candidate in candidates:
        if candidate.exists():
            return str(candidate.resolve())
    if item.endswith(".py") or "/" in item:
        tried = " or ".join(str(c) for c in candidates)
        raise ReferenceConfigError(
            f"{source}: model.path {item!r} not found (looked for {tried})"
        )
    return item  # a module name, imported as such


def _model_entries(section: Any, source: str, ignored: list[str]) -> list[ModelEntry]:
    if section is None:
        return []
    if isinstance(section, Mapping):  # name -> config
        return [
            _entry(name, config, source, f"model.models.{name}", ignored)
            for name, config in section.items()
        ]
    if not isinstance(section, list):
        raise ReferenceConfigError(
            f"{source}: model.models must be a list of names, a list of {{name, config}} "
            f"entries or a mapping name -> config, got {type(section).__name__}"
        )
    entries = []
    for i, item in enumerate(section):
        label = f"model.models[{i}]"
        where = f"{source}: {label}"
        if isinstance(item, str):
            entries.append(_entry(item, None, source, label, ignored))
        elif isinstance(item, Mapping) and "name" in item:
            extra = sorted(set(item) - {"name", "config"})
            if extra:
                raise ReferenceConfigError(
                    f"{where}: keys {extra} beside 'name' and 'config'; put model "
                    "settings under 'config'"
                )
            entries.append(
                _entry(item["name"], item.get("config"), source, label, ignored)
            )
        else:
            raise ReferenceConfigError(
                f"{where}: expected a model name or a mapping with 'name' (and optionally "
                f"'config'), got {item!r}"
            )
    return entries


def _entry(
    name: Any, config: Any, source: str, label: str, ignored: list[str]
) -> ModelEntry:
    where = f"{source}: {label}"
    if not isinstance(name, str) or not name:
        raise ReferenceConfigError(
            f"{where}: model name must be a non-empty string, got {name!r}"
        )
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        raise ReferenceConfigError(
            f"{where}: config must be a mapping, got {type(config).__name__}"
        )
    values = dict(config)
    tag = values.pop("tag", None)
    fit = _fit_settings(values.pop("fit", None), source, label, ignored)
    for key in ENTRY_PLOT_KEYS:
        if key in values:
            values.pop(key)
            ignored.append(
                f"{label}.config.{key}: not used (a plotting "
                "setting of the reference tool)"
            )
    extra = values.pop("extra_kwargs", None) or {}
    if not isinstance(extra, Mapping):
        raise ReferenceConfigError(f"{where}: extra_kwargs must be a mapping")
    hyper = {**dict(extra), **values}  # the reference merges extra_kwargs the same way
    for key in hyper:
        if not isinstance(key, str) or not _IDENTIFIER.fullmatch(key):
            raise ReferenceConfigError(f"{where}: {key!r} is not a valid argument name")
    return ModelEntry(name, None if tag is None else str(tag), fit, hyper)


def _fit_settings(
    section: Any, source: str, label: str, ignored: list[str]
) -> dict[str, Any]:
    from hibayes.inference.settings import FitSettings, FitSettingsError

    where = f"{source}: {label}"
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        raise ReferenceConfigError(
            f"{where}: fit must be a mapping, got {type(section).__name__}"
        )
    known = [f.name for f in fields(FitSettings)]
    out: dict[str, Any] = {}
    for key, value in section.items():
        if key == "method":
            if str(value).upper() != "NUTS":
                raise ReferenceConfigError(
                    f"{where}: fit.method {value!r}: only NUTS is supported"
                )
        elif key in FIT_UNUSED:
            ignored.append(f"{label}.config.fit.{key}: not used ({FIT_UNUSED[key]})")
        elif key in known:
            out[key] = _chain_method(value) if key == "chain_method" else value
        else:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ReferenceConfigError(
                f"{where}: unknown fit setting '{key}'{hint}; known: {', '.join(known)}"
            )
    try:
        FitSettings(**out)  # ranges checked now, before any fit
    except (FitSettingsError, TypeError) as exc:
        raise ReferenceConfigError(f"{where}: {exc}") from exc
    return out


def _chain_method(value: Any) -> Any:
    # The reference spelled it the British way in some versions.
    return "vectorized" if value == "vectorised" else value


def _platform_settings(section: Any, source: str, ignored: list[str]) -> dict[str, Any]:
    if not section:
        return {}
    if not isinstance(section, Mapping):
        raise ReferenceConfigError(f"{source}: platform must be a mapping")
    out = {}
    for key, value in section.items():
        if key == "chain_method":
            out["fit.chain_method"] = _chain_method(value)
        elif key in PLATFORM_UNUSED:
            ignored.append(f"platform.{key}: not used (JAX picks the devices)")
        else:
            ignored.append(f"platform.{key}: not a reference platform setting")
    if "fit.chain_method" in out:
        from hibayes.inference.settings import CHAIN_METHODS

        if out["fit.chain_method"] not in CHAIN_METHODS:
            raise ReferenceConfigError(
                f"{source}: platform.chain_method {section['chain_method']!r} is not one of "
                f"{CHAIN_METHODS}"
            )
    return out


def _checkers(section: Mapping[str, Any], source: str) -> list[tuple[str, Any]]:
    """(checker name, arguments) pairs from ``check.checkers`` or a bare mapping."""
    checkers = (
        section.get("checkers")
        if "checkers" in section
        else {k: v for k, v in section.items() if k != "path"}
    )
    if checkers is None:
        return []
    if isinstance(checkers, Mapping):
        return list(checkers.items())
    if not isinstance(checkers, list):
        raise ReferenceConfigError(
            f"{source}: check.checkers must be a list or a mapping"
        )
    pairs = []
    for item in checkers:
        if isinstance(item, str):
            pairs.append((item, None))
        elif isinstance(item, Mapping) and len(item) == 1:
            pairs.append(next(iter(item.items())))
        else:
            raise ReferenceConfigError(
                f"{source}: check.checkers entry {item!r} is neither "
                "a name nor {name: {arguments}}"
            )
    return pairs


def _check_settings(section: Any, source: str, ignored: list[str]) -> dict[str, Any]:
    if not section:
        return {}
    if not isinstance(section, Mapping):
        raise ReferenceConfigError(f"{source}: check must be a mapping")
    if section.get("path"):
        ignored.append("check.path: custom checkers are not run")
    out: dict[str, Any] = {}
    not_configurable = []
    for name, args in _checkers(section, source):
        if args is not None and not isinstance(args, Mapping):
            raise ReferenceConfigError(
                f"{source}: check {name}: arguments must be a mapping such as "
                f"{{threshold: ...}}, got {args!r}"
            )
        args = dict(args or {})
        key = CHECKER_THRESHOLDS.get(name)
        if key is None:
            not_configurable.append(str(name))
            continue
        if "threshold" in args:
            value = args.pop("threshold")
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ReferenceConfigError(
                    f"{source}: check {name}: threshold must be a number, got {value!r}"
                )
            out[f"checks.{key}"] = value
        else:
            ignored.append(
                f"check {name}: no threshold given; checks.{key} keeps our "
                "default (conf/checks)"
            )
        if args:
            ignored.append(f"check {name}: arguments {sorted(args)} not used")
    if not_configurable:
        ignored.append(
            f"check {', '.join(not_configurable)}: not configurable here (every "
            "fit computes R-hat, ESS, divergences, E-BFMI, LOO, WAIC and "
            "predictive plots)"
        )
    return out


def _refuse_duplicates(entries: list[ModelEntry], source: str) -> None:
    # Runs and the sweep's comparison are named by model and tag.
    seen: dict[tuple[str, str | None], int] = {}
    for i, entry in enumerate(entries):
        key = (entry.name, entry.tag)
        if key in seen:
            raise ReferenceConfigError(
                f"{source}: model.models[{seen[key]}] and [{i}] are both {entry.name} with "
                f"tag {entry.tag!r}; give each a distinct tag (runs are named by model "
                "and tag)"
            )
        seen[key] = i
