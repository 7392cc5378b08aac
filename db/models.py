"""SQLAlchemy 2.0 models.

Personal data (names, phones, e-mail addresses) lives here, in `borrowers`,
and in the rendered bodies of `contacts`; it never goes into Temporal.
Each record an activity writes has a unique key, so a retried activity finds
the row it wrote before instead of writing (or sending) a second one.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

from sqlalchemy import Date, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from db.types import Money, UTCDateTime


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class KeyedRecord:
    """The first columns of a loan's record that an activity writes once by
    its key (dunning/keys.py): payments, bureau records, legal cases, plans
    and promises."""

    # sort_order: first in each table, as the migrations made them.
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True, sort_order=-1)
    key: Mapped[str] = mapped_column(String(255), unique=True, sort_order=-1)
    loan_id: Mapped[str] = mapped_column(String(64), index=True, sort_order=-1)
    workflow_id: Mapped[str] = mapped_column(String(128), sort_order=-1)


class Borrower(Base):
    """The borrower directory: contact details and preferences."""

    __tablename__ = "borrowers"

    borrower_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(32))  # E.164
    email: Mapped[str | None] = mapped_column(String(254))
    push_token: Mapped[str | None] = mapped_column(String(512))
    language: Mapped[str] = mapped_column(String(16))  # zh_CN, zh_TW, en
    # An IANA zone; NULL when not known (placed with neither a zone nor a
    # phone that has one): each loan then takes its policy's default.
    time_zone: Mapped[str | None] = mapped_column(String(64))
    # The postal address (optional): letters, the validation notice, and the
    # zones its state spans (loaders/zones.py).
    address_line1: Mapped[str | None] = mapped_column(String(200))
    address_line2: Mapped[str | None] = mapped_column(String(200))
    city: Mapped[str | None] = mapped_column(String(100))
    region: Mapped[str | None] = mapped_column(String(64))
    postal_code: Mapped[str | None] = mapped_column(String(32))
    country: Mapped[str | None] = mapped_column(String(2))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    # Optional; the Metro 2 Base Segment identifies the consumer by one of
    # them (activities/exports.py). Nine digits; never logged, masked in audit.
    ssn: Mapped[str | None] = mapped_column(String(9))
    date_of_birth: Mapped[date | None] = mapped_column(Date())


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
    # For the KPIs (reports/kpi.py): the risk segment, the deepest day past
    # due reached (at stage changes and at the end) and what was charged or waived.
    segment: Mapped[str | None] = mapped_column(String(64))
    max_days_past_due: Mapped[int] = mapped_column(Integer, default=0)
    fees_charged: Mapped[Decimal] = mapped_column(Money(), default=Decimal("0"))
    interest_charged: Mapped[Decimal] = mapped_column(Money(), default=Decimal("0"))
    waived: Mapped[Decimal] = mapped_column(Money(), default=Decimal("0"))
    # What a closed loan's reopening starts from besides its rows (issue 18,
    # item 3; written by close_loan, NULL for loans closed before): JSON of
    # the clock anchor, where the charges stood, the contract terms and the
    # risk score (services/reversals.py reads it). `reopened_at`: the last
    # reopening (a payment reversed after the loan closed `repaid`).
    reopen_basis: Mapped[str | None] = mapped_column(Text())
    reopened_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The borrower's jurisdiction as placed (issue 18, item 2; ISO 3166:
    # US-CA, US-NY, CN): whose statute of limitations applies to the debt
    # (the profile's [limitations]); and the last payment before placing, for
    # a statute that runs from it. Read by prepare_loan, never sent to
    # Temporal; NULL: not given.
    jurisdiction: Mapped[str | None] = mapped_column(String(8))
    last_payment_date: Mapped[date | None] = mapped_column(Date())


class LoanItemization(Base):
    """The validation notice's debt information for a loan (12 CFR
    1006.34(c)(2)(iii)-(ix)), from the placement's `itemization` block: the
    amount on the itemization date and the interest, fees, payments and
    credits since. Written with the loan, never changed; never in Temporal."""

    __tablename__ = "loan_itemizations"

    loan_id: Mapped[str] = mapped_column(String(64), ForeignKey("loans.loan_id"), primary_key=True)
    itemization_date: Mapped[date] = mapped_column(Date())
    amount_on_itemization_date: Mapped[Decimal] = mapped_column(Money())
    interest_since: Mapped[Decimal] = mapped_column(Money())
    fees_since: Mapped[Decimal] = mapped_column(Money())
    payments_since: Mapped[Decimal] = mapped_column(Money())
    credits_since: Mapped[Decimal] = mapped_column(Money())
    current_creditor: Mapped[str] = mapped_column(String(200))
    creditor_on_itemization_date: Mapped[str | None] = mapped_column(String(200))
    account_number: Mapped[str | None] = mapped_column(String(64))  # whole; the notice shows the last four
    debt_type: Mapped[str] = mapped_column(String(32))  # consumer_financial_product | other
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Metro 2's Date Opened and Terms (Duration, Frequency) of the account
    # (optional; the bureau file's writer refuses an account without a date opened).
    date_opened: Mapped[date | None] = mapped_column(Date())
    terms_duration: Mapped[str | None] = mapped_column(String(3))
    terms_frequency: Mapped[str | None] = mapped_column(String(1))


class Contact(Base):
    """Every contact, and the outbox (db/outbox.py): the row is written
    before the provider is called, then marked with how the call ended."""

    __tablename__ = "contacts"
    # The per-borrower caps count one borrower's contacts on one channel
    # (db/outbox.py); its first column serves every lookup by borrower (migration 0022).
    __table_args__ = (Index("ix_contacts_borrower_channel", "borrower_id", "channel"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(255), unique=True)  # workflow id + step
    workflow_id: Mapped[str] = mapped_column(String(128), index=True)
    loan_id: Mapped[str] = mapped_column(String(64), index=True)
    borrower_id: Mapped[str] = mapped_column(String(64))
    stage: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(16))
    template: Mapped[str] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(16))
    recipient: Mapped[str | None] = mapped_column(String(512))  # phone, e-mail or push token
    subject: Mapped[str | None] = mapped_column(String(300))
    body_text: Mapped[str] = mapped_column(Text(), default="")
    body_html: Mapped[str | None] = mapped_column(Text())
    # The outbox's statuses and which may follow which: db/outbox.py, the
    # only writer of this column.
    status: Mapped[str] = mapped_column(String(32))
    provider: Mapped[str | None] = mapped_column(String(32))
    provider_message_id: Mapped[str | None] = mapped_column(String(128))
    error: Mapped[str | None] = mapped_column(Text())
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # A recorded call's recording at the provider (Twilio's RE... sid), its
    # length, and when the retention job deleted it (issue 16, item 7).
    recording_ref: Mapped[str | None] = mapped_column(String(128))
    recording_seconds: Mapped[int | None] = mapped_column()
    recording_deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Payment(KeyedRecord, Base):
    """Every repayment signal the workflow received, applied or not. A payment
    id can appear twice: once unapplied (say, in the wrong currency) and once
    applied, when the payment service sends it again corrected."""

    __tablename__ = "payments"

    payment_id: Mapped[str] = mapped_column(String(128))
    amount: Mapped[str] = mapped_column(String(64))  # as received; may be unparseable
    currency: Mapped[str] = mapped_column(String(16))
    paid_at: Mapped[str] = mapped_column(String(64))  # as received
    applied: Mapped[bool] = mapped_column(default=False)
    reason: Mapped[str | None] = mapped_column(Text())
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # How an applied payment was allocated (issue 18, item 3): what it paid
    # of fees, interest and principal, and what it paid over the balance.
    # NULL for payments recorded before: such a payment cannot be reversed
    # exactly. `reversed_at`: when it was reversed (`payment_reversals`);
    # the loan's amount_paid leaves it out from then on.
    fees_paid: Mapped[Decimal | None] = mapped_column(Money())
    interest_paid: Mapped[Decimal | None] = mapped_column(Money())
    principal_paid: Mapped[Decimal | None] = mapped_column(Money())
    overpaid: Mapped[Decimal | None] = mapped_column(Money())
    reversed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class PaymentReversal(KeyedRecord, Base):
    """A payment reversed (returned, charged back: the `payment_reversed`
    signal), once per payment: the allocation it undid and the
    returned-payment fee charged; `reopened` when it reopened a loan closed
    `repaid`. Ids, codes and money only."""

    __tablename__ = "payment_reversals"

    payment_id: Mapped[str] = mapped_column(String(128))
    amount: Mapped[Decimal] = mapped_column(Money())
    currency: Mapped[str] = mapped_column(String(3))
    fees: Mapped[Decimal] = mapped_column(Money())
    interest: Mapped[Decimal] = mapped_column(Money())
    principal: Mapped[Decimal] = mapped_column(Money())
    returned_payment_fee: Mapped[Decimal] = mapped_column(Money())
    reason: Mapped[str] = mapped_column(String(200))
    reversed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    reopened: Mapped[bool] = mapped_column(default=False)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class BureauRecord(KeyedRecord, Base):
    __tablename__ = "bureau_records"

    days_past_due: Mapped[int]
    balance: Mapped[Decimal] = mapped_column(Money())
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(32), default="open")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # The Metro 2-like fields (dunning/bureau.py); `cycle` names the export file.
    kind: Mapped[str] = mapped_column(String(16), default="first")  # first | regular | correction | final
    cycle: Mapped[str | None] = mapped_column(String(7), index=True)  # YYYY-MM
    account_status: Mapped[str | None] = mapped_column(String(2))
    special_comment: Mapped[str | None] = mapped_column(String(2))
    compliance_code: Mapped[str | None] = mapped_column(String(2))
    first_delinquency: Mapped[date | None] = mapped_column(Date())
    amount_past_due: Mapped[Decimal | None] = mapped_column(Money())
    original_amount: Mapped[Decimal | None] = mapped_column(Money())
    reported_on: Mapped[date | None] = mapped_column(Date())
    # Metro 2 Payment Rating (0-6, G, L), required with some statuses (issue 16).
    payment_rating: Mapped[str | None] = mapped_column(String(1))
    # Metro 2 Consumer Information Indicator (A-L bankruptcy, Q removal) and
    # the ECOA code when not 1 (X deceased): a legal status (issue 18, item 1).
    consumer_information_indicator: Mapped[str | None] = mapped_column(String(2))
    ecoa_code: Mapped[str | None] = mapped_column(String(1))


class LegalCase(KeyedRecord, Base):
    __tablename__ = "legal_cases"

    days_past_due: Mapped[int]
    outstanding: Mapped[Decimal] = mapped_column(Money())
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(32), default="opened")  # opened | filed | judgment | settled | withdrawn | time_barred
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # JSON list of {"name", "path"}: the contract, the statement of account and
    # the contact evidence from the audit log, written for the lawyers.
    documents: Mapped[str | None] = mapped_column(Text())
    case_ref: Mapped[str | None] = mapped_column(String(64))
    outcome_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class StageEntry(Base):
    """Each stage a loan entered, for cure and roll rates."""

    __tablename__ = "stage_entries"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(255), unique=True)
    loan_id: Mapped[str] = mapped_column(String(64), index=True)
    stage: Mapped[str] = mapped_column(String(32))
    days_past_due: Mapped[int]
    segment: Mapped[str | None] = mapped_column(String(64))
    outstanding: Mapped[Decimal] = mapped_column(Money())
    entered_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class PlanRecord(KeyedRecord, Base):
    """An installment plan: accepted, then kept or broken."""

    __tablename__ = "plans"

    plan_no: Mapped[int]
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | kept | broken
    total: Mapped[Decimal] = mapped_column(Money())
    currency: Mapped[str] = mapped_column(String(3))
    waived_fees: Mapped[Decimal] = mapped_column(Money(), default=Decimal("0"))
    waived_interest: Mapped[Decimal] = mapped_column(Money(), default=Decimal("0"))
    policy: Mapped[str | None] = mapped_column(String(64))
    segment: Mapped[str | None] = mapped_column(String(64))
    days_past_due: Mapped[int] = mapped_column(Integer, default=0)
    accepted_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class PlanInstallment(Base):
    __tablename__ = "plan_installments"
    __table_args__ = (UniqueConstraint("plan_id", "number", name="uq_plan_installments_plan_number"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id"), index=True)
    number: Mapped[int]
    due_date: Mapped[date] = mapped_column(Date())
    amount: Mapped[Decimal] = mapped_column(Money())
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class PromiseRecord(KeyedRecord, Base):
    """A promise to pay: open, then kept or broken."""

    __tablename__ = "promises"

    promise_no: Mapped[int]
    amount: Mapped[Decimal] = mapped_column(Money())
    currency: Mapped[str] = mapped_column(String(3))
    by_date: Mapped[date] = mapped_column(Date())
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | kept | broken
    source: Mapped[str] = mapped_column(String(16), default="borrower")  # borrower | field_visit
    policy: Mapped[str | None] = mapped_column(String(64))
    segment: Mapped[str | None] = mapped_column(String(64))
    made_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class FieldVisitRecord(Base):
    """A field visit (上门催收) assigned to the field team. The team's notes
    are personal and stay here; the workflow only learns the outcome."""

    __tablename__ = "field_visits"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(255), unique=True)
    visit_id: Mapped[str] = mapped_column(String(128), unique=True)
    loan_id: Mapped[str] = mapped_column(String(64), index=True)
    workflow_id: Mapped[str] = mapped_column(String(128))
    staff_required: Mapped[int] = mapped_column(Integer, default=2)
    days_past_due: Mapped[int] = mapped_column(Integer, default=0)
    outstanding: Mapped[Decimal] = mapped_column(Money())
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16), default="assigned")  # assigned | done
    outcome: Mapped[str | None] = mapped_column(String(16))  # met | not_home | refused | promise | paid
    staff_ids: Mapped[str | None] = mapped_column(Text())  # JSON list of staff ids
    notes: Mapped[str | None] = mapped_column(Text())
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime())
    reported_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AuditEntry(Base):
    """The keyed, hash-chained audit log (db/audit.py): appended, never
    updated (migration 0007's triggers refuse UPDATE and DELETE).

    Each loan's entries form a chain of their own (`loan_seq` 1, 2, ...;
    `prev_hash` the hash of the loan's previous entry), so appends for
    different loans never wait on each other; `hash` = HMAC-SHA256(audit key,
    prev_hash + canonical JSON of seq, loan_seq, at, loan_id, workflow_id, kind
    and payload), the key kept outside the database. Entries written before
    migration 0020 have no `loan_seq`: they are the one global chain of that
    time, verified as it was (and those from before the key, `scheme`
    sha256, are plain SHA-256). Editing, removing or reordering an entry
    breaks its chain at that entry. Payloads hold ids, codes and money, never
    a name, an address or a message body (a contact holds its body's SHA-256).
    """

    __tablename__ = "audit_log"
    # verify walks each loan's chain in this order; it also serves by-loan reads.
    __table_args__ = (Index("ix_audit_log_loan_chain", "loan_id", "seq"),)

    # The entry's id: on PostgreSQL from the sequence audit_log_seq (no row to
    # take turns on), on SQLite the next one under the database's write lock.
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    # The entry's place in its loan's chain; NULL: the global chain before 0020.
    loan_seq: Mapped[int | None] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    loan_id: Mapped[str] = mapped_column(String(64))
    workflow_id: Mapped[str] = mapped_column(String(128))
    # contact | decision | payment | stage | operator | complaint | closing
    kind: Mapped[str] = mapped_column(String(16))
    # Idempotency: a retried activity finds its entry by key and appends nothing.
    key: Mapped[str | None] = mapped_column(String(255), unique=True)
    payload: Mapped[str] = mapped_column(Text())  # canonical JSON
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    # hmac-sha256 (keyed), or sha256 (written before migration 0007, verified the old way)
    scheme: Mapped[str] = mapped_column(String(16))


class AuditHead(Base):
    """One row (id 1): the last seq and hash of the global chain written
    before migration 0020, frozen since (appends now move their loan's
    AuditLoanHead); `verify` compares it with that chain's end to notice
    entries cut off it."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))
    # HMAC of seq and hash under the audit key: a chain recomputed without the key fails here
    mac: Mapped[str | None] = mapped_column(String(64))


class AuditLoanHead(Base):
    """One loan's chain head: its last loan_seq and hash, sealed with `mac`
    (HMAC under the audit key). An append locks only its own loan's row, so
    loans append side by side; `verify` compares each with its chain's end."""

    __tablename__ = "audit_loan_heads"

    loan_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))
    mac: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AuditCheckpoint(Base):
    """A signed checkpoint (db/audit_checkpoint.py): the RFC 6962 Merkle root
    over the loan heads changed since checkpoint `number - 1`, chained to it by
    `prev_hash`, signed with HMAC under the audit key. Each is also appended
    to a file outside the database, so a database rolled back shows."""

    __tablename__ = "audit_checkpoints"

    number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    prev_hash: Mapped[str] = mapped_column(String(64))
    root: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(String(64))


