"""The six built-in models, with the reference tool's names, sites and priors.

Site names and default priors match UK AISI's hibayes so that posteriors are
comparable; the binomial likelihoods use ``logits=`` instead of
``probs=sigmoid(...)``, which is the same distribution computed more stably.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

from ._api import Features, Model, check_features, model
from .coding import (
    categorical_effects,
    interaction_term,
    normalise_interactions,
    required_features,
)

__all__ = [
    "check_features",
    "simplified_group_binomial_exponential",
    "two_level_group_binomial",
    "three_level_group_binomial",
    "three_level_group_binomial_exponential",
    "linear_group_binomial",
    "ordered_logistic_model",
]

_GROUP_FEATURES = ["obs", "num_group", "group_index", "n_total"]
_THREE_LEVEL_FEATURES = [
    "obs",
    "n_total",
    "group_index",
    "num_group",
    "subgroup_index",
    "num_subgroup",
    "subsubgroup_index",
    "num_subsubgroup",
]


def _binomial_obs(features: Features, logits: jnp.ndarray) -> None:
    numpyro.sample(
        "obs",
        dist.Binomial(total_count=features["n_total"], logits=logits),
        obs=features["obs"],
    )


def _group_effects(features: Features, overall_mean: Any, sigma_group: Any) -> Any:
    z_group = numpyro.sample(
        "z_group", dist.Normal(0, 1).expand([features["num_group"]])
    )
    group_effects = overall_mean + sigma_group * z_group
    numpyro.deterministic("group_effects", group_effects)
    return group_effects


@model(outcome="count")
def simplified_group_binomial_exponential(
    prior_mu_overall_loc: float = 0.0,
    prior_mu_overall_scale: float = 1.0,
    prior_sigma_group_rate: float = 1.0,
) -> Model:
    """One level of group effects with an Exponential prior on their spread."""

    def model(features: Features) -> None:
        check_features(features, _GROUP_FEATURES)
        overall_mean = numpyro.sample(
            "overall_mean", dist.Normal(prior_mu_overall_loc, prior_mu_overall_scale)
        )
        sigma_group = numpyro.sample(
            "sigma_group", dist.Exponential(rate=prior_sigma_group_rate)
        )
        group_effects = _group_effects(features, overall_mean, sigma_group)
        _binomial_obs(features, group_effects[features["group_index"]])

    return model


@model(outcome="count")
def two_level_group_binomial(
    prior_mu_overall_loc: float = 0.0,
    prior_mu_overall_scale: float = 1.0,
    prior_sigma_overall_scale: float = 0.5,
    prior_sigma_group_scale: float = 0.1,
    sample_overall_mean_directly: bool = True,
) -> Model:
    """Group effects around a non-centred overall mean, HalfNormal spreads.

    overall_mean = mu_overall + sigma_overall * z_overall, and the likelihood sees
    only overall_mean: in (mu_overall, sigma_overall, z_overall) the posterior is a
    thin curved ridge that NUTS crosses with long trajectories and divergences.
    With ``sample_overall_mean_directly`` (default) the sampler draws
    ``overall_mean`` ~ N(loc + sigma_overall * z_overall, scale) and records
    ``mu_overall`` = overall_mean - sigma_overall * z_overall as a deterministic:
    a shift with unit Jacobian, so the joint density and the posterior of every
    site are unchanged.
    """

    def model(features: Features) -> None:
        check_features(features, _GROUP_FEATURES)
        sigma_overall = numpyro.sample(
            "sigma_overall", dist.HalfNormal(prior_sigma_overall_scale)
        )
        z_overall = numpyro.sample("z_overall", dist.Normal(0, 1))
        if sample_overall_mean_directly:
            shift = sigma_overall * z_overall
            overall_mean = numpyro.sample(
                "overall_mean",
                dist.Normal(prior_mu_overall_loc + shift, prior_mu_overall_scale),
            )
            numpyro.deterministic("mu_overall", overall_mean - shift)
        else:
            mu_overall = numpyro.sample(
                "mu_overall", dist.Normal(prior_mu_overall_loc, prior_mu_overall_scale)
            )
            overall_mean = mu_overall + sigma_overall * z_overall
            numpyro.deterministic("overall_mean", overall_mean)
        sigma_group = numpyro.sample(
            "sigma_group", dist.HalfNormal(prior_sigma_group_scale)
        )
        group_effects = _group_effects(features, overall_mean, sigma_group)
        _binomial_obs(features, group_effects[features["group_index"]])

    return model


def _three_level(
    features: Features,
    overall_mean_prior: dist.Distribution,
    sigma_prior: Callable[[str], dist.Distribution],
) -> None:
    """Nested group > subgroup > subsubgroup effects as dense [G, S, SS] tensors."""
    check_features(features, _THREE_LEVEL_FEATURES)
    n_g, n_s, n_ss = (
        features[f"num_{k}"] for k in ("group", "subgroup", "subsubgroup")
    )
    overall_mean = numpyro.sample("overall_mean", overall_mean_prior)
    sigma_group = numpyro.sample("sigma_group", sigma_prior("group"))
    group_effects = _group_effects(features, overall_mean, sigma_group)
    sigma_subgroup = numpyro.sample("sigma_subgroup", sigma_prior("subgroup"))
    z_subgroup = numpyro.sample("z_subgroup", dist.Normal(0, 1).expand([n_g, n_s]))
    subgroup_effects = group_effects[:, None] + sigma_subgroup * z_subgroup
    numpyro.deterministic("subgroup_effects", subgroup_effects)
    sigma_subsubgroup = numpyro.sample("sigma_subsubgroup", sigma_prior("subsubgroup"))
    z_subsubgroup = numpyro.sample(
        "z_subsubgroup", dist.Normal(0, 1).expand([n_g, n_s, n_ss])
    )
    subsubgroup_effects = (
        subgroup_effects[:, :, None] + sigma_subsubgroup * z_subsubgroup
    )
    numpyro.deterministic("subsubgroup_effects", subsubgroup_effects)
    logits = subsubgroup_effects[
        features["group_index"],
        features["subgroup_index"],
        features["subsubgroup_index"],
    ]
    _binomial_obs(features, logits)


@model(outcome="count")
def three_level_group_binomial(
    prior_overall_mean_loc: float = 0.0,
    prior_overall_mean_scale: float = 1.0,
    prior_sigma_group_scale: float = 0.1,
    prior_sigma_subgroup_scale: float = 0.1,
    prior_sigma_subsubgroup_scale: float = 0.1,
) -> Model:
    """Three nested levels of effects with HalfNormal spreads."""
    scales = {
        "group": prior_sigma_group_scale,
        "subgroup": prior_sigma_subgroup_scale,
        "subsubgroup": prior_sigma_subsubgroup_scale,
    }

    def model(features: Features) -> None:
        _three_level(
            features,
            dist.Normal(prior_overall_mean_loc, prior_overall_mean_scale),
            lambda level: dist.HalfNormal(scales[level]),
        )

    return model


@model(outcome="count")
def three_level_group_binomial_exponential(
    prior_overall_mean_loc: float = 0.0,
    prior_overall_mean_scale: float = 1.0,
    prior_sigma_group_rate: float = 1.0,
    prior_sigma_subgroup_rate: float = 1.0,
    prior_sigma_subsubgroup_rate: float = 1.0,
) -> Model:
    """Three nested levels of effects with Exponential spreads."""
    rates = {
        "group": prior_sigma_group_rate,
        "subgroup": prior_sigma_subgroup_rate,
        "subsubgroup": prior_sigma_subsubgroup_rate,
    }

    def model(features: Features) -> None:
        _three_level(
            features,
            dist.Normal(prior_overall_mean_loc, prior_overall_mean_scale),
            lambda level: dist.Exponential(rate=rates[level]),
        )

    return model


def _linear_predictor(
    features: Features,
    intercept: Any,
    main_effects: Sequence[str] | None,
    continuous_effects: Sequence[str] | None,
    interactions: list[tuple[str, str]],
    effect_coding: bool,
    main_prior: dist.Distribution,
    continuous_prior: dist.Distribution | None,
    interaction_prior: dist.Distribution,
    contrasts: bool = False,
) -> Any:
    """Intercept + coded main effects + continuous slopes + interactions."""
    eta = intercept
    for var in main_effects or []:
        coefs = categorical_effects(var, features, main_prior, effect_coding, contrasts)
        eta = eta + coefs[features[f"{var}_index"]]
    for var in continuous_effects or []:
        coef = numpyro.sample(f"{var}_coef", continuous_prior)
        eta = eta + coef * features[var]
    for a, b in interactions:
        eta = eta + interaction_term(
            a, b, features, interaction_prior, continuous_effects or (), contrasts
        )
    return eta


@model(outcome="count")
def linear_group_binomial(
    main_effects: list[str] | None = None,
    interactions: list[tuple[str, str]] | None = None,
    effect_coding_for_main_effects: bool = True,
    prior_intercept_loc: float = 0.0,
    prior_intercept_scale: float = 1.0,
    prior_main_effects_loc: float = 0.0,
    prior_main_effects_scale: float = 0.5,
    prior_interaction_loc: float = 0.0,
    prior_interaction_scale: float = 0.3,
) -> Model:
    """Non-hierarchical binomial regression on categorical predictors."""
    pairs = normalise_interactions(interactions)

    def model(features: Features) -> None:
        check_features(
            features, ["obs", "n_total", *required_features(main_effects, None, pairs)]
        )
        intercept = numpyro.sample(
            "intercept", dist.Normal(prior_intercept_loc, prior_intercept_scale)
        )
        eta = _linear_predictor(
            features,
            intercept,
            main_effects,
            None,
            pairs,
            effect_coding_for_main_effects,
            dist.Normal(prior_main_effects_loc, prior_main_effects_scale),
            None,
            dist.Normal(prior_interaction_loc, prior_interaction_scale),
        )
        _binomial_obs(features, eta)

    return model


@model(outcome="ordinal")
def ordered_logistic_model(
    main_effects: list[str] | None = None,
    continuous_effects: list[str] | None = None,
    interactions: list[tuple[str, str]] | None = None,
    num_classes: int = 11,
    effect_coding_for_main_effects: bool = True,
    prior_intercept_loc: float = 0.0,
    prior_intercept_scale: float = 1.0,
    prior_main_effects_loc: float = 0.0,
    prior_main_effects_scale: float = 1.0,
    prior_continuous_loc: float = 0.0,
    prior_continuous_scale: float = 1.0,
    prior_interaction_loc: float = 0.0,
    prior_interaction_scale: float = 1.0,
    prior_first_cutpoint_loc: float = -4.0,
    prior_first_cutpoint_scale: float = 0.2,
    prior_cutpoint_diffs_loc: float = -0.5,
    prior_cutpoint_diffs_scale: float = 0.3,
    min_cutpoint_spacing: float = 0.3,
    sample_cutpoints_relative_to_intercept: bool = True,
    sample_effects_as_contrasts: bool = True,
) -> Model:
    """Ordered-logistic regression for ordinal scores 0..num_classes-1.

    The likelihood depends on the intercept and the cutpoints only through their
    difference, so in the original coordinates the posterior has a ridge along
    which only the priors inform, and NUTS needs ever longer trajectories as data
    grows. With ``sample_cutpoints_relative_to_intercept`` (default) the sampler
    draws ``first_cutpoint_offset`` = first_cutpoint - intercept instead of
    ``first_cutpoint``: a shift with unit Jacobian whose prior
    N(loc - intercept, scale) reproduces the original joint density exactly, so
    the posterior is unchanged and ``first_cutpoint`` is still recorded
    (as a deterministic site).

    Effect-coded main effects and categorical interactions are correlated
    through their implied last level (condition number n1 * n2 for an
    interaction). With ``sample_effects_as_contrasts`` (default) the sampler
    draws ``{e}_effects_contrasts`` in an orthonormal sum-to-zero basis, under
    the exact image of the same Normal prior, and records
    ``{e}_effects_constrained`` and ``{e}_effects`` as deterministic sites (see
    :mod:`hibayes.model.contrasts`): same posterior, nearly uncorrelated
    coordinates, so a diagonal mass matrix suffices.
    """
    both = sorted(set(main_effects or []) & set(continuous_effects or []))
    if both:
        raise ValueError(
            f"ordered_logistic_model: {', '.join(both)} cannot be both a categorical "
            "main effect and a continuous effect"
        )
    if int(num_classes) < 2:
        raise ValueError(
            f"ordered_logistic_model: num_classes must be >= 2, got {num_classes}"
        )
    num_classes = int(num_classes)
    pairs = normalise_interactions(interactions)

    def model(features: Features) -> None:
        check_features(
            features,
            ["obs", *required_features(main_effects, continuous_effects, pairs)],
        )
        intercept = numpyro.sample(
            "intercept", dist.Normal(prior_intercept_loc, prior_intercept_scale)
        )
        eta = _linear_predictor(
            features,
            intercept,
            main_effects,
            continuous_effects,
            pairs,
            effect_coding_for_main_effects,
            dist.Normal(prior_main_effects_loc, prior_main_effects_scale),
            dist.Normal(prior_continuous_loc, prior_continuous_scale),
            dist.Normal(prior_interaction_loc, prior_interaction_scale),
            sample_effects_as_contrasts,
        )
        if sample_cutpoints_relative_to_intercept:
            offset = numpyro.sample(
                "first_cutpoint_offset",
                dist.Normal(
                    prior_first_cutpoint_loc - intercept, prior_first_cutpoint_scale
                ),
            )
            first_cutpoint = numpyro.deterministic("first_cutpoint", intercept + offset)
        else:
            first_cutpoint = numpyro.sample(
                "first_cutpoint",
                dist.Normal(prior_first_cutpoint_loc, prior_first_cutpoint_scale),
            )
        if num_classes > 2:
            diffs = numpyro.sample(
                "cutpoint_diffs",
                dist.LogNormal(
                    prior_cutpoint_diffs_loc, prior_cutpoint_diffs_scale
                ).expand([num_classes - 2]),
            )
            cutpoints = jnp.concatenate(
                [
                    jnp.reshape(first_cutpoint, (1,)),
                    first_cutpoint + jnp.cumsum(diffs + min_cutpoint_spacing),
                ]
            )
        else:
            cutpoints = jnp.reshape(first_cutpoint, (1,))
        numpyro.deterministic("cutpoints", cutpoints)
        eta = jnp.broadcast_to(eta, jnp.shape(features["obs"]))
        numpyro.sample("obs", dist.OrderedLogistic(eta, cutpoints), obs=features["obs"])

    return model
