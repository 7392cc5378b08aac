"""Fixtures shared by the tests: a fresh migrated database per test, settings
pointing at it, and a borrower in the directory.

SQLite and PostgreSQL
---------------------
SQLite is the embedded default; PostgreSQL (psycopg 3) is the production
database. A test that uses the database (`database_url`, or through it
`session_factory`, `settings`, `seeded_borrower`) runs on SQLite. The tests
that are about the database run on both, as two items, `test_x[sqlite]` and
`test_x[postgresql]`:

- any test marked `@pytest.mark.both_databases`, or in a module that says
  `pytestmark = pytest.mark.both_databases` (the migrations, the activities'
  records and outbox, the audit log, placing; and the gateway's tests that
  write rows without starting loans).

`@pytest.mark.sqlite_only` keeps one test of those modules on SQLite. The
workflow tests (time-skipping and dev server) stay on SQLite: they are slow,
and what they test is the workflow, not the database. So do the gateway's
tests that place loans: they use fixed loan ids on the session's one
time-skipping server, where a second run would find the first one's loans.

Each postgresql item gets a database of its own, `CREATE DATABASE t_<uuid>`,
migrated with `upgrade_to_head` like the SQLite file and dropped after the
test, on the server that `scripts/ensure_postgres.sh` runs (`make test` calls
it; the URL is in .dunning/pg/url) or the one `DUNNING_TEST_POSTGRES_URL`
names (a superuser's SQLAlchemy URL, `postgresql+psycopg://...`).
`DUNNING_TEST_POSTGRES` says what happens when neither answers:

    unset or auto   the postgresql items skip, saying how to get a server
    required        they fail (CI: .ci/run sets this)
    off             they skip without looking for a server
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

import db.session
from db.migrate import upgrade_to_head
from db.models import Borrower
from db.session import make_engine, make_session_factory
from runtime.settings import Settings

# tests/support holds assertions of the tests' own (the fake Twilio's spec
# checks, the crash tests' invariants, the planner walk's): pytest rewrites
# them as it does a test module's, so that a failure there shows its values.
# This must run before anything imports tests.support.
pytest.register_assert_rewrite("tests.support")

TEST_PAY_LINK_SECRET = "test-secret-not-for-production"

BORROWER = {
    "borrower_id": "B-77",
    "name": "王小明",
    "phone": "+8613800138000",
    "email": "wang@example.com",
    "language": "zh_CN",
    "time_zone": "Asia/Shanghai",
}

PROJECT = Path(__file__).resolve().parent.parent
DATABASES = ("sqlite", "postgresql")
POSTGRES_MODES = ("auto", "required", "off")
POSTGRES_URL_FILE = PROJECT / ".dunning" / "pg" / "url"


# ------------------------------------------------------------ options


def pytest_addoption(parser):
    parser.addoption(
        "--crash-seed", type=int, default=None, metavar="N",
        help="the seed of tests/test_crash_safety.py's kill timing, to repeat a run (as CRASH_SEED=N); random when unset",
    )


# ------------------------------------------------------------ which database


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "both_databases: run this database test on SQLite and on PostgreSQL (tests/conftest.py)"
    )
    config.addinivalue_line(
        "markers", "sqlite_only: keep this test of a both-databases module on SQLite only (tests/conftest.py)"
    )
    mode = _postgres_mode()
    if mode not in POSTGRES_MODES:
        raise pytest.UsageError(f"DUNNING_TEST_POSTGRES={mode!r}: use one of {', '.join(POSTGRES_MODES)}")


def _postgres_mode() -> str:
    return (os.environ.get("DUNNING_TEST_POSTGRES") or "auto").strip().lower()


def _on_both_databases(metafunc) -> bool:
    definition = metafunc.definition
    if definition.get_closest_marker("sqlite_only"):
        return False
    return definition.get_closest_marker("both_databases") is not None


def pytest_generate_tests(metafunc):
    if "database_backend" not in metafunc.fixturenames or not _on_both_databases(metafunc):
        return
    if any("database_backend" in str(mark.args[0]) for mark in metafunc.definition.iter_markers("parametrize")):
        return  # the test chose its databases itself
    metafunc.parametrize("database_backend", DATABASES, indirect=True)


@pytest.fixture
def database_backend(request) -> str:
    """"sqlite" or "postgresql": which database this test runs on."""
    return getattr(request, "param", "sqlite")


# ------------------------------------------------------------ PostgreSQL


def _masked(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """A superuser's URL on the tests' PostgreSQL server; skips (or, with
    DUNNING_TEST_POSTGRES=required, fails) every postgresql item without one."""
    mode = _postgres_mode()
    if mode == "off":
        pytest.skip("PostgreSQL variants are off (DUNNING_TEST_POSTGRES=off)")
    url = os.environ.get("DUNNING_TEST_POSTGRES_URL", "").strip()
    if not url and POSTGRES_URL_FILE.exists():
        url = POSTGRES_URL_FILE.read_text().strip()
    how = "run scripts/ensure_postgres.sh (make test does) or set DUNNING_TEST_POSTGRES_URL"
    problem = None
    if not url:
        problem = f"no PostgreSQL server for the tests: {how}"
    else:
        engine = create_engine(url, connect_args={"connect_timeout": 5})
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception as error:  # noqa: BLE001 - any failure to connect means "no server"
            problem = f"PostgreSQL at {_masked(url)} does not answer ({type(error).__name__}: {error}): {how}"
        finally:
            engine.dispose()
    if problem:
        if mode == "required":
            pytest.fail(f"{problem} [DUNNING_TEST_POSTGRES=required]", pytrace=False)
        pytest.skip(problem)
    return url


@pytest.fixture(scope="session")
def _postgres_admin(postgres_admin_url):
    engine = create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


@contextlib.contextmanager
def _fresh_postgres_database(admin, admin_url: str) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        # The project keeps one engine per URL per process (db/session.py):
        # close this one's connections, then drop the database (FORCE ends
        # any a worker thread still holds; PostgreSQL 13+).
        engine = db.session._engines.pop(url, None)
        if engine is not None:
            engine.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# ------------------------------------------------------------ the fixtures


@pytest.fixture
def empty_database_url(request, database_backend, tmp_path) -> Iterator[str]:
    """A fresh, empty database for this test (nothing migrated): a new SQLite
    file, or a new PostgreSQL database dropped after the test."""
    if database_backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'dunning.db'}"
        return
    admin = request.getfixturevalue("_postgres_admin")
    with _fresh_postgres_database(admin, request.getfixturevalue("postgres_admin_url")) as url:
        yield url


@pytest.fixture
def database_url(empty_database_url) -> str:
    """A fresh database for this test (a SQLite file, or a PostgreSQL database
    on the both-databases tests' postgresql items), migrated to head."""
    upgrade_to_head(empty_database_url)
    return empty_database_url


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
    if not database_url.startswith("sqlite"):
        # A SQLite test's bureau files and legal documents go beside its
        # database file (in tmp_path); on PostgreSQL the default would be the
        # checkout's .dunning/exports, one directory for every postgresql
        # item and both xdist workers (the same loan ids, the same file names).
        monkeypatch.setenv("DUNNING_EXPORT_DIR", str(tmp_path / "exports"))
    return Settings()


@pytest.fixture
def seeded_borrower(session_factory) -> str:
    """Borrower B-77 in the directory; returns the id."""
    with session_factory.begin() as db:
        db.add(Borrower(**BORROWER))
    return BORROWER["borrower_id"]


# ------------------------------------------------------------ the order under xdist

# make test runs on both cores (pytest-xdist: -n 2 --dist loadfile
# --no-loadscope-reorder): each file stays on one worker (some share a
# module's fixtures), and a worker is handed the next file in the collection's
# order whenever fewer than three of its tests are left (xdist's loadfile
# scheduler; --no-loadscope-reorder stops it from sorting the files by their
# number of tests instead, which put the crash tests, four of them, last).
# The files below take longest (seconds measured with --durations=0 under
# make test on 2 shared cores, a file's setup, calls and teardown summed):
# put first, longest first, the two longest start at once, one on each
# worker, the next ones go to whichever worker is free first, and the short
# files fill in at the end, so that no long file starts last. Only the order
# changes, and only under xdist: a serial run keeps pytest's order. A file
# not named here runs in its usual place among the rest.
LONGEST_FILES = (
    "tests/test_crash_safety.py",  # 172 s (its worker and dev-server scenarios side by side)
    "tests/test_contact_properties_slow.py",  # 166 s (10,000 lifecycles a profile, a process per core)
    "tests/test_fuzz_inputs.py",  # 108 s
    "tests/test_template_lint.py",  # 97 s
    "tests/test_inbound_requests.py",  # 96 s
    "tests/test_bulk_placing.py",  # 96 s
    "tests/test_continue_as_new.py",  # 81 s
    "tests/test_attacks_placement.py",  # 51 s
    "tests/test_gateway.py",  # 48 s; every other file under 40 s
)


def _longest_first(items) -> None:
    rank = {path: place for place, path in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))  # stable: files stay whole


