"""Issue 14, the attacks on who may call what, replayed and refused (gateway/auth.py,
db/api_keys.py, gateway/app.py's two faces, gateway/payment_signature.py):

- taking over a borrower's messages by placing a loan with no credentials;
- 100 made-up placements with no key;
- GET /loans/{id} with no key, for a known and an unknown id (no enumeration);
- a key without the route's scope, a revoked key, a rotated-away key;
- the key at rest (only a hash in the database) and on the command line
  (printed once; `keys list` never shows it);
- payments signed with either of two configured secrets; 401s that say
  nothing about configuration;
- /docs, /redoc and /openapi.json off by default;
- the public face serving none of the internal routes.

Temporal is unreachable here (a request that gets past authentication answers
503), so nothing but authentication decides these answers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from db.api_keys import SCOPES, create_key, list_keys, revoke_key, rotate_key, verify_key
from db.models import ApiKey, Borrower, Loan
from gateway.app import create_app
from gateway.deps import Gateway
from gateway.payment_signature import sign_payment
from gateway.settings import GatewaySettings
from tests.conftest import BORROWER
from tests.support.gateway import api_key, bearer, gateway_settings

PROJECT = Path(__file__).resolve().parent.parent
ATTACKER = {"name": "Attacker", "phone": "+8613111111111", "email": "attacker@evil.example",
            "language": "zh_CN", "time_zone": "Asia/Shanghai"}


def no_temporal():
    raise ConnectionError("no Temporal in this test")


def placement(loan_id: str, borrower_id: str = BORROWER["borrower_id"], borrower: dict = ATTACKER) -> dict:
    return {"loan_id": loan_id, "borrower_id": borrower_id, "amount_due": "99999.00", "currency": "CNY",
            "due_date": "2026-10-01", "policy": "default", "borrower": borrower}


def borrower_row(session_factory, borrower_id: str = BORROWER["borrower_id"]) -> dict | None:
    with session_factory() as db:
        row = db.get(Borrower, borrower_id)
        return None if row is None else {k: getattr(row, k) for k in ("name", "phone", "email", "language", "time_zone")}


def counts(session_factory) -> tuple[int, int]:
    with session_factory() as db:
        return len(db.scalars(select(Borrower.borrower_id)).all()), len(db.scalars(select(Loan.loan_id)).all())


@pytest.fixture
def app(settings, tmp_path):
    return create_app(settings, no_temporal, gateway_settings(tmp_path))


@pytest.fixture
def client(app):
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


# ------------------------------------------------------------------ placing without credentials


@pytest.mark.both_databases
def test_the_takeover_placement_with_no_credentials_is_refused_and_the_victims_contacts_stay(
    client, session_factory, seeded_borrower
):
    before = borrower_row(session_factory)
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Basic YTpi"},
                    {"Authorization": "Bearer dk_0000000000000000_" + "A" * 43}, {"Authorization": "Bearer guess"}):
        response = client.post("/loans/overdue", json=placement("L-ATTACK-1"), headers=headers)
        assert response.status_code == 401, (headers, response.status_code, response.text)
        assert response.json() == {"detail": "unauthorized"}
        assert response.headers["www-authenticate"] == "Bearer"
    assert borrower_row(session_factory) == before  # the victim's phone and e-mail, not the attacker's
    with session_factory() as db:
        assert db.get(Loan, "L-ATTACK-1") is None


def test_a_hundred_made_up_placements_without_a_key_are_all_refused_and_write_nothing(client, session_factory):
    before = counts(session_factory)
    answers = {client.post("/loans/overdue", json=placement(f"L-SPAM-{n}", f"B-SPAM-{n}")).status_code for n in range(100)}
    assert answers == {401}
    assert counts(session_factory) == before


def test_a_placement_without_a_key_is_refused_before_its_fields_are_validated(client):
    # An invalid record without a key is a 401, not a 422 that would describe the schema.
    # (Text that is not JSON at all is a 422 "JSON decode error" first, which says nothing.)
    for body in ({}, {"loan_id": 7}, placement("bad id!")):
        response = client.post("/loans/overdue", json=body)
        assert response.status_code == 401 and response.json() == {"detail": "unauthorized"}, body


# ------------------------------------------------------------------ reading loans


def test_get_loan_without_a_key_is_the_same_401_for_a_known_and_an_unknown_id_and_looks_nothing_up(
    app, client, monkeypatch
):
    asked: list[str] = []

    async def loan_status(self, loan_id: str):
        asked.append(loan_id)
        return {"loan_id": loan_id, "borrower_id": "B-1"} if loan_id == "L-KNOWN" else None

    monkeypatch.setattr(Gateway, "loan_status", loan_status)
    answers = []
    for loan_id in ("L-KNOWN", "L-UNKNOWN", "not an id!"):
        response = client.get(f"/loans/{loan_id}")
        answers.append((response.status_code, response.text, response.headers.get("www-authenticate")))
    assert answers == [(401, '{"detail":"unauthorized"}', "Bearer")] * 3
    assert asked == []  # refused before any lookup: nothing to time either

    # With a loans:read key the same two ids differ, as they should for the lender.
    headers = bearer(api_key(app, {"loans:read"}))
    assert client.get("/loans/L-KNOWN", headers=headers).status_code == 200
    assert client.get("/loans/L-UNKNOWN", headers=headers).status_code == 404
    assert asked == ["L-KNOWN", "L-UNKNOWN"]


# ------------------------------------------------------------------ scopes, revocation, rotation


def test_a_key_without_the_routes_scope_is_403_and_changes_nothing(app, client, session_factory, seeded_borrower):
    before = borrower_row(session_factory)
    reader = bearer(api_key(app, {"loans:read"}))
    placer = bearer(api_key(app, {"loans:place"}))
    response = client.post("/loans/overdue", json=placement("L-SCOPE-1"), headers=reader)
    assert response.status_code == 403 and response.json() == {"detail": "forbidden"}
    response = client.get("/loans/L-SCOPE-1", headers=placer)
    assert response.status_code == 403 and response.json() == {"detail": "forbidden"}
    response = client.post("/visits/V-1/report", json={"outcome": "met", "staff_ids": ["S-1", "S-2"]}, headers=reader)
    assert response.status_code == 403 and response.json() == {"detail": "forbidden"}
    assert borrower_row(session_factory) == before
    # The right scope gets past authentication (503: no Temporal here).
    assert client.get("/loans/L-SCOPE-1", headers=reader).status_code == 503


def test_revoked_and_rotated_away_keys_are_refused_and_the_new_key_works(app, client):
    sessions = app.state.gateway.sessions()
    info, key = create_key(sessions, "backend", {"loans:read"})
    assert client.get("/loans/L-1", headers=bearer(key)).status_code == 503  # accepted; no Temporal

    new_info, new_key = rotate_key(sessions, info.key_id)
    assert new_info.key_id != info.key_id and new_info.scopes == info.scopes and new_info.name == "backend"
    old = client.get("/loans/L-1", headers=bearer(key))
    assert old.status_code == 401 and old.json() == {"detail": "unauthorized"}
    assert client.get("/loans/L-1", headers=bearer(new_key)).status_code == 503

    revoke_key(sessions, new_info.key_id)
    revoked = client.get("/loans/L-1", headers=bearer(new_key))
    assert revoked.status_code == 401 and revoked.json() == {"detail": "unauthorized"}
    # A right key id with a wrong secret is refused too.
    _, other = create_key(sessions, "other", {"loans:read"})
    forged = other[:-4] + ("AAAA" if not other.endswith("AAAA") else "BBBB")
    assert client.get("/loans/L-1", headers=bearer(forged)).status_code == 401


def test_the_old_field_token_still_reports_visits_but_no_other_route(settings, tmp_path):
    core = settings.model_copy(update={"field_api_token": "field-team-token"})
    app = create_app(core, no_temporal, gateway_settings(tmp_path))
    with TestClient(app, raise_server_exceptions=False) as client:
        token = bearer("field-team-token")
        visit = client.post("/visits/V-1/report", json={"outcome": "met", "staff_ids": ["S-1", "S-2"]}, headers=token)
        assert visit.status_code == 503  # past authentication; no Temporal here
        assert client.get("/loans/L-1", headers=token).status_code == 401


# ------------------------------------------------------------------ keys at rest and on the command line


@pytest.mark.both_databases
def test_a_key_is_stored_only_as_a_hash(session_factory):
    info, key = create_key(session_factory, "backend", SCOPES)
    secret = key.rsplit("_", 1)[1] if key.count("_") == 2 else key.split("_", 2)[2]
    with session_factory() as db:
        row = db.get(ApiKey, info.key_id)
        stored = " ".join(str(getattr(row, column.key)) for column in ApiKey.__table__.columns)
    assert key not in stored and secret not in stored
    assert len(row.secret_hash) == 64 and row.secret_hash != secret
    assert verify_key(session_factory, key).key_id == info.key_id
    assert all(not hasattr(listed, "secret_hash") for listed in list_keys(session_factory))


def run_keys(settings, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DUNNING_DATABASE_URL": settings.database_url, "DUNNING_LOG_LEVEL": "WARNING"}
    return subprocess.run([sys.executable, str(PROJECT / "starter.py"), "keys", *args], cwd=PROJECT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_cli_prints_a_key_once_and_list_never_shows_it(settings, session_factory):
    made = run_keys(settings, "create", "--name", "lender-backend", "--scope", "loans:place", "--scope", "loans:read")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("dk_") and made.stdout.count(key) == 1 and key not in made.stderr
    assert verify_key(session_factory, key).scopes == {"loans:place", "loans:read"}
    key_id = key.split("_")[1]

    listed = run_keys(settings, "list")
    assert listed.returncode == 0 and key_id in listed.stdout and "lender-backend" in listed.stdout
    secret = key.split("_", 2)[2]
    assert secret not in listed.stdout and secret not in listed.stderr

    rotated = run_keys(settings, "rotate", key_id)
    assert rotated.returncode == 0, rotated.stderr
    new_key = rotated.stdout.strip()
    assert new_key.startswith("dk_") and new_key != key
    assert verify_key(session_factory, key) is None and verify_key(session_factory, new_key) is not None
    listed = run_keys(settings, "list")
    assert new_key.split("_", 2)[2] not in listed.stdout

    assert run_keys(settings, "revoke", new_key.split("_")[1]).returncode == 0
    assert verify_key(session_factory, new_key) is None
    bad = run_keys(settings, "create", "--name", "x", "--scope", "loans:everything")
    assert bad.returncode == 2 and "--scope" in bad.stderr and bad.stdout == ""


# ------------------------------------------------------------------ payments


def payment_body() -> bytes:
    return json.dumps({"loan_id": "L-PAY", "payment_id": "P-1", "amount": "10.00", "currency": "CNY"}).encode()


@pytest.mark.parametrize("configured", ["old-secret,new-secret", '["old-secret", "new-secret"]'])
def test_payments_accept_either_of_two_secrets_while_one_is_rotated(settings, tmp_path, configured):
    edge = gateway_settings(tmp_path).model_copy(update={"payments_secret": configured})
    app = create_app(settings, no_temporal, edge)
    body = payment_body()
    with TestClient(app, raise_server_exceptions=False) as client:
        for secret in ("old-secret", "new-secret"):
            response = client.post("/payments", content=body, headers={"X-Dunning-Signature": sign_payment(secret, body)})
            assert response.status_code == 503, (secret, response.text)  # signature good; no Temporal here
        response = client.post("/payments", content=body, headers={"X-Dunning-Signature": sign_payment("retired", body)})
        assert response.status_code == 401 and response.json() == {"detail": "unauthorized"}


def test_payment_refusals_say_nothing_about_the_configuration(settings, tmp_path):
    unconfigured = gateway_settings(tmp_path).model_copy(update={"payments_secret": ""})
    body = payment_body()
    with TestClient(create_app(settings, no_temporal, unconfigured), raise_server_exceptions=False) as client:
        for headers in ({}, {"X-Dunning-Signature": sign_payment("anything", body)}, {"X-Dunning-Signature": "garbage"}):
            response = client.post("/payments", content=body, headers=headers)
            assert response.status_code == 401 and response.json() == {"detail": "unauthorized"}
            assert "SECRET" not in response.text and "configured" not in response.text


# ------------------------------------------------------------------ docs and the two faces


def served_routes(app) -> list:
    """The app's routes (FastAPI keeps an included router whole, as one entry)."""
    routes = []
    for route in app.routes:
        routes.extend(route.original_router.routes if hasattr(route, "original_router") else [route])
    return routes


