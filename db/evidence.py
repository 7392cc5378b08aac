"""A loan's evidence, as rows: what a regulator or a court is shown.

Every contact (from the outbox: channel, template, outcome, the recipient
masked, and whether its message still matches the SHA-256 the audit log took
when it was sent) and every audit entry of the loan that is not a contact:
the compliance decisions with their rule and reason, operator actions,
payments (applied or not, and why), stage changes, complaints and the
closing; in time order. The evidence command (compliance/evidence.py) shows
them in the borrower's time zone; a legal case's file (activities/exports.py)
keeps them as JSON.
"""

from __future__ import annotations

import json

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.audit import message_digest
from db.models import AuditEntry, Contact
from db.outbox import scrub
from dunning.masking import mask

_NEVER = float("inf")


def evidence(session: Session, loan_id: str) -> list[dict]:
    """The loan's contacts and audit entries as rows, oldest first. Each row
    has `at` (an aware UTC datetime), `kind`, `channel`, `what` (the template,
    or the rule, stage or payment id), `outcome`, `detail`, `recipient`
    (masked, contacts only), `audit_seq` (None when there is no entry) and,
    for contacts, `key`, `provider_message_id` and `message_intact`."""
    entries = session.scalars(select(AuditEntry).where(AuditEntry.loan_id == loan_id).order_by(AuditEntry.seq)).all()
    contact_entries: dict[str, tuple[AuditEntry, dict]] = {}
    rows: list[dict] = []
    for entry in entries:
        payload = _payload(entry)
        if entry.kind == "contact":
            contact_entries[str(payload.get("key", ""))] = (entry, payload)  # the latest wins
            continue
        rows.append(_entry_row(entry, payload))

    contacts = session.scalars(select(Contact).where(Contact.loan_id == loan_id).order_by(Contact.id)).all()
    for contact in contacts:
        entry, payload = contact_entries.pop(contact.key, (None, {}))
        intact = None
        if entry is not None and payload.get("message_sha256"):
            intact = payload["message_sha256"] == message_digest(contact.subject, contact.body_text, contact.body_html)
        rows.append({
            "at": contact.sent_at or (entry.at if entry is not None else contact.created_at),
            "kind": "contact",
            "loan_id": loan_id,
            "channel": contact.channel,
            "what": contact.template,
            "stage": contact.stage,
            "outcome": contact.status,
            "detail": scrub(contact.error or "", contact.recipient)[:200],
            "recipient": mask(contact.recipient) if contact.recipient else "",
            "key": contact.key,
            "provider_message_id": contact.provider_message_id or "",
            "audit_seq": entry.seq if entry is not None else None,
            "message_intact": intact,
        })
    # A contact entry whose outbox row is gone: the log still proves it happened.
    for entry, payload in contact_entries.values():
        rows.append({
            "at": entry.at, "kind": "contact", "loan_id": loan_id, "channel": payload.get("channel", ""),
            "what": payload.get("template", ""), "stage": payload.get("stage", ""),
            "outcome": payload.get("status", ""), "detail": "outbox row missing; audit entry only",
            "recipient": "", "key": payload.get("key", ""), "provider_message_id": payload.get("provider_message_id", ""),
            "audit_seq": entry.seq, "message_intact": None,
        })
    rows.sort(key=lambda row: (row["at"], _NEVER if row["audit_seq"] is None else row["audit_seq"]))
    return rows


def _payload(entry: AuditEntry) -> dict:
    try:
        value = json.loads(entry.payload)
    except ValueError:
        return {"unreadable": entry.payload[:200]}
    return value if isinstance(value, dict) else {"value": value}


def _entry_row(entry: AuditEntry, p: dict) -> dict:
    kind = entry.kind
    channel, what, outcome, detail = str(p.get("channel", "")), "", "", ""
    if kind in ("decision", "operator"):
        what, outcome = str(p.get("rule", "")), "recorded"
        detail = str(p.get("reason", ""))
        if p.get("step_key"):
            detail += f" [step {p['step_key']}]"
    elif kind == "payment" and p.get("action") == "reversed":
        what, outcome = str(p.get("payment_id", "")), "reversed"
        detail = (f"{p.get('amount', '')} {p.get('currency', '')} ({p.get('reason', '')}): fees {p.get('fees', '')}, "
                  f"interest {p.get('interest', '')}, principal {p.get('principal', '')} owed again; "
                  f"returned-payment fee {p.get('returned_payment_fee', '')}")
        if p.get("reopened"):
            detail += "; reopened the loan"
    elif kind == "payment":
        what = str(p.get("payment_id", "")) or "(no id)"
        outcome = "applied" if p.get("applied") else "not applied"
        detail = f"{p.get('amount', '')} {p.get('currency', '')}, paid at {p.get('paid_at', '')}"
        if p.get("reason"):
            detail += f"; {p['reason']}"
    elif kind == "stage":
        what, outcome = str(p.get("stage", "")), "entered"
        detail = f"day {p.get('days_past_due', '')}, outstanding {p.get('outstanding', '')} {p.get('currency', '')}"
        if p.get("previous_stage"):
            detail += f", after {p['previous_stage']}"
        if p.get("record"):
            detail += f"; {str(p['record']).replace('_', ' ')} opened"
    elif kind == "complaint":
        what = str(p.get("complaint_id", ""))
        if p.get("action") == "resolved":
            outcome = f"resolved: {p.get('resolution', '')}"
            detail = f"reviewer {p.get('reviewer_id', '')}"
        else:
            outcome, detail = "opened", f"category {p.get('category', '')}; collection stopped for review"
    elif kind == "closing" and p.get("action") == "reopened":
        what, outcome = str(p.get("stage", "")), "reopened"
        detail = f"closed {p.get('previous_outcome', '')}; payment {p.get('payment_id', '')} reversed ({p.get('reason', '')})"
    elif kind == "closing":
        what, outcome = str(p.get("final_stage", "")), str(p.get("outcome", ""))
        detail = f"paid {p.get('amount_paid', '')}, outstanding {p.get('outstanding', '')}"
    else:
        detail = json.dumps(p, ensure_ascii=False, sort_keys=True)[:200]
    return {
        "at": entry.at, "kind": kind, "loan_id": entry.loan_id, "channel": channel, "what": what,
        "outcome": outcome, "detail": detail, "recipient": "", "audit_seq": entry.seq,
    }
