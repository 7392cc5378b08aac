"""SQLAlchemy 2.0 models.

Personal data (names, phones, e-mail addresses) lives here, in `borrowers`,
and in the rendered bodies of `contacts`; it never goes into Temporal.
Each record an activity writes has a unique key, so a retried activity finds
the row it wrote before instead of writing (or sending) a second one.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

from sqlalchemy import Date, ForeignKey, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from db.types import Money, UTCDateTime


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class Borrower(Base):
    """The borrower directory: contact details and preferences."""

    __tablename__ = "borrowers"

    borrower_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(32))  # E.164
    email: Mapped[str | None] = mapped_column(String(254))
    push_token: Mapped[str | None] = mapped_column(String(512))
    language: Mapped[str] = mapped_column(String(16))  # zh_CN, zh_TW, en
    time_zone: Mapped[str] = mapped_column(String(64))  # IANA zone
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class Loan(Base):
    __tablename__ = "loans"

    loan_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    borrower_id: Mapped[str] = mapped_column(String(64), ForeignKey("borrowers.borrower_id"), index=True)
    amount_due: Mapped[Decimal] = mapped_column(Money())
    currency: Mapped[str] = mapped_column(String(3))
    due_date: Mapped[date] = mapped_column(Date())
    policy: Mapped[str] = mapped_column(String(64))
    workflow_id: Mapped[str] = mapped_column(String(128), unique=True)
    stage: Mapped[str] = mapped_column(String(32), default="pending")
    amount_paid: Mapped[Decimal] = mapped_column(Money(), default=Decimal("0"))
    outcome: Mapped[str | None] = mapped_column(String(32))
    placed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Contact(Base):
    """Every contact, and the outbox: the row is written (status `pending`)
    before the provider is called, then marked `sent` or `failed`."""

    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(255), unique=True)  # workflow id + step
    workflow_id: Mapped[str] = mapped_column(String(128), index=True)
    loan_id: Mapped[str] = mapped_column(String(64), index=True)
    borrower_id: Mapped[str] = mapped_column(String(64), index=True)
    stage: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(16))
    template: Mapped[str] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(16))
    recipient: Mapped[str | None] = mapped_column(String(512))  # phone, e-mail or push token
    subject: Mapped[str | None] = mapped_column(String(300))
    body_text: Mapped[str] = mapped_column(Text(), default="")
    body_html: Mapped[str | None] = mapped_column(Text())
    status: Mapped[str] = mapped_column(String(32), default="pending")  # pending|sent|failed|skipped_no_address
    provider: Mapped[str | None] = mapped_column(String(32))
    provider_message_id: Mapped[str | None] = mapped_column(String(128))
    error: Mapped[str | None] = mapped_column(Text())
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Payment(Base):
    """Every repayment signal the workflow received, applied or not. A payment
    id can appear twice: once unapplied (say, in the wrong currency) and once
    applied, when the payment service sends it again corrected."""

    __tablename__ = "payments"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(255), unique=True)
    loan_id: Mapped[str] = mapped_column(String(64), index=True)
    workflow_id: Mapped[str] = mapped_column(String(128))
    payment_id: Mapped[str] = mapped_column(String(128))
    amount: Mapped[str] = mapped_column(String(64))  # as received; may be unparseable
    currency: Mapped[str] = mapped_column(String(16))
    paid_at: Mapped[str] = mapped_column(String(64))  # as received
    applied: Mapped[bool] = mapped_column(default=False)
    reason: Mapped[str | None] = mapped_column(Text())
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class BureauRecord(Base):
    __tablename__ = "bureau_records"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(255), unique=True)
    loan_id: Mapped[str] = mapped_column(String(64), index=True)
    workflow_id: Mapped[str] = mapped_column(String(128))
    days_past_due: Mapped[int]
    balance: Mapped[Decimal] = mapped_column(Money())
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(32), default="open")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class LegalCase(Base):
    __tablename__ = "legal_cases"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(255), unique=True)
    loan_id: Mapped[str] = mapped_column(String(64), index=True)
    workflow_id: Mapped[str] = mapped_column(String(128))
    days_past_due: Mapped[int]
    outstanding: Mapped[Decimal] = mapped_column(Money())
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(32), default="opened")
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