class AuditCheckpointHead(Base):
    """A loan head a checkpoint committed to (one Merkle leaf): `verify`
    checks it is still that loan's entry `seq` with this hash."""

    __tablename__ = "audit_checkpoint_heads"
    # The last checkpointed seq of a loan: what "changed since" is measured from.
    __table_args__ = (Index("ix_audit_checkpoint_heads_loan", "loan_id", "seq"),)

    checkpoint: Mapped[int] = mapped_column(ForeignKey("audit_checkpoints.number"), primary_key=True)
    loan_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


class Complaint(Base):
    """A borrower's complaint, open until a reviewer resolves it."""

    __tablename__ = "complaints"
    # Complaint ids come from the complaint channel; one loan's id may be
    # reused by another loan's caller, so uniqueness is per loan.
    __table_args__ = (UniqueConstraint("loan_id", "complaint_id", name="uq_complaints_loan_complaint"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(255), unique=True)
    complaint_id: Mapped[str] = mapped_column(String(128), index=True)
    loan_id: Mapped[str] = mapped_column(String(64), index=True)
    workflow_id: Mapped[str] = mapped_column(String(128))
    # harassment | wrong_amount | privacy | third_party_contact | identity | other
    category: Mapped[str] = mapped_column(String(32))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | resolved
    resolution: Mapped[str | None] = mapped_column(String(16))  # upheld | rejected
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reviewer_id: Mapped[str | None] = mapped_column(String(128))  # an id, never a name


class WebhookDelivery(Base):
    """Webhook deliveries the gateway has acted on, by the sender's id, so a
    replayed or redelivered webhook (to any gateway process, after any
    restart) never signals a workflow twice."""

    __tablename__ = "webhook_deliveries"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)  # e.g. payment/L-1/P-9, stop/SM..., sendgrid/<sg_event_id>
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ApiKey(Base):
    """A scoped API key for the internal API (db/api_keys.py). Only the
    SHA-256 of the key's secret is kept: the key itself is shown once, when
    it is made, and the database never holds it."""

    __tablename__ = "api_keys"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)  # public: the `<id>` of dk_<id>_<secret>
    name: Mapped[str] = mapped_column(String(200))
    scopes: Mapped[str] = mapped_column(String(500))  # space-separated, e.g. "loans:place loans:read"
    secret_hash: Mapped[str] = mapped_column(String(64))  # hex SHA-256
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class PayToken(Base):
    """A one-click repayment link's token (activities/pay_link.py), kept only
    as its SHA-256: the token itself is in the message the borrower got and
    nowhere else, so reading this table does not open anyone's pay page. One
    per outbox message (`contact_key`), so a retried message links the same."""

    __tablename__ = "pay_tokens"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # hex SHA-256 of the token
    contact_key: Mapped[str] = mapped_column(String(255), unique=True)  # the outbox row's key
    loan_id: Mapped[str] = mapped_column(String(64), index=True)
    workflow_id: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AgentTask(Base):
    """Work that needs a person (issue 17): a callback, a dispute to verify, a
    complaint to review, a field visit, a legal filing, an unconfirmed send
    to check, a settlement awaiting approval. Written once by its key (the
    workflow's `open_task` activity); its status moves only forward, through
    db/tasks.py: open -> claimed -> done. Ids and codes only: `note` and
    `outcome` never hold personal data."""

    __tablename__ = "agent_tasks"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(255), unique=True)  # idempotency: one task per key, ever
    # One of db/tasks.py KINDS (callback, dispute_verification, inbound_request, ...).
    kind: Mapped[str] = mapped_column(String(32), index=True)
    loan_id: Mapped[str] = mapped_column(String(64), index=True)
    borrower_id: Mapped[str] = mapped_column(String(64), index=True)
    workflow_id: Mapped[str] = mapped_column(String(128))
    # What the task is about, when it is one thing: a complaint id, a visit
    # id, an outbox key (an id, never a name).
    subject: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    sla_hours: Mapped[int] = mapped_column(Integer, default=24)
    priority: Mapped[int] = mapped_column(Integer, default=0)  # higher first; escalation raises it
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)  # open | claimed | done
    assignee: Mapped[str | None] = mapped_column(String(64), index=True)  # an agent's id, never a name
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    outcome: Mapped[str | None] = mapped_column(String(32))  # one of the kind's outcomes (config/tasks.toml)
    note: Mapped[str | None] = mapped_column(String(500))  # ids and codes only
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class InboundMessage(Base):
    """A borrower's own request, as it came in (issue 17): an inbound SMS, or
    the pay page's "this is wrong" form. Written once by `message_key` (the
    provider's message id: a Twilio retry of the same MessageSid finds the
    row and acts no more), then finished once with what was done
    (db/inbound.py owns it). Personal data like `borrowers`: the sender's
    number and the text are here only, masked in logs, never in Temporal."""

    __tablename__ = "inbound_messages"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    # Twilio's MessageSid (one longer than 64 characters: its SHA-256); the
    # pay page's form: pay_page:<random>.
    message_key: Mapped[str] = mapped_column(String(64), unique=True)
    channel: Mapped[str] = mapped_column(String(16))  # sms | pay_page
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    sender: Mapped[str | None] = mapped_column(String(64))  # E.164 as the provider gave it; NULL from the pay page
    # The one borrower the number (or the pay token) belongs to; NULL when it
    # matched none, or several.
    borrower_id: Mapped[str | None] = mapped_column(String(64), index=True)
    loan_ids: Mapped[str] = mapped_column(Text(), default="[]")  # JSON list: the open loans it concerned
    body: Mapped[str | None] = mapped_column(Text())  # the text (at most 1600 characters), or the form's note
    language: Mapped[str | None] = mapped_column(String(16))  # of the keyword matched
    # stop | help | pay | dispute | agent | unrecognised (config/inbound_keywords.toml), or dispute (pay page)
    action: Mapped[str | None] = mapped_column(String(32))
    category: Mapped[str | None] = mapped_column(String(32))  # the pay page form's reason category
    status: Mapped[str] = mapped_column(String(16), default="received", index=True)  # received | done | failed
    result: Mapped[str | None] = mapped_column(String(500))  # what was done: ids and codes
    task_id: Mapped[int | None] = mapped_column(Integer)  # the agent task it opened, if any


