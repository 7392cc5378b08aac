"""Assembling a worker: its activities from the settings, its workflow
sandbox, and the Worker itself. The worker script, the simulator, the
benchmark and the tests all build their workers here.
"""

from __future__ import annotations

import concurrent.futures

from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.context import ActivitySettings
from activities.dunning_activities import DunningActivities
from activities.rendering import TemplateRenderer
from db.session import make_engine, make_session_factory
from runtime.bytecode import share_code
from runtime.channels import build_channels
from runtime.settings import Settings
from workflows.dunning import DunningWorkflow

# Modules the workflow sandbox may share with the worker instead of
# re-importing them for every workflow run: they are deterministic (pydantic
# models and pure functions), and re-importing pydantic per run is slow.
PASSTHROUGH_MODULES = ("pydantic", "pydantic_core", "annotated_types", "dunning", "activities.payloads")


def sandbox_runner() -> SandboxedWorkflowRunner:
    # The sandbox imports the workflow modules again for every workflow
    # instance: with one shared copy of their compiled code (runtime/bytecode.py).
    share_code("workflows")
    return SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH_MODULES))


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
    )


def build_activities(settings: Settings) -> DunningActivities:
    engine = make_engine(settings.database_url)
    return DunningActivities(
        session_factory=make_session_factory(engine),
        channels=build_channels(settings),
        renderer=TemplateRenderer(settings.templates_dir),
        settings=activity_settings(settings),
    )


def build_worker(
    client: Client,
    settings: Settings,
    executor: concurrent.futures.Executor,
    activities: DunningActivities | None = None,
) -> Worker:
    acts = activities or build_activities(settings)
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[DunningWorkflow],
        activities=acts.registered(),
        activity_executor=executor,
        workflow_runner=sandbox_runner(),
    )
