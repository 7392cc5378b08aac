"""The Metro 2(R) 426-character format: field tables, a reader and a writer.

Pure: text in, values out, and back. No database, no clock, no files (the
cycle's file is assembled from the database by activities/exports.py).

The layout (positions, lengths, which fields are numeric and which
alphanumeric) is the CDIA Credit Reporting Resource Guide's, as published by
an independent implementation, moov-io/metro2 (Apache License 2.0,
https://github.com/moov-io/metro2), file pkg/lib/specifications.go
(`baseSegmentCharacterFormat`, `headerRecordCharacterFormat`,
`trailerRecordCharacterFormat`, `j1SegmentFormat` ... `n1SegmentFormat`) at
commit fe80ca7d6999abbe3ee495abb586adc27891e1b9; the field names are that
implementation's JSON names (pkg/lib/*.go struct tags), so a record read here
compares key for key with its JSON. Its sample file and JSON are our test
fixtures (tests/fixtures/metro2/README.md).

What the format says, and this module does:

- every record starts with its Record Descriptor Word, its length in four
  zero-filled digits. This writer uses the *fixed-length* format: every
  record of a file (header, data records, trailer) has the same length and
  the same RDW, 426, or 460 when any data record carries a K1 segment (426 +
  34): shorter records are blank-padded. No Block Descriptor Word (that is
  the variable-length format's). One record per line, each ended by "\\n";
  the reader ignores CR and LF, as moov-io's does, and reads a file with a
  BDW too;
- numeric fields are right-justified and zero-filled; alphanumeric fields
  left-justified and blank-filled (upper case and printable ASCII, which the
  writer checks); dates are MMDDYYYY, zero-filled when absent; the Base
  Segment's time stamp MMDDYYYYHHMMSS; money is in whole dollars (the caller
  converts: `whole_dollars`);
- a data record is a Base Segment (426) followed by its appended segments
  (J1 100, J2 200, K1 34, K2 34, K3 40, K4 30, L1 54, N1 146), each found by
  its two-character identifier; blanks end them. An identifier this module
  does not know is an error, never skipped: skipping it would mis-align the
  rest;
- the Trailer's totals (base records, each status code, segments, SSNs,
  dates of birth, telephone numbers, blocks) are counted from the data
  records by `trailer_for`, as moov-io's generator counts them.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any

LAYOUT_SOURCE = "github.com/moov-io/metro2 pkg/lib/specifications.go @ fe80ca7d6999abbe3ee495abb586adc27891e1b9"

BASE_LENGTH = 426
NUMERIC, ALPHANUMERIC, DATE, TIMESTAMP = "N", "A", "D", "T"


class Metro2Error(ValueError):
    """A value that does not fit its field, or text that is not a Metro 2 file."""


@dataclass(frozen=True)
class Field:
    name: str  # moov-io's JSON name
    start: int  # 0-based, from the start of the record or segment
    length: int
    kind: str  # N | A | D | T


def _table(*fields: tuple[str, int, int, str], length: int) -> tuple[Field, ...]:
    table = tuple(Field(*f) for f in fields)
    position = 0
    for f in table:  # contiguous and complete: a typo in a position fails at import
        assert f.start == position, f"{f.name} starts at {f.start}, expected {position}"
        position += f.length
    assert position == length, f"the table covers {position} characters, not {length}"
    return table


# Reserved fields are blank-filled alphanumerics here (moov-io's trailer calls
# its Reserved2 numeric, but the CRRG and its sample blank-fill it).
HEADER = _table(
    ("recordDescriptorWord", 0, 4, NUMERIC),
    ("recordIdentifier", 4, 6, ALPHANUMERIC),
    ("cycleIdentifier", 10, 2, ALPHANUMERIC),
    ("innovisProgramIdentifier", 12, 10, ALPHANUMERIC),
    ("equifaxProgramIdentifier", 22, 10, ALPHANUMERIC),
    ("experianProgramIdentifier", 32, 5, ALPHANUMERIC),
    ("transUnionProgramIdentifier", 37, 10, ALPHANUMERIC),
    ("activityDate", 47, 8, DATE),
    ("dateCreated", 55, 8, DATE),
    ("programDate", 63, 8, DATE),
    ("programRevisionDate", 71, 8, DATE),
    ("reporterName", 79, 40, ALPHANUMERIC),
    ("reporterAddress", 119, 96, ALPHANUMERIC),
    ("reporterTelephoneNumber", 215, 10, NUMERIC),
    ("softwareVendorName", 225, 40, ALPHANUMERIC),
    ("softwareVersionNumber", 265, 5, ALPHANUMERIC),
    ("prbcProgramIdentifier", 270, 10, ALPHANUMERIC),
    ("reserved", 280, 146, ALPHANUMERIC),
    length=BASE_LENGTH,
)

BASE = _table(
    ("recordDescriptorWord", 0, 4, NUMERIC),
    ("processingIndicator", 4, 1, NUMERIC),
    ("timeStamp", 5, 14, TIMESTAMP),
    ("correctionIndicator", 19, 1, NUMERIC),
    ("identificationNumber", 20, 20, ALPHANUMERIC),
    ("cycleIdentifier", 40, 2, ALPHANUMERIC),
    ("consumerAccountNumber", 42, 30, ALPHANUMERIC),
    ("portfolioType", 72, 1, ALPHANUMERIC),
    ("accountType", 73, 2, ALPHANUMERIC),
    ("dateOpened", 75, 8, DATE),
    ("creditLimit", 83, 9, NUMERIC),
    ("highestCredit", 92, 9, NUMERIC),
    ("termsDuration", 101, 3, ALPHANUMERIC),
    ("termsFrequency", 104, 1, ALPHANUMERIC),
    ("scheduledMonthlyPaymentAmount", 105, 9, NUMERIC),
    ("actualPaymentAmount", 114, 9, NUMERIC),
    ("accountStatus", 123, 2, ALPHANUMERIC),
    ("paymentRating", 125, 1, ALPHANUMERIC),
    ("paymentHistoryProfile", 126, 24, ALPHANUMERIC),
    ("specialComment", 150, 2, ALPHANUMERIC),
    ("complianceConditionCode", 152, 2, ALPHANUMERIC),
    ("currentBalance", 154, 9, NUMERIC),
    ("amountPastDue", 163, 9, NUMERIC),
    ("originalChargeOffAmount", 172, 9, NUMERIC),
    ("dateAccountInformation", 181, 8, DATE),
    ("dateFirstDelinquency", 189, 8, DATE),
    ("dateClosed", 197, 8, DATE),
    ("dateLastPayment", 205, 8, DATE),
    ("interestTypeIndicator", 213, 1, ALPHANUMERIC),
    ("reserved", 214, 17, ALPHANUMERIC),
    ("surname", 231, 25, ALPHANUMERIC),
    ("firstName", 256, 20, ALPHANUMERIC),
    ("middleName", 276, 20, ALPHANUMERIC),
    ("generationCode", 296, 1, ALPHANUMERIC),
    ("socialSecurityNumber", 297, 9, NUMERIC),
    ("dateBirth", 306, 8, DATE),
    ("telephoneNumber", 314, 10, NUMERIC),
    ("ecoaCode", 324, 1, ALPHANUMERIC),
    ("consumerInformationIndicator", 325, 2, ALPHANUMERIC),
    ("countryCode", 327, 2, ALPHANUMERIC),
    ("firstLineAddress", 329, 32, ALPHANUMERIC),
    ("secondLineAddress", 361, 32, ALPHANUMERIC),
    ("city", 393, 20, ALPHANUMERIC),
    ("state", 413, 2, ALPHANUMERIC),
    ("zipCode", 415, 9, ALPHANUMERIC),
    ("addressIndicator", 424, 1, ALPHANUMERIC),
    ("residenceCode", 425, 1, ALPHANUMERIC),
    length=BASE_LENGTH,
)

_CONSUMER = (
    ("segmentIdentifier", 0, 2, ALPHANUMERIC),
    ("reserved", 2, 1, ALPHANUMERIC),
    ("surname", 3, 25, ALPHANUMERIC),
    ("firstName", 28, 20, ALPHANUMERIC),
    ("middleName", 48, 20, ALPHANUMERIC),
    ("generationCode", 68, 1, ALPHANUMERIC),
    ("socialSecurityNumber", 69, 9, NUMERIC),
    ("dateBirth", 78, 8, DATE),
    ("telephoneNumber", 86, 10, NUMERIC),
    ("ecoaCode", 96, 1, ALPHANUMERIC),
    ("consumerInformationIndicator", 97, 2, ALPHANUMERIC),
)

SEGMENTS: dict[str, tuple[Field, ...]] = {
    # Associated consumer, same address.
    "J1": _table(*_CONSUMER, ("reserved2", 99, 1, ALPHANUMERIC), length=100),
    # Associated consumer, different address.
    "J2": _table(
        *_CONSUMER,
        ("countryCode", 99, 2, ALPHANUMERIC),
        ("firstLineAddress", 101, 32, ALPHANUMERIC),
        ("secondLineAddress", 133, 32, ALPHANUMERIC),
        ("city", 165, 20, ALPHANUMERIC),
        ("state", 185, 2, ALPHANUMERIC),
        ("zipCode", 187, 9, ALPHANUMERIC),
        ("addressIndicator", 196, 1, ALPHANUMERIC),
        ("residenceCode", 197, 1, ALPHANUMERIC),
        ("reserved2", 198, 2, ALPHANUMERIC),
        length=200,
    ),
    # Original creditor name (collection agencies, debt buyers).
    "K1": _table(
        ("segmentIdentifier", 0, 2, ALPHANUMERIC),
        ("originalCreditorName", 2, 30, ALPHANUMERIC),
        ("creditorClassification", 32, 2, NUMERIC),
        length=34,
    ),
    # Purchased from / sold to.
    "K2": _table(
        ("segmentIdentifier", 0, 2, ALPHANUMERIC),
        ("purchasedIndicator", 2, 1, NUMERIC),
        ("purchasedName", 3, 30, ALPHANUMERIC),
        ("reserved", 33, 1, ALPHANUMERIC),
        length=34,
    ),
    # Mortgage information.
    "K3": _table(
        ("segmentIdentifier", 0, 2, ALPHANUMERIC),
        ("agencyIdentifier", 2, 2, NUMERIC),
        ("accountNumber", 4, 18, ALPHANUMERIC),
        ("mortgageIdentificationNumber", 22, 18, ALPHANUMERIC),
        length=40,
    ),
    # Specialized payment information.
    "K4": _table(
        ("segmentIdentifier", 0, 2, ALPHANUMERIC),
        ("specializedPaymentIndicator", 2, 2, NUMERIC),
        ("deferredPaymentStartDate", 4, 8, DATE),
        ("balloonPaymentDueDate", 12, 8, DATE),
        ("balloonPaymentAmount", 20, 9, NUMERIC),
        ("reserved", 29, 1, ALPHANUMERIC),
        length=30,
    ),
    # Account number / identification number change.
    "L1": _table(
        ("segmentIdentifier", 0, 2, ALPHANUMERIC),
        ("changeIndicator", 2, 1, NUMERIC),
        ("newConsumerAccountNumber", 3, 30, ALPHANUMERIC),
        ("newIdentificationNumber", 33, 20, ALPHANUMERIC),
        ("reserved", 53, 1, ALPHANUMERIC),
        length=54,
    ),
    # Employment.
    "N1": _table(
        ("segmentIdentifier", 0, 2, ALPHANUMERIC),
        ("employerName", 2, 30, ALPHANUMERIC),
        ("firstLineEmployerAddress", 32, 32, ALPHANUMERIC),
        ("secondLineEmployerAddress", 64, 32, ALPHANUMERIC),
        ("employerCity", 96, 20, ALPHANUMERIC),
        ("employerState", 116, 2, ALPHANUMERIC),
        ("zipCode", 118, 9, ALPHANUMERIC),
        ("occupation", 127, 18, ALPHANUMERIC),
        ("reserved", 145, 1, ALPHANUMERIC),
        length=146,
    ),
}
SEGMENT_LENGTHS = {name: sum(f.length for f in table) for name, table in SEGMENTS.items()}

# The Trailer's status totals, in file order (CRRG Exhibit 4's codes it counts).
TRAILER_STATUS_CODES = (
    "DA", "05", "11", "13", "61", "62", "63", "64", "65", "71", "78", "80", "82", "83", "84",
    "88", "89", "93", "94", "95", "96", "97",
)
TRAILER = _table(
    ("recordDescriptorWord", 0, 4, NUMERIC),
    ("recordIdentifier", 4, 7, ALPHANUMERIC),
    ("totalBaseRecords", 11, 9, NUMERIC),
    ("reserved1", 20, 9, ALPHANUMERIC),
    ("totalStatusCodeDF", 29, 9, NUMERIC),
    ("totalConsumerSegmentsJ1", 38, 9, NUMERIC),
    ("totalConsumerSegmentsJ2", 47, 9, NUMERIC),
    ("blockCount", 56, 9, NUMERIC),
    *((f"totalStatusCode{code}", 65 + 9 * i, 9, NUMERIC) for i, code in enumerate(TRAILER_STATUS_CODES)),
    ("totalECOACodeZ", 263, 9, NUMERIC),
    ("totalEmploymentSegments", 272, 9, NUMERIC),
    ("totalOriginalCreditorSegments", 281, 9, NUMERIC),
    ("totalPurchasedToSegments", 290, 9, NUMERIC),
    ("totalMortgageInformationSegments", 299, 9, NUMERIC),
    ("totalPaymentInformationSegments", 308, 9, NUMERIC),
    ("totalChangeSegments", 317, 9, NUMERIC),
    ("totalSocialNumbersAllSegments", 326, 9, NUMERIC),
    ("totalSocialNumbersBaseSegments", 335, 9, NUMERIC),
    ("totalSocialNumbersJ1Segments", 344, 9, NUMERIC),
    ("totalSocialNumbersJ2Segments", 353, 9, NUMERIC),
    ("totalDatesBirthAllSegments", 362, 9, NUMERIC),
    ("totalDatesBirthBaseSegments", 371, 9, NUMERIC),
    ("totalDatesBirthJ1Segments", 380, 9, NUMERIC),
    ("totalDatesBirthJ2Segments", 389, 9, NUMERIC),
    ("totalTelephoneNumbersAllSegments", 398, 9, NUMERIC),
    ("reserved2", 407, 19, ALPHANUMERIC),
    length=BASE_LENGTH,
)

# ------------------------------------------------------------------ values


def whole_dollars(amount: Decimal | int | str | None) -> int:
    """Money as Metro 2 reports it: whole dollars, cents dropped (truncated),
    a negative (credit) balance as zero."""
    if amount is None:
        return 0
    value = Decimal(str(amount)).quantize(Decimal("1"), rounding=ROUND_DOWN)
    return max(int(value), 0)


def _printable(text: str, name: str) -> str:
    if any(not (" " <= c <= "~") for c in text):
        raise Metro2Error(f"{name}: only printable ASCII may be written, got {text[:40]!r}")
    return text


def encode(f: Field, value: Any) -> str:
    """One field's characters: numeric right-justified zero-filled, alphanumeric
    left-justified blank-filled, dates MMDDYYYY (zeros when absent). A value
    that does not fit is an error, never cut: the caller shortens what may be
    shortened (names, addresses) before."""
    if f.kind == NUMERIC:
        number = 0 if value in (None, "") else value
        if isinstance(number, bool) or not isinstance(number, int) or number < 0:
            raise Metro2Error(f"{f.name}: must be a whole number, zero or more, got {value!r}")
        text = str(number)
        if len(text) > f.length:
            raise Metro2Error(f"{f.name}: {text} has more than {f.length} digits")
        return text.zfill(f.length)
    if f.kind == DATE:
        if value is None:
            return "0" * f.length
        if not isinstance(value, date):
            raise Metro2Error(f"{f.name}: must be a date, got {value!r}")
        return f"{value.month:02d}{value.day:02d}{value.year:04d}"
    if f.kind == TIMESTAMP:
        if value is None:
            return "0" * f.length
        if not isinstance(value, datetime):
            raise Metro2Error(f"{f.name}: must be a date and time, got {value!r}")
        return f"{value.month:02d}{value.day:02d}{value.year:04d}{value.hour:02d}{value.minute:02d}{value.second:02d}"
    text = "" if value is None else str(value)
    _printable(text, f.name)
    if len(text) > f.length:
        raise Metro2Error(f"{f.name}: {text[:40]!r} is longer than {f.length} characters")
    return text.ljust(f.length)


def decode(f: Field, text: str) -> Any:
    """One field's value: numbers as int (blank as 0), dates as date (zeros or
    blanks as None), alphanumerics without their trailing blanks."""
    if f.kind == NUMERIC:
        if not text.strip():
            return 0
        if not text.isdigit():
            raise Metro2Error(f"{f.name}: {text!r} is not numeric")
        return int(text)
    if f.kind in (DATE, TIMESTAMP):
        if not text.strip() or set(text) == {"0"}:
            return None
        if not text.isdigit():
            raise Metro2Error(f"{f.name}: {text!r} is not a date (MMDDYYYY)")
        try:
            day = date(int(text[4:8]), int(text[0:2]), int(text[2:4]))
            if f.kind == DATE:
                return day
            return datetime(day.year, day.month, day.day, int(text[8:10]), int(text[10:12]), int(text[12:14]))
        except ValueError:
            raise Metro2Error(f"{f.name}: {text!r} is not a valid date") from None
    return text.rstrip(" ")


def encode_fields(table: tuple[Field, ...], values: dict[str, Any]) -> str:
    unknown = set(values) - {f.name for f in table}
    if unknown:
        raise Metro2Error(f"no such field: {', '.join(sorted(unknown))}")
    return "".join(encode(f, values.get(f.name)) for f in table)


def decode_fields(table: tuple[Field, ...], text: str) -> dict[str, Any]:
    return {f.name: decode(f, text[f.start:f.start + f.length]) for f in table}


# ------------------------------------------------------------------ the file


@dataclass
class DataRecord:
    """A Base Segment and its appended segments, in file order: (identifier, fields)."""

    base: dict[str, Any]
    segments: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def segment(self, name: str) -> list[dict[str, Any]]:
        return [values for identifier, values in self.segments if identifier == name]

    def length(self) -> int:
        return BASE_LENGTH + sum(SEGMENT_LENGTHS[name] for name, _ in self.segments)


@dataclass
class Metro2File:
    header: dict[str, Any]
    records: list[DataRecord]
    trailer: dict[str, Any]


def _records(text: str) -> list[str]:
    """The file's records, each cut to its Record Descriptor Word (after a
    Block Descriptor Word, when the file has them)."""
    data = text.replace("\r", "").replace("\n", "")
    if data[4:10] == "HEADER":
        with_bdw = False
    elif data[8:14] == "HEADER":
        with_bdw = True
    else:
        raise Metro2Error("not a Metro 2 character-format file: no HEADER record at its start")
    records, position = [], 0
    while position < len(data):
        if with_bdw:
            block = data[position:position + 4]
            if not block.isdigit():
                raise Metro2Error(f"at character {position}: block descriptor word {block!r} is not numeric")
            position += 4
        rdw = data[position:position + 4]
        if not rdw.isdigit() or int(rdw) < BASE_LENGTH:
            raise Metro2Error(f"at character {position}: record descriptor word {rdw!r} is not a length of 426 or more")
        length = int(rdw)
        if position + length > len(data):
            raise Metro2Error(f"at character {position}: the record is cut short ({len(data) - position} of {length})")
        records.append(data[position:position + length])
        position += length
    return records


def _data_record(record: str, number: int) -> DataRecord:
    result = DataRecord(decode_fields(BASE, record))
    position = BASE_LENGTH
    while position < len(record):
        identifier = record[position:position + 2]
        if not identifier.strip():
            if record[position:].strip():
                raise Metro2Error(f"record {number}: characters after the blank at {position}")
            break
        if identifier not in SEGMENTS:
            raise Metro2Error(f"record {number}: unknown segment {identifier!r} at {position}")
        length = SEGMENT_LENGTHS[identifier]
        if position + length > len(record):
            raise Metro2Error(f"record {number}: segment {identifier} at {position} runs past the record's end")
        result.segments.append((identifier, decode_fields(SEGMENTS[identifier], record[position:position + length])))
        position += length
    return result


def read(text: str) -> Metro2File:
    """A character-format (426) Metro 2 file: header, data records, trailer."""
    records = _records(text)
    if len(records) < 2 or records[-1][4:11] != "TRAILER":
        raise Metro2Error("the file does not end with a TRAILER record")
    header = decode_fields(HEADER, records[0])
    if header["recordIdentifier"] != "HEADER":
        raise Metro2Error("the first record is not a HEADER")
    if records[0][BASE_LENGTH:].strip():
        raise Metro2Error("the header record has characters past position 426")
    data = [_data_record(record, number) for number, record in enumerate(records[1:-1], start=2)]
    if records[-1][BASE_LENGTH:].strip():
        raise Metro2Error("the trailer record has characters past position 426")
    return Metro2File(header, data, decode_fields(TRAILER, records[-1]))


def _valid_ssn(ssn: Any) -> bool:
    return isinstance(ssn, int) and 0 < ssn < 999999999


def trailer_for(records: list[DataRecord]) -> dict[str, Any]:
    """The Trailer's totals, counted from the data records."""
    totals: dict[str, Any] = {f.name: 0 for f in TRAILER if f.kind == NUMERIC}
    totals["totalBaseRecords"] = len(records)
    totals["blockCount"] = len(records) + 2  # fixed-length, unblocked: every record, header and trailer too
    for record in records:
        base = record.base
        status = base.get("accountStatus") or ""
        if status == "DF" or status in TRAILER_STATUS_CODES:
            totals[f"totalStatusCode{status}"] += 1
        people = [("Base", base)] + [(name, values) for name, values in record.segments if name in ("J1", "J2")]
        for where, person in people:
            if where != "Base":
                totals[f"totalConsumerSegments{where}"] += 1
            if person.get("ecoaCode") == "Z":
                totals["totalECOACodeZ"] += 1
            if _valid_ssn(person.get("socialSecurityNumber")):
                totals["totalSocialNumbersAllSegments"] += 1
                totals[f"totalSocialNumbers{where}Segments"] += 1
            if person.get("dateBirth") is not None:
                totals["totalDatesBirthAllSegments"] += 1
                totals[f"totalDatesBirth{where}Segments"] += 1
            if person.get("telephoneNumber"):
                totals["totalTelephoneNumbersAllSegments"] += 1
        for name, values in record.segments:
            if name == "K1" and values.get("originalCreditorName"):
                totals["totalOriginalCreditorSegments"] += 1
            elif name == "K2" and values.get("purchasedIndicator") in (1, 2):
                totals["totalPurchasedToSegments"] += 1
            elif name == "K3":
                totals["totalMortgageInformationSegments"] += 1
            elif name == "K4" and values.get("specializedPaymentIndicator") in (1, 2):
                totals["totalPaymentInformationSegments"] += 1
            elif name == "L1" and values.get("changeIndicator") in (1, 2, 3):
                totals["totalChangeSegments"] += 1
            elif name == "N1" and values.get("employerName"):
                totals["totalEmploymentSegments"] += 1
    return totals


