"""NUTS inference: from a model factory and features to a full InferenceData.

:func:`fit_model` is the driver. It builds a traceable program, reuses a
compiled sampler when one exists for the same structure, runs the chains, and
adds log-likelihood, prior, prior and posterior predictive draws. It computes
no diagnostics and writes nothing: those are :mod:`hibayes.diagnostics` and
:mod:`hibayes.tracking`.
"""

from __future__ import annotations

from ..runtime import configure_host_devices

# Must precede the first JAX computation, so it runs at import.
configure_host_devices()

from .fit import FitResult, fit_model  # noqa: E402
from .idata import load_idata, save_idata  # noqa: E402
from .program import Program, build_program  # noqa: E402
from .settings import FitSettings, FitSettingsError  # noqa: E402

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
