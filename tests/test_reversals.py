"""Payment reversals (issue 18, item 3), through the contract.

The pure transition first: a payment reversed undoes exactly what it paid of
fees, interest and principal, charges the contract's returned-payment fee
within the cost cap, and an unknown payment, the same reversal again or a
payment whose allocation is not known changes nothing.

Then the workflow on the time-skipping server with the real activities on
SQLite: a partial payment reversed through the signed `POST
/payments/reversals` (its signature checked like `POST /payments`'s); and the
payment that closed a loan reversed with `starter.py reverse`, which reopens
it, a new run of `dunning-<loan_id>` from its records, with the right balance,
at the stage of that day, the bureau record corrected and the same reversal
posted twice counted once.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from temporalio.worker import Replayer

from db.models import AuditEntry, BureauRecord, Contact, Loan, Payment, PaymentReversal
from dunning import carry
from dunning.charges import post_charges, terms_for
from dunning.clock import LoanClock
from dunning.inputs import PaymentReversedSignal
from dunning.state import LoanState
from dunning.transitions import reversals
from dunning.transitions.holds import SignalRejected
from dunning.transitions.payments import receive_payment
from dunning.transitions.records import Moment
from gateway.app import create_app
from gateway.payment_signature import sign_payment
from loaders.config_files import load_policy, load_profile
from runtime.time_skipping import terminate_when_idle
from runtime.worker_build import sandbox_runner
from tests.support.gateway import PAYMENTS_SECRET, gateway_settings, keyed
from tests.support.polling import poll_until
from tests.support.temporal import loan_input, overdue_since, running_worker, time_env  # noqa: F401 (fixture)
from workflows.dunning import DunningWorkflow

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config"
DUE = date(2026, 11, 1)
TERMS = {"late_fee": "50.00", "penalty_rate_annual": "0.18", "returned_payment_fee": "15.00"}
# The default policy (cn profile) with charges the contract then limits.
FEES_POLICY = """
[charges]
late_fee = "100.00"
late_fee_day = 1
penalty_rate_annual = "0.24"
interest_from_day = 1
rounding = "ROUND_HALF_UP"
"""


# ------------------------------------------------------------ the transition


def _loan(terms: dict | None = TERMS) -> LoanState:
    extra = {"contract_terms": terms} if terms else {}
    start = carry.read_start(loan_input("L-REV", DUE, **extra))
    state = start.state
    state.time_zone, state.stage = "Asia/Shanghai", "call"
    return state


def _terms(state: LoanState):
    policy = load_policy("default", CONFIG / "policies")
    policy = policy.model_copy(update={"charges": policy.charges.model_copy(
        update={"late_fee": Decimal("100.00"), "penalty_rate_annual": Decimal("0.24")})})
    return terms_for(policy, load_profile("cn", CONFIG / "profiles"), state)


def _moment(day: int, hour: int = 12) -> Moment:
    clock = LoanClock(datetime(2026, 11, 1, tzinfo=timezone.utc), "Asia/Shanghai", DUE)
    now = clock.real_time(clock.at(day)) + timedelta(hours=hour)
    return Moment("dunning-L-REV", "run-1", now, clock)


def _reversal(payment_id: str, reason: str = "NSF") -> PaymentReversedSignal:
    return PaymentReversedSignal.model_validate({"payment_id": payment_id, "reason": reason})


def _parts(state: LoanState) -> tuple:
    return state.fees_due, state.interest_due, state.principal_due, state.amount_paid


def test_a_reversal_undoes_exactly_the_payments_allocation_and_charges_the_contracts_fee_within_the_cap():
    state = _loan()
    terms = _terms(state)
    post_charges(terms, state, 10)
    before = _parts(state)
    assert before[:3] == (Decimal("0.78"), Decimal("5.33"), Decimal("1200.00"))  # the cn cap cut the late fee

    receipt = receive_payment(state, {"payment_id": "P-1", "amount": "100.00", "currency": "CNY"}, _moment(10), terms)
    [allocation] = state.payment_allocations
    assert (allocation.fees, allocation.interest, allocation.principal) == (Decimal("0.78"), Decimal("5.33"), Decimal("93.89"))
    assert {k: receipt.records[0].fields[k] for k in ("fees_paid", "interest_paid", "principal_paid", "overpaid")} == {
        "fees_paid": "0.78", "interest_paid": "5.33", "principal_paid": "93.89", "overpaid": "0.00"}

    [record] = reversals.reverse_payment(state, _reversal("P-1"), _moment(10, hour=13), terms)

    # Every cent back where it was, then the returned-payment fee (15.00 in
    # the contract) cut to what the cn cost cap leaves by day 10: 1200 x 0.24
    # x 10 / 365 = 7.89 (rounded down) less the 6.11 charged.
    fee = Decimal("7.89") - Decimal("6.11")
    assert _parts(state) == (before[0] + fee, before[1], before[2], Decimal("0"))
    assert state.fees_charged == Decimal("0.78") + fee and state.interest_charged == Decimal("5.33")
    assert record.kind == "payment_reversal" and record.fields["key"] == "dunning-L-REV/payment/P-1/reversal"
    assert (record.fields["fees"], record.fields["interest"], record.fields["principal"]) == ("0.78", "5.33", "93.89")
    assert record.fields["returned_payment_fee"] == str(fee) and record.fields["outstanding"] == "1207.89"

    # The same reversal again, an unknown payment: nothing changes, and the rejection says why.
    after = (_parts(state), len(state.reversals))
    with pytest.raises(SignalRejected, match="P-1 was reversed already"):
        reversals.reverse_payment(state, _reversal("P-1"), _moment(11), terms)
    with pytest.raises(SignalRejected, match="no payment P-404 was applied"):
        reversals.reverse_payment(state, _reversal("P-404"), _moment(11), terms)
    assert (_parts(state), len(state.reversals)) == after


def test_without_a_returned_payment_fee_in_the_contract_none_is_charged_and_an_overpayment_is_undone_whole():
    state = _loan({"late_fee": "50.00", "penalty_rate_annual": "0.18"})
    terms = _terms(state)
    post_charges(terms, state, 3)
    owed = state.outstanding
    receive_payment(state, {"payment_id": "P-ALL", "amount": str(owed + Decimal("10.00")), "currency": "CNY"}, _moment(3), terms)
    assert state.outstanding == 0 and state.payment_allocations[0].overpaid == Decimal("10.00")

    reversals.reverse_payment(state, _reversal("P-ALL"), _moment(3, hour=14), terms)

    assert state.outstanding == owed and state.amount_paid == 0 and state.fees_charged + state.interest_charged == owed - Decimal("1200.00")


def test_a_payment_applied_before_allocations_were_kept_is_refused_by_name():
    state = _loan(None)
    state.applied_payment_ids.append("P-OLD")  # applied by a worker from before reversals
    state.amount_paid, state.principal_due = Decimal("100.00"), Decimal("1100.00")
    with pytest.raises(SignalRejected, match="P-OLD was applied before allocations were kept"):
        reversals.reverse_payment(state, _reversal("P-OLD"), _moment(5), None)
    assert state.principal_due == Decimal("1100.00") and state.reversals == []


def test_a_bad_reversal_names_the_field():
    from dunning.inputs import InputError, parse_signal

    for payload, field in (({"reason": "NSF"}, "payment_id"), ({"payment_id": "P-1"}, "reason"),
                           ({"payment_id": "P-1", "reason": "NSF", "reversed_at": "yesterday"}, "reversed_at"),
                           ({"payment_id": "P 1", "reason": "NSF"}, "payment_id")):
        with pytest.raises(InputError, match=f"^{field}:"):
            parse_signal(PaymentReversedSignal, payload)


# --------------------------------------------------------- the workflow


def with_fees_policy(settings, tmp_path: Path):
    config = tmp_path / "config"
    shutil.copytree(CONFIG, config)
    (config / "policies" / "fees.toml").write_text(f'extends = "default"\nname = "fees"\n{FEES_POLICY}', encoding="utf-8")
    return settings.model_copy(update={"config_dir": config})


async def status(handle) -> dict:
    return await handle.query("status")


async def until(handle, condition, what: str) -> dict:
    """Status once `condition` holds, polled in real time (the server's clock stays where it is)."""
    return await poll_until(lambda: status(handle), condition, lambda: asyncio.sleep(0.05), 300,
                            lambda shown: f"{what} never came: {json.dumps(shown)[:1500]}")


async def until_day(env, handle, condition, what: str, days: int = 3) -> dict:
    """Status once `condition` holds, moving the server's clock 30 minutes a try."""
    return await poll_until(lambda: status(handle), condition, lambda: env.sleep(timedelta(minutes=30)), days * 48,
                            lambda shown: f"{what} never came: {json.dumps(shown)[:1500]}")


def signed(body: bytes, secret: str = PAYMENTS_SECRET, **kwargs) -> dict:
    return {"X-Dunning-Signature": sign_payment(secret, body, **kwargs), "Content-Type": "application/json"}


def reversal_body(loan_id: str, payment_id: str, reason: str = "NSF") -> bytes:
    return json.dumps({"loan_id": loan_id, "payment_id": payment_id, "reason": reason,
                       "reversed_at": "2026-11-12T09:30:00+08:00"}).encode()


async def test_a_partial_payment_reversed_through_the_signed_endpoint_restores_the_exact_balance(
    time_env, settings, seeded_borrower, session_factory, tmp_path
):
    settings = with_fees_policy(settings, tmp_path)
    async with running_worker(time_env.client, settings) as loans:
        core = settings.model_copy(update={"task_queue": loans.task_queue})
        app = create_app(core, lambda: time_env.client, gateway_settings(tmp_path))
        handle = await loans.start(loan_input("L-REV-PART", await overdue_since(time_env, 10), policy="fees",
                                              contract_terms=TERMS))
        await time_env.sleep(timedelta(hours=1))
        before = await until(handle, lambda s: s["stage"] == "call", "the call stage")
        await handle.signal("repayment", {"payment_id": "P-100", "amount": "100.00", "currency": "CNY"})
        paid = await until(handle, lambda s: s["amount_paid"] == "100.00", "the payment")

        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver",
                                     headers=keyed(app)) as http:
            body = reversal_body("L-REV-PART", "P-100")
            # Unsigned, forged, stale, tampered or another body's: 401, nothing signalled.
            for headers in ({"Content-Type": "application/json"}, signed(body, "not-the-secret"),
                            signed(body, timestamp=int(time.time()) - 600),
                            {"X-Dunning-Signature": sign_payment(PAYMENTS_SECRET, body).replace("v1=", "v1=0")},
                            signed(reversal_body("L-REV-PART", "P-OTHER"))):
                refused = await http.post("/payments/reversals", content=body, headers=headers)
                assert refused.status_code == 401, (headers, refused.text)
            bad = json.dumps({"loan_id": "L-REV-PART", "payment_id": "P-100"}).encode()
            missing = await http.post("/payments/reversals", content=bad, headers=signed(bad))
            assert missing.status_code == 422 and ["body", "reason"] in [e["loc"] for e in missing.json()["detail"]]
            unknown_body = reversal_body("L-REV-PART", "P-404")
            unknown = await http.post("/payments/reversals", content=unknown_body, headers=signed(unknown_body))
            assert unknown.status_code == 404 and unknown.json()["result"] == "unknown_payment", unknown.text
            assert (await status(handle))["amount_paid"] == "100.00", "nothing was signalled so far"

            first = await http.post("/payments/reversals", content=body, headers=signed(body))
            assert first.status_code == 202 and first.json()["result"] == "signaled", first.text
            reversed_ = await until(handle, lambda s: s["reversals"], "the reversal")
            await reversal_written(session_factory, "P-100")
            again = await http.post("/payments/reversals", content=body, headers=signed(body))
            # Straight to the workflow too, as a payment service with the temporal CLI would.
            await handle.signal("payment_reversed", {"payment_id": "P-100", "reason": "NSF"})
            await handle.signal("payment_reversed", {"payment_id": "P-404", "reason": "NSF"})
            await handle.signal("payment_reversed", {"payment_id": "P-100"})
            rejected = await until(handle, lambda s: len(s["rejected_signals"]) == 3, "three rejections")

    # Day 10 under the contract and the cn cap (tests/test_deep_stages.py):
    # 0.78 of fee, 5.33 of interest; 100.00 paid them and 93.89 of principal.
    assert (before["fees"], before["interest"], before["principal"]) == ("0.78", "5.33", "1200.00")
    assert (paid["fees"], paid["interest"], paid["principal"]) == ("0.00", "0.00", "1106.11")
    # Reversed: each part owed again to the cent, and the contract's 15.00
    # returned-payment fee cut to what the cap leaves on day 10 (7.89 - 6.11).
    assert (reversed_["fees"], reversed_["interest"], reversed_["principal"]) == ("2.56", "5.33", "1200.00")
    assert reversed_["amount_paid"] == "0.00" and reversed_["outstanding"] == "1207.89"
    assert reversed_["fees_charged"] == "2.56" and reversed_["stage"] == "call"
    assert reversed_["reversals"] == [{
        "payment_id": "P-100", "reason": "NSF", "reversed_at": "2026-11-12T09:30:00+08:00", "amount": "100.00",
        "fees": "0.78", "interest": "5.33", "principal": "93.89", "returned_payment_fee": "1.78", "reopened": False,
    }]
    # Counted once: the endpoint said so, and so did the workflow.
    assert again.status_code == 200 and again.json()["result"] == "duplicate"
    errors = [r["error"] for r in rejected["rejected_signals"]]
    assert "P-100 was reversed already" in errors[0] and "no payment P-404 was applied" in errors[1]
    assert errors[2].startswith("reason:")
    assert (rejected["outstanding"], rejected["fees"]) == ("1207.89", "2.56")
    with session_factory() as db:
        payment = db.scalar(select(Payment).where(Payment.payment_id == "P-100"))
        rows = db.scalars(select(PaymentReversal)).all()
        loan = db.get(Loan, "L-REV-PART")
        audited = [json.loads(e.payload) for e in db.scalars(select(AuditEntry).where(AuditEntry.kind == "payment"))]
    assert (payment.fees_paid, payment.interest_paid, payment.principal_paid) == (Decimal("0.78"), Decimal("5.33"), Decimal("93.89"))
    assert payment.reversed_at is not None and loan.amount_paid == 0
    assert [(r.payment_id, r.amount, r.returned_payment_fee, r.reopened) for r in rows] == [
        ("P-100", Decimal("100.00"), Decimal("1.78"), False)]
    assert [a.get("action", "applied") for a in audited] == ["applied", "reversed"]


