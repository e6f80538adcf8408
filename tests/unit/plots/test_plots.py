"""Fit plots: PNGs from real fits, category labels, row caps, no figure leaks."""

from __future__ import annotations

import logging
import time

import arviz as az
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure

from hibayes import plots
from hibayes.data import example_path, features_from_config
from hibayes.diagnostics.comparison import compare_fits
from hibayes.inference import FitSettings, fit_model
from hibayes.model import get_model

SHORT = FitSettings(samples=150, warmup=150, chains=2, prior_samples=50)


@pytest.fixture(scope="module")
def binomial_fits(group_data) -> dict[str, az.InferenceData]:
    """Two hierarchical binomial fits of the same data, wide and narrow priors."""
    features, coords, _ = group_data
    factory = get_model("two_level_group_binomial")
    return {
        name: fit_model(
            factory, features, {"prior_sigma_group_scale": scale}, SHORT, coords
        ).idata
        for name, scale in (("wide", 0.4), ("narrow", 0.05))
    }


@pytest.fixture(scope="module")
def ordinal() -> az.InferenceData:
    fs = features_from_config(
        example_path("grader_scores"),
        observed="score",
        categorical=["grader", "llm"],
        num_classes=11,
    )
    return fit_model(
        get_model("ordered_logistic_model"),
        fs.features,
        {"main_effects": ["grader", "llm"]},
        SHORT,
        fs.coords,
    ).idata


@pytest.fixture(scope="module")
def fits(binomial_fits, ordinal) -> dict[str, az.InferenceData]:
    return {"binomial": binomial_fits["wide"], "ordinal": ordinal}


@pytest.fixture
def nested() -> az.InferenceData:
    """A synthetic 3 x 4 x 5 effect, labelled like the three-level model."""
    rng = np.random.default_rng(0)
    coords = {
        "group": ["p1", "p2", "p3"],
        "subgroup": ["small", "medium", "large", "xl"],
        "subsubgroup": [f"t{i}" for i in range(1, 6)],
    }
    posterior = {
        "sigma_group": rng.gamma(2, size=(2, 50)),
        "subsubgroup_effects": rng.normal(size=(2, 50, 3, 4, 5)),
        "z_subsubgroup": rng.normal(size=(2, 50, 3, 4, 5)),
    }
    dims = {
        k: ["group", "subgroup", "subsubgroup"] for k in posterior if k != "sigma_group"
    }
    return az.from_dict(posterior=posterior, coords=coords, dims=dims)


def _png_ok(fig: Figure, path) -> None:
    assert isinstance(fig, Figure)
    fig.savefig(path, dpi=60)
    assert path.stat().st_size > 1000


def _ytick_labels(fig: Figure) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.get_yticklabels()]


def test_effect_and_scalar_vars(fits):
    assert plots.effect_vars(fits["binomial"]) == ["group_effects"]
    assert set(plots.scalar_vars(fits["binomial"])) == {
        "mu_overall",
        "overall_mean",
        "sigma_group",
        "sigma_overall",
    }
    assert plots.effect_vars(fits["ordinal"]) == ["grader_effects", "llm_effects"]
    assert set(plots.scalar_vars(fits["ordinal"])) == {"intercept", "first_cutpoint"}


@pytest.mark.parametrize("kind", ["binomial", "ordinal"])
@pytest.mark.parametrize(
    "plot", ["trace", "forest", "ppc", "pareto_k", "prior_posterior"]
)
def test_each_plot_writes_a_png(fits, kind, plot, tmp_path):
    idata = fits[kind]
    if plot == "prior_posterior":
        fig = plots.plot_prior_posterior(idata, plots.scalar_vars(idata)[0])
    else:
        fig = getattr(plots, f"plot_{plot}")(idata)
    _png_ok(fig, tmp_path / f"{plot}.png")
    titles = [ax.get_title() for ax in fig.axes] + [fig.get_suptitle()]
    assert any(t for t in titles), "every plot says what it is"
    assert plt.get_fignums() == []


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("binomial", ["model-a", "model-h"]),
        ("ordinal", ["grader-1", "llm-e"]),
    ],
)
def test_forest_rows_named_by_category(fits, kind, expected):
    labels = _ytick_labels(plots.plot_forest(fits[kind]))
    for name in expected:
        assert any(name in label for label in labels), labels
    assert not any("dim_" in label for label in labels)


def test_forest_flattens_nested_effects_and_caps_rows(nested):
    assert plots.effect_vars(nested) == ["subsubgroup_effects"]
    fig = plots.plot_forest(nested, max_rows=20)
    labels = [lab for lab in _ytick_labels(fig) if lab]
    assert any("p1 / small / t1" in lab for lab in labels), labels
    assert len(labels) == 20
    assert "first 20 of 60" in fig.axes[0].get_title()
    trace = plots.plot_trace(nested)
    assert f"first {plots.MAX_TRACE_LEVELS} of 60" in trace.get_suptitle()


def test_ppc_binomial_labels_observations(fits):
    fig = plots.plot_ppc(fits["binomial"])
    assert "model-a" in _ytick_labels(fig)
    assert "success rate" in fig.axes[0].get_xlabel()


def test_ppc_ordinal_is_a_class_histogram(fits):
    ax = plots.plot_ppc(fits["ordinal"]).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(k) for k in range(11)]


def test_pareto_k_draws_both_thresholds(fits):
    ax = plots.plot_pareto_k(fits["binomial"]).axes[0]
    levels = sorted({round(float(line.get_ydata()[0]), 3) for line in ax.get_lines()})
    good_k = min(1 - 1 / np.log10(2 * SHORT.samples), 0.7)
    assert levels == [round(good_k, 3), 0.7]


