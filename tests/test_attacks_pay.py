"""Issue 14, findings 3 and 5, replayed against the gateway: the pay token
said which loan it was for, leaked through Referer, caches and frames, took a
plan from another site's form, and handed the borrower to the lender's page
with a bare `?loan=<id>`. Each attack is shown refused, with nothing changed.

The gateway runs in the test's process with a stand-in Temporal client that
answers the status query and records every update, so "no plan proposed"
means no update reached the workflow.
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from itsdangerous import BadSignature, SignatureExpired
from sqlalchemy import select

from activities.pay_link import issue_pay_link, pay_token, resolve_pay_token, revoke_pay_links, token_hash, PayLinkInvalid
from db.models import PayToken
from gateway import pay_csrf
from gateway.app import create_app
from gateway.handoff import handoff_secret, make_handoff, verify_handoff
from tests.conftest import TEST_PAY_LINK_SECRET
from tests.support.gateway import gateway_settings
from tests.support.pay_links import mint_pay_link, plan_form, token_of

LOAN = "L-ATTACK-PAY-7"
STATUS = {
    "loan_id": LOAN, "policy": "default", "stage": "negotiation", "outstanding": "1200.00", "fees": "0.00",
    "interest": "0.00", "currency": "CNY", "due_date": "2026-11-01", "days_past_due": 16, "plan": None,
}


class Workflow:
    def __init__(self, updates: list) -> None:
        self.updates = updates

    async def query(self, name):
        return dict(STATUS)

    async def execute_update(self, name, payload):
        self.updates.append((name, payload))
        return {"plan_no": 1, "total": "1200.00", "installments": []}


class Temporal:
    def __init__(self) -> None:
        self.updates: list = []

    def get_workflow_handle(self, workflow_id):
        assert workflow_id == f"dunning-{LOAN}"
        return Workflow(self.updates)


@pytest.fixture
def temporal():
    return Temporal()


@pytest.fixture
def gateway(settings, tmp_path, temporal):
    app = create_app(settings, lambda: temporal, gateway_settings(tmp_path))
    with TestClient(app, base_url="http://testserver") as client:
        yield client


def decodings(text: str) -> list[str]:
    """Everything a reader might try on a token: base64 (standard and URL-safe,
    any padding, each dot-separated part) and zlib of those."""
    found = [text]
    for part in [text, *text.split(".")]:
        for decode in (base64.urlsafe_b64decode, base64.b64decode):
            for pad in ("", "=", "==", "==="):
                try:
                    raw = decode(part + pad)
                except (binascii.Error, ValueError):
                    continue
                found.append(raw.decode("latin-1"))
                try:
                    found.append(zlib.decompress(raw).decode("latin-1"))
                except zlib.error:
                    pass
    return found


# ------------------------------------------------------------ finding 3: the token names the loan


def test_a_pay_token_carries_no_loan_id_in_any_decoding_and_the_database_holds_only_its_hash(session_factory):
    link = mint_pay_link(session_factory, LOAN)
    token = token_of(link)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)
    for text in decodings(token):
        assert LOAN not in text and "ATTACK" not in text, text
    with session_factory() as db:
        [row] = db.scalars(select(PayToken)).all()
        stored = [str(getattr(row, column.key)) for column in PayToken.__table__.columns]
    assert row.token_hash == token_hash(token) and row.loan_id == LOAN
    assert all(token not in value for value in stored)
    # Two messages of the same loan get unrelated tokens.
    other = token_of(mint_pay_link(session_factory, LOAN, key=f"dunning-{LOAN}/another/message"))
    assert other != token and other[:8] != token[:8]


def test_a_retried_send_of_the_same_message_gets_the_same_link_and_one_row(session_factory):
    now = datetime.now(timezone.utc)
    links = []
    for _ in range(3):
        with session_factory.begin() as db:
            links.append(issue_pay_link(db, base_url="https://pay.example/p/", secret=TEST_PAY_LINK_SECRET,
                                        contact_key="dunning-L-9/run/remind/d3/0-sms", loan_id="L-9",
                                        workflow_id="dunning-L-9", now=now))
    assert len(set(links)) == 1 and links[0].startswith("https://pay.example/p/")
    with session_factory() as db:
        assert len(db.scalars(select(PayToken)).all()) == 1
    # The token is the secret's: another secret, another token.
    assert pay_token("another-secret", "dunning-L-9/run/remind/d3/0-sms") != token_of(links[0])


def test_empty_inputs_are_refused_naming_the_field(session_factory):
    with session_factory.begin() as db:
        for kwargs, field in (({"secret": ""}, "secret"), ({"contact_key": ""}, "contact_key"),
                              ({"loan_id": ""}, "loan_id"), ({"base_url": " "}, "base_url")):
            arguments = {"base_url": "https://pay.example/p", "secret": "s", "contact_key": "k", "loan_id": "L-1",
                         "workflow_id": "dunning-L-1", "now": datetime.now(timezone.utc)} | kwargs
            with pytest.raises(ValueError, match=field):
                issue_pay_link(db, **arguments)


def test_unknown_expired_and_revoked_tokens_are_refused_alike_and_write_nothing(gateway, session_factory, temporal):
    live = token_of(mint_pay_link(session_factory, LOAN))
    expired = token_of(mint_pay_link(session_factory, LOAN, key="old", age_days=31))
    revoked = token_of(mint_pay_link(session_factory, "L-REVOKED", key="revoked"))
    with session_factory.begin() as db:
        assert revoke_pay_links(db, "L-REVOKED", datetime.now(timezone.utc)) == 1
    unknown = pay_token(TEST_PAY_LINK_SECRET, "a message never sent")
    with session_factory() as db:
        before = [(r.token_hash, r.revoked_at) for r in db.scalars(select(PayToken).order_by(PayToken.id))]

    answers = [gateway.get(f"/pay/{token}") for token in (unknown, expired, revoked, live[:-1], "x" * 200)]
    # The same answer (but for the page's fresh CSP nonce).
    same = {(a.status_code, re.sub(r'nonce="[^"]+"', "", a.text)) for a in answers}
    assert len(same) == 1
    assert answers[0].status_code == 410 and "expired" in answers[0].text
    for token in (unknown, expired, revoked):
        plan = gateway.post(f"/pay/{token}/plan", data={"offer": "0"})
        assert plan.status_code == 410
    assert temporal.updates == []
    with session_factory() as db:
        assert [(r.token_hash, r.revoked_at) for r in db.scalars(select(PayToken).order_by(PayToken.id))] == before
        with pytest.raises(PayLinkInvalid):
            resolve_pay_token(db, expired, datetime.now(timezone.utc))
    assert gateway.get(f"/pay/{live}").status_code == 200


# ------------------------------------------------------------ finding 5: the token leaks


def test_every_pay_page_answer_forbids_referrer_cache_framing_script_and_sniffing(gateway, session_factory):
    token = token_of(mint_pay_link(session_factory, LOAN))
    answers = [gateway.get(f"/pay/{token}"), gateway.get("/pay/unknown-token"),
               gateway.post(f"/pay/{token}/plan", data={"offer": "0"}),
               gateway.post("/pay/unknown-token/plan", data={"offer": "0"})]
    assert [a.status_code for a in answers] == [200, 410, 403, 410]
    for answer in answers:
        headers = answer.headers
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["cache-control"] == "no-store"
        assert headers["x-content-type-options"] == "nosniff"
        csp = {d.strip().split(" ", 1)[0]: d.strip() for d in headers["content-security-policy"].split(";")}
        assert csp["frame-ancestors"] == "frame-ancestors 'none'" and csp["default-src"] == "default-src 'none'"
        assert "unsafe-inline" not in headers["content-security-policy"] and "script-src" not in csp
        nonce = re.search(r"'nonce-([^']+)'", csp["style-src"]).group(1)
        assert f'<style nonce="{nonce}">' in answer.text


def test_a_cross_site_plan_post_is_refused_and_no_plan_is_proposed(gateway, session_factory, temporal):
    token = token_of(mint_pay_link(session_factory, LOAN))
    page = gateway.get(f"/pay/{token}")
    assert page.status_code == 200 and pay_csrf.COOKIE in page.cookies
    set_cookie = page.headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=strict" in set_cookie and "path=/pay/" in set_cookie
    field = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)

    # Another site's form: no field, no cookie (SameSite=Strict), its own Origin.
    gateway.cookies.clear()
    attacks = [
        ({"offer": "0"}, {}, {"Origin": "https://evil.example"}),
        ({"offer": "0"}, {}, {}),
        ({"offer": "0", "csrf": field}, {}, {}),  # the field copied, without this browser's cookie
        ({"offer": "0", "csrf": "forged"}, {pay_csrf.COOKIE: "c" * 43}, {}),
        ({"offer": "0", "csrf": field}, {pay_csrf.COOKIE: page.cookies[pay_csrf.COOKIE]}, {"Sec-Fetch-Site": "cross-site"}),
        ({"offer": "0", "csrf": field}, {pay_csrf.COOKIE: page.cookies[pay_csrf.COOKIE]}, {"Origin": "null"}),
    ]
    for data, cookies, headers in attacks:
        gateway.cookies.clear()
        for name, value in cookies.items():
            gateway.cookies.set(name, value, path="/pay/")
        refused = gateway.post(f"/pay/{token}/plan", data=data, headers=headers)
        assert refused.status_code == 403, (data, cookies, headers, refused.status_code)
        assert "reload" in refused.text and "CNY" not in refused.text
    # A proof made for another pay token does not open this one.
    other = token_of(mint_pay_link(session_factory, LOAN, key="another"))
    data, cookies = plan_form(other, "0")
    gateway.cookies.clear()
    gateway.cookies.set(pay_csrf.COOKIE, cookies[pay_csrf.COOKIE], path="/pay/")
    assert gateway.post(f"/pay/{token}/plan", data=data).status_code == 403
    assert temporal.updates == []

    # The borrower's own browser, with the page's field and cookie, from our origin: the plan goes through.
    gateway.cookies.clear()
    gateway.cookies.set(pay_csrf.COOKIE, page.cookies[pay_csrf.COOKIE], path="/pay/")
    chosen = gateway.post(f"/pay/{token}/plan", data={"offer": "0", "csrf": field},
                          headers={"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"})
    assert chosen.status_code == 200, chosen.text
    assert [name for name, _ in temporal.updates] == ["propose_plan"]


def test_the_hand_off_to_the_lender_is_a_signed_short_lived_token_not_the_loan_id(gateway, session_factory, settings, tmp_path):
    token = token_of(mint_pay_link(session_factory, LOAN))
    page = gateway.get(f"/pay/{token}")
    hrefs = [h for h in re.findall(r'href="([^"]+)"', page.text) if h.startswith("https://lender.example/pay")]
    # Pay and plan (a dispute is the page's own form since issue 17, not a hand-off).
    assert len(hrefs) == 2 and all('rel="noreferrer"' in page.text for _ in hrefs)
    secret = handoff_secret("", settings.signing_secret())
    assert secret != settings.signing_secret()
    actions = []
    for href in hrefs:
        href = href.replace("&amp;", "&")
        query = parse_qs(urlsplit(href).query)
        assert set(query) == {"handoff"} and "loan=" not in href and LOAN not in href
        data = verify_handoff(secret, query["handoff"][0], max_age_seconds=900)
        assert (data["loan_id"], data["amount"], data["currency"]) == (LOAN, "1200.00", "CNY")
        actions.append(data["action"])
        with pytest.raises(BadSignature):
            verify_handoff("the-lender-has-another-secret", query["handoff"][0])
    assert sorted(actions) == ["pay", "plan"]

    # Tampered: another loan's id under this signature.
    signed = make_handoff(secret, LOAN, "1200.00", "CNY", "pay")
    payload, timestamp, signature = signed.split(".")
    forged = make_handoff("attacker", "L-OTHER", "1.00", "CNY", "pay").split(".")[0]
    with pytest.raises(BadSignature):
        verify_handoff(secret, f"{forged}.{timestamp}.{signature}")
    with pytest.raises(BadSignature):
        verify_handoff(secret, signed[:-2] + ("AA" if not signed.endswith("AA") else "BB"))
    # Expired: older than the lender allows.
    with pytest.raises(SignatureExpired):
        verify_handoff(secret, signed, max_age_seconds=-1)
    with pytest.raises(ValueError, match="action"):
        make_handoff(secret, LOAN, "1", "CNY", "refund")


def test_a_configured_hand_off_secret_is_the_one_the_pages_sign_with(settings, tmp_path, temporal, session_factory):
    edge = gateway_settings(tmp_path).model_copy(update={"lender_handoff_secret": __import__("pydantic").SecretStr("shared-with-lender")})
    assert "shared-with-lender" not in repr(edge)
    with TestClient(create_app(settings, lambda: temporal, edge)) as client:
        page = client.get(f"/pay/{token_of(mint_pay_link(session_factory, LOAN))}")
    href = re.search(r'href="(https://lender\.example/pay[^"]+)"', page.text).group(1).replace("&amp;", "&")
    assert verify_handoff("shared-with-lender", parse_qs(urlsplit(href).query)["handoff"][0])["loan_id"] == LOAN