async def reversal_written(session_factory, payment_id: str) -> None:
    """Until the workflow has written the reversal (the payment row marked)."""
    def written() -> bool:
        with session_factory() as db:
            return db.scalar(select(Payment.reversed_at).where(Payment.payment_id == payment_id)) is not None

    await poll_until(lambda: asyncio.to_thread(written), bool, lambda: asyncio.sleep(0.05), 300,
                     lambda _: f"the reversal of {payment_id} was never written")


async def completed(handle) -> dict:
    """The run's last status once it has completed, polled in real time.
    (Not handle.result(): awaiting it lets the time-skipping server's clock
    run on, years, once the run has completed.)"""
    from temporalio.client import WorkflowExecutionStatus

    await poll_until(handle.describe, lambda d: d.status == WorkflowExecutionStatus.COMPLETED,
                     lambda: asyncio.sleep(0.05), 300, lambda d: f"the run never completed: {d.status}")
    return await status(handle)


async def starter(time_env, task_queue: str, *args: str) -> tuple[int, str, str]:
    """`python starter.py ...` as a process against the test server and this
    test's database and task queue (the worker runs in this event loop meanwhile)."""
    env = {**os.environ, "TEMPORAL_ADDRESS": time_env.client.service_client.config.target_host,
           "TEMPORAL_NAMESPACE": time_env.client.namespace, "DUNNING_TASK_QUEUE": task_queue}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "starter.py", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    return process.returncode, out.decode(), err.decode()


