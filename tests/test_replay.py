"""Running loans survive deploys: the golden histories under tests/histories/
(recorded from the dev server by scripts/record_golden_histories.py) replay
against today's workflow code. A change that would break a running loan fails
here; see the README's "Changing workflow code" for what to do then.

The negative control below proves this replay can fail: a copy of the
workflow that starts a timer before anything else, registered under the same
name, fails every golden history with a nondeterminism error, while the same
copy without the timer replays them all."""


import base64
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner

# The sandbox imports this module again for the copies below (their module):
# what it needs of the rest it takes as it is.
with workflow.unsafe.imports_passed_through():
    import pytest

    from dunning.contract import WORKFLOW_TYPE
    from runtime.worker_build import sandbox_runner
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
    # Recorded before the deep-stages patch, before the DueDate patch, and
    # before the BorrowerId patch and issues 15-16: loans started then must
    # replay too.
    legacy = {f"legacy-2026-11-{name}" for name in ("dunning-L-GOLD-REPAID", "dunning-L-GOLD-WRITEOFF", "dunning-L-GOLD-DISPUTE")}
    legacy |= {f"legacy-2026-12-{name}" for name in today}
    legacy |= {f"legacy-2026-12b-{name}" for name in today}
    # Before issues 17 and 18's patches, and before the lean lifecycle (issue 19).
    legacy |= {f"legacy-2026-12c-{name}" for name in today}
    legacy |= {f"legacy-2026-12d-{name}" for name in today}
    assert today | legacy <= outcomes


def test_todays_golden_histories_take_the_lean_lifecycle_and_the_legacy_ones_do_not():
    """Today's histories were recorded behind `lean-lifecycle-2026-12` (one
    marker, standing for every patch before it), so replaying them checks the
    lean path; the ones recorded before it never carry it."""
    for path in HISTORIES:
        lean = "lean-lifecycle-2026-12" in patches_of(path)
        assert lean == (not path.stem.startswith("legacy-")), path.name


def patches_of(path: Path) -> list[str]:
    """The patch ids a history's markers carry, in order."""
    found = []
    for event in json.loads(path.read_text(encoding="utf-8"))["events"]:
        marker = event.get("markerRecordedEventAttributes")
        if marker and marker.get("markerName") == "core_patch":
            for payload in marker["details"]["patch-data"]["payloads"]:
                found.append(json.loads(base64.b64decode(payload["data"]))["id"])
    return found


@pytest.mark.asyncio
@pytest.mark.parametrize("sandboxed", [True, False], ids=["sandbox", "no-sandbox"])
@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_a_golden_history_replays_on_todays_code(path: Path, sandboxed: bool):
    # In the sandbox (every check it makes on the workflow code), and as the
    # worker runs it by default, without (DUNNING_WORKFLOW_SANDBOX).
    await replay(path, DunningWorkflow, sandboxed=sandboxed)


async def replay(path: Path, workflow_class: type, *, sandboxed: bool = True) -> None:
    """Replay a golden history as a deploy would: `workflow_class` the only
    workflow registered, under the SDK's sandbox unless `sandboxed` is False."""
    workflow_id = re.sub(r"^legacy-\d{4}-\d{2}[a-z]?-", "", path.stem)  # the id the history was recorded under
    history = WorkflowHistory.from_json(workflow_id, path.read_text(encoding="utf-8"))
    runner = sandbox_runner() if sandboxed else UnsandboxedWorkflowRunner()
    await Replayer(workflows=[workflow_class], workflow_runner=runner).replay_workflow(history)


# -------------------------------------------------------- the negative control


@workflow.defn(name=WORKFLOW_TYPE)
class UnchangedCopy(DunningWorkflow):
    """DunningWorkflow registered anew under its own name, and nothing else:
    so a replay failure of the changed copy is the change's doing."""

    @workflow.run
    async def run(self, loan: Any = None) -> dict:
        return await super().run(loan)


@workflow.defn(name=WORKFLOW_TYPE)
class TimerFirstCopy(DunningWorkflow):
    """A deploy that changed the workflow: a one-second timer before anything
    else, a command no recorded history has at that point."""

    @workflow.run
    async def run(self, loan: Any = None) -> dict:
        await workflow.sleep(timedelta(seconds=1))
        return await super().run(loan)


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_a_golden_history_fails_to_replay_on_a_changed_workflow(path: Path):
    await replay(path, UnchangedCopy)
    with pytest.raises(workflow.NondeterminismError, match="TMPRL1100"):
        await replay(path, TimerFirstCopy)


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
def test_a_golden_history_holds_no_personal_data(path: Path):
    text = path.read_text(encoding="utf-8")
    for personal in PERSONAL_DATA:
        assert personal not in text
