"""NUTS inference: from a model factory and features to a full InferenceData.

:func:`fit_model` is the driver. It builds a traceable program, reuses a
compiled sampler when one exists for the same structure, runs the chains, and
adds log-likelihood, prior, prior and posterior predictive draws. It computes
no diagnostics and writes nothing: those are :mod:`hibayes.diagnostics` and
:mod:`hibayes.tracking`. Importing it changes no process setting: entry points
call :func:`hibayes.inference.runtime.configure_host_devices` before JAX starts.
"""

from __future__ import annotations

from .fit import FitResult, fit_model
from .idata import load_idata, save_idata
from .program import Program, build_program
from .settings import FitSettings, FitSettingsError

__all__ = [
    "FitResult",
    "FitSettings",
    "FitSettingsError",
    "Program",
    "build_program",
    "fit_model",
    "load_idata",
    "save_idata",
]
