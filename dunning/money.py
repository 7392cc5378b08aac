"""Money: exact decimals from decimal strings, never floats."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

# ISO 4217 minor units where they are not 2. Amounts with more decimals than
# their currency has are refused rather than rounded: a payment service that
# sends "10.005" CNY has a bug worth hearing about.
_MINOR_UNITS = {"JPY": 0, "KRW": 0, "VND": 0, "CLP": 0, "ISK": 0, "BHD": 3, "KWD": 3, "OMR": 3, "TND": 3, "JOD": 3}
_DECIMAL_STRING = re.compile(r"^-?\d{1,15}(\.\d{1,4})?$")
CURRENCY_CODE = re.compile(r"^[A-Z]{3}$")


def minor_units(currency: str) -> int:
    return _MINOR_UNITS.get(currency, 2)


def parse_amount(value: object, currency: str, *, allow_zero: bool = False) -> Decimal:
    """A positive amount from a decimal string such as "1200.50".

    Raises ValueError with a message that says what is wrong with the value.
    """
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f'must be a decimal string such as "1200.50", not {type(value).__name__}')
    text = value.strip()
    if not _DECIMAL_STRING.match(text):
        raise ValueError(f'must be a decimal string such as "1200.50", got {value[:40]!r}')
    try:
        amount = Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern already excludes these
        raise ValueError(f"is not a number: {value[:40]!r}") from None
    if amount < 0 or (amount == 0 and not allow_zero):
        raise ValueError(f"must be more than zero, got {text}")
    places = -amount.as_tuple().exponent if amount.as_tuple().exponent < 0 else 0
    if places > minor_units(currency):
        raise ValueError(f"has {places} decimals; {currency} has {minor_units(currency)}")
    return amount


def quantize(amount: Decimal, currency: str) -> Decimal:
    return amount.quantize(Decimal(1).scaleb(-minor_units(currency)), rounding=ROUND_HALF_UP)


def format_amount(amount: Decimal, currency: str) -> str:
    """The contract's decimal string: "1200.50"."""
    return f"{quantize(amount, currency):f}"
