"""Names from the public contract (docs/contract.md), in one place.

Other teams code against these strings; extend them, never rename them.
"""

from typing import Final

WORKFLOW_TYPE: Final = "DunningWorkflow"
DEFAULT_TASK_QUEUE: Final = "dunning"
DEFAULT_NAMESPACE: Final = "default"
DEFAULT_ADDRESS: Final = "localhost:7233"


def workflow_id_for(loan_id: str) -> str:
    return f"dunning-{loan_id}"


def wrong_workflow_id(loan_id: str, workflow_id: str) -> str | None:
    """Why `workflow_id` cannot run the loan `loan_id`, or None if it can."""
    expected = workflow_id_for(loan_id)
    if workflow_id == expected:
        return None
    return f"workflow id: must be {expected!r} for loan_id {loan_id!r}, got {workflow_id!r}"


# Stages, in the order a loan walks through them.
STAGES: Final = ("reminder", "call", "negotiation", "credit_reporting", "legal")
# Reminders before the due date (issue 17, item 5): a loan placed before it is
# due, where its policy has a pre_due stage and the loan's segment is one it
# names. Not one of STAGES: it comes before the first and has no start day of
# its own (its steps fall on days counted back from the due date).
STAGE_PRE_DUE: Final = "pre_due"
# Every stage a loan can be in while contacts go out, in order.
STAGE_NAMES: Final = (STAGE_PRE_DUE, *STAGES)
# Before the first stage's day (a loan placed on its due date) and after the end.
STAGE_PENDING: Final = "pending"
STAGE_CLOSED: Final = "closed"

CHANNELS: Final = ("sms", "email", "voice", "push", "letter")

# Outcomes of a finished workflow.
OUTCOME_REPAID: Final = "repaid"
OUTCOME_DISPUTE_UPHELD: Final = "dispute_upheld"
OUTCOME_WRITTEN_OFF: Final = "written_off"
OUTCOME_SETTLED: Final = "settled"
# A bankruptcy discharged (issue 18, item 1: the `legal_status` signal's
# `bankruptcy_discharged`): the debt is no longer the borrower's to pay.
OUTCOME_DISCHARGED: Final = "discharged"

# Signals.
SIGNAL_REPAYMENT: Final = "repayment"
SIGNAL_DISPUTE: Final = "dispute"
SIGNAL_DISPUTE_RESOLVED: Final = "dispute_resolved"
SIGNAL_OPT_OUT: Final = "opt_out"
SIGNAL_PAUSE: Final = "pause"
SIGNAL_RESUME: Final = "resume"
SIGNAL_COMPLAINT: Final = "complaint"
SIGNAL_COMPLAINT_RESOLVED: Final = "complaint_resolved"
SIGNAL_CONTACT_OUTCOME: Final = "contact_outcome"
SIGNAL_SEND_PAY_LINK: Final = "send_pay_link"
SIGNAL_VERIFICATION_SENT: Final = "verification_sent"
# A payment applied to the loan came back: its allocation undone; a loan
# closed `repaid` reopens (issue 18, item 3).
SIGNAL_PAYMENT_REVERSED: Final = "payment_reversed"
# A life event a collector must honour (issue 18, item 1): a bankruptcy,
# a death, a request to cease communication, a hardship.
SIGNAL_LEGAL_STATUS: Final = "legal_status"
# The `legal_status` signal's statuses: the first four stay in force until
# ended (LEGAL_STATUSES_IN_FORCE), the others end or remove one.
LEGAL_STATUS_BANKRUPTCY_FILED: Final = "bankruptcy_filed"
LEGAL_STATUS_BANKRUPTCY_DISMISSED: Final = "bankruptcy_dismissed"
LEGAL_STATUS_BANKRUPTCY_DISCHARGED: Final = "bankruptcy_discharged"
LEGAL_STATUS_DECEASED: Final = "deceased"
LEGAL_STATUS_CEASE_COMMUNICATION: Final = "cease_communication"
LEGAL_STATUS_HARDSHIP: Final = "hardship"
LEGAL_STATUS_CLEARED: Final = "cleared"
LEGAL_STATUSES: Final = (
    LEGAL_STATUS_BANKRUPTCY_FILED, LEGAL_STATUS_BANKRUPTCY_DISMISSED, LEGAL_STATUS_BANKRUPTCY_DISCHARGED,
    LEGAL_STATUS_DECEASED, LEGAL_STATUS_CEASE_COMMUNICATION, LEGAL_STATUS_HARDSHIP, LEGAL_STATUS_CLEARED,
)
LEGAL_STATUSES_IN_FORCE: Final = (
    LEGAL_STATUS_BANKRUPTCY_FILED, LEGAL_STATUS_DECEASED, LEGAL_STATUS_CEASE_COMMUNICATION, LEGAL_STATUS_HARDSHIP,
)
# An approver's decision on a settlement awaiting approval (issue 18, item 4).
SIGNAL_SETTLEMENT_DECISION: Final = "settlement_decision"

# Updates (answered; a validator rejects a bad one before it is accepted).
UPDATE_PROPOSE_PLAN: Final = "propose_plan"
UPDATE_PROMISE_TO_PAY: Final = "promise_to_pay"
UPDATE_RECORD_VISIT: Final = "record_visit"
UPDATE_LEGAL_OUTCOME: Final = "legal_outcome"
# Less than the balance in full satisfaction (issue 18, item 4).
UPDATE_PROPOSE_SETTLEMENT: Final = "propose_settlement"
# A deceased borrower's loan ended by an operator: written off, or settled
# by the estate (issue 18, item 1).
UPDATE_ESTATE_OUTCOME: Final = "estate_outcome"
UPDATES: Final = (
    UPDATE_PROPOSE_PLAN, UPDATE_PROMISE_TO_PAY, UPDATE_RECORD_VISIT, UPDATE_LEGAL_OUTCOME, UPDATE_PROPOSE_SETTLEMENT,
    UPDATE_ESTATE_OUTCOME,
)

# Query.
QUERY_STATUS: Final = "status"

# Search attributes: name -> Temporal indexed value type.
SEARCH_ATTRIBUTES: Final = {
    "DunningStage": "Keyword",
    "DaysPastDue": "Int",
    "OutstandingAmount": "Double",
    "LoanId": "Keyword",
    "DunningPolicy": "Keyword",
    "DunningSegment": "Keyword",
    # The due date's start in the borrower's zone: never stale, unlike
    # DaysPastDue (as of the workflow's last wake), so filter on this one.
    "DueDate": "Datetime",
    "BorrowerId": "Keyword",
    # The legal status in force (issue 18, item 1), `none` when there is none.
    "LegalStatus": "Keyword",
}
