"""The fit driver: program -> compiled sampler -> draws -> InferenceData."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from hibayes.inference.runtime import jax_platform, use_float_precision
from hibayes.system.heartbeat import stage

from ..model import ModelFactory
from .idata import build_idata, sample_stats_from_extras
from .log_prior import log_prior_draws, prior_sites
from .program import Program, build_program
from .progress import SamplingProgress, expected_sampling_s
from .sampler import get_sampler, predictive_fns, resolve_chain_method, to_numpy
from .settings import FitSettings

if TYPE_CHECKING:
    import arviz as az

__all__ = ["FitResult", "fit_model"]


@dataclass
class FitResult:
    """The outcome of one fit.

    :param idata: posterior, sample_stats, log_likelihood, observed and
        constant data, prior, prior and posterior predictive.
    :param program: the program that was sampled.
    :param settings: the sampler settings used.
    :param chain_method: how the chains actually ran.
    :param precision: what JAX computed in, ``float32`` or ``float64``.
    :param timings: seconds: ``compile``, ``sampling``, ``predictive``, ``total``.
    :param adaptation: each chain's adapted step size and mass matrix
        (:func:`~.chunks.adapted`), which refits reuse; ``None`` if unknown.
    """

    idata: az.InferenceData
    program: Program
    settings: FitSettings
    chain_method: str
    precision: str = "float32"
    timings: dict[str, float] = field(default_factory=dict)
    adaptation: dict | None = None


def _posterior_predictive_draws(
    samples: dict, chains: int, draws: int, wanted: int | None, rng: np.random.Generator
) -> tuple[dict, np.ndarray | None]:
    """Pick which posterior draws feed the posterior predictive.

    :return: the draws flattened over (chain, draw), and their flat indices
        (``None`` when every draw is used).
    """
    total = chains * draws
    if wanted is None or wanted >= total:
        flat = {k: v.reshape((total,) + v.shape[2:]) for k, v in samples.items()}
        return flat, None
    idx = np.sort(rng.choice(total, size=int(wanted), replace=False))
    return {k: v.reshape((total,) + v.shape[2:])[idx] for k, v in samples.items()}, idx


def _log_likelihood(fn: Callable, latent: dict, program: Program) -> np.ndarray:
    """Pointwise log-likelihood, one entry per data row even when rows were collapsed."""
    # float32 whatever the sampling precision: pointwise terms are O(1) to O(10),
    # and at a million rows x 2000 draws float64 would double an 8 GB array.
    if program.rows is None:
        return np.asarray(fn(latent, program.arrays, program.hyper), dtype=np.float32)
    # Identical rows have identical terms: compute each once, copy it to every row.
    unique = np.asarray(
        fn(latent, program.rows.arrays, program.hyper), dtype=np.float32
    )
    return program.rows.expand(unique, axis=2)


def _shows_progress(program: Program, settings: FitSettings, n_rows: int) -> bool:
    """Whether the sampling is expected to outlast ``settings.progress_after_s``."""
    if settings.progress_after_s is None:
        return False
    method = resolve_chain_method(settings.chain_method, settings.chains)
    rows = program.rows.n_unique if program.rows is not None else n_rows
    expected = expected_sampling_s(
        settings.warmup + settings.samples, settings.chains, rows, method
    )
    return expected > float(settings.progress_after_s)


def _log_prior(
    factory: ModelFactory,
    features: Mapping[str, Any],
    program: Program,
    latent: dict,
    stats: dict,
) -> tuple[dict, dict]:
    """Per-draw log prior of the top-level sites; the all-site total goes in ``stats``."""
    if not latent:
        return {}, {}
    per_site = log_prior_draws(program, latent)
    sites = prior_sites(factory, features, program, latent, per_site)
    stats["log_prior"] = sum(per_site.values())
    attrs = {
        "power_scaled_sites": " ".join(sites.top_level),
        "chosen_by": sites.how,
        "total_of_all_latent_sites": "sample_stats.log_prior",
    }
    return {k: per_site[k] for k in sites.top_level}, attrs


def fit_model(
    factory: ModelFactory,
    features: Mapping[str, Any],
    hyperparameters: Mapping[str, Any] | None = None,
    settings: FitSettings | None = None,
    coords: Mapping[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> FitResult:
    """Fit ``factory(**hyperparameters)`` to ``features`` with NUTS.

    :param factory: a ``@model``-decorated factory (see :func:`hibayes.model.get_model`).
    :param features: what the program reads (``obs``, ``n_total``, indices...).
    :param hyperparameters: factory keyword arguments (priors, structure).
    :param settings: sampler settings; defaults as in :class:`FitSettings`.
    :param coords: category labels from the data, to name posterior axes.
    :param progress: called with a short message at each stage (compile, sample...).
    :return: a :class:`FitResult`; same seed and inputs give identical draws.
    """
    settings = settings or FitSettings()
    say = progress or (lambda message: None)
    start = time.perf_counter()
    obs = features.get("obs")
    n_rows = int(np.shape(obs)[0]) if np.ndim(obs) else 1
    precision = settings.resolved_precision(n_rows)
    use_float_precision(precision)  # before any array of this fit is made
    program = build_program(
        factory,
        features,
        hyperparameters,
        collapse_identical_rows=settings.collapse_identical_rows,
    )
    rng_key = jax.random.PRNGKey(int(settings.seed))
    sample_key, ppc_key, prior_key = jax.random.split(rng_key, 3)
    chain_keys = jax.random.split(sample_key, settings.chains)

    if program.rows is not None:
        say(
            f"likelihood over {program.rows.n_unique} distinct rows standing for "
            f"{program.rows.n_rows} (fit.collapse_identical_rows)"
        )
    show_progress = _shows_progress(program, settings, n_rows)
    say("compiling the sampler (reused when cached)")
    sampler = get_sampler(program, settings, chain_keys)
    say(
        f"sampling {settings.chains} chains x ({settings.warmup} warmup + "
        f"{settings.samples} draws), {sampler.chain_method}"
        + (
            f"; compiled in {sampler.compile_s:.1f} s"
            if sampler.compile_s
            else "; compiled sampler reused"
        )
    )
    t0 = time.perf_counter()
    # Every fit samples in the same chunks; only a long one says how far it is.
    lines = SamplingProgress(settings.warmup, settings.samples, say)
    samples, extras, adaptation = sampler.chunked.run_adapted(
        chain_keys,
        program.sampled_arrays,
        program.hyper,
        on_chunk=lines.advance if show_progress else None,
    )
    sampling_s = time.perf_counter() - t0

    say(f"sampled in {sampling_s:.1f} s; log-likelihood, prior and predictive draws")
    t1 = time.perf_counter()
    fns = predictive_fns(program)
    latent = {k: samples[k] for k in program.sites.latent}
    n_draws = settings.chains * settings.samples
    # Past ~10 s a step says so (hibayes.system.heartbeat); quick ones print nothing.
    with stage(f"log-likelihood of {n_rows} rows x {n_draws} draws", say):
        loglik = _log_likelihood(fns["log_likelihood"], latent, program)
    stats = sample_stats_from_extras(extras, settings.max_tree_depth)
    with stage("log prior of every draw", say):
        log_prior, log_prior_attrs = _log_prior(
            factory, features, program, latent, stats
        )
    rng = np.random.default_rng(int(settings.seed))
    ppc_wanted, prior_draws = settings.predictive_draws(n_rows)
    if (
        ppc_wanted != settings.posterior_predictive_samples
        or prior_draws < settings.prior_samples
    ):
        say(
            f"{n_rows} rows: {ppc_wanted} posterior predictive and {prior_draws} prior draws "
            f"(fit.max_predictive_values={settings.max_predictive_values})"
        )
    ppc_samples, ppc_draws = _posterior_predictive_draws(
        latent, settings.chains, settings.samples, ppc_wanted, rng
    )
    n_ppc = len(next(iter(ppc_samples.values()))) if ppc_samples else n_draws
    with stage(f"posterior predictive: {n_ppc} draws x {n_rows} rows", say):
        ppc = np.asarray(
            fns["posterior_predictive"](
                ppc_key, ppc_samples, program.arrays, program.hyper
            )
        )
    if ppc_draws is None:
        ppc = ppc.reshape((settings.chains, settings.samples) + ppc.shape[1:])
    prior = None
    if prior_draws > 0:
        with stage(f"prior predictive: {prior_draws} draws x {n_rows} rows", say):
            prior = to_numpy(
                fns["prior"](prior_key, prior_draws, program.arrays, program.hyper)
            )
    observed = (
        program.arrays["obs"]
        if "obs" in program.arrays
        else np.asarray(features["obs"])
    )
    constant = {k: v for k, v in program.arrays.items() if k != "obs"}
    constant.update(
        {
            k: np.asarray(v)
            for k, v in features.items()
            if k not in program.arrays
            and np.isscalar(v)
            and isinstance(v, (int, float, np.number))
            and not isinstance(v, bool)
        }
    )
    with stage("assembling the InferenceData", say):
        idata = build_idata(
            posterior=samples,
            sample_stats=stats,
            log_likelihood=loglik,
            posterior_predictive=ppc,
            posterior_predictive_draws=ppc_draws,
            prior=prior,
            observed=observed,
            constant_data=constant,
            coords=coords or {},
            site_shapes=program.sites.shapes,
            attrs={
                "model_name": program.name,
                "hyperparameters": program.hyperparameters,
                "fit_settings": settings.as_dict(),
                "chain_method": sampler.chain_method,
                "mass_matrix": "dense" if sampler.dense_mass else "diagonal",
                "jax_platform": jax_platform(),
                "precision": precision,
                "inference_library": "numpyro",
                "likelihood_rows": program.rows.n_unique if program.rows else n_rows,
            },
            log_prior=log_prior,
            log_prior_attrs=log_prior_attrs,
        )
    predictive_s = time.perf_counter() - t1
    timings = {
        "compile": sampler.compile_s,
        "sampling": sampling_s,
        "predictive": predictive_s,
        "total": time.perf_counter() - start,
    }
    return FitResult(
        idata, program, settings, sampler.chain_method, precision, timings, adaptation
    )
