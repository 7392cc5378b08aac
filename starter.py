"""The command line for backends and operators.

    python starter.py start loans.json [--policy demo]   place overdue loans (JSON array or CSV)
    python starter.py status L-1001                      the status query, as JSON
    python starter.py list [--stage call]                dunning workflows, by stage
    python starter.py repay L-1001 300.00                signal a repayment
    python starter.py reverse L-1001 P-9 --reason NSF    a payment came back (a loan closed repaid reopens)
    python starter.py signal L-1001 pause '{"reason": "hardship"}'
    python starter.py update L-1001 promise_to_pay '{"amount": "300.00", "by_date": "2026-11-20"}'
    python starter.py visit L-1001-V1 met --staff S-1 --staff S-2 --notes "..."
    python starter.py borrower-contact B-77 --phone +8613900139000 --by alice
    python starter.py borrower B-77                      a borrower's loans, balances, contacts, tasks (masked)
    python starter.py keys create --name backend --scope loans:place   an API key, printed once
    python starter.py tasks list [--status open] | claim 7 --assignee A-1 | complete 7 verified --assignee A-1
    python starter.py retention run [--dry-run]          delete call recordings past retention
    python starter.py retention schedule                 create or update the daily retention Schedule

Settings come from the environment (runtime/settings.py): TEMPORAL_ADDRESS,
TEMPORAL_NAMESPACE, DUNNING_TASK_QUEUE, DUNNING_DATABASE_URL. Names and contact
details go to the borrower directory (the database), never to Temporal:
workflows get ids, money and dates.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn, Optional

import typer

from dunning import contract
from reports.text_table import text_table
from runtime.settings import STATE_DIR, Settings, get_settings

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help=(__doc__ or "").split("\n\n")[0],
)

OPERATOR_SIGNALS = (
    contract.SIGNAL_DISPUTE,
    contract.SIGNAL_DISPUTE_RESOLVED,
    contract.SIGNAL_OPT_OUT,
    contract.SIGNAL_PAUSE,
    contract.SIGNAL_RESUME,
    contract.SIGNAL_COMPLAINT,
    contract.SIGNAL_COMPLAINT_RESOLVED,
    contract.SIGNAL_SETTLEMENT_DECISION,  # issue 18, item 4: an approver's decision
    contract.SIGNAL_LEGAL_STATUS,  # issue 18, item 1: a bankruptcy, a death, a cease request, a hardship
)
LISTABLE_STAGES = (contract.STAGE_PENDING, *contract.STAGE_NAMES, contract.STAGE_CLOSED)


def _finish(code: int = 0) -> NoReturn:
    """Flush and leave at once: a short-lived Temporal client process can abort
    in interpreter finalization (sdk-python #300) after its work is done."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    _finish(code)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text[:300]


def _migrated_sessions(settings: Settings):
    """The database's sessions, its schema brought to head first: placing, a
    visit or a report may be the first to touch a fresh database."""
    from db.migrate import upgrade_to_head
    from db.session import make_engine, make_session_factory

    upgrade_to_head(settings.database_url)
    return make_session_factory(make_engine(settings.database_url))


async def _client(settings: Settings):
    from runtime.temporal import connect

    try:
        return await connect(settings)
    except Exception as error:  # refused, DNS, TLS, unknown namespace: one clear line
        _fail(
            f"cannot reach Temporal at {settings.temporal_address} "
            f"(namespace {settings.temporal_namespace}): {_one_line(error)}"
        )


def _run(coroutine, what: str) -> Any:
    """Run a client coroutine; a Temporal error becomes one line and exit 1."""
    from temporalio.client import WorkflowQueryFailedError, WorkflowQueryRejectedError
    from temporalio.service import RPCError, RPCStatusCode

    try:
        return asyncio.run(coroutine)
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            _fail(f"{what}: no such workflow")
        if error.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
            settings = get_settings()
            _fail(f"cannot reach Temporal at {settings.temporal_address}: {_one_line(error)}")
        _fail(f"{what}: {_one_line(error)}")
    except (WorkflowQueryFailedError, WorkflowQueryRejectedError) as error:
        _fail(f"{what}: {_one_line(error)}")


@app.command()
def start(
    file: Path = typer.Argument(..., help="a JSON array of records (or one object), or a CSV with borrower.* columns"),
    policy: Optional[str] = typer.Option(None, help="policy for records that name none"),
    concurrency: int = typer.Option(32, min=1, max=1024, help="workflow starts in flight at once"),
    batch: int = typer.Option(500, min=1, max=10000, help="records written to the database per transaction"),
    keep_going: bool = typer.Option(
        False, "--keep-going", help="place every good record; name each bad or conflicting one on stderr (exit 4)"),
    progress: Optional[bool] = typer.Option(
        None, "--progress/--no-progress", help="a progress bar on stderr (default: when stderr is a terminal)"),
    checkpoint_dir: Path = typer.Option(
        STATE_DIR / "placements", help="where an interrupted placement's checkpoint is kept, to resume from"),
) -> None:
    """Place overdue loans: borrowers to the directory, one workflow per loan."""
    from runtime.logging import configure_logging
    from services.bulk_placing import Ledger, Options, PlacementError, Tally, count_records, validate_file

    settings = get_settings()
    configure_logging(settings.log_level)
    # Every record is checked before anything is written anywhere (read once
    # here, once more to place: a file of any size is never held in memory);
    # with --keep-going a bad record is refused alone, as it is met.
    try:
        if keep_going:
            records, problems = count_records(file), []
        else:
            records, problems = validate_file(file, policy)
    except PlacementError as error:
        _fail(f"nothing was placed; fix these records:\n{error}", code=2)
    if problems:
        _fail("nothing was placed; fix these records:\n" + "\n".join(problems), code=2)
    if not records:
        _fail(f"{file}: no records", code=2)

    options = Options(concurrency=concurrency, batch=batch, keep_going=keep_going, default_policy=policy)
    ledger = Ledger.for_file(checkpoint_dir, file, settings.database_url, settings.temporal_namespace,
                             settings.task_queue, policy)
    tally = Tally()
    show = sys.stderr.isatty() if progress is None else progress
    try:
        _run(_place_file(settings, file, options, ledger, records, tally, show), "start")
    except KeyboardInterrupt:
        _fail(f"interrupted after record {tally.done} of {records}; run the same command again to go on from "
              "there (nothing is placed twice)", code=130)
    _finish(4 if tally.refused else 0)


async def _place_file(settings: Settings, file: Path, options, ledger, records: int, tally, show_progress: bool) -> None:
    from services.bulk_placing import BatchConflict, Sinks, place_file

    client = await _client(settings)  # before writing: no Temporal, nothing written
    sessions = _migrated_sessions(settings)
    resumed = ledger.done
    with _progress_bar(records, resumed, show_progress) as advance:
        sinks = Sinks(on_result=lambda result: typer.echo(result.line()),
                      on_refused=lambda line: typer.echo(f"refused: {line}", err=True), on_progress=advance)
        try:
            await place_file(client, settings.task_queue, sessions, file, options, ledger, sinks, tally)
        except BatchConflict as error:  # ids and field names, never values
            if error.first_record == 1:
                _fail(f"nothing was placed; these records conflict with what exists:\n{error.conflict}", code=3)
            _fail(f"records 1-{error.first_record - 1} were placed; nothing from record {error.first_record} on, "
                  f"whose batch has records that conflict with what exists:\n{error.conflict}", code=3)
    ledger.finish()
    # Without --keep-going a conflict stops the run (above): 0 conflicts.
    typer.echo(
        f"placed {tally.placed} loans: borrowers {tally.borrowers_created} new, "
        f"{tally.borrowers_unchanged} unchanged; loans {tally.loans_created} new, "
        f"{tally.loans_unchanged} unchanged, {tally.conflicts} conflicts"
    )
    if resumed:
        typer.echo(f"resumed: records 1-{resumed} were placed by an interrupted run of this file and not read again; "
                   f"{tally.states.get('already running', 0)} of the others were already running")
    if tally.refused:
        typer.echo(f"refused {tally.refused} of {records} records (named on stderr); every other record was placed",
                   err=True)


@contextlib.contextmanager
def _progress_bar(total: int, done: int, enabled: bool):
    """A bar on stderr with the rate and the time left; stdout stays one line
    per loan for whoever reads it."""
    if not enabled:
        yield lambda advanced: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task) -> Text:
            return Text(f"{task.speed:,.0f} records/s" if task.speed else "- records/s")

    columns = (TextColumn("placing"), BarColumn(), MofNCompleteColumn(), Rate(), TextColumn("left"),
               TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), redirect_stdout=False, transient=False) as bar:
        task = bar.add_task("placing", total=total, completed=done)
        yield lambda advanced: bar.advance(task, advanced)


