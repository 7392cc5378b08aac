"""What every route shares: one `Gateway` per app (app.state.gateway), handed
to the routes by the `gateway` dependency.

It holds the settings and, made on first use, the Temporal client (no
Temporal: 503), the database's session factory (migrated to head first) and
the message templates (the IVR's spoken answers), plus the helpers that talk
to the loan workflows: `signal`, `tell_contact_outcome`, `loan_status` and
`loan_policy`. Temporal
being unreachable is a 503 wherever it happens (`temporal_errors`).
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import structlog
from fastapi import HTTPException, Request
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client, WorkflowQueryFailedError, WorkflowQueryRejectedError
from temporalio.service import RPCError, RPCStatusCode

from activities.rendering import TemplateRenderer
from db import borrower_messages
from db.migrate import upgrade_to_head
from db.models import Loan, WebhookDelivery
from db.session import make_engine, make_session_factory
from dunning import contract
from dunning.keys import step_of_contact_key
from dunning.policy import Policy, PolicyError
from gateway.settings import GatewaySettings
from loaders.config_files import load_policy
from runtime.settings import Settings

log = structlog.get_logger("gateway")

ClientFactory = Callable[[], "Client | Awaitable[Client]"]


@contextmanager
def temporal_errors() -> Iterator[None]:
    """Temporal unreachable (or too slow to answer) is a 503; other RPC errors stay what they are."""
    try:
        yield
    except RPCError as error:
        if error.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
            raise HTTPException(503, "Temporal is not reachable") from None
        raise


class Seen:
    """Delivery keys the gateway has acted on, kept in the database
    (`webhook_deliveries`), so every gateway process and restart sees them."""

    def __init__(self, sessions: Callable[[], sessionmaker[Session]], prefix: str) -> None:
        self._sessions, self._prefix = sessions, prefix

    def _key(self, key: str) -> str:
        return f"{self._prefix}/{key}"[:255]

    def add(self, key: str) -> bool:
        """True if the key is new (and now recorded)."""
        try:
            with self._sessions().begin() as db:
                db.add(WebhookDelivery(key=self._key(key)))
        except IntegrityError:
            return False
        return True

    def discard(self, key: str) -> None:
        """Forget a key whose work did not happen, so a retry can try again."""
        with self._sessions().begin() as db:
            db.execute(delete(WebhookDelivery).where(WebhookDelivery.key == self._key(key)))


class Gateway:
    """One app's settings (`core`: the service's, runtime/settings.py; `edge`:
    the HTTP edge's own, gateway/settings.py), connections and workflow helpers."""

    def __init__(self, core: Settings, edge: GatewaySettings, client_factory: ClientFactory | None = None) -> None:
        self.core, self.edge = core, edge
        self._client_factory = client_factory or self._connect
        self._client: Client | None = None
        self._sessions: sessionmaker[Session] | None = None
        self._templates: TemplateRenderer | None = None
        self._migrate_lock = threading.Lock()
        self.payments_seen = Seen(self.sessions, "payment")
        self.messages_seen = Seen(self.sessions, "twilio")
        self.events_seen = Seen(self.sessions, "sendgrid")

    async def _connect(self) -> Client:
        from runtime.temporal import connect

        return await connect(self.core)

    async def temporal(self) -> Client:
        if self._client is None:
            try:
                client = self._client_factory()
                if inspect.isawaitable(client):
                    client = await client
            except Exception as error:
                log.warning("temporal_unavailable", error=str(error)[:300])
                raise HTTPException(503, "Temporal is not reachable") from None
            self._client = client
        return self._client

    def sessions(self) -> sessionmaker[Session]:
        if self._sessions is None:
            with self._migrate_lock:
                if self._sessions is None:
                    upgrade_to_head(self.core.database_url)
                    self._sessions = make_session_factory(make_engine(self.core.database_url))
        return self._sessions

    def templates(self) -> TemplateRenderer:
        """The message templates (config/templates), as the worker renders them."""
        if self._templates is None:
            self._templates = TemplateRenderer(self.core.templates_dir)
        return self._templates

    async def signal(self, workflow_id: str, name: str, payload: dict) -> bool:
        """True if delivered; False if there is no such (open) workflow."""
        client = await self.temporal()
        with temporal_errors():
            try:
                await client.get_workflow_handle(workflow_id).signal(name, payload)
            except RPCError as error:
                if error.status == RPCStatusCode.NOT_FOUND:
                    return False
                raise
        log.info("gateway_signal", workflow_id=workflow_id, signal=name)
        return True

    async def tell_contact_outcome(self, workflow_id: str, key: str, outcome: str | None) -> None:
        """A provider's report of a contact (delivered, answered, opened, ...):
        `contact_outcome` for the step the outbox key names. The workflow
        counts call attempts and conversations for its caps, and shows the
        results on the loan's contacts."""
        step = step_of_contact_key(key)
        if outcome is not None and step is not None:
            await self.signal(workflow_id, contract.SIGNAL_CONTACT_OUTCOME, {"step": step, "result": outcome})
        elif outcome is not None:
            # One message merged for several of the borrower's loans (issue
            # 17, item 1): each loan hears of it, for its own step.
            with self.sessions()() as db:
                parts = borrower_messages.parts_of_message(db, key)
            for part in parts:
                if (part_step := step_of_contact_key(part.key)) is not None:
                    await self.signal(part.workflow_id, contract.SIGNAL_CONTACT_OUTCOME, {"step": part_step, "result": outcome})

    async def loan_status(self, loan_id: str) -> dict | None:
        """The loan workflow's `status` answer; None if there is no such workflow."""
        client = await self.temporal()
        with temporal_errors():
            try:
                return await client.get_workflow_handle(contract.workflow_id_for(loan_id)).query(contract.QUERY_STATUS)
            except RPCError as error:
                if error.status == RPCStatusCode.NOT_FOUND:
                    return None
                raise
            except (WorkflowQueryFailedError, WorkflowQueryRejectedError) as error:
                raise HTTPException(502, f"the status query failed: {str(error)[:200]}") from None

    def loan_policy(self, status: dict) -> Policy | None:
        """The policy named by the loan (its status, else the `loans` table), as
        config/policies/ has it now; None if it cannot be read."""
        name = status.get("policy")
        if not name:
            with self.sessions()() as db:
                name = db.scalar(select(Loan.policy).where(Loan.loan_id == status.get("loan_id")))
        try:
            return load_policy(str(name or ""), self.core.policies_dir)
        except PolicyError as error:
            log.warning("policy_unreadable", loan_id=status.get("loan_id"), error=str(error)[:300])
            return None


def gateway(request: Request) -> Gateway:
    """The dependency every route takes: its app's Gateway."""
    return request.app.state.gateway