@pytest.mark.parametrize("kind", ["binomial", "ordinal"])
def test_save_fit_plots_writes_four_files_quickly(fits, kind, tmp_path):
    start = time.perf_counter()
    paths = plots.save_fit_plots(fits[kind], tmp_path)
    elapsed = time.perf_counter() - start
    assert [p.name for p in paths] == [
        "trace.png",
        "forest.png",
        "ppc.png",
        "pareto_k.png",
    ]
    assert all(p.stat().st_size > 1000 for p in paths)
    assert elapsed < 10, elapsed
    assert plt.get_fignums() == []


def test_save_fit_plots_skips_what_cannot_be_drawn(fits, tmp_path, caplog):
    idata = fits["binomial"]
    partial = az.InferenceData(
        posterior=idata.posterior, observed_data=idata.observed_data
    )
    with caplog.at_level(logging.WARNING, logger="hibayes.plots"):
        paths = plots.save_fit_plots(partial, tmp_path)
    assert [p.name for p in paths] == ["trace.png", "forest.png"]
    assert "skipped ppc plot" in caplog.text and "skipped pareto_k plot" in caplog.text
    assert plt.get_fignums() == []


def test_comparison_and_side_by_side_plots(binomial_fits, tmp_path):
    _png_ok(plots.plot_comparison(compare_fits(binomial_fits)), tmp_path / "cmp.png")
    fig = plots.plot_forest_side_by_side(binomial_fits)
    _png_ok(fig, tmp_path / "side.png")
    labels = _ytick_labels(fig)
    assert any("model-a" in lab for lab in labels)
    assert any("sigma_group" in lab for lab in labels)
    assert not any("z_group" in lab or "dim_" in lab for lab in labels)
    legend_texts = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert set(legend_texts) == {"wide", "narrow"}
    assert plt.get_fignums() == []


class _KillsTheWorker:
    """Unpickled in the plot worker, it ends that process at once."""

    def __reduce__(self):
        import os

        return (os._exit, (3,))


def test_plot_worker_draws_in_order_gives_back_waiting_fits_and_survives_its_own_death(
    binomial_fits, tmp_path
):
    from concurrent.futures.process import BrokenProcessPool

    from hibayes.sweep.plot_worker import PlotWorker, wait_for_plots

    idata = binomial_fits["wide"]
    loo = az.loo(idata, pointwise=True)
    expected = {"trace.png", "forest.png", "ppc.png", "pareto_k.png"}
    worker = PlotWorker()
    try:
        first = worker.submit(idata, tmp_path / "first", loo)
        waiting = worker.submit(idata, tmp_path / "waiting", loo)
        assert (
            waiting.cancel()
        )  # not yet in the worker's hands: the caller takes it back
        files, seconds = first.result(timeout=300)
        assert {p.name for p in files} == expected and seconds > 0
        assert all(
            (tmp_path / "first" / name).stat().st_size > 1000 for name in expected
        )
        assert not (tmp_path / "waiting").exists()
        doomed = worker.submit(idata, tmp_path / "doomed", _KillsTheWorker())
        with pytest.raises(BrokenProcessPool):
            doomed.result(timeout=300)
        after = worker.submit(idata, tmp_path / "after", loo)
        with pytest.raises(BrokenProcessPool):
            after.result(timeout=60)
    finally:
        worker.close(wait=False)
    # What a run closing does with each: draw here what the worker did not.
    for future, folder in ((waiting, "waiting"), (doomed, "doomed"), (after, "after")):
        assert wait_for_plots(future, idata, loo, tmp_path / folder) > 0
        assert {p.name for p in (tmp_path / folder).iterdir()} == expected


def test_labels_in_any_script_draw_without_glyph_warnings(tmp_path):
    """CJK and emoji category names: no 'Glyph ... missing' warning when saved."""
    import warnings

    from matplotlib import rcParams
    from matplotlib.figure import Figure

    import hibayes.plots  # noqa: F401 - sets the fallback fonts

    assert rcParams["font.family"][-1] == "Last Resort High-Efficiency"
    fig = Figure()
    ax = fig.subplots()
    ax.set_title("模型 \U0001f600 model-a")
    ax.set_yticks([0, 1], ["グレーダー", "评分者"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig.savefig(tmp_path / "labels.png")


def test_pareto_k_names_only_the_largest_of_many_bad_rows():
    """Hundreds of bad rows: the MAX_K_LABELS largest are named, and the title says so."""
    rng = np.random.default_rng(2)
    n_obs = 300
    idata = az.from_dict(
        posterior={"mu": rng.normal(size=(2, 100))},
        log_likelihood={"obs": 40 * rng.standard_normal((2, 100, n_obs))},
    )
    with pytest.warns(UserWarning):
        loo = az.loo(idata, pointwise=True)
    k = np.asarray(loo.pareto_k)
    good_k = float(loo.good_k)
    assert (k > good_k).sum() > plots.MAX_K_LABELS  # the case at hand
    ax = plots.plot_pareto_k(idata, loo=loo).axes[0]
    named = [int(t.get_text().split()[-1]) for t in ax.texts]
    assert len(named) == plots.MAX_K_LABELS
    assert sorted(named) == sorted(np.argsort(-k)[: plots.MAX_K_LABELS].tolist())
    assert f"the {plots.MAX_K_LABELS} largest named" in ax.get_title()
