"""Turn a model factory, hyperparameters and features into a traceable program.

JAX compiles a function once per structure. So that a prior sweep reuses one
compiled sampler, numeric hyperparameters and array features enter the program
as *arguments* (traced), while integers that shape arrays (``num_group``),
strings and lists stay *static* and decide the cache key. The user's factory is
called inside the traced function, so its code is unchanged.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from numpyro.handlers import seed, trace

from ..model import ModelError, ModelFactory, bind_hyperparameters
from .collapse import ROW_WEIGHTS, RowCollapse, WeightObs, collapse_rows

__all__ = ["Program", "build_program", "SiteInfo"]


@dataclass(frozen=True)
class SiteInfo:
    """What a pre-flight trace of the program saw.

    :param shapes: site name -> shape of one draw, for every sample and
        deterministic site.
    :param latent: names of unobserved sample sites.
    :param deterministic: names of deterministic sites.
    """

    shapes: dict[str, tuple[int, ...]]
    latent: list[str]
    deterministic: list[str]


@dataclass
class Program:
    """A model ready to compile: static parts fixed, traced parts as arguments.

    :param name: registered model name.
    :param fn: NumPyro program ``fn(arrays, hyper)``; ``arrays`` holding
        :data:`ROW_WEIGHTS` weight the ``obs`` site's rows.
    :param arrays: array features (traced), one entry per data row.
    :param hyper: numeric hyperparameters (traced, as float32 scalars); empty
        when the model needs them as Python constants.
    :param hyperparameters: every bound factory argument, for the record.
    :param structure_key: digest of everything that forces a recompile.
    :param sites: what the pre-flight trace saw.
    """

    name: str
    fn: Callable[..., None]
    arrays: dict[str, np.ndarray]
    hyper: dict[str, Any]
    hyperparameters: dict[str, Any]
    structure_key: str
    sites: SiteInfo = field(repr=False)
    rows: RowCollapse | None = field(default=None, repr=False)

    @property
    def sampled_arrays(self) -> dict[str, np.ndarray]:
        """What the sampler reads: the unique rows and their weights when collapsed."""
        return _sampled(self.arrays, self.rows)


def _sampled(
    arrays: dict[str, np.ndarray], rows: RowCollapse | None
) -> dict[str, np.ndarray]:
    return arrays if rows is None else {**rows.arrays, ROW_WEIGHTS: rows.weights}


def _is_traceable_number(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, float):
        return True
    # An int default such as ``prior_mu_loc=0`` is still a prior value.
    return isinstance(value, int) and key.startswith("prior_")


def _split_features(features: Mapping[str, Any]) -> tuple[dict, dict]:
    arrays, static = {}, {}
    for key, value in features.items():
        if isinstance(value, (np.ndarray, jax.Array)) and np.ndim(value) > 0:
            arrays[key] = np.asarray(value)
        else:
            static[key] = value
    return arrays, static


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


def _digest(payload: Any) -> str:
    text = json.dumps(_jsonable(payload), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _make_fn(
    factory: ModelFactory, static_hyper: dict, static_features: dict
) -> Callable:
    def program(arrays: Mapping[str, Any], hyper: Mapping[str, Any]) -> None:
        inner = factory(**static_hyper, **hyper)
        features = {**static_features, **arrays}
        weights = features.pop(ROW_WEIGHTS, None)
        if weights is None:
            inner(features)
        else:
            with WeightObs(weights):
                inner(features)

    return program


def _not_positive(hyper: Mapping[str, Any]) -> str:
    """Name the scale/rate hyperparameters that are not > 0 (the usual culprit)."""
    bad = []
    for key, value in hyper.items():
        if any(word in key for word in ("scale", "rate", "sigma", "concentration")):
            arr = np.asarray(value)
            if arr.size and np.issubdtype(arr.dtype, np.number) and np.any(arr <= 0):
                bad.append(f"{key}={float(arr):g}" if arr.ndim == 0 else key)
    return f" (must be > 0: {', '.join(bad)})" if bad else ""


def _preflight(fn: Callable, arrays: dict, hyper: dict, name: str) -> SiteInfo:
    """Run the program once, concretely and with argument validation on."""
    with numpyro.validation_enabled(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            tr = trace(seed(fn, jax.random.PRNGKey(0))).get_trace(arrays, hyper)
        except ModelError:
            raise
        except AssertionError as exc:
            if "unique names" not in str(exc):
                raise
            site = str(exc).split("`")[1] if "`" in str(exc) else "?"
            raise ModelError(
                f"model '{name}' samples the site '{site}' twice: every "
                "numpyro.sample (obs included) needs a name of its own"
            ) from exc
        except ValueError as exc:
            raise ModelError(
                f"model '{name}' rejected its inputs: {exc}{_not_positive(hyper)}"
            ) from exc
    shapes, latent, deterministic = {}, [], []
    for site_name, site in tr.items():
        if site["type"] == "sample":
            shapes[site_name] = tuple(np.shape(site["value"]))
            if not site["is_observed"]:
                latent.append(site_name)
        elif site["type"] == "deterministic":
            shapes[site_name] = tuple(np.shape(site["value"]))
            deterministic.append(site_name)
    return SiteInfo(shapes=shapes, latent=latent, deterministic=deterministic)


def _run_for_shape(fn: Callable, arrays: Any, hyper: Any) -> jax.Array:
    trace(seed(fn, jax.random.PRNGKey(0))).get_trace(arrays, hyper)
    return jnp.zeros(())


def _code_digest(code: Any) -> str:
    """Digest of a function's bytecode including nested functions (the program)."""
    h = hashlib.sha256(code.co_code)
    for const in code.co_consts:
        if hasattr(const, "co_code"):
            h.update(_code_digest(const).encode())
        else:
            h.update(repr(const).encode())
    return h.hexdigest()