@app.command()
def status(loan_id: str) -> None:
    """Print a loan's `status` query answer as JSON."""

    async def ask() -> Any:
        client = await _client(get_settings())
        return await client.get_workflow_handle(contract.workflow_id_for(loan_id)).query(contract.QUERY_STATUS)

    answer = _run(ask(), f"loan {loan_id}")
    typer.echo(json.dumps(answer, indent=2, ensure_ascii=False))
    _finish(0)


@app.command(name="list")
def list_loans(stage: Optional[str] = typer.Option(None, help="only loans in this stage (DunningStage)")) -> None:
    """List dunning workflows from Temporal's visibility, optionally by stage."""
    if stage is not None and stage not in LISTABLE_STAGES:
        _fail(f"--stage: must be one of {', '.join(LISTABLE_STAGES)}", code=2)
    query = f'WorkflowType="{contract.WORKFLOW_TYPE}"' + (f' AND DunningStage="{stage}"' if stage else "")

    async def listing() -> list[tuple]:
        from workflows.search_attributes import DAYS_PAST_DUE, DUNNING_STAGE, OUTSTANDING_AMOUNT

        client = await _client(get_settings())
        rows = []
        async for execution in client.list_workflows(query):
            found = execution.typed_search_attributes
            outstanding = found.get(OUTSTANDING_AMOUNT)
            rows.append(
                (
                    execution.id,
                    execution.status.name.lower() if execution.status else "",
                    found.get(DUNNING_STAGE) or "",
                    found.get(DAYS_PAST_DUE),
                    f"{outstanding:.2f}" if outstanding is not None else "",
                )
            )
        return rows

    rows = _run(listing(), "list")
    typer.echo(text_table(("WORKFLOW ID", "STATUS", "STAGE", "DAYS PAST DUE", "OUTSTANDING"), rows))
    typer.echo(f"({len(rows)} workflows)")
    _finish(0)


