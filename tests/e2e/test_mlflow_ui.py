"""The MLflow UI as a user sees it: a real server, a real sweep, headless Chromium.

Starts a tracking-only ``mlflow server`` on a free 127.0.0.1 port, runs a small
prior sweep against it with ``python -m hibayes.fit ... -m``, then drives Debian's
``/usr/bin/chromium`` through Playwright (``executable_path``; no browser download)
and checks what the pages show: the parent run with its children, the key
metrics, a child's plots, the compare view and the parent's HTML report.
Screenshots are kept under the test's temporary folder and, when
``HIBAYES_TEST_ARTIFACTS`` is set, copied there.
"""

from __future__ import annotations

import os
import re
import shutil
import urllib.parse
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

# CI installs the browser and driver (.ci/run): there a missing one fails, not skips.
IN_CI = bool(os.environ.get("CI"))
if IN_CI:
    from playwright import sync_api
else:
    sync_api = pytest.importorskip("playwright.sync_api")

from helpers.browser import CHROMIUM, CHROMIUM_FLAGS  # noqa: E402 (after the skip)

if not CHROMIUM.exists() and not IN_CI:
    pytest.skip(
        "needs Debian's chromium at /usr/bin/chromium (.ci/run installs it)",
        allow_module_level=True,
    )

from helpers.server import MlflowServer, run_hibayes  # noqa: E402

