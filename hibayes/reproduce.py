"""Re-run a recorded fit, or a whole sweep, and check the draws come out the same.

``python -m hibayes.reproduce RUN_ID [--force] [--tracking-uri URI] [--out-dir DIR]``

The run's resolved ``config.yaml`` and ``overrides.yaml`` are fetched from the
store, the data file it would read is hashed and must match the run's
``hibayes.data_digest`` (``--force`` goes on anyway), the fit is run again as a
new run tagged ``hibayes.reproduced_from``, and both posteriors are compared.
With the same package versions, platform, XLA flags and chain method the draws
must be bit-for-bit identical; where the environment differs the differences
are listed and posterior means must agree within a few Monte Carlo standard
errors instead. A sweep's parent run id re-runs every finished child in this
process (compiled samplers are reused) under a new parent run.

Exit status: 0 identical or consistent, 1 draws differ or a re-run failed,
2 refused (data changed, run not found or not a fit).
This module does not change the recorded runs; it only adds new ones.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from hibayes.errors import Refused
from hibayes.system.atomic import write_text
from hibayes.system.command import run_command
from hibayes.tracking.base import Tracker

log = logging.getLogger("hibayes.reproduce")

__all__ = [
    "DataChanged",
    "RecordedFit",
    "ReproduceError",
    "Reproduction",
    "check_data",
    "draws_identical",
    "environment_differences",
    "load_recorded_fit",
    "main",
    "means_consistent",
    "reproduce",
]

#: Tags that can change the draws when they differ (software, machine, set-up).
DRAW_TAGS = (
    "hibayes.version",
    "numpyro_version",
    "jax_version",
    "python_version",
    "platform",
    "jax_platform",
    "xla_flags",
    "hibayes.chain_method",
    "git_sha",
    "git_dirty",
)
REPRODUCED_FROM = "hibayes.reproduced_from"


class ReproduceError(Refused, RuntimeError):
    """A run cannot be reproduced (not found, not a fit, artifacts missing)."""


class DataChanged(ReproduceError):
    """The data file no longer has the digest the run recorded."""


@dataclass
class RecordedFit:
    """What a recorded fit needs to run again.

    :param run: the original MLflow run.
    :param cfg: its resolved config, pointed at this store and with absolute paths.
    :param overrides: its Hydra overrides (they name the run).
    :param model_choice: the ``conf/model`` option it composed, if known.
    :param source: the data file it read (absolute).
    :param idata_path: the original ``idata.nc``, downloaded.
    """

    run: Any
    cfg: DictConfig
    overrides: list[str]
    model_choice: str | None
    source: str
    idata_path: Path

    @property
    def run_id(self) -> str:
        """The original run's id."""
        return str(self.run.info.run_id)


