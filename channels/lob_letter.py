"""Mailed letters through Lob's Print & Mail API, with Lob's official SDK
(`lob-python`, import name `lob_python`).

The fallback for the US validation notice when its e-mail bounces
(12 CFR 1006.34 / 1006.42): the letter goes by USPS first-class mail
(`mail_type=usps_first_class`), printed in black and white (`color=false`),
as operational mail (`use_type=operational`: a notice about an existing
account, not marketing), from the lender's return address saved in Lob
(`LOB_FROM_ADDRESS_ID`, an `adr_...` id: no return address is sent inline).

- The letter's content is `message.html`, an HTML document passed as Lob's
  `file` parameter (at most `HTML_MAX_CHARS` characters inline, Lob's limit).
- `message.recipient` is the postal address as JSON (activities/outbox.py
  `_recipient`): name, address_line1, address_line2, city, region,
  postal_code, country (ISO 3166 alpha-2).
- The outbox key is Lob's `Idempotency-Key`: Lob answers a repeated create
  with the same key with the letter it created the first time, so a send
  interrupted after the request went out is sent again safely
  (`idempotent_by_key = True`). It is also the letter's only metadata
  (`dunning_key`), which Lob echoes in every webhook event
  (gateway/routes/lob.py finds the outbox row by it, ids only).

Lob's errors map onto the channel interface as the other adapters' do: 429,
5xx and no answer at all are `TransientSendError` (retried); any other 4xx
(a 422 invalid address or file, a 401 bad key) is `PermanentSendError`,
with Lob's error code and message, the address's parts masked.
"""

from __future__ import annotations

import hashlib
import json

import structlog
import urllib3
from lob_python import ApiClient, Configuration
from lob_python.api.letters_api import LettersApi
from lob_python.exceptions import ApiException, ApiTypeError, ApiValueError
from lob_python.model.address_editable import AddressEditable
from lob_python.model.country_extended import CountryExtended
from lob_python.model.letter_editable import LetterEditable
from lob_python.model.ltr_use_type import LtrUseType
from lob_python.model.mail_type import MailType
from lob_python.model.metadata_model import MetadataModel

from channels.base import (
    LETTER_HTML_MAX_CHARS, OutboundMessage, PermanentSendError, ProviderReceipt, TransientSendError, mask,
)

log = structlog.get_logger("channels.lob")

LOB_API = "https://api.lob.com"
API_VERSION_PATH = "/v1"
KEY_METADATA = "dunning_key"
# Lob's limits (its OpenAPI spec, tests/specs/lob_letters_v1.json): an inline
# HTML `file` of at most 10,000 characters, an Idempotency-Key of at most 256,
# an address `name` of at most 40.
HTML_MAX_CHARS = LETTER_HTML_MAX_CHARS
IDEMPOTENCY_KEY_MAX = 256
NAME_MAX_CHARS = 40
# The recipient JSON's keys (activities/outbox.py builds it from the borrower row).
ADDRESS_FIELDS = ("name", "address_line1", "address_line2", "city", "region", "postal_code", "country")


def idempotency_key(key: str) -> str:
    """The outbox key, or (longer than Lob takes) its SHA-256: the same key
    always gives the same Idempotency-Key."""
    if len(key) <= IDEMPOTENCY_KEY_MAX:
        return key
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def postal_address(recipient: str) -> dict[str, str]:
    """The recipient JSON as a dict of non-empty strings; ValueError if it is
    not an address a letter can go to (no name, line 1 or country)."""
    try:
        parsed = json.loads(recipient)
    except (TypeError, ValueError):
        raise ValueError("the letter recipient is not JSON") from None
    if not isinstance(parsed, dict):
        raise ValueError("the letter recipient is not a JSON object")
    address = {field: parsed[field].strip() for field in ADDRESS_FIELDS
               if isinstance(parsed.get(field), str) and parsed[field].strip()}
    missing = [field for field in ("name", "address_line1", "country") if field not in address]
    if missing:
        raise ValueError(f"the letter recipient lacks {', '.join(missing)}")
    return address


def _scrub(text: str, address: dict[str, str]) -> str:
    """A provider's text without any part of the address it may quote."""
    for value in sorted(address.values(), key=len, reverse=True):
        if len(value) >= 3:
            text = text.replace(value, mask(value))
    return text


