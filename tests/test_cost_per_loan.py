"""Cost per loan (issue 19, item 6): bench/cost.py counts a history's Temporal
Cloud Actions as Temporal's Actions page publishes them
(https://docs.temporal.io/evaluate/cloud/actions), and prices them at the
Pay-As-You-Go rates of https://docs.temporal.io/cloud/pricing.

Each scenario builds the few events a rule is about, as the server would
record them, and says what the page says they cost."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.api.common.v1 import MeteringMetadata, Payload, SearchAttributes
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.api.history.v1 import (
    ActivityTaskScheduledEventAttributes,
    ActivityTaskStartedEventAttributes,
    History,
    HistoryEvent,
    MarkerRecordedEventAttributes,
    UpsertWorkflowSearchAttributesEventAttributes,
    WorkflowExecutionContinuedAsNewEventAttributes,
    WorkflowExecutionSignaledEventAttributes,
    WorkflowExecutionStartedEventAttributes,
    WorkflowTaskCompletedEventAttributes,
    WorkflowTaskFailedEventAttributes,
)
from temporalio.client import WorkflowHistory

from bench.cost import (
    billable_actions,
    cost_rows,
    lifecycle_actions,
    markdown_table,
    volume_price,
)

HISTORIES = Path(__file__).parent / "histories"
E = EventType


def _search_attributes(*names: str) -> SearchAttributes:
    return SearchAttributes(indexed_fields={name: Payload(data=b'"x"') for name in names})


def started(search_attributes: tuple[str, ...] = (), continued_from: str = "", run_id: str = "run-1",
            first_run_id: str = "run-1") -> HistoryEvent:
    return HistoryEvent(
        event_id=1, event_type=E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
        workflow_execution_started_event_attributes=WorkflowExecutionStartedEventAttributes(
            search_attributes=_search_attributes(*search_attributes), continued_execution_run_id=continued_from,
            original_execution_run_id=run_id, first_execution_run_id=first_run_id,
        ),
    )


def plain(event_id: int, kind: int) -> HistoryEvent:
    return HistoryEvent(event_id=event_id, event_type=kind)


def workflow_task(completed_id: int, local_retries: int = 0) -> list[HistoryEvent]:
    """A workflow task: scheduled, started, completed (as event `completed_id`)."""
    return [
        plain(completed_id - 2, E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED),
        plain(completed_id - 1, E.EVENT_TYPE_WORKFLOW_TASK_STARTED),
        HistoryEvent(
            event_id=completed_id, event_type=E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
            workflow_task_completed_event_attributes=WorkflowTaskCompletedEventAttributes(
                metering_metadata=MeteringMetadata(nonfirst_local_activity_execution_attempts=local_retries),
            ),
        ),
    ]


def marker(event_id: int, task: int, name: str = "core_local_activity") -> HistoryEvent:
    return HistoryEvent(
        event_id=event_id, event_type=E.EVENT_TYPE_MARKER_RECORDED,
        marker_recorded_event_attributes=MarkerRecordedEventAttributes(marker_name=name, workflow_task_completed_event_id=task),
    )


def upsert(event_id: int, *names: str) -> HistoryEvent:
    return HistoryEvent(
        event_id=event_id, event_type=E.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,
        upsert_workflow_search_attributes_event_attributes=UpsertWorkflowSearchAttributesEventAttributes(
            search_attributes=_search_attributes(*names),
        ),
    )


def signal(event_id: int, name: str = "repayment") -> HistoryEvent:
    return HistoryEvent(
        event_id=event_id, event_type=E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
        workflow_execution_signaled_event_attributes=WorkflowExecutionSignaledEventAttributes(signal_name=name),
    )


def activity(scheduled_id: int, attempt: int) -> list[HistoryEvent]:
    """An activity that completed on its `attempt`-th try: the server writes
    one STARTED event, for the last attempt, with the attempt's number."""
    return [
        HistoryEvent(event_id=scheduled_id, event_type=E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
                     activity_task_scheduled_event_attributes=ActivityTaskScheduledEventAttributes(activity_id="1")),
        HistoryEvent(event_id=scheduled_id + 1, event_type=E.EVENT_TYPE_ACTIVITY_TASK_STARTED,
                     activity_task_started_event_attributes=ActivityTaskStartedEventAttributes(
                         scheduled_event_id=scheduled_id, attempt=attempt)),
        plain(scheduled_id + 2, E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED),
    ]