@dataclass
class Reproduction:
    """The verdict on one re-run.

    :param original_run_id: the run reproduced.
    :param new_run_id: the new run ("" when the fit failed before starting one).
    :param name: the run's name.
    :param verdict: ``identical``, ``consistent`` (environment differs, means
        agree within Monte Carlo error), ``differs`` or ``failed``.
    :param environment: tag -> (original, new) for tags in :data:`DRAW_TAGS` that differ.
    :param mismatched: posterior variables that are not bit-for-bit equal.
    :param worst_z: largest |difference of means| / combined MCSE (when compared).
    :param seconds: wall time of the re-run and the comparison.
    :param error: why the re-run failed.
    """

    original_run_id: str
    new_run_id: str
    name: str
    verdict: str
    environment: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    mismatched: list[str] = field(default_factory=list)
    worst_z: float | None = None
    seconds: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the run reproduced (identical, or consistent in another environment)."""
        return self.verdict in ("identical", "consistent")

    def describe(self, mcse_factor: float = 3.0) -> str:
        """One paragraph a person can read."""
        head = (
            f"{self.name}: run {self.original_run_id} -> {self.new_run_id or '(none)'}"
        )
        if self.verdict == "failed":
            return f"{head}: FAILED to re-run: {self.error}"
        env = "; ".join(
            f"{k} {a} -> {b}"
            for k, a, b in ((k, *v) for k, v in self.environment.items())
        )
        z = f"worst |z| {self.worst_z:.2f}" if self.worst_z is not None else ""
        if self.verdict == "identical":
            note = f" (environment differs: {env})" if env else ""
            return f"{head}: IDENTICAL posterior draws, bit for bit{note} [{self.seconds:.1f} s]"
        differing = ", ".join(self.mismatched)
        if self.verdict == "consistent":
            return (
                f"{head}: CONSISTENT: draws differ ({differing}) but the environment "
                f"differs ({env}) and posterior means agree within {mcse_factor:g} "
                f"MCSE ({z}) [{self.seconds:.1f} s]"
            )
        where = f"environment differs: {env}" if env else "same versions and platform"
        return (
            f"{head}: DIFFERS: posterior draws of {differing} are not identical "
            f"({where}); {z} [{self.seconds:.1f} s]"
        )


# -- reading the record --------------------------------------------------------


def _download(
    tracker: Tracker, run_id: str, path: str, dst: Path, required: bool = True
) -> Path | None:
    from .tracking import TrackingError

    try:
        return tracker.download_artifact(run_id, path, dst)
    except TrackingError as exc:
        if required:
            raise ReproduceError(
                f"run {run_id} has no artifact {path!r}: {exc}"
            ) from exc
        return None


def _absolute(path: str, base: str | None) -> str:
    if Path(path).is_absolute() or not base:
        return path
    return str(Path(base) / path)


def load_recorded_fit(tracker: Tracker, run: Any, workdir: Path) -> RecordedFit:
    """Fetch a fit run's config, overrides and posterior, ready to run again.

    :param tracker: an :class:`~hibayes.tracking.MlflowTracker` on the run's store.
    :param run: the MLflow run.
    :param workdir: where to download artifacts.
    :raises ReproduceError: the run is not a hibayes fit or lacks artifacts.
    """
    from .config import data_source

    run_id, tags = run.info.run_id, run.data.tags
    if "hibayes.data_digest" not in tags:
        raise ReproduceError(
            f"run {run_id} ({run.info.run_name}) is not a recorded hibayes fit: it has no "
            "hibayes.data_digest tag (not a fit, a parent run of another kind, or a fit "
            "that failed before reading its data)"
        )
    dst = workdir / run_id
    cfg = OmegaConf.load(_download(tracker, run_id, "config.yaml", dst))
    if "hydra" in cfg:
        del cfg["hydra"]
    overrides_file = _download(tracker, run_id, "overrides.yaml", dst, required=False)
    if overrides_file is not None:
        overrides = [str(o) for o in OmegaConf.load(overrides_file)]
    else:
        overrides = tags.get("hibayes.overrides", "").split()
    hydra_file = _download(tracker, run_id, ".hydra/hydra.yaml", dst, required=False)
    choice = None
    if hydra_file is not None:
        choice = OmegaConf.load(hydra_file).hydra.runtime.choices.get("model")
    experiment = tracker.client.get_experiment(run.info.experiment_id).name
    if cfg.get("runtime") is not None:  # a cache directory is this machine's business
        cfg.runtime.jax_cache_dir = None
    cfg.tracking = {
        **OmegaConf.to_container(cfg.get("tracking") or {}),
        "enabled": True,
        "uri": tracker.uri,
        "experiment": experiment,
    }
    # Relative paths meant the original's working directory, not ours.
    workdir_then = tags.get("hibayes.working_dir")
    if cfg.data.get("path"):
        recorded = tags.get("hibayes.data_source") or str(cfg.data.path)
        cfg.data.path = _absolute(recorded, workdir_then)
    model_path = cfg.model.get("path")
    if isinstance(model_path, str) and model_path.endswith(".py"):
        cfg.model.path = _absolute(model_path, workdir_then)
    elif model_path:  # a list of files and module names
        cfg.model.path = [
            _absolute(str(p), workdir_then) if str(p).endswith(".py") else p
            for p in model_path
        ]
    idata_path = _download(tracker, run_id, "idata.nc", dst)
    return RecordedFit(run, cfg, overrides, choice, data_source(cfg.data), idata_path)


def check_data(fit: RecordedFit, allow_change: bool = False) -> None:
    """Refuse when the data file's digest differs from the run's record.

    :param fit: the recorded fit.
    :param allow_change: warn instead of raising.
    :raises DataChanged: naming the path and both digests.
    """
    from .config import data_digest
    from .data import DataError

    recorded = fit.run.data.tags["hibayes.data_digest"]
    try:
        now = data_digest(fit.cfg.data)
    except (DataError, OSError, ValueError) as exc:
        # Nothing to fit: --force could only produce a FAILED run, so it is not offered.
        raise ReproduceError(
            f"cannot read the data of run {fit.run_id} ({fit.run.info.run_name}): "
            f"{exc}; restore {fit.source} (the run recorded digest {recorded}) "
            "and re-run"
        ) from exc
    if now == recorded:
        return
    message = (
        f"data changed since run {fit.run_id} ({fit.run.info.run_name}): "
        f"{fit.source} has digest {now}, the run recorded {recorded}"
    )
    if not allow_change:
        raise DataChanged(
            message + "; re-run with --force to reproduce on the new data"
        )
    log.warning("%s; going on (--force)", message)


# -- comparing -----------------------------------------------------------------


def draws_identical(original: Any, new: Any) -> list[str]:
    """Posterior variables of two InferenceData that are not bit-for-bit equal.

    :return: names that differ in presence, shape, dtype or any value (empty: identical).
    """
    import numpy as np

    a, b = original.posterior, new.posterior
    mismatched = sorted(set(a.data_vars) ^ set(b.data_vars))
    for name in a.data_vars:
        if name not in b.data_vars:
            continue
        x, y = np.asarray(a[name].values), np.asarray(b[name].values)
        if x.dtype != y.dtype or not np.array_equal(
            x, y, equal_nan=x.dtype.kind in "fc"
        ):
            mismatched.append(str(name))
    return mismatched


def means_consistent(
    original: Any, new: Any, mcse_factor: float = 3.0
) -> tuple[bool, float]:
    """Whether posterior means agree within ``mcse_factor`` combined MCSE.

    Each element's z is ``|mean_a - mean_b| / sqrt(mcse_a² + mcse_b²)``; elements
    with no Monte Carlo error (constants) must agree to 1e-6 relative.

    :return: (all within the bound, the largest z seen).
    """
    import warnings

    import arviz as az
    import numpy as np

    worst, ok = 0.0, True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        se_a, se_b = az.mcse(original, method="mean"), az.mcse(new, method="mean")
    for name in original.posterior.data_vars:
        if name not in new.posterior.data_vars:
            return False, float("inf")
        mean_a = original.posterior[name].mean(("chain", "draw")).values
        mean_b = new.posterior[name].mean(("chain", "draw")).values
        if np.shape(mean_a) != np.shape(mean_b):
            return False, float("inf")
        se = np.hypot(
            np.nan_to_num(se_a[name].values), np.nan_to_num(se_b[name].values)
        )
        diff = np.abs(mean_a - mean_b)
        noisy = se > 0
        z = diff[noisy] / se[noisy]
        if z.size:
            worst = max(worst, float(z.max()))
            ok &= bool(np.all(z <= mcse_factor))
        ok &= bool(np.allclose(mean_a[~noisy], mean_b[~noisy], rtol=1e-6, atol=1e-9))
    return ok, worst


def environment_differences(
    original: dict[str, str], new: dict[str, str]
) -> dict[str, tuple[str | None, str | None]]:
    """Tags of :data:`DRAW_TAGS` whose values differ between two runs."""
    return {
        k: (original.get(k), new.get(k))
        for k in DRAW_TAGS
        if original.get(k) != new.get(k)
    }


def _judge(
    fit: RecordedFit, outcome: Any, tracker: Tracker, mcse_factor: float, started: float
) -> Reproduction:
    from .inference import load_idata

    result = Reproduction(fit.run_id, outcome.run_id, outcome.name, "failed")
    if outcome.status != "FINISHED":
        result.error, result.seconds = outcome.error, time.perf_counter() - started
        return result
    original, new = (
        load_idata(fit.idata_path),
        load_idata(Path(outcome.out_dir) / "idata.nc"),
    )
    result.environment = environment_differences(
        fit.run.data.tags, tracker.get_run(outcome.run_id).data.tags
    )
    result.mismatched = draws_identical(original, new)
    if not result.mismatched:
        result.verdict = "identical"
    else:
        consistent, result.worst_z = means_consistent(original, new, mcse_factor)
        result.verdict = (
            "consistent" if consistent and result.environment else "differs"
        )
    result.seconds = time.perf_counter() - started
    return result


# -- running -------------------------------------------------------------------


def _match_xla_flags(tags: dict[str, str]) -> None:
    """Use the original's XLA flags (host device count) if JAX has not started yet.

    The device count decides whether chains run in parallel, and so the draws;
    flags the user set explicitly win.
    """
    wanted = tags.get("xla_flags")
    if not wanted or "XLA_FLAGS" in os.environ or "jax" in sys.modules:
        return
    os.environ["XLA_FLAGS"] = wanted


def _run_one(
    fit: RecordedFit, job: Any, tracker: Tracker, mcse_factor: float
) -> tuple[Reproduction, dict[str, Any]]:
    """Fit again and judge; also return the fit's outcome (as a sweep job reports it)."""
    from .fit import fit as run_fit

    started = time.perf_counter()
    job.out_dir.mkdir(parents=True, exist_ok=True)
    # fit() uploads the job directory: keep the original's overrides with the new run.
    write_text(
        job.out_dir / "overrides.yaml",
        OmegaConf.to_yaml(OmegaConf.create(fit.overrides)),
    )
    try:
        outcome = run_fit(fit.cfg, job, extra_tags={REPRODUCED_FROM: fit.run_id})
    except Exception as exc:  # noqa: BLE001 - recorded on the new run already
        error = f"{type(exc).__name__}: {exc}"
        return (
            Reproduction(
                fit.run_id,
                "",
                str(fit.run.info.run_name),
                "failed",
                error=error,
                seconds=time.perf_counter() - started,
            ),
            {"status": "FAILED", "name": str(fit.run.info.run_name), "error": error},
        )
    original_name = str(fit.run.info.run_name)
    if outcome.run_id and outcome.name != original_name:  # a sweep child re-run alone
        tracker.set_tags(outcome.run_id, {"mlflow.runName": original_name})
        outcome.name = original_name
    return _judge(fit, outcome, tracker, mcse_factor, started), outcome.as_dict()


