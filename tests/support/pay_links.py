"""Pay links as the outbox issues them (activities/pay_link.py), for the
gateway's tests: `mint_pay_link` writes the token's hash to the test's
database and returns the link; `plan_form` is the plan form a browser posts
after it was shown the page (its CSRF cookie and hidden field)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from activities.pay_link import issue_pay_link, token_hash
from gateway import pay_csrf
from tests.conftest import TEST_PAY_LINK_SECRET

BASE = "http://testserver/pay"


def mint_pay_link(sessions, loan_id: str, *, key: str | None = None, age_days: float = 0, max_age_days: int = 30,
                  base_url: str = BASE, secret: str = TEST_PAY_LINK_SECRET) -> str:
    """A link for `loan_id`, issued `age_days` ago (the outbox key defaults to one of its own)."""
    now = datetime.now(timezone.utc) - timedelta(days=age_days)
    with sessions.begin() as db:
        return issue_pay_link(db, base_url=base_url, secret=secret, contact_key=key or f"dunning-{loan_id}/test/pay_link",
                              loan_id=loan_id, workflow_id=f"dunning-{loan_id}", now=now, max_age_days=max_age_days)


def token_of(link: str) -> str:
    return link.rsplit("/", 1)[1]


def plan_form(token: str, offer: str, cookie: str = "c" * 43, secret: str = TEST_PAY_LINK_SECRET) -> tuple[dict, dict]:
    """(form data, cookies) of a plan form this browser was shown for `token`."""
    proof = pay_csrf.form_proof(secret, cookie, token_hash(token))
    return {"offer": offer, pay_csrf.FIELD: proof}, {pay_csrf.COOKIE: cookie}
