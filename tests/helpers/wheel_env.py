"""A wheel of this checkout, installed into a fresh venv that cannot see the checkout.

Installing the wheel's dependencies from an index takes minutes on 2 cores (JAX,
MLflow, matplotlib, ...). The test's own environment already holds them, so the
fresh venv borrows them instead: every distribution in the wheel's dependency
closure (its ``Requires-Dist`` without extras, followed through the installed
distributions' own requirements and markers) is symlinked, top-level entry by
top-level entry from its ``RECORD``, into the venv's site-packages. What the
venv sees is what ``pip install hibayes.whl`` would have resolved against this
environment, and nothing else: no editable hibayes, no dev extras, no checkout on
``sys.path``. A dependency the wheel forgot to declare is missing there, as it
would be after a real install. The wheel itself goes in with ``pip --no-deps``,
so its console scripts are written as for any user.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import venv
import zipfile
from email.parser import Parser
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

__all__ = [
    "build_wheel",
    "dependency_closure",
    "make_venv",
    "user_env",
    "wheel_requirements",
]

ROOT = Path(__file__).resolve().parents[2]
#: What an sdist of the project holds: the wheel is built from these only.
SOURCES = ("pyproject.toml", "README.md", "hibayes", "hydra_plugins")


def _normal(name: str) -> str:
    """A distribution name in PEP 503 normal form."""
    return re.sub(r"[-_.]+", "-", name).lower()


def build_wheel(dest: Path) -> Path:
    """Build the wheel (pip, build isolation) from a clean copy of the sources."""
    src = dest / "src"
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(
                path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )
        else:
            src.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, src / name)
    out = dest / "dist"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(out),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"pip wheel failed:\n{done.stdout}\n{done.stderr}")
    (wheel,) = out.glob("hibayes-*.whl")
    return wheel


def wheel_requirements(wheel: Path) -> list[str]:
    """The ``Requires-Dist`` lines of a wheel's METADATA."""
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(zf.read(name).decode())
    return meta.get_all("Requires-Dist") or []


def dependency_closure(requirements: list[str]) -> list[metadata.Distribution]:
    """The installed distributions a set of requirements pulls in, transitively.

    :raises RuntimeError: a needed distribution is missing or has the wrong version.
    """
    found: dict[str, metadata.Distribution] = {}
    extras_seen: dict[str, set[str]] = {}
    todo = [(Requirement(r), {""}, "hibayes") for r in requirements]
    while todo:
        req, extras, parent = todo.pop()
        if req.marker is not None and not any(
            req.marker.evaluate({"extra": e}) for e in extras
        ):
            continue
        key = _normal(req.name)
        wanted = set(req.extras) | {""}
        if key in found and wanted <= extras_seen[key]:
            continue
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            raise RuntimeError(f"{parent} needs {req}, not installed here") from None
        if not req.specifier.contains(dist.version, prereleases=True):
            raise RuntimeError(f"{parent} needs {req}, installed {dist.version}")
        found[key] = dist
        extras_seen[key] = extras_seen.get(key, set()) | wanted
        todo += [(Requirement(r), extras_seen[key], key) for r in dist.requires or []]
    return list(found.values())


def _top_level_entries(dist: metadata.Distribution) -> set[Path]:
    """The site-packages entries (packages, modules, dist-info, .pth) of a dist."""
    if dist.files is None:
        raise RuntimeError(f"{dist.metadata['Name']} has no RECORD: cannot borrow it")
    site = Path(dist.locate_file(""))
    return {site / f.parts[0] for f in dist.files if f.parts and f.parts[0] != ".."}


def make_venv(where: Path, wheel: Path) -> Path:
    """A fresh venv with the wheel installed, its dependencies borrowed; returns it."""
    venv.EnvBuilder(with_pip=False, symlinks=True).create(where)
    python = where / "bin" / "python"
    purelib = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    with zipfile.ZipFile(wheel) as zf:
        # Top-level names the wheel installs into: shared namespaces such as
        # hydra_plugins get a real directory: the install never writes through a link.
        ours = {n.split("/")[0] for n in zf.namelist() if "/" in n}
    for dist in dependency_closure(wheel_requirements(wheel)):
        for entry in _top_level_entries(dist):
            if not entry.exists():
                continue
            target = purelib / entry.name
            if entry.name in ours and entry.is_dir():
                target.mkdir(exist_ok=True)
                for child in entry.iterdir():
                    if not (target / child.name).exists():
                        (target / child.name).symlink_to(child)
            elif not target.exists():
                target.symlink_to(entry)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "--no-index",
            "--no-compile",
            "-q",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"pip install of the wheel failed:\n{done.stdout}\n{done.stderr}"
        )
    return where


def user_env(venv_dir: Path) -> dict[str, str]:
    """The environment of a user of that venv: its bin first, no PYTHONPATH."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")
    }
    env["PATH"] = f"{venv_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv_dir)
    return env