def _sweep(
    parent: Any,
    fits: list[RecordedFit],
    out_dir: Path,
    tracker: Tracker,
    mcse_factor: float,
) -> list[Reproduction]:
    from hibayes.sweep import SweepFailed, SweepSession

    from .fit import JobContext

    first = fits[0].cfg
    session_cfg = OmegaConf.create(
        {
            "hydra": {"sweep": {"dir": str(out_dir)}},
            "tracking": first.tracking,
            "model": first.model,
        }
    )
    session = SweepSession(session_cfg, [f.overrides for f in fits])
    session.tracker.set_tags(
        session.parent_run_id,
        {
            REPRODUCED_FROM: parent.info.run_id,
            "mlflow.runName": f"reproduce {parent.info.run_name}",
        },
    )
    results, outcomes = [], []
    try:
        for num, fit in enumerate(fits):
            job = JobContext(
                out_dir=out_dir / str(num),
                overrides=fit.overrides,
                model_choice=fit.model_choice,
                sweep_dir=out_dir,
                job_num=num,
            )
            result, outcome = _run_one(fit, job, tracker, mcse_factor)
            results.append(result)
            outcomes.append(outcome)
    except BaseException:
        session.abort()
        raise
    try:
        session.finish(outcomes)
    except SweepFailed as exc:
        log.error("%s", exc)
    return results


