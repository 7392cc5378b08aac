"""The borrower's own requests become actions (issue 17, item 3): an inbound
SMS (`handle_sms`) and the pay page's "this is wrong" form
(`dispute_from_pay_page`). The gateway's routes only read the request and
write the answer.

Every request is first written to `inbound_messages` (db/inbound.py), keyed
by the provider's message id, and only then acted on, so:

- a Twilio retry or replay of the same MessageSid finds the row and acts no
  more (the database's unique key decides, across gateway processes);
- nothing is dropped: a message that asks for nothing the service knows, or
  comes from a number the directory does not have, or whose action failed
  (Temporal unreachable), becomes an `inbound_request` task for an agent.

What reaches a loan's workflow is ids and codes only (a signal's payload is
`{"channel": "sms"}`, `{}`, `{"reason": "sms_dispute"}`); the text, the
number and the pay page's note stay in the database, and a task points at
its message by `subject` `inbound:<id>`. Logs mask the number.

Tasks about no one loan (an unknown number, a borrower with several open
loans) carry `none` as their loan id and workflow id, and `none` as the
borrower id when the number matched no borrower: the agent_tasks table
needs a value, and no loan or borrower is called that.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from db import inbound as messages
from db import tasks as agent_tasks
from db.models import Borrower, Loan
from dunning import contract
from dunning.masking import mask
from dunning.pay_options import nothing_to_pay
from services.inbound_keywords import Keywords

__all__ = [
    "CALLBACK_DUE_HOURS", "DISPUTE_CATEGORIES", "NONE", "Handled", "InboundError", "Lender", "LoanPort", "NoSuchLoan",
    "PayPageDispute", "callback_task", "dispute_from_pay_page", "handle_sms",
]

log = structlog.get_logger(__name__)

# Keypad 3's callback (keypad_agent.ivr.j2) and the AGENT reply both say
# "within one working day".
CALLBACK_DUE_HOURS = 24
REQUEST_DUE_HOURS = 24
NONE = "none"  # the loan, workflow or borrower id of a task about none (above)
UNRECOGNISED = "unrecognised"
SMS_DISPUTE_REASON = "sms_dispute"
# The pay page form's reason categories, sent as the dispute's reason
# `pay_page:<category>` (a code: the borrower's note stays in the database).
DISPUTE_CATEGORIES = ("amount_wrong", "already_paid", "not_my_loan", "identity_theft", "other")
NOTE_MAX_CHARS = 500

Signal = Callable[[str, str, dict], Awaitable[bool]]
Status = Callable[[str], Awaitable["dict | None"]]


class InboundError(ValueError):
    """A form value that cannot be taken; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


class NoSuchLoan(LookupError):
    pass


@dataclass(frozen=True)
class LoanPort:
    """How the service reaches the loans: `signal(workflow_id, name, payload)`,
    True if delivered, False for no open workflow; `status(loan_id)`, the
    status query's answer or None. The gateway passes its own helpers."""

    signal: Signal
    status: Status


@dataclass(frozen=True)
class Lender:
    name: str
    contact: str = ""


@dataclass(frozen=True)
class Handled:
    """What became of an inbound SMS: the reply to send back (None: none)."""

    message_id: int | None
    action: str
    result: str
    reply: str | None = None
    task_id: int | None = None
    duplicate: bool = False


@dataclass(frozen=True)
class _Sender:
    borrower_ids: list[str]
    language: str | None
    loans: list[str] = field(default_factory=list)

    @property
    def borrower_id(self) -> str | None:
        return self.borrower_ids[0] if len(self.borrower_ids) == 1 else None


@dataclass(frozen=True)
class _Done:
    result: str
    reply: str | None = None  # the name of a reply (config/inbound_keywords.toml)
    task_id: int | None = None


# ------------------------------------------------------------------ tasks


def callback_task(key: str, loan_id: str, borrower_id: str, workflow_id: str, note: str,
                  subject: str | None = None) -> agent_tasks.NewTask:
    """A `callback` task, due within a working day: keypad 3 on a call, AGENT by SMS."""
    return agent_tasks.NewTask(key=key, kind="callback", loan_id=loan_id, borrower_id=borrower_id,
                               workflow_id=workflow_id, due_in_hours=CALLBACK_DUE_HOURS, note=note, subject=subject)


def _task(sessions: sessionmaker[Session], message_id: int, kind: str, who: _Sender, note: str) -> int:
    """The message's task of `kind` (one per message and kind, by key), about
    its one loan if it concerned exactly one."""
    loan_id = who.loans[0] if len(who.loans) == 1 else NONE
    workflow_id = contract.workflow_id_for(loan_id) if loan_id != NONE else NONE
    borrower_id = who.borrower_id or NONE
    key, subject = f"inbound/{message_id}/{kind}", f"inbound:{message_id}"
    if kind == "callback":
        new = callback_task(key, loan_id, borrower_id, workflow_id, note, subject)
    else:
        new = agent_tasks.NewTask(key=key, kind=kind, loan_id=loan_id, borrower_id=borrower_id, workflow_id=workflow_id,
                                  due_in_hours=REQUEST_DUE_HOURS, note=note, subject=subject)
    with sessions.begin() as db:
        row, _ = agent_tasks.create(db, new)
        return row.id


