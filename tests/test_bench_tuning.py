"""Issue 19, items 3 and 4: the worker's size as settings, the workflow task
latencies the benchmark reads from histories, and the table rows of the
scale-out. No server and no timing: hand-built histories and results."""

from __future__ import annotations

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import ValidationError
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

from bench.figures import figures, scale_out_rows
from bench.throughput import latency_summary, percentile, task_latency_summary, task_timings
from runtime.settings import Settings

EPOCH = 1_800_000_000  # any fixed instant: the timings are differences


# ------------------------------------------------------------------ settings
def test_the_worker_size_settings_default_to_the_chosen_values_and_read_the_environment(monkeypatch):
    for name in ("DUNNING_MAX_CONCURRENT_WORKFLOW_TASKS", "DUNNING_MAX_CONCURRENT_ACTIVITIES",
                 "DUNNING_MAX_CONCURRENT_LOCAL_ACTIVITIES", "DUNNING_ACTIVITY_THREADS", "DUNNING_MAX_CACHED_WORKFLOWS",
                 "DUNNING_STICKY_SCHEDULE_TO_START_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    defaults = Settings()
    # The values docs/benchmarks.md's "Tuning" chose: no more tasks and
    # (local) activities at once than there are activity threads.
    assert (defaults.max_concurrent_workflow_tasks, defaults.max_concurrent_activities,
            defaults.max_concurrent_local_activities, defaults.activity_threads) == (16, 16, 16, 16)
    assert defaults.max_cached_workflows == 1000
    assert defaults.sticky_schedule_to_start_seconds == 10

    monkeypatch.setenv("DUNNING_MAX_CONCURRENT_WORKFLOW_TASKS", "8")
    monkeypatch.setenv("DUNNING_MAX_CONCURRENT_ACTIVITIES", "12")
    monkeypatch.setenv("DUNNING_MAX_CONCURRENT_LOCAL_ACTIVITIES", "6")
    monkeypatch.setenv("DUNNING_ACTIVITY_THREADS", "24")
    monkeypatch.setenv("DUNNING_MAX_CACHED_WORKFLOWS", "3000")
    monkeypatch.setenv("DUNNING_STICKY_SCHEDULE_TO_START_SECONDS", "30")
    tuned = Settings()
    assert (tuned.max_concurrent_workflow_tasks, tuned.max_concurrent_activities, tuned.max_concurrent_local_activities,
            tuned.activity_threads, tuned.max_cached_workflows, tuned.sticky_schedule_to_start_seconds) == (
        8, 12, 6, 24, 3000, 30)


@pytest.mark.parametrize("name, value", [
    ("DUNNING_MAX_CONCURRENT_WORKFLOW_TASKS", "1"),  # the SDK needs 2 for sticky queues
    ("DUNNING_MAX_CONCURRENT_ACTIVITIES", "0"),
    ("DUNNING_MAX_CONCURRENT_LOCAL_ACTIVITIES", "0"),
    ("DUNNING_ACTIVITY_THREADS", "0"),
    ("DUNNING_MAX_CACHED_WORKFLOWS", "-1"),
    ("DUNNING_STICKY_SCHEDULE_TO_START_SECONDS", "0"),
    ("DUNNING_ACTIVITY_THREADS", "many"),
])
def test_a_worker_size_out_of_range_stops_the_settings_naming_it(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=name):
        Settings()


# ------------------------------------------------------ workflow task latency
def _event(event_id: int, event_type: int, at: float, **attributes) -> HistoryEvent:
    event = HistoryEvent(event_id=event_id, event_type=event_type)
    stamp = Timestamp()
    stamp.FromMicroseconds(round(at * 1e6))
    event.event_time.CopyFrom(stamp)
    for field, values in attributes.items():
        for name, value in values.items():
            setattr(getattr(event, field), name, value)
    return event


def _history() -> list[HistoryEvent]:
    """A start whose first task waits 0.5 s and runs 0.25 s; an activity; a
    task that waits 6 s and is timed out by the server after 10 s; its retry;
    and a last task scheduled but never taken."""
    t = EPOCH
    E = EventType
    return [
        _event(1, E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED, t),
        _event(2, E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, t),
        _event(3, E.EVENT_TYPE_WORKFLOW_TASK_STARTED, t + 0.5, workflow_task_started_event_attributes={"scheduled_event_id": 2}),
        _event(4, E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED, t + 0.75,
               workflow_task_completed_event_attributes={"scheduled_event_id": 2, "started_event_id": 3}),
        _event(5, E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, t + 0.75),
        _event(6, E.EVENT_TYPE_ACTIVITY_TASK_STARTED, t + 1),
        _event(7, E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED, t + 2),
        _event(8, E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, t + 2),
        _event(9, E.EVENT_TYPE_WORKFLOW_TASK_STARTED, t + 8, workflow_task_started_event_attributes={"scheduled_event_id": 8}),
        _event(10, E.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT, t + 18,
               workflow_task_timed_out_event_attributes={"scheduled_event_id": 8, "started_event_id": 9}),
        _event(11, E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, t + 18),
        _event(12, E.EVENT_TYPE_WORKFLOW_TASK_STARTED, t + 18.5, workflow_task_started_event_attributes={"scheduled_event_id": 11}),
        _event(13, E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED, t + 19,
               workflow_task_completed_event_attributes={"scheduled_event_id": 11, "started_event_id": 12}),
        _event(14, E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED, t + 30),
        _event(15, E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, t + 30),
    ]


def test_each_workflow_task_is_timed_from_its_scheduled_started_and_closing_events():
    tasks = task_timings(_history())

    assert [(t["scheduled_at"] - EPOCH, t["outcome"]) for t in tasks] == [
        (0, "completed"), (2, "timed_out"), (18, "completed"), (30, None)]
    first, slow, retry, open_task = tasks
    assert first["schedule_to_start"] == pytest.approx(0.5)
    assert first["start_to_close"] == pytest.approx(0.25)
    assert first["schedule_to_close"] == pytest.approx(0.75)
    assert slow["schedule_to_start"] == pytest.approx(6)
    assert slow["start_to_close"] == pytest.approx(10)
    assert slow["schedule_to_close"] == pytest.approx(16)
    assert retry["schedule_to_close"] == pytest.approx(1)
    assert open_task["schedule_to_start"] is open_task["start_to_close"] is open_task["schedule_to_close"] is None


def test_the_latency_summary_counts_the_tasks_over_five_seconds_and_the_timed_out_ones():
    summary = task_latency_summary(task_timings(_history()))

    assert (summary["tasks"], summary["timed_out"], summary["failed"]) == (4, 1, 0)
    assert summary["schedule_to_start"]["count"] == 3  # the open task never started
    assert summary["schedule_to_start"]["over_5s"] == 1
    assert summary["schedule_to_start"]["max"] == pytest.approx(6)
    assert summary["start_to_close"]["over_5s"] == 1
    assert summary["schedule_to_close"]["over_5s"] == 1
    assert summary["schedule_to_close"]["p50"] == pytest.approx(1)


def test_percentiles_are_nearest_rank():
    values = [float(n) for n in range(1, 101)]  # 1..100
    assert (percentile(values, 0.5), percentile(values, 0.95), percentile(values, 0.99), percentile(values, 1.0)) == (
        50, 95, 99, 100)
    assert percentile([7.0], 0.99) == 7
    assert latency_summary([]) == {"count": 0, "p50": None, "p95": None, "p99": None, "max": None, "over_5s": 0}
    assert latency_summary([1.0, 5.0, 5.5, 9.0])["over_5s"] == 2  # over, not at


# ----------------------------------------------------------------- the table
def _run(kind: str, workers: int, start: float, signal: float, start_cpu: float, signal_cpu: float) -> dict:
    return {"kind": kind, "workers": workers, "loans": 500,
            "start": {"per_second": start, "worker_cpu_ms_per_loan": start_cpu},
            "signal": {"per_second": signal, "worker_cpu_ms_per_loan": signal_cpu}}


def test_the_scale_out_rows_put_each_worker_count_next_to_its_floor_and_the_gain_of_the_second_worker():
    scale = {"runs": [_run("noop", 1, 40, 80, 10, 5), _run("dunning", 1, 30, 40, 25, 20),
                      _run("noop", 2, 60, 100, 12, 6), _run("dunning", 2, 45, 50, 27, 22)]}

    rows = {row["figure"]: row for row in scale_out_rows(scale)}

    one = rows["PostgreSQL, 1 worker(s): start, 500 loans (/s)"]
    assert (one["dunning"], one["floor"], one["ratio"]) == (30, 40, 0.75)
    cpu = rows["PostgreSQL, 2 worker(s): signal->completion, worker CPU per loan (ms)"]
    assert (cpu["dunning"], cpu["floor"]) == (22, 6) and cpu["ratio"] == pytest.approx(6 / 22)
    gain = rows["PostgreSQL: start, throughput with 2 workers / with 1"]
    assert (gain["dunning"], gain["floor"]) == (1.5, 1.5)
    assert rows["PostgreSQL: signal->completion, throughput with 2 workers / with 1"]["dunning"] == 1.25
    # figures() adds them to the benchmark's table.
    assert {row["figure"] for row in figures({"scale_out": scale})} == set(rows)


def test_the_table_has_the_workflow_task_latency_of_both_bursts():
    phase = {"workflows": 10, "per_second": 1.0, "worker_cpu_seconds": 1, "server_cpu_seconds": 1}
    tasks = task_latency_summary(task_timings(_history()))
    kind = {"start": phase, "signal": phase, "open": 10, "rss_open": 2**20, "rss_idle": 2**20,
            "workflow_tasks": {"start": tasks, "signal": tasks}}

    rows = {row["figure"]: row for row in figures({"dunning": kind, "noop": kind})}

    assert rows["start: workflow task schedule-to-start p99 (s)"]["dunning"] == pytest.approx(6)
    assert rows["signal->completion: workflow task start-to-close p99 (s)"]["floor"] == pytest.approx(10)
    assert rows["start: workflow tasks over 5 s, scheduled->closed (of 4)"]["dunning"] == 1


def test_the_portfolio_arithmetic_follows_the_measurements_and_the_stated_assumptions():
    from bench.scale_out import PORTFOLIO, portfolio

    results = {
        "lifecycle": {"default": {"events": 100, "runs": 1, "history_bytes_per_run": [60 * 1024],
                                  "by_type": {"WORKFLOW_TASK_COMPLETED": 20, "ACTIVITY_TASK_COMPLETED": 10,
                                              "TIMER_FIRED": 15, "UPSERT_WORKFLOW_SEARCH_ATTRIBUTES": 8}}},
        "cost": {"rows": [{"policy": "default", "actions_per_loan": 60, "with_reports": {"actions_per_loan": 90}}]},
        "scale_out": {"lifecycle_database": {
            "lifecycles": 2, "bytes_per_loan": 100 * 1024, "rows_per_loan": 50, "worker_cpu_seconds_per_lifecycle": 0.5,
            "worker_cpu_seconds_per_lifecycle_uncached": 1.296,
            "scans": {"contacts": {"inserted": 40, "updated": 120}, "audit_head": {"inserted": 1, "updated": 0},
                      "loans": {"inserted": 2, "updated": 38}}}},
    }
    assume = {**PORTFOLIO, "loans_a_month": 900_000, "days_a_month": 30, "lifecycle_days": 100, "window_hours": 10,
              "peak_hour_factor": 2, "retention_years": 1, "worker_utilisation": 0.5, "history_shards": 100}

    rows = {what: value for what, value, _ in portfolio(results, assume)}

    # 30,000 lifecycles' worth a day; 3,000,000 open.
    assert rows["loans placed a day; open at once"] == "30,000; 3.0 M"
    # Every wake a replay (the uncached lifecycle): 30,000 x 1.296 s over 36,000 s, doubled at the
    # peak: 2.16 cores; at half a core each, 5 processes.
    assert rows["worker CPU per lifecycle: every wake replayed; the workflow cached"] == "1.30 s; 0.50 s"
    assert rows["worker cores at the peak hour"] == "2.2"
    assert rows["worker processes"] == "5"
    # (40 + 120 + 2 + 38) / 2 lifecycles + the borrower's row = 101 rows; x 30,000 x 2 / 36,000 s.
    assert rows["database: rows written per lifecycle; at the peak"] == "101; 168 rows/s"
    # 3.0 M open + 1 year of 900,000 a month = 13.8 M loans at 100 KiB.
    assert rows["database size"] == f"{13.8e6 * 100 * 1024 / 2**40:,.1f} TiB"
    # 2 x 20 + 2 x 10 + 15 + 1 = 76 history writes, 8 + 2 visibility writes.
    assert rows["self-hosted: persistence writes per lifecycle; at the peak"].startswith("76 + 10 visibility; ")
    assert rows["Temporal Cloud: Actions per lifecycle; at the peak"] == "60; 100 APS"
    assert rows["Temporal Cloud: with a provider report on every message"] == "90; 150 APS"
