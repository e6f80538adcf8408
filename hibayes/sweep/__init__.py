"""Sweeps: one Hydra multirun as a parent MLflow run, and the plot worker beside it."""

from hibayes.sweep.session import (
    SWEEP_FILE,
    SweepFailed,
    SweepInfo,
    SweepSession,
    in_process_session,
    read_sweep_info,
)

__all__ = [
    "SWEEP_FILE",
    "SweepFailed",
    "SweepInfo",
    "SweepSession",
    "in_process_session",
    "read_sweep_info",
]