def _request(sessions: sessionmaker[Session], message_id: int, who: _Sender, note: str, reply: str | None = None) -> _Done:
    task_id = _task(sessions, message_id, "inbound_request", who, note)
    return _Done(f"inbound_request task {task_id}", reply, task_id)


# ------------------------------------------------------------------ inbound SMS


def _who_sent(db: Session, sender: str) -> _Sender:
    """The borrowers whose number it is, and their open loans (the directory's
    `loans` rows without an outcome), in loan id order."""
    if not sender:
        return _Sender([], None)
    rows = db.execute(select(Borrower.borrower_id, Borrower.language).where(Borrower.phone == sender)
                      .order_by(Borrower.borrower_id)).all()
    ids = [row.borrower_id for row in rows]
    if not ids:
        return _Sender([], None)
    loans = list(db.scalars(select(Loan.loan_id).where(Loan.borrower_id.in_(ids), Loan.outcome.is_(None))
                            .order_by(Loan.loan_id)))
    return _Sender(ids, rows[0].language if len(rows) == 1 else None, loans)


async def handle_sms(
    sessions: sessionmaker[Session], keywords: Keywords, loans: LoanPort, lender: Lender,
    message_sid: str, sender: str, body: str,
) -> Handled:
    """Store the message, then do what it asks (config/inbound_keywords.toml),
    once per MessageSid: a repeat answers `duplicate` and does nothing. The
    answer's `reply` is the text to send back, in the keyword's language."""
    text = body.strip()
    with sessions() as db:
        who = _who_sent(db, sender)
    match = keywords.match(text, who.language)
    action = match.action if match else UNRECOGNISED
    # Without a MessageSid (Twilio always sends one) a message cannot be told
    # from its retry: it is kept, and acted on, each time.
    key = messages.message_key(message_sid) if message_sid else f"no-sid:{uuid.uuid4().hex}"
    new = messages.NewMessage(key=key, channel="sms", sender=sender or None, borrower_id=who.borrower_id,
                              loan_ids=who.loans, body=text, action=action, language=match.language if match else None)
    message_id = _receive(sessions, new)
    if message_id is None:
        log.info("inbound_sms_duplicate", message_sid=message_sid[:64], sender=mask(sender))
        return Handled(None, action, "duplicate", duplicate=True)
    try:
        done = await _act(sessions, loans, message_id, action, who)
        status = messages.DONE
    except Exception as error:  # Temporal unreachable, a query failed: a person takes it from here
        log.warning("inbound_sms_action_failed", message_id=message_id, action=action, error=type(error).__name__)
        done = _request(sessions, message_id, who, f"sms:{action}:failed")
        done = _Done(f"{action} failed ({type(error).__name__}); {done.result}", None, done.task_id)
        status = messages.FAILED
    with sessions.begin() as db:
        messages.finish(db, message_id, status=status, result=done.result, task_id=done.task_id)
    reply = keywords.reply(match.language, done.reply, lender.name, lender.contact) if match and done.reply else None
    log.info("inbound_sms", message_id=message_id, message_sid=message_sid[:64], sender=mask(sender), action=action,
             language=match.language if match else None, borrower_id=who.borrower_id, loans=who.loans,
             result=done.result, replied=reply is not None)
    return Handled(message_id, action, done.result, reply, done.task_id)


def _receive(sessions: sessionmaker[Session], new: messages.NewMessage) -> int | None:
    """The new row's id, or None if the key was written before (a repeat)."""
    try:
        with sessions.begin() as db:
            row = messages.receive(db, new)
            return row.id if row is not None else None
    except IntegrityError:  # the same message, written by a concurrent delivery
        return None


async def _act(sessions: sessionmaker[Session], loans: LoanPort, message_id: int, action: str, who: _Sender) -> _Done:
    if not who.borrower_ids:
        # A number the directory does not have: nothing to act on, but a
        # person reads it. HELP still gets its answer (it names no debt).
        return _request(sessions, message_id, who, f"sms:{action}:unknown_sender", "help" if action == "help" else None)
    if action == "stop":
        sent = await _signal_each(loans, who.loans, contract.SIGNAL_OPT_OUT, {"channel": "sms"})
        return _Done(f"opt_out sms: {', '.join(sent)}" if sent else "opt_out sms: no open loan")
    if action == "help":
        return _Done("help reply", "help")
    if action == "pay":
        sent = await _signal_each(loans, who.loans, contract.SIGNAL_SEND_PAY_LINK, {})
        if not sent:  # no open loan to send a link for: a person looks
            return _request(sessions, message_id, who, "sms:pay:no_open_loan")
        return _Done(f"send_pay_link: {', '.join(sent)}", "pay")
    if action == "dispute":
        return await _dispute(sessions, loans, message_id, who)
    if action == "agent":
        task_id = _task(sessions, message_id, "callback", who, "sms:agent")
        return _Done(f"callback task {task_id}", "agent", task_id)
    return _request(sessions, message_id, who, "sms:unrecognised")