# ------------------------------------------------------------ the summary


def pytest_collection_modifyitems(config, items):
    if hasattr(config, "workerinput"):  # an xdist worker (each collects everything, in the same order)
        _longest_first(items)
    config._dunning_postgres_items = {
        item.nodeid
        for item in items
        if getattr(item, "callspec", None) is not None and item.callspec.params.get("database_backend") == "postgresql"
    }


# The summary's figures live in the process that ran the tests: the property
# tests' counters, the crash tests' seeds (module globals), the contact
# properties' summary plugin, the postgresql items (collected). Under xdist
# that is a worker, and the terminal summary is written by the controller,
# which runs no test and collects nothing: each worker sends its figures in
# `workeroutput` when it finishes, and the controller adds them up
# (pytest_testnodedown) before it writes the summary.

_FAILED: set[str] = set()  # node ids that failed or errored in this process


def pytest_runtest_logreport(report):
    if report.failed:
        _FAILED.add(report.nodeid)


class _Lines:
    """Stands in for the terminal reporter to a plugin's pytest_terminal_summary."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write_line(self, line: str, **markup) -> None:
        self.lines.append(line)


def _figures(config, with_plugin_lines: bool) -> dict:
    """This process's figures for the summary (plain data: they cross from an
    xdist worker to the controller)."""
    import sys

    figures = {"lifecycles": 0, "contacts": 0, "plugin_lines": [], "crash_lines": [],
               "postgres_items": sorted(getattr(config, "_dunning_postgres_items", ()))}
    properties = sys.modules.get("tests.test_compliance_properties")
    if properties is not None:
        figures["lifecycles"] = properties.checked["lifecycles"]
        figures["contacts"] = properties.checked["contacts"]
    crash = sys.modules.get("tests.test_crash_safety")
    if crash is not None:
        figures["crash_lines"] = crash.summary_lines(set(_FAILED))
    # tests/test_contact_properties_slow.py registers its own summary plugin;
    # in a serial run it writes its lines itself.
    plugin = config.pluginmanager.get_plugin("contact-properties-summary")
    if with_plugin_lines and plugin is not None:
        lines = _Lines()
        plugin.pytest_terminal_summary(lines)
        figures["plugin_lines"] = lines.lines
    return figures


def pytest_sessionfinish(session):
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: sent to the controller when this returns
        workeroutput["dunning_summary"] = _figures(session.config, with_plugin_lines=True)


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook
def pytest_testnodedown(node, error):
    figures = getattr(node, "workeroutput", {}).get("dunning_summary")
    if figures is not None:
        node.config.__dict__.setdefault("_dunning_worker_figures", []).append(figures)


def _run_figures(config) -> dict:
    """The figures of the whole run: this process's, or under xdist the sum of
    the workers'."""
    if config.pluginmanager.get_plugin("dsession") is None:  # not an xdist controller
        return _figures(config, with_plugin_lines=False)
    run = {"lifecycles": 0, "contacts": 0, "plugin_lines": [], "crash_lines": [], "postgres_items": set()}
    for figures in getattr(config, "_dunning_worker_figures", []):
        run["lifecycles"] += figures["lifecycles"]
        run["contacts"] += figures["contacts"]
        run["plugin_lines"] += figures["plugin_lines"]
        run["crash_lines"] += figures["crash_lines"]
        run["postgres_items"] |= set(figures["postgres_items"])
    return run


