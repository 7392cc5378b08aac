"""The KPI report as a chart (PNG) and a page (HTML) that embeds it.

    png, html = write_report_files(report, Path(".dunning/reports"))

writes `kpi.png` and `kpi.html` in that directory (created if missing),
replacing the last ones. The chart has four panels: recovery rate per group and
currency (bars), cure rate by stage per group (bars), roll rates between DPD
buckets per group (lines) and promise- and plan-kept rates per group (bars).
The page holds the chart (base64, so the file stands alone) and every KPI
table. Matplotlib draws off-screen (Agg, through a Figure of its own: no
display, no pyplot state). Floats are used only for drawing; the tables show
the exact decimals.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path

from matplotlib.figure import Figure

from reports.kpi import Ratio, Report
from reports.kpi_render import ALL, describe_filters, labelled_kpis, tables

PNG_NAME = "kpi.png"
HTML_NAME = "kpi.html"


def _float(ratio: Ratio) -> float:
    value = ratio.value
    return math.nan if value is None else float(value)


def render_png(report: Report) -> bytes:
    series = labelled_kpis(report)
    # A fixed layout: the constrained one would double the drawing time.
    figure = Figure(figsize=(14, 10), dpi=100)
    (recovery, cure), (roll, kept) = figure.subplots(2, 2)
    figure.subplots_adjust(left=0.06, right=0.98, top=0.93, bottom=0.1, wspace=0.2, hspace=0.45)
    figure.suptitle(f"Collections KPIs: {report.overall.loans} loans, {describe_filters(report)}", fontsize=11)

    # Recovery rate: one bar per (group, currency).
    labels, values = [], []
    for label, kpis in series:
        for c in kpis.currencies.values():
            labels.append(f"{label}\n{c.currency}")
            values.append(_float(c.recovery_rate) * 100)
    positions = range(len(labels))
    colours = ["#555555" if label.startswith(ALL + "\n") else "#1f77b4" for label in labels]
    recovery.bar(positions, values, color=colours)
    recovery.set_xticks(list(positions), labels, fontsize=7, rotation=30, ha="right")
    recovery.set_ylabel("% of amount placed")
    recovery.set_title("Recovery rate (recovered / placed)")

    # Cure rate by stage: grouped bars, one colour per group.
    stages = [s.stage for s in report.overall.cure_by_stage]
    width = 0.8 / max(len(series), 1)
    for index, (label, kpis) in enumerate(series):
        offsets = [i - 0.4 + width * (index + 0.5) for i in range(len(stages))]
        cure.bar(offsets, [_float(s.cure_rate) * 100 for s in kpis.cure_by_stage], width, label=label)
    cure.set_xticks(list(range(len(stages))), stages, fontsize=8)
    cure.set_ylabel("% of loans that entered the stage")
    cure.set_title("Cure rate by stage (repaid or settled there)")
    cure.legend(fontsize=7)

    # Roll rates: a line per group.
    transitions = [f"{a}→{b}" for a, b, _ in report.overall.roll_rates]
    for label, kpis in series:
        roll.plot(transitions, [_float(r) * 100 for _, _, r in kpis.roll_rates], marker="o",
                  linewidth=2.5 if label == ALL else 1.2, label=label)
    roll.set_ylim(-5, 105)
    roll.set_ylabel("% of loans in a bucket that reached the next")
    roll.set_title("Roll rates between days-past-due buckets")
    roll.tick_params(axis="x", labelsize=8)
    roll.legend(fontsize=7)

    # Promise- and plan-kept rates.
    names = [label for label, _ in series]
    positions = range(len(names))
    promise_rates = [_float(k.promises.kept_rate) * 100 for _, k in series]
    plan_rates = [_float(k.plans.kept_rate) * 100 for _, k in series]
    kept.bar([p - 0.2 for p in positions], promise_rates, 0.4, label="promises")
    kept.bar([p + 0.2 for p in positions], plan_rates, 0.4, label="plans")
    kept.set_xticks(list(positions), names, fontsize=7, rotation=30, ha="right")
    kept.set_ylabel("% kept of kept + broken")
    kept.set_title("Promises and plans kept")
    kept.legend(fontsize=7)

    # Recovery can pass 100 % (fees and interest charged after placement).
    recovery.set_ylim(0, max([105.0, *(v * 1.05 for v in values if not math.isnan(v))]))
    for axes in (cure, kept):
        axes.set_ylim(0, 105)
    for axes in (recovery, cure, kept):
        axes.grid(axis="y", alpha=0.3)
    roll.grid(alpha=0.3)

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def render_html(report: Report, png: bytes) -> str:
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>Collections KPIs</title>',
        "<style>body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
        "table{border-collapse:collapse;margin:0 0 2em}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}"
        "th:first-child,td:first-child{text-align:left}th{background:#f3f3f3}img{max-width:100%}</style>",
        "</head><body>",
        "<h1>Collections KPIs</h1>",
        f"<p>{report.overall.loans} loans, {e(describe_filters(report))}; generated "
        f"{e(report.generated_at.isoformat(timespec='seconds'))}. Definitions: docs/kpis.md.</p>",
        f'<img alt="KPI chart" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">',
    ]
    for table in tables(report):
        parts.append(f"<h2>{e(table.title)}</h2>")
        parts.append('<table class="kpi">')
        parts.append("<tr>" + "".join(f"<th>{e(cell)}</th>" for cell in table.header) + "</tr>")
        for row in table.rows:
            parts.append("<tr>" + "".join(f"<td>{e(cell)}</td>" for cell in row) + "</tr>")
        parts.append("</table>")
    if report.warnings:
        parts.append("<h2>Warnings</h2><ul>" + "".join(f"<li>{e(w)}</li>" for w in report.warnings) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report_files(report: Report, out_dir: Path) -> tuple[Path, Path]:
    """Write `out_dir/kpi.png` and `out_dir/kpi.html`; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png = render_png(report)
    png_path, html_path = out_dir / PNG_NAME, out_dir / HTML_NAME
    png_path.write_bytes(png)
    html_path.write_text(render_html(report, png), encoding="utf-8")
    return png_path, html_path
