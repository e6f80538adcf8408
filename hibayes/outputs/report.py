"""One self-contained HTML page per sweep: what a person reads after a multirun.

:func:`write_sweep_report` writes ``report.html``: every fit's convergence
verdict with the reason, the PSIS-LOO comparison table, the side-by-side forest
plot, the prior-vs-posterior plot of the swept hyperparameter's parameter next to
each fit's power-scaling sensitivity verdict for it, and
each fit's posterior predictive check. Images are PNGs embedded as base64, so
the one file can be mailed, logged as an MLflow artifact or opened offline.
A plot that cannot be drawn becomes a note in the page; the report never fails
over one. Nothing here fits, compares or tracks: the caller passes what it has.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import arviz as az
import pandas as pd
from matplotlib.figure import Figure

from hibayes.system.atomic import write_text

__all__ = ["FitRecord", "swept_parameter", "write_sweep_report"]

log = logging.getLogger(__name__)

_DPI = 90
_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em;
     border-bottom: 1px solid #ccc; padding-bottom: .2em; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0; }
th, td { border: 1px solid #ddd; padding: .3em .6em; text-align: right; }
th { background: #f3f3f3; } td.text, th.text { text-align: left; min-width: 8em; }
.ok { color: #1a7f37; font-weight: 600; } .bad { color: #c62828; font-weight: 600; }
.note { color: #555; font-size: .9em; } .meta { color: #444; }
.figures { display: grid; gap: 1em;
           grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); }
figure { margin: 0; } figure img { max-width: 100%; border: 1px solid #eee; }
.figures img { width: 100%; }
figcaption { font-size: .9em; color: #333; text-align: center; }
"""
# Columns of the convergence table: label, metric, decimals.
_METRIC_COLUMNS = (
    ("R-hat max", "rhat_max", 3),
    ("bulk ESS min", "ess_bulk_min", 0),
    ("tail ESS min", "ess_tail_min", 0),
    ("divergences", "divergences", 0),
    ("E-BFMI min", "ebfmi_min", 2),
    # Rows PSIS-LOO cannot trust (k above ArviZ's sample-size threshold), and the
    # rows still untrusted after cross-validation refitted them (blank without CV).
    ("bad Pareto k (PSIS)", "pareto_k_bad", 0),
    ("unresolved after CV", "pareto_k_bad_after", 0),
    ("time (s)", "time_total_s", 1),
)
# Suffixes of prior hyperparameter names: prior_<parameter>_<suffix>.
_PRIOR_SUFFIXES = (
    "_loc",
    "_scale",
    "_rate",
    "_concentration",
    "_df",
    "_shape",
    "_low",
    "_high",
)


@dataclass(frozen=True)
class FitRecord:
    """One job of a sweep, as the report shows it.

    :param name: the run name.
    :param status: ``FINISHED``, ``FAILED`` or ``KILLED``.
    :param overrides: swept config key -> this job's value.
    :param metrics: the fit's metrics (:func:`hibayes.diagnostics.diagnose`, timings).
    :param problems: why it did not converge, in words (empty when it did).
    :param error: what went wrong, for a failed job.
    :param out_dir: the job's output folder (holds ``idata.nc``).
    """

    name: str
    status: str
    overrides: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    error: str | None = None
    out_dir: str | None = None

    @classmethod
    def from_outcome(
        cls,
        outcome: Mapping[str, Any] | BaseException,
        job: Sequence[str],
        varying: Sequence[str] = (),
    ) -> FitRecord:
        """Build from a job's outcome dict (or the exception it raised) and overrides.

        :param outcome: :meth:`hibayes.fit.FitOutcome.as_dict`, or an exception.
        :param job: the job's override strings (``key=value``).
        :param varying: the keys that differ between jobs; only they are kept.
        """
        pairs = dict(item.partition("=")[::2] for item in job)
        overrides = {k: pairs[k] for k in varying if k in pairs}
        if isinstance(outcome, BaseException):
            return cls(
                " ".join(job),
                "FAILED",
                overrides,
                error=f"{type(outcome).__name__}: {outcome}",
            )
        return cls(
            name=str(outcome.get("name") or " ".join(job)),
            status=str(outcome.get("status")),
            overrides=overrides,
            metrics=dict(outcome.get("metrics") or {}),
            problems=list(outcome.get("problems") or []),
            error=outcome.get("error"),
            out_dir=outcome.get("out_dir"),
        )

    @property
    def converged(self) -> bool:
        """Finished and every convergence check passed."""
        return self.status == "FINISHED" and self.metrics.get("converged") == 1.0


