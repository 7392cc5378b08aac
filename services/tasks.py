"""Agent tasks from outside the workflow: listing, claiming and completing
them. Shared by the gateway (`GET /tasks`, `POST /tasks/{id}/claim`,
`POST /tasks/{id}/complete`) and the command line (`starter.py tasks`).

The status itself is db/tasks.py's. What completing a task with an outcome
sends to the loan is data, config/tasks.toml (`load_task_rules`): per kind,
its outcomes and the signals and updates each sends, in order.

Completing is done in this order, so a task is never done while its loan
was not told:

1. the completion is checked (the task exists, the agent may complete it,
   the outcome is one of the kind's); an open task is claimed by the agent
   first (its own transaction and audit entry), so two agents cannot both
   complete it and both signal the loan;
2. the outcome's signals and updates are sent to the loan's workflow, in
   order; if one fails (no such workflow, Temporal unreachable, an update
   rejected) the task stays claimed and the error says which;
3. only then is the task marked done, with its audit entry.

Completing again after a failure in 2 or 3 sends the entries again: each is
safe to repeat (a second `verification_sent` changes nothing, a second
`dispute_resolved` or `complaint_resolved` is rejected by the workflow and
kept in its `rejected_signals`). The same completion once done answers
`duplicate` and sends nothing.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from db import tasks as store
from db.tasks import KINDS, NoSuchTask, TaskConflict, TaskError, UnknownOutcome
from dunning import contract
from dunning.inputs import ID_PATTERN
from services.visits import NoSuchLoan, UpdateRejected, UpdateTimedOut, execute_update

__all__ = [
    "Completion", "LoanUnreachable", "NoSuchTask", "Send", "TaskConflict", "TaskConfigError", "TaskError",
    "TaskRules", "UnknownOutcome", "claim_task", "complete_task", "list_tasks", "load_task_rules", "rules_path",
]

SIGNALS = frozenset(value for name, value in vars(contract).items() if name.startswith("SIGNAL_"))
UPDATES = frozenset(contract.UPDATES)
PLACEHOLDERS = frozenset({"$task_ref", "$subject", "$assignee", "$loan_id"})
CONDITIONS = frozenset({"verification_awaited"})
_OUTCOME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_ID = re.compile(ID_PATTERN)


class TaskConfigError(ValueError):
    """config/tasks.toml is not what it must be; the message names the file and the key."""


class LoanUnreachable(Exception):
    """The loan's workflow did not take what the outcome sends: there is none
    open (the loan closed, or never started), or it rejected an update, or
    gave no answer in time. The task is not done."""

    def __init__(self, message: str, *, retry: bool = False) -> None:
        super().__init__(message)
        self.message, self.retry = message, retry


@dataclass(frozen=True)
class Send:
    """One signal or update an outcome sends to the loan."""

    kind: str  # signal | update
    name: str
    payload: Mapping[str, Any]
    when: str | None = None

    def uses(self, placeholder: str) -> bool:
        return placeholder in self.payload.values()


@dataclass(frozen=True)
class TaskRules:
    """Per kind, its outcomes and what each sends (config/tasks.toml)."""

    outcomes: Mapping[str, Mapping[str, tuple[Send, ...]]]

    def allowed(self, kind: str) -> tuple[str, ...]:
        return tuple(self.outcomes.get(kind, {}))

    def sends(self, kind: str, outcome: str) -> tuple[Send, ...]:
        return self.outcomes[kind][outcome]

    def needs_subject(self, kind: str) -> bool:
        """A kind whose outcomes send the task's subject needs one to be opened."""
        return any(send.uses("$subject") for sends in self.outcomes.get(kind, {}).values() for send in sends)


def rules_path(config_dir: Path) -> Path:
    return Path(config_dir) / "tasks.toml"