def _traces_with_tracers(fn: Callable, arrays: dict, hyper: dict) -> bool:
    try:
        jax.eval_shape(
            lambda a, h: _run_for_shape(fn, a, h),
            arrays,
            hyper,
        )
    except (
        jax.errors.ConcretizationTypeError,
        jax.errors.TracerBoolConversionError,
        jax.errors.TracerIntegerConversionError,
        jax.errors.TracerArrayConversionError,
    ):
        return False
    return True


def _check_traceable(fn: Callable, arrays: dict, hyper: dict, name: str) -> None:
    """Refuse, before sampling, a program that uses a traced value in Python control flow.

    NUTS traces the program: a Python ``if`` on a sampled value (or a data array)
    fails deep inside JAX with ``TracerBoolConversionError``; say so plainly.
    """
    try:
        jax.eval_shape(lambda a, h: _run_for_shape(fn, a, h), arrays, hyper)
    except (
        jax.errors.ConcretizationTypeError,
        jax.errors.TracerBoolConversionError,
        jax.errors.TracerIntegerConversionError,
        jax.errors.TracerArrayConversionError,
    ) as exc:
        raise ModelError(
            f"model '{name}' uses a sampled value (or a data array) in Python control "
            f"flow ({type(exc).__name__}: `if`, `while`, bool() or int() on it), which "
            "NUTS cannot trace: use jnp.where(condition, a, b) (or jax.lax.cond) "
            "instead of `if`"
        ) from exc


def build_program(
    factory: ModelFactory,
    features: Mapping[str, Any],
    hyperparameters: Mapping[str, Any] | None = None,
    collapse_identical_rows: bool = False,
) -> Program:
    """Bind hyperparameters, split traced from static parts, check the program.

    :param factory: a ``@model``-decorated factory.
    :param features: the features dict (arrays and ints) the program reads.
    :param hyperparameters: factory keyword arguments; defaults fill the rest.
    :param collapse_identical_rows: sample from the distinct rows, weighted (see
        :mod:`hibayes.inference.collapse`); skipped when no row repeats or when
        a latent or deterministic site has one entry per row.
    :raises ModelError: unknown arguments, invalid prior values, missing
        features or a program without an ``obs`` site, all before sampling.
    """
    name = factory.__name__
    values = bind_hyperparameters(
        name, factory.builder, (), dict(hyperparameters or {})
    )
    arrays, static_features = _split_features(features)
    traced = {k: v for k, v in values.items() if _is_traceable_number(k, v)}
    static_hyper = {k: v for k, v in values.items() if k not in traced}
    hyper = {k: jnp.asarray(v, dtype=jnp.float32) for k, v in traced.items()}
    fn = _make_fn(factory, static_hyper, static_features)
    sites = _preflight(fn, arrays, hyper, name)
    if hyper and not _traces_with_tracers(fn, arrays, hyper):
        # The model branches on a hyperparameter in Python: compile per value.
        static_hyper, hyper = values, {}
        fn = _make_fn(factory, static_hyper, static_features)
        _check_traceable(fn, arrays, hyper, name)
    elif not hyper:
        _check_traceable(fn, arrays, hyper, name)
    rows = _collapsed(arrays, sites) if collapse_identical_rows else None
    origin = factory.builder.__module__ + ":" + factory.builder.__qualname__
    code = getattr(factory.builder, "__code__", None)
    structure_key = _digest(
        {
            "model": origin,
            "code": _code_digest(code) if code else "",
            "static_hyper": static_hyper,
            "traced": sorted(hyper),
            "static_features": static_features,
            "x64": bool(jax.config.jax_enable_x64),  # float64 sampling compiles anew
            "arrays": {
                k: [list(v.shape), str(v.dtype)]
                for k, v in _sampled(arrays, rows).items()
            },
        }
    )
    return Program(
        name=name,
        fn=fn,
        arrays=arrays,
        hyper=hyper,
        hyperparameters=values,
        structure_key=structure_key,
        sites=sites,
        rows=rows,
    )


def _collapsed(arrays: dict, sites: SiteInfo) -> RowCollapse | None:
    """The collapsed rows, or ``None`` where collapsing would change the model or gain nothing."""
    if "obs" not in arrays:
        return None
    n_rows = arrays["obs"].shape[0]
    per_row_sites = [
        name
        for name in (*sites.latent, *sites.deterministic)
        if sites.shapes[name][:1] == (n_rows,)
    ]
    if per_row_sites:
        return None  # e.g. one latent effect per row: its draws must stay per row
    rows = collapse_rows(arrays)
    return rows if rows.n_unique < n_rows else None
