"""Cost per loan on Temporal Cloud (issue 19, item 6): the billable Actions of
each policy's 180-day lifecycle, counted from its history, priced at the
published rate.

    python -m bench.cost                  # every policy's lifecycle; prints the doc's markdown tables (~15 s)
    python -m bench.cost --out FILE       # the numbers as JSON to FILE (default .dunning/bench-cost.json)
    python -m bench.cost --table bench/results.json   # the tables of an earlier `make bench` run

`make bench` runs the same lifecycles (bench/lifecycle.py, which counts each
one's Actions with `lifecycle_actions`) and prints these tables after its own.

What counts, and how much, is Temporal's published definition, applied event
by event to the history exactly as it says (ACTIONS_URL, read 2026-12-05; the
page carries no date of its own; its source is temporalio/documentation
docs/evaluate/cloud/actions.mdx at 24afc58a). Where the page names a history
event but leaves a detail open (which markers, a signal-with-start's signal),
the rule follows Temporal's own estimator, the Temporal UI's "Billable Actions"
column (UI_ESTIMATOR_URL), and says so. Each reason below is the page's
metric name for that Action.

A provider's report on a message is a signal the benchmark's local providers
never send: `report_actions` measures what one costs, and the second table
adds one per message sent. Not in any history, so not counted
(docs/benchmarks.md, "Cost per loan", says what each adds): Queries (an
operator's `status`, the pay page), rejected Updates, Activity Heartbeats,
Workflow Task Heartbeats, and a Schedule's own two Actions per run.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import shutil
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.api.history.v1 import History, HistoryEvent
from temporalio.client import WorkflowHandle, WorkflowHistory
from temporalio.testing import WorkflowEnvironment

from bench.processes import ROOT
from bench.workload import prepare_config
from db.models import Contact
from db.session import make_engine, make_session_factory
from dunning.contract import SIGNAL_CONTACT_OUTCOME, WORKFLOW_TYPE, workflow_id_for
from dunning.keys import step_of_contact_key
from runtime.time_skipping import start_time_skipping, terminate_when_idle
from runtime.worker_build import build_worker

ACTIONS_URL = "https://docs.temporal.io/evaluate/cloud/actions"
PRICING_URL = "https://docs.temporal.io/cloud/pricing"
UI_ESTIMATOR_URL = ("https://github.com/temporalio/ui/blob/main/"
                    "src/lib/models/event-history/get-event-billable-actions.ts")
READ_ON = "2026-12-05"  # neither page is dated; this is the day their text was read

# Pay-As-You-Go (PRICING_URL, "Action pricing"): "Actions pricing starts at $50
# per million Actions ($0.00005 per Action). The Developer plan is billed at
# $50 per million Actions at every volume." The Business, Enterprise and
# Mission Critical plans get these volume prices on the account's calendar month:
LIST_USD_PER_MILLION = 50.0
VOLUME_TIERS = (  # (Actions in the tier, USD per million)
    (5_000_000, 50.0),
    (5_000_000, 45.0),
    (10_000_000, 40.0),
    (30_000_000, 35.0),
    (50_000_000, 30.0),
    (100_000_000, 25.0),
)
# Over 200M a month the page says "Contact Sales": no published price. Actions
# past it are priced at the last published one ($25), an upper bound.
PUBLISHED_UP_TO = sum(size for size, _ in VOLUME_TIERS)
LOANS_A_MONTH = 1_000_000

# The policies of the table: the three production ones of config/policies/,
# and the benchmark's stress policy (bench/policies/busy.toml: an SMS every
# day). `demo` is left out: it is the default policy on a 4-second day, for
# watching the UI, never for real loans; its 180 loan days would be the
# default's lifecycle with every daily cap lifted.
POLICIES = ("default", "us", "challenger_early_calls", "busy")

_E = EventType
# Markers that record a patch (Python, TypeScript, .NET and Rust SDKs:
# `core_patch`; Go and Java: `Version`) are not charged by Temporal's estimator.
_PATCH_MARKERS = frozenset({"core_patch", "Version"})
_CHANGE_VERSION = "TemporalChangeVersion"
_SCHEDULED_BY = "TemporalScheduledById"
# "Local Activities retried following a Workflow Task Heartbeat count as one
# Action (capped at 100 Actions)", per Workflow Task as the estimator reads it.
_LOCAL_RETRY_CAP = 100


def _events(history: WorkflowHistory | History | Iterable[HistoryEvent]) -> list[HistoryEvent]:
    if isinstance(history, (WorkflowHistory, History)):
        return list(history.events)
    return list(history)


def billable_actions(history: WorkflowHistory | History | Iterable[HistoryEvent]) -> Counter[str]:
    """The Temporal Cloud Actions one run's history records, by reason (the
    Actions page's metric name). A Counter's total is the run's Actions."""
    events = _events(history)
    actions: Counter[str] = Counter()
    marked_tasks: set[int] = set()  # workflow tasks whose markers were charged already
    for index, event in enumerate(events):
        kind = event.event_type
        if kind == _E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            attrs = event.workflow_execution_started_event_attributes
            fields = attrs.search_attributes.indexed_fields
            following = events[index + 1].event_type if index + 1 < len(events) else None
            if _SCHEDULED_BY in fields and attrs.first_execution_run_id == attrs.original_execution_run_id:
                # "Each execution of a Schedule accrues three Actions: Schedule
                # Start. This accounts for two actions. Workflow started."
                actions["schedule_workflow"] += 3
            elif attrs.continued_execution_run_id:
                # Continue-As-New is a "Workflow started"; the page's table puts
                # its one Action on the new run's STARTED event, not on the old
                # run's CONTINUED_AS_NEW, so summing the runs counts it once.
                actions["continue_as_new_workflow"] += 1
            elif following == _E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
                # "one total action occurs for any Signal-With-Start": this start,
                # and not the signal recorded right after it (below).
                actions["signal_workflow_with_start"] += 1
            else:
                # "Search Attributes specified during Workflow start are excluded."
                actions["start_workflow"] += 1
        elif kind == _E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            if not (index == 1 and events[0].event_type == _E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED):
                # "An Action occurs for every Signal, whether sent from a Client
                # or from a Workflow", shown in the signalled workflow's history.
                actions["signal_workflow"] += 1
        elif kind == _E.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
            # "Multiple Search Attributes updated in a single UpsertSearchAttributes
            # command count as one Action." "The TemporalChangeVersion Search
            # Attribute, used for Workflow versioning, is also exempt": the SDK's
            # own upsert after each patch carries only that one.
            if set(fields) - {_CHANGE_VERSION}:
                actions["upsert_workflow_search_attributes"] += 1
        elif kind == _E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            # "Activity started or retried": the first attempt ...
            actions["schedule_activity"] += 1
        elif kind == _E.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            # ... and each retry: "Total attempt count is recorded in the
            # ActivityTaskStartedEventAttributes.attempt field on this event. The
            # user should subtract 1, because the first attempt is not a retry."
            retries = max(event.activity_task_started_event_attributes.attempt - 1, 0)
            if retries:
                actions["retry_activity"] += retries
        elif kind == _E.EVENT_TYPE_MARKER_RECORDED:
            attrs = event.marker_recorded_event_attributes
            # "All Local Activities associated with one Workflow Task count as a
            # single Action. Temporal Cloud counts all RecordMarkers from each
            # Workflow Task as one action, and not N actions."
            if attrs.marker_name not in _PATCH_MARKERS and attrs.workflow_task_completed_event_id not in marked_tasks:
                marked_tasks.add(attrs.workflow_task_completed_event_id)
                actions["record_activity_markers"] += 1
        elif kind == _E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            # "Retry Local Activity: the retry count is recorded in
            # WorkflowTaskCompletedEventAttributes.metering_metadata
            # .nonfirst_local_activity_execution_attempts".
            retries = event.workflow_task_completed_event_attributes.metering_metadata.nonfirst_local_activity_execution_attempts
            if retries:
                actions["retry_activity_local"] += min(retries, _LOCAL_RETRY_CAP)
        elif kind == _E.EVENT_TYPE_TIMER_STARTED:
            # "Timer started. Includes implicit Timers ... such as condition":
            # workflow.wait_condition(timeout=...) in Python.
            actions["start_timer"] += 1
        elif kind == _E.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
            # "Results in two Actions, one for durably storing the intent to start
            # a Child Workflow and one for the attempt to start it."
            actions["start_child_workflow"] += 2
        elif kind == _E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            actions["accept_workflow_update"] += 1
        elif kind == _E.EVENT_TYPE_WORKFLOW_EXECUTION_OPTIONS_UPDATED:
            actions["update_workflow_options"] += 1
        elif kind == _E.EVENT_TYPE_NEXUS_OPERATION_SCHEDULED:
            actions["schedule_nexus_operation"] += 1
        elif kind == _E.EVENT_TYPE_NEXUS_OPERATION_CANCEL_REQUESTED:
            actions["request_nexus_operation_cancellation"] += 1
        elif kind == _E.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            cause = event.workflow_task_failed_event_attributes.cause
            if cause == WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_RESET_WORKFLOW:
                actions["reset_workflow"] += 1
        # Not charged: WORKFLOW_EXECUTION_CONTINUED_AS_NEW (counted on the new
        # run's start), SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED (counted in
        # the signalled history), activity and timer results, workflow tasks.
    return actions


