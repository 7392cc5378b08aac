"""The Alembic migrations on SQLite and on PostgreSQL, from an empty database:
all at once or one revision at a time they build exactly the models' schema
(alembic's compare_metadata finds nothing to change), they go back down to
empty, and several processes starting at once migrate a new database once
(that one on PostgreSQL; SQLite's is in tests/test_activities.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import func, inspect, select

from db.migrate import alembic_config, upgrade_to_head
from db.models import AuditHead, Base
from db.session import make_engine

# Every test here runs on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.both_databases

PROJECT = Path(__file__).resolve().parent.parent


def schema_differences(url: str) -> list:
    with make_engine(url).connect() as connection:
        return compare_metadata(MigrationContext.configure(connection), Base.metadata)


def tables(url: str) -> set[str]:
    with make_engine(url).connect() as connection:
        return set(inspect(connection).get_table_names())


def current_revision(url: str) -> str | None:
    with make_engine(url).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def revisions(url: str) -> list[str]:
    """The revisions from the first to the head."""
    script = ScriptDirectory.from_config(alembic_config(url))
    return [revision.revision for revision in reversed(list(script.walk_revisions()))]


def head(url: str) -> str:
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def test_from_empty_to_head_the_schema_is_exactly_the_models(empty_database_url):
    url = empty_database_url
    assert tables(url) == set()

    upgrade_to_head(url)

    assert schema_differences(url) == []
    assert tables(url) == set(Base.metadata.tables) | {"alembic_version"}
    assert current_revision(url) == head(url)
    with make_engine(url).connect() as connection:
        # The audit chain's head row, written once by the migrations.
        assert connection.execute(select(AuditHead.seq, AuditHead.hash)).all() == [(0, "0" * 64)]


def test_each_revision_applies_on_its_own_and_all_go_back_down_to_empty(empty_database_url):
    url = empty_database_url
    config = alembic_config(url)
    steps = revisions(url)
    assert steps[-1] == head(url)

    for revision in steps:
        command.upgrade(config, revision)
        assert current_revision(url) == revision
    assert schema_differences(url) == []

    command.downgrade(config, "base")
    assert current_revision(url) is None
    assert tables(url) <= {"alembic_version"}

    upgrade_to_head(url)
    assert schema_differences(url) == []


# SQLite's case is tests/test_activities.py::test_two_processes_can_migrate_the_same_new_file_at_once.
@pytest.mark.parametrize("database_backend", ["postgresql"], indirect=True)
def test_several_processes_starting_at_once_migrate_a_new_database_once(empty_database_url):
    """Worker, gateway and starter processes all call upgrade_to_head when
    they start; on PostgreSQL they take turns on an advisory lock."""
    url = empty_database_url
    code = "import sys; from db.migrate import upgrade_to_head; upgrade_to_head(sys.argv[1])"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code, url], cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    results = [(process.wait(timeout=120), *process.communicate()) for process in processes]

    for returncode, stdout, stderr in results:
        assert returncode == 0, stderr
        assert stdout == ""  # quiet
    assert schema_differences(url) == []
    with make_engine(url).connect() as connection:
        assert connection.scalar(select(func.count()).select_from(AuditHead)) == 1