def _error_text(body) -> tuple[str, str]:
    """Lob's error body ({"error": {"message", "status_code", "code"}}): (code, message)."""
    try:
        error = json.loads(body or b"{}").get("error") or {}
        return str(error.get("code") or "-"), str(error.get("message") or "")[:300]
    except (ValueError, AttributeError, TypeError):
        return "-", ""


class LobLetterChannel:
    name = "letter"
    # Lob's Idempotency-Key: the same outbox key creates one letter however
    # often it is sent.
    idempotent_by_key = True

    def __init__(
        self,
        api_key: str,
        from_address_id: str,
        base_url: str = LOB_API,
        timeout: float | None = 30.0,
    ) -> None:
        if not (api_key and from_address_id):
            raise ValueError("a Lob letter channel needs an API key and a saved from address id")
        configuration = Configuration(host=base_url.rstrip("/") + API_VERSION_PATH, username=api_key, password="")
        self._api = LettersApi(ApiClient(configuration))
        self._from = from_address_id
        self._timeout = timeout

    def build(self, message: OutboundMessage) -> LetterEditable:
        """The SDK's letter for `message`; PermanentSendError when it cannot be one."""
        if not message.html:
            raise PermanentSendError("a letter needs an HTML document (message.html); none was rendered")
        if len(message.html) > HTML_MAX_CHARS:
            raise PermanentSendError(f"the letter's HTML is {len(message.html)} characters; "
                                     f"Lob takes at most {HTML_MAX_CHARS} inline")
        try:
            address = postal_address(message.recipient)
        except ValueError as error:
            raise PermanentSendError(str(error)) from None
        to = {
            # Lob prints at most 40 characters of the name.
            "name": address["name"][:NAME_MAX_CHARS],
            "address_line1": address["address_line1"],
            "address_country": CountryExtended(address["country"].upper()),
        }
        for field, lob_field in (("address_line2", "address_line2"), ("city", "address_city"),
                                 ("region", "address_state"), ("postal_code", "address_zip")):
            if field in address:
                to[lob_field] = address[field]
        try:
            return LetterEditable(
                to=AddressEditable(**to),
                _from=self._from,
                file=message.html,
                color=False,
                use_type=LtrUseType("operational"),
                mail_type=MailType("usps_first_class"),
                # The recipient's address on a blank first page of Lob's own,
                # so the notice's layout (Model Form B-1) is printed as
                # rendered, never under the address window.
                address_placement="insert_blank_page",
                metadata=MetadataModel(**{KEY_METADATA: message.key}),
            )
        except (ApiValueError, ApiTypeError) as error:
            # The SDK's own checks (a field too long, a country it does not know).
            raise PermanentSendError(f"lob letter not built: {_scrub(str(error), address)[:300]}") from None

    def send(self, message: OutboundMessage) -> ProviderReceipt:
        letter = self.build(message)
        address = postal_address(message.recipient)
        try:
            created = self._api.create(
                letter,
                idempotency_key=idempotency_key(message.key),
                _request_timeout=self._timeout,
                # The receipt needs only the id: a field Lob adds to its answer
                # must not fail a letter that was created.
                _check_return_type=False,
            )
        except ApiException as error:
            status = int(error.status or 0)
            code, text = _error_text(error.body)
            detail = _scrub(f"lob letter refused: HTTP {status}, {code}: {text}", address)
            if status == 429 or status >= 500 or status == 0:
                raise TransientSendError(detail) from None
            raise PermanentSendError(detail) from None
        except (urllib3.exceptions.HTTPError, OSError) as error:
            # Connection refused, timeout, reset: Lob may or may not have the
            # letter; the Idempotency-Key makes the retry safe either way.
            raise TransientSendError(f"lob not reached: {type(error).__name__}") from None
        except (ApiValueError, ApiTypeError) as error:
            # An answer the SDK could not read: the letter may exist; the
            # retry with the same Idempotency-Key finds it.
            raise TransientSendError(f"lob answer not understood: {type(error).__name__}") from None
        letter_id = str(created.get("id") if isinstance(created, dict) else created.id)
        log.info("lob_letter_created", key=message.key, letter_id=letter_id,
                 country=address["country"].upper(), length=len(message.html or ""))
        return ProviderReceipt(provider="lob", message_id=letter_id)
