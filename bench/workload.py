"""What the benchmark runs on: a copy of config/ with its own policies, a
database with borrowers in the directory, and the loans to start."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import insert

from bench.processes import ROOT
from db.migrate import upgrade_to_head
from db.models import Borrower
from db.session import make_engine, make_session_factory
from loaders.config_files import load_policy

BENCH = Path(__file__).resolve().parent
ZONE = "Asia/Shanghai"


def prepare_config(workdir: Path) -> Path:
    """A copy of config/ with the benchmark's policies (bench/policies/*.toml) added."""
    config_dir = workdir / "config"
    shutil.copytree(ROOT / "config", config_dir)
    for policy in sorted((BENCH / "policies").glob("*.toml")):
        shutil.copy(policy, config_dir / "policies" / policy.name)
        load_policy(policy.stem, config_dir / "policies")  # a bad key stops the run here, naming it
    return config_dir


def seed_database(database_url: str, borrowers: int, prefix: str = "B-BENCH") -> None:
    """Migrate to head and put `borrowers` borrowers in the directory."""
    upgrade_to_head(database_url)
    sessions = make_session_factory(make_engine(database_url))
    rows = [
        {"borrower_id": f"{prefix}-{n:06d}", "name": f"Borrower {n}", "phone": f"+86138{n:08d}",
         "email": f"borrower{n}@example.com", "language": "zh_CN", "time_zone": ZONE}
        for n in range(borrowers)
    ]
    with sessions.begin() as db:
        for chunk in range(0, len(rows), 5000):
            db.execute(insert(Borrower), rows[chunk:chunk + 5000])


def loan_records(count: int) -> list[dict]:
    """Loans due tomorrow in the borrower's zone: after their first activity
    they wait on a timer (for day 1) that does not fire during the run."""
    due = (datetime.now(ZoneInfo(ZONE)).date() + timedelta(days=1)).isoformat()
    return [
        {"loan_id": f"L-BENCH-{n:06d}", "borrower_id": f"B-BENCH-{n:06d}", "amount_due": "1200.00",
         "currency": "CNY", "due_date": due, "policy": "default"}
        for n in range(count)
    ]