def write(header: dict[str, Any], records: list[DataRecord], newline: str = "\n") -> str:
    """The fixed-length file: every record as long as the longest data record
    (426, or more with appended segments), its RDW that length; the Trailer
    counted from the records."""
    length = max([BASE_LENGTH, *(record.length() for record in records)])
    lines = [encode_fields(HEADER, {**header, "recordDescriptorWord": length, "recordIdentifier": "HEADER"})]
    for number, record in enumerate(records, start=2):
        try:
            text = encode_fields(BASE, {**record.base, "recordDescriptorWord": length})
            for identifier, values in record.segments:
                text += encode_fields(SEGMENTS[identifier], {**values, "segmentIdentifier": identifier})
        except Metro2Error as error:
            raise Metro2Error(f"record {number}: {error}") from None
        lines.append(text)
    trailer = {**trailer_for(records), "recordDescriptorWord": length, "recordIdentifier": "TRAILER"}
    lines.append(encode_fields(TRAILER, trailer))
    return "".join(line.ljust(length) + newline for line in lines)


# ------------------------------------------------------------------ contents


def ascii_upper(text: str | None) -> str:
    """Upper-case printable ASCII: accents dropped (É -> E), other characters
    that have no ASCII form dropped, runs of blanks made one."""
    if not text:
        return ""
    folded = unicodedata.normalize("NFKD", text)
    kept = "".join(c for c in folded if " " <= c <= "~")
    return " ".join(kept.upper().split())


