"""Typed keys for the contract's search attributes (see dunning.contract)."""

from temporalio.common import SearchAttributeKey

DUNNING_STAGE = SearchAttributeKey.for_keyword("DunningStage")
DAYS_PAST_DUE = SearchAttributeKey.for_int("DaysPastDue")
OUTSTANDING_AMOUNT = SearchAttributeKey.for_float("OutstandingAmount")
LOAN_ID = SearchAttributeKey.for_keyword("LoanId")
DUNNING_POLICY = SearchAttributeKey.for_keyword("DunningPolicy")
DUNNING_SEGMENT = SearchAttributeKey.for_keyword("DunningSegment")
DUE_DATE = SearchAttributeKey.for_datetime("DueDate")
BORROWER_ID = SearchAttributeKey.for_keyword("BorrowerId")
LEGAL_STATUS = SearchAttributeKey.for_keyword("LegalStatus")