KEY = "model.prior_sigma_group_scale"
VALUES = ("0.1", "0.4", "0.6")
KEY_METRICS = ("elpd_loo", "rhat_max", "converged")
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    """Where screenshots go; copied to $HIBAYES_TEST_ARTIFACTS at the end."""
    folder = tmp_path_factory.mktemp("ui-screenshots")
    yield folder
    target = os.environ.get("HIBAYES_TEST_ARTIFACTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        for png in folder.glob("*.png"):
            shutil.copy(png, Path(target) / png.name)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A tracking-only mlflow server, stopped when the module's tests are done."""
    srv = MlflowServer(tmp_path_factory.mktemp("mlflow-ui-server")).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def sweep(server, tmp_path_factory) -> dict:
    """A three-fit prior sweep logged to the server: parent, children, experiment id."""
    workdir = tmp_path_factory.mktemp("ui-sweep")
    done = run_hibayes(
        workdir,
        "model=two_level_group_binomial",
        "fit.samples=100",
        "fit.warmup=100",
        "fit.prior_samples=0",
        f"hydra.sweep.dir={workdir}/multirun",
        "-m",
        env={"MLFLOW_TRACKING_URI": server.uri},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    client = server.client()
    experiment = client.get_experiment_by_name("hibayes")
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [
        r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    ]
    assert len(children) == 3
    return {
        "experiment_id": experiment.experiment_id,
        "parent": parent,
        "children": sorted(children, key=lambda r: r.data.params[KEY]),
        "sweep_dir": workdir / "multirun",
    }


@pytest.fixture(scope="module")
def playwright():
    """The Playwright driver (it talks to the browser; it downloads nothing)."""
    with sync_api.sync_playwright() as driver:
        yield driver


@pytest.fixture
def page(playwright, tmp_path):
    """A tab of headless Chromium started with a new, empty profile for each test."""
    context = playwright.chromium.launch_persistent_context(
        str(tmp_path / "chromium-profile"),
        executable_path=str(CHROMIUM),
        headless=True,
        args=CHROMIUM_FLAGS,
        viewport={"width": 1600, "height": 1000},
    )
    context.set_default_timeout(TIMEOUT_MS)
    yield context.pages[0] if context.pages else context.new_page()
    context.close()


def experiment_url(server: MlflowServer, sweep: dict, path: str = "runs") -> str:
    """A page of the sweep's experiment, in the UI's model-training mode."""
    return (
        f"{server.uri}/#/experiments/{sweep['experiment_id']}/{path}"
        "?workflowType=machine_learning"
    )


def close_assistant(page) -> None:
    """Close the assistant side panel if this MLflow version opens one."""
    button = page.locator(
        'button[data-component-id="mlflow.assistant.chat_panel.close"]'
    )
    if button.count():
        button.click()


def cell_floats(page, column: str) -> list[float]:
    """The numbers shown in one column of the runs table (blank cells skipped)."""
    cells = page.locator(f'[role="gridcell"][col-id="{column}"]').all_inner_texts()
    return [
        float(c)
        for c in (t.strip() for t in cells)
        if re.fullmatch(r"-?\d[\d.e+-]*", c)
    ]


def test_runs_table_shows_parent_children_and_key_metrics(server, sweep, page, shots):
    children = sweep["children"]
    open_parent(page, server, sweep)
    page.get_by_role("button", name="Columns", exact=True).click()
    for column in (*KEY_METRICS, KEY):
        page.get_by_placeholder("Search columns").fill(column)
        tree = page.get_by_test_id("column-selector-tree")
        tree.locator("[class*=tree-title]").filter(
            has_text=re.compile(rf"^{re.escape(column)}$")
        ).first.click()
    page.keyboard.press("Escape")
    page.locator('[role="gridcell"][col-id="metrics.`elpd_loo`"]').first.wait_for()
    page.screenshot(path=shots / "runs_table.png")
    for metric in KEY_METRICS:
        shown = sorted(cell_floats(page, f"metrics.`{metric}`"))
        stored = sorted(c.data.metrics[metric] for c in children)
        assert shown == pytest.approx(stored, rel=1e-9), metric
    assert sorted(cell_floats(page, f"params.`{KEY}`")) == [float(v) for v in VALUES]


def test_child_run_page_lists_its_metrics_and_verdict(server, sweep, page, shots):
    child = sweep["children"][0]
    page.goto(experiment_url(server, sweep, f"runs/{child.info.run_id}"))
    page.get_by_text(child.info.run_name).first.wait_for()
    page.get_by_text("rhat_max", exact=True).wait_for()
    close_assistant(page)
    text = page.inner_text("body")
    for metric in KEY_METRICS:
        value = child.data.metrics[metric]
        shown = "0" if value == 0 else repr(value)
        assert re.search(rf"{metric}\s+{re.escape(shown)}", text), metric
    assert "hibayes.converged" in text
    page.screenshot(path=shots / "child_run.png", full_page=True)


def test_child_plots_show_in_the_artifact_view(server, sweep, page, shots):
    child = sweep["children"][0]
    page.goto(
        experiment_url(
            server, sweep, f"runs/{child.info.run_id}/artifacts/plots/ppc.png"
        )
    )
    close_assistant(page)
    for name in ("trace.png", "forest.png", "ppc.png", "pareto_k.png"):
        page.get_by_text(name, exact=True).wait_for()
    image = page.locator("img[src^='blob:'], img[src*='get-artifact']").first
    image.wait_for()
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=image.element_handle()
    )
    assert image.evaluate("img => img.naturalWidth") > 300
    page.screenshot(path=shots / "child_plot.png")


def open_parent(page, server: MlflowServer, sweep: dict) -> None:
    """The runs table with the sweep's parent row expanded to show its children."""
    parent = sweep["parent"]
    page.goto(experiment_url(server, sweep))
    page.get_by_text(parent.info.run_name).wait_for()
    close_assistant(page)
    parent_row = page.get_by_role("row").filter(has_text=parent.info.run_name)
    parent_row.locator(
        'button[data-component-id$="runnamecellrenderer.tsx_46"]'
    ).click()
    for child in sweep["children"]:
        page.get_by_text(child.info.run_name, exact=True).wait_for()


def test_compare_view_plots_metrics_against_the_prior(server, sweep, page, shots):
    open_parent(page, server, sweep)
    for child in sweep["children"]:  # tick each child (its checkbox is in a pinned row)
        index = (
            page.get_by_role("row")
            .filter(has_text=child.info.run_name)
            .first.get_attribute("row-index")
        )
        page.locator(
            f'[role="row"][row-index="{index}"] input[type="checkbox"]'
        ).first.check()
    page.get_by_role("button", name="Compare").first.click()
    page.get_by_text("Parallel Coordinates Plot").wait_for()
    assert "compare-runs" in page.url
    assert all(
        c.info.run_id in urllib.parse.unquote(page.url) for c in sweep["children"]
    )
    close_assistant(page)
    # With no clicks, the parallel coordinates plot shows the parameters that differ
    # (the swept prior) against the first metric each fit logged (elpd_loo).
    plot = page.locator(".pcp-plot")
    plot.get_by_text(KEY).first.wait_for()
    plot.get_by_text("elpd_loo", exact=True).first.wait_for()
    page.screenshot(path=shots / "compare_parallel.png")
    page.get_by_role("tab", name="Scatter Plot").click()
    page.locator("#x-axis-selector").click()
    page.get_by_role("option", name=KEY, exact=True).click()
    page.locator("#y-axis-selector").click()
    page.get_by_role("option", name="elpd_loo", exact=True).click()
    plot = page.locator(".js-plotly-plot").filter(has_text="elpd_loo").first
    plot.get_by_text(KEY).first.wait_for()
    # Plotly keeps the plotted points on its element (markers may be WebGL).
    points = plot.evaluate("el => el.data.flatMap(t => t.x.map((x, i) => [x, t.y[i]]))")
    stored = {
        float(c.data.params[KEY]): c.data.metrics["elpd_loo"] for c in sweep["children"]
    }
    assert {float(x): y for x, y in points} == pytest.approx(stored)
    page.screenshot(path=shots / "compare_scatter.png")


def test_parent_run_holds_the_sweep_report(server, sweep, page, shots):
    parent = sweep["parent"]
    assert (sweep["sweep_dir"] / "report.html").exists()
    files = {a.path for a in server.client().list_artifacts(parent.info.run_id)}
    assert {"report.html", "comparison.csv"} <= files
    page.goto(
        experiment_url(
            server, sweep, f"runs/{parent.info.run_id}/artifacts/report.html"
        )
    )
    close_assistant(page)
    report = page.frame_locator("iframe").first
    report.get_by_role("heading", name="Convergence").wait_for()
    for child in sweep["children"]:
        report.get_by_text(child.info.run_name).first.wait_for()
    page.screenshot(path=shots / "parent_report.png")
