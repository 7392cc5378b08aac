"""Issue 14, findings 4 and 6, replayed against the gateway and refused.

4. Request bodies had no size limit: one unsigned 400 MB POST /payments grew
   the gateway by 600 MB before it answered 401, and a JSON object with 2
   million keys was parsed whole. Now a body over the limit is a 413 before
   it is read (or the moment a chunked one goes over), a signed endpoint
   without its signature header is refused unread, and JSON too deep or with
   too many keys is a 422 naming the limit before anything is built.
6. There was no rate limit: each pay-page or /loans hit ran a Temporal query.
   Now 429 with Retry-After per client address, per pay token and per API key.

Each attack runs against the ASGI app in this process (httpx.ASGITransport),
with a Temporal client factory that records being called: a refused request
never gets as far as Temporal. Rate windows are an hour long and the requests
are sent back to back, so no test depends on the clock.
"""

from __future__ import annotations

import json

import httpx
import psutil
import pytest
from fastapi.exceptions import RequestValidationError

from gateway import bodies
from gateway.app import create_app
from gateway.bodies import MAX_JSON_DEPTH, MAX_JSON_ITEMS, parse_json
from gateway.payment_signature import sign_payment
from tests.support.gateway import PAYMENTS_SECRET, gateway_settings

MiB = 1024 * 1024
CHUNK = b"x" * (64 * 1024)


class Upload:
    """A request body streamed in 64 KiB chunks, counting how many the server pulled."""

    def __init__(self, total: int) -> None:
        self.chunks = total // len(CHUNK)
        self.pulled = 0

    async def __aiter__(self):
        for _ in range(self.chunks):
            self.pulled += 1
            yield CHUNK


