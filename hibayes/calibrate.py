"""Does the model recover the truth? ``python -m hibayes.calibrate [overrides] [-m]``.

Simulation-based calibration (Talts et al. 2018) with parameter recovery, for
any model on the shape of any configured data set: parameters are drawn from
the model's prior, ``obs`` is simulated from them by the model's own program
(NumPyro ``Predictive``) with the data's group counts, trial counts and
covariates, and every simulated data set is fitted by NUTS with the ``fit``
settings, all simulations batched through one compiled sampler
(:mod:`hibayes.inference.batch`). The ranks of the true values among the
posterior draws are tested for uniformity, and coverage and recovery are
measured (:mod:`hibayes.diagnostics.calibration`).

One MLflow run per calibration (per job with ``-m``): metrics per quantity
(``sbc_p/<q>``, ``converged_fraction/<q>``, ``coverage_50/<q>``,
``coverage_94/<q>``, ``recovery_r/<q>``), the tag ``hibayes.calibration``
(``pass``, ``fail: ...`` or ``inconclusive: ...``), and ranks.csv,
calibration.csv, fits.csv, calibration.png and report.html as artifacts (also in the
job's folder).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from hibayes.errors import HibayesError, InputError
from hibayes.system.command import one_line_errors, run_command
from hibayes.tracking.run import open_tracker, run_params

log = logging.getLogger("hibayes.calibrate")

__all__ = ["CalibrationOutcome", "CalibrationSettings", "calibrate", "cli", "main"]

# At most this many metrics go to the run in one call (MLflow takes 1000 per batch).
_METRICS_PER_CALL = 500


class CalibrationSettingsError(InputError):
    """A ``calibrate`` setting is out of range."""


@dataclass(frozen=True)
class CalibrationSettings:
    """The ``calibrate`` config section.

    :param simulations: data sets simulated from the prior and fitted.
    :param seed: seed of the simulations (the fits use ``fit.seed``).
    :param rank_draws: L: posterior draws, thinned evenly from all chains, that
        each true value is ranked among (ranks 0..L).
    :param batch: simulations per call of the compiled sampler.
    :param alpha: family-wise level of the verdict (Bonferroni over quantities).
    :param max_unusable: the largest fraction of simulated fits whose draws are
        unusable for ranks (divergent transitions, or bulk ESS below
        ``rank_draws``) for the verdict to be ``pass``.
    """

    simulations: int = 200
    seed: int = 0
    rank_draws: int = 99
    batch: int = 50
    alpha: float = 0.05
    max_unusable: float = 0.1

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            whole = f.type in ("int", int)
            try:
                number = float(value)
                if isinstance(value, bool) or (whole and not number.is_integer()):
                    raise ValueError
            except (TypeError, ValueError):
                kind = "a whole number" if whole else "a number"
                raise CalibrationSettingsError(
                    f"calibrate.{f.name} must be {kind}, got {value!r}"
                ) from None
            # frozen: the checked value replaces the config's (e.g. a string "0.1")
            object.__setattr__(self, f.name, int(number) if whole else number)
        for name in ("simulations", "rank_draws", "batch"):
            if int(getattr(self, name)) < (2 if name == "simulations" else 1):
                raise CalibrationSettingsError(
                    f"calibrate.{name} must be >= {2 if name == 'simulations' else 1}, "
                    f"got {getattr(self, name)}"
                )
        if not 0 < float(self.alpha) < 1:
            raise CalibrationSettingsError(
                f"calibrate.alpha must be in (0, 1), got {self.alpha}"
            )
        if not 0 <= float(self.max_unusable) <= 1:
            raise CalibrationSettingsError(
                f"calibrate.max_unusable must be in [0, 1], got {self.max_unusable}"
            )

    @classmethod
    def from_mapping(cls, values: Any) -> CalibrationSettings:
        """Build from the config section, refusing unknown keys."""
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise CalibrationSettingsError(
                f"unknown calibrate key(s) {unknown}; known: {sorted(known)}"
            )
        return cls(**values)


@dataclass
class CalibrationOutcome:
    """What one calibration reports back (also Hydra's return value)."""

    status: str
    name: str
    run_id: str
    out_dir: str
    verdict: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain dict."""
        return asdict(self)


def _site_labels(program: Any, coords: dict, sites: list[str]) -> dict[str, list[str]]:
    """Element labels of every site, levels named from the data's categories."""
    from hibayes.diagnostics.calibration import element_labels
    from hibayes.inference.labels import infer_dims

    dims, all_coords = infer_dims(program.sites.shapes, coords)
    return {
        s: element_labels(s, program.sites.shapes[s], all_coords, dims.get(s))
        for s in sites
    }


def _calibration_limits(limits: Any, chains: int) -> Any:
    """The checks for simulated fits: ESS at least 100 per chain (Vehtari et al.
    2021), capped by the configured minimum (set for a full-length real fit)."""
    per_chain = 100.0 * chains
    return dataclasses.replace(
        limits,
        ess_bulk_min=min(limits.ess_bulk_min, per_chain),
        ess_tail_min=min(limits.ess_tail_min, per_chain),
    )


def _metrics(
    result: Any, timings: dict[str, float], n_compiles: int
) -> dict[str, float]:
    q = result.quantities
    out: dict[str, float] = {
        "sbc_p_min": float(q["p_value"].min()) if len(q) else float("nan"),
        "sbc_failed": float((~q["passed"]).sum()),
        "converged_fraction": float(result.fits["converged"].mean()),
        "rank_usable_fraction": float(result.fits["rank_usable"].mean()),
        "simulations": float(len(result.fits)),
        "sampler_compiles": float(n_compiles),
        **timings,
    }
    for r in q.itertuples():
        out[f"sbc_p/{r.parameter}"] = r.p_value
        out[f"converged_fraction/{r.parameter}"] = r.element_converged_fraction
        out[f"coverage_50/{r.parameter}"] = r.coverage_50
        out[f"coverage_94/{r.parameter}"] = r.coverage_94
        out[f"recovery_r/{r.parameter}"] = r.mean_truth_correlation
    return out


def calibrate(
    cfg: DictConfig, out_dir: Path | None = None, model_choice: str | None = None
) -> CalibrationOutcome:
    """Run one calibration for a composed config and record it (see the module doc).

    :param out_dir: where to write the files (default: Hydra's job folder).
    :param model_choice: the ``conf/model`` option composed (default: from Hydra).
    """
    from hibayes.inference.runtime import (
        configure_compilation_cache,
        configure_host_devices,
    )

    runtime = cfg.get("runtime") or {}
    configure_host_devices(runtime.get("host_devices"))  # before anything starts JAX
    configure_compilation_cache(runtime.get("jax_cache_dir"))
    import jax
    import numpy as np

    from hibayes.config import fit_settings, load_data, model_spec, thresholds
    from hibayes.diagnostics.calibration import calibrate as summarise
    from hibayes.diagnostics.calibration import flatten_sites
    from hibayes.inference import build_program
    from hibayes.inference.batch import fit_batches, simulate_from_prior
    from hibayes.outputs.calibration import write_calibration_outputs
    from hibayes.outputs.files import write_config, write_json

    if out_dir is None or model_choice is None:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
        out_dir = out_dir or Path(hc.runtime.output_dir)
        model_choice = model_choice or hc.runtime.choices.get("model")
    start = time.perf_counter()
    settings = CalibrationSettings.from_mapping(cfg.get("calibrate"))
    spec = model_spec(cfg.model, model_choice)
    # The simulated obs differ from fit to fit: rows cannot be collapsed by value.
    fit = dataclasses.replace(fit_settings(cfg.fit), collapse_identical_rows=False)
    limits = _calibration_limits(thresholds(cfg.checks), fit.chains)
    name = f"calibrate {spec.name} x{settings.simulations}"
    tracker = open_tracker(cfg)  # an unusable store stops here, before any work
    run_id = tracker.start_run(
        name,
        tags={
            "hibayes.command": "calibrate",
            "hibayes.model": spec.name,
            "hibayes.output_dir": str(out_dir.resolve()),
        },
    )
    outcome = CalibrationOutcome("RUNNING", name, run_id, str(out_dir))
    try:
        tracker.log_params(run_id, run_params(cfg))
        write_config(cfg, out_dir)
        data = load_data(cfg.data, spec, fit)
        program = build_program(spec.factory, data.features, spec.hyperparameters)
        key = jax.random.PRNGKey(int(settings.seed))
        log.info(
            "%s: simulating %d data sets of %s rows from the prior",
            name,
            settings.simulations,
            np.shape(program.arrays["obs"])[0],
        )
        t0 = time.perf_counter()
        truth, obs = simulate_from_prior(program, settings.simulations, key)
        simulate_s = time.perf_counter() - t0
        fits = fit_batches(
            program,
            fit,
            obs,
            jax.random.PRNGKey(int(fit.seed)),
            settings.batch,
            progress=lambda m: log.info("%s: %s", name, m),
        )
        sites = [s for s in fits.samples if s in truth]
        labels = _site_labels(program, dict(data.coords), sites)
        truth_flat, names = flatten_sites(truth, 1, labels)
        draws_flat, _ = flatten_sites(fits.samples, 3, labels)
        t1 = time.perf_counter()
        result = summarise(
            truth_flat,
            draws_flat,
            names,
            fits.diverging,
            fits.energy,
            limits,
            settings.rank_draws,
            settings.alpha,
            settings.seed,
            settings.max_unusable,
        )
        timings = {
            "time_simulate_s": simulate_s,
            "time_compile_s": fits.compile_s,
            "time_sampling_s": fits.sampling_s,
            "time_checks_s": time.perf_counter() - t1,
        }
        write_calibration_outputs(
            result,
            out_dir,
            title=name,
            settings={
                "model": spec.name,
                "simulations": settings.simulations,
                "chains": fit.chains,
                "warmup": fit.warmup,
                "samples": fit.samples,
                "data rows": int(np.shape(obs)[1]),
                "seed": settings.seed,
            },
        )
        timings["time_total_s"] = time.perf_counter() - start
        metrics = _metrics(result, timings, fits.compiles)
        write_json(
            {k: v for k, v in metrics.items() if "/" not in k}, out_dir / "metrics.json"
        )
        items = list(metrics.items())
        for i in range(0, len(items), _METRICS_PER_CALL):
            tracker.log_metrics(run_id, dict(items[i : i + _METRICS_PER_CALL]))
        n_bad = int((~result.fits["converged"]).sum())
        tracker.set_tags(
            run_id,
            {
                "hibayes.calibration": result.verdict,
                "hibayes.calibration_unconverged": f"{n_bad} of {len(result.fits)}",
            },
        )
        tracker.log_artifacts(run_id, out_dir)
        tracker.end_run(run_id, "FINISHED")
        outcome.status, outcome.verdict = "FINISHED", result.verdict
        outcome.metrics = {k: v for k, v in metrics.items() if "/" not in k}
        log.info(
            "%s: %s | %d of %d simulated fits converged | %.0f s | %s",
            name,
            result.verdict,
            len(result.fits) - n_bad,
            len(result.fits),
            timings["time_total_s"],
            out_dir / "report.html",
        )
        return outcome
    except BaseException as exc:
        interrupted = isinstance(exc, (KeyboardInterrupt, SystemExit))
        outcome.status = "KILLED" if interrupted else "FAILED"
        outcome.error = f"{type(exc).__name__}: {exc}"
        _record_failure(tracker, run_id, exc, out_dir, outcome.status)
        raise


def _record_failure(
    tracker: Any, run_id: str, exc: BaseException, out_dir: Path, status: str
) -> None:
    """Best effort: traceback on disk and on the run, the run ended with ``status``.

    Each is tried on its own: a full disk must not keep the error off the run.
    """
    import traceback

    from hibayes.outputs.files import write_traceback

    def traceback_on_run() -> None:
        try:
            tracker.log_artifact(run_id, write_traceback(exc, out_dir))
        except HibayesError:  # a full disk: sent from memory instead
            text = "".join(traceback.format_exception(exc))
            tracker.log_text(run_id, text, "traceback.txt")

    error = {"hibayes.error": f"{type(exc).__name__}: {exc}"[:5000]}
    for what, record in (
        ("the traceback", traceback_on_run),
        ("the error", lambda: tracker.set_tags(run_id, error)),
        ("the status", lambda: tracker.end_run(run_id, status)),
    ):
        try:
            record()
        except Exception as log_exc:  # noqa: BLE001 - the store may be why we failed
            log.warning("could not record %s on run %s: %s", what, run_id, log_exc)


@hydra.main(version_base="1.3", config_path="conf", config_name="calibrate")
@one_line_errors
def main(cfg: DictConfig) -> dict[str, Any]:
    """Hydra entry point: one calibration per composed config."""
    return calibrate(cfg).as_dict()


def cli() -> None:
    """Console script ``hibayes-calibrate``: as ``python -m hibayes.calibrate``."""
    run_command(main)


if __name__ == "__main__":
    cli()