def test_docs_are_off_unless_enabled(settings, tmp_path):
    with TestClient(create_app(settings, no_temporal, GatewaySettings())) as client:
        for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
            assert client.get(path).status_code == 404, path
    with TestClient(create_app(settings, no_temporal, gateway_settings(tmp_path, docs=True))) as client:
        assert client.get("/openapi.json").status_code == 200 and client.get("/docs").status_code == 200


def test_the_public_face_serves_no_internal_route_and_the_internal_face_no_public_one(settings, tmp_path):
    public = create_app(settings, no_temporal, gateway_settings(tmp_path), face="public")
    internal = create_app(settings, no_temporal, gateway_settings(tmp_path), face="internal")
    key = bearer(api_key(internal))
    with TestClient(public, raise_server_exceptions=False) as client:
        assert client.post("/loans/overdue", json=placement("L-FACE"), headers=key).status_code == 404
        assert client.get("/loans/L-FACE", headers=key).status_code == 404
        assert client.post("/visits/V-1/report", json={}, headers=key).status_code == 404
        assert client.get("/health").json() == {"status": "ok"}
        assert client.get("/pay/not-a-token").status_code in (403, 404, 410)  # served (and refused)
    public_paths = {route.path for route in served_routes(public)}
    assert not any(p.startswith(("/loans", "/visits", "/borrowers", "/operator")) for p in public_paths), public_paths
    internal_paths = {route.path for route in served_routes(internal)}
    assert not any(p.startswith(("/pay", "/payments", "/webhooks")) for p in internal_paths), internal_paths
    with TestClient(internal, raise_server_exceptions=False) as client:
        assert client.get("/loans/L-FACE", headers=key).status_code == 503  # served; no Temporal here
        assert client.get("/pay/not-a-token").status_code == 404


def test_every_internal_route_refuses_a_request_without_a_key(settings, tmp_path):
    """Whatever internal routes exist (other parts add some), none answers
    without a key: each is 401 before it reads its input."""
    internal = create_app(settings, no_temporal, gateway_settings(tmp_path), face="internal")
    with TestClient(internal, raise_server_exceptions=False) as client:
        for route in served_routes(internal):
            if not hasattr(route, "methods") or route.path == "/health" or not route.include_in_schema:
                continue
            path = route.path.replace("{", "").replace("}", "")  # e.g. /loans/loan_id
            for method in route.methods - {"HEAD", "OPTIONS"}:
                response = client.request(method, path, json={})
                assert response.status_code == 401, (method, route.path, response.status_code, response.text[:200])