async def test_the_closing_payment_reversed_reopens_the_loan_with_the_right_balance_and_stage_counted_once(
    time_env, settings, seeded_borrower, session_factory
):
    async with running_worker(time_env.client, settings) as loans:
        handle = await loans.start(loan_input("L-REV-OPEN", await overdue_since(time_env, 31)))
        # Day 31, credit_reporting: the borrower is told, then the first bureau record.
        await until_day(time_env, handle, lambda s: s["bureau"]["records"] >= 1, "the first bureau record")
        await handle.signal("repayment", {"payment_id": "P-500", "amount": "500.00", "currency": "CNY"})
        await until(handle, lambda s: s["amount_paid"] == "500.00", "the first payment")
        await handle.signal("repayment", {"payment_id": "P-700", "amount": "700.00", "currency": "CNY"})
        closed = await completed(handle)

        # The loan stands closed for two months; then its last payment comes back.
        await time_env.sleep(timedelta(days=61))
        code, out, err = await starter(time_env, loans.task_queue, "reverse", "L-REV-OPEN", "P-700", "--reason", "R01")
        assert code == 0, err
        reopened = json.loads(out)
        latest = time_env.client.get_workflow_handle("dunning-L-REV-OPEN")
        loans.handles.append(latest)  # terminated at the end
        shown = await until_day(time_env, latest, lambda s: s["stage"] == "legal" and s["reversals"],
                                "the reopened loan in legal", days=1)
        await reversal_written(session_factory, "P-700")
        # The same reversal twice more: once through the starter, once
        # straight to the workflow. Counted once.
        code_again, out_again, _ = await starter(time_env, loans.task_queue, "reverse", "L-REV-OPEN", "P-700", "--reason", "R01")
        await latest.signal("payment_reversed", {"payment_id": "P-700", "reason": "R01"})
        twice = await until(latest, lambda s: s["rejected_signals"], "the rejection")
        unknown_code, _, unknown_err = await starter(time_env, loans.task_queue, "reverse", "L-REV-OPEN", "P-NONE")
        history = await latest.fetch_history()
        await terminate_when_idle(latest, "test over", tries=100)

    assert closed["stage"] == "closed" and closed["outstanding"] == "0.00" and closed["amount_paid"] == "1200.00"
    assert reopened["result"] == "reopened" and reopened["reopened"] is True and reopened["run_id"]
    assert reopened["run_id"] != handle.result_run_id
    # The right balance: what P-700 paid (principal, with no charges on a cn
    # loan without contract terms) is owed again; P-500 still counts.
    assert (shown["outstanding"], shown["principal"], shown["amount_paid"]) == ("700.00", "700.00", "500.00")
    # The stage of that day (over 90 days past due: legal), not the one it closed in.
    assert shown["days_past_due"] >= 91 and shown["reopened"]["closed_stage"] == "credit_reporting"
    assert shown["reopened"]["payment_id"] == "P-700" and shown["reopened"]["previous_outcome"] == "repaid"
    assert [r["payment_id"] for r in shown["reversals"]] == ["P-700"] and shown["reversals"][0]["reopened"] is True
    # No step of the days it stood closed is shown as missed, nor sent.
    assert not [c for c in shown["contacts"] if c["result"] == "skipped_missed"]
    assert {c["stage"] for c in shown["contacts"]} <= {"legal"}
    assert code_again == 0 and json.loads(out_again)["result"] == "duplicate"
    assert "P-700 was reversed already" in twice["rejected_signals"][0]["error"]
    assert (twice["outstanding"], twice["amount_paid"]) == ("700.00", "500.00")
    assert unknown_code == 1 and "no payment P-NONE was applied to loan L-REV-OPEN" in unknown_err
    # The reopened run replays its own history.
    await Replayer(workflows=[DunningWorkflow], workflow_runner=sandbox_runner()).replay_workflow(history)

    with session_factory() as db:
        loan = db.get(Loan, "L-REV-OPEN")
        rows = db.scalars(select(PaymentReversal)).all()
        bureau = db.scalars(select(BureauRecord).where(BureauRecord.loan_id == "L-REV-OPEN").order_by(BureauRecord.id)).all()
        closings = [json.loads(e.payload) for e in db.scalars(
            select(AuditEntry).where(AuditEntry.loan_id == "L-REV-OPEN", AuditEntry.kind == "closing").order_by(AuditEntry.seq))]
        payments = {p.payment_id: p for p in db.scalars(select(Payment).where(Payment.loan_id == "L-REV-OPEN"))}
    assert (loan.outcome, loan.stage, loan.amount_paid) == (None, "legal", Decimal("500.00"))
    assert loan.reopened_at is not None and loan.reopen_basis is not None
    assert [(r.payment_id, r.principal, r.reopened) for r in rows] == [("P-700", Decimal("700.00"), True)]
    assert payments["P-700"].reversed_at is not None and payments["P-500"].reversed_at is None
    # The bureau: the first record, the final one (paid, 13), then the
    # correction after reopening: delinquent again, 700.00 owed.
    final = next(b for b in bureau if b.kind == "final")
    assert (bureau[0].kind, final.account_status, final.balance) == ("first", "13", Decimal("0"))
    correction = next(b for b in bureau if b.kind == "correction" and b.id > final.id)
    assert correction.balance == Decimal("700.00") and correction.account_status in ("80", "93")
    # Audited: the closing (repaid, in credit_reporting), then the reopening naming the reversal.
    assert [c.get("action", "closed") for c in closings] == ["closed", "reopened"]
    assert (closings[0]["outcome"], closings[0]["final_stage"]) == ("repaid", "credit_reporting")
    assert closings[1]["payment_id"] == "P-700" and closings[1]["previous_outcome"] == "repaid"


