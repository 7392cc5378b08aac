"""The benchmark's smoke run, `python -m bench --smoke`: its own dev servers,
worker processes and time-skipping server, every phase on a few loans, the
table and the JSON. Not timed: a smoke run's figures mean nothing; this only
keeps the benchmark working (docs/benchmarks.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.devserver
ROOT = Path(__file__).resolve().parent.parent


def test_the_smoke_benchmark_runs_every_phase_and_writes_its_figures(tmp_path):
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "DunningWorkflow" in done.stdout and "floor" in done.stdout  # the table

    results = json.loads(out.read_text(encoding="utf-8"))
    assert results["smoke"] is True
    for kind in ("noop", "essential", "dunning"):
        phase = results[kind]
        assert phase["start"]["workflows"] == phase["signal"]["workflows"] == results["parameters"]["loans"]
        assert phase["start"]["per_second"] > 0 and phase["signal"]["per_second"] > 0
        assert phase["closed_on_server"] == phase["signal"]["workflows"]  # every signalled loan closed
        assert phase["rss_open"] > 0 and phase["max_cached_workflows"]
    assert results["dunning"]["closed_in_database"] == results["parameters"]["loans"]
    # The essential floor wrote and closed its own loans, in its own database.
    assert results["essential"]["closed_in_database"] == results["parameters"]["loans"]

    life = results["lifecycle"]  # a smoke run leaves the busy policy's lifecycle out (only validates the policy)
    assert life["default"]["outcome"] == "written_off" and life["default"]["final_stage"] == "legal"
    assert life["default"]["activities"]["send_contact"] > 10
    assert life["noop"]["events"] < life["default"]["events"]

    figures = [row["figure"] for row in results["figures"]]
    assert any(f.startswith("start throughput") for f in figures)
    assert any(f.startswith("signal->completion") for f in figures)
    assert any(f.startswith("worker RSS") for f in figures)
    assert any("against the essential floor" in f for f in figures)
    assert any("lifecycle, default policy" in f for f in figures)
    assert {"nproc", "cpu_model", "python", "temporalio"} <= set(results["machine"])
