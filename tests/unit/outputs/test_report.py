"""The sweep's HTML report, from real small fits; one rendered by headless Chromium."""

from __future__ import annotations

import base64
import dataclasses
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers.browser import CHROMIUM, CHROMIUM_FLAGS

from hibayes.data import example_path, features_from_config
from hibayes.diagnostics import Thresholds, convergence_failures, diagnose
from hibayes.diagnostics.comparison import compare_fits
from hibayes.inference import FitSettings, fit_model, save_idata
from hibayes.model import get_model
from hibayes.outputs.report import FitRecord, swept_parameter, write_sweep_report

KEY = "model.prior_sigma_group_scale"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Two real fits of the llm_evals example, as a prior sweep would make them."""
    data = features_from_config(
        example_path("llm_evals"),
        observed="score",
        categorical=["group"],
        rename={"model": "group"},
        aggregate=True,
    )
    settings = FitSettings(samples=200, warmup=200, chains=2, prior_samples=100)
    root = tmp_path_factory.mktemp("sweep")
    fits, idatas = [], {}
    for num, scale in enumerate((0.1, 0.6)):
        result = fit_model(
            get_model("two_level_group_binomial"),
            data.features,
            {"prior_sigma_group_scale": scale},
            settings,
            data.coords,
        )
        metrics = diagnose(result.idata)
        name = f"two_level_group_binomial prior_sigma_group_scale={scale}"
        out = root / str(num)
        out.mkdir()
        save_idata(result.idata, out / "idata.nc")
        outcome = {
            "status": "FINISHED",
            "name": name,
            "run_id": "",
            "out_dir": str(out),
            "metrics": metrics,
            "problems": convergence_failures(metrics, Thresholds()),
        }
        fits.append(
            FitRecord.from_outcome(outcome, [f"{KEY}={scale}", "fit.seed=0"], [KEY])
        )
        idatas[name] = result.idata
    failed = FitRecord.from_outcome(
        RuntimeError("sampler rejected its inputs"), [f"{KEY}=-1"], [KEY]
    )
    return fits + [failed], idatas, compare_fits(idatas)


def test_records_come_from_outcomes_and_exceptions(sweep):
    fits, _, _ = sweep
    assert fits[0].overrides == {KEY: "0.1"}  # only the swept key is kept
    assert fits[0].status == "FINISHED" and fits[0].out_dir
    assert fits[2].status == "FAILED" and fits[2].name == f"{KEY}=-1"
    assert fits[2].error == "RuntimeError: sampler rejected its inputs"
    assert not fits[2].converged


def test_swept_hyperparameter_maps_to_its_parameter(sweep):
    _, idatas, _ = sweep
    idata = next(iter(idatas.values()))
    assert swept_parameter(KEY, idata) == "sigma_group"
    assert swept_parameter("model.prior_mu_overall_loc", idata) == "mu_overall"
    assert swept_parameter("model.prior_sigma_overall_scale", idata) == "sigma_overall"
    assert swept_parameter("fit.seed", idata) is None
    assert swept_parameter("model.prior_nothing_scale", idata) is None
    without_prior = idata.copy()
    del without_prior.prior
    assert swept_parameter(KEY, without_prior) is None


def test_report_holds_every_section_self_contained(sweep, tmp_path):
    fits, idatas, table = sweep
    first = next(iter(idatas))  # one fit passed in, the other read from its idata.nc
    path = write_sweep_report(
        tmp_path / "sub" / "report.html",
        fits,
        title="sweep <test>",
        comparison=table,
        idatas={first: idatas[first]},
        links={
            "MLflow parent run": "http://127.0.0.1:5000/#/x",
            "sweep folder": "/tmp/sweep",
        },
    )
    page = path.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "<title>sweep &lt;test&gt;</title>" in page  # escaped
    for heading in (
        "Convergence",
        "Model comparison (PSIS-LOO)",
        "Parameters side by side",
        "Prior vs posterior: sigma_group",
        "Posterior predictive checks",
    ):
        assert f"<h2>{heading}</h2>" in page, heading
    for fit in fits:
        assert fit.name in page
    assert "RuntimeError: sampler rejected its inputs" in page
    assert page.count("not converged") + page.count(">converged<") == 2
    for fit in fits[:2]:
        reason = "; ".join(fit.problems) or "all checks passed"
        assert reason.replace(">", "&gt;").replace("<", "&lt;") in page
    assert "prior_sigma_group_scale=0.1; power-scaling: prior " in page
    # comparison, forest, two prior-vs-posterior and two predictive checks
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 6
    assert all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    assert "_dim_0" not in page and 'class="note">No ' not in page
    # self-contained: nothing is fetched from elsewhere
    assert not re.search(r'(src|href)="(?!data:|http://127\.0\.0\.1:5000/)', page)
    assert "<script" not in page and "<link" not in page


def test_power_scaling_verdict_sits_next_to_the_prior_panel(sweep, tmp_path):
    """The swept parameter's sensitivity per fit, as ArviZ's az.psens computes it;
    read from the fit's sensitivity.csv when it wrote one."""
    import arviz as az

    from hibayes.outputs.sensitivity import write_sensitivity

    fits, idatas, _ = sweep
    with_csv = fits[1]
    write_sensitivity(idatas[with_csv.name], Path(with_csv.out_dir), plot=False)
    page = write_sweep_report(
        tmp_path / "report.html", fits, title="t", idatas=idatas
    ).read_text()
    section = page[page.index("<h2>Prior vs posterior: sigma_group</h2>") :]
    section = section[: section.index("<h2>", 5)]
    assert "power-scaling sensitivity (Kallioinen et al. 2023)" in section
    for fit in fits[:2]:
        idata = idatas[fit.name]
        both = ["sigma_group", "overall_mean"]  # az.psens needs two to return a Dataset
        prior = float(az.psens(idata, component="prior", var_names=both)["sigma_group"])
        lik = float(
            az.psens(idata, component="likelihood", var_names=both)["sigma_group"]
        )
        assert f"power-scaling: prior {prior:.3f}, likelihood {lik:.3f}: " in section
        assert f"<td>{prior:.3f}</td>" in section


