"""Every command in the README runs: each fenced ``bash`` block, command by command.

The blocks run in order in one working directory (files the README names are
written there first: ``results.csv``, ``logs/``, ``my_models.py``,
``hibayes.yaml``), with ``MLFLOW_TRACKING_URI`` pointing at a SQLite store in it,
so later blocks see the runs of earlier ones.

Markers, an HTML comment on the line before a block's opening fence:

- ``<!-- readme-test: skip (why) -->``: not run (needs a cluster, a server that runs
  until stopped, a browser tested elsewhere, or would install packages); the reason
  is required.
- ``<!-- readme-test: shorten -->``: each ``python -m hibayes.fit`` / ``hibayes-fit``
  command gets :data:`SHORT` appended (keys it sets itself are left alone), each
  calibration :data:`SHORT_CALIBRATE`, for blocks whose full length would only cost
  time.

``RUN_ID`` in a command becomes a run of the store: in ``parent=RUN_ID`` a sweep's
parent, elsewhere its children in turn.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MARKER = re.compile(r"<!--\s*readme-test:\s*(skip|shorten)\b\s*(?:\((.+)\))?\s*-->")
#: What ``shorten`` appends to a fit command.
# cv=psis: exact refits have their own tests (tests/unit/diagnostics/test_cross_validation.py)
# and would fail their checks at these lengths anyway.
SHORT = (
    "fit.samples=300",
    "fit.warmup=300",
    "fit.chains=2",
    "fit.prior_samples=50",
    "cv=psis",
)
#: What ``shorten`` appends to a calibration: a handful of short simulated fits (the
#: statistics are tested in tests/unit/diagnostics/test_calibration.py and
#: tests/e2e/test_calibrate.py; here, that the command runs as written).
SHORT_CALIBRATE = (
    "calibrate.simulations=8",
    "calibrate.batch=8",
    "calibrate.rank_draws=19",
    "fit.samples=100",
    "fit.warmup=100",
    "fit.chains=2",
)
#: The commands ``shorten`` applies to, with what it appends.
_SHORTER = {
    "hibayes.fit": SHORT,
    "hibayes-fit": SHORT,
    "hibayes.calibrate": SHORT_CALIBRATE,
    "hibayes-calibrate": SHORT_CALIBRATE,
}
_HYDRA_VALUE_OPTIONS = {
    "--config-dir",
    "-cd",
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
}


@dataclass
class Block:
    """One fenced bash block: where it starts, under which heading, what to do."""

    line: int
    heading: str
    commands: list[str]
    marker: str | None = None
    reason: str | None = None

    @property
    def name(self) -> str:
        """How a failure names the block."""
        return f"README.md:{self.line} ({self.heading})"


def commands(lines: list[str]) -> list[str]:
    """A block's commands: continuation lines joined, comment-only lines dropped."""
    out, current = [], ""
    for raw in lines:
        line = raw.rstrip()
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        out.append((current + line).strip())
        current = ""
    if current:
        out.append(current.strip())
    return out


def readme_blocks(text: str) -> list[Block]:
    """Every ```bash block of the README, with its marker."""
    lines = text.splitlines()
    blocks, heading, i = [], "top", 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        if line.strip() == "```bash":
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
            before = next(
                (lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), ""
            )
            found = MARKER.search(before)
            block = Block(i + 1, heading, commands(lines[i + 1 : end]))
            if found:
                block.marker, block.reason = found.group(1), found.group(2)
            blocks.append(block)
            i = end
        i += 1
    return blocks


def shortened(command: str) -> str:
    """A fit (calibrate) command with :data:`SHORT` (:data:`SHORT_CALIBRATE`) added
    after its other overrides."""
    words = shlex.split(command, comments=True)
    starts = [i for i, w in enumerate(words) if w in _SHORTER]
    if not starts:
        return command
    short = _SHORTER[words[starts[0]]]
    head, rest = words[: starts[0] + 1], words[starts[0] + 1 :]
    options, overrides, i = [], [], 0
    while i < len(rest):  # Hydra wants its options before or after all overrides
        word = rest[i]
        if word.startswith("-"):
            options.append(word)
            if word in _HYDRA_VALUE_OPTIONS and i + 1 < len(rest):
                options.append(rest[i + 1])
                i += 1
        else:
            overrides.append(word)
        i += 1
    keys = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    extra = [s for s in short if s.split("=", 1)[0] not in keys]
    return shlex.join(head + options + overrides + extra)


BLOCKS = readme_blocks(README.read_text())

