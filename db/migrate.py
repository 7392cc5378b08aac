"""Apply the Alembic migrations: the worker and the starter call this on start.

    upgrade_to_head("sqlite:///.dunning/dunning.db")

Safe to call from two processes at once: on PostgreSQL they take turns on an
advisory lock; on a SQLite file, through a lock file beside the database
(SQLite runs DDL outside transactions, so without it the second process could
see half-created tables). Quiet: Alembic prints nothing and its INFO lines are
not logged.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

ALEMBIC_INI = Path(__file__).resolve().parent.parent / "alembic.ini"
_lock = threading.Lock()  # one migration at a time within a process, too


def alembic_config(database_url: str) -> Config:
    """The repo's alembic.ini, pointed at `database_url`."""
    config = Config(str(ALEMBIC_INI))
    # ConfigParser interpolates "%": a password with one in it must survive.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade_to_head(database_url: str) -> None:
    config = alembic_config(database_url)
    # Alembic logs each step at INFO; the service's own log is enough.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    with _lock, _file_lock(database_url):
        try:
            command.upgrade(config, "head")
        except OperationalError as error:
            # A process without the lock (another machine on a shared file, or
            # a platform without fcntl) migrated a moment ago: look again.
            if "already exists" not in str(error):
                raise
            command.upgrade(config, "head")


_MIGRATION_LOCK_KEY = 0x64756E6E696E67  # "dunning": PostgreSQL advisory locks are per database


@contextlib.contextmanager
def _advisory_lock(database_url: str) -> Iterator[None]:
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _MIGRATION_LOCK_KEY})
    finally:
        engine.dispose()


@contextlib.contextmanager
def _file_lock(database_url: str) -> Iterator[None]:
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        # Transactional DDL is not enough: a second process creating the same
        # tables waits for the first to commit, then fails on a duplicate.
        # They take turns on an advisory lock, on a connection of its own.
        with _advisory_lock(database_url):
            yield
        return
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        yield
        return
    try:
        import fcntl
    except ImportError:  # Windows: fall back on the retry above
        yield
        return
    path = Path(url.database + ".migrate-lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
