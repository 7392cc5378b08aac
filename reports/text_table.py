"""Plain-text tables for the terminal: the columns padded to their widest
cell, two spaces apart, no trailing blanks (the KPI report, the simulation's
tables, `starter.py list`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def text_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """The header and the rows, left-aligned; None prints as an empty cell."""
    cells = [tuple(header), *(tuple("" if value is None else str(value) for value in row) for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in cells)