RESULTS_CSV = "results.csv"
MODELS_FILE = """
from hibayes.model import Model, model
from hibayes.model.models import check_features
import numpyro, numpyro.distributions as dist, jax

@model
def my_custom_model(prior_mu_loc: float = 0.0, prior_mu_scale: float = 1.0) -> Model:
    def program(features):
        check_features(features, ["obs", "num_group", "group_index", "n_total"])
        mu = numpyro.sample("overall_mean", dist.Normal(prior_mu_loc, prior_mu_scale))
        sigma = numpyro.sample("sigma_group", dist.HalfNormal(0.5))
        z = numpyro.sample("z_group", dist.Normal(0, 1).expand([features["num_group"]]))
        effects = numpyro.deterministic("group_effects", mu + sigma * z)
        numpyro.sample("obs", dist.Binomial(total_count=features["n_total"],
                       logits=effects[features["group_index"]]), obs=features["obs"])
    return program
"""
REFERENCE_YAML = """\
model:
  path: my_models.py
  models:
    - name: two_level_group_binomial
      config: {tag: halfnormal}
    - name: my_custom_model
      config: {tag: mine, prior_mu_loc: -1.0}
"""


def write_inspect_logs(folder: Path) -> None:
    """The shipped llm_evals example as Inspect logs, one per model and task."""
    from inspect_ai.log import (
        EvalConfig,
        EvalDataset,
        EvalLog,
        EvalSample,
        EvalSpec,
        write_eval_log,
    )
    from inspect_ai.scorer import Score

    from hibayes.data import example_path, load_table

    table = load_table(example_path("llm_evals"))
    for (model, task), rows in table.groupby(["model", "task"]):
        samples = [
            EvalSample(
                id=r.sample_id,
                epoch=int(r.epoch),
                input="q",
                target="a",
                scores={"match": Score(value=r.score)},
            )
            for r in rows.itertuples()
        ]
        spec = EvalSpec(
            created="2026-01-01T00:00:00+00:00",
            task=task,
            model=model,
            dataset=EvalDataset(name=task, samples=len(samples)),
            config=EvalConfig(),
        )
        write_eval_log(
            EvalLog(status="success", eval=spec, samples=samples),
            str(folder / task / f"2026-01-01T00-00-00_{task}_{model}.eval"),
        )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """The directory every block runs in, with the files the README names."""
    from hibayes.data import example_path, load_table

    work = tmp_path_factory.mktemp("readme")
    table = load_table(example_path("llm_evals"))
    table[["model", "task", "score"]].to_csv(work / RESULTS_CSV, index=False)
    write_inspect_logs(work / "logs")
    (work / "my_models.py").write_text(MODELS_FILE)
    (work / "hibayes.yaml").write_text(REFERENCE_YAML)
    return work


def environment(work: Path) -> dict[str, str]:
    """The user's shell: this interpreter's bin first, the test's store."""
    bin_dir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{work}/mlflow.db",
    }


def run_ids(work: Path) -> tuple[str, list[str]]:
    """A finished sweep's parent run and its children, from the test's store."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{work}/mlflow.db")
    exp = client.get_experiment_by_name("hibayes")
    runs = client.search_runs([exp.experiment_id]) if exp else []
    for parent in runs:
        children = [
            r.info.run_id
            for r in runs
            if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
            and r.info.status == "FINISHED"
        ]
        if len(children) >= 2 and parent.info.status == "FINISHED":
            return parent.info.run_id, children
    raise AssertionError(
        "no finished sweep in the store for RUN_ID: run the README's "
        "sweep block first (the blocks run in order)"
    )


def with_run_ids(command: str, work: Path) -> str:
    """``RUN_ID`` replaced: a sweep's parent in ``parent=RUN_ID``, else its children."""
    if "RUN_ID" not in command:
        return command
    parent, children = run_ids(work)
    command = command.replace("parent=RUN_ID", f"parent={parent}")
    for n in range(command.count("RUN_ID")):
        command = command.replace("RUN_ID", children[n % len(children)], 1)
    return command


def test_every_block_is_run_or_says_why_not():
    assert len(BLOCKS) >= 8
    for block in BLOCKS:
        assert block.commands, block.name
        if block.marker == "skip":
            assert block.reason, f"{block.name}: a skip needs a reason in (...)"


@pytest.mark.parametrize("block", BLOCKS, ids=[f"L{b.line}" for b in BLOCKS])
def test_readme_block_runs(block: Block, workdir: Path):
    if block.marker == "skip":
        pytest.skip(f"{block.name}: {block.reason}")
    env = environment(workdir)
    for command in block.commands:
        command = with_run_ids(command, workdir)
        if block.marker == "shorten":
            command = shortened(command)
        done = subprocess.run(
            ["bash", "-c", command],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=1200,
            check=False,
        )
        assert done.returncode == 0, (
            f"{block.name}: `{command}` exited {done.returncode}\n"
            f"{(done.stdout + done.stderr)[-3000:]}"
        )