class Temporal:
    """A client factory that counts calls: refused requests must not reach Temporal."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self):
        self.calls += 1
        raise ConnectionError("no Temporal in this test")


def client(app, address: str = "203.0.113.7") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
def temporal() -> Temporal:
    return Temporal()


@pytest.fixture
def make_app(settings, tmp_path, temporal):
    def make(**edge):
        return create_app(settings, temporal, gateway_settings(tmp_path).model_copy(update=edge))

    return make


def two_million_keys() -> bytes:
    return b"{" + b",".join(b'"k%d":0' % i for i in range(2_000_000)) + b"}"


@pytest.fixture
def loads_calls(monkeypatch) -> list[int]:
    """Every json.loads call made (gateway/bodies.py, FastAPI and Starlette all go through it)."""
    calls: list[int] = []
    real = json.loads

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(json, "loads", counted)
    return calls


# ------------------------------------------------------------ finding 4: body size


async def test_a_declared_400_mb_body_is_413_before_one_byte_is_read(make_app, temporal):
    app = make_app()
    upload = Upload(400 * MiB)
    async with client(app) as http:
        response = await http.post(
            "/payments", content=upload,
            headers={"X-Dunning-Signature": "t=1,v1=00", "Content-Length": str(400 * MiB)},
        )
    assert response.status_code == 413
    assert "1,048,576 bytes" in response.json()["detail"]
    assert upload.pulled == 0 and temporal.calls == 0


async def test_a_streamed_50_mb_body_is_cut_off_at_the_limit_and_memory_stays_bounded(make_app, temporal):
    app = make_app()
    upload = Upload(50 * MiB)
    process = psutil.Process()
    async with client(app) as http:
        before = process.memory_info().rss
        # No Content-Length (chunked): counted as it arrives. The route reads
        # the whole body before it checks the (bogus) signature.
        response = await http.post("/payments", content=upload, headers={"X-Dunning-Signature": "t=1,v1=00"})
        grown = process.memory_info().rss - before
    assert response.status_code == 413
    # Stopped within a chunk of the 1 MiB limit: 17 of the 800 chunks.
    assert upload.pulled <= MiB // len(CHUNK) + 1 < upload.chunks
    assert grown < 30 * MiB
    assert temporal.calls == 0


async def test_without_the_limit_the_same_body_is_read_whole(make_app):
    """The negative control: the count above shows the limit, not the transport, stopping the read."""
    app = make_app(max_body_bytes=100 * MiB)
    upload = Upload(8 * MiB)
    async with client(app) as http:
        response = await http.post("/payments", content=upload, headers={"X-Dunning-Signature": "t=1,v1=00"})
    assert response.status_code == 401
    assert upload.pulled == upload.chunks


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_an_unsigned_huge_payment_is_401_without_its_body_read(make_app, temporal, declared):
    app = make_app()
    upload = Upload(400 * MiB)
    headers = {"Content-Length": str(400 * MiB)} if declared else {}
    async with client(app) as http:
        response = await http.post("/payments", content=upload, headers=headers)
    assert response.status_code == 401 and response.json() == {"detail": "unauthorized"}
    assert upload.pulled == 0 and temporal.calls == 0


@pytest.mark.parametrize("path", ["/webhooks/twilio/inbound", "/webhooks/twilio/status?key=k", "/webhooks/sendgrid/events"])
async def test_an_unsigned_huge_webhook_is_403_without_its_body_read(make_app, temporal, path):
    app = make_app()
    upload = Upload(100 * MiB)
    async with client(app) as http:
        response = await http.post(path, content=upload)
    assert response.status_code == 403 and response.json() == {"detail": "forbidden"}
    assert upload.pulled == 0 and temporal.calls == 0


async def test_a_content_length_that_is_not_a_number_is_400(make_app):
    async with client(make_app()) as http:
        response = await http.post("/loans/overdue", content=b"{}", headers={"Content-Length": "12abc"})
    assert response.status_code == 400 and "Content-Length" in response.json()["detail"]


# ------------------------------------------------------------ finding 4: JSON shape


def test_the_parser_refuses_2_million_keys_without_building_them(loads_calls):
    with pytest.raises(RequestValidationError) as refused:
        parse_json(two_million_keys(), dict, "a JSON object", "model_attributes_type")
    (error,) = refused.value.errors()
    assert error["loc"] == ("body", "(payload)") and f"{MAX_JSON_ITEMS:,} keys and items" in error["msg"]
    assert loads_calls == []  # refused by the scan, before json.loads built a dict


def test_the_scan_stops_at_the_first_item_over_the_limit(monkeypatch):
    """Stopped early: the scan looks at about MAX_JSON_ITEMS tokens, not 2 million."""
    seen: list[int] = []
    tokens = bodies._JSON_TOKENS

    class Counting:
        def finditer(self, text):
            for token in tokens.finditer(text):
                seen.append(1)
                yield token

    monkeypatch.setattr(bodies, "_JSON_TOKENS", Counting())
    assert bodies.json_limit_problem(two_million_keys()) is not None
    # Each member is a key string and a comma: about two tokens per item.
    assert len(seen) <= 2 * MAX_JSON_ITEMS + 2


async def test_a_2_million_key_body_is_refused_at_the_edge(make_app, temporal, loads_calls):
    body = two_million_keys()
    async with client(make_app()) as http:  # the default 1 MiB limit: refused by its size, unread
        assert (await http.post("/loans/overdue", content=body, headers={"Content-Type": "application/json"})).status_code == 413
    async with client(make_app(max_body_bytes=64 * MiB)) as http:  # a limit that lets it in: refused by its shape
        response = await http.post("/loans/overdue", content=body, headers={"Content-Type": "application/json"})
    assert loads_calls == [] and temporal.calls == 0  # nothing parsed it (before the test reads the answer)
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "(payload)"] and f"{MAX_JSON_ITEMS:,} keys and items" in error["msg"]


async def test_deep_nesting_is_refused_naming_the_limit(make_app, temporal):
    deep = b'{"loan_id": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    async with client(make_app()) as http:
        response = await http.post("/loans/overdue", content=deep, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    # the field whose value nests too deep, then where in it
    assert error["loc"][:3] == ["body", "loan_id", 0] and f"limit of {MAX_JSON_DEPTH} levels" in error["msg"]
    assert temporal.calls == 0


async def test_a_signed_payment_nested_too_deep_is_refused_naming_the_limit(make_app, temporal):
    """Signed endpoints parse their own body after the signature: the same limit, in gateway/bodies.py."""
    deep = b'{"loan_id": ' + b"[" * 40 + b"]" * 40 + b"}"
    async with client(make_app()) as http:
        response = await http.post(
            "/payments", content=deep,
            headers={"X-Dunning-Signature": sign_payment(PAYMENTS_SECRET, deep), "Content-Type": "application/json"},
        )
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"][:2] == ["body", "loan_id"] and f"limit of {MAX_JSON_DEPTH} levels" in error["msg"]
    assert temporal.calls == 0


def test_json_within_the_limits_parses_as_before():
    ok = json.dumps({"a": [1, 2, {"b": "x,[{"}], "c": list(range(100))}).encode()
    assert parse_json(ok, dict, "a JSON object", "model_attributes_type")["a"][2]["b"] == "x,[{"
    assert bodies.json_limit_problem(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH) is None
    assert bodies.json_limit_problem(json.dumps(list(range(MAX_JSON_ITEMS))).encode()) is None
    assert bodies.json_limit_problem(json.dumps(list(range(MAX_JSON_ITEMS + 1))).encode()) is not None


# ------------------------------------------------------------ finding 6: rate limits


def assert_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert 1 <= int(response.headers["Retry-After"]) <= 3600
    assert response.json() == {"detail": "too many requests"}


async def test_the_pay_page_is_rate_limited_per_address(make_app):
    app = make_app(rate_limit_per_ip="3/hour", rate_limit_per_pay_token="100/hour")
    async with client(app, "198.51.100.1") as http:
        for n in range(3):
            assert (await http.get(f"/pay/forged-{n}")).status_code != 429
        assert_limited(await http.get("/pay/forged-3"))
        assert_limited(await http.post("/pay/forged-4/plan", data={"offer": "0"}))
    async with client(app, "198.51.100.2") as other:
        assert (await other.get("/pay/forged-3")).status_code != 429


async def test_one_pay_token_is_rate_limited_from_every_address(make_app):
    app = make_app(rate_limit_per_ip="100/hour", rate_limit_per_pay_token="2/hour")
    for address in ("198.51.100.1", "198.51.100.2"):
        async with client(app, address) as http:
            assert (await http.get("/pay/the-token")).status_code != 429
    async with client(app, "198.51.100.3") as http:
        assert_limited(await http.get("/pay/the-token"))
        assert (await http.get("/pay/another-token")).status_code != 429


async def test_the_internal_api_is_rate_limited_per_key(make_app, temporal):
    app = make_app(rate_limit_per_key="2/hour", rate_limit_per_ip="100/hour")
    first, second = {"Authorization": "Bearer dk_one_secret"}, {"Authorization": "Bearer dk_two_secret"}
    async with client(app) as http:
        for _ in range(2):
            assert (await http.get("/loans/L-1", headers=first)).status_code != 429
        assert_limited(await http.get("/loans/L-1", headers=first))
        # the same address, another key: still served
        assert (await http.get("/loans/L-1", headers=second)).status_code != 429


async def test_inventing_a_new_bearer_value_for_every_request_is_still_limited_per_address(make_app):
    """Review of issue 14: the per-key count alone let a stranger who sends a
    fresh made-up key each time go unlimited."""
    app = make_app(rate_limit_keyed_per_ip="3/hour", rate_limit_per_key="100/hour")
    async with client(app, "198.51.100.20") as http:
        for n in range(3):
            assert (await http.get("/loans/L-1", headers={"Authorization": f"Bearer dk_made_up_{n}"})).status_code != 429
        assert_limited(await http.get("/loans/L-1", headers={"Authorization": "Bearer dk_made_up_again"}))
    async with client(app, "198.51.100.21") as http:  # another address is still served
        assert (await http.get("/loans/L-1", headers={"Authorization": "Bearer dk_made_up_x"})).status_code != 429


async def test_the_internal_api_without_a_key_is_rate_limited_per_address(make_app):
    app = make_app(rate_limit_per_ip="2/hour")
    async with client(app, "198.51.100.9") as http:
        for _ in range(2):
            assert (await http.get("/loans/L-1")).status_code != 429
        assert_limited(await http.get("/loans/L-1"))


def test_a_rate_limit_setting_that_is_not_one_names_the_setting(make_app):
    with pytest.raises(ValueError, match="DUNNING_GATEWAY_RATE_LIMIT_PER_IP"):
        make_app(rate_limit_per_ip="lots")


async def test_a_route_that_reads_its_own_body_refuses_a_stranger_before_judging_the_body(make_app):
    """Field reports parse their body after the key is checked: no key is a 401, however deep the body."""
    deep = b'{"promise": ' + b"[" * 100 + b"]" * 100 + b"}"
    async with client(make_app()) as http:
        response = await http.post("/visits/V-1/report", content=deep, headers={"Content-Type": "application/json"})
    assert response.status_code == 401
