"""Write one calibration's files: ranks, per-quantity table, plot and a short report.

``ranks.csv`` (one row per simulation and quantity), ``calibration.csv`` (one
row per quantity: uniformity p-value, convergence, recovery), ``fits.csv`` (one
row per simulated fit: its convergence checks), ``calibration.png`` and
``report.html`` (self-contained, images embedded). A plot that cannot be drawn
becomes a note in the report; nothing here fits or tracks.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hibayes.diagnostics.calibration import Calibration
from hibayes.outputs.files import write_csv
from hibayes.system.atomic import write_bytes, write_text

__all__ = ["write_calibration_outputs"]

log = logging.getLogger(__name__)

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1300px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em;
     border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: .85em; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: right; }
th { background: #f3f3f3; } td.text { text-align: left; }
.ok { color: #1a7f37; font-weight: 600; } .bad { color: #c62828; font-weight: 600; }
.note { color: #555; font-size: .9em; } img { max-width: 100%; }
"""


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _plot(result: Calibration, path: Path) -> bytes | None:
    try:
        from hibayes.plots.calibration_plot import plot_calibration

        fig = plot_calibration(result.tests, result.alpha_each)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90)
    except Exception as exc:  # noqa: BLE001 - a plot must never stop a calibration
        log.warning("skipped calibration plot: %s: %s", type(exc).__name__, exc)
        return None
    write_bytes(path, buf.getvalue())
    return buf.getvalue()


def _quantity_rows(result: Calibration) -> str:
    rows = []
    for r in result.quantities.sort_values("p_value").itertuples():
        badge = (
            '<span class="ok">uniform</span>'
            if r.passed
            else '<span class="bad">not uniform</span>'
        )
        rows.append(
            f"<tr><td class=text>{_esc(r.parameter)}</td><td>{r.p_value:.3g}</td>"
            f"<td>{badge}</td><td>{r.p_value_converged:.3g}</td>"
            f"<td>{r.element_converged_fraction:.0%}</td><td>{r.coverage_50:.0%}</td>"
            f"<td>{r.coverage_94:.0%}</td><td>{r.mean_truth_correlation:.2f}</td>"
            f"<td>{r.rmse:.3g}</td><td>{r.prior_sd:.3g}</td></tr>"
        )
    head = (
        "<tr><th>quantity</th><th>p-value</th><th>ranks</th><th>p (converged "
        "only)</th><th>converged (this quantity)</th><th>50% coverage</th>"
        "<th>94% coverage</th><th>corr(mean, truth)</th><th>RMSE of mean</th>"
        "<th>prior sd</th></tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>"


def _fit_failures(result: Calibration) -> str:
    fits = result.fits
    bad = fits[~fits["converged"]]
    if bad.empty:
        return f"<p>All {len(fits)} simulated fits passed their convergence checks.</p>"
    reasons: dict[str, int] = {}
    for text in bad["problems"]:
        for part in text.split("; "):
            kind = part.split(" ")[0] if part[0].isalpha() else "divergent transitions"
            kind = {
                "R-hat": "R-hat",
                "bulk": "bulk ESS",
                "tail": "tail ESS",
                "E-BFMI": "E-BFMI",
            }.get(kind, kind)
            reasons[kind] = reasons.get(kind, 0) + 1
    listed = ", ".join(f"{k}: {v}" for k, v in sorted(reasons.items()))
    return (
        f'<p class="bad">{len(bad)} of {len(fits)} simulated fits failed their '
        f"convergence checks ({_esc(listed)}). They are counted, not dropped: the "
        "p-values use every simulation, and the 'converged only' column shows "
        "the test without them. Which simulations: fits.csv.</p>"
    )


def _report(
    result: Calibration, title: str, settings: Mapping[str, Any], png: bytes | None
) -> str:
    verdict = result.verdict
    badge = (
        '<span class="ok">calibrated</span>'
        if verdict == "pass"
        else f'<span class="bad">{_esc(verdict)}</span>'
    )
    n_sims = len(result.fits)
    listed = ", ".join(f"{k}={v}" for k, v in settings.items())
    figure = (
        f'<img src="data:image/png;base64,{base64.b64encode(png).decode()}" '
        'alt="calibration plot">'
        if png
        else '<p class="note">No calibration plot (see the log).</p>'
    )
    constant = (
        f'<p class="note">Fixed by the prior, not tested: '
        f"{_esc(', '.join(result.constant))}.</p>"
        if result.constant
        else ""
    )
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>'
        f"{_esc(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{_esc(title)}</h1><p>Verdict: {badge}. {n_sims} data sets simulated "
        f"from the prior and fitted; ranks among {result.n_draws} posterior draws "
        f"thinned evenly from all chains. Each quantity is tested at "
        f"{result.alpha_each:.2g} ({result.alpha} family-wise, Bonferroni over "
        f"{len(result.quantities)} quantities).</p>"
        f'<p class="note">{_esc(listed)}. Written '
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}.</p>"
        f"<h2>Convergence of the simulated fits</h2>{_fit_failures(result)}"
        "<h2>Calibration and recovery per quantity</h2>"
        '<p class="note">p-value: ECDF uniformity test of the ranks (Säilynoja et al. '
        "2022). Coverage: how often the central 50% and 94% posterior intervals held "
        "the true value (a calibrated model covers 50% and 94%, within about "
        "&plusmn;2 sqrt(p(1-p)/n)). corr(mean, truth): how well the data pin the "
        "quantity down (near 0: the posterior stays at the prior).</p>"
        f"{_quantity_rows(result)}{constant}"
        f"<h2>Rank ECDF difference</h2>{figure}"
        '<p class="note">Inside the grey band: uniform ranks. Above zero throughout: '
        "the posterior overestimates (below: underestimates); above in the first half "
        "and below in the second: ranks at both ends, the posterior is too narrow; "
        "below then above: too wide.</p></body></html>\n"
    )


def write_calibration_outputs(
    result: Calibration, out_dir: Path, *, title: str, settings: Mapping[str, Any]
) -> list[Path]:
    """Write ranks.csv, calibration.csv, fits.csv, calibration.png and report.html."""
    paths = [
        write_csv(result.ranks, out_dir / "ranks.csv", index=False),
        write_csv(result.quantities, out_dir / "calibration.csv", index=False),
        write_csv(result.fits, out_dir / "fits.csv"),
    ]
    png = _plot(result, out_dir / "calibration.png")
    if png is not None:
        paths.append(out_dir / "calibration.png")
    report = out_dir / "report.html"
    write_text(report, _report(result, title, settings, png))
    return [*paths, report]