def test_a_started_workflow_is_one_action_and_the_search_attributes_it_started_with_are_free():
    history = [started(search_attributes=("LoanId", "DunningPolicy")), *workflow_task(4)]

    assert billable_actions(history) == {"start_workflow": 1}


def test_an_activity_that_succeeds_on_its_third_try_is_three_actions_one_start_and_two_retries():
    history = [started(), *workflow_task(4), *activity(5, attempt=3), *workflow_task(10)]

    actions = billable_actions(history)

    assert actions["schedule_activity"] == 1
    assert actions["retry_activity"] == 2
    assert sum(actions.values()) == 1 + 3


def test_local_activities_recorded_in_one_workflow_task_are_one_action_and_a_later_tasks_are_another():
    history = [
        started(), *workflow_task(4),
        marker(5, task=4), marker(6, task=4), marker(7, task=4),  # three local activities, one task
        *workflow_task(10), marker(11, task=10),
    ]

    assert billable_actions(history) == {"start_workflow": 1, "record_activity_markers": 2}


def test_local_activity_retries_after_a_workflow_task_heartbeat_count_from_the_metering_metadata_up_to_100():
    history = [started(), *workflow_task(4, local_retries=2), marker(5, task=4), *workflow_task(8, local_retries=250)]

    assert billable_actions(history)["retry_activity_local"] == 2 + 100


def test_patch_markers_and_the_sdks_change_version_upserts_are_not_charged():
    # workflow.patched() records a `core_patch` marker and upserts
    # TemporalChangeVersion, alone: neither is an Action. A real upsert is one
    # Action however many attributes it sets.
    history = [
        started(), *workflow_task(4),
        marker(5, task=4, name="core_patch"), upsert(6, "TemporalChangeVersion"),
        marker(7, task=4, name="Version"),
        upsert(8, "DunningStage", "DaysPastDue", "OutstandingAmount"),
    ]

    assert billable_actions(history) == {"start_workflow": 1, "upsert_workflow_search_attributes": 1}


def test_a_patch_marker_does_not_use_up_its_workflow_tasks_one_local_activity_action():
    history = [started(), *workflow_task(4), marker(5, task=4, name="core_patch"), marker(6, task=4)]

    assert billable_actions(history)["record_activity_markers"] == 1


def test_every_timer_started_is_an_action_whether_it_fires_or_is_cancelled():
    history = [
        started(), *workflow_task(4),
        plain(5, E.EVENT_TYPE_TIMER_STARTED), plain(6, E.EVENT_TYPE_TIMER_FIRED), *workflow_task(9),
        plain(10, E.EVENT_TYPE_TIMER_STARTED), signal(11), *workflow_task(14),
        plain(15, E.EVENT_TYPE_TIMER_CANCELED),
    ]

    actions = billable_actions(history)

    assert actions["start_timer"] == 2
    assert actions["signal_workflow"] == 1


def test_signal_with_start_is_one_action_in_all_and_a_later_signal_is_one_more():
    history = [started(), signal(2, "payment_reversed"), *workflow_task(5), signal(6)]

    assert billable_actions(history) == {"signal_workflow_with_start": 1, "signal_workflow": 1}


def test_continue_as_new_is_one_action_on_the_new_runs_start_so_a_two_run_lifecycle_has_two_starts():
    first = History(events=[
        started(run_id="run-1", first_run_id="run-1"), *workflow_task(4),
        HistoryEvent(event_id=5, event_type=E.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
                     workflow_execution_continued_as_new_event_attributes=WorkflowExecutionContinuedAsNewEventAttributes(
                         new_execution_run_id="run-2")),
    ])
    second = History(events=[started(continued_from="run-1", run_id="run-2", first_run_id="run-1"), *workflow_task(4)])

    assert lifecycle_actions([first, second]) == {"start_workflow": 1, "continue_as_new_workflow": 1}


def test_a_schedules_first_run_is_three_actions_and_a_child_workflow_two():
    history = [
        started(search_attributes=("TemporalScheduledById",)), *workflow_task(4),
        plain(5, E.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED),
    ]

    assert billable_actions(history) == {"schedule_workflow": 3, "start_child_workflow": 2}