def test_figures_drawn_already_are_embedded_not_redrawn(sweep, tmp_path):
    from matplotlib.figure import Figure

    fits, idatas, table = sweep

    def png(path: Path, label: str) -> str:
        fig = Figure(figsize=(2, 1))
        fig.text(0.5, 0.5, label)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
        return base64.b64encode(path.read_bytes()).decode("ascii")

    drawn = {
        name: tmp_path / f"{name}.png" for name in ("comparison", "forest_side_by_side")
    }
    expected = [png(path, name) for name, path in drawn.items()]
    finished = [f for f in fits if f.status == "FINISHED"]
    expected.append(png(Path(finished[0].out_dir) / "plots" / "ppc.png", "ppc"))
    try:
        page = write_sweep_report(
            tmp_path / "report.html",
            fits,
            title="reused",
            comparison=table,
            idatas=idatas,
            drawn=drawn,
        ).read_text()
    finally:
        (Path(finished[0].out_dir) / "plots" / "ppc.png").unlink()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert all(e in images for e in expected)
    assert len(images) == 6  # the other fit's check and the priors are still drawn


def test_missing_pieces_become_notes(sweep, tmp_path):
    fits, idatas, _ = sweep
    bare = {}
    for name, idata in idatas.items():
        bare[name] = idata.copy()
        del bare[name].prior
    page = write_sweep_report(
        tmp_path / "report.html",
        fits[:1],
        title="one fit",
        idatas={fits[0].name: bare[fits[0].name]},
    ).read_text()
    assert "No comparison: it needs at least two finished fits" in page
    assert "fits made with fit.prior_samples=0 have none" in page
    lost = FitRecord(name="gone", status="FINISHED", out_dir=str(tmp_path / "nowhere"))
    page = write_sweep_report(tmp_path / "lost.html", [lost], title="lost").read_text()
    assert "gone: cannot read" in page


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (.ci/run)")
def test_report_renders_in_headless_chromium(sweep, tmp_path):
    fits, idatas, table = sweep
    path = write_sweep_report(
        tmp_path / "report.html",
        fits,
        title="rendered report",
        comparison=table,
        idatas=idatas,
    )
    shot = tmp_path / "report.png"
    done = subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            *CHROMIUM_FLAGS,
            "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1280,3600",
            f"--screenshot={shot}",
            path.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    from PIL import Image

    image = Image.open(shot).convert("L")
    assert image.size == (1280, 3600)
    grey = np.asarray(image)
    # Text and plots, not a blank page: many distinct grey levels, dark pixels present.
    assert len(np.unique(grey)) > 50 and grey.min() < 60
    if os.environ.get("HIBAYES_TEST_ARTIFACTS"):
        out = Path(os.environ["HIBAYES_TEST_ARTIFACTS"])
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, out / "report.png")
        shutil.copy(path, out / "report.html")


def test_convergence_table_shows_pareto_k_before_and_after_cross_validation(
    sweep, tmp_path
):
    fits, _, _ = sweep
    psis_only, refitted = fits[0], fits[1]
    metrics = {**refitted.metrics, "pareto_k_bad": 4.0, "pareto_k_bad_after": 1.0}
    refitted = dataclasses.replace(refitted, metrics=metrics)
    page = write_sweep_report(
        tmp_path / "r.html", [psis_only, refitted], title="cv"
    ).read_text()
    section = page[page.index("<h2>Convergence</h2>") :]
    header = re.findall(r"<th[^>]*>([^<]*)</th>", section.split("</tr>")[0])
    rows = [
        re.findall(r"<td[^>]*>(.*?)</td>", row)
        for row in section.split("</table>")[0].split("<tr>")[2:]
    ]
    before = header.index("bad Pareto k (PSIS)")
    after = header.index("unresolved after CV")
    assert after == before + 1
    assert rows[1][before] == "4" and rows[1][after] == "1"
    # A fit without cross-validation: its PSIS count, and a blank after-CV cell.
    assert rows[0][before] == f"{psis_only.metrics['pareto_k_bad']:.0f}"
    assert rows[0][after] == ""