def swept_parameter(key: str, idata: az.InferenceData) -> str | None:
    """The scalar model parameter a swept prior hyperparameter sets, if there is one.

    ``model.prior_sigma_group_scale`` -> ``sigma_group``;
    ``model.prior_mu_overall_loc`` -> ``mu_overall``. The name must be a scalar
    variable of both the posterior and the prior.

    :param key: a config key such as ``model.prior_sigma_group_scale``.
    :param idata: a fit of the model, with a prior group.
    :return: the variable name, or ``None``.
    """
    base = key.rsplit(".", 1)[-1]
    if not base.startswith("prior_"):
        return None
    name = base.removeprefix("prior_")
    for suffix in _PRIOR_SUFFIXES:
        if name.endswith(suffix):
            name = name.removesuffix(suffix)
            break
    if "prior" not in idata.groups() or name not in idata.prior:
        return None
    var = idata.posterior.get(name)
    return name if var is not None and var.ndim == 2 else None


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _num(value: Any, digits: int = 2) -> str:
    """A metric for a table cell; blank for missing or non-finite values."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return f"{value:.{digits}f}" if isinstance(value, int | float) else _esc(value)


def _data_uri(png: bytes) -> str:
    """PNG bytes as a base64 data URI."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _png(fig: Figure) -> str:
    """A figure as a base64 PNG data URI."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, bbox_inches="tight")
    return _data_uri(buf.getvalue())


def _figure(
    make: Callable[[], Figure], caption: str, what: str, drawn: Path | None = None
) -> str:
    """An embedded figure, or a note saying why it could not be drawn.

    :param drawn: a PNG of this figure already on disk: embedded as it is
        instead of drawing the figure again.
    """
    try:
        if drawn is not None and drawn.is_file():
            uri = _data_uri(drawn.read_bytes())
        else:
            uri = _png(make())
    except Exception as exc:  # noqa: BLE001 - one plot must not sink the report
        log.warning("report: skipped %s: %s: %s", what, type(exc).__name__, exc)
        return (
            f'<p class="note">No {_esc(what)}: {_esc(type(exc).__name__)}: '
            f"{_esc(exc)}</p>"
        )
    return (
        f'<figure><img src="{uri}" alt="{_esc(what)}">'
        f"<figcaption>{_esc(caption)}</figcaption></figure>"
    )


def _table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    text_cols: Sequence[int] = (0,),
) -> str:
    """An HTML table; cells are already-escaped HTML."""

    def cells(tag: str, values: Sequence[str]) -> str:
        return "".join(
            f"<{tag}{' class=text' if i in text_cols else ''}>{v}</{tag}>"
            for i, v in enumerate(values)
        )

    body = "".join(f"<tr>{cells('td', r)}</tr>" for r in rows)
    head = cells("th", [_esc(h) for h in header])
    return f'<div class="scroll"><table><tr>{head}</tr>{body}</table></div>'


def _verdict(fit: FitRecord) -> tuple[str, str]:
    """(badge HTML, reason) for one fit."""
    if fit.status != "FINISHED":
        return f'<span class="bad">{_esc(fit.status)}</span>', fit.error or ""
    if fit.converged:
        return '<span class="ok">converged</span>', "all checks passed"
    return '<span class="bad">not converged</span>', "; ".join(fit.problems)


def _convergence_section(fits: Sequence[FitRecord], keys: Sequence[str]) -> str:
    swept = [k.rsplit(".", 1)[-1] for k in keys]
    header = ["fit", *swept, "verdict", "reason", *(c[0] for c in _METRIC_COLUMNS)]
    rows = []
    for fit in fits:
        badge, reason = _verdict(fit)
        values = [
            _num(fit.metrics.get(key), digits) for _, key, digits in _METRIC_COLUMNS
        ]
        swept_values = [_esc(fit.overrides.get(k, "")) for k in keys]
        rows.append([_esc(fit.name), *swept_values, badge, _esc(reason), *values])
    text = [0, len(keys) + 1, len(keys) + 2]
    return (
        "<h2>Convergence</h2>"
        + _table(header, rows, text)
        + '<p class="note">A fit converged when R-hat, bulk and tail ESS, divergences '
        "and E-BFMI all pass the checks' thresholds (Vehtari et al. 2021). A bad "
        "Pareto k marks a row whose PSIS-LOO value cannot be trusted; cross-validation "
        "(cv=auto, reloo, kfold) replaces those values by exact refits, and the last "
        "count is what is still untrusted after it (a failed refit).</p>"
    )


_COMPARED_BY = {
    "elpd_loo": "PSIS-LOO",
    "elpd_waic": "WAIC",
    "elpd_cv": "cross-validated elpd",
}
_CV_NOTE = (
    "Each fit's elpd_cv is its most reliable estimate (column estimate): psis "
    "(PSIS-LOO, every Pareto k good), reloo (PSIS-LOO with an exact refit for "
    "every row whose k was too high) or kfold (grouped K-fold); differences and "
    "their dse come from the pointwise values of the same held-out rows. "
    "Unresolved rows (a refit that failed its checks, or bad k left under "
    "cv=psis) make a fit's number unreliable."
)


def _comparison_section(
    comparison: pd.DataFrame | None, drawn: Path | None = None
) -> str:
    if comparison is None or comparison.empty:
        return (
            '<h2>Model comparison</h2><p class="note">No comparison: it needs at '
            "least two finished fits of the same data.</p>"
        )
    ic = next(
        (c for c in comparison.columns if c.startswith("elpd_") and c != "elpd_diff"),
        "elpd_loo",
    )
    header = [
        "fit",
        "rank",
        f"{ic} ± se",
        f"p_{ic.removeprefix('elpd_')}",
        "elpd_diff ± dse",
        "weight",
        "Pareto k warning" if ic == "elpd_loo" else "unresolved rows",
    ] + (["estimate"] if "cv_method" in comparison.columns else [])
    rows = [
        [
            _esc(name),
            _num(row.get("rank"), 0),
            f"{_num(row.get(ic), 1)} ± {_num(row.get('se'), 1)}",
            _num(row.get(f"p_{ic.removeprefix('elpd_')}"), 1),
            f"{_num(row.get('elpd_diff'), 1)} ± {_num(row.get('dse'), 1)}",
            _num(row.get("weight"), 2),
            "yes" if bool(row.get("warning")) else "no",
        ]
        + ([_esc(row.get("cv_method"))] if "cv_method" in comparison.columns else [])
        for name, row in comparison.iterrows()
    ]
    from hibayes.plots import plot_comparison

    return (
        f"<h2>Model comparison ({_COMPARED_BY.get(ic, ic)})</h2>"
        + _table(header, rows)
        + '<p class="note">Ranked best first. An elpd_diff below about 4, or within '
        "twice its dse, is small. "
        + (
            _CV_NOTE
            if ic == "elpd_cv"
            else "A Pareto k warning means LOO is unreliable for some observations (common "
            "with one row per group); treat the ranking with care."
        )
        + "</p>"
        + _figure(
            lambda: plot_comparison(comparison),
            "elpd of each fit (higher is better)",
            "comparison plot",
            drawn,
        )
    )


def _idatas_of(
    fits: Sequence[FitRecord], given: Mapping[str, az.InferenceData]
) -> tuple[dict[str, az.InferenceData], list[str]]:
    """InferenceData of every finished fit (given, or read from its idata.nc)."""
    from hibayes.inference import load_idata

    out, notes = {}, []
    for fit in fits:
        if fit.status != "FINISHED":
            continue
        if fit.name in given:
            out[fit.name] = given[fit.name]
            continue
        path = Path(fit.out_dir or "") / "idata.nc"
        try:
            out[fit.name] = load_idata(path)
        except Exception as exc:  # noqa: BLE001 - report what is readable
            notes.append(f"{fit.name}: cannot read {path}: {type(exc).__name__}: {exc}")
    return out, notes


def _caption(fit: FitRecord) -> str:
    values = ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in fit.overrides.items())
    return values or fit.name


def _power_scaling(fit: FitRecord, idata: az.InferenceData, var: str) -> dict | None:
    """The fit's power-scaling row for ``var``: its ``sensitivity.csv``, else computed
    from the idata's ``log_prior`` group; ``None`` when neither exists."""
    csv = Path(fit.out_dir or "") / "sensitivity.csv"
    try:
        if fit.out_dir and csv.is_file():
            table = pd.read_csv(csv, keep_default_na=False)
        elif "log_prior" in idata.groups():
            from hibayes.diagnostics.sensitivity import sensitivity

            table = sensitivity(idata, var_names=[var]).table
        else:
            return None
    except Exception as exc:  # noqa: BLE001 - one fit's file must not sink the report
        log.warning(
            "report: no power-scaling for %s: %s: %s", fit.name, type(exc).__name__, exc
        )
        return None
    rows = table[table["parameter"] == var]
    return None if rows.empty else rows.iloc[0].to_dict()


