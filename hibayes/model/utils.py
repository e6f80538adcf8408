"""Helpers that model files written for the reference tool import.

``from hibayes.model.utils import create_interaction_effects`` (and the link
helpers) work as in UK AISI's hibayes: same call signatures, same sample and
deterministic site names, same values. The effects themselves are built by
:mod:`hibayes.model.coding`, which the built-in models use too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pandas as pd
from scipy.special import expit, ndtr

from .coding import interaction_matrix

__all__ = [
    "cloglog_to_prob",
    "create_interaction_effects",
    "infer_jax_dtype",
    "link_to_key",
    "logit_to_prob",
    "probit_to_prob",
]


def create_interaction_effects(
    name1: str, name2: str, features: Mapping[str, Any], prior: dist.Distribution
) -> jnp.ndarray:
    """Interaction effects of categoricals ``name1`` x ``name2``, summing to zero
    along every row and column.

    Samples ``{name1}_{name2}_effects_constrained`` ((n1-1)(n2-1) values from
    ``prior``) and records the full [n1, n2] matrix as the deterministic
    ``{name1}_{name2}_effects``. When either variable has a single level the
    matrix is all zeros and no site is created.

    :param name1: first categorical (reads ``num_{name1}``).
    :param name2: second categorical (reads ``num_{name2}``).
    :param features: the program's features.
    :param prior: prior of each free effect.
    :return: the [n1, n2] matrix; index it with the two ``_index`` arrays.
    """
    n1, n2 = int(features[f"num_{name1}"]), int(features[f"num_{name2}"])
    if n1 == 1 or n2 == 1:
        return jnp.zeros((n1, n2))
    return interaction_matrix(name1, name2, features, prior)


def infer_jax_dtype(pandas_series: pd.Series) -> Any:
    """The JAX dtype for a numeric pandas column: int32 for signed integers,
    uint32/uint64 and float32/float64 by item size."""
    dtype = pandas_series.dtype
    kind, size = getattr(dtype, "kind", "O"), getattr(dtype, "itemsize", 0)
    if kind == "i":
        return jnp.int32
    if kind == "u":
        return jnp.uint32 if size <= 4 else jnp.uint64
    if kind == "f":
        return jnp.float32 if size <= 4 else jnp.float64
    raise ValueError(
        f"Unsupported pandas dtype '{pandas_series.dtype}' for conversion to JAX dtype."
    )


def logit_to_prob(x: Any) -> Any:
    """Inverse logit link: 1 / (1 + exp(-x))."""
    return expit(x)


def probit_to_prob(x: Any) -> Any:
    """Inverse probit link: the standard normal CDF."""
    return ndtr(x)


def cloglog_to_prob(x: Any) -> Any:
    """Inverse complementary log-log link: 1 - exp(-exp(x))."""
    return -np.expm1(-np.exp(x))


def link_to_key(fn: Callable | str, mapping: Mapping[str, Callable]) -> str:
    """The key of ``mapping`` whose value is ``fn`` (a string is returned as is)."""
    if isinstance(fn, str):
        return fn
    for key, value in mapping.items():
        if value is fn:
            return key
    raise ValueError(f"Unknown link function {fn!r}")
