"""Writing a record once by its key.

Every record an activity writes has a unique key (dunning/keys.py), so
Temporal may retry the activity, or run it again after a worker crash, and
the database still keeps one row: the retry finds the row and skips it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

T = TypeVar("T")


def insert_once(db: Session, model, key: str, build: Callable[[], object]) -> bool:
    """Add the row unless one with `key` exists; True when it was added."""
    if db.scalar(select(model).where(model.key == key)) is None:
        db.add(build())
        return True
    return False


def in_transaction(sessions: sessionmaker[Session], work: Callable[[Session], T]) -> T:
    """Run `work` in one transaction; if a concurrent attempt of the same
    activity inserted the same key first (IntegrityError), roll back and run
    it once more: the second time it finds that row and skips it."""
    try:
        with sessions.begin() as db:
            return work(db)
    except IntegrityError:
        with sessions.begin() as db:
            return work(db)