GENERATION_CODES = {"JR": "J", "SR": "S", "II": "2", "III": "3", "IV": "4", "V": "5", "VI": "6", "VII": "7",
                    "VIII": "8", "IX": "9"}


def split_name(name: str) -> dict[str, str] | None:
    """A consumer's name as Metro 2 wants it: surname, first name, middle
    name and generation code, upper case, only letters, digits, blanks and
    hyphens (CRRG: no other special characters in name fields). "Last,
    First Middle" or "First Middle Last [Jr.]". None when the name does not
    split into a surname and a first name (one word)."""
    cleaned = ascii_upper(name)
    if "," in cleaned:
        surname, _, rest = cleaned.partition(",")
        words = rest.split()
        surname_words = surname.split()
    else:
        words = cleaned.split()
        surname_words = []
    keep = lambda word: "".join(c for c in word if c.isalnum() or c == "-").strip("-")  # noqa: E731
    words = [w for w in (keep(w) for w in words) if w]
    surname_words = [w for w in (keep(w) for w in surname_words) if w]
    generation = ""
    if len(words) > (1 if surname_words else 2) and words[-1] in GENERATION_CODES:
        generation = GENERATION_CODES[words.pop()]
    if not surname_words:
        if len(words) < 2:
            return None
        surname_words = [words.pop()]
    if not words:
        return None
    return {
        "surname": " ".join(surname_words)[:25].rstrip(),
        "firstName": words[0][:20],
        "middleName": " ".join(words[1:])[:20].rstrip(),
        "generationCode": generation,
    }