def lifecycle_actions(runs: Iterable[WorkflowHistory | History | Iterable[HistoryEvent]]) -> Counter[str]:
    """A lifecycle's Actions: every run's, summed (continue-as-new included)."""
    total: Counter[str] = Counter()
    for run in runs:
        total.update(billable_actions(run))
    return total


def volume_price(actions: float) -> tuple[float, bool]:
    """USD for a calendar month's `actions` at the Pay-As-You-Go volume prices,
    and whether that is an upper bound (over 200M, where Sales prices)."""
    usd, left = 0.0, actions
    for size, per_million in VOLUME_TIERS:
        used = min(left, size)
        usd += used * per_million / 1e6
        left -= used
    usd += left * VOLUME_TIERS[-1][1] / 1e6
    return usd, left > 0


def priced(per_loan: float) -> dict:
    """`per_loan` Actions a lifecycle: USD a loan at the list price, and a
    month's Actions and USD for LOANS_A_MONTH loans placed every month. In a
    steady state each month carries as many lifecycle-months as loans placed
    in one month, so a month's Actions are LOANS_A_MONTH times one lifecycle's."""
    monthly = per_loan * LOANS_A_MONTH
    volume_usd, bound = volume_price(monthly)
    return {
        "actions_per_loan": per_loan,
        "usd_per_loan_list": per_loan * LIST_USD_PER_MILLION / 1e6,
        "actions_a_month": monthly,
        "usd_a_month_list": monthly * LIST_USD_PER_MILLION / 1e6,
        "usd_a_month_volume": volume_usd,
        "usd_a_month_volume_is_upper_bound": bound,
        "usd_per_loan_volume": volume_usd / LOANS_A_MONTH,
    }


