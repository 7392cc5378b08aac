"""Engines and sessions: one engine per database URL per process."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from db.private_files import touch_private

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def make_engine(url: str) -> Engine:
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = _create(url)
        return engine


def _create(url: str) -> Engine:
    parsed = make_url(url)
    # hide_parameters: SQL errors would otherwise quote the bound values (a
    # borrower's name, a rendered message) into logs and, through an
    # activity's failure, into workflow history.
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, hide_parameters=True)
    if parsed.database and parsed.database != ":memory:" and not parsed.query.get("uri"):
        # The database holds names, phone numbers and e-mail addresses: the
        # file is made 0600 before SQLite first opens it (SQLite would create
        # it at the umask's 0644), and its -wal/-shm files take its mode.
        touch_private(Path(parsed.database))
    engine = create_engine(url, connect_args={"timeout": 30}, hide_parameters=True)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record):
        # WAL lets the worker's threads and the starter read while one writes;
        # busy_timeout waits for a writer instead of failing at once.
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