def _verdict_text(row: dict | None) -> str:
    """One line: the power-scaling numbers and diagnosis of a quantity."""
    if row is None:
        return "power-scaling: not available (checks.sensitivity=false)"
    diagnosis = str(row.get("diagnosis") or "") or "no concern"
    return (
        f"power-scaling: prior {float(row['prior']):.3f}, likelihood "
        f"{float(row['likelihood']):.3f}: {diagnosis}"
    )


def _power_scaling_table(
    fits: Sequence[FitRecord], rows: Mapping[str, dict | None]
) -> str:
    """The power-scaling verdict of the swept parameter in every fit, as a table."""
    body = []
    for fit in fits:
        if fit.name not in rows:
            continue
        row = rows[fit.name]
        if row is None:
            body.append([_esc(_caption(fit)), "", "", "not available", ""])
            continue
        reliable = str(row.get("likelihood_reliable", True)) in ("True", "true", "1")
        body.append(
            [
                _esc(_caption(fit)),
                _num(float(row["prior"]), 3),
                _num(float(row["likelihood"]), 3)
                + ("" if reliable else " (unreliable)"),
                _esc(str(row.get("diagnosis") or "") or "none"),
                _esc(str(row.get("note") or "")),
            ]
        )
    return _table(
        ["fit", "prior sensitivity", "likelihood sensitivity", "diagnosis", "note"],
        body,
        text_cols=(0, 3, 4),
    )