def reproduce(
    run_id: str,
    *,
    tracking_uri: str | None = None,
    out_dir: Path | None = None,
    allow_data_change: bool = False,
    mcse_factor: float = 3.0,
) -> list[Reproduction]:
    """Re-run a fit (or every finished child of a sweep's parent run) and judge it.

    :param run_id: a fit run or a sweep's parent run.
    :param tracking_uri: the store; default ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlflow.db``.
    :param out_dir: where the new fits write; default ``reproduce/<date>/<time>``.
    :param allow_data_change: go on when the data's digest differs from the record.
    :param mcse_factor: bound on mean differences, in combined MCSE, where the
        environment differs.
    :return: one :class:`Reproduction` per fit re-run.
    :raises DataChanged: before anything runs, when any fit's data changed.
    :raises ReproduceError: the run is not found, not a fit, or lacks artifacts.
    """
    from .tracking import (
        MlflowTracker,
        TrackingError,
        check_store_exists,
        resolve_tracking_uri,
    )

    uri = resolve_tracking_uri(tracking_uri)
    try:
        check_store_exists(uri)
    except TrackingError as exc:
        raise ReproduceError(str(exc)) from exc
    reader = MlflowTracker(uri=uri)
    try:
        run = reader.get_run(run_id)
    except TrackingError as exc:
        raise ReproduceError(f"run {run_id} not found in {uri}: {exc}") from exc
    children = [] if "hibayes.data_digest" in run.data.tags else reader.children(run_id)
    originals = sorted(
        (c for c in children if c.info.status == "FINISHED"),
        key=lambda c: int(c.data.tags.get("hibayes.job_num", 0)),
    )
    if children and len(originals) < len(children):
        log.warning(
            "%d of %d child runs of %s did not finish; re-running the %d that did",
            len(children) - len(originals),
            len(children),
            run_id,
            len(originals),
        )
    if children and not originals:
        raise ReproduceError(f"sweep {run_id} has no finished child runs to reproduce")
    out_dir = Path(
        out_dir or Path("reproduce") / time.strftime("%Y-%m-%d/%H-%M-%S")
    ).resolve()
    _match_xla_flags((originals or [run])[0].data.tags)  # before anything starts JAX
    with tempfile.TemporaryDirectory() as tmp:
        fits = [load_recorded_fit(reader, r, Path(tmp)) for r in originals or [run]]
        for fit in fits:  # all checked before anything runs
            check_data(fit, allow_data_change)
        from hibayes.inference.runtime import configure_runtime

        configure_runtime(fits[0].cfg.get("runtime"))  # as hibayes.fit's main does
        tracker = MlflowTracker(
            uri=uri, experiment=str(fits[0].cfg.tracking.experiment)
        )
        if not originals:
            from .fit import JobContext

            job = JobContext(
                out_dir=out_dir,
                overrides=fits[0].overrides,
                model_choice=fits[0].model_choice,
            )
            return [_run_one(fits[0], job, tracker, mcse_factor)[0]]
        return _sweep(run, fits, out_dir, tracker, mcse_factor)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m hibayes.reproduce RUN_ID``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m hibayes.reproduce", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("run_id", help="a fit run, or a sweep's parent run")
    parser.add_argument(
        "--tracking-uri",
        default=None,
        help="default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db",
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=None,
        help="where the new fits write (default reproduce/<date>/<time>)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="re-run even if the data file's digest changed",
    )
    parser.add_argument(
        "--mcse-factor",
        type=float,
        default=3.0,
        help="allowed mean difference in combined MCSE when the "
        "environment differs (default 3)",
    )
    args = parser.parse_args(argv)
    results = reproduce(
        args.run_id,
        tracking_uri=args.tracking_uri,
        out_dir=args.out_dir,
        allow_data_change=args.force,
        mcse_factor=args.mcse_factor,
    )
    for result in results:
        print(result.describe(args.mcse_factor))
    good = sum(r.ok for r in results)
    print(
        f"reproduced {good} of {len(results)} fit(s)"
        + ("" if good == len(results) else ": see above for what differs")
    )
    return 0 if good == len(results) else 1


def cli() -> None:
    """Console script ``hibayes-reproduce``: as ``python -m hibayes.reproduce``."""
    run_command(main, log_format="[%(name)s][%(levelname)s] %(message)s")


if __name__ == "__main__":
    cli()
