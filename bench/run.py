"""The benchmark: DunningWorkflow against a no-op floor, in one run.

    python -m bench                      # the full run: 1,000 loans timed, 2,000 open for memory
    python -m bench --open 10000         # memory with 10,000 open loans (the issue's goal; ~30 min on 2 busy cores)
    python -m bench --smoke              # a tiny run that only checks the benchmark works
    python -m bench --loans 2000 --open 20000 --out /tmp/results.json
    python -m bench --profile bench/profiles   # also record py-spy profiles of the workers

For each kind (the floor `noop` first, then `dunning`) it starts a fresh
in-memory `temporal server start-dev` and a fresh worker process built by
runtime/worker_build.py's build_worker (bench/worker_proc.py), then
(bench/throughput.py):

1. start: N workflows started with bounded concurrency; timed from the first
   start call until the last workflow has run its first activity and the
   workflow task after it (the worker has been idle for a second since);
2. fill: more workflows started until `--open` are open (timed the same way),
   then the worker's resident memory;
3. signal: the first N (the oldest, evicted from the worker's cache when more
   than max_cached_workflows are open) get their repayment signal; timed from
   the first signal call until the worker completed the last of them.

Then, on the time-skipping test server (bench/lifecycle.py), one loan's
180-day lifecycle on the default and on the busy policy
(bench/policies/busy.toml: an SMS every day), on the us and
challenger_early_calls policies for the cost table, and the floor's (started,
180 days waiting, signalled): wall time and history.

Then the scale-out on PostgreSQL (bench/scale_out.py; --skip-scale-out
leaves it out, a smoke run too): the same loans with 1 and with 2 worker
processes against one dev server, the floor the same way, and the database a
default-policy lifecycle leaves behind.

It prints a table (figure, DunningWorkflow, floor, ratio, goal, met?;
bench/figures.py), then the cost per loan on Temporal Cloud (bench/cost.py:
each lifecycle's billable Actions, priced), and writes every number to
`--out` (bench/results.json; the cost table under "cost").
docs/benchmarks.md says what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from bench.cost import PLACEMENTS, cost_summary, provider_reports, report
from bench.figures import GOALS, figures, machine, table
from bench.lifecycle import lifecycles
from bench.processes import ROOT
from bench.scale_out import scale_out
from bench.throughput import launch, throughput
from bench.workload import BENCH, loan_records, prepare_config, seed_database


# The dev-server kinds, in the order they run: the no-op floor, the essential
# floor (bench/essential.py), then the dunning workflow.
KINDS = ("noop", "essential", "dunning")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description="DunningWorkflow against a no-op floor.")
    parser.add_argument("--loans", type=int, default=None, help="workflows in the start and signal figures (default 1000)")
    parser.add_argument("--open", type=int, default=None,
                        help="open workflows for the memory figure (default 2000, twice the worker's cache; "
                             "--open 10000 for the issue's memory goal, about 30 minutes)")
    parser.add_argument("--concurrency", type=int, default=None, help="start and signal calls in flight (default 64)")
    parser.add_argument("--smoke", action="store_true", help="a tiny run that checks the benchmark works; figures mean nothing")
    parser.add_argument("--out", default=None,
                        help="the JSON file to write (default bench/results.json; .dunning/bench-smoke.json for --smoke)")
    parser.add_argument("--profile", default=None, metavar="DIR", help="record py-spy profiles of the workers into DIR")
    parser.add_argument("--skip-lifecycle", action="store_true", help="no time-skipped lifecycles")
    parser.add_argument("--skip-throughput", action="store_true", help="no dev server phases")
    parser.add_argument("--skip-scale-out", action="store_true",
                        help="no 1 vs 2 workers on PostgreSQL (a smoke run leaves it out unless --scale-out-loans is given)")
    parser.add_argument("--scale-out-loans", type=int, default=None,
                        help="loans per scale-out configuration (default 500)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, databases)")
    parser.add_argument("--table", metavar="JSON", default=None, help="only print the table of an earlier run's JSON")
    args = parser.parse_args(argv)
    smoke = args.smoke
    args.loans = args.loans or (20 if smoke else 1000)
    args.open = args.open if args.open is not None else (args.loans if smoke else 2000)
    args.out = args.out or str(ROOT / ".dunning" / "bench-smoke.json" if smoke else BENCH / "results.json")
    args.concurrency = args.concurrency or (8 if smoke else 64)
    # PostgreSQL and four more server+worker runs: not for a smoke run unless asked.
    args.skip_scale_out = args.skip_scale_out or (smoke and args.scale_out_loans is None)
    args.scale_out_loans = args.scale_out_loans or 500
    return args


async def run(args: argparse.Namespace) -> dict:
    began = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="dunning-bench-"))
    results: dict = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "smoke": args.smoke,
        "profiled": bool(args.profile),
        "parameters": {"loans": args.loans, "open": max(args.open, args.loans), "concurrency": args.concurrency},
        "machine": machine(),
        "load_average_before": os.getloadavg(),
        "goals": GOALS,
    }
    print(f"dunning benchmark: {args.loans} loans timed, {max(args.open, args.loans)} open; work in {workdir}", flush=True)
    try:
        config_dir = prepare_config(workdir)
        if not args.skip_throughput:
            loans = loan_records(max(args.open, args.loans))
            # The kinds that write (dunning, and the essential floor) each on a
            # database of their own, seeded alike; the no-op floor writes nothing.
            databases = {kind: f"sqlite:///{workdir / f'{kind}.db'}" for kind in ("essential", "dunning")}
            databases["noop"] = databases["dunning"]
            for url in set(databases.values()):
                seed_database(url, len(loans))
            # A smoke run sets every kind up at once; a measured run one after
            # the other, so that the idle ones take nothing from the measured one.
            launched = {kind: launch(kind, workdir, databases[kind], config_dir) for kind in KINDS if args.smoke}
            try:
                for kind in KINDS:
                    processes = launched.pop(kind, None) or launch(kind, workdir, databases[kind], config_dir)
                    results[kind] = await throughput(kind, args, processes, databases[kind], loans)
            finally:
                for server, worker in launched.values():
                    worker.stop()
                    server.stop()
        if not args.skip_lifecycle:
            # The cost table (bench/cost.py) prices each production policy's lifecycle too.
            policies = ["default"] if args.smoke else ["default", "busy", "us", "challenger_early_calls"]
            results["lifecycle"] = await lifecycles(workdir, config_dir, policies, placements=PLACEMENTS)
            results["cost"] = cost_summary(results["lifecycle"], await provider_reports(workdir, config_dir))
        if not args.skip_scale_out:
            results["scale_out"] = await scale_out(args.scale_out_loans, args.concurrency, workdir, config_dir,
                                                   lifecycles=1 if args.smoke else 3)
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    results["load_average_after"] = os.getloadavg()
    results["seconds"] = time.monotonic() - began
    results["figures"] = figures(results)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.table:
        earlier = json.loads(Path(args.table).read_text(encoding="utf-8"))
        print(table(figures(earlier)))
        if earlier.get("cost"):
            print()
            print(report(earlier["cost"]))
        return 0
    results = asyncio.run(run(args))
    print()
    print(table(results["figures"]))
    if results.get("cost"):
        print()
        print(report(results["cost"]))
    for kind in ("dunning", "essential", "noop"):
        if kind in results:
            print(f"{kind}: max_cached_workflows={results[kind]['max_cached_workflows']}, "
                  f"closed on the server {results[kind]['closed_on_server']}/{results[kind]['signal']['workflows']}")
    machine_info = results["machine"]
    print(f"machine: {machine_info['nproc']} x {machine_info['cpu_model']}, {machine_info['ram_gib']} GiB, "
          f"Python {machine_info['python']}, temporalio {machine_info['temporalio']}; "
          f"load average {results['load_average_before'][0]:.2f} before, {results['load_average_after'][0]:.2f} after; "
          f"{results['seconds']:.0f} s" + (" (smoke run: the figures mean nothing)" if args.smoke else ""))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