def _json_payload(payload: str) -> Any:
    """A signal's or update's payload argument, parsed; a usage error if it is not JSON."""
    try:
        return json.loads(payload)
    except json.JSONDecodeError as error:
        _fail(f"payload: not valid JSON: {error}", code=2)


def _signal(loan_id: str, name: str, payload: dict) -> NoReturn:
    async def send() -> None:
        client = await _client(get_settings())
        await client.get_workflow_handle(contract.workflow_id_for(loan_id)).signal(name, payload)

    _run(send(), f"loan {loan_id}")
    typer.echo(f"sent {name} to {contract.workflow_id_for(loan_id)}: {json.dumps(payload, ensure_ascii=False)}")
    _finish(0)


@app.command()
def repay(
    loan_id: str,
    amount: str = typer.Argument(..., help='a decimal string, such as "300.00"'),
    currency: str = typer.Option("CNY", help="ISO 4217 code"),
    payment_id: Optional[str] = typer.Option(None, help="the payment service's id (default: a new one)"),
    paid_at: Optional[str] = typer.Option(None, help="ISO 8601 instant with an offset (default: now)"),
) -> None:
    """Signal a repayment to a loan."""
    from dunning.inputs import InputError, RepaymentSignal, parse_signal
    from dunning.money import parse_amount

    payload = {
        "payment_id": payment_id or f"P-{uuid.uuid4().hex[:16]}",
        "amount": amount,
        "currency": currency,
        "paid_at": paid_at or datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        parse_signal(RepaymentSignal, payload)
        parse_amount(amount, currency)
    except InputError as error:
        _fail(str(error), code=2)
    except ValueError as error:
        _fail(f"amount: {error}", code=2)
    _signal(loan_id, contract.SIGNAL_REPAYMENT, payload)


@app.command()
def reverse(
    loan_id: str,
    payment_id: str,
    reason: str = typer.Option("reversed", help="a short code (NSF, chargeback, R01...), never personal data"),
    reversed_at: Optional[str] = typer.Option(None, help="ISO 8601 instant with an offset (default: when it arrives)"),
) -> None:
    """A payment reversed: its allocation undone, as POST /payments/reversals (a loan closed repaid reopens)."""
    from services.reversals import BadReversal, Reversal, reverse_payment

    reversal = Reversal(loan_id=loan_id, payment_id=payment_id, reason=reason, reversed_at=reversed_at)
    try:
        reversal.signal_payload()
    except BadReversal as error:
        _fail(str(error).replace("reversed_at", "--reversed-at").replace("reason", "--reason"), code=2)
    settings = get_settings()

    async def send():
        return await reverse_payment(lambda: _client(settings), _migrated_sessions(settings), settings.task_queue, reversal)

    answer = _run(send(), f"loan {loan_id}")
    typer.echo(json.dumps(answer.as_dict(), indent=2, ensure_ascii=False))
    # Reversed already: nothing changed, and that is an answer, not a failure.
    if not (answer.changed or answer.result == "duplicate"):
        _fail(answer.detail)
    _finish(0)


@app.command()
def signal(
    loan_id: str,
    name: str = typer.Argument(..., help=f"one of {', '.join(OPERATOR_SIGNALS)}"),
    payload: str = typer.Argument("{}", help="the signal's JSON object"),
) -> None:
    """Send an operator signal (dispute, dispute_resolved, opt_out, pause, resume, ...)."""
    from dunning import inputs

    models = {
        contract.SIGNAL_DISPUTE: inputs.DisputeSignal,
        contract.SIGNAL_DISPUTE_RESOLVED: inputs.DisputeResolvedSignal,
        contract.SIGNAL_OPT_OUT: inputs.OptOutSignal,
        contract.SIGNAL_PAUSE: inputs.HoldSignal,
        contract.SIGNAL_RESUME: inputs.HoldSignal,
        contract.SIGNAL_COMPLAINT: inputs.ComplaintSignal,
        contract.SIGNAL_COMPLAINT_RESOLVED: inputs.ComplaintResolvedSignal,
        contract.SIGNAL_SETTLEMENT_DECISION: inputs.SettlementDecisionSignal,
        contract.SIGNAL_LEGAL_STATUS: inputs.LegalStatusSignal,
    }
    if name == contract.SIGNAL_REPAYMENT:
        _fail("name: use `starter.py repay` for repayments", code=2)
    if name not in models:
        _fail(f"name: must be one of {', '.join(models)}", code=2)
    data = _json_payload(payload)
    try:
        inputs.parse_signal(models[name], data)
    except inputs.InputError as error:
        _fail(str(error), code=2)
    _signal(loan_id, name, data)


@app.command()
def update(
    loan_id: str,
    name: str = typer.Argument(..., help=f"one of {', '.join(contract.UPDATES)}"),
    payload: str = typer.Argument("{}", help="the update's JSON object"),
) -> None:
    """Run an update (propose_plan, promise_to_pay, record_visit, legal_outcome, propose_settlement, ...); print its answer as JSON."""
    from services.visits import NoSuchLoan, UpdateRejected, UpdateTimedOut, execute_update, refuse_personal_keys

    if name not in contract.UPDATES:
        _fail(f"name: must be one of {', '.join(contract.UPDATES)}", code=2)
    data = _json_payload(payload)
    if not isinstance(data, dict):
        _fail("payload: must be a JSON object", code=2)
    try:
        refuse_personal_keys(data)
    except ValueError as error:
        _fail(str(error), code=2)

    async def send() -> tuple[bool, Any]:
        client = await _client(get_settings())
        try:
            return True, await execute_update(client, loan_id, name, data)
        except UpdateRejected as error:
            return False, f"{name} rejected: {error.message}"
        except (NoSuchLoan, UpdateTimedOut) as error:
            return False, f"loan {loan_id}: {error}"

    accepted, answer = _run(send(), f"loan {loan_id}")
    if not accepted:
        _fail(answer)
    typer.echo(json.dumps(answer, indent=2, ensure_ascii=False))
    _finish(0)


@app.command()
def visit(
    visit_id: str,
    outcome: str = typer.Argument(..., help="met, not_home, refused, promise or paid"),
    staff: Optional[list[str]] = typer.Option(None, "--staff", help="a staff id; repeat for each (the cn profile needs 2)"),
    notes: str = typer.Option("", help="the field team's notes: kept in the database, never sent to Temporal"),
    promise_amount: Optional[str] = typer.Option(None, help='with outcome promise: the amount, such as "600.00"'),
    promise_by: Optional[str] = typer.Option(None, help="with outcome promise: the date, YYYY-MM-DD"),
) -> None:
    """Report a field visit: record_visit with ids only, then the notes into the database."""
    from pydantic import ValidationError

    from dunning.inputs import explain
    from services.visits import FieldReport, NoSuchLoan, NotesNotStored, UpdateTimedOut, report_visit

    if (promise_amount is None) != (promise_by is None):
        _fail("--promise-amount and --promise-by: give both, or neither", code=2)
    data: dict[str, Any] = {"outcome": outcome, "staff_ids": list(staff or []), "notes": notes}
    if promise_amount is not None:
        data["promise"] = {"amount": promise_amount, "by_date": promise_by}
    try:
        report = FieldReport.model_validate(data)
    except ValidationError as error:
        _fail(explain(error).replace("staff_ids", "--staff"), code=2)
    settings = get_settings()

    async def send():
        client = await _client(settings)
        sessions = _migrated_sessions(settings)
        try:
            return await report_visit(client, sessions, visit_id, report)
        except (NoSuchLoan, UpdateTimedOut, NotesNotStored) as error:
            return str(error)

    result = _run(send(), f"visit {visit_id}")
    if isinstance(result, str):
        _fail(result)
    if result.result in ("unknown", "rejected"):
        _fail(f"record_visit rejected: {result.error}" if result.result == "rejected" else result.error)
    typer.echo(json.dumps(result.answer, indent=2, ensure_ascii=False))
    _finish(0)


@app.command()
def report(
    out: Optional[Path] = typer.Option(None, help="directory for kpi.png and kpi.html [default: .dunning/reports]"),
    as_json: bool = typer.Option(False, "--json", help="print the KPIs as JSON (money and rates as decimal strings)"),
    since: Optional[datetime] = typer.Option(None, formats=["%Y-%m-%d"], help="loans placed on or after this UTC date"),
    until: Optional[datetime] = typer.Option(None, formats=["%Y-%m-%d"], help="loans placed on or before this UTC date"),
    policy: Optional[str] = typer.Option(None, help="only loans on this policy"),
) -> None:
    """Collections KPIs from the database, overall and by policy and segment (docs/kpis.md)."""
    if since and until and since > until:
        _fail("--since: is after --until", code=2)
    from sqlalchemy.exc import SQLAlchemyError

    from reports.chart import write_report_files
    from reports.kpi import build_report
    from reports.kpi_render import format_text, report_json
    from reports.loan_facts import Filters
    from runtime.settings import STATE_DIR

    settings = get_settings()
    try:
        with _migrated_sessions(settings)() as db:
            kpis = build_report(db, Filters(since=since and since.date(), until=until and until.date(), policy=policy))
    except SQLAlchemyError as error:
        _fail(f"database: {_one_line(error)}")
    png, html = write_report_files(kpis, out or STATE_DIR / "reports")
    if as_json:
        answer = {**report_json(kpis), "files": {"png": str(png), "html": str(html)}}
        typer.echo(json.dumps(answer, indent=2, ensure_ascii=False))
    else:
        typer.echo(f"{format_text(kpis)}\n\nwrote {png} and {html}")
    _finish(0)


@app.command(name="borrower-contact")
def borrower_contact(
    borrower_id: str = typer.Argument(..., help="the borrower whose contact details change"),
    name: Optional[str] = typer.Option(None, "--name"),
    phone: Optional[str] = typer.Option(None, "--phone", help='E.164, e.g. +8613800138000; "" clears it'),
    email: Optional[str] = typer.Option(None, "--email", help='"" clears it'),
    push_token: Optional[str] = typer.Option(None, "--push-token", help='"" clears it'),
    language: Optional[str] = typer.Option(None, "--language", help="zh_CN, zh_TW or en"),
    time_zone: Optional[str] = typer.Option(None, "--time-zone", help='an IANA zone; "" = the phone\'s zone'),
    by: Optional[str] = typer.Option(None, "--by", help="who makes the change, for the audit (default: your OS user)"),
) -> None:
    """Change a borrower's contact details (validated, audited with who and masked before/after values);
    open loans use them from their next contact. Placing never changes them."""
    import getpass

    from services.contacts import ContactError, UnknownBorrower, change_contact

    given = {"name": name, "phone": phone, "email": email, "push_token": push_token,
             "language": language, "time_zone": time_zone}
    changes = {field: (value if value.strip() else None) for field, value in given.items() if value is not None}
    if by is None:
        try:
            by = getpass.getuser()
        except Exception:  # no login name in this environment (a container): the uid
            by = f"uid {os.getuid()}"
    if not by.strip() or len(by) > 100 or not by.isprintable():
        _fail("--by: must be a name of 1 to 100 printable characters", code=2)
    try:
        change = change_contact(_migrated_sessions(get_settings()), borrower_id, changes, by=f"operator:{by}")
    except ContactError as error:
        _fail("; ".join(f"--{field.replace('_', '-')}: {message}" if field != "(payload)" else message
                        for field, message in error.problems), code=2)
    except UnknownBorrower:
        _fail(f"no borrower {borrower_id} in the directory", code=1)
    if not change.changed:
        typer.echo(f"{borrower_id}: nothing changed")
    else:
        typer.echo(f"{borrower_id}: changed {', '.join(change.changed)}; "
                   f"open loans using them from their next contact: {', '.join(change.open_loans) or 'none'}")
    _finish(0)


@app.command(name="borrower")
def borrower(borrower_id: str = typer.Argument(..., help="the borrower to show")) -> None:
    """Print a borrower's view as JSON, as GET /borrowers/{borrower_id} answers it: the loans and their
    stages, the outstanding per currency, the contacts across loans, open tasks; contact details masked."""
    from services.borrower_view import UnknownBorrower, borrower_view

    settings = get_settings()
    sessions = _migrated_sessions(settings)

    async def view() -> dict | None:
        try:
            return await borrower_view(sessions, borrower_id, lambda: _client(settings))
        except UnknownBorrower:
            return None

    answer = _run(view(), f"borrower {borrower_id}")
    if answer is None:
        _fail(f"no borrower {borrower_id} in the directory", code=1)
    typer.echo(json.dumps(answer, indent=2, ensure_ascii=False))
    _finish(0)


# `keys create|list|rotate|revoke`: the internal API's keys (gateway/keys_cli.py).
from gateway.keys_cli import keys_app  # noqa: E402

app.add_typer(keys_app, name="keys")

# `retention run|schedule`: the records retention job (activities/retention.py).
retention_app = typer.Typer(no_args_is_help=True, help="The records retention job: call recordings past retention.")
app.add_typer(retention_app, name="retention")


@retention_app.command("run")
def retention_run(
    dry_run: bool = typer.Option(False, "--dry-run", help="list what would be deleted; delete and write nothing"),
    now: Optional[datetime] = typer.Option(
        None, formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d"],
        help="count retention from this instant (ISO 8601 with an offset, or a UTC date) [default: now]"),
) -> None:
    """Delete the call recordings past their profile's records_retention_years at the provider,
    mark them on their contact rows and audit each deletion (what the daily Schedule runs)."""
    from activities.retention import ALREADY_GONE, DELETED, FAILED, WOULD_DELETE, run_retention_until_done
    from runtime.worker_build import recording_store

    settings = get_settings()
    moment = now or datetime.now(timezone.utc)
    if moment.tzinfo is None:  # a date: its start in UTC
        moment = moment.replace(tzinfo=timezone.utc)
    report = run_retention_until_done(_migrated_sessions(settings), None if dry_run else recording_store(settings),
                                      settings.policies_dir, settings.profiles_dir, moment, dry_run=dry_run)
    for item in report.items:
        typer.echo(f"{item.result:13} {item.key}  {item.recording_ref}  call {item.called_at.date().isoformat()}  "
                   f"{item.profile} {item.retention_years} years  {item.detail}")
    for problem in report.problems:
        typer.echo(f"problem: {problem}", err=True)
    for policy, closed in sorted(report.closed_loans_past_retention.items()):
        typer.echo(f"policy {policy}: {closed} closed loans past retention; their other records are kept "
                   f"(only recordings are deleted)")
    if dry_run:
        typer.echo(f"dry run at {moment.isoformat()}: {report.count(WOULD_DELETE)} recordings would be deleted; "
                   "nothing was deleted or written")
    else:
        typer.echo(f"retention at {moment.isoformat()}: {report.count(DELETED)} recordings deleted, "
                   f"{report.count(ALREADY_GONE)} already gone at the provider, {report.count(FAILED)} failed "
                   "(kept for the next run)")
    _finish(1 if report.count(FAILED) or report.problems else 0)


@retention_app.command("schedule")
def retention_schedule() -> None:
    """Create the daily retention Schedule, or update it to this version's definition (its pause is kept)."""
    from runtime.retention_schedule import SCHEDULE_ID, ensure_retention_schedule

    settings = get_settings()

    async def ensure() -> str:
        return await ensure_retention_schedule(await _client(settings), settings.task_queue)

    outcome = _run(ensure(), f"schedule {SCHEDULE_ID}")
    typer.echo(f"schedule {SCHEDULE_ID}: {outcome} (daily at 03:00 UTC, task queue {settings.task_queue})")
    _finish(0)


# `tasks list|claim|complete`: agent tasks (issue 17; services/tasks.py, as GET /tasks and POST /tasks/{id}/...).
tasks_app = typer.Typer(no_args_is_help=True, help="Agent tasks: work that needs a person (callbacks, disputes, ...).")
app.add_typer(tasks_app, name="tasks")


def _task_problem(error: Exception) -> NoReturn:
    """A task error as one line and its exit code: 2 a bad value (named as
    its option), 1 no such task, a conflict or a loan that did not take it."""
    from services.tasks import LoanUnreachable, NoSuchTask, TaskConflict, TaskError

    if isinstance(error, TaskError):
        name = error.field if error.field == "outcome" else f"--{error.field.replace('_', '-')}"
        _fail(f"{name}: {error.message}", code=2)
    if isinstance(error, NoSuchTask):
        _fail(str(error), code=1)
    if isinstance(error, (TaskConflict, LoanUnreachable)):
        _fail(error.message, code=1)
    raise error


@tasks_app.command("list")
def tasks_list(
    status: Optional[str] = typer.Option(None, help="open, claimed or done"),
    kind: Optional[str] = typer.Option(None, help="callback, dispute_verification, complaint_review, ..."),
    loan: Optional[str] = typer.Option(None, "--loan", help="only this loan's tasks"),
    borrower_id: Optional[str] = typer.Option(None, "--borrower", help="only this borrower's tasks"),
    assignee: Optional[str] = typer.Option(None, help="only tasks claimed or done by this agent id"),
    limit: int = typer.Option(200, help="at most this many (1-1000)"),
    as_json: bool = typer.Option(False, "--json", help="print the tasks as JSON"),
) -> None:
    """Tasks, most urgent first (priority, higher first; then due time)."""
    from services.tasks import TaskError, list_tasks

    filters = {"status": status, "kind": kind, "loan_id": loan, "borrower_id": borrower_id, "assignee": assignee}
    try:
        found = list_tasks(_migrated_sessions(get_settings()), limit=limit, **filters)
    except TaskError as error:
        names = {"loan_id": "--loan", "borrower_id": "--borrower"}
        _fail(f"{names.get(error.field, '--' + error.field)}: {error.message}", code=2)
    if as_json:
        typer.echo(json.dumps(found, indent=2, ensure_ascii=False))
    else:
        rows = [(t["id"], t["kind"], t["status"], t["priority"], t["due_at"], t["loan_id"], t["borrower_id"],
                 t["assignee"] or "", t["outcome"] or "") for t in found]
        typer.echo(text_table(("ID", "KIND", "STATUS", "PRIORITY", "DUE AT", "LOAN", "BORROWER", "ASSIGNEE", "OUTCOME"),
                              rows))
        typer.echo(f"({len(found)} tasks)")
    _finish(0)


@tasks_app.command("claim")
def tasks_claim(
    task_id: int = typer.Argument(..., help="the task's id (tasks list)"),
    assignee: str = typer.Option(..., "--assignee", help="the agent's id (never a name)"),
) -> None:
    """Claim an open task; print it as JSON. Claimed by another agent or done: exit 1."""
    from services.tasks import LoanUnreachable, NoSuchTask, TaskConflict, TaskError, claim_task

    try:
        task = claim_task(_migrated_sessions(get_settings()), task_id, assignee)
    except (TaskError, NoSuchTask, TaskConflict, LoanUnreachable) as error:
        _task_problem(error)
    typer.echo(json.dumps(task, indent=2, ensure_ascii=False))
    _finish(0)


@tasks_app.command("complete")
def tasks_complete(
    task_id: int = typer.Argument(..., help="the task's id (tasks list)"),
    outcome: str = typer.Argument(..., help="one of the task kind's outcomes (config/tasks.toml)"),
    assignee: str = typer.Option(..., "--assignee", help="the agent's id (never a name)"),
    note: Optional[str] = typer.Option(None, "--note", help="ids and codes only, never personal data"),
) -> None:
    """Complete a task: what its outcome sends goes to the loan first, then the task is done; print
    `{"task", "sent", "duplicate"}` as JSON. Unknown outcome: exit 2 listing the kind's; a conflict,
    or the loan did not take it (the task is then not done): exit 1."""
    from services.tasks import (
        LoanUnreachable, NoSuchTask, TaskConfigError, TaskConflict, TaskError, complete_task, load_task_rules, rules_path,
    )

    settings = get_settings()
    try:
        rules = load_task_rules(rules_path(settings.config_dir))
    except TaskConfigError as error:
        _fail(str(error), code=1)
    sessions = _migrated_sessions(settings)

    async def complete() -> Any:
        try:
            return await complete_task(lambda: _client(settings), sessions, rules, task_id, assignee, outcome, note)
        except (TaskError, NoSuchTask, TaskConflict, LoanUnreachable) as error:
            return error

    done = _run(complete(), f"task {task_id}")
    if isinstance(done, Exception):
        _task_problem(done)
    typer.echo(json.dumps(done.as_dict(), indent=2, ensure_ascii=False))
    _finish(0)


if __name__ == "__main__":
    try:
        app()
    except SystemExit as exit_:
        code = exit_.code
        _finish(code if isinstance(code, int) else (0 if code is None else 1))
    except KeyboardInterrupt:
        _finish(130)
    _finish(0)
