"""Issue 18, item 2: time-barred debt (dunning/limitation.py,
dunning/transitions/limitation.py). First the pure rules (the dates: first
delinquency, last payment, a payment restarting the period, a partial one,
never a revival; the profile's rules; the planner), then the placement, the
disclosures and the real renderer in every language, then the "Done when"
scenarios through the contract on the time-skipping server, with the
activities replaced by name (tests/test_workflow_scenarios.py's fakes):

- a debt that turns time-barred mid-lifecycle never reaches legal, and its
  later contacts are the time-barred variant;
- a loan placed already time-barred starts that way (its first contact the
  time-barred variant; never legal);
- a payment restarting the clock where the rule says so.

The loans of the scenarios are old debts on a policy whose legal stage
starts on day 1500 (the shipped policies write a loan off on day 180, long
before any statute runs out), on the us profile's California rule (4 years
from the first delinquency; any payment restarts it).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from temporalio import activity

from activities import payloads as acts
from activities.limitation_disclosures import DisclosureMissing, disclosure_text, load_disclosures
from activities.prepare import limitation_rule
from activities.rendering import CHANNEL_FORMS, TemplateRenderer
from db.directory import PlacementConflict, upsert_placements
from db.models import Loan
from dunning import limitation as rules
from dunning.arrangements import ArrangementRejected
from dunning.clock import LoanClock
from dunning.compliance import ProfileError, StatuteOfLimitations, parse_profile
from dunning.inputs import LegalOutcome
from dunning.limitation import LimitationRule
from dunning.planner import next_action
from dunning.state import Installment, LegalCase, Plan
from dunning.transitions import legal, limitation as steps
from dunning.transitions.contacts import contact_request
from dunning.transitions.payments import receive_payment
from dunning.transitions.records import Moment
from loaders.config_files import load_policy, load_profile
from services.placement import PlacementError, validate_placements
from tests.support.planner import DUE, POLICIES, PROFILES, new_state
from tests.support.polling import poll_until
from tests.support.temporal import loan_input, overdue_since, time_env  # noqa: F401 (fixture)
from tests.test_workflow_scenarios import CONFIG, FakeActivities, fake_worker, status

ZONE = ZoneInfo("Asia/Shanghai")
CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
CA = load_profile("us", PROFILES).limitations["US-CA"]
NY = load_profile("us", PROFILES).limitations["US-NY"]


def rule(statute: StatuteOfLimitations, **extra) -> LimitationRule:
    return LimitationRule.model_validate(statute.model_dump(mode="json") | extra)


def moment_on(day: int, hour: int = 12, start_day: int = 1) -> Moment:
    clock = LoanClock(datetime.combine(DUE + timedelta(days=start_day), time(1), tzinfo=ZONE), "Asia/Shanghai", DUE, 86400)
    return Moment("dunning-L-1", "run-1", datetime.combine(DUE + timedelta(days=day), time(hour), tzinfo=ZONE), clock)


# ------------------------------------------------------------- the dates


def test_the_period_runs_from_the_first_delinquency_and_ends_on_its_anniversary():
    limitation = rules.start(rule(CA), date(2022, 3, 1))
    assert limitation.runs_from_date == date(2022, 3, 2), "the day after the due date"
    assert rules.time_barred_on(limitation) == date(2026, 3, 2)
    # FCRA 605(c)(1): the date of first delinquency (due + 30) + 180 days + 7 years.
    assert limitation.obsolete_on == date(2029, 9, 27) == rules.add_years(date(2022, 3, 31) + timedelta(days=180), 7)
    assert rules.add_years(date(2024, 2, 29), 3) == date(2027, 2, 28), "29 February: the earlier day"
    state = new_state(limitation=limitation)
    assert not rules.is_time_barred(state, date(2026, 3, 1)) and rules.is_time_barred(state, date(2026, 3, 2))


def test_a_rule_that_runs_from_the_last_payment_counts_from_the_placements_last_payment():
    last_payment = StatuteOfLimitations(years=3, runs_from="last_payment", payment_restarts=True)
    assert rules.start(rule(last_payment, last_payment_date="2021-06-15"), DUE).runs_from_date == date(2021, 6, 15)
    assert rules.start(rule(last_payment), DUE).runs_from_date == DUE + timedelta(days=1), "none known: the delinquency"
    assert rules.start(rule(CA, last_payment_date=None), DUE).runs_from_date == DUE + timedelta(days=1)


def test_a_payment_restarts_the_period_where_the_rule_says_so_and_never_revives_a_barred_debt():
    limitation = rules.start(rule(CA), DUE)
    made = rules.restart(limitation, "P-1", DUE + timedelta(days=40), full=False)
    assert made is not None and made.on == DUE + timedelta(days=40), "California: any payment, partial too"
    limitation.restarts.append(made)
    assert rules.time_barred_on(limitation) == rules.add_years(DUE + timedelta(days=40), 4)
    assert rules.restart(limitation, "P-0", DUE + timedelta(days=20), full=True) is None, "an earlier day moves nothing"
    # New York: no restart modelled (CPLR 214-i, the cautious side).
    assert rules.restart(rules.start(rule(NY), DUE), "P-1", DUE + timedelta(days=40), full=True) is None
    # Only a full payment restarts a rule that leaves partial ones out.
    full_only = rules.start(rule(CA, partial_payment_restarts=False), DUE)
    assert rules.restart(full_only, "P-1", DUE + timedelta(days=40), full=False) is None
    assert rules.restart(full_only, "P-1", DUE + timedelta(days=40), full=True) is not None
    # Once time-barred, a payment never revives it (Cal. Code Civ. Proc. 360; CPLR 214-i).
    barred = rules.start(rule(CA), DUE)
    late = rules.time_barred_on(barred) + timedelta(days=3)
    assert rules.restart(barred, "P-9", late, full=True) is None


def test_a_partial_payment_is_one_that_leaves_what_is_due_unpaid():
    state = new_state(limitation=rules.start(rule(CA, partial_payment_restarts=False), DUE))
    receipt = receive_payment(state, {"payment_id": "P-1", "amount": "300.00", "currency": "CNY"}, moment_on(40), None)
    assert [r.fields.get("rule") for r in receipt.records[1:]] == [], "partial: no restart under a full-only rule"
    # Under a plan, a payment that brings the installments due up to date is not partial.
    state.plans.append(Plan(plan_no=1, accepted_on=DUE + timedelta(days=41), total=Decimal("900.00"),
                            paid_before=state.amount_paid, installments=[
                                Installment(number=1, due_date=DUE + timedelta(days=45), amount=Decimal("450.00")),
                                Installment(number=2, due_date=DUE + timedelta(days=75), amount=Decimal("450.00"))]))
    receipt = receive_payment(state, {"payment_id": "P-2", "amount": "450.00", "currency": "CNY"}, moment_on(46), None)
    [restarted] = receipt.records[1:]
    assert restarted.fields["rule"] == "limitation_restarted"
    assert state.limitation.runs_since == DUE + timedelta(days=46)


def test_a_reversed_payment_no_longer_restarts_the_period():
    from dunning.inputs import PaymentReversedSignal, parse_signal
    from dunning.transitions.reversals import reverse_payment

    state = new_state(limitation=rules.start(rule(CA), DUE))
    receive_payment(state, {"payment_id": "P-1", "amount": "300.00", "currency": "CNY"}, moment_on(40), None)
    assert rules.time_barred_on(state.limitation) == rules.add_years(DUE + timedelta(days=40), 4)
    written = reverse_payment(state, parse_signal(PaymentReversedSignal, {"payment_id": "P-1", "reason": "NSF"}),
                              moment_on(42), None)
    assert written[-1].fields["rule"] == "limitation_restart_undone"
    assert rules.time_barred_on(state.limitation) == rules.add_years(DUE + timedelta(days=1), 4)


# ------------------------------------------------------------ the profile


def test_the_profiles_hold_the_statute_per_jurisdiction_as_data():
    assert (CA.years, CA.runs_from, CA.payment_restarts, CA.partial_payment_restarts) == (4, "first_delinquency", True, True)
    assert (NY.years, NY.payment_restarts, NY.disclosure) == (3, False, "us_ny_23nycrr_1_3")
    assert load_profile("cn", PROFILES).limitations == {}, "cn lists none: no limitation applied"
    base = load_profile("us", PROFILES).model_dump(mode="json")
    for bad, error in (
        ({"years": 4, "runs_from": "first_delinquency", "partial_payment_restarts": True}, "partial_payment_restarts needs"),
        ({"years": 4, "runs_from": "last_payment"}, "payment_restarts must be true"),
        ({"years": 0, "runs_from": "first_delinquency"}, "years"),
        ({"years": 4, "runs_from": "charge_off"}, "runs_from"),
    ):
        with pytest.raises(ProfileError, match=error):
            parse_profile(base | {"limitations": {"US-TX": bad}})
    with pytest.raises(ProfileError, match="limitations"):
        parse_profile(base | {"limitations": {"California": CA.model_dump()}})


def test_prepare_loan_gives_the_workflow_the_rule_of_the_loans_jurisdiction_and_never_the_jurisdiction():
    profile = load_profile("us", PROFILES)
    found = limitation_rule(profile, Loan(jurisdiction="US-CA", last_payment_date=date(2022, 1, 5)))
    assert found == {"years": 4, "runs_from": "first_delinquency", "payment_restarts": True,
                     "partial_payment_restarts": True, "disclosure": "us_ca_civ_1788_14_d_1",
                     "disclosure_after_obsolescence": "us_ca_civ_1788_14_d_2"}
    assert "US-CA" not in str(found)
    assert limitation_rule(profile, Loan(jurisdiction="US-TX")) is None, "a jurisdiction not listed: none applied"
    assert limitation_rule(profile, Loan(jurisdiction=None)) is None
    assert limitation_rule(load_profile("cn", PROFILES), Loan(jurisdiction="CN")) is None
    last = profile.model_copy(update={"limitations": {"US-XX": StatuteOfLimitations(
        years=6, runs_from="last_payment", payment_restarts=True)}})
    assert limitation_rule(last, Loan(jurisdiction="US-XX", last_payment_date=date(2022, 1, 5)))["last_payment_date"] == "2022-01-05"


# ------------------------------------------------------------- the planner


def test_a_time_barred_loan_never_enters_legal_and_keeps_its_stages_cadence_to_the_write_off():
    policy = load_policy("default", POLICIES)
    profile = load_profile(policy.profile, PROFILES)
    clock = LoanClock(datetime.combine(DUE + timedelta(days=95), time(1), tzinfo=ZONE), "Asia/Shanghai", DUE, 86400)
    barred = rules.start(rule(CA), DUE)
    barred.time_barred_since = barred.runs_from_date  # as if the statute had run out (a test's shortcut)
    pending = new_state(limitation=barred, bureau_reported=True)
    action = next_action(policy, profile, pending, clock, clock.at(95, time(8)))
    assert (action.kind, action.stage) == ("enter_stage", "credit_reporting"), "placed in legal's days: held before it"
    pending.stage = "credit_reporting"
    action = next_action(policy, profile, pending, clock, clock.at(101, time(8)))
    assert action.kind == "wait" and "legal" not in action.reason
    assert action.reason.startswith("waiting for sms reminder_followup on day 101"), "the cadence goes on past day 91"
    free = new_state(stage="credit_reporting", bureau_reported=True)
    assert next_action(policy, profile, free, clock, clock.at(95, time(8))).stage == "legal", "without the bar: legal"


def test_the_planner_wakes_on_the_day_the_debt_becomes_time_barred():
    policy = load_policy("default", POLICIES)
    profile = load_profile(policy.profile, PROFILES)
    clock = LoanClock(datetime.combine(DUE + timedelta(days=140), time(1), tzinfo=ZONE), "Asia/Shanghai", DUE, 86400)
    limitation = rules.start(rule(CA), DUE)
    limitation.runs_from_date = rules.add_years(DUE + timedelta(days=150), -4)  # runs out on day 150
    state = new_state(stage="legal", limitation=limitation, bureau_reported=True, done_steps=[
        "legal/d91/0-email", "legal/d91/1-sms"], legal=LegalCase(opened_on=DUE + timedelta(days=91)))
    action = next_action(policy, profile, state, clock, clock.at(141, time(12)))
    assert (action.kind, action.at) == ("wait", clock.at(150)), action.reason
    assert action.reason == f"waiting for the debt becoming time-barred on {DUE + timedelta(days=150)}"


def test_the_day_it_turns_time_barred_is_audited_once_and_an_unfiled_case_stops():
    state = new_state(stage="legal", limitation=rules.start(rule(CA), DUE), legal=LegalCase(opened_on=DUE))
    state.limitation.runs_from_date = rules.add_years(DUE + timedelta(days=150), -4)
    assert steps.bookkeep(state, moment_on(149)) == []
    written = steps.bookkeep(state, moment_on(150))
    assert [(r.kind, r.fields.get("rule") or r.fields.get("outcome")) for r in written] == [
        ("decision", "time_barred"), ("legal_outcome", "time_barred")]
    assert "12 CFR 1006.26(b)" in written[0].fields["reason"]
    assert state.limitation.time_barred_since == DUE + timedelta(days=150) and state.legal.status == "time_barred"
    assert steps.bookkeep(state, moment_on(151)) == [], "once"
    with pytest.raises(ArrangementRejected, match="time_barred can be nothing more, not filed"):
        legal.checked_legal_outcome(state, {"outcome": "filed", "case_ref": "C-1"})
    filed = new_state(stage="legal", limitation=rules.start(rule(CA), DUE), legal=LegalCase(opened_on=DUE, status="filed"))
    filed.limitation.runs_from_date = state.limitation.runs_from_date
    assert [r.kind for r in steps.bookkeep(filed, moment_on(150))] == ["decision"], "a case filed in time stands"
    assert filed.legal.status == "filed"
    assert LegalOutcome  # the update's payload type is unchanged


def test_a_time_barred_loans_contacts_ask_for_the_variant_and_its_disclosure_and_are_never_merged():
    policy = load_policy("us", POLICIES)
    profile = load_profile("us", PROFILES)
    state = new_state(stage="credit_reporting", limitation=rules.start(rule(CA), DUE), bureau_reported=True)
    from dunning.planner import Occurrence

    moment = moment_on(40)
    o = Occurrence("credit_reporting/d40/2-sms", "credit_reporting", 40, "sms", "reminder_followup", moment.loan_now)
    ordinary = contact_request(state, profile, o, moment, moment.loan_now, policy).fields
    assert "time_barred" not in ordinary and ordinary.get("merge") is True
    state.limitation.time_barred_since = DUE
    barred = contact_request(state, profile, o, moment, moment.loan_now, policy).fields
    assert (barred["time_barred"], barred["limitation_disclosure"], barred["limitation_reported"]) == (
        True, "us_ca_civ_1788_14_d_1", True)
    assert "merge" not in barred, "its disclosure is its own: never merged with the borrower's other loans"
    past = moment_on((state.limitation.obsolete_on - DUE).days)
    assert contact_request(state, profile, o, past, past.loan_now, policy).fields["limitation_disclosure"] == (
        "us_ca_civ_1788_14_d_2"), "past the FCRA obsolescence date: (d)(2)"
    assert rules.reports_to_bureau(state, past.today) is False and rules.reports_to_bureau(state, moment.today)


# ------------------------------------------------------------ the placement


def placement(**extra) -> dict:
    return {"loan_id": "L-TB-1", "borrower_id": "B-TB-1", "amount_due": "1200.00", "currency": "USD",
            "due_date": "2022-03-01", "borrower": {"name": "Jane Doe", "email": "jane@example.com", "language": "en"},
            **extra}


@pytest.mark.parametrize(("value", "error"), [
    ("California", "jurisdiction: Value error, must be an ISO 3166 code"),
    ("US-XX", "jurisdiction: Value error, 'XX' is not a subdivision of US"),
    ("ZZ", "jurisdiction: Value error, must be an ISO 3166 code"),
    (12, "jurisdiction: Value error, must be an ISO 3166 code"),
])
def test_a_bad_jurisdiction_is_refused_naming_the_field(value, error):
    with pytest.raises(PlacementError, match=f"record 1 \\(loan_id L-TB-1\\): {error}".replace("Value error, ", "")):
        validate_placements([placement(jurisdiction=value)])


def test_a_last_payment_in_the_future_or_not_a_date_is_refused_naming_the_field():
    with pytest.raises(PlacementError, match="last_payment_date: 2999-01-01 is in the future"):
        validate_placements([placement(last_payment_date="2999-01-01")])
    with pytest.raises(PlacementError, match="last_payment_date: "):
        validate_placements([placement(last_payment_date="01/02/2022")])


@pytest.mark.both_databases
def test_the_jurisdiction_is_stored_with_the_loan_never_in_the_workflow_input_and_never_changed(session_factory):
    [placed] = validate_placements([placement(jurisdiction="us-ca", last_payment_date="2022-01-15")])
    assert (placed.jurisdiction, placed.last_payment_date) == ("US-CA", date(2022, 1, 15))
    assert "jurisdiction" not in placed.workflow_input() and "last_payment_date" not in placed.workflow_input()
    upsert_placements(session_factory, [placed])
    upsert_placements(session_factory, validate_placements([placement()]))  # one that leaves them out claims none
    with session_factory() as db:
        loan = db.get(Loan, "L-TB-1")
        assert (loan.jurisdiction, loan.last_payment_date) == ("US-CA", date(2022, 1, 15))
    with pytest.raises(PlacementConflict) as refused:
        upsert_placements(session_factory, validate_placements([placement(jurisdiction="US-NY")]))
    assert refused.value.conflicts[0].fields == ("jurisdiction",)


# ------------------------------------------- the disclosures and the renderer


def test_the_disclosures_are_the_laws_words_and_a_placeholder_is_never_sent():
    text = disclosure_text(CONFIG_DIR, "us_ca_civ_1788_14_d_1", "zh_CN", collector="Acme Lending", reported=True)
    assert text == ("The law limits how long you can be sued on a debt. Because of the age of your debt, we will not "
                    "sue you for it. If you do not pay the debt, Acme Lending may continue to report it to the credit "
                    "reporting agencies as unpaid for as long as the law permits this reporting.")
    assert "may report it" in disclosure_text(CONFIG_DIR, "us_ca_civ_1788_14_d_1", "en", collector="A", reported=False)
    with pytest.raises(DisclosureMissing, match="placeholder the lender must fill"):
        disclosure_text(CONFIG_DIR, "us_ny_23nycrr_1_3", "en", collector="A", reported=False)
    with pytest.raises(DisclosureMissing, match="not in"):
        disclosure_text(CONFIG_DIR, "us_tx_nothing", "en", collector="A", reported=False)
    known = load_disclosures(CONFIG_DIR / "compliance" / "limitation_disclosures.toml")
    for profile in ("us", "cn"):
        for statute in load_profile(profile, PROFILES).limitations.values():
            assert {statute.disclosure, statute.disclosure_after_obsolescence} - {""} <= set(known)


CONTEXT = {
    "lender_name": "Acme Lending", "borrower_name": "Jane Doe", "amount": Decimal("1200.00"), "currency": "USD",
    "due_date": date(2022, 3, 1), "days_past_due": 1500, "pay_link": "https://pay.example.com/p/T", "loan_id": "L-1",
    "stage": "legal", "unsubscribe_url": "https://gw.example.com/u", "debt_collector": True, "call_recorded": True,
    "summary": None,
}
NOTICE = {
    "collector_name": "Acme Recovery", "collector_address": ["PO Box 1"], "collector_phone": None, "dispute_email": None,
    "dispute_url": None, "consumer_name": "Jane Doe", "consumer_address": [], "current_creditor": "Acme",
    "creditor_on_itemization_date": "Acme", "account_last4": None, "itemization_date": date(2022, 3, 1),
    "amount_on_itemization_date": Decimal("1200.00"), "interest_since": Decimal("0"), "fees_since": Decimal("0"),
    "paid_or_credited_since": Decimal("0"), "current_amount": Decimal("1200.00"), "itemized": True,
    "provided_on": date(2026, 3, 1), "validation_period_ends": date(2026, 4, 10), "debt_collector": True,
}
THREATS = ("legal recovery", "refer it for legal", "sue you", "lawsuit", "court", "法律途径", "法律途徑", "起诉", "起訴")


@pytest.mark.parametrize("language", ["en", "zh_CN", "zh_TW"])
def test_every_time_barred_message_carries_the_disclosure_and_threatens_no_suit_in_each_language(language):
    renderer = TemplateRenderer(CONFIG_DIR / "templates")
    disclosure = disclosure_text(CONFIG_DIR, "us_ca_civ_1788_14_d_1", language, collector="Acme Lending", reported=True)
    checked = 0
    for lang, template, form in sorted(renderer.names()):
        if lang != language or form == "ivr" or template == "borrower_summary":
            continue
        context = CONTEXT | {"notice": NOTICE if template == "validation_notice" else None}
        barred = renderer.render_form(language, template, form, context | {
            "time_barred": True, "limitation_disclosure": disclosure})
        ordinary = renderer.render_form(language, template, form, context)
        # The disclosure says "we will not sue you for it": threats are looked for around it.
        rest = barred.replace(disclosure, "").casefold()
        assert not [t for t in THREATS if t.casefold() in rest], (template, form, barred)
        if form != "email.subject":
            assert disclosure in barred, (template, form)
            assert disclosure not in ordinary and "sue" not in ordinary.replace("issue", ""), (template, form)
            checked += 1
    assert checked > 40
    # The legal notice's ordinary variant still says what it said.
    legal_sms = renderer.render("legal_notice", "sms", language, CONTEXT).text
    assert any(word in legal_sms for word in ("legal recovery", "法律途径", "法律途徑"))


def test_an_outbox_draft_for_a_time_barred_debt_carries_the_disclosure_or_is_not_sent(session_factory, settings):
    from activities.context import ActivityContext
    from activities.outbox import ContactSending
    from db.models import Borrower
    from runtime.worker_build import activity_settings

    with session_factory.begin() as db:
        db.add(Borrower(borrower_id="B-1", name="Jane Doe", phone="+14155550100", email="jane@example.com",
                        language="en", time_zone="America/Los_Angeles"))
    at = datetime(2026, 3, 20, 18, tzinfo=ZoneInfo("UTC"))  # a fixed moment, never the wall clock
    context = ActivityContext(session_factory, activity_settings(settings), lambda: at)
    sending = ContactSending(context, {}, TemplateRenderer(settings.templates_dir))
    base = dict(key="dunning-L-1/run/credit_reporting/d40/2-sms", workflow_id="dunning-L-1", loan_id="L-1",
                borrower_id="B-1", stage="credit_reporting", channel="sms", template="reminder_followup",
                days_past_due=1470, outstanding="1200.00", currency="USD", due_date="2022-03-01")
    with session_factory() as db:
        ca = sending._draft(db, acts.ContactRequest(**base, time_barred=True, limitation_disclosure="us_ca_civ_1788_14_d_1"), at)
        ny = sending._draft(db, acts.ContactRequest(**base, time_barred=True, limitation_disclosure="us_ny_23nycrr_1_3"), at)
        plain = sending._draft(db, acts.ContactRequest(**base), at)
    assert ca.recipient and "we will not sue you for it" in ca.body_text
    assert "Example Lender may report it" in ca.body_text, "not reported yet: no \"continue to\""
    assert not ny.recipient and ny.error.startswith("not sent: limitation disclosure 'us_ny_23nycrr_1_3' is a placeholder")
    assert plain.recipient and "sue" not in plain.body_text


# ----------------------------------------- through the workflow (time-skipping)

LEGAL_FROM = 1500  # the old-debt policy's legal stage
WRITE_OFF = 1560


class OldDebtFakes(FakeActivities):
    """The default policy stretched for old debt (legal from day 1500,
    written off on day 1560) and the us profile's California rule, as
    prepare_loan gives it for a loan placed with `"jurisdiction": "US-CA"`."""

    def __init__(self, statute: StatuteOfLimitations = CA, **kwargs) -> None:
        super().__init__(**kwargs)
        self.statute = statute

    @activity.defn(name=acts.PREPARE_LOAN)
    async def prepare_loan(self, request: acts.PrepareLoanInput) -> acts.PreparedLoan:
        policy = load_policy(request.policy, CONFIG / "policies")
        stages = policy.stages.model_copy(update={"legal": policy.stages.legal.model_copy(update={"start_day": LEGAL_FROM})})
        policy = policy.model_copy(update={"stages": stages, "write_off_day": WRITE_OFF})
        profile = load_profile(policy.profile, CONFIG / "profiles")
        return acts.PreparedLoan(
            policy=policy.model_dump(mode="json"), profile=profile.model_dump(mode="json", exclude={"limitations"}),
            time_zone="Asia/Shanghai", language="zh_CN", borrower_known=True,
            limitation=self.statute.model_dump(mode="json"),
        )


def day_of(shown: dict) -> int:
    return shown["days_past_due"]


async def until(env, handle, condition, what: str, step=timedelta(hours=12), tries=200) -> dict:
    return await poll_until(lambda: status(handle), condition, lambda: env.sleep(step), tries,
                            lambda shown: f"{what} never happened: {shown and shown['next_action']}")


def barred_on(due: date, statute: StatuteOfLimitations = CA) -> date:
    return rules.add_years(due + timedelta(days=1), statute.years)


@pytest.mark.asyncio
async def test_a_debt_that_turns_time_barred_mid_lifecycle_never_reaches_legal_and_its_later_contacts_are_the_variant(
    time_env,
):
    fake = OldDebtFakes()
    async with fake_worker(time_env, fake) as loans:
        due = await overdue_since(time_env, 1455)
        handle = await loans.start(loan_input("L-TB-MID", due))
        await time_env.sleep(timedelta(minutes=1))
        before = await status(handle)
        turned = await until(time_env, handle, lambda s: s["time_barred"], "the debt turning time-barred")
        after = await until(time_env, handle, lambda s: day_of(s) >= LEGAL_FROM + 5, "the legal stage's days")

    on = barred_on(due)
    assert not before["time_barred"] and before["time_barred_on"] == on.isoformat()
    assert before["stage"] == "credit_reporting" and before["limitation"]["years"] == 4
    assert turned["time_barred_on"] == on.isoformat() and turned["stage"] == "credit_reporting"
    # Never the legal stage: the stage before it, its cadence on to the write-off day.
    assert [e["stage"] for e in fake.written[acts.ENTER_STAGE]] == ["credit_reporting"]
    assert after["stage"] == "credit_reporting" and after["legal_case"] is None
    assert "legal" not in after["next_action"]
    # Every contact from that day on is the time-barred variant, with its disclosure.
    barred_day = (on - due).days
    later = [c for c in fake.sent if c.days_past_due >= barred_day]
    earlier = [c for c in fake.sent if c.days_past_due < barred_day]
    assert earlier and not any(c.time_barred for c in earlier)
    assert later and all(c.time_barred and c.limitation_disclosure == "us_ca_civ_1788_14_d_1" for c in later)
    assert any(c.days_past_due >= LEGAL_FROM for c in later), "contacts go on past the legal stage's first day"
    [audited] = [d for d in fake.written[acts.RECORD_DECISION] if d["rule"] == "time_barred"]
    assert audited["reason"].startswith(f"time-barred since {on.isoformat()}")


@pytest.mark.asyncio
async def test_a_loan_placed_already_time_barred_starts_that_way_and_never_reaches_legal(time_env):
    fake = OldDebtFakes()
    async with fake_worker(time_env, fake) as loans:
        due = await overdue_since(time_env, LEGAL_FROM + 5)
        handle = await loans.start(loan_input("L-TB-OLD", due))
        first = await until(time_env, handle, lambda s: len(s["contacts"]) >= 1, "a first contact", step=timedelta(hours=2))
        later = await until(time_env, handle, lambda s: day_of(s) >= LEGAL_FROM + 20, "two weeks more")

    assert first["time_barred"] and first["time_barred_on"] == barred_on(due).isoformat()
    assert first["stage"] == "credit_reporting", "placed in legal's days, held in the stage before it"
    assert fake.sent[0].time_barred and fake.sent[0].limitation_disclosure == "us_ca_civ_1788_14_d_1"
    assert all(c.time_barred for c in fake.sent)
    assert [e["stage"] for e in fake.written[acts.ENTER_STAGE]] == ["credit_reporting"]
    assert later["stage"] == "credit_reporting" and later["legal_case"] is None
    assert [d["rule"] for d in fake.written[acts.RECORD_DECISION]].count("time_barred") == 1


@pytest.mark.asyncio
async def test_a_payment_restarts_the_clock_where_the_profile_says_so(time_env):
    fake = OldDebtFakes()
    async with fake_worker(time_env, fake) as loans:
        due = await overdue_since(time_env, 1455)
        handle = await loans.start(loan_input("L-TB-PAY", due, currency="USD"))
        await time_env.sleep(timedelta(minutes=1))
        before = await status(handle)
        await handle.signal("repayment", {"payment_id": "P-1", "amount": "100.00", "currency": "USD"})
        await time_env.sleep(timedelta(minutes=1))
        paid = await status(handle)
        legal = await until(time_env, handle, lambda s: s["stage"] == "legal", "the legal stage", step=timedelta(days=2))

    paid_on = due + timedelta(days=day_of(paid))
    assert before["time_barred_on"] == barred_on(due).isoformat()
    assert paid["limitation"]["restarts"] == [{"payment_id": "P-1", "on": paid_on.isoformat()}]
    assert paid["time_barred_on"] == rules.add_years(paid_on, 4).isoformat(), "four years from the payment"
    assert not legal["time_barred"] and day_of(legal) >= LEGAL_FROM, "still within the period: legal is entered"
    assert [d["rule"] for d in fake.written[acts.RECORD_DECISION]].count("limitation_restarted") == 1
    assert not any(c.time_barred for c in fake.sent)
