"""Write the outputs of one fit into its job directory.

Everything a run holds in MLflow is first written here, so a fit's results
survive a tracking store that is down; tracking then uploads this directory.
Every file is written whole or not at all (:mod:`hibayes.system.atomic`): a write
that fails raises :class:`~hibayes.errors.CannotWrite` and leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from hibayes.diagnostics import Criteria, pointwise_loo
from hibayes.inference import save_idata
from hibayes.system.atomic import atomic_path, write_text
from hibayes.system.heartbeat import stage

if TYPE_CHECKING:
    import arviz as az

    from hibayes.diagnostics import CrossValidation

__all__ = [
    "write_config",
    "write_csv",
    "write_fit_outputs",
    "write_json",
    "write_traceback",
]

log = logging.getLogger(__name__)


def write_json(data: Mapping[str, Any], path: Path) -> Path:
    """Write a mapping as pretty JSON (NaN kept as null)."""
    clean = {
        k: (None if isinstance(v, float) and v != v else v) for k, v in data.items()
    }
    return write_text(
        path, json.dumps(clean, indent=2, sort_keys=True, default=str) + "\n"
    )


def write_config(cfg: DictConfig, out_dir: Path) -> Path:
    """Write the resolved config as ``config.yaml``."""
    return write_text(out_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))


def write_fit_outputs(
    idata: az.InferenceData,
    metrics: Mapping[str, float],
    out_dir: Path,
    *,
    summary: pd.DataFrame,
    criteria: Criteria,
    plots: bool = True,
    cv: CrossValidation | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[Path]:
    """Write idata.nc, summary.csv, loo_pointwise.csv, metrics.json, plots/ and,
    after K-fold cross-validation, cv_folds.csv.

    :param progress: told (from a timer thread) when a step runs past ~10 s.
    """
    say = progress or (lambda message: None)
    written = [out_dir / "idata.nc"]
    size = sum(idata[g].nbytes for g in idata.groups()) / 1e6
    with stage(f"writing idata.nc ({size:.0f} MB)", say):
        with atomic_path(written[0]) as tmp, _hdf5_echoes_logged():
            save_idata(idata, tmp)
    tables = {"summary.csv": summary}
    with stage("writing summary.csv and loo_pointwise.csv", say):
        if criteria.loo is not None:
            tables["loo_pointwise.csv"] = pointwise_loo(idata, criteria)
        if cv is not None and cv.folds is not None:
            tables["cv_folds.csv"] = cv.folds
        for name, table in tables.items():
            written.append(write_csv(table, out_dir / name))
    written.append(write_json(metrics, out_dir / "metrics.json"))
    if plots:
        from hibayes.plots import (
            save_fit_plots,
        )  # matplotlib only when plots are wanted

        with stage("drawing the plots", say):
            written.extend(save_fit_plots(idata, out_dir / "plots", loo=criteria.loo))
    return written


@contextlib.contextmanager
def _hdf5_echoes_logged() -> Iterator[None]:
    """Log, not print, what HDF5 echoes around a failed netCDF write.

    On a full disk h5py raises once, and prints a traceback for every object it
    cannot flush or close as they are freed; they are freed here, before stderr's
    hooks are put back.
    """
    hooks = sys.excepthook, sys.unraisablehook

    def logged(*args: object) -> None:
        log.debug("while writing idata.nc: %s", args[1] if len(args) > 1 else args[0])

    sys.excepthook = sys.unraisablehook = logged
    try:
        yield
    except Exception as exc:
        cause: BaseException | None = exc
        while cause is not None:  # frames still holding h5py objects: free them now
            traceback.clear_frames(cause.__traceback__)
            cause = cause.__cause__ or cause.__context__
        gc.collect()
        raise
    finally:
        sys.excepthook, sys.unraisablehook = hooks


def write_csv(table: pd.DataFrame, path: Path, **to_csv: Any) -> Path:
    """Write a table as CSV (``to_csv`` options passed on); return ``path``."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, **to_csv)
    return path


def write_traceback(exc: BaseException, out_dir: Path) -> Path:
    """Write the traceback of a failed fit as ``traceback.txt``."""
    return write_text(
        out_dir / "traceback.txt", "".join(traceback.format_exception(exc))
    )
