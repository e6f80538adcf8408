"""Shared fixtures: small simulated datasets and short-chain sampler settings."""

from __future__ import annotations

import os

# Parallel chains need host devices, chosen before JAX starts.
os.environ.setdefault("HIBAYES_HOST_DEVICES", "4")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from hibayes.inference import FitSettings  # noqa: E402
from hibayes.inference.runtime import configure_host_devices  # noqa: E402

configure_host_devices()  # as the entry points do, before any test starts JAX


from scipy.special import expit as sigmoid  # noqa: E402


@pytest.fixture(scope="session")
def quick() -> FitSettings:
    """Short chains: enough for shapes and rough recovery, fast on 2 cores."""
    return FitSettings(samples=300, warmup=300, chains=2, prior_samples=50)


@pytest.fixture(scope="session")
def group_data() -> tuple[dict, dict, np.ndarray]:
    """Eight groups, 200 trials each, from known group logits."""
    rng = np.random.default_rng(1)
    true = np.array([-1.0, -0.5, 0.0, 0.3, 0.6, 1.0, 1.4, 2.0])
    n = np.full(8, 200)
    obs = rng.binomial(n, sigmoid(true))
    features = {"obs": obs, "n_total": n, "group_index": np.arange(8), "num_group": 8}
    coords = {
        "group": [f"model-{c}" for c in "abcdefgh"],
        "observation": list(range(8)),
    }
    return features, coords, true


@pytest.fixture(scope="session")
def grader_data():
    """The shipped ordinal grader scores (600 rows, 4 graders x 5 LLMs, classes 0..10)."""
    from hibayes.data import example_path, features_from_config

    return features_from_config(
        example_path("grader_scores"),
        observed="score",
        categorical=["grader", "llm"],
        num_classes=11,
    )


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real tracking-only ``mlflow server`` on a free 127.0.0.1 port (tests/server.py)."""
    from helpers.server import MlflowServer

    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server")).start()
    yield server
    server.stop()