# Account Status -> the Payment History Profile's character for that month
# (CRRG Exhibit 5). For 05, 13, 65, 88, 89, 94 and 95 the month's Payment
# Rating is used when the record has one.
PHP_BY_STATUS = {
    "11": "0", "71": "1", "78": "2", "80": "3", "82": "4", "83": "5", "84": "6",
    "93": "G", "62": "G", "97": "L", "64": "L", "96": "K", "63": "K", "95": "J", "61": "J", "94": "H", "65": "H",
    "13": "0", "05": "0", "88": "0", "89": "0", "DA": "D", "DF": "D",
}
RATED_STATUSES = ("05", "13", "65", "88", "89", "94", "95")


def php_character(status: str | None, payment_rating: str | None) -> str:
    if status in RATED_STATUSES and payment_rating:
        return payment_rating
    return PHP_BY_STATUS.get(status or "", "D")


def previous_cycles(cycle: str, count: int = 24) -> list[str]:
    """The `count` cycles (YYYY-MM) before `cycle`, the most recent first."""
    year, month = (int(part) for part in cycle.split("-"))
    cycles = []
    for _ in range(count):
        month -= 1
        if month == 0:
            year, month = year - 1, 12
        cycles.append(f"{year:04d}-{month:02d}")
    return cycles