def _prior_section(
    fits: Sequence[FitRecord],
    idatas: Mapping[str, az.InferenceData],
    keys: Sequence[str],
) -> str:
    from hibayes.plots import plot_prior_posterior

    parts = []
    for key in (k for k in keys if k.rsplit(".", 1)[-1].startswith("prior_")):
        named = {n: swept_parameter(key, i) for n, i in idatas.items()}
        found = sorted({v for v in named.values() if v})
        title = f"Prior vs posterior: {found[0] if found else key}"
        if not found:
            parts.append(
                f'<h2>{_esc(title)}</h2><p class="note">No scalar parameter '
                f"named after {_esc(key)} with prior draws in these fits (fits "
                "made with fit.prior_samples=0 have none).</p>"
            )
            continue
        scaled = {
            f.name: _power_scaling(f, idatas[f.name], named[f.name])
            for f in fits
            if named.get(f.name)
        }
        figs = [
            _figure(
                lambda i=idatas[f.name], v=named[f.name]: plot_prior_posterior(i, v),
                f"{_caption(f)}; {_verdict_text(scaled[f.name])}",
                f"prior vs posterior of {named[f.name]} ({f.name})",
            )
            for f in fits
            if named.get(f.name)
        ]
        parts.append(
            f'<h2>{_esc(title)}</h2><p class="note">Swept: {_esc(key)}. Where '
            "the posterior follows the prior, the data say little about this "
            "parameter. Next to this brute-force answer, each fit's power-scaling "
            "sensitivity (Kallioinen et al. 2023) answers the same question from that "
            "fit alone: prior sensitivity of 0.05 or more with a likelihood "
            "sensitivity below 0.05 is a weak likelihood (the prior decides), both "
            "0.05 or more a prior-data conflict.</p>"
            + _power_scaling_table(fits, scaled)
            + '<div class="figures">'
            + "".join(figs)
            + "</div>"
        )
    return "".join(parts)