def cost_rows(lifecycle: dict, reports: dict | None = None) -> list[dict]:
    """One row per policy measured, priced (`priced`); with `reports`
    (`provider_reports`), also as if a provider reported on every message."""
    rows = []
    for policy in [p for p in POLICIES if p in lifecycle] + sorted(set(lifecycle) - set(POLICIES) - {"noop"}):
        reasons = lifecycle[policy].get("billable_actions")
        if reasons is None:
            continue
        row = {
            "policy": policy,
            "events": lifecycle[policy].get("events"),
            "runs": lifecycle[policy].get("runs"),
            "outcome": lifecycle[policy].get("outcome"),
            "by_reason": dict(sorted(reasons.items(), key=lambda item: -item[1])),
            **priced(sum(reasons.values())),
        }
        if reports and policy in reports.get("messages", {}):
            messages, per_report = reports["messages"][policy], reports["per_report"]["actions"]
            row["with_reports"] = {"messages": messages, "actions_per_report": per_report,
                                   **priced(row["actions_per_loan"] + messages * per_report)}
        rows.append(row)
    return rows


def cost_summary(lifecycle: dict, reports: dict | None = None) -> dict:
    """What results.json keeps under "cost": the rows and where the rules and prices come from."""
    return {
        "rows": cost_rows(lifecycle, reports),
        "provider_report": (reports or {}).get("per_report"),
        "loans_a_month": LOANS_A_MONTH,
        "list_usd_per_million": LIST_USD_PER_MILLION,
        "volume_tiers": [list(tier) for tier in VOLUME_TIERS],
        "sources": {"actions": ACTIONS_URL, "pricing": PRICING_URL, "estimator": UI_ESTIMATOR_URL, "read_on": READ_ON},
    }


def _money_cells(priced_row: dict) -> str:
    bound = "≤ " if priced_row["usd_a_month_volume_is_upper_bound"] else ""
    return (f"{priced_row['usd_per_loan_list']:.4f} | {priced_row['actions_a_month'] / 1e6:,.0f}M | "
            f"{priced_row['usd_a_month_list']:,.0f} | {bound}{priced_row['usd_a_month_volume']:,.0f} |")


_MONEY_HEADER = ("USD per loan at $50/M | Actions a month, 1,000,000 loans a month | USD a month at $50/M | "
                 "USD a month, volume prices |")