def load_task_rules(path: Path) -> TaskRules:
    """config/tasks.toml, checked: every kind of db/tasks.py and no other,
    outcomes named in lower case, each entry a known signal or update with a
    table payload. TaskConfigError names the file and the key."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise TaskConfigError(f"{path}: cannot be read ({error.strerror or error})") from None
    except tomllib.TOMLDecodeError as error:
        raise TaskConfigError(f"{path}: not valid TOML: {error}") from None
    kinds = data.get("kinds")
    if not isinstance(kinds, dict):
        raise TaskConfigError(f"{path}: kinds: a table of task kinds is required")
    unknown, missing = sorted(set(kinds) - set(KINDS)), [kind for kind in KINDS if kind not in kinds]
    if unknown:
        raise TaskConfigError(f"{path}: kinds.{unknown[0]}: not a task kind (one of {', '.join(KINDS)})")
    if missing:
        raise TaskConfigError(f"{path}: kinds.{missing[0]}: missing (every task kind needs its outcomes)")
    outcomes: dict[str, dict[str, tuple[Send, ...]]] = {}
    for kind in KINDS:
        table = kinds[kind].get("outcomes") if isinstance(kinds[kind], dict) else None
        where = f"{path}: kinds.{kind}.outcomes"
        if not isinstance(table, dict) or not table:
            raise TaskConfigError(f"{where}: a table of at least one outcome is required")
        outcomes[kind] = {}
        for outcome, entries in table.items():
            if not _OUTCOME.match(outcome):
                raise TaskConfigError(f"{where}.{outcome}: an outcome is a lower-case code (a-z, 0-9, _; at most 32)")
            if not isinstance(entries, list):
                raise TaskConfigError(f"{where}.{outcome}: must be a list of signals and updates ([] for none)")
            outcomes[kind][outcome] = tuple(_send(f"{where}.{outcome}[{n}]", entry) for n, entry in enumerate(entries))
    return TaskRules(outcomes)


def _send(where: str, entry: Any) -> Send:
    if not isinstance(entry, dict):
        raise TaskConfigError(f"{where}: must be a table {{ signal = ..., payload = {{...}} }}")
    extra = sorted(set(entry) - {"signal", "update", "payload", "when"})
    if extra:
        raise TaskConfigError(f"{where}.{extra[0]}: not a key of an entry (signal, update, payload, when)")
    if ("signal" in entry) == ("update" in entry):
        raise TaskConfigError(f"{where}: names exactly one of signal or update")
    kind = "signal" if "signal" in entry else "update"
    name, known = entry[kind], SIGNALS if kind == "signal" else UPDATES
    if name not in known:
        raise TaskConfigError(f"{where}.{kind}: {name!r} is not one of the contract's {kind}s ({', '.join(sorted(known))})")
    payload = entry.get("payload", {})
    if not isinstance(payload, dict):
        raise TaskConfigError(f"{where}.payload: must be a table")
    for key, value in payload.items():
        if isinstance(value, str) and value.startswith("$") and value not in PLACEHOLDERS:
            raise TaskConfigError(f"{where}.payload.{key}: {value!r} is not one of {', '.join(sorted(PLACEHOLDERS))}")
    when = entry.get("when")
    if when is not None and when not in CONDITIONS:
        raise TaskConfigError(f"{where}.when: {when!r} is not one of {', '.join(sorted(CONDITIONS))}")
    return Send(kind, name, dict(payload), when)


# ------------------------------------------------------------------ listing and claiming


def list_tasks(sessions: sessionmaker[Session], **filters: Any) -> list[dict]:
    """Tasks matching the filters (status, kind, loan_id, borrower_id,
    assignee, limit), most urgent first. TaskError names a bad filter."""
    with sessions() as db:
        return [store.as_dict(row) for row in store.listing(db, **filters)]


def claim_task(sessions: sessionmaker[Session], task_id: int, assignee: str, now: datetime | None = None) -> dict:
    """The task claimed by `assignee`: NoSuchTask, TaskConflict (another
    agent's, or done), TaskError (a bad assignee)."""
    with sessions.begin() as db:
        row, _ = store.claim(db, task_id, assignee, now)
        return store.as_dict(row)


# ------------------------------------------------------------------ completing


@dataclass(frozen=True)
class Completion:
    task: dict
    sent: list[dict] = field(default_factory=list)  # [{"signal" | "update": name}], in order
    duplicate: bool = False  # done before with the same outcome by the same agent: nothing sent

    def as_dict(self) -> dict:
        return {"task": self.task, "sent": self.sent, "duplicate": self.duplicate}


def task_ref(task: Mapping[str, Any]) -> str:
    key = str(task["key"])
    return key if _ID.fullmatch(key) else f"task-{task['id']}"


def _payload(send: Send, task: Mapping[str, Any], assignee: str) -> dict:
    values = {"$task_ref": task_ref(task), "$subject": task.get("subject") or "", "$assignee": assignee,
              "$loan_id": task["loan_id"]}
    return {key: values.get(value, value) if isinstance(value, str) else value for key, value in send.payload.items()}


async def _verification_awaited(client: Client, workflow_id: str) -> bool:
    status = await client.get_workflow_handle(workflow_id).query(contract.QUERY_STATUS)
    notice = status.get("validation_notice") if isinstance(status, dict) else None
    return bool(isinstance(notice, dict) and notice.get("verification_required") and not notice.get("verification_sent_on"))


async def _check_approver(client: Client, task: Mapping[str, Any], assignee: str) -> None:
    """A settlement's approver is not the agent who proposed it: TaskError
    naming `assignee` (the workflow would refuse the decision too, and the
    task would be done with the settlement still pending)."""
    from temporalio.client import WorkflowQueryFailedError
    from temporalio.service import RPCError

    try:
        status = await client.get_workflow_handle(task["workflow_id"]).query(contract.QUERY_STATUS)
    except (RPCError, WorkflowQueryFailedError):
        return  # no loan to ask: delivering says so (and the loan itself refuses its own agent)
    settlement = status.get("settlement") if isinstance(status, dict) else None
    if (
        isinstance(settlement, dict) and str(settlement.get("settlement_no")) == str(task.get("subject") or "")
        and settlement.get("agent_id") == assignee
    ):
        raise TaskError(
            "assignee", f"{assignee} proposed settlement {settlement['settlement_no']}: an approver must be another agent"
        )


async def _deliver(client: Client, task: Mapping[str, Any], sends: tuple[Send, ...], assignee: str) -> list[dict]:
    from temporalio.service import RPCError, RPCStatusCode

    workflow_id, sent = task["workflow_id"], []
    for send in sends:
        payload = _payload(send, task, assignee)
        try:
            if send.when == "verification_awaited" and not await _verification_awaited(client, workflow_id):
                continue
            if send.kind == "signal":
                await client.get_workflow_handle(workflow_id).signal(send.name, payload)
                sent.append({"signal": send.name})
            else:
                answer = await execute_update(client, task["loan_id"], send.name, payload)
                sent.append({"update": send.name, "answer": answer})
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                raise LoanUnreachable(f"loan {task['loan_id']}: no open workflow {workflow_id}"
                                      + _after(sent) + "; the task is not done (complete it `cancelled` if the loan closed)") from None
            raise
        except NoSuchLoan:
            raise LoanUnreachable(f"loan {task['loan_id']}: no open workflow {workflow_id}" + _after(sent)
                                  + "; the task is not done (complete it `cancelled` if the loan closed)") from None
        except UpdateRejected as error:
            raise LoanUnreachable(f"{send.name} rejected: {error.message}" + _after(sent) + "; the task is not done") from None
        except UpdateTimedOut as error:
            raise LoanUnreachable(f"{error}" + _after(sent) + "; the task is not done", retry=True) from None
    return sent


def _after(sent: list[dict]) -> str:
    names = [next(iter(item.values())) for item in sent]
    return f" (after {', '.join(names)} went)" if names else ""


async def complete_task(
    client: Client | Callable[[], Awaitable[Client]] | None,
    sessions: sessionmaker[Session],
    rules: TaskRules,
    task_id: int,
    assignee: str,
    outcome: str,
    note: str | None = None,
    now: datetime | None = None,
) -> Completion:
    """Complete the task with `outcome`: check, claim an open one for
    `assignee`, send what the outcome sends (config/tasks.toml), then mark
    it done (see the module's docstring). Raises NoSuchTask, TaskError /
    UnknownOutcome (a bad field: the allowed outcomes listed), TaskConflict
    (another agent's, or done with another outcome), LoanUnreachable (the
    loan did not take it: the task is not done) and Temporal's RPC errors
    (unreachable: the task is not done). `client` is a Temporal client, or an
    async function that returns one (called only when the outcome sends
    something), or None for an outcome that sends nothing."""
    store.check_note(note)
    with sessions() as db:
        row = store.require(db, task_id)
        allowed = rules.allowed(row.kind)
        if store.check_completion(row, assignee, outcome, allowed):
            return Completion(store.as_dict(row), [], duplicate=True)
        status, before = row.status, store.as_dict(row)
    if any(send.name == contract.SIGNAL_SETTLEMENT_DECISION for send in rules.sends(before["kind"], outcome)):
        # Checked before the task is claimed, so the proposing agent's attempt
        # leaves it open for another (issue 18, item 4).
        if client is None:
            raise ValueError("a Temporal client is needed to complete this outcome")
        if not hasattr(client, "get_workflow_handle"):
            client = await client()
        await _check_approver(client, before, assignee)
    if status == store.OPEN:
        claim_task(sessions, task_id, assignee, now)
    with sessions() as db:
        task = store.as_dict(store.require(db, task_id))
    sends = rules.sends(task["kind"], outcome)
    if any(send.uses("$subject") for send in sends) and not task["subject"]:
        raise TaskError("outcome", f"{outcome} sends the task's subject, and task {task_id} has none; complete it `cancelled`")
    sent: list[dict] = []
    if sends:
        if client is None:
            raise ValueError("a Temporal client is needed to complete this outcome")
        if not hasattr(client, "get_workflow_handle"):  # a factory: connect only when something is sent
            client = await client()
        sent = await _deliver(client, task, sends, assignee)
    with sessions.begin() as db:
        row, changed = store.complete(db, task_id, assignee, outcome, allowed, note,
                                      (now or datetime.now(timezone.utc)))
        return Completion(store.as_dict(row), sent, duplicate=not changed)