async def _signal_each(loans: LoanPort, loan_ids: list[str], name: str, payload: dict) -> list[str]:
    """The signal to each loan's workflow; the loans that took it."""
    return [loan_id for loan_id in loan_ids if await loans.signal(contract.workflow_id_for(loan_id), name, dict(payload))]


async def _dispute(sessions: sessionmaker[Session], loans: LoanPort, message_id: int, who: _Sender) -> _Done:
    """DISPUTE: a `dispute` on the one open loan (the workflow opens its own
    dispute_verification task); with several, or none, a person asks which."""
    if len(who.loans) > 1:
        return _request(sessions, message_id, who, "sms:dispute:which_loan", "dispute_which_loan")
    if not who.loans:
        return _request(sessions, message_id, who, "sms:dispute:no_open_loan")
    [loan_id] = who.loans
    outcome = await _raise_dispute(loans, loan_id, SMS_DISPUTE_REASON)
    if outcome == "not_open":
        return _request(sessions, message_id, who, "sms:dispute:no_open_loan")
    return _Done(f"dispute {outcome}: {loan_id}", "dispute")


async def _raise_dispute(loans: LoanPort, loan_id: str, reason: str, status: dict | None = None) -> str:
    """`sent`, `already_open` (a second dispute would open a second
    verification task: not sent) or `not_open` (no open workflow)."""
    status = status if status is not None else await loans.status(loan_id)
    if status is None:
        return "not_open"
    if status.get("disputed"):
        return "already_open"
    delivered = await loans.signal(contract.workflow_id_for(loan_id), contract.SIGNAL_DISPUTE, {"reason": reason})
    return "sent" if delivered else "not_open"


# ------------------------------------------------------------------ the pay page's form


@dataclass(frozen=True)
class PayPageDispute:
    """`outcome`: `sent` (collection pauses; the workflow opens its
    dispute_verification task), `already_open` (a dispute was open: nothing
    sent again), `closed` (nothing left to dispute), or `failed` (an agent
    task holds it: `task_id`)."""

    message_id: int | None
    outcome: str
    task_id: int | None = None


def check_dispute_form(category: object, note: object) -> tuple[str, str | None]:
    """(category, note or None); InboundError naming the field."""
    if not isinstance(category, str) or category not in DISPUTE_CATEGORIES:
        raise InboundError("reason", f"choose one of {', '.join(DISPUTE_CATEGORIES)}")
    if note is None:
        return category, None
    if not isinstance(note, str) or len(note.strip()) > NOTE_MAX_CHARS:
        raise InboundError("note", f"at most {NOTE_MAX_CHARS} characters")
    if "\x00" in note:  # no database stores it as text
        raise InboundError("note", "must not contain NUL characters")
    return category, note.strip() or None


async def dispute_from_pay_page(
    sessions: sessionmaker[Session], loans: LoanPort, loan_id: str, category: object, note: object,
) -> PayPageDispute:
    """The pay page's "this is wrong" form: the request stored (the category
    and the note, in the database only), then `dispute` `{"reason":
    "pay_page:<category>"}` to the loan unless one is open already. The
    workflow opens the dispute_verification task itself: no second task here.
    InboundError names a bad field; NoSuchLoan, no open workflow."""
    category, text = check_dispute_form(category, note)
    status = await loans.status(loan_id)
    if status is None:
        raise NoSuchLoan(loan_id)
    if nothing_to_pay(status):
        return PayPageDispute(None, "closed")
    borrower_id = status.get("borrower_id") if isinstance(status.get("borrower_id"), str) else None
    who = _Sender([borrower_id] if borrower_id else [], None, [loan_id])
    new = messages.NewMessage(key=f"pay_page:{uuid.uuid4().hex}", channel="pay_page", borrower_id=borrower_id,
                              loan_ids=[loan_id], body=text, action="dispute", category=category)
    message_id = _receive(sessions, new)
    if message_id is None:  # a fresh random key is never a repeat
        raise RuntimeError("the pay page's dispute could not be stored")
    try:
        outcome = await _raise_dispute(loans, loan_id, f"pay_page:{category}", status)
    except Exception as error:  # Temporal unreachable: the borrower's request is not lost
        log.warning("pay_page_dispute_failed", loan_id=loan_id, error=type(error).__name__)
        done = _request(sessions, message_id, who, "pay_page:dispute:failed")
        with sessions.begin() as db:
            messages.finish(db, message_id, status=messages.FAILED, result=f"dispute failed ({type(error).__name__}); "
                            + done.result, task_id=done.task_id)
        return PayPageDispute(message_id, "failed", done.task_id)
    if outcome == "not_open":
        with sessions.begin() as db:
            messages.finish(db, message_id, status=messages.FAILED, result="dispute: no open workflow")
        raise NoSuchLoan(loan_id)
    with sessions.begin() as db:
        messages.finish(db, message_id, status=messages.DONE, result=f"dispute {outcome}: {loan_id} (pay_page:{category})")
    log.info("pay_page_dispute", loan_id=loan_id, category=category, outcome=outcome, message_id=message_id,
             note=text is not None)
    return PayPageDispute(message_id, outcome)
