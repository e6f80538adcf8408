"""A real, tracking-only ``mlflow server`` on a free loopback port, for tests.

Imported by ``tests/conftest.py`` (the session-wide ``mlflow_server`` fixture)
and by tests that need a server of their own to kill and restart. It sends
requests only to 127.0.0.1.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

__all__ = [
    "FAST_FAIL_ENV",
    "FIT_FILES",
    "SHORT_FIT",
    "MlflowServer",
    "all_runs",
    "artifact_files",
    "free_port",
    "run_hibayes",
]

_START_TIMEOUT_S = 90
#: The artifacts of a FINISHED fit run with LOO. Written out here, not read from
#: hibayes.outputs.contract, so the tests check the contract instead of repeating it.
FIT_FILES = frozenset(
    {
        "config.yaml",
        "idata.nc",
        "summary.csv",
        "loo_pointwise.csv",
        "metrics.json",
        "plots/trace.png",
    }
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MlflowServer:
    """``mlflow server`` with a SQLite backend store and proxied artifacts under ``root``.

    :param root: directory for ``mlflow.db``, ``artifacts/`` and the server's log.
    :param port: the port; a free one when ``None``. Restarts keep port and store.
    """

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = self.root / "server.log"

    @property
    def uri(self) -> str:
        """The tracking URI clients use."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MlflowServer:
        """Start the server and wait until ``/health`` answers."""
        mlflow = Path(sys.executable).with_name("mlflow")
        env = {
            **os.environ,
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }
        env.pop("MLFLOW_TRACKING_URI", None)
        log = open(self.log_path, "a")  # noqa: SIM115 - the server writes to it
        self.proc = subprocess.Popen(
            [
                str(mlflow),
                "server",
                "--workers",
                "1",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--backend-store-uri",
                f"sqlite:///{self.root / 'mlflow.db'}",
                "--artifacts-destination",
                str(self.root / "artifacts"),
            ],
            cwd=self.root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() ends its workers too
        )
        log.close()
        self._wait_healthy()
        return self

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"mlflow server exited early; see {self.log_path}:\n"
                    + self.log_path.read_text()[-3000:]
                )
            if self.healthy():
                return
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(
            f"mlflow server did not start in {_START_TIMEOUT_S} s; see {self.log_path}"
        )

    def healthy(self) -> bool:
        """Whether ``/health`` answers OK."""
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the server and its workers (SIGKILL to simulate a crash)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)  # the group this object started
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=20)
        self.proc = None
        self._wait_port_free()

    def _wait_port_free(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.2)

    def kill(self) -> None:
        """Crash the server (SIGKILL to its process group)."""
        self.stop(signal.SIGKILL)

    def client(self):
        """An ``MlflowClient`` on this server."""
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.uri)


#: MLflow's HTTP client retries a refused request for about 4 minutes by default;
#: tests that stop the server want the failure at once.
FAST_FAIL_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}
#: Short chains for end-to-end runs.
SHORT_FIT = (
    "fit=quick",
    "fit.samples=100",
    "fit.warmup=100",
    "fit.prior_samples=0",
    "cv=psis",
)


def psis_unless_chosen(module: str, args: tuple[str, ...] | list[str]) -> list[str]:
    """``args`` with ``cv=psis`` added to a fit that does not choose its ``cv``.

    The CLI suites test what a fit records, not exact cross-validation (that has its
    own tests in tests/unit/diagnostics/test_cross_validation.py); the default
    ``cv=auto`` would add minutes of refits to every fit of a one-row-per-group
    example. ``-m`` stays first or last: Hydra takes one run of overrides.
    """
    args = list(args)
    if module != "hibayes.fit" or any(a.lstrip("+~").startswith("cv") for a in args):
        return args
    at = 1 if args[:1] == ["-m"] else 0
    return args[:at] + ["cv=psis"] + args[at:]


def all_runs(client, experiment: str = "hibayes") -> list:
    """Every run of an experiment (none if it does not exist)."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    return client.search_runs([exp.experiment_id], max_results=5000)


def artifact_files(client, run_id: str, path: str = "") -> set[str]:
    """Every artifact file path of a run, recursively."""
    out: set[str] = set()
    for item in client.list_artifacts(run_id, path or None):
        if item.is_dir:
            out |= artifact_files(client, run_id, item.path)
        else:
            out.add(item.path)
    return out


def run_hibayes(
    workdir: Path,
    *args: str,
    env: dict | None = None,
    module: str = "hibayes.fit",
    timeout: int = 600,
) -> subprocess.CompletedProcess:
    """Run ``python -m <module> args`` in ``workdir`` as a user would."""
    return subprocess.run(
        [sys.executable, "-m", module, *psis_unless_chosen(module, args)],
        cwd=workdir,
        check=False,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
