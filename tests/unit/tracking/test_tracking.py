"""hibayes.tracking against a real MLflow SQLite store under tmp_path (no mocks)."""

from __future__ import annotations

import math
import pickle
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from hibayes.tracking import (
    NOT_FINITE_TAG,
    MlflowTracker,
    NullTracker,
    TrackingError,
    flatten_config,
    provenance_tags,
    redact,
    resolve_tracking_uri,
)

pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy")


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite store for the module: creating and migrating a DB takes ~1 s."""
    return tmp_path_factory.mktemp("mlflow")


@pytest.fixture(scope="module")
def tracker(store_dir: Path) -> MlflowTracker:
    tracker = MlflowTracker(f"sqlite:///{store_dir}/mlflow.db", experiment="tests")
    tracker.check_reachable()
    return tracker


@pytest.fixture
def run_id(tracker: MlflowTracker, request: pytest.FixtureRequest) -> str:
    return tracker.start_run(request.node.name)


def _client(tracker: MlflowTracker):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracker.uri)


def test_experiment_created_with_artifact_location_next_to_db(
    tracker: MlflowTracker, store_dir: Path
) -> None:
    experiment = _client(tracker).get_experiment(tracker.experiment_id)
    assert experiment.name == "tests"
    assert experiment.artifact_location == (store_dir / "mlartifacts").as_uri()
    again = MlflowTracker(tracker.uri, experiment="tests")
    assert again.experiment_id == tracker.experiment_id


def test_resolve_tracking_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mlruns" / "0").mkdir(parents=True)  # an old file store: ignored
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(None) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert (
        resolve_tracking_uri("sqlite:///sub/x.db") == f"sqlite:///{tmp_path}/sub/x.db"
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert resolve_tracking_uri(None) == "http://127.0.0.1:5000"
    assert resolve_tracking_uri("sqlite:////abs/m.db") == "sqlite:////abs/m.db"


@pytest.mark.parametrize("status", ["FINISHED", "FAILED", "KILLED"])
def test_end_run_status(tracker: MlflowTracker, run_id: str, status: str) -> None:
    assert _client(tracker).get_run(run_id).info.status == "RUNNING"
    tracker.end_run(run_id, status)
    run = _client(tracker).get_run(run_id)
    assert run.info.status == status
    assert run.info.end_time is not None


def test_end_run_rejects_unknown_status(tracker: MlflowTracker, run_id: str) -> None:
    with pytest.raises(ValueError, match="FINISHED"):
        tracker.end_run(run_id, "DONE")


def test_parent_and_children(tracker: MlflowTracker) -> None:
    parent = tracker.start_run("sweep", tags={"sweep": "priors"})
    first = tracker.start_run("job-0", parent_run_id=parent)
    second = tracker.start_run("job-1", parent_run_id=parent)
    tracker.start_run("unrelated")
    children = tracker.children(parent)
    assert [r.info.run_id for r in children] == [first, second]
    assert children[0].data.tags["mlflow.parentRunId"] == parent
    assert _client(tracker).get_run(parent).data.tags["sweep"] == "priors"
    assert tracker.children(first) == []


def test_log_params_batches_truncates_and_sanitises(
    tracker: MlflowTracker, run_id: str
) -> None:
    params = {f"model.p{i}": i for i in range(250)}
    params["long"] = "x" * 7000
    params["data.path:csv"] = "a.csv"
    tracker.log_params(run_id, params)
    logged = _client(tracker).get_run(run_id).data.params
    assert len(logged) == 252
    assert logged["model.p249"] == "249"
    assert len(logged["long"]) == 6000 and logged["long"].endswith("...")
    assert logged["data.path_csv"] == "a.csv"


def test_changed_param_raises_naming_key(tracker: MlflowTracker, run_id: str) -> None:
    tracker.log_params(run_id, {"fit.chains": 4, "fit.seed": 0})
    tracker.log_params(run_id, {"fit.chains": 4})  # same value: fine
    with pytest.raises(TrackingError, match=r"'fit\.chains'.*'4'.*'2'"):
        tracker.log_params(run_id, {"fit.chains": 2})


def test_log_metrics_drops_non_finite(tracker: MlflowTracker, run_id: str) -> None:
    tracker.log_metrics(
        run_id, {"r_hat_max": 1.003, "bfmi_min": math.nan, "waic": None}
    )
    tracker.log_metrics(run_id, {"elpd_loo": -math.inf, "divergences": 0}, step=1)
    run = _client(tracker).get_run(run_id)
    assert run.data.metrics == {"r_hat_max": 1.003, "divergences": 0.0}
    assert run.data.tags[NOT_FINITE_TAG] == "bfmi_min,elpd_loo,waic"


def test_log_dataset_records_digest(tracker: MlflowTracker, run_id: str) -> None:
    table = pd.DataFrame({"model": pd.Categorical(["a", "b"]), "score": [1, 0]})
    # Differs only in a categorical column, which MLflow's own digest ignores.
    other = table.assign(model=pd.Categorical(["b", "a"]))
    digest = tracker.log_dataset(run_id, table, name="evals", source="evals.csv")
    other_digest = tracker.log_dataset(
        run_id, other, name="evals-2", source="examples:binomial", context="eval"
    )
    assert digest and other_digest and digest != other_digest
    run = _client(tracker).get_run(run_id)
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert inputs["evals"].dataset.digest == digest
    assert inputs["evals-2"].dataset.digest == other_digest
    assert {(t.key, t.value) for t in inputs["evals-2"].tags} == {
        ("mlflow.data.context", "eval")
    }
    assert run.data.tags["hibayes.data_digest"] == other_digest
    assert run.data.tags["hibayes.data_source"] == "examples:binomial"


def test_log_dataset_keeps_a_caller_digest(tracker: MlflowTracker, run_id: str) -> None:
    sha = "f" * 64
    table = pd.DataFrame({"x": [1.0]})
    recorded = tracker.log_dataset(run_id, table, name="t", source="t.csv", digest=sha)
    assert recorded == sha[:36]  # MLflow's digest limit
    assert _client(tracker).get_run(run_id).data.tags["hibayes.data_digest"] == sha


def test_artifacts_round_trip(
    tracker: MlflowTracker, run_id: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    (out / "plots").mkdir(parents=True)
    (out / "summary.csv").write_text("a,b\n1,2\n")
    (out / "plots" / "trace.txt").write_text("trace")
    single = tmp_path / "model_spec.json"
    single.write_text("{}")
    tracker.log_artifacts(run_id, out, "results")
    tracker.log_artifact(run_id, single)
    tracker.log_text(run_id, "hello", "notes/readme.txt")
    dst = tmp_path / "downloaded"
    results = tracker.download_artifact(run_id, "results", dst)
    assert (results / "summary.csv").read_text() == "a,b\n1,2\n"
    assert (results / "plots" / "trace.txt").read_text() == "trace"
    spec = tracker.download_artifact(run_id, "model_spec.json", dst)
    assert spec.read_text() == "{}"
    notes = tracker.download_artifact(run_id, "notes/readme.txt", dst)
    assert notes.read_text() == "hello"


def test_tracker_pickles_into_workers(tracker: MlflowTracker, run_id: str) -> None:
    tracker.client  # noqa: B018 - a live client must not be pickled
    copy = pickle.loads(pickle.dumps(tracker))
    copy.set_tags(run_id, {"worker": "1"})
    assert _client(tracker).get_run(run_id).data.tags["worker"] == "1"


def test_run_url(tracker: MlflowTracker, run_id: str) -> None:
    hint = tracker.run_url(run_id)
    assert hint.startswith(f"mlflow ui --backend-store-uri {tracker.uri}")
    assert run_id in hint
    remote = MlflowTracker("http://127.0.0.1:5000/")
    remote._experiment_id = "7"  # no server here: skip the lookup
    assert remote.run_url("abc") == "http://127.0.0.1:5000/#/experiments/7/runs/abc"


def test_flatten_config_omegaconf() -> None:
    cfg = OmegaConf.create(
        {
            "model": {"name": "two_level", "prior_x": 0.1, "hyper": {"scale": 2}},
            "data": {"categorical": ["group"], "path": "${paths.data}/x.csv"},
            "paths": {"data": "/d"},
            "tracking": {},
            "seed": "???",
        }
    )
    flat = flatten_config(cfg)
    assert flat == {
        "model.name": "two_level",
        "model.prior_x": "0.1",
        "model.hyper.scale": "2",
        "data.categorical": '["group"]',
        "data.path": "/d/x.csv",
        "paths.data": "/d",
        "tracking": "{}",
        "seed": "???",
    }
    assert flatten_config({"a": {"b": 1}}, prefix="cfg") == {"cfg.a.b": "1"}


def test_redact(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "tok-123456789")
    monkeypatch.setenv("HF_TOKEN", "hf_abcdef")
    params = {
        "tracking.password": "hunter2",
        "tracking.api_key": "k",
        "tracking.header": "tok-123456789",
        "data.note": "hf_abcdef",
        "tracking.uri": "https://me:pw@host/mlflow",
        "model.max_tokens": "512",
        "model.name": "two_level",
    }
    assert redact(params) == {
        "tracking.password": "***",
        "tracking.api_key": "***",
        "tracking.header": "***",
        "data.note": "***",
        "tracking.uri": "https://me:***@host/mlflow",
        "model.max_tokens": "512",
        "model.name": "two_level",
    }


def test_provenance_tags() -> None:
    tags = provenance_tags()
    for key in ("hibayes.version", "numpyro_version", "jax_version", "arviz_version"):
        assert tags[key]
    assert tags["mlflow_version"].startswith("3.")
    assert tags["python_version"].count(".") == 2
    assert "/" in tags["platform"]
    if "git_sha" in tags:
        assert len(tags["git_sha"]) == 40
        assert tags["git_dirty"] in {"true", "false"}


def test_provenance_outside_git(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert "git_sha" not in provenance_tags()


def test_check_reachable_fails_fast_for_closed_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    start = time.monotonic()
    with pytest.raises(TrackingError, match=uri):
        MlflowTracker(uri).check_reachable(timeout_s=2)
    assert time.monotonic() - start < 15


def test_check_reachable_creates_sqlite_store(tmp_path: Path) -> None:
    db = tmp_path / "new" / "mlflow.db"
    MlflowTracker(f"sqlite:///{db}").check_reachable()
    assert db.exists()
    assert {p.name for p in db.parent.iterdir()} == {"mlflow.db", ".mlflow.db.lock"}


_RACER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import mlflow  # import first, so that the processes race on the new database
    from hibayes.tracking import MlflowTracker

    uri, barrier, me, n = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    (barrier / me).touch()
    while len(list(barrier.iterdir())) < n:
        time.sleep(0.005)
    tracker = MlflowTracker(uri, experiment="race")
    tracker.end_run(tracker.start_run(f"racer-{me}"))
    print(tracker.experiment_id)
    """
)


