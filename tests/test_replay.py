"""Running loans survive deploys: the golden histories under tests/histories/
(recorded from the dev server by scripts/record_golden_histories.py) replay
against today's workflow code. A change that would break a running loan fails
here; see the README's "Changing workflow code" for what to do then."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from worker import sandbox_runner
from workflows.dunning import DunningWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))
# Recorded with this borrower in the directory (scripts/record_golden_histories.py).
PERSONAL_DATA = ("黄金样本", "+8613800138099", "8613800138099", "golden@example.com")


def test_there_are_golden_histories_of_each_outcome():
    outcomes = set()
    for path in HISTORIES:
        events = json.loads(path.read_text(encoding="utf-8"))["events"]
        completed = [e for e in events if "workflowExecutionCompletedEventAttributes" in e]
        assert completed, f"{path.name} is not a finished workflow"
        outcomes.add(path.stem)
    today = {"dunning-L-GOLD-REPAID", "dunning-L-GOLD-WRITEOFF", "dunning-L-GOLD-DISPUTE",
             "dunning-L-GOLD-PLAN", "dunning-L-GOLD-PROMISE", "dunning-L-GOLD-LEGAL"}
    # Recorded before the deep-stages patch: loans started then must replay too.
    legacy = {f"legacy-2026-11-{name}" for name in ("dunning-L-GOLD-REPAID", "dunning-L-GOLD-WRITEOFF", "dunning-L-GOLD-DISPUTE")}
    assert today | legacy <= outcomes


@pytest.mark.asyncio
@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_a_golden_history_replays_on_todays_code(path: Path):
    workflow_id = re.sub(r"^legacy-\d{4}-\d{2}-", "", path.stem)  # the id the history was recorded under
    history = WorkflowHistory.from_json(workflow_id, path.read_text(encoding="utf-8"))
    await Replayer(workflows=[DunningWorkflow], workflow_runner=sandbox_runner()).replay_workflow(history)


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
def test_a_golden_history_holds_no_personal_data(path: Path):
    text = path.read_text(encoding="utf-8")
    for personal in PERSONAL_DATA:
        assert personal not in text
