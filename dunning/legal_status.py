"""Legal statuses (issue 18, item 1): what each one lets the planner do.

A loan carries the statuses in force (`LoanState.legal_status`, set by the
`legal_status` signal: dunning/transitions/legal_status.py). Each is a rule
as written:

- `bankruptcy_filed` starts the automatic stay, 11 U.S.C. 362(a): a petition
  "operates as a stay ... of (6) any act to collect, assess, or recover a
  claim against the debtor that arose before the commencement of the case".
  So no contact, no escalation (no stage, no legal case, no field visit, no
  write-off) and no new charges (a claim does not include "unmatured
  interest", 11 U.S.C. 502(b)(2)). Reporting to the bureau goes on, with the
  chapter's Consumer Information Indicator (dunning/bureau.py). Dismissed
  (362(c)(2)(B)), the stay ends and collection resumes at the stage of that
  day; discharged (11 U.S.C. 524(a)(2): an injunction against any act to
  collect the debt), the loan ends `discharged`.
- `deceased`: the borrower is never contacted again. For a deceased
  consumer, Regulation F's communication rules count "the executor or
  administrator of the consumer's estate" as the consumer (12 CFR
  1006.6(a)(4)); who that is, and what the estate can pay, is a person's
  work: an `estate_handling` task, never a message to the borrower's
  addresses.
  No new charges, no escalation; the loan waits for an operator's
  `estate_outcome` (written off, or settled by the estate).
- `cease_communication`: a written request to stop, 15 U.S.C. 1692c(c),
  12 CFR 1006.6(c)(1): the collector "must not communicate or attempt to
  communicate further with the consumer with respect to such debt, except
  ... (i) To advise the consumer that the debt collector's further efforts
  are being terminated; (ii) To notify the consumer that the debt collector
  or creditor may invoke specified remedies which are ordinarily invoked by
  such debt collector or creditor; or (iii) Where applicable, to notify the
  consumer that the debt collector or creditor intends to invoke a specified
  remedy." One final notice, the policy's `[legal_status]
  cease_final_notice_template`, if it names one; nothing else. Charges and
  the stages go on (a stage entered sends nothing), up to `legal` only where
  the profile allows it (`rules.legal_escalation_after_cease`: a request to
  stop communicating does not bar a suit).
- `hardship` (the lender's rule, with its `until`): fees and interest are
  frozen until then, contact follows the policy's gentler `[legal_status.hardship]`
  cadence instead of the stage's, escalation stops (no stage, no field visit,
  no write-off); at `until` the loan resumes at the stage of that day.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dunning import contract
from dunning.compliance import Profile
from dunning.contract import STAGES
from dunning.state import LegalStatusInForce, LoanState

BANKRUPTCY = contract.LEGAL_STATUS_BANKRUPTCY_FILED
DECEASED = contract.LEGAL_STATUS_DECEASED
CEASE = contract.LEGAL_STATUS_CEASE_COMMUNICATION
HARDSHIP = contract.LEGAL_STATUS_HARDSHIP
# The status the `LegalStatus` search attribute and `status.legal_status.status`
# show when several are in force: the one that restricts the most.
PRECEDENCE = (DECEASED, BANKRUPTCY, CEASE, HARDSHIP)
NONE = "none"
# The agent task each status opens (db/tasks.py KINDS, config/tasks.toml),
# with its SLA for a loan whose policy named none for it when it started.
TASKS = {BANKRUPTCY: "bankruptcy_review", DECEASED: "estate_handling"}
DEFAULT_TASK_SLA_HOURS = {"bankruptcy_review": 24, "estate_handling": 72}


@dataclass(frozen=True)
class Limits:
    """What the statuses in force (none that holds) still allow."""

    # all: the stage's cadence; hardship: the policy's hardship cadence;
    # final_notice: the cease request's one final notice, nothing else.
    contacts: Literal["all", "hardship", "final_notice"]
    # The highest stage the loan may enter (an index into STAGES; -1 none
    # at all); None: any.
    max_rank: int | None
    write_off: bool
    visits: bool
    hardship: LegalStatusInForce | None = None

    def allows_stage(self, stage: str) -> bool:
        return self.max_rank is None or (stage in STAGES and STAGES.index(stage) <= self.max_rank)


def limits(profile: Profile, state: LoanState) -> Limits | None:
    """None when no status limits the loan (the planner's usual path)."""
    legal = state.legal_status
    if legal is None or not legal.in_force:
        return None
    hardship, ceased = legal.find(HARDSHIP), legal.find(CEASE) is not None
    if hardship is None and not ceased:
        return None
    max_rank: int | None = None
    if ceased and not profile.rules.legal_escalation_after_cease:
        max_rank = STAGES.index("legal") - 1
    if hardship is not None:
        max_rank = min(state.stage_rank(), max_rank if max_rank is not None else state.stage_rank())
    return Limits(
        contacts="final_notice" if ceased else "hardship",
        max_rank=max_rank,
        write_off=hardship is None,
        visits=False,
        hardship=hardship,
    )


def hold_reason(state: LoanState) -> str | None:
    """Why a status holds the loan (a stay, a death), or None."""
    legal = state.legal_status
    if legal is None:
        return None
    if (deceased := legal.find(DECEASED)) is not None:
        return (f"the borrower is deceased ({deceased.reference}): no contact, ever; the loan waits for an "
                "estate_outcome (written_off, or settled by the estate)")
    if (filed := legal.find(BANKRUPTCY)) is not None:
        return (f"bankruptcy under chapter {filed.chapter} ({filed.reference}): the automatic stay (11 U.S.C. 362(a)) "
                "until it is dismissed or discharged")
    return None


def headline(state: LoanState) -> str:
    """The status that restricts the loan the most; `bankruptcy_discharged`
    once discharged; `none`."""
    legal = state.legal_status
    if legal is None:
        return NONE
    if legal.discharged_chapter is not None:
        return contract.LEGAL_STATUS_BANKRUPTCY_DISCHARGED
    statuses = {s.status for s in legal.in_force}
    return next((name for name in PRECEDENCE if name in statuses), NONE)


def reports_to_bureau(state: LoanState) -> bool:
    """CRRG FAQ 19: a deceased consumer's account is reported with ECOA code
    X, then no more ("stop reporting the entire account" once the borrower is
    reported as deceased, for an individual account). One never reported is
    not reported for the first time after the death."""
    legal = state.legal_status
    if legal is None or legal.find(DECEASED) is None:
        return True
    return state.bureau_reported and not state.bureau.reported_deceased


def ending(state: LoanState) -> str | None:
    """The outcome a status ends the loan with now, if any."""
    legal = state.legal_status
    if legal is None:
        return None
    if legal.discharged_chapter is not None:
        return contract.OUTCOME_DISCHARGED
    if legal.estate_outcome == "written_off":
        return contract.OUTCOME_WRITTEN_OFF
    if legal.estate_outcome == "settled":
        return contract.OUTCOME_SETTLED
    return None