def pytest_terminal_summary(terminalreporter):
    """Report how many random lifecycles the compliance properties checked,
    the crash tests' seeds (and how to repeat a failed one), and how the
    PostgreSQL items went."""
    figures = _run_figures(terminalreporter.config)
    for line in figures["plugin_lines"]:
        terminalreporter.write_line(line)
    if figures["lifecycles"]:
        terminalreporter.write_line(
            f"compliance properties: {figures['lifecycles']} lifecycles through the workflow, "
            f"{figures['contacts']} contacts checked"
        )

    # The hours the run saw, so two runs' verdicts can be compared by hour.
    from datetime import datetime
    from zoneinfo import ZoneInfo

    chosen = os.environ.get("DUNNING_TEST_SHANGHAI_HOUR", "").strip()
    terminalreporter.write_line(
        f"hours: wall clock {datetime.now(ZoneInfo('Asia/Shanghai')):%Y-%m-%d %H:%M} in Asia/Shanghai at the end; "
        + (f"time-skipping server started at {int(chosen):02d}:00 there (DUNNING_TEST_SHANGHAI_HOUR)" if chosen.isdigit()
           else "time-skipping server started at the wall clock's time")
    )

    for line in figures["crash_lines"]:
        terminalreporter.write_line(line)

    postgres_items = set(figures["postgres_items"])
    if postgres_items:
        outcomes: dict[str, set[str]] = {}
        for outcome in ("passed", "failed", "error", "skipped"):
            for report in terminalreporter.stats.get(outcome, []):
                if getattr(report, "nodeid", None) in postgres_items:
                    outcomes.setdefault(outcome, set()).add(report.nodeid)
        counts = ", ".join(f"{len(ids)} {outcome}" for outcome, ids in outcomes.items()) or "none run"
        terminalreporter.write_line(
            f"postgresql: {len(postgres_items)} tests on PostgreSQL (DUNNING_TEST_POSTGRES={_postgres_mode()}): {counts}"
        )
