"""python -m simulation: a synthetic portfolio through a policy (and a challenger).

    python -m simulation --loans 200 --policy default
    python -m simulation --loans 200 --policy default --challenger challenger_early_calls --seed 7
    python -m simulation --loans 50 --policy us --days 120 --json --out /tmp/sim

Prints the portfolio, then for each run the KPI tables of reports/kpi.py (on
that run's database), the loans by behaviour and the throughput; with
--challenger, both KPI sets side by side with the differences. Writes
OUT/champion/ (and OUT/challenger/): dunning.db, kpi.png, kpi.html, exports/;
and OUT/portfolio.json (the loans and behaviours, no contact details).
Progress goes to stderr. Exit 0; 2 for a bad option (an unknown policy, a bad
--mix or --start); 1 when a run fails. docs/simulation.md has the details.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from collections import Counter
from datetime import date, datetime, timezone
from pathlib import Path

from dunning.policy import PolicyError
from loaders.config_files import load_policy
from reports.kpi_render import format_text
from runtime.settings import STATE_DIR, Settings
from simulation.comparison import compare, comparison_json, format_comparison
from simulation.portfolio import DEFAULT_MIX, MARKET_OF_PROFILE, MARKETS, Portfolio, default_start, generate, parse_mix, start_on
from simulation.results import RunResult, format_behaviours
from simulation.run import check_simulable, run_policy


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m simulation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--loans", type=int, default=200, help="how many synthetic loans [200]")
    parser.add_argument("--policy", default="default", help="the champion policy (config/policies/NAME.toml) [default]")
    parser.add_argument("--challenger", default=None, help="a second policy to run the same portfolio through")
    parser.add_argument("--seed", type=int, default=1, help="the generator's seed: same seed, same loans [1]")
    parser.add_argument("--days", type=int, default=200, help="days to simulate at most; loans still open then are terminated [200]")
    parser.add_argument("--out", type=Path, default=None, help="where databases, charts and pages go [.dunning/simulation]")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--market", choices=sorted(MARKETS), default=None,
                        help="cn or us loans [the champion policy's compliance profile]")
    parser.add_argument("--mix", default=None,
                        help="behaviour shares, e.g. pays_on_reminder=0.3,never_pays=0.2 (normalized) [the default mix]")
    parser.add_argument("--start", default=None,
                        help="the simulated calendar's first day, YYYY-MM-DD [the day after tomorrow]")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument("--log-level", default="WARNING", help="the worker's log level, on stderr [WARNING]")
    return parser.parse_args(argv)


def portfolio_text(portfolio: Portfolio) -> str:
    loans = portfolio.loans
    counts = portfolio.counts()
    amounts = sorted(loan.amount_due for loan in loans)
    currency = loans[0].currency
    locales = Counter(f"{loan.language} {loan.time_zone}" for loan in loans)
    scores = [loan.risk_score for loan in loans if loan.risk_score is not None]
    lines = [
        f"Portfolio: {len(loans)} synthetic loans, market {portfolio.market}, seed {portfolio.seed}, "
        f"day 1 at {portfolio.start_at.isoformat(timespec='minutes')}",
        f"  amounts ({currency}): median {statistics.median(amounts):.2f}, min {amounts[0]}, max {amounts[-1]}, "
        f"{sum(a < 300 for a in amounts)} under 300, {sum(a > 5000 for a in amounts)} over 5000",
        "  borrowers: " + ", ".join(f"{name} {n}" for name, n in locales.most_common()),
        f"  risk scores: {len(scores)} scored (median {statistics.median(scores):.0f}), {len(loans) - len(scores)} without"
        if scores else f"  risk scores: none of {len(loans)}",
        "  behaviours: " + ", ".join(f"{kind} {counts[kind]}" for kind in portfolio.mix if counts[kind]),
    ]
    return "\n".join(lines)


def portfolio_json(portfolio: Portfolio) -> dict:
    return {
        "seed": portfolio.seed, "market": portfolio.market, "start_at": portfolio.start_at.isoformat(),
        "mix": portfolio.mix, "behaviours": dict(portfolio.counts()),
        "loans": [loan.summary() for loan in portfolio.loans],
    }


def run_text(result: RunResult) -> str:
    return "\n\n".join([
        f"=== {result.label}: policy {result.policy} ===",
        format_text(result.report),
        format_behaviours(result),
        f"Files: {result.files[0]}, {result.files[1]}; database {result.database_url}",
        f"Throughput: {result.throughput.line()}",
        *(["Refused acts (the workflow said no):\n" + "\n".join(f"- {r}" for r in result.rejections)] if result.rejections else []),
    ])


async def simulate(args: argparse.Namespace, say) -> dict:
    """Generate, run, compare; returns the JSON answer (and prints tables unless --json)."""
    settings = Settings()
    champion_policy = load_policy(args.policy, settings.policies_dir)
    challenger_policy = load_policy(args.challenger, settings.policies_dir) if args.challenger else None
    market = args.market or MARKET_OF_PROFILE.get(champion_policy.profile, "cn")
    if challenger_policy is not None and challenger_policy.profile != champion_policy.profile:
        say(f"note: {args.challenger} uses the {challenger_policy.profile} profile, {args.policy} the {champion_policy.profile} one")
    mix = parse_mix(args.mix) if args.mix else dict(DEFAULT_MIX)
    start = start_on(date.fromisoformat(args.start), market) if args.start else default_start(datetime.now(timezone.utc), market)
    portfolio = generate(args.loans, seed=args.seed, market=market, mix=mix, start_at=start)
    out = args.out or STATE_DIR / "simulation"
    out.mkdir(parents=True, exist_ok=True)
    (out / "portfolio.json").write_text(json.dumps(portfolio_json(portfolio), ensure_ascii=False, indent=1), encoding="utf-8")
    if not args.json:
        print(portfolio_text(portfolio), flush=True)

    runs = [("champion", args.policy)] + ([("challenger", args.challenger)] if args.challenger else [])

    async def one(label: str, policy: str) -> RunResult:
        say(f"{label}: {len(portfolio.loans)} loans on policy {policy}, up to {args.days} days")
        return await run_policy(portfolio, policy, out / label, days=args.days, label=label, progress=say)

    # One after the other: side by side (two servers, one worker process) was
    # no faster on 2 cores.
    results: list[RunResult] = []
    for label, policy in runs:
        results.append(await one(label, policy))
        if not args.json:
            print("\n" + run_text(results[-1]), flush=True)
    answer = {
        "portfolio": {k: v for k, v in portfolio_json(portfolio).items() if k != "loans"},
        "portfolio_file": str(out / "portfolio.json"),
        "runs": {r.label: r.as_json() for r in results},
    }
    if len(results) == 2:
        rows = compare(*results)
        answer["comparison"] = comparison_json(rows)
        if not args.json:
            print("\n" + format_comparison(results[0], results[1], rows), flush=True)
    return answer


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    say = (lambda _text: None) if args.quiet else (lambda text: print(text, file=sys.stderr, flush=True))
    if args.loans < 1 or args.days < 1:
        print("--loans and --days must be at least 1", file=sys.stderr)
        return 2
    try:
        if args.start:
            date.fromisoformat(args.start)
        if args.mix:
            parse_mix(args.mix)
        settings = Settings()
        for name in filter(None, (args.policy, args.challenger)):
            check_simulable(load_policy(name, settings.policies_dir))
    except (ValueError, PolicyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from runtime.logging import configure_logging

    configure_logging(args.log_level)
    try:
        answer = asyncio.run(simulate(args, say))
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # noqa: BLE001 - report it and exit 1
        print(f"simulation failed: {type(error).__name__}: {error}", file=sys.stderr)
        raise
    if args.json:
        print(json.dumps(answer, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