def payment_history_profile(cycle: str, earlier: dict[str, tuple[str | None, str | None]]) -> str:
    """The 24 months before `cycle`, most recent first: each month's
    character from that cycle's record (status, payment rating); a month
    without a record after the account's first one is D (no history that
    month); the months before its first record are B, at the end only."""
    months = previous_cycles(cycle)
    reported = [month for month in months if month in earlier]
    if not reported:
        return "B" * 24
    oldest = months.index(reported[-1])
    profile = "".join(php_character(*earlier[month]) if month in earlier else "D" for month in months[:oldest + 1])
    return profile.ljust(24, "B")


# ------------------------------------------------------------------ the furnisher

# The date this writer's format was developed, for the Header's Program Date
# and Program Revision Date (CRRG: the reporting format's dates).
PROGRAM_DATE = date(2026, 12, 4)


@dataclass(frozen=True)
class Furnisher:
    """Who reports, from the settings (DUNNING_METRO2_*; docs/contract.md)."""

    identification_number: str = ""  # the furnisher's Identification Number, per the bureaus; required
    reporter_name: str = ""  # the Header's Reporter Name (default: the lender's name)
    reporter_address: str = ""
    reporter_telephone: str = ""  # ten digits
    innovis_program_id: str = ""
    equifax_program_id: str = ""
    experian_program_id: str = ""
    transunion_program_id: str = ""
    # "" picks by the loan's profile: I (installment) / 01 (unsecured) for a
    # creditor, O (open) / 48 (collection agency/attorney) for a debt collector.
    portfolio_type: str = ""
    account_type: str = ""
    creditor_classification: int = 12  # the K1's: 12 = financial (CRRG)
    program_date: date = PROGRAM_DATE
