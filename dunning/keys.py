"""Every idempotency key and step name, built and parsed in one place.

A record's key is what makes its writer idempotent: an activity retried, or a
worker restarted mid-write, writes the same key and the database keeps one
row. The keys are part of what the golden histories recorded, so a key's
shape never changes for a running loan: the builders below produce exactly
the strings the workflow has always written.

Two kinds of name live here:
- *step keys* name a planned contact within a loan (`call/d7/0-voice`,
  `notice/validation/email`, `plan/2/i3/reminder`, `request/pay_link/1`);
- *record keys* name one row in the database, and start with the workflow id
  (`dunning-L-1/bureau/first`, `dunning-L-1/<run>/call/d7/0-voice`).
"""

from __future__ import annotations

import hashlib
import re

# --- step keys (the planner's occurrences) -----------------------------------

NOTICE_PREFIX = "notice/"
REQUEST_PREFIX = "request/"
# Deferred steps that survive entering a new stage (a notice still owed, a
# borrower's request still unanswered); the stage's own steps do not.
CARRIED_ACROSS_STAGES = (NOTICE_PREFIX, REQUEST_PREFIX)


def stage_step(stage: str, day: int, index: int, channel: str) -> str:
    """The index-th step of a stage's cadence on a day past due."""
    return f"{stage}/d{day}/{index}-{channel}"


_STAGE_STEP = re.compile(r"^(?P<stage>[a-z_]+)/d(?P<day>-?\d+)/(?P<index>\d+)-(?P<channel>[a-z]+)$")


def parse_stage_step(step: str) -> tuple[str, int, int, str] | None:
    """(stage, day, index, channel) of a stage_step key; None for another kind."""
    match = _STAGE_STEP.match(step)
    if match is None:
        return None
    return match["stage"], int(match["day"]), int(match["index"]), match["channel"]


def validation_notice_step(channel: str) -> str:
    return f"{NOTICE_PREFIX}validation/{channel}"


def bureau_notice_step(channel: str) -> str:
    """The notice before the first bureau record, when the stage's own never went."""
    return f"{NOTICE_PREFIX}bureau/{channel}"


def pay_link_request_step(number: int) -> str:
    """The answer to the borrower's number-th request for a pay link."""
    return f"{REQUEST_PREFIX}pay_link/{number}"


def plan_confirmation_step(plan_no: int) -> str:
    return f"plan/{plan_no}/confirmation"


def installment_reminder_step(plan_no: int, installment: int) -> str:
    return f"plan/{plan_no}/i{installment}/reminder"


def settlement_confirmation_step(settlement_no: int) -> str:
    """An accepted settlement's confirmation (issue 18, item 4)."""
    return f"settlement/{settlement_no}/confirmation"


def settlement_reminder_step(settlement_no: int) -> str:
    """An accepted settlement's reminder before its pay_by date."""
    return f"settlement/{settlement_no}/reminder"


def hardship_step(day: int, index: int, channel: str) -> str:
    """The index-th step of the policy's hardship cadence on a day past due
    (issue 18, item 1); never read as a stage's step (parse_stage_step)."""
    return f"legal/hardship/d{day}/{index}-{channel}"


def cease_final_notice_step(channel: str) -> str:
    """The one final notice after a request to cease communication (issue
    18, item 1): a notice, so it is carried across stages and never superseded."""
    return f"{NOTICE_PREFIX}cease_final/{channel}"


_INSTALLMENT = re.compile(r"/i(\d+)(?:/|$)")


def installment_of(step: str) -> int | None:
    """The installment number an installment reminder's step names."""
    match = _INSTALLMENT.search(step)
    return int(match.group(1)) if match else None


def is_request_step(step: str) -> bool:
    return step.startswith(REQUEST_PREFIX)


def carried_across_stages(step: str) -> bool:
    return step.startswith(CARRIED_ACROSS_STAGES)


# --- record keys -------------------------------------------------------------