def test_an_accepted_update_and_a_reset_are_one_action_each_other_workflow_task_failures_none():
    history = [
        started(), *workflow_task(4), plain(5, E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED),
        plain(6, E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED),
        HistoryEvent(event_id=7, event_type=E.EVENT_TYPE_WORKFLOW_TASK_FAILED,
                     workflow_task_failed_event_attributes=WorkflowTaskFailedEventAttributes(
                         cause=WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_RESET_WORKFLOW)),
        HistoryEvent(event_id=8, event_type=E.EVENT_TYPE_WORKFLOW_TASK_FAILED,
                     workflow_task_failed_event_attributes=WorkflowTaskFailedEventAttributes(
                         cause=WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_WORKFLOW_WORKER_UNHANDLED_FAILURE)),
    ]

    assert billable_actions(history) == {"start_workflow": 1, "accept_workflow_update": 1, "reset_workflow": 1}


def test_the_golden_repaid_loan_costs_eighteen_actions_counted_by_hand():
    # Placed, reminded once by SMS, paid in three repayments: 1 start; 4 timers;
    # 1 send_contact; 4 repayment signals; 4 upserts of our attributes (the 4
    # TemporalChangeVersion ones are free); local activities in 4 workflow
    # tasks (events 11+15 in task 4, 34, 43, 50+51: the 4 core_patch markers are free).
    history = WorkflowHistory.from_json(
        "dunning-L-GOLD-REPAID", (HISTORIES / "legacy-2026-12c-dunning-L-GOLD-REPAID.json").read_text(encoding="utf-8"),
    )

    assert billable_actions(history) == {
        "start_workflow": 1, "start_timer": 4, "schedule_activity": 1, "signal_workflow": 4,
        "upsert_workflow_search_attributes": 4, "record_activity_markers": 4,
    }


def test_volume_prices_reproduce_the_pricing_pages_own_example():
    # "If you are on the Business plan and consume 11.25M Actions ... your bill
    # for Actions will be: $250 (First Tier) + $225 (Second Tier) + $50 (Third Tier) = $525"
    assert volume_price(11_250_000) == (pytest.approx(525.0), False)


def test_past_the_last_published_tier_the_price_is_an_upper_bound_at_25_dollars_a_million():
    usd, upper_bound = volume_price(300_000_000)

    assert upper_bound
    assert usd == pytest.approx(250 + 225 + 400 + 1050 + 1500 + 2500 + 100 * 25)


def test_the_cost_table_prices_a_loan_and_a_million_loans_a_month():
    lifecycle = {
        "default": {"events": 300, "runs": 2, "billable_actions": {"start_timer": 60, "schedule_activity": 40}},
        "noop": {"events": 15, "runs": 1, "billable_actions": {"start_workflow": 1}},
    }

    rows = cost_rows(lifecycle)

    assert [row["policy"] for row in rows] == ["default"]  # the floor is not a policy
    (row,) = rows
    assert row["actions_per_loan"] == 100
    assert row["usd_per_loan_list"] == pytest.approx(0.005)  # 100 x $50 / 1M
    assert row["actions_a_month"] == 100_000_000
    assert row["usd_a_month_list"] == pytest.approx(5_000)
    assert row["usd_a_month_volume"] == pytest.approx(250 + 225 + 400 + 1050 + 1500)
    assert "| default | 300 (2) | 100 | 0.0050 | 100M | 5,000 | 3,425 |" in markdown_table(rows)


def test_a_provider_report_on_every_message_adds_what_one_report_costs_times_the_messages():
    lifecycle = {"default": {"events": 300, "runs": 2, "billable_actions": {"start_timer": 60, "schedule_activity": 40}}}
    reports = {"per_report": {"actions": 2, "by_reason": {"signal_workflow": 1, "start_timer": 1}},
               "messages": {"default": 24}}

    (row,) = cost_rows(lifecycle, reports)

    assert row["actions_per_loan"] == 100  # the history's own count is unchanged
    assert row["with_reports"]["actions_per_loan"] == 100 + 24 * 2
    assert row["with_reports"]["usd_per_loan_list"] == pytest.approx(148 * 50 / 1e6)
