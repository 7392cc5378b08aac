"""The portfolio simulation (simulation/): the generator, and a small
champion/challenger run through the real workflow on the time-skipping server,
checked against the database it leaves."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select

from db.models import Loan, PlanRecord, PromiseRecord, StageEntry
from db.session import make_engine, make_session_factory
from reports.kpi import build_report
from reports.kpi_render import format_table, kpis_json, tables
from services.placement import validate_placements
from simulation.__main__ import parse_args, simulate
from simulation.portfolio import (
    BEHAVIOURS,
    DEFAULT_MIX,
    TRAIT_SHARES,
    allocate,
    default_start,
    generate,
)

START = datetime(2027, 3, 1, 16, 30, tzinfo=timezone.utc)  # 00:30 on 2 March in Shanghai


# ------------------------------------------------------------------ the generator


def test_the_generator_is_deterministic_for_a_seed_and_its_shares_match_the_mix():
    one, again, other = generate(500, seed=11, start_at=START), generate(500, seed=11, start_at=START), generate(500, seed=12, start_at=START)
    assert one == again
    assert [l.amount_due for l in one.loans] != [l.amount_due for l in other.loans]

    counts = one.counts()
    assert dict(counts) == allocate(500, DEFAULT_MIX)
    for kind, share in DEFAULT_MIX.items():
        assert abs(counts[kind] - share * 500) < 1, kind
    # A mix of whole numbers is normalized (a tie for the last loan goes to
    # the behaviour listed first); traits come in exact shares too.
    small = generate(14, seed=3, start_at=START, mix={"takes_plan": 10, "disputes": 5, "never_pays": 5})
    assert small.counts() == Counter({"takes_plan": 7, "never_pays": 4, "disputes": 3})
    plans = [l.behaviour for l in small.loans if l.behaviour.kind == "takes_plan"]
    assert sum(b.breaks_at == 2 for b in plans) == round(TRAIT_SHARES["takes_plan.breaks_at_2"] * 7) == 2
    disputes = [l.behaviour for l in small.loans if l.behaviour.kind == "disputes"]
    assert sum(b.upheld for b in disputes) == 1  # 40 % of 3, rounded


def test_generated_loans_look_like_a_market_and_place_as_they_are():
    cn = generate(500, seed=5, start_at=START)
    amounts = [l.amount_due for l in cn.loans]
    assert {l.currency for l in cn.loans} == {"CNY"}
    assert sum(a < 300 for a in amounts) >= 5 and sum(a > 5000 for a in amounts) >= 20
    assert Decimal("1200") < sorted(amounts)[250] < Decimal("1800")
    zones = Counter((l.language, l.time_zone) for l in cn.loans)
    assert zones.most_common(1)[0][0] == ("zh_CN", "Asia/Shanghai") and ("zh_TW", "Asia/Taipei") in zones
    scores = [l.risk_score for l in cn.loans]
    assert 50 < scores.count(None) < 150 and all(0 <= s <= 1000 for s in scores if s is not None)
    reminder = [l for l in cn.loans if l.behaviour.kind == "pays_on_reminder"]
    assert all((l.risk_score or 0) < 700 and l.amount_due < 5000 for l in reminder)
    # Day 1 in every borrower's zone at the start; clearly fake contact details.
    assert all((START.astimezone(ZoneInfo(l.time_zone)).date() - l.due_date).days == 1 for l in cn.loans)
    assert all(l.phone.startswith("+8613800138") for l in cn.loans)  # +86 138 0013 8xxx
    assert all(l.email is None or l.email.endswith("@example.com") for l in cn.loans)
    assert len(validate_placements(cn.records("default"))) == 500

    us = generate(300, seed=5, market="us")
    assert {l.currency for l in us.loans} == {"USD"}
    assert {l.time_zone for l in us.loans} <= {"America/New_York", "America/Chicago", "America/Los_Angeles"}
    assert all("555" == l.phone[5:8] and 100 <= int(l.phone[-3:]) <= 199 for l in us.loans)
    assert len(validate_placements(us.records("us"))) == 300
    # The default start leaves a day of margin, at 00:30 in the westernmost zone.
    now = datetime(2027, 3, 1, 12, 0, tzinfo=timezone.utc)
    start = default_start(now, "us")
    assert start - now > timedelta(days=1) and start.astimezone(ZoneInfo("America/Los_Angeles")).strftime("%H:%M") == "00:30"


# ------------------------------------------------------------------ a run

MIX = "pays_on_reminder=3,pays_after_call=3,takes_plan=3,breaks_promise=2,partial_payer=1,never_pays=1,disputes=1"


def _sessions(url: str):
    return make_session_factory(make_engine(url))


def _loans(url: str) -> dict[str, Loan]:
    with _sessions(url)() as db:
        return {loan.loan_id: loan for loan in db.scalars(select(Loan))}


def _final_stages(url: str) -> dict[str, str]:
    with _sessions(url)() as db:
        rows = db.execute(select(StageEntry.loan_id, StageEntry.stage).order_by(StageEntry.entered_at, StageEntry.id))
        return {loan_id: stage for loan_id, stage in rows}


async def test_a_champion_challenger_run_acts_out_each_behaviour_and_prints_the_kpis_of_its_database(tmp_path: Path, capsys):
    args = parse_args(["--loans", "14", "--seed", "4", "--mix", MIX, "--challenger", "challenger_early_calls",
                       "--out", str(tmp_path / "sim")])
    answer = await simulate(args, lambda _text: None)
    printed = capsys.readouterr().out

    portfolio = {l["loan_id"]: l for l in json.loads((tmp_path / "sim" / "portfolio.json").read_text())["loans"]}
    kinds = {loan_id: l["behaviour"]["kind"] for loan_id, l in portfolio.items()}
    assert Counter(kinds.values()) == Counter(
        {"pays_on_reminder": 3, "pays_after_call": 3, "takes_plan": 3, "breaks_promise": 2, "partial_payer": 1,
         "never_pays": 1, "disputes": 1}
    )
    champion, challenger = answer["runs"]["champion"], answer["runs"]["challenger"]
    assert (champion["policy"], challenger["policy"]) == ("default", "challenger_early_calls")
    url = champion["database_url"]
    loans, finals = _loans(url), _final_stages(url)
    assert all(loan.outcome is not None for loan in loans.values()), "every loan closed within 200 days"

    # Pays on reminder: repaid, in the reminder stage, under the default.
    for loan_id in (i for i, k in kinds.items() if k == "pays_on_reminder"):
        assert (loans[loan_id].outcome, finals[loan_id]) == ("repaid", "reminder"), loan_id
    # Never pays: written off.
    assert {loans[i].outcome for i, k in kinds.items() if k == "never_pays"} == {"written_off"}
    # Plan takers: a plan each in the plans table, broken where they stop at installment 2.
    with _sessions(url)() as db:
        plans = {p.loan_id: p for p in db.scalars(select(PlanRecord))}
        promises = Counter((p.loan_id, p.status) for p in db.scalars(select(PromiseRecord)))
    takers = [i for i, k in kinds.items() if k == "takes_plan"]
    assert set(plans) == set(takers)
    for loan_id in takers:
        breaks = portfolio[loan_id]["behaviour"]["breaks_at"] == 2
        assert plans[loan_id].status == ("broken" if breaks else "kept"), loan_id
        assert loans[loan_id].outcome == ("written_off" if breaks else "repaid"), loan_id
    # Promise breakers: their promises in the promises table, every one broken.
    for loan_id in (i for i, k in kinds.items() if k == "breaks_promise"):
        made = portfolio[loan_id]["behaviour"]["promises"]
        assert promises[(loan_id, "broken")] == made and promises[(loan_id, "kept")] == 0, loan_id

    # The KPIs printed (tables) and answered (--json) are reports/kpi.py's on each run's database.
    for run in (champion, challenger):
        with _sessions(run["database_url"])() as db:
            report = build_report(db)
        assert run["kpis"]["overall"] == kpis_json(report.overall)
        assert run["kpis"]["groups"] == [{"policy": g.policy, "segment": g.segment, **kpis_json(g.kpis)} for g in report.groups]
        for table in tables(report):
            assert format_table(table) in printed, table.title
        assert Path(run["kpis"]["files"]["png"]).stat().st_size > 0
    assert "=== champion: policy default ===" in printed and "=== challenger: policy challenger_early_calls ===" in printed

    # The challenger ran the same loans (ids, amounts, due dates) on a database of its own.
    other = _loans(challenger["database_url"])
    assert challenger["database_url"] != url
    assert {i: (l.amount_due, l.currency, l.due_date) for i, l in other.items()} == {
        i: (l.amount_due, l.currency, l.due_date) for i, l in loans.items()
    }
    assert {l.policy for l in other.values()} == {"challenger_early_calls"} and {l.policy for l in loans.values()} == {"default"}
    assert {g["policy"] for g in challenger["kpis"]["groups"]} == {"challenger_early_calls"}
    # Calling from day 4: those who pay after a call pay sooner (or as soon, in
    # a segment the default already calls early), at least one sooner.
    callers = [i for i, k in kinds.items() if k == "pays_after_call" and loans[i].outcome == "repaid"]
    assert callers
    sooner = [other[i].max_days_past_due - loans[i].max_days_past_due for i in callers if other[i].outcome == "repaid"]
    assert len(sooner) == len(callers) and all(d <= 0 for d in sooner) and any(d < 0 for d in sooner)

    rows = {row["kpi"]: row for row in answer["comparison"]}
    assert rows["recovery rate (CNY)"]["champion_value"] == champion["kpis"]["overall"]["by_currency"]["CNY"]["recovery_rate"]["value"]
    assert rows["recovery rate (CNY)"]["challenger_value"] == challenger["kpis"]["overall"]["by_currency"]["CNY"]["recovery_rate"]["value"]
    assert rows["cure rate reminder"]["champion_value"] == champion["kpis"]["overall"]["cure_rate_by_stage"]["reminder"]["cure_rate"]["value"]
    assert "contacts per unit recovered (CNY)" in rows
    assert "Champion/challenger on the same 14 loans: default vs challenger_early_calls" in printed
    for run in (champion, challenger):
        assert run["throughput"]["workflow_task_failures"] == 0
        assert run["rejections"] == []


def test_the_behaviours_cover_every_kind():
    assert set(DEFAULT_MIX) == set(BEHAVIOURS)
