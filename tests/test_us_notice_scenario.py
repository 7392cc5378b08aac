"""Issue 15, end to end on the time-skipping server: a US loan placed with an
itemization; its validation notice delivered by e-mail before any collection
contact; a bounced notice falling back to a mailed letter; and a dispute in
the validation period that stops collection until verification is sent.

The server's clock is moved to 10:00 in New York first (the borrower's zone
and state), so the verdict does not depend on the hour the suite runs at."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from channels.lob_letter import HTML_MAX_CHARS
from db.directory import upsert_placements
from db.models import Contact
from dunning.validation_period import period_end
from services.placement import validate_placements
from tests.support.polling import poll_until
from tests.support.temporal import overdue_since, running_worker, time_env  # noqa: F401 (fixture)

NEW_YORK = ZoneInfo("America/New_York")
NOTICE_EMAIL = "notice/validation/email"


async def ten_in_new_york(env) -> None:
    """Skip the server's clock to the next 10:00 in New York."""
    now = (await env.get_current_time()).astimezone(NEW_YORK)
    target = now.replace(hour=10, minute=0, second=0, microsecond=0)
    if target <= now:
        target += timedelta(days=1)
    await env.sleep(target - now)


def placement(loan_id: str, borrower_id: str, due_date) -> dict:
    return {
        "loan_id": loan_id, "borrower_id": borrower_id, "amount_due": "1254.50", "currency": "USD",
        "due_date": due_date.isoformat(), "policy": "us",
        "borrower": {
            "name": "Jane Doe", "email": f"{borrower_id.lower()}@example.com", "language": "en",
            "time_zone": "America/New_York", "address_line1": "12 Main Street", "city": "Albany",
            "region": "NY", "postal_code": "12207", "country": "US",
        },
        "itemization": {
            "itemization_date": (due_date - timedelta(days=30)).isoformat(),
            "amount_on_itemization_date": "1200.00", "interest_since": "42.50", "fees_since": "25.00",
            "payments_since": "13.00", "credits_since": "0.00",
            "current_creditor": "Example Lending LLC", "creditor_on_itemization_date": "Example Lending LLC",
            "account_number": "4000123412341234", "debt_type": "consumer_financial_product",
        },
    }


def outbox_row(session_factory, loan_id: str, channel: str) -> Contact | None:
    """The loan's validation notice by `channel`, as the outbox wrote it."""
    with session_factory() as db:
        return db.scalars(select(Contact).where(
            Contact.loan_id == loan_id, Contact.channel == channel, Contact.template == "validation_notice")).first()


async def status_when(env, handle, condition, what: str, tries: int = 60, step=timedelta(minutes=10)):
    return await poll_until(
        lambda: handle.query("status"), condition, lambda: env.sleep(step), tries,
        lambda status: f"{what} never happened: {status and {k: status.get(k) for k in ('stage', 'contacts', 'next_action', 'validation_notice')}}",
    )


def sent(status: dict) -> list[dict]:
    return [c for c in status["contacts"] if not c["result"].startswith("skipped") and c["result"] not in ("failed", "bounced", "undelivered")]


@pytest.mark.asyncio
@pytest.mark.sqlite_only  # fixed loan ids on the session's time-skipping server
async def test_a_us_loan_notice_delivered_then_collection_and_a_bounce_to_a_letter_then_a_dispute_held_until_verification(
    time_env, settings, session_factory,
):
    await ten_in_new_york(time_env)
    due = await overdue_since(time_env, 1, "America/New_York")
    upsert_placements(session_factory, validate_placements([
        placement("L-US-NOTICE-1", "B-US-NOTICE-1", due), placement("L-US-NOTICE-2", "B-US-NOTICE-2", due),
    ]))
    async with running_worker(time_env.client, settings) as loans:
        delivered = await loans.start({"loan_id": "L-US-NOTICE-1", "borrower_id": "B-US-NOTICE-1", "amount_due": "1254.50",
                                       "currency": "USD", "due_date": due.isoformat(), "policy": "us"})
        bounced = await loans.start({"loan_id": "L-US-NOTICE-2", "borrower_id": "B-US-NOTICE-2", "amount_due": "1254.50",
                                     "currency": "USD", "due_date": due.isoformat(), "policy": "us"})

        # 1. Both send the notice by e-mail first, and nothing else while
        # no delivery report has come.
        for handle in (delivered, bounced):
            status = await status_when(time_env, handle, lambda s: s and s["contacts"], "the notice e-mail")
            assert [(c["channel"], c["template"]) for c in sent(status)] == [("email", "validation_notice")]
        row = outbox_row(session_factory, "L-US-NOTICE-1", "email")
        assert row is not None and "cfpb.gov" in (row.body_html or "") + row.body_text
        await time_env.sleep(timedelta(hours=2))
        assert len(sent(await delivered.query("status"))) == 1

        # 2. The e-mail is reported delivered: the notice is provided, the
        # validation period's end is 1006.34(b)(5)'s date, collection starts.
        await delivered.signal("contact_outcome", {"step": NOTICE_EMAIL, "result": "delivered"})
        status = await status_when(time_env, delivered, lambda s: len(sent(s)) > 1, "a collection contact after delivery")
        notice = status["validation_notice"]
        provided = datetime.fromisoformat(status["contacts"][0]["at"]).astimezone(NEW_YORK).date()
        assert notice["channel"] == "email" and notice["provided_on"] == provided.isoformat()
        assert notice["period_ends"] == period_end(provided, 30).isoformat()

        # 3. The other bounces: a letter goes (the print-and-mail provider),
        # and it counts as provided once mailed.
        await bounced.signal("contact_outcome", {"step": NOTICE_EMAIL, "result": "bounced"})
        status = await status_when(time_env, bounced, lambda s: (s.get("validation_notice") or {}).get("channel") == "letter",
                                   "the letter")
        notices = [(c["channel"], c["result"]) for c in status["contacts"] if c["template"] == "validation_notice"]
        assert notices == [("email", "bounced"), ("letter", "sent")]
        letter = outbox_row(session_factory, "L-US-NOTICE-2", "letter")
        assert letter is not None and letter.status == "sent" and "12 Main Street" in (letter.body_html or "")
        assert len(letter.body_html) <= HTML_MAX_CHARS  # what Lob takes inline

        # 4. A dispute in the validation period; the review rejects it, yet
        # collection waits for verification (1006.38(d)(2)).
        await bounced.signal("dispute", {"reason": "not mine"})
        await status_when(time_env, bounced, lambda s: s["disputed"], "the dispute")
        await bounced.signal("dispute_resolved", {"upheld": False})
        status = await status_when(time_env, bounced, lambda s: not s["disputed"], "the review")
        assert status["validation_notice"]["verification_required"] is True
        assert "verification" in status["next_action"]
        before = len(sent(status))
        await time_env.sleep(timedelta(days=3))
        held = await bounced.query("status")
        assert len(sent(held)) == before, "no contact while awaiting verification"

        await bounced.signal("verification_sent", {"reference": "VER-77"})
        status = await status_when(time_env, bounced, lambda s: len(sent(s)) > before, "collection after verification",
                                   step=timedelta(hours=2))
        assert status["validation_notice"]["verification_reference"] == "VER-77"
