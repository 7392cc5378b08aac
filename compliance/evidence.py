"""Evidence for one loan, for a regulator or a court, shown as a table.

    rows = evidence(session, "L-1001")          # db/evidence.py
    print(format_evidence(rows, "Asia/Shanghai"))

The rows (db/evidence.py, which a legal case's file uses too) are every
contact, with its recipient masked and whether its message still matches the
SHA-256 the audit log took when it was sent, and every other audit entry of
the loan: decisions, operator actions, payments, stage changes, complaints
and the closing; in time order. Here they are shown in the borrower's time
zone.

The command is `python -m compliance.audit_cli evidence LOAN_ID`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Borrower, Contact, Loan


def loan_time_zone(session: Session, loan_id: str) -> str | None:
    """The borrower's zone from the directory, through the loan or its contacts."""
    borrower_id = session.scalar(select(Loan.borrower_id).where(Loan.loan_id == loan_id))
    if borrower_id is None:
        borrower_id = session.scalar(select(Contact.borrower_id).where(Contact.loan_id == loan_id).limit(1))
    if borrower_id is None:
        return None
    return session.scalar(select(Borrower.time_zone).where(Borrower.borrower_id == borrower_id))


def _zone(time_zone: str):
    try:
        return ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        return timezone.utc


def _local(at: datetime, zone) -> str:
    local = at.astimezone(zone)
    offset = local.strftime("%z")
    return f"{local:%Y-%m-%d %H:%M:%S} {offset[:3]}:{offset[3:]}"


def format_evidence(rows: list[dict], time_zone: str) -> str:
    """A plain-text table: one line per row, times in `time_zone`."""
    zone = _zone(time_zone)
    loan_ids = sorted({row["loan_id"] for row in rows})
    header = f"Evidence for loan {', '.join(loan_ids) or '(none)'}; times in {time_zone}"
    if not rows:
        return header + "\n(no contacts or audit entries)\n"
    columns = ("time", "kind", "channel", "template/rule", "outcome", "recipient", "audit", "detail")
    table = []
    for row in rows:
        detail = row.get("detail", "")
        if row["kind"] == "contact":
            extra = [f"stage {row.get('stage', '')}"]
            if row.get("provider_message_id"):
                extra.append(f"message id {row['provider_message_id']}")
            if row.get("message_intact") is True:
                extra.append("message matches its audited SHA-256")
            elif row.get("message_intact") is False:
                extra.append("MESSAGE CHANGED since it was audited")
            detail = "; ".join([*extra, detail] if detail else extra)
        table.append((
            _local(row["at"], zone), row["kind"], row.get("channel") or "-", row.get("what") or "-",
            row.get("outcome") or "-", row.get("recipient") or "-",
            f"#{row['audit_seq']}" if row.get("audit_seq") is not None else "-", detail,
        ))
    widths = [max(len(columns[i]), *(len(line[i]) for line in table)) for i in range(len(columns) - 1)]
    lines = [header, ""]
    for line in (columns, *table):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(line, widths)) + "  " + line[-1])
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["kind"]] = counts.get(row["kind"], 0) + 1
    lines += ["", "totals: " + ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items()))]
    return "\n".join(line.rstrip() for line in lines) + "\n"
