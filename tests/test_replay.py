"""Running loans survive deploys: the golden histories under tests/histories/
(recorded from the dev server by scripts/record_golden_histories.py) replay
against today's workflow code. A change that would break a running loan fails
here; see the README's "Changing workflow code" for what to do then."""

from __future__ import annotations

import json
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
    assert {"dunning-L-GOLD-REPAID", "dunning-L-GOLD-WRITEOFF", "dunning-L-GOLD-DISPUTE"} <= outcomes


@pytest.mark.asyncio
@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_a_golden_history_replays_on_todays_code(path: Path):
    history = WorkflowHistory.from_json(path.stem, path.read_text(encoding="utf-8"))
    await Replayer(workflows=[DunningWorkflow], workflow_runner=sandbox_runner()).replay_workflow(history)


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
def test_a_golden_history_holds_no_personal_data(path: Path):
    text = path.read_text(encoding="utf-8")
    for personal in PERSONAL_DATA:
        assert personal not in text
