"""``python -m bench.run [--quick] [--json out.json] [--only ddb,cold,throughput]``.

Starts its own DynamoDB Local and sets the AWS environment itself (dummy credentials, loopback
endpoints), so ``make bench`` runs on a fresh machine once ``make`` has installed things. Prints one
table per benchmark, with the machine and date the figures belong to.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any

from bench import (
    burst,
    cold_start,
    ddb_cost,
    first_event,
    fleet,
    fleet_starts,
    queue,
    report,
    stack,
    stack_starts,
    throughput,
)
from bench.recorder import DynamoDBRecorder

ALL = ("ddb", "cold", "first", "throughput", "starts", "fleet_starts", "fleet", "burst", "queue")


def _progress(message: str) -> None:
    print(f"  … {message}", file=sys.stderr, flush=True)


def _print_table(title: str, rendered: tuple[list[str], list[list[Any]], list[str]]) -> None:
    headers, rows, notes = rendered
    print(f"\n## {title}\n")
    print(report.table(headers, rows))
    for note in notes:
        print(note)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the small sizes only (about a minute)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    parser.add_argument("--only", default=",".join(ALL), help=f"comma-separated subset of {','.join(ALL)}")
    args = parser.parse_args(argv)
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    unknown = only - set(ALL)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")

    sizes = ddb_cost.QUICK_SIZES if args.quick else ddb_cost.SIZES
    devices, api_starts = (100, 50) if args.quick else (1_000, 200)
    info = report.machine()
    out: dict[str, Any] = {"machine": info, "quick": args.quick}
    print("# nanocmd-serverless benchmarks")
    print(f"machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}, {info['platform']}")
    print(f"date: {info['date']}; load average at start: {' '.join(map(str, info['load_average']))}")

    if "cold" in only:  # as Lambda imports a handler (bench/lambda_sandbox.py), rounds of pairs
        pairs = 5 if args.quick else cold_start.PAIRS
        results, no_pyc = cold_start.measure(cold_start.function_names(), pairs, _progress, True)
        out["cold_start"] = [r.to_json() for r in results]
        _print_table("Cold start (handler import, as on Lambda)", cold_start.render(results, pairs, no_pyc))

    if only & {"ddb", "first", "throughput"}:
        with ExitStack() as services:
            services.enter_context(stack.dynamodb_local())
            recorder = DynamoDBRecorder().install()
            services.callback(recorder.uninstall)
            if "ddb" in only:
                table = services.enter_context(stack.fresh_table())
                cost = ddb_cost.run(table, recorder, sizes=sizes, progress=_progress)
                out["dynamodb_cost"] = cost.to_json()
                _print_table("DynamoDB cost per event (DynamoDB Local)", ddb_cost.render(cost))
                _print_table(
                    "What status and history add per event (instance tracking on vs off)",
                    ddb_cost.render_extra(cost),
                )
            if "first" in only:
                with stack.fresh_table() as table:
                    first = first_event.run(table, runs=3 if args.quick else 5, progress=_progress)
                out["first_event"] = first.to_json()
                _print_table("First event after a cold start (events function)", first_event.render(first))
            if "throughput" in only:
                with stack.fresh_table() as table:
                    tp = throughput.run(
                        table, recorder, devices=devices, api_starts=api_starts, progress=_progress
                    )
                out["throughput"] = tp.to_json()
                _print_table("Throughput, one worker", throughput.render(tp))

    if "starts" in only:  # the make run stack in a subprocess, starts over HTTP
        starts = stack_starts.run(progress=_progress)
        out["starts"] = starts.to_json()
        _print_table("Starts on the local stack (5 x 100 ids)", stack_starts.render(starts))

    if "fleet_starts" in only:  # asynchronous starts of 1,000 / 10,000 ids on the make run stack
        fs = fleet_starts.run(  # the full run includes 100,000 ids (over ten minutes)
            fleet_starts.QUICK_SIZES if args.quick else fleet_starts.SIZES,
            full=not args.quick,
            progress=_progress,
        )
        out["fleet_starts"] = fs.to_json()
        _print_table(
            "Fleet starts: one request, 202, chunks through the queue (local stack)", fleet_starts.render(fs)
        )

    if "fleet" in only:  # the whole local stack in a subprocess, devices answering over HTTP
        fleet_results = fleet.run(fleet.QUICK_SIZES if args.quick else fleet.SIZES, progress=_progress)
        out["fleet"] = [r.to_json() for r in fleet_results]
        _print_table("Fleet: inventory workflow end to end (local stack)", fleet.render(fleet_results))

    if "burst" in only:
        bursts = burst.run(burst.QUICK_WEBHOOKS if args.quick else burst.WEBHOOKS, progress=_progress)
        out["burst"] = [r.to_json() for r in bursts]
        _print_table("Webhook burst (local stack)", burst.render(bursts))

    if "queue" in only:  # its own moto, fauxqs and DynamoDB Local instances
        q = queue.run(quick=args.quick, progress=_progress)
        out["queue"] = q.to_json()
        _print_table("Local SQS: moto's server vs fauxqs", queue.render(q))
        _print_table("DynamoDB Local: storage and JVM flags", queue.render_dynamodb(q))

    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2, sort_keys=True, default=str)
        print(f"\nfigures written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
