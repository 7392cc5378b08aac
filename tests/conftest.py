"""Fixtures shared by the tests: a fresh migrated database per test, settings
pointing at it, and a borrower in the directory."""

from __future__ import annotations

import pytest

from db.migrate import upgrade_to_head
from db.models import Borrower
from db.session import make_engine, make_session_factory
from runtime.settings import Settings

TEST_PAY_LINK_SECRET = "test-secret-not-for-production"

BORROWER = {
    "borrower_id": "B-77",
    "name": "王小明",
    "phone": "+8613800138000",
    "email": "wang@example.com",
    "language": "zh_CN",
    "time_zone": "Asia/Shanghai",
}


@pytest.fixture
def database_url(tmp_path) -> str:
    """A fresh SQLite file for this test, migrated to head."""
    url = f"sqlite:///{tmp_path / 'db' / 'dunning.db'}"
    upgrade_to_head(url)
    return url


@pytest.fixture
def session_factory(database_url):
    return make_session_factory(make_engine(database_url))


@pytest.fixture
def settings(database_url, tmp_path, monkeypatch) -> Settings:
    """Settings as the worker would read them, on this test's database. The
    environment is patched too, so code that calls Settings() itself agrees."""
    monkeypatch.setenv("DUNNING_DATABASE_URL", database_url)
    monkeypatch.setenv("DUNNING_PAY_LINK_SECRET", TEST_PAY_LINK_SECRET)
    monkeypatch.setenv("DUNNING_LENDER_NAME", "Example Lender")
    monkeypatch.delenv("DUNNING_CONFIG_DIR", raising=False)
    return Settings()


@pytest.fixture
def seeded_borrower(session_factory) -> str:
    """Borrower B-77 in the directory; returns the id."""
    with session_factory.begin() as db:
        db.add(Borrower(**BORROWER))
    return BORROWER["borrower_id"]


def pytest_terminal_summary(terminalreporter):
    """Report how many random lifecycles the compliance properties checked."""
    import sys

    properties = sys.modules.get("tests.test_compliance_properties")
    if properties is not None and properties.checked["lifecycles"]:
        terminalreporter.write_line(
            f"compliance properties: {properties.checked['lifecycles']} lifecycles through the workflow, "
            f"{properties.checked['contacts']} contacts checked"
        )