async def test_a_loan_paid_under_a_stay_and_a_cease_request_reopens_still_under_both_and_is_not_written_to(
    time_env, settings, seeded_borrower, session_factory
):
    """A reversal reopens a loan with the legal statuses it closed under (a
    bankruptcy's stay and a cease request, issue 18, item 1) and the notices
    it was sent: the reopened run contacts no one, and the cease request's
    final notice is not sent a second time once the stay is dismissed."""
    from services.reversals import Reversal, reverse_payment

    def legal(status_name: str, reference: str, shown: dict, **extra) -> dict:
        today = date.fromisoformat(shown["due_date"]) + timedelta(days=shown["days_past_due"])
        return {"status": status_name, "reference": reference, "effective_date": today.isoformat(), **extra}

    async with running_worker(time_env.client, settings) as loans:
        handle = await loans.start(loan_input("L-REV-LEGAL", await overdue_since(time_env, 5)))
        shown = await until(handle, lambda s: s["stage"] == "reminder", "the reminder stage")
        await handle.signal("legal_status", legal("cease_communication", "CC-9", shown))
        noticed = await until_day(time_env, handle, lambda s: any(
            c["template"] == "cease_final_notice" and c["result"] == "sent" for c in s["contacts"]), "the final notice")
        await handle.signal("legal_status", legal("bankruptcy_filed", "BK-9", noticed, chapter=13))
        await until(handle, lambda s: s["legal_status"]["status"] == "bankruptcy_filed", "the stay")
        await handle.signal("repayment", {"payment_id": "P-LEGAL", "amount": "1200.00", "currency": "CNY"})
        closed = await completed(handle)

        await time_env.sleep(timedelta(days=10))
        answer = await reverse_payment(time_env.client, session_factory, loans.task_queue,
                                       Reversal("L-REV-LEGAL", "P-LEGAL", "R01"))
        latest = time_env.client.get_workflow_handle("dunning-L-REV-LEGAL")
        loans.handles.append(latest)
        reopened = await until(latest, lambda s: s["reversals"] and (s["reopened"] or {}).get("at"), "the reopened run")
        await time_env.sleep(timedelta(days=30))
        stayed = await status(latest)
        await latest.signal("legal_status", legal("bankruptcy_dismissed", "BK-9-D", stayed))
        dismissed = await until(latest, lambda s: s["legal_status"]["status"] == "cease_communication", "the dismissal")
        await time_env.sleep(timedelta(days=30))
        later = await status(latest)
        await terminate_when_idle(latest, "test over", tries=100)

    with session_factory() as db:
        loan = db.get(Loan, "L-REV-LEGAL")
        finals = [c for c in db.scalars(select(Contact).where(Contact.loan_id == "L-REV-LEGAL"))
                  if c.template == "cease_final_notice"]
    assert closed["stage"] == "closed" and closed["legal_status"]["status"] == "bankruptcy_filed"
    assert json.loads(loan.reopen_basis)["legal_status"]["in_force"][0]["status"] == "cease_communication"
    assert answer.result == "reopened", answer
    assert reopened["outstanding"] == "1200.00"
    assert {s["status"] for s in reopened["legal_status"]["in_force"]} == {"cease_communication", "bankruptcy_filed"}
    # What it was sent before it closed is carried, and nothing is added: not under the stay...
    assert [(c["template"], c["result"]) for c in reopened["contacts"]] == [("cease_final_notice", "sent")]
    assert stayed["contacts"] == reopened["contacts"] and stayed["stage"] == reopened["stage"]
    assert stayed["next_action"].startswith("no contact or escalation: bankruptcy under chapter 13")
    # ...nor after it: the cease request still stands, and its one final notice went already.
    assert dismissed["legal_status"]["status"] == "cease_communication"
    assert later["contacts"] == reopened["contacts"]
    assert len(finals) == 1, "the final notice was written to the outbox once"
