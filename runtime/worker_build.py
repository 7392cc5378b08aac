"""Assembling a worker: its activities from the settings, its workflow
sandbox, and the Worker itself. The worker script, the simulator, the
benchmark and the tests all build their workers here.
"""

from __future__ import annotations

import concurrent.futures
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.audit_checkpoint import AuditCheckpoints
from activities.context import ActivityContext, ActivitySettings
from activities.dunning_activities import DunningActivities
from activities.rendering import TemplateRenderer
from activities.retention import RecordsRetention, RecordingStore
from activities.tasks import AgentTasks
from db.session import make_engine, make_session_factory
from runtime.bytecode import share_code
from runtime.channels import build_channels
from runtime.settings import Settings
from workflows.audit_checkpoint import AuditCheckpointWorkflow
from workflows.dunning import DunningWorkflow
from workflows.retention import RecordsRetentionWorkflow

# Modules the workflow sandbox may share with the worker instead of
# re-importing them for every workflow run: they are deterministic (pydantic
# models and pure functions), and re-importing pydantic per run is slow.
PASSTHROUGH_MODULES = ("pydantic", "pydantic_core", "annotated_types", "dunning", "activities.payloads")


def sandbox_runner() -> SandboxedWorkflowRunner:
    # The sandbox imports the workflow modules again for every workflow
    # instance: with one shared copy of their compiled code (runtime/bytecode.py).
    share_code("workflows")
    return SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH_MODULES))


def workflow_runner(settings: Settings) -> WorkflowRunner:
    """The sandbox when DUNNING_WORKFLOW_SANDBOX is on; else the workflows run
    without it (runtime/settings.py says what checks determinism then)."""
    return sandbox_runner() if settings.workflow_sandbox else UnsandboxedWorkflowRunner()


def activity_settings(settings: Settings) -> ActivitySettings:
    """What the activities read of the settings; they never read them themselves."""
    return ActivitySettings(
        lender_name=settings.lender_name,
        policies_dir=settings.policies_dir,
        profiles_dir=settings.profiles_dir,
        pay_link_base_url=settings.pay_link_base_url,
        pay_link_secret=settings.signing_secret(),
        pay_link_max_age_days=settings.pay_link_max_age_days,
        public_base_url=settings.public_base_url,
        export_dir=settings.export_dir,
        metro2=settings.metro2_furnisher(),
    )


def build_activities(settings: Settings) -> DunningActivities:
    engine = make_engine(settings.database_url)
    return DunningActivities(
        session_factory=make_session_factory(engine),
        channels=build_channels(settings),
        renderer=TemplateRenderer(settings.templates_dir),
        settings=activity_settings(settings),
    )


def recording_store(settings: Settings) -> RecordingStore | None:
    """Where recorded calls are deleted (the retention job): Twilio when its
    credentials are set, else none (the job then reports what it could not
    delete)."""
    if not (settings.twilio_account_sid and settings.twilio_auth_token.get_secret_value()):
        return None
    from channels.twilio_sms import make_twilio_client
    from channels.twilio_voice import TwilioRecordings

    return TwilioRecordings(make_twilio_client(settings.twilio_account_sid, settings.twilio_auth_token.get_secret_value(),
                                               settings.twilio_api_base_url, settings.provider_timeout_seconds))


def build_retention(settings: Settings, store: RecordingStore | None = None) -> RecordsRetention:
    """The records retention job (activities/retention.py) from the settings."""
    return RecordsRetention(make_session_factory(make_engine(settings.database_url)),
                            store if store is not None else recording_store(settings),
                            settings.policies_dir, settings.profiles_dir)


def build_agent_tasks(settings: Settings) -> AgentTasks:
    """The agent tasks' activities (activities/tasks.py, issue 17): the kinds
    that need a subject come from config/tasks.toml when it is there (a bad
    file stops the worker, naming the key)."""
    from services.tasks import load_task_rules, rules_path

    context = ActivityContext(make_session_factory(make_engine(settings.database_url)), activity_settings(settings))
    path = rules_path(settings.config_dir)
    if not path.is_file():
        return AgentTasks(context)
    rules = load_task_rules(path)
    return AgentTasks(context, frozenset(kind for kind in rules.outcomes if rules.needs_subject(kind)))


def build_worker(
    client: Client,
    settings: Settings,
    executor: concurrent.futures.Executor,
    activities: DunningActivities | None = None,
    retention: RecordsRetention | None = None,
    tasks: AgentTasks | None = None,
) -> Worker:
    acts = activities or build_activities(settings)
    # The retention job's workflow and activity (issue 16, item 7), started by
    # the Schedule runtime/retention_schedule.py keeps.
    retention = retention or build_retention(settings)
    # open_task and escalate_task (issue 17, item 4).
    tasks = tasks or build_agent_tasks(settings)
    # The audit checkpoint job (issue 19, item 1), started by runtime/audit_checkpoint_schedule.py.
    checkpoints = AuditCheckpoints(make_session_factory(make_engine(settings.database_url)), settings.audit_checkpoint_file)
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[DunningWorkflow, RecordsRetentionWorkflow, AuditCheckpointWorkflow],
        activities=[*acts.registered(), *retention.registered(), *tasks.registered(), *checkpoints.registered()],
        activity_executor=executor,
        workflow_runner=workflow_runner(settings),
        # The worker's size from the settings (runtime/settings.py; docs/benchmarks.md, "Tuning").
        max_concurrent_workflow_tasks=settings.max_concurrent_workflow_tasks,
        max_concurrent_activities=settings.max_concurrent_activities,
        max_concurrent_local_activities=settings.max_concurrent_local_activities,
        max_cached_workflows=settings.max_cached_workflows,
        sticky_queue_schedule_to_start_timeout=timedelta(seconds=settings.sticky_schedule_to_start_seconds),
    )
