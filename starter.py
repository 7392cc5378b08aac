"""The command line for backends and operators.

    python starter.py start loans.json [--policy demo]   place overdue loans
    python starter.py status L-1001                      the status query, as JSON
    python starter.py list [--stage call]                open loans, by stage
    python starter.py repay L-1001 300.00                signal a repayment
    python starter.py signal L-1001 pause '{"reason": "hardship"}'

Names and contact details go to the borrower directory (the database), never
to Temporal: workflows get ids, money and dates.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import typer
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.service import RPCError

from dunning import contract
from runtime.settings import Settings, get_settings

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help=__doc__.split("\n\n")[0])

OPERATOR_SIGNALS = (
    contract.SIGNAL_DISPUTE,
    contract.SIGNAL_DISPUTE_RESOLVED,
    contract.SIGNAL_OPT_OUT,
    contract.SIGNAL_PAUSE,
    contract.SIGNAL_RESUME,
    contract.SIGNAL_COMPLAINT,
    contract.SIGNAL_COMPLAINT_RESOLVED,
)


def _finish(code: int = 0) -> None:
    """Flush and leave at once: a short-lived Temporal client process can abort
    in interpreter finalization (sdk-python #300) after its work is done."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    _finish(code)


async def _client(settings: Settings) -> Client:
    from runtime.temporal import connect

    try:
        return await connect(settings)
    except Exception as error:  # connection refused, TLS, DNS: one clear line
        _fail(f"cannot reach Temporal at {settings.temporal_address} (namespace {settings.temporal_namespace}): {error}")
        raise


@app.command()
def start(
    file: Path = typer.Argument(..., help="JSON array of records, or CSV with borrower.* columns"),
    policy: Optional[str] = typer.Option(None, help="policy for records that name none"),
) -> None:
    """Place overdue loans: write borrowers to the directory, start one workflow per loan."""
    from db.directory import upsert_placements
    from db.migrate import upgrade_to_head
    from db.session import make_engine, make_session_factory
    from runtime.logging import configure_logging
    from runtime.placement import PlacementError, read_placements, validate_placements

    settings = get_settings()
    configure_logging(settings.log_level)
    try:
        placements = validate_placements(read_placements(file), default_policy=policy)
    except PlacementError as error:
        _fail(f"nothing was placed:\n{error}", code=2)
    upgrade_to_head(settings.database_url)
    summary = upsert_placements(make_session_factory(make_engine(settings.database_url)), placements)
    for conflict in summary.conflicts:
        typer.echo(f"warning: {conflict}", err=True)

    async def start_all() -> None:
        from workflows.search_attributes import DUNNING_POLICY, LOAN_ID

        client = await _client(settings)
        for placement in placements:
            loan = placement.loan
            workflow_id = contract.workflow_id_for(loan.loan_id)
            handle = await client.start_workflow(
                contract.WORKFLOW_TYPE,
                placement.workflow_input(),
                id=workflow_id,
                task_queue=settings.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                static_summary=(
                    f"Loan {loan.loan_id}: {loan.amount_due} {loan.currency} due {loan.due_date}, policy {loan.policy}"
                ),
                search_attributes=TypedSearchAttributes(
                    [SearchAttributePair(LOAN_ID, loan.loan_id), SearchAttributePair(DUNNING_POLICY, loan.policy)]
                ),
            )
            description = await handle.describe()
            fresh = description.start_time >= started_at
            typer.echo(f"{workflow_id}\t{'started' if fresh else 'already running'}\trun {handle.result_run_id}")

    started_at = datetime.now(timezone.utc).replace(microsecond=0)
    asyncio.run(start_all())
    typer.echo(
        f"placed {len(placements)} loans: {summary.borrowers_created} borrowers new, "
        f"{summary.borrowers_updated} updated, {summary.loans_created} loans new"
    )
    _finish(0)


@app.command()
def status(loan_id: str) -> None:
    """Print a loan's status query as JSON."""

    async def run() -> dict:
        client = await _client(get_settings())
        return await client.get_workflow_handle(contract.workflow_id_for(loan_id)).query(contract.QUERY_STATUS)

    try:
        answer = asyncio.run(run())
    except RPCError as error:
        _fail(f"loan {loan_id}: {error}")
    typer.echo(json.dumps(answer, indent=2, ensure_ascii=False))
    _finish(0)


@app.command(name="list")
def list_loans(stage: Optional[str] = typer.Option(None, help="only loans in this stage")) -> None:
    """List dunning workflows (by stage) from Temporal's visibility."""
    if stage is not None and stage not in (*contract.STAGES, contract.STAGE_PENDING, contract.STAGE_CLOSED):
        _fail(f"stage: must be one of {', '.join(contract.STAGES)}, pending, closed", code=2)
    query = f'WorkflowType="{contract.WORKFLOW_TYPE}"' + (f' AND DunningStage="{stage}"' if stage else "")

    async def run() -> list[tuple]:
        client = await _client(get_settings())
        rows = []
        async for execution in client.list_workflows(query):
            attributes = execution.typed_search_attributes
            values = {key.name: value for key, value in ((p.key, p.value) for p in attributes)}
            rows.append(
                (
                    execution.id,
                    WorkflowExecutionStatus(execution.status).name.lower() if execution.status else "",
                    values.get("DunningStage", ""),
                    values.get("DaysPastDue", ""),
                    values.get("OutstandingAmount", ""),
                )
            )
        return rows

    rows = asyncio.run(run())
    typer.echo("workflow_id\tstatus\tstage\tdays_past_due\toutstanding")
    for row in rows:
        typer.echo("\t".join(str(v) for v in row))
    _finish(0)


@app.command()
def repay(
    loan_id: str,
    amount: str,
    currency: str = typer.Option("CNY"),
    payment_id: Optional[str] = typer.Option(None, help="the payment service's id (default: a new one)"),
    paid_at: Optional[str] = typer.Option(None, help="ISO 8601 instant with offset (default: now)"),
) -> None:
    """Signal a repayment to a loan."""
    payload = {
        "payment_id": payment_id or f"P-{uuid.uuid4().hex[:12]}",
        "amount": amount,
        "currency": currency,
        "paid_at": paid_at or datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    _signal(loan_id, contract.SIGNAL_REPAYMENT, payload)


@app.command()
def signal(loan_id: str, name: str, payload: str = typer.Argument("{}", help="JSON object")) -> None:
    """Send an operator signal: dispute, dispute_resolved, opt_out, pause, resume, complaint, complaint_resolved."""
    if name not in OPERATOR_SIGNALS:
        _fail(f"name: must be one of {', '.join(OPERATOR_SIGNALS)}", code=2)
    try:
        data = json.loads(payload)
    except json.JSONDecodeError as error:
        _fail(f"payload: not valid JSON: {error}", code=2)
    _signal(loan_id, name, data)


def _signal(loan_id: str, name: str, payload: dict) -> None:
    async def run() -> None:
        client = await _client(get_settings())
        await client.get_workflow_handle(contract.workflow_id_for(loan_id)).signal(name, payload)

    try:
        asyncio.run(run())
    except RPCError as error:
        _fail(f"loan {loan_id}: {error}")
    typer.echo(f"sent {name} to {contract.workflow_id_for(loan_id)}: {json.dumps(payload, ensure_ascii=False)}")
    _finish(0)


if __name__ == "__main__":
    try:
        app()
    except SystemExit as exit_:
        _finish(exit_.code if isinstance(exit_.code, int) else 1)
