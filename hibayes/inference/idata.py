"""Assemble, save and load the ArviZ InferenceData of a fit."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hibayes.inference.labels import infer_dims

if TYPE_CHECKING:  # imported where used: ArviZ takes seconds to import
    import arviz as az

__all__ = ["PPC_DRAWS_ATTR", "build_idata", "save_idata", "load_idata"]

#: Attribute of a thinned ``posterior_predictive`` group: the flat (chain x draw)
#: indices of the posterior draws its replicates came from, in order.
PPC_DRAWS_ATTR = "posterior_draws"


def _tree_depth(num_steps: np.ndarray) -> np.ndarray:
    # A NUTS tree of depth d takes between 2**(d-1) and 2**d - 1 leapfrog steps.
    return np.floor(np.log2(np.maximum(num_steps, 1))).astype(np.int64) + 1


def sample_stats_from_extras(
    extras: Mapping[str, np.ndarray], max_tree_depth: int
) -> dict:
    """Map NumPyro's extra fields to ArviZ's sample_stats names."""
    depth = _tree_depth(np.asarray(extras["num_steps"]))
    return {
        "diverging": np.asarray(extras["diverging"], dtype=bool),
        # NumPyro's ``energy`` is the total Hamiltonian, what E-BFMI needs.
        "energy": np.asarray(extras["energy"]),
        "lp": -np.asarray(extras["potential_energy"]),
        "n_steps": np.asarray(extras["num_steps"]),
        "tree_depth": depth,
        "reached_max_treedepth": depth >= max_tree_depth,
        "acceptance_rate": np.asarray(extras["accept_prob"]),
        "step_size": np.asarray(extras["adapt_state.step_size"]),
    }


def _with_sample_dims(tree: Mapping[str, np.ndarray]) -> dict:
    """Give (draw, ...) arrays a leading chain axis of 1."""
    return {k: np.asarray(v)[None, ...] for k, v in tree.items()}


def build_idata(
    *,
    posterior: Mapping[str, np.ndarray],
    sample_stats: Mapping[str, np.ndarray],
    log_likelihood: np.ndarray | None,
    posterior_predictive: np.ndarray | None,
    prior: Mapping[str, np.ndarray] | None,
    observed: np.ndarray,
    constant_data: Mapping[str, np.ndarray],
    coords: Mapping[str, Any],
    site_shapes: Mapping[str, tuple[int, ...]],
    attrs: Mapping[str, Any],
    log_prior: Mapping[str, np.ndarray] | None = None,
    log_prior_attrs: Mapping[str, str] | None = None,
    posterior_predictive_draws: np.ndarray | None = None,
) -> az.InferenceData:
    """Build InferenceData with every group, axes labelled by category name.

    ``posterior``, ``sample_stats`` and ``log_likelihood`` have leading
    (chain, draw) axes; ``posterior_predictive`` is (chain, draw, obs) or
    (draw, obs) when it was drawn from a thinned posterior, whose flat (chain x
    draw) indices ``posterior_predictive_draws`` become the group's attribute
    :data:`PPC_DRAWS_ATTR` (PSIS LOO-PIT pairs each replicate with its draw's
    log-likelihood); ``prior`` holds
    (draw, ...) arrays including ``obs``; ``log_prior`` holds (chain, draw)
    log densities, one per power-scaled prior site
    (:mod:`hibayes.inference.log_prior`).
    """
    import arviz as az

    dims, all_coords = infer_dims(site_shapes, coords)
    obs_dims = ["observation"]
    dims = {**dims, "obs": obs_dims}
    for name, value in constant_data.items():
        if np.ndim(value) == 1 and len(value) == len(observed):
            dims.setdefault(name, obs_dims)
    groups: dict[str, Any] = {
        "posterior": dict(posterior),
        "sample_stats": dict(sample_stats),
        "observed_data": {"obs": np.asarray(observed)},
        "constant_data": dict(constant_data),
    }
    if log_likelihood is not None:
        groups["log_likelihood"] = {"obs": np.asarray(log_likelihood)}
    if posterior_predictive is not None:
        ppc = np.asarray(posterior_predictive)
        if ppc.ndim == np.ndim(observed) + 1:
            ppc = ppc[None, ...]
        groups["posterior_predictive"] = {"obs": ppc}
    if prior:
        prior = dict(prior)
        prior_obs = prior.pop("obs", None)
        groups["prior"] = _with_sample_dims(prior)
        if prior_obs is not None:
            groups["prior_predictive"] = _with_sample_dims({"obs": prior_obs})
    safe_attrs = {
        k: (v if isinstance(v, (str, int, float)) else json.dumps(v, default=str))
        for k, v in attrs.items()
    }
    present = set().union(*(g.keys() for g in groups.values()))
    dims = {k: v for k, v in dims.items() if k in present}
    used = {d for v in dims.values() for d in v}
    coords_used = {k: v for k, v in all_coords.items() if k in used}
    idata = az.from_dict(**groups, coords=coords_used, dims=dims)
    for group in ("posterior", "sample_stats"):
        idata[group].attrs.update(safe_attrs)
    if posterior_predictive_draws is not None and "posterior_predictive" in groups:
        draws = np.asarray(posterior_predictive_draws, dtype=np.int64)
        idata.posterior_predictive.attrs[PPC_DRAWS_ATTR] = draws
    if log_prior:
        idata.add_groups(
            {"log_prior": {k: np.asarray(v) for k, v in log_prior.items()}}
        )
        idata.log_prior.attrs.update(dict(log_prior_attrs or {}))
    return idata


def save_idata(idata: az.InferenceData, path: str | Path) -> Path:
    """Write InferenceData to netCDF; returns the path written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # ArviZ's compress=True is zlib at level 4, which draws of floats barely repay:
    # a 160 MB log-likelihood (20,000 rows) took 7.1 s for 116 MB. Byte shuffling at
    # level 1 gave 97 MB in 2.6 s. ArviZ's to_netcdf takes no encoding, so it is set
    # on the variables themselves, which xarray honours when writing.
    for group in idata.groups():
        for var in idata[group].variables.values():
            if var.dtype.kind in "biuf":
                var.encoding.update(zlib=True, complevel=1, shuffle=True)
    idata.to_netcdf(str(path), compress=False)
    return path


def load_idata(path: str | Path) -> az.InferenceData:
    """Read InferenceData written by :func:`save_idata` (fully loaded in memory)."""
    import arviz as az

    idata = az.from_netcdf(str(path))
    for group in idata.groups():
        idata[group].load()  # detach from the file so it can be moved or deleted
    return idata
