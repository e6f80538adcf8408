"""Record fits in MLflow: a thin wrapper over ``MlflowClient`` with explicit run ids.

MLflow is imported lazily (``import mlflow`` costs about 3 s), on the first call
that needs it. Everything goes through ``MlflowClient`` with explicit run ids,
never MLflow's global active run or ``mlflow.start_run``, because fits may run in
worker processes (joblib reuses them, so global state would leak between jobs).
The entry point owns the run lifecycle: it creates a tracker (``MlflowTracker``,
or ``NullTracker`` when tracking is off), starts and ends runs, and passes the
tracker explicitly. This package does not decide whether a tracking failure stops
a fit: store failures raise :class:`TrackingError` naming the URI.

Importing it sets ``MLFLOW_DISABLE_TELEMETRY=true`` and
``MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT=true`` unless already set.
"""

from __future__ import annotations

import os

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

from hibayes.tracking.base import RUN_STATUSES, Tracker, TrackingError
from hibayes.tracking.mlflow_tracker import NOT_FINITE_TAG, MlflowTracker
from hibayes.tracking.null_tracker import NullTracker
from hibayes.tracking.params import flatten_config, redact
from hibayes.tracking.provenance import provenance_tags
from hibayes.tracking.store import check_store_exists, resolve_tracking_uri

__all__ = [
    "NOT_FINITE_TAG",
    "RUN_STATUSES",
    "MlflowTracker",
    "NullTracker",
    "Tracker",
    "TrackingError",
    "check_store_exists",
    "flatten_config",
    "provenance_tags",
    "redact",
    "resolve_tracking_uri",
]
