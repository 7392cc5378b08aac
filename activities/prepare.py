"""prepare_loan: what a loan's workflow starts from.

The loan's policy and its compliance profile, validated, go into workflow
history (so a running loan keeps the policy it started with, and replay never
depends on files), with the borrower's preferences (a time zone and a
language, never contact details). A borrower whose zone the directory does
not know (placed with neither a zone nor a phone that has one) takes the
policy's `default_time_zone`. The loan's directory row is written if
placing did not write it.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from sqlalchemy.orm import Session
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.context import ActivityContext, bound_log
from activities.payloads import PREPARE_LOAN, PreparedLoan, PrepareLoanInput
from db.directory import new_loan
from db.models import Borrower, Loan
from dunning.compliance import Profile, ProfileError
from dunning.policy import PolicyError
from loaders.config_files import load_policy, load_profile
from loaders.zones import candidate_zones


# Each policy and profile object as JSON, by the object (the loader keeps one
# per version of its files: loaders/config_files.py), so a loan's preparation
# does not dump the same policy again. The object is kept with its JSON, so
# its id cannot be taken by another while it is here.
_JSON: dict[tuple[int, str], tuple[object, dict]] = {}
_JSON_KEPT = 64


def _json_of(model, **options) -> dict:
    key = (id(model), repr(sorted(options.items())))
    kept = _JSON.get(key)
    if kept is not None and kept[0] is model:
        return kept[1]
    dumped = model.model_dump(mode="json", **options)
    if len(_JSON) >= _JSON_KEPT:
        _JSON.clear()
    _JSON[key] = (model, dumped)
    return dumped


def borrower_zones(borrower: Borrower | None, primary: str) -> tuple[str, ...]:
    """Every zone the borrower may be in, `primary` first (12 CFR
    1006.6(b)(1)(i)): the zone, the address's state's, the number's."""
    if borrower is None:
        return (primary,)
    return candidate_zones(primary, borrower.phone, borrower.country, borrower.region)


def limitation_rule(profile: Profile, loan: Loan | None) -> dict | None:
    """The statute of limitations of the loan's jurisdiction (issue 18, item
    2), as the workflow takes it (dunning/limitation.py LimitationRule):
    numbers, dates and keys, never the jurisdiction itself. None when the
    loan was placed without a jurisdiction or the profile lists none for it
    (no limitation is applied then)."""
    if loan is None or not loan.jurisdiction:
        return None
    rule = profile.limitations.get(loan.jurisdiction)
    if rule is None:
        return None
    found = rule.model_dump(mode="json")
    if rule.runs_from == "last_payment" and loan.last_payment_date is not None:
        found["last_payment_date"] = loan.last_payment_date.isoformat()
    return found


class LoanPreparation:
    def __init__(self, context: ActivityContext) -> None:
        self._context = context

    def registered(self) -> list:
        return [self.prepare_loan]

    @activity.defn(name=PREPARE_LOAN)
    def prepare_loan(self, request: PrepareLoanInput) -> PreparedLoan:
        logger = bound_log(loan_id=request.loan_id)
        settings = self._context.settings
        try:
            policy = load_policy(request.policy, settings.policies_dir)
            profile = load_profile(policy.profile, settings.profiles_dir)
        except (PolicyError, ProfileError) as error:
            raise ApplicationError(str(error), type="PolicyError", non_retryable=True) from None

        def work(db: Session) -> PreparedLoan:
            borrower = db.get(Borrower, request.borrower_id)
            # Without the borrower (started without placing, e.g. by the
            # temporal CLI) the loan runs on the policy's defaults, no loan row
            # is written (its foreign key needs the borrower), and each contact
            # is skipped until the directory has the borrower.
            if borrower is not None and db.get(Loan, request.loan_id) is None:
                db.add(new_loan(
                    request.loan_id, request.borrower_id, Decimal(request.amount_due), request.currency,
                    date.fromisoformat(request.due_date), request.policy, request.workflow_id,
                ))
            # The directory's zone (given, or the address's or phone's); a
            # borrower with none, or not in the directory, takes the policy's.
            time_zone = (borrower.time_zone if borrower else None) or policy.default_time_zone
            return PreparedLoan(
                policy=_json_of(policy),
                time_zone=time_zone,
                time_zones=borrower_zones(borrower, time_zone),
                language=borrower.language if borrower else policy.default_language,
                borrower_known=borrower is not None,
                # The per-jurisdiction table stays here: the loan gets the one rule that applies.
                profile=_json_of(profile, exclude={"limitations"}),
                limitation=limitation_rule(profile, db.get(Loan, request.loan_id)),
            )

        prepared = self._context.in_transaction(work)
        if not prepared.borrower_known:
            logger.warning("borrower_not_in_directory", borrower_id=request.borrower_id)
        logger.info("loan_prepared", policy=policy.name, borrower_known=prepared.borrower_known)
        return prepared