def write_sweep_report(
    path: str | Path,
    fits: Sequence[FitRecord],
    *,
    title: str,
    comparison: pd.DataFrame | None = None,
    idatas: Mapping[str, az.InferenceData] | None = None,
    links: Mapping[str, str] | None = None,
    drawn: Mapping[str, Path] | None = None,
) -> Path:
    """Write the HTML report of one sweep.

    :param path: the file to write (``report.html``); parent folders are created.
    :param fits: every job of the sweep, failed ones included.
    :param title: the page title (the sweep's parent run name).
    :param comparison: :func:`hibayes.diagnostics.comparison.compare_fits` of the finished fits.
    :param idatas: fit name -> InferenceData, for fits already loaded; the others
        are read from ``<out_dir>/idata.nc``.
    :param links: label -> URL or path shown under the title (parent run, sweep folder).
    :param drawn: PNGs drawn already, embedded instead of drawn again:
        ``"comparison"`` and ``"forest_side_by_side"``. Each fit's posterior
        predictive check is taken from its ``plots/ppc.png`` when present.
    :return: the path written.
    :rtype: pathlib.Path
    """
    from hibayes.plots import plot_forest_side_by_side, plot_ppc

    path = Path(path)
    keys = list(dict.fromkeys(k for f in fits for k in f.overrides))
    loaded, load_notes = _idatas_of(fits, dict(idatas or {}))
    finished = [f for f in fits if f.status == "FINISHED"]
    meta = (
        f"{len(fits)} fits: {len(finished)} finished, "
        f"{sum(f.converged for f in fits)} converged, "
        f"{len(fits) - len(finished)} failed. Swept: "
        f"{', '.join(keys) or 'nothing'}. Written {time.strftime('%Y-%m-%d %H:%M:%S')}."
    )
    link_html = "".join(
        f'<br>{_esc(label)}: <a href="{_esc(url)}">{_esc(url)}</a>'
        if url.startswith("http")
        else f"<br>{_esc(label)}: {_esc(url)}"
        for label, url in (links or {}).items()
        if url
    )
    body = [f'<h1>{_esc(title)}</h1><p class="meta">{_esc(meta)}{link_html}</p>']
    body += [f'<p class="note">{_esc(n)}</p>' for n in load_notes]
    body.append(_convergence_section(fits, keys))
    drawn = dict(drawn or {})
    body.append(_comparison_section(comparison, drawn.get("comparison")))
    if len(loaded) >= 1:
        body.append(
            "<h2>Parameters side by side</h2>"
            + _figure(
                lambda: plot_forest_side_by_side(loaded),
                "posterior mean, interquartile range and 94% HDI of each fit",
                "side-by-side forest plot",
                drawn.get("forest_side_by_side"),
            )
        )
    body.append(_prior_section(finished, loaded, keys))
    body.append(
        '<h2>Posterior predictive checks</h2><div class="figures">'
        + "".join(
            _figure(
                lambda i=loaded[f.name]: plot_ppc(i),
                f.name,
                f"posterior predictive check ({f.name})",
                Path(f.out_dir) / "plots" / "ppc.png" if f.out_dir else None,
            )
            for f in finished
            if f.name in loaded
        )
        + "</div>"
    )
    calibrated = [
        f
        for f in finished
        if f.name in loaded and "cross_validation" in loaded[f.name].groups()
    ]
    if calibrated:
        from hibayes.plots import plot_loo_pit

        body.append(
            '<h2>Calibration (LOO-PIT)</h2><p class="note">Each row\'s PIT under the '
            "predictive that left it out (exact refits where PSIS was unreliable); "
            "a calibrated model follows the diagonal, within the band.</p>"
            '<div class="figures">'
            + "".join(
                _figure(
                    lambda i=loaded[f.name]: plot_loo_pit(i),
                    f.name,
                    f"LOO-PIT ({f.name})",
                    Path(f.out_dir) / "plots" / "loo_pit.png" if f.out_dir else None,
                )
                for f in calibrated
            )
            + "</div>"
        )
    page = (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>"
        + "\n".join(body)
        + "</body></html>\n"
    )
    return write_text(path, page)