class BorrowerMessageGroup(Base):
    """Steps of one borrower's loans gathered into one message (issue 17,
    item 1; db/borrower_messages.py owns it): for a borrower, a channel and
    the local day it opened on, until `deadline`. Closed once, under the
    borrower's lock, by the part that then sends its message (`sender_key`):
    the only part's own contact, or one merged message (`message_key`, its
    outbox row). Ids and codes only."""

    __tablename__ = "borrower_message_groups"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    borrower_id: Mapped[str] = mapped_column(String(64), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    local_day: Mapped[date] = mapped_column(Date())  # in the borrower's zone
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    deadline: Mapped[datetime] = mapped_column(UTCDateTime())  # parts join until then
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Set when it closes: the outbox key of its one message (the only part's
    # own key, or dunning/keys.py borrower_message_key), and the part sending it.
    message_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    sender_key: Mapped[str | None] = mapped_column(String(255))
    # A merged message a daily cap deferred: from when it may go (the parts
    # gather again then) and the rule.
    deferred_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    deferred_rule: Mapped[str | None] = mapped_column(String(32))


class BorrowerMessagePart(Base):
    """One loan's step in a BorrowerMessageGroup, by its own contact key (a
    retry of the step finds it, and its group's message): what the merged
    message says of the loan. Ids and money only."""

    __tablename__ = "borrower_message_parts"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(255), unique=True)  # the step's contact key
    group_id: Mapped[int] = mapped_column(ForeignKey("borrower_message_groups.id"), index=True)
    workflow_id: Mapped[str] = mapped_column(String(128))
    loan_id: Mapped[str] = mapped_column(String(64))
    borrower_id: Mapped[str] = mapped_column(String(64))
    stage: Mapped[str] = mapped_column(String(32))
    template: Mapped[str] = mapped_column(String(64))
    outstanding: Mapped[Decimal] = mapped_column(Money())
    currency: Mapped[str] = mapped_column(String(3))
    due_date: Mapped[date] = mapped_column(Date())
    days_past_due: Mapped[int] = mapped_column(Integer)
    # The step's rules, for the one message: its daily cap, what its first
    # line may say, and the 1006.18(e) disclosure.
    daily_cap: Mapped[int | None] = mapped_column(Integer)
    privacy_first_line: Mapped[str] = mapped_column(String(32), default="full")
    debt_collector: Mapped[bool] = mapped_column(default=False)
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime())
