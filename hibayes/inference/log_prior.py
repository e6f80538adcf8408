"""Log prior density per posterior draw, by NumPyro's own log-density machinery.

Power-scaling sensitivity (:mod:`hibayes.diagnostics.sensitivity`, ArviZ's
``az.psens``) needs the log prior of every draw. It is computed here by
substituting each draw into the program and evaluating the sample sites with
:func:`numpyro.infer.util.compute_log_probs` (what ``log_density`` sums), jitted
and vmapped over draws: no distribution is re-implemented.

Which priors are power-scaled follows Kallioinen et al. (2023): the *top-level*
ones, here the latent sites whose distribution depends on a hyperparameter of
the factory (``prior_sigma_group_scale`` ...). A standard-normal ``z_group`` of
a non-centred hierarchy is left out: scaling it would scale part of the model's
structure, not a choice of the user. The ``log_prior`` group of a fit holds one
variable per top-level site, so ``az.psens(idata, component="prior")`` scales
exactly those; ``sample_stats.log_prior`` holds the log density of all latent
sites together (it is not in the group, where ``az.psens`` would add it twice).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer.util import compute_log_probs

from ..model import ModelError, ModelFactory
from .program import Program, _is_traceable_number, build_program

__all__ = ["PriorSites", "log_prior_draws", "prior_sites"]

_FUNCTIONS: dict[tuple, Callable] = {}


@dataclass(frozen=True)
class PriorSites:
    """Which latent sites' priors a fit power-scales.

    :param top_level: latent sites whose prior depends on a factory
        hyperparameter (every latent site when none does).
    :param latent: every latent sample site.
    :param how: ``"hyperparameters"`` or ``"all latent"``: how ``top_level``
        was chosen.
    """

    top_level: list[str]
    latent: list[str]
    how: str


def _site_log_probs(
    fn: Callable, arrays: Any, hyper: Any, params: Mapping, names: list[str]
) -> dict[str, jax.Array]:
    """Summed log density of each named site at ``params`` (one draw)."""
    log_probs, _ = compute_log_probs(fn, (arrays, hyper), {}, dict(params))
    return {name: log_probs[name] for name in names}


def _moved(value: Any) -> Any:
    # x1.25 + 0.25 moves every value, and keeps positive scales positive.
    return value * 1.25 + 0.25


def _perturbed(values: Mapping[str, Any]) -> dict[str, Any]:
    """Every prior value of the factory's arguments moved, the rest as they were."""
    return {
        k: (_moved(v) if _is_traceable_number(k, v) else v) for k, v in values.items()
    }


def prior_sites(
    factory: ModelFactory,
    features: Mapping[str, Any],
    program: Program,
    samples: Mapping[str, np.ndarray],
    per_site: Mapping[str, np.ndarray] | None = None,
) -> PriorSites:
    """Find the top-level prior sites: those whose log density at the draws changes
    when the factory's prior values change (latent values held fixed).

    :param samples: latent draws with leading (chain, draw) axes (in the support).
    :param per_site: :func:`log_prior_draws` of ``samples``, if computed already.
    """
    latent = list(program.sites.latent)
    base = per_site if per_site is not None else log_prior_draws(program, samples)
    if program.hyper:  # traced prior values: the same compiled function, moved values
        moved_hyper = {k: _moved(jnp.asarray(v)) for k, v in program.hyper.items()}
        moved = log_prior_draws(program, samples, moved_hyper)
    else:  # prior values compiled in: rebuild the program with moved values
        try:
            other = build_program(
                factory, features, _perturbed(program.hyperparameters)
            )
        except (ModelError, ValueError, TypeError):
            return PriorSites(latent, latent, "all latent")
        moved = log_prior_draws(other, samples)
    top = [
        k
        for k in latent
        if not np.allclose(base[k], moved[k], rtol=1e-6, atol=0.0, equal_nan=False)
    ]
    if not top:  # no prior takes a hyperparameter: every prior is the user's choice
        return PriorSites(latent, latent, "all latent")
    return PriorSites(top, latent, "hyperparameters")


def _draw_fn(program: Program) -> Callable:
    """Jitted ``f(samples, arrays, hyper) -> {site: (n_draws,)}`` for every latent site."""
    key = (program.structure_key,)
    cached = _FUNCTIONS.get(key)
    if cached is not None:
        return cached
    fn, latent = program.fn, list(program.sites.latent)

    def per_draw(params: dict, arrays: dict, hyper: dict) -> dict:
        return _site_log_probs(fn, arrays, hyper, params, latent)

    # The obs site's term is computed by the trace but never returned: XLA drops it.
    batched = jax.jit(jax.vmap(per_draw, in_axes=(0, None, None)))
    _FUNCTIONS[key] = batched
    return batched


def log_prior_draws(
    program: Program,
    samples: Mapping[str, np.ndarray],
    hyper: Mapping[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """Log prior density of each latent site per draw, shape (chain, draw).

    :param samples: latent draws with leading (chain, draw) axes.
    :param hyper: traced prior values (default: the program's own).
    """
    latent = list(program.sites.latent)
    lead = np.shape(samples[latent[0]])[:2]
    flat = {k: np.reshape(samples[k], (-1,) + np.shape(samples[k])[2:]) for k in latent}
    hyper = program.hyper if hyper is None else hyper
    out = _draw_fn(program)(flat, program.sampled_arrays, dict(hyper))
    # float64 on the host: the terms are summed and exponentiated as weights.
    return {k: np.asarray(v, dtype=np.float64).reshape(lead) for k, v in out.items()}
