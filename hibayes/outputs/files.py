"""Write the outputs of one fit into its job directory.

Everything a run holds in MLflow is first written here, so a fit's results
survive a tracking store that is down; tracking then uploads this directory.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from hibayes.diagnostics import Criteria, pointwise_loo
from hibayes.inference import save_idata

if TYPE_CHECKING:
    import arviz as az

    from hibayes.diagnostics import CrossValidation

__all__ = ["write_fit_outputs", "write_traceback", "write_config", "write_json"]

log = logging.getLogger(__name__)


def write_json(data: Mapping[str, Any], path: Path) -> Path:
    """Write a mapping as pretty JSON (NaN kept as null)."""
    clean = {
        k: (None if isinstance(v, float) and v != v else v) for k, v in data.items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(clean, indent=2, sort_keys=True, default=str) + "\n")
    return path


def write_config(cfg: DictConfig, out_dir: Path) -> Path:
    """Write the resolved config as ``config.yaml``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "config.yaml"
    path.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    return path


def write_fit_outputs(
    idata: az.InferenceData,
    metrics: Mapping[str, float],
    out_dir: Path,
    *,
    summary: pd.DataFrame,
    criteria: Criteria,
    plots: bool = True,
    cv: CrossValidation | None = None,
) -> list[Path]:
    """Write idata.nc, summary.csv, loo_pointwise.csv, metrics.json, plots/ and,
    after K-fold cross-validation, cv_folds.csv."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [save_idata(idata, out_dir / "idata.nc")]
    summary.to_csv(out_dir / "summary.csv")
    written.append(out_dir / "summary.csv")
    if criteria.loo is not None:
        pointwise_loo(idata, criteria).to_csv(out_dir / "loo_pointwise.csv")
        written.append(out_dir / "loo_pointwise.csv")
    if cv is not None and cv.folds is not None:
        cv.folds.to_csv(out_dir / "cv_folds.csv")
        written.append(out_dir / "cv_folds.csv")
    written.append(write_json(metrics, out_dir / "metrics.json"))
    if plots:
        from hibayes.plots import (
            save_fit_plots,
        )  # matplotlib only when plots are wanted

        written.extend(save_fit_plots(idata, out_dir / "plots", loo=criteria.loo))
    return written


def write_traceback(exc: BaseException, out_dir: Path) -> Path:
    """Write the traceback of a failed fit as ``traceback.txt``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "traceback.txt"
    path.write_text("".join(traceback.format_exception(exc)))
    return path
