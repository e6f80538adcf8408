"""The NUTS kernel a fit uses, built in one place for the one-call and chunked samplers.

Both samplers must draw the same numbers for the same seed, so they share the
kernel's settings and the fields they collect from each iteration.
"""

from __future__ import annotations

import numpy as np
from numpyro.infer import (
    NUTS,
    init_to_feasible,
    init_to_mean,
    init_to_median,
    init_to_sample,
    init_to_uniform,
)

from .program import Program
from .settings import FitSettings, resolve_dense_mass

__all__ = ["EXTRA_FIELDS", "dense_mass", "latent_size", "nuts_kernel"]

#: Sampler state fields kept per draw besides the latent values (NumPyro names).
EXTRA_FIELDS = (
    "diverging",
    "energy",
    "num_steps",
    "accept_prob",
    "adapt_state.step_size",
    "potential_energy",
)
_INIT = {
    "median": init_to_median,
    "mean": init_to_mean,
    "uniform": init_to_uniform,
    "sample": init_to_sample,
    "feasible": init_to_feasible,
}


def latent_size(program: Program) -> int:
    """Latent values per draw: the dimension the mass matrix adapts over."""
    return sum(
        int(np.prod(program.sites.shapes[name])) for name in program.sites.latent
    )


def dense_mass(program: Program, settings: FitSettings) -> bool:
    """Whether this fit adapts a dense mass matrix (``auto`` resolved)."""
    return resolve_dense_mass(
        settings.dense_mass, latent_size(program), settings.warmup
    )


def nuts_kernel(
    program: Program, settings: FitSettings, adapt_mass_matrix: bool = True
) -> NUTS:
    """A NUTS kernel for ``program`` with the fit's settings.

    :param adapt_mass_matrix: ``False`` keeps the mass matrix a chain starts with
        (refits that reuse the fit's, :mod:`.refit`); warmup then adapts the step
        size only.
    """
    return NUTS(
        program.fn,
        target_accept_prob=settings.target_accept,
        max_tree_depth=settings.max_tree_depth,
        init_strategy=_INIT[settings.init_strategy],
        dense_mass=dense_mass(program, settings),
        adapt_mass_matrix=adapt_mass_matrix,
    )
