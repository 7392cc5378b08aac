"""Where a borrower may be: every IANA zone their details leave open.

12 CFR 1006.6(b)(1)(i), comment 6(b)(1)(i)-4: with conflicting or ambiguous
information about where the consumer is, a time is convenient only if it is
convenient in every location the information points to. A phone number's
area code may span zones (+1 208: Boise and Los Angeles), so may a state
(Idaho, Texas, ...), and the zone a lender gave may differ from both. The
candidates are all of them; the loan's clock (days past due) keeps one
primary zone.

A number that says nothing about where its holder is (toll-free, premium,
shared-cost, personal, UAN, VoIP, or a code whose zones span the continent)
gives no zone: +1 800 is not "America/Adak". Read from config/zones/ (data:
a US state's zones), so nothing here is a guess written in code.
"""

from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path

import phonenumbers
from phonenumbers import PhoneNumberType
from phonenumbers import timezone as phone_timezones

ZONES_DIR = Path(__file__).resolve().parent.parent / "config" / "zones"
# Number types that name no place.
_PLACELESS = frozenset({
    PhoneNumberType.TOLL_FREE, PhoneNumberType.PREMIUM_RATE, PhoneNumberType.SHARED_COST,
    PhoneNumberType.PERSONAL_NUMBER, PhoneNumberType.UAN, PhoneNumberType.VOIP, PhoneNumberType.PAGER,
})
# More zones than this for one number: the number names a country or a
# continent, not a place (a geographic code spans at most a few).
_MAX_PHONE_ZONES = 4


def phone_zones(phone: str | None) -> tuple[str, ...]:
    """The zones a number's area code spans, or () when it names no place."""
    if not phone:
        return ()
    try:
        number = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return ()
    if phonenumbers.number_type(number) in _PLACELESS:
        return ()
    zones = tuple(z for z in phone_timezones.time_zones_for_number(number) if z != "Etc/Unknown")
    return zones if len(zones) <= _MAX_PHONE_ZONES else ()


@lru_cache(maxsize=8)
def _region_table(country: str) -> dict[str, tuple[str, ...]]:
    path = ZONES_DIR / f"{country.lower()}_regions.toml"
    if not path.is_file():
        return {}
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return {region: tuple(zones) for region, zones in data.get("regions", {}).items()}


def known_region(country: str | None, region: str | None) -> bool:
    """Whether config/zones/ knows the region (so an address can be checked)."""
    return bool(country and region and region.upper() in _region_table(country.upper()))


def region_has_table(country: str | None) -> bool:
    return bool(country) and bool(_region_table(country.upper()))


def address_zones(country: str | None, region: str | None) -> tuple[str, ...]:
    """The zones a postal address's state or province spans, or () if unknown."""
    if not country or not region:
        return ()
    return _region_table(country.upper()).get(region.upper(), ())


def candidate_zones(time_zone: str | None, phone: str | None, country: str | None = None,
                    region: str | None = None) -> tuple[str, ...]:
    """Every zone the borrower may be in, the primary first, each once: the
    zone the lender gave (or derived), the address's, the number's."""
    found: list[str] = []
    for zone in ((time_zone,) if time_zone else ()) + address_zones(country, region) + phone_zones(phone):
        if zone not in found:
            found.append(zone)
    return tuple(found)


def primary_zone(phone: str | None, country: str | None = None, region: str | None = None) -> str | None:
    """The zone a borrower placed without one is counted in: the address's
    first, else the number's first; None when neither names a place."""
    zones = address_zones(country, region) + phone_zones(phone)
    return zones[0] if zones else None
