"""Column types that behave the same on SQLite and PostgreSQL.

Migrations import these too, so they must stay backward compatible.
"""

from __future__ import annotations

from datetime import timezone
from decimal import Decimal

from sqlalchemy import DateTime, Numeric, String, TypeDecorator


class Money(TypeDecorator):
    """Exact decimal money: NUMERIC where the database has it, text in SQLite
    (whose NUMERIC is a float and would round cents). NUMERIC without a scale,
    so a value reads back as it was written on both ("1200.00" stays
    "1200.00", where NUMERIC(18, 4) would give "1200.0000")."""

    impl = Numeric()
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(40))
        return dialect.type_descriptor(Numeric())

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        value = Decimal(value)
        return str(value) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        return None if value is None else Decimal(value)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC instants on every backend (SQLite drops the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