def task_key(workflow_id: str, kind: str, subject: str) -> str:
    """One agent task per loan, kind and subject (a dispute's number, a complaint id)."""
    return f"{workflow_id}/task/{kind}/{subject}"


def contact_key(workflow_id: str, first_run_id: str, step: str) -> str:
    """An outbox row: one message of one step. The first run's id keeps the key
    the same across continue-as-new, and different for a loan placed again."""
    return f"{workflow_id}/{first_run_id}/{step}"


def borrower_message_key(borrower_id: str, channel: str, local_day: str, group: int) -> str:
    """The outbox row of one message merged for several of a borrower's loans
    (issue 17, item 1): the borrower, the channel, their local day and the
    group's number. One slash only, so it is never read as a contact key
    (`step_of_contact_key` is None): a provider's report on it names no step."""
    return f"borrower-{borrower_id}/{channel}-{local_day}-{group}"


def step_of_contact_key(key: str) -> str | None:
    """The step a contact key names (what the workflow's contact_outcome
    signal carries), or None for a key that is not a contact key."""
    parts = key.split("/", 2)
    return parts[2] if len(parts) == 3 and parts[2] else None


def decision_key(workflow_id: str, first_run_id: str, number: int) -> str:
    return f"{workflow_id}/{first_run_id}/decision/{number}"


def stage_entry_key(workflow_id: str, stage: str) -> str:
    return f"{workflow_id}/{stage}"


def complaint_key(workflow_id: str, complaint_id: str) -> str:
    return f"{workflow_id}/complaint/{complaint_id}"


def visit_key(workflow_id: str, visit_id: str) -> str:
    return f"{workflow_id}/visit/{visit_id}"


def visit_outcome_key(workflow_id: str, visit_id: str) -> str:
    return f"{visit_key(workflow_id, visit_id)}/outcome"


def visit_id(loan_id: str, number: int) -> str:
    return f"{loan_id}-V{number}"


def legal_outcome_key(workflow_id: str, outcome: str) -> str:
    return f"{workflow_id}/legal/{outcome}"


def first_bureau_key(workflow_id: str) -> str:
    return f"{workflow_id}/bureau/first"


def bureau_record_key(workflow_id: str, number: int, kind: str) -> str:
    return f"{workflow_id}/bureau/{number}-{kind}"


def arrangement_family(kind: str) -> str:
    """Which record an arrangement event belongs to: a plan, a settlement
    (issue 18, item 4) or a promise."""
    if kind.startswith(("plan", "installment")):
        return "plan"
    return "settlement" if kind.startswith("settlement") else "promise"


def arrangement_event_key(workflow_id: str, kind: str, number: int, installment: int | None = None) -> str:
    suffix = f"/i{installment}" if installment else ""
    return f"{workflow_id}/{arrangement_family(kind)}/{number}/{kind}{suffix}"


def arrangement_record_key(event_key: str, kind: str) -> str:
    """The plan's or promise's own row, from one of its events' keys."""
    return event_key.split(f"/{kind}")[0]


def payment_key(workflow_id: str, payment_id: str) -> str:
    return f"{workflow_id}/payment/{payment_id}"


def unapplied_payment_key(workflow_id: str, signal_number: int, payment_id: str) -> str:
    return payment_key(workflow_id, f"unapplied-{signal_number}-{payment_id or 'no-id'}")


def reversal_key(workflow_id: str, payment_id: str) -> str:
    """A payment's reversal (issue 18, item 3): once per payment, across runs."""
    return f"{payment_key(workflow_id, payment_id)}/reversal"


def reopening_key(workflow_id: str, first_run_id: str) -> str:
    """A loan closed `repaid` reopened by a new run: once per run."""
    return f"{workflow_id}/{first_run_id}/reopened"


def audit_key(*parts: str) -> str:
    """An audit entry's idempotency key, within the column's 255 characters."""
    key = "/".join(parts)
    if len(key) <= 255:
        return key
    return f"{key[:180]}#{hashlib.sha256(key.encode()).hexdigest()}"
