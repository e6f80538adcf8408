"""The wheel works: configs and examples inside it, console scripts as ``python -m``.

A wheel is built from a clean copy of the sources and installed into a fresh venv
that cannot see the checkout (tests/helpers/wheel_env.py: its dependencies are borrowed
from this environment, nothing else). The console scripts then run a short fit
and a short sweep from an empty directory, and compare, sync and reproduce answer
with the exit statuses the README gives.
"""

from __future__ import annotations

import ast
import subprocess
import zipfile
from pathlib import Path

import pytest
import yaml
from helpers.wheel_env import ROOT, build_wheel, make_venv, user_env

pytestmark = pytest.mark.slow

COMMANDS = tuple(
    c
    for c in ("fit", "compare", "reproduce", "sync", "calibrate")
    if (ROOT / "hibayes" / f"{c}.py").exists()
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The project's wheel, built once for the module."""
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def venv_dir(wheel, tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed."""
    return make_venv(tmp_path_factory.mktemp("venv") / "env", wheel)


def store(cwd: Path) -> str:
    """The test's tracking store: ``cwd/mlflow.db``."""
    return f"sqlite:///{cwd}/mlflow.db"


def run(venv_dir: Path, cwd: Path, *cmd: str) -> subprocess.CompletedProcess:
    """A command as its user types it, in ``cwd``, with the venv's bin on PATH."""
    env = {**user_env(venv_dir), "MLFLOW_TRACKING_URI": store(cwd)}
    return subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900, check=False
    )


def test_wheel_ships_every_config_example_and_console_script(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = next(
            zf.read(n).decode()
            for n in names
            if n.endswith(".dist-info/entry_points.txt")
        )
    shipped = [
        p
        for d in (
            "hibayes/conf",
            "hibayes/data/examples",
            "hydra_plugins/hibayes_sweeper",
        )
        for p in (ROOT / d).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    ]
    assert any(p.match("hibayes/conf/hydra/launcher/*.yaml") for p in shipped)
    missing = [
        str(p.relative_to(ROOT))
        for p in shipped
        if str(p.relative_to(ROOT)) not in names
    ]
    assert not missing, f"not in the wheel: {missing}"
    scripts = dict(
        line.replace(" ", "").split("=")
        for line in entry_points.splitlines()
        if "=" in line
    )
    assert scripts == {f"hibayes-{c}": f"hibayes.{c}:cli" for c in COMMANDS}


@pytest.mark.parametrize("command", COMMANDS)
def test_python_m_runs_the_console_scripts_function(command):
    """``python -m hibayes.X`` only calls ``cli``, the console script's target."""
    tree = ast.parse((ROOT / "hibayes" / f"{command}.py").read_text())
    (block,) = [
        n
        for n in tree.body
        if isinstance(n, ast.If) and ast.unparse(n.test) == "__name__ == '__main__'"
    ]
    assert [ast.unparse(s) for s in block.body] == ["cli()"]
    cli = next(
        n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "cli"
    )
    assert "run_command(main" in ast.unparse(cli)


def test_the_venv_sees_the_wheel_not_the_checkout(venv_dir, tmp_path):
    done = run(
        venv_dir,
        tmp_path,
        "python",
        "-c",
        "import hibayes, sys; print(hibayes.__file__); print(sys.path)",
    )
    assert done.returncode == 0, done.stderr
    where, path = done.stdout.splitlines()
    assert Path(where).is_relative_to(venv_dir)
    assert str(ROOT) not in path


def test_installed_fit_from_an_empty_dir(venv_dir, tmp_path):
    done = run(venv_dir, tmp_path, "hibayes-fit", "fit=quick", "tracking=none")
    assert done.returncode == 0, done.stderr[-3000:]
    (job,) = (tmp_path / "outputs").glob("*/*")
    for name in (
        "idata.nc",
        "summary.csv",
        "metrics.json",
        "config.yaml",
        "plots/ppc.png",
    ):
        assert (job / name).is_file(), name
    hydra = yaml.safe_load((job / ".hydra" / "hydra.yaml").read_text())["hydra"]
    (main,) = [s for s in hydra["runtime"]["config_sources"] if s["provider"] == "main"]
    assert (main["schema"], main["path"]) == ("pkg", "hibayes.conf")  # not a folder


def test_installed_exit_status_of_a_refusal(venv_dir, tmp_path):
    refused = run(venv_dir, tmp_path, "hibayes-reproduce", "no-such-run")
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "refused:" in refused.stderr


def test_installed_sweep_compare_and_sync(venv_dir, tmp_path):
    from mlflow.tracking import MlflowClient

    done = run(
        venv_dir,
        tmp_path,
        "hibayes-fit",
        "-m",
        "fit=quick",
        "model.prior_sigma_group_scale=0.2,0.5",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (sweep,) = (tmp_path / "multirun").glob("*/*")
    assert (sweep / "report.html").is_file()
    assert all((sweep / job / "idata.nc").is_file() for job in ("0", "1"))
    client = MlflowClient(tracking_uri=store(tmp_path))
    runs = client.search_runs([client.get_experiment_by_name("hibayes").experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [
        r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    ]
    assert sorted(r.info.status for r in children) == ["FINISHED", "FINISHED"]

    compared = run(
        venv_dir, tmp_path, "hibayes-compare", f"parent={parent.info.run_id}"
    )
    assert compared.returncode == 0, compared.stderr[-3000:]
    assert "elpd_loo" in compared.stdout
    synced = run(venv_dir, tmp_path, "hibayes-sync", "multirun")
    assert synced.returncode == 0, synced.stderr[-2000:]
    assert "nothing pending" in synced.stdout