@pytest.mark.slow
def test_processes_racing_to_create_a_new_store(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    n = 2
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, uri, str(barrier), str(i), str(n)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(n)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * n, [err for _, err in results]
    assert len({out.strip() for out, _ in results}) == 1
    runs = _client(MlflowTracker(uri)).search_runs(
        [MlflowTracker(uri, experiment="race").experiment_id]
    )
    assert len(runs) == n


def test_null_tracker_does_nothing(tmp_path: Path) -> None:
    null = NullTracker(uri="sqlite:///ignored.db", experiment="x")
    null.check_reachable()
    run = null.start_run("r", tags={"a": "b"}, parent_run_id="p")
    assert run == ""
    null.log_params(run, {"a": 1})
    null.log_metrics(run, {"m": math.nan})
    null.set_tags(run, {"t": "v"})
    assert null.log_dataset(run, pd.DataFrame(), name="d", source="s") == ""
    null.log_artifacts(run, tmp_path)
    null.log_artifact(run, tmp_path / "f")
    null.log_text(run, "x", "x.txt")
    null.end_run(run, "FAILED")
    assert null.children(run) == [] and null.run_url(run) == ""
    with pytest.raises(TrackingError):
        null.get_run(run)
    assert not (tmp_path / "ignored.db").exists()