def markdown_table(rows: list[dict]) -> str:
    """The table of docs/benchmarks.md's "Cost per loan", as printed by `python -m bench.cost`."""
    lines = ["| policy | history events (runs) | Actions per loan | " + _MONEY_HEADER,
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        lines.append(f"| {row['policy']} | {row['events']:,} ({row['runs']}) | {row['actions_per_loan']:,} | "
                     + _money_cells(row))
    return "\n".join(lines)


def reports_table(rows: list[dict]) -> str:
    """The same lifecycles as if a provider reported on every message (a
    `contact_outcome` signal each, and what it wakes the workflow to do)."""
    lines = ["| policy | messages | Actions per report | Actions per loan | " + _MONEY_HEADER,
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        if (more := row.get("with_reports")) is not None:
            lines.append(f"| {row['policy']} | {more['messages']} | {more['actions_per_report']} | "
                         f"{more['actions_per_loan']:,} | " + _money_cells(more))
    return "\n".join(lines) if len(lines) > 2 else ""


def reasons_table(rows: list[dict]) -> str:
    """Actions per loan by reason (the page's metric names), one column per policy."""
    reasons = sorted({reason for row in rows for reason in row["by_reason"]},
                     key=lambda reason: -max(row["by_reason"].get(reason, 0) for row in rows))
    lines = ["| Action (metric name) | " + " | ".join(row["policy"] for row in rows) + " |",
             "| --- |" + " ---: |" * len(rows)]
    for reason in reasons:
        lines.append(f"| `{reason}` | " + " | ".join(str(row["by_reason"].get(reason, 0)) for row in rows) + " |")
    lines.append("| **total** | " + " | ".join(f"**{row['actions_per_loan']}**" for row in rows) + " |")
    return "\n".join(lines)


def report(summary: dict) -> str:
    """The tables, as `make bench` and `python -m bench.cost` print them (markdown)."""
    rows = summary["rows"]
    parts = [
        f"Cost per loan: Temporal Cloud Actions of each 180-day lifecycle (placed on day 1, never paid, written off), "
        f"counted from its history by {ACTIONS_URL}, priced at {PRICING_URL} (both read {READ_ON}):",
        markdown_table(rows),
        reasons_table(rows),
    ]
    if (with_reports := reports_table(rows)):
        one = summary.get("provider_report") or {}
        why = ", ".join(f"{reason} {count}" for reason, count in sorted((one.get("by_reason") or {}).items()))
        parts += [f"With a provider report on every message (one report measured: {one.get('actions')} Actions: {why}):",
                  with_reports]
    return "\n\n".join(parts)


def _us_placement(loan_id: str, borrower_id: str, now: datetime) -> dict:
    """A US loan as a backend places it (tests/test_us_notice_scenario.py's
    shape), one day past due: the borrower in New York, the itemization the
    validation notice needs."""
    due = now.astimezone(ZoneInfo("America/New_York")).date() - timedelta(days=1)
    return {
        "loan_id": loan_id, "borrower_id": borrower_id, "amount_due": "1254.50", "currency": "USD",
        "due_date": due.isoformat(), "policy": "us",
        "borrower": {
            "name": "Jane Doe", "email": f"{borrower_id.lower()}@example.com", "phone": "+15185550123",
            "language": "en", "time_zone": "America/New_York", "address_line1": "12 Main Street", "city": "Albany",
            "region": "NY", "postal_code": "12207", "country": "US",
        },
        "itemization": {
            "itemization_date": (due - timedelta(days=30)).isoformat(),
            "amount_on_itemization_date": "1200.00", "interest_since": "42.50", "fees_since": "25.00",
            "payments_since": "13.00", "credits_since": "0.00",
            "current_creditor": "Example Lending LLC", "creditor_on_itemization_date": "Example Lending LLC",
            "account_number": "4000123412341234", "debt_type": "consumer_financial_product",
        },
    }


# A policy whose loans are not the benchmark's Shanghai borrower: how its
# lifecycle's loan is placed (bench/lifecycle.py, `placements`).
PLACEMENTS = {"us": _us_placement}


async def report_actions(env: WorkflowEnvironment, database_url: str, config_dir: Path,
                         borrower_id: str = "B-LIFE-000000") -> dict:
    """What one provider report costs: a default-policy loan run to its first
    message, then the provider's report on it ("delivered"), sent as the
    gateway sends it (gateway/deps.py, `tell_contact_outcome`: the
    `contact_outcome` signal). The Actions its history gains, by reason."""
    from bench.lifecycle import lifecycle_settings  # bench.lifecycle imports this module

    sessions = make_session_factory(make_engine(database_url))
    settings = lifecycle_settings(database_url, config_dir, f"bench-report-{uuid.uuid4().hex[:8]}")
    now = await env.get_current_time()
    loan_id = f"L-REPORT-{uuid.uuid4().hex[:6]}"
    due = (now.astimezone(ZoneInfo("Asia/Shanghai")).date() - timedelta(days=1)).isoformat()
    loan = {"loan_id": loan_id, "borrower_id": borrower_id, "amount_due": "1200.00", "currency": "CNY",
            "due_date": due, "policy": "default"}

    def first_message() -> str | None:
        with sessions() as db:
            return db.scalars(select(Contact.key).where(Contact.loan_id == loan_id, Contact.status == "sent")
                              .order_by(Contact.id)).first()

    async def settled(handle: WorkflowHandle) -> WorkflowHistory:
        """The history once the workflow is waiting again: no workflow task or
        activity in flight, nothing new for a while (the server's clock is not
        moved meanwhile: only env.sleep moves it)."""
        last, quiet = -1, 0
        while quiet < 5:
            await asyncio.sleep(0.1)
            history = await handle.fetch_history()
            idle = history.events[-1].event_type not in (_E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
                                                         _E.EVENT_TYPE_WORKFLOW_TASK_STARTED,
                                                         _E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
                                                         _E.EVENT_TYPE_ACTIVITY_TASK_STARTED)
            quiet = quiet + 1 if idle and len(history.events) == last else 0
            last = len(history.events)
        return history

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as executor:
        async with build_worker(env.client, settings, executor):
            handle = await env.client.start_workflow(WORKFLOW_TYPE, loan, id=workflow_id_for(loan_id),
                                                     task_queue=settings.task_queue)
            key = None
            for _ in range(24 * 10):  # an hour at a time, until the first message (day 1, within 10 days)
                await env.sleep(timedelta(hours=1))
                if (key := first_message()) is not None:
                    break
            if key is None:
                raise RuntimeError(f"{loan_id}: no message in 10 days")
            before = billable_actions(await settled(handle))
            await handle.signal(SIGNAL_CONTACT_OUTCOME, {"step": step_of_contact_key(key), "result": "delivered"})
            after = billable_actions(await settled(handle))
            await terminate_when_idle(handle, "bench: report measured")
    added = after - before
    return {"actions": sum(added.values()), "by_reason": dict(added)}


def messages_sent(database_url: str) -> dict[str, int]:
    """Messages each policy's lifecycle sent (outbox rows `sent`; the bench's
    lifecycle loans are `L-LIFE-<policy>-...`)."""
    with make_session_factory(make_engine(database_url))() as db:
        rows = db.execute(select(Contact.loan_id, func.count()).where(Contact.status == "sent", Contact.loan_id.like("L-LIFE-%"))
                          .group_by(Contact.loan_id)).all()
    return {loan_id.removeprefix("L-LIFE-").rsplit("-", 1)[0]: count for loan_id, count in rows}


async def provider_reports(workdir: Path, config_dir: Path) -> dict:
    """The cost of provider reports, after `lifecycles(workdir, ...)` ran: what
    one costs, and each policy's messages (each one may get a report)."""
    database_url = f"sqlite:///{workdir / 'lifecycle.db'}"
    env = await start_time_skipping(quiet=True)
    try:
        one = await report_actions(env, database_url, config_dir)
    finally:
        await env.shutdown()
    return {"per_report": one, "messages": messages_sent(database_url)}


async def measure(policies: Iterable[str] = POLICIES, keep: bool = False) -> tuple[dict, dict]:
    """Each policy's lifecycle on a fresh time-skipping server, as `make bench`
    runs them, and the cost of provider reports."""
    from bench.lifecycle import lifecycles  # bench.lifecycle imports this module

    workdir = Path(tempfile.mkdtemp(prefix="dunning-cost-"))
    try:
        config_dir = prepare_config(workdir)
        lifecycle = await lifecycles(workdir, config_dir, list(policies), placements=PLACEMENTS)
        return lifecycle, await provider_reports(workdir, config_dir)
    finally:
        if keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", action="append", help=f"a policy to measure (default: {', '.join(POLICIES)})")
    parser.add_argument("--out", default=None, help="the JSON file to write (default .dunning/bench-cost.json)")
    parser.add_argument("--table", metavar="JSON", default=None, help="only print the table of an earlier run's JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, database)")
    args = parser.parse_args(argv)
    if args.table:
        earlier: dict[str, Any] = json.loads(Path(args.table).read_text(encoding="utf-8"))
        summary = earlier.get("cost") or cost_summary(earlier.get("lifecycle") or {})
        print(report(summary))
        return 0
    lifecycle, reports = asyncio.run(measure(args.policy or POLICIES, keep=args.keep))
    summary = cost_summary(lifecycle, reports)
    print()
    print(report(summary))
    out = Path(args.out or ROOT / ".dunning" / "bench-cost.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"cost": summary, "lifecycle": lifecycle}, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
