"""Shared building blocks for regression-style models: coded effects, interactions.

Every built-in model with categorical predictors builds its linear predictor from
these functions, so site names and coding rules are the same everywhere:

- effect coding samples ``{e}_effects_constrained`` [n-1] and sets the last level
  to minus their sum; dummy coding samples ``{e}_effects_raw`` [n-1] with level 0
  fixed at 0; both record the full vector as the deterministic ``{e}_effects`` [n];
- categorical x categorical interactions sample ``{a}_{b}_effects_constrained``
  [(n1-1)(n2-1)] and record a doubly sum-to-zero ``{a}_{b}_effects`` [n1, n2];
- with ``contrasts=True`` and a Normal prior, effect-coded terms sample
  ``{e}_effects_contrasts`` (orthonormal sum-to-zero coordinates, the exact image
  of the same prior, see :mod:`hibayes.model.contrasts`) and record
  ``{e}_effects_constrained`` as a deterministic: same sites, same posterior;
- categorical x continuous: one slope per level (``{a}_{b}_effects`` [n]);
  continuous x continuous: one coefficient (``{a}_{b}_effects``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

from .contrasts import SumToZeroNormal, sum_to_zero_basis

__all__ = [
    "categorical_effects",
    "interaction_matrix",
    "interaction_term",
    "required_features",
    "normalise_interactions",
]


def normalise_interactions(
    interactions: Sequence[Sequence[str]] | None,
) -> list[tuple[str, str]]:
    """Turn a config's interaction list into pairs, refusing anything else."""
    pairs = []
    for item in interactions or []:
        if isinstance(item, str):
            parts = [p.strip() for p in item.replace("*", ":").split(":")]
        else:
            parts = list(item)
        if len(parts) != 2 or parts[0] == parts[1]:
            raise ValueError(
                f"an interaction must name two different variables, got {item!r}"
            )
        pairs.append((str(parts[0]), str(parts[1])))
    return pairs


def required_features(
    main_effects: Sequence[str] | None,
    continuous_effects: Sequence[str] | None,
    interactions: Sequence[tuple[str, str]],
) -> list[str]:
    """Feature names that a linear predictor with these terms reads."""
    continuous = set(continuous_effects or [])
    needed: list[str] = []

    def add_categorical(var: str) -> None:
        for key in (f"{var}_index", f"num_{var}"):
            if key not in needed:
                needed.append(key)

    for var in main_effects or []:
        add_categorical(var)
    for var in continuous_effects or []:
        if var not in needed:
            needed.append(var)
    for a, b in interactions:
        for var in (a, b):
            if var in continuous:
                if var not in needed:
                    needed.append(var)
            else:
                add_categorical(var)
    return needed


def _scalar_normal(prior: dist.Distribution) -> bool:
    """Whether ``prior`` is one Normal (the case :class:`SumToZeroNormal` is exact for)."""
    return type(prior) is dist.Normal and prior.batch_shape == ()


def _contrasts(
    name: str, prior: dist.Distribution, levels: tuple[int, ...]
) -> jnp.ndarray:
    """Sample ``{name}_contrasts``; return the effect-coded effects they stand for."""
    z = numpyro.sample(
        f"{name}_contrasts", SumToZeroNormal(prior.loc, prior.scale, levels)
    )
    z = z.reshape(tuple(n - 1 for n in levels))
    if len(levels) == 1:
        return sum_to_zero_basis(levels[0]) @ z
    return sum_to_zero_basis(levels[0]) @ z @ sum_to_zero_basis(levels[1]).T


def categorical_effects(
    name: str,
    features: Mapping[str, Any],
    prior: dist.Distribution,
    effect_coding: bool = True,
    contrasts: bool = False,
) -> jnp.ndarray:
    """Sample the coded effects of categorical ``name`` and return all n levels.

    :param contrasts: sample effect-coded levels in orthonormal sum-to-zero
        coordinates (Normal priors only; the posterior is the same).
    """
    n_levels = int(features[f"num_{name}"])
    if n_levels == 1:
        coefs = jnp.zeros(1)
    elif effect_coding and contrasts and _scalar_normal(prior):
        coefs = _contrasts(f"{name}_effects", prior, (n_levels,))
        numpyro.deterministic(f"{name}_effects_constrained", coefs[:-1])
    elif effect_coding:
        free = numpyro.sample(
            f"{name}_effects_constrained", prior.expand([n_levels - 1])
        )
        coefs = jnp.concatenate([free, -jnp.sum(free, keepdims=True)])
    else:
        free = numpyro.sample(f"{name}_effects_raw", prior.expand([n_levels - 1]))
        coefs = jnp.concatenate([jnp.zeros(1), free])
    numpyro.deterministic(f"{name}_effects", coefs)
    return coefs


def interaction_matrix(
    a: str,
    b: str,
    features: Mapping[str, Any],
    prior: dist.Distribution,
    contrasts: bool = False,
) -> jnp.ndarray:
    """Sample a doubly sum-to-zero interaction between categoricals ``a`` and ``b``."""
    n1, n2 = int(features[f"num_{a}"]), int(features[f"num_{b}"])
    if n1 < 2 or n2 < 2:
        full = jnp.zeros((n1, n2))
    elif contrasts and _scalar_normal(prior):
        full = _contrasts(f"{a}_{b}_effects", prior, (n1, n2))
        numpyro.deterministic(
            f"{a}_{b}_effects_constrained", full[:-1, :-1].reshape(-1)
        )
    else:
        free = numpyro.sample(
            f"{a}_{b}_effects_constrained", prior.expand([(n1 - 1) * (n2 - 1)])
        ).reshape(n1 - 1, n2 - 1)
        # Last column and row make every row and column sum to zero.
        top = jnp.concatenate([free, -free.sum(axis=1, keepdims=True)], axis=1)
        full = jnp.concatenate([top, -top.sum(axis=0, keepdims=True)], axis=0)
    numpyro.deterministic(f"{a}_{b}_effects", full)
    return full


def interaction_term(
    a: str,
    b: str,
    features: Mapping[str, Any],
    prior: dist.Distribution,
    continuous: Sequence[str] = (),
    contrasts: bool = False,
) -> jnp.ndarray:
    """Contribution of the ``a`` x ``b`` interaction to the linear predictor."""
    a_cont, b_cont = a in continuous, b in continuous
    if a_cont and b_cont:
        coef = numpyro.sample(f"{a}_{b}_effects", prior)
        return coef * features[a] * features[b]
    if a_cont or b_cont:
        cat, cont = (b, a) if a_cont else (a, b)
        slopes = numpyro.sample(
            f"{a}_{b}_effects", prior.expand([int(features[f"num_{cat}"])])
        )
        return slopes[features[f"{cat}_index"]] * features[cont]
    full = interaction_matrix(a, b, features, prior, contrasts)
    return full[features[f"{a}_index"], features[f"{b}_index"]]
