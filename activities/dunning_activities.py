"""The activities of DunningWorkflow: every read and write outside the workflow.

Three parts, one idea each:
- activities/prepare.py: prepare_loan, the policy, profile and borrower
  preferences a loan starts from;
- activities/outbox.py: send_contact, one message through the outbox
  (db/outbox.py) and a provider;
- activities/records.py: the record writers (stages, payments, the closing,
  decisions, complaints, the bureau, plans, promises, visits, legal outcomes).

Each is idempotent by a key the workflow derives from its id and the step, so
Temporal may retry any of them, or run one again after a worker crash, without
a second message, record or payment row appearing. They are synchronous: the
worker runs them in a thread pool, one database session per call. Their names
and payloads (activities/payloads.py) are what the workflow and its histories
know them by.

Nothing personal leaves here towards Temporal: inputs and outputs carry ids
and money, provider errors are scrubbed of the recipient before they become an
outcome or a failure, and the engine hides SQL parameters from its errors.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from activities.context import ActivityContext, ActivitySettings, attempt_time
from activities.outbox import ContactSending
from activities.prepare import LoanPreparation
from activities.records import RecordWriters
from activities.rendering import TemplateRenderer
from channels.base import Channel


class DunningActivities:
    """The three parts as one object: the worker registers `registered()`,
    and each activity is also an attribute by its method's name
    (`acts.send_contact`), as the tests call them."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        channels: dict[str, Channel],
        renderer: TemplateRenderer,
        settings: ActivitySettings,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        context = ActivityContext(session_factory, settings, clock or attempt_time)
        parts = (LoanPreparation(context), ContactSending(context, channels, renderer), RecordWriters(context))
        self._activities = {method.__name__: method for part in parts for method in part.registered()}

    def registered(self) -> list:
        """Every activity, for the worker to register."""
        return list(self._activities.values())

    def __getattr__(self, name: str):
        try:
            return self.__dict__["_activities"][name]
        except KeyError:
            raise AttributeError(name) from None
