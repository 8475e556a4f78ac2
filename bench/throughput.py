"""Benchmark 3: how many events one events-function worker processes per second on one core,
what each costs in CPU (our code, the AWS SDK, Powertools) and in waiting on DynamoDB; and
workflow starts per second through the API function.

Driven through the real handlers, ``functions/events/app.py`` with SQS FIFO events of 10 records
and ``functions/api/app.py`` with API Gateway proxy events, against DynamoDB Local. Only the MDM
server is replaced (an in-memory client, by swapping the handler module's ``build_app`` for one
that passes it), so the figures are the engine's, the SDK's and DynamoDB's.

CPU split: a SIGPROF sampler (every millisecond of process CPU) charges each sample to the
innermost frame that belongs to our code (nanocmd_core, functions), the AWS SDK (botocore,
pynamodb, urllib3, ...) or Powertools; stdlib and pydantic frames count for whoever called them.
cProfile cannot do that attribution (no stacks) and doubles the cost of call-heavy code. The
split comes from a separate, sampled pass; the rates from an unsampled one. Waiting on DynamoDB
is wall time minus process CPU (DynamoDB Local runs on the same cores, so it includes its CPU).
"""

from __future__ import annotations

import os
import signal
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from types import FrameType, ModuleType
from typing import Any

from bench.fakes import InMemoryMDMClient, sqs_event
from bench.recorder import DynamoDBRecorder, Usage
from bench.stack import REPO_ROOT, silence_logs
from infra.local.events import basic_auth, proxy_event
from infra.local.lambda_runtime import LambdaContext, load_module
from infra.local.stack import reset_settings_cache
from nanocmd_core import wiring
from nanocmd_core.workflows.inventory import NAME as INVENTORY
from tests.fakes.intake import through_intake
from tests.fakes.reports import connect_webhook, device_information, security_info

TARGET_OURS_MS = 1.0
TARGET_TOTAL_MS = 5.0
API_KEY = "bench-api-key"
PASSES = 5
BATCH = 10  # the most records an SQS FIFO event source mapping passes at once
FLEET_REQUESTS = 5
FLEET_PER_REQUEST = 100
FLEET_TARGET_S = 5.0  # 500 ids in 5 requests of 100
INVENTORY_COMMANDS = 2  # DeviceInformation, SecurityInfo

_OWNERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("sdk", ("/botocore/", "/pynamodb/", "/boto3/", "/urllib3/", "/s3transfer/", "/jmespath/", "/dateutil/")),
    ("powertools", ("/aws_lambda_powertools/",)),
    ("ours", ("/nanocmd_core/", str(REPO_ROOT / "functions") + "/")),
)


def _owner(frame: FrameType | None) -> str:
    while frame is not None:
        path = frame.f_code.co_filename
        for owner, marks in _OWNERS:
            if any(m in path for m in marks):
                return owner
        frame = frame.f_back
    return "other"


class StackSampler:
    """Counts samples per owner every ``interval`` seconds of process CPU (SIGPROF)."""

    def __init__(self, interval: float = 0.001) -> None:
        self.interval = interval
        self.counts: Counter[str] = Counter()

    def _sample(self, signum: int, frame: FrameType | None) -> None:
        self.counts[_owner(frame)] += 1

    @contextmanager
    def sampling(self) -> Iterator[StackSampler]:
        previous = signal.signal(signal.SIGPROF, self._sample)
        signal.setitimer(signal.ITIMER_PROF, self.interval, self.interval)
        try:
            yield self
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0, 0)
            signal.signal(signal.SIGPROF, previous)

    def shares(self) -> dict[str, float]:
        total = sum(self.counts.values()) or 1
        return {k: self.counts.get(k, 0) / total for k in ("ours", "sdk", "powertools", "other")}


@dataclass
class Pass:
    """One timed run of n units of work (events or starts)."""

    n: int
    wall: float
    cpu: float
    dynamodb_calls: Counter[str] = field(default_factory=Counter)
    passes: list[float] = field(default_factory=list)
    """CPU ms per unit of each timed slice, when the work ran as several."""

    @classmethod
    def total(cls, passes: Sequence[Pass]) -> Pass:
        n, wall, cpu = sum(p.n for p in passes), sum(p.wall for p in passes), sum(p.cpu for p in passes)
        whole = cls(n=n, wall=wall, cpu=cpu)
        for p in passes:
            whole.dynamodb_calls.update(p.dynamodb_calls)
        whole.passes = [p.cpu_ms for p in passes]
        return whole

    @property
    def best_cpu_ms(self) -> float:
        return min(self.passes, default=self.cpu_ms)

    @property
    def median_cpu_ms(self) -> float:
        return statistics.median(self.passes) if self.passes else self.cpu_ms

    @property
    def per_second(self) -> float:
        return self.n / self.wall if self.wall else 0.0

    @property
    def cpu_ms(self) -> float:
        return self.cpu / self.n * 1000

    @property
    def wait_ms(self) -> float:
        return max(0.0, self.wall - self.cpu) / self.n * 1000

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "wall_s": round(self.wall, 3),
            "cpu_s": round(self.cpu, 3),
            "per_second": round(self.per_second, 1),
            "cpu_ms_per_unit": round(self.cpu_ms, 3),
            "cpu_ms_per_unit_by_pass": [round(c, 3) for c in self.passes],
            "wait_ms_per_unit": round(self.wait_ms, 3),
            "dynamodb_calls_per_unit": {
                k: round(v / self.n, 3) for k, v in sorted(self.dynamodb_calls.items())
            },
        }


@dataclass
class FleetStarts:
    """Inventory starts for many ids through the API function: ``requests`` requests of ``per_request``
    ids each, one after the other, as an admin script starting a fleet would send them."""

    requests: int
    per_request: int
    wall: float
    cpu: float
    calls: Counter[str] = field(default_factory=Counter)
    wcu: float = 0.0
    estimated: int = 0
    """Calls whose WCU DynamoDB Local did not report (failed conditional writes), counted as 1."""

    @property
    def ids(self) -> int:
        return self.requests * self.per_request

    @property
    def per_second(self) -> float:
        return self.ids / self.wall if self.wall else 0.0

    def per_id(self, op: str | None = None) -> float:
        n = sum(self.calls.values()) if op is None else self.calls.get(op, 0)
        return n / self.ids

    @staticmethod
    def floor_calls() -> dict[str, float]:
        """Per id: the conditional lock put (100 to a TransactWriteItems), and the unconditional
        items (step target, one record per command, start record) 25 to a BatchWriteItem."""
        return {"TransactWriteItems": 0.01, "BatchWriteItem": (1 + INVENTORY_COMMANDS + 1) / 25}

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "ids_per_request": self.per_request,
            "wall_s": round(self.wall, 3),
            "cpu_s": round(self.cpu, 3),
            "ids_per_second": round(self.per_second, 1),
            "calls_per_id": {k: round(v / self.ids, 3) for k, v in sorted(self.calls.items())},
            "wcu_per_id": round(self.wcu / self.ids, 3),
            "floor_calls_per_id": {k: round(v, 3) for k, v in self.floor_calls().items()},
            "target_wall_s": FLEET_TARGET_S if self.ids == 500 else None,
        }


@dataclass
class ThroughputReport:
    devices: int
    start: Pass
    events: Pass
    split: dict[str, float]
    inventory_written: int
    api: Pass
    fleet: FleetStarts | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            **({"fleet_starts": self.fleet.to_json()} if self.fleet else {}),
            "devices": self.devices,
            "start_via_engine": self.start.to_json(),
            "events": self.events.to_json(),
            "events_cpu_split_share": {k: round(v, 3) for k, v in self.split.items()},
            "events_cpu_ms_by_owner": {
                k: round(v * self.events.best_cpu_ms, 3) for k, v in self.split.items()
            },
            "inventory_written": self.inventory_written,
            "api_starts": self.api.to_json(),
            "targets_ms": {"ours": TARGET_OURS_MS, "total": TARGET_TOTAL_MS},
        }


@contextmanager
def _timed(recorder: DynamoDBRecorder, n: int) -> Iterator[Pass]:
    result = Pass(n=n, wall=0.0, cpu=0.0)
    with recorder.recording() as calls:
        w0, c0 = time.perf_counter(), time.process_time()
        yield result
        result.cpu = time.process_time() - c0
        result.wall = time.perf_counter() - w0
    result.dynamodb_calls = Counter(c.operation for c in calls)


def _load_handler(name: str, client: InMemoryMDMClient) -> ModuleType:
    """functions/<name>/app.py as Lambda loads it, wired to the in-memory MDM client."""
    module = load_module(REPO_ROOT / "functions" / name / "app.py", f"bench_{name}_app")

    def build_app(settings: Any, **kwargs: Any) -> wiring.App:
        return wiring.build_app(settings, mdm=client, plugins=[], **kwargs)

    module.build_app = build_app  # type: ignore[attr-defined]
    silence_logs()
    return module


def _report_events(client: InMemoryMDMClient, ids: Sequence[str]) -> list[dict[str, Any]]:
    """The devices' answers to the inventory step, as SQS events of 10 records."""
    sent = client.take_commands()
    webhooks: list[bytes] = []
    for n, dev in enumerate(ids):
        for command_uuid, request_type in sent[dev]:
            if request_type == "DeviceInformation":
                raw = device_information(
                    command_uuid,
                    dev,
                    Model="Mac14,2",
                    SerialNumber=f"C02{n:09d}",
                    OSVersion="14.5",
                    BuildVersion="23F79",
                    DeviceName=f"Mac {n}",
                    ModelName="MacBook Air",
                    IsMultiUser=False,
                )
            else:
                raw = security_info(
                    command_uuid, dev, SystemIntegrityProtectionEnabled=True, FDE_Enabled=True
                )
            webhooks.append(connect_webhook(dev, command_uuid, raw))
    records = through_intake(webhooks)
    return [sqs_event(records[i : i + BATCH]) for i in range(0, len(records), BATCH)]


def _drive_events(module: ModuleType, events: Sequence[dict[str, Any]]) -> None:
    with _quiet():
        for event in events:
            reply = module.handler(event, LambdaContext("EventsFunction", timeout=900))
            if reply.get("batchItemFailures"):
                raise AssertionError(f"events handler failed records: {reply['batchItemFailures']}")


@contextmanager
def _quiet() -> Iterator[None]:
    """Powertools metrics print their EMF lines straight to stdout: still produced, not shown."""
    with open(os.devnull, "w") as sink, redirect_stdout(sink):
        yield


def fleet_starts(
    api_fn: ModuleType,
    recorder: DynamoDBRecorder,
    requests: int = FLEET_REQUESTS,
    per_request: int = FLEET_PER_REQUEST,
    prefix: str = "f",
) -> FleetStarts:
    """Start the inventory workflow for ``requests`` x ``per_request`` fresh ids through the API
    handler (each request must answer 200), counting every DynamoDB call and its WCU."""
    auth = basic_auth("nanocmd", API_KEY)
    path = f"/v1/workflow/{INVENTORY}/start"
    batches = [
        proxy_event("POST", path, {"id": [f"{prefix}{r:02d}-{n:04d}" for n in range(per_request)]}, auth)
        for r in range(requests)
    ]
    result = FleetStarts(requests=requests, per_request=per_request, wall=0.0, cpu=0.0)
    with recorder.recording() as calls, _quiet():
        w0, c0 = time.perf_counter(), time.process_time()
        for request in batches:
            reply = api_fn.handler(request, LambdaContext("ApiFunction", timeout=29))
            if reply["statusCode"] != 200 or "skipped_ids" in reply.get("body", ""):
                raise AssertionError(f"fleet start answered {reply['statusCode']}: {reply.get('body')}")
        result.cpu = time.process_time() - c0
        result.wall = time.perf_counter() - w0
    usage = Usage.of(list(calls))
    result.calls, result.wcu, result.estimated = usage.calls, usage.wcu, usage.estimated
    return result


def run(
    table_name: str,
    recorder: DynamoDBRecorder,
    devices: int = 1_000,
    api_starts: int = 200,
    progress: Callable[[str], None] | None = None,
) -> ThroughputReport:
    os.environ["NANOCMD_API"] = API_KEY
    os.environ["NANOCMD_TABLE"] = table_name
    reset_settings_cache()
    client = InMemoryMDMClient()
    events_fn = _load_handler("events", client)
    events_fn._app.cache_clear()
    app = events_fn._app()
    engine = app.engine

    # warm-up (clients created, caches filled): a Lambda worker under load is warm
    warm_ids = [f"w{n:06d}" for n in range(10)]
    engine.start_workflow(INVENTORY, warm_ids)
    _drive_events(events_fn, _report_events(client, warm_ids))

    # start → enqueue: one API-style start for all ids (NanoMDM: 30 ids a request)
    ids = [f"t{n:06d}" for n in range(devices)]
    with _timed(recorder, devices) as start:
        engine.start_workflow(INVENTORY, ids)
    events = _report_events(client, ids)
    # PASSES consecutive slices, each timed: on a shared machine, CPU time only ever gains noise
    # (steal time, cache thrash from neighbours), so the best slice is the closest to the cost
    # itself (timeit's reasoning), and the median says how noisy the machine was
    per_pass = max(1, len(events) // PASSES)
    slices = [events[i : i + per_pass] for i in range(0, len(events), per_pass)]
    passes: list[Pass] = []
    for chunk in slices:
        with _timed(recorder, sum(len(e["Records"]) for e in chunk)) as one:
            _drive_events(events_fn, chunk)
        passes.append(one)
    processed = Pass.total(passes)
    if progress:
        progress(f"throughput: {processed.n} events in {processed.wall:.1f}s")

    # the same again for a quarter of the devices, sampled, for the CPU split
    sampled_ids = [f"s{n:06d}" for n in range(max(10, devices // 4))]
    engine.start_workflow(INVENTORY, sampled_ids)
    sampled_events = _report_events(client, sampled_ids)
    sampler = StackSampler()
    with sampler.sampling():
        _drive_events(events_fn, sampled_events)

    written = app.inventory.retrieve(ids)
    complete = sum(1 for v in written.values() if "serial_number" in v and "sip_enabled" in v)

    api_fn = _load_handler("api", client)
    auth = basic_auth("nanocmd", API_KEY)
    path = f"/v1/workflow/{INVENTORY}/start"
    requests = [proxy_event("POST", path, {"id": [f"a{n:06d}"]}, auth) for n in range(api_starts)]
    with _quiet():
        api_fn.handler(
            proxy_event("POST", path, {"id": ["warm-api"]}, auth), LambdaContext("ApiFunction", timeout=29)
        )
    with _timed(recorder, api_starts) as api, _quiet():
        for request in requests:
            reply = api_fn.handler(request, LambdaContext("ApiFunction", timeout=29))
            if reply["statusCode"] != 200:
                raise AssertionError(
                    f"start through the API answered {reply['statusCode']}: {reply.get('body')}"
                )
    if progress:
        progress(f"throughput: {api_starts} API starts in {api.wall:.1f}s")
    fleet = fleet_starts(api_fn, recorder, per_request=min(FLEET_PER_REQUEST, devices))
    if progress:
        progress(f"throughput: {fleet.ids} ids started through the API in {fleet.wall:.1f}s")
    return ThroughputReport(
        devices=devices,
        start=start,
        events=processed,
        split=sampler.shares(),
        inventory_written=complete,
        api=api,
        fleet=fleet,
    )


def render(r: ThroughputReport) -> tuple[list[str], list[list[Any]], list[str]]:
    ev = r.events
    share = r.split
    best = ev.best_cpu_ms
    ours = share["ours"] * best
    headers = ["measure", "value", "target"]
    rows: list[list[Any]] = [
        ["devices (inventory workflow)", r.devices, None],
        ["inventory records written", r.inventory_written, r.devices],
        ["start → enqueue, ids/s (engine, one start)", round(r.start.per_second, 1), None],
        ["report events processed", ev.n, None],
        ["events/s, one worker", round(ev.per_second, 1), None],
        [f"CPU ms per event, best of {len(ev.passes)} passes", round(best, 3), f"≤ {TARGET_TOTAL_MS}"],
        ["  our code (nanocmd_core, functions)", round(ours, 3), f"≤ {TARGET_OURS_MS}"],
        ["  AWS SDK (botocore, pynamodb, urllib3)", round(share["sdk"] * best, 3), None],
        ["  Powertools (batch, logger)", round(share["powertools"] * best, 3), None],
        ["  other", round(share["other"] * best, 3), None],
        ["CPU ms per event, median pass / all events", f"{ev.median_cpu_ms:.3f} / {ev.cpu_ms:.3f}", None],
        ["waiting on DynamoDB, ms per event", round(ev.wait_ms, 3), None],
        ["DynamoDB calls per event", round(sum(ev.dynamodb_calls.values()) / ev.n, 2), None],
        ["API workflow starts/s (1 id each)", round(r.api.per_second, 1), None],
        ["  CPU ms per API start", round(r.api.cpu_ms, 3), None],
        ["  DynamoDB calls per API start", round(sum(r.api.dynamodb_calls.values()) / r.api.n, 2), None],
    ]
    if r.fleet is not None:
        rows += fleet_rows(r.fleet)
    verdict = "within" if ours <= TARGET_OURS_MS and best <= TARGET_TOTAL_MS else "ABOVE"
    notes = [
        "Driven through functions/events/app.py (SQS FIFO events, 10 records) and functions/api/app.py"
        " (API Gateway proxy events); MDM server in memory.",
        f"The events ran as {len(ev.passes)} timed passes; a shared machine only ever adds CPU time"
        " (steal, neighbours), so the best pass is the figure judged, the median shows the noise;"
        " the split into owners applies the sampled pass's shares to it.",
        f"Per-event CPU {verdict} target. DynamoDB calls per event by operation: "
        + ", ".join(f"{k} {v / ev.n:.2f}" for k, v in sorted(ev.dynamodb_calls.items())),
    ]
    return headers, rows, notes


def fleet_rows(f: FleetStarts) -> list[list[Any]]:
    """The fleet starts as rows of the throughput table: rate, and calls and WCU per id by floor."""
    floor = f.floor_calls()
    title = f"fleet starts, {f.requests} API requests x {f.per_request} ids (inventory)"
    target = f"≤ {FLEET_TARGET_S:g} s" if f.ids == 500 else None
    wcu = f"{f.wcu / f.ids:.2f}" + ("*" if f.estimated else "")
    rows: list[list[Any]] = [
        [title, f"{f.wall:.2f} s wall, {f.cpu:.2f} s CPU", target],
        ["  ids started/s", round(f.per_second, 1), None],
        ["  DynamoDB calls per id", round(f.per_id(), 3), f"floor {sum(floor.values()):.2f}"],
    ]
    for op in sorted(set(f.calls) | set(floor)):
        why = " (SC-3 lookup of the command records, reads)" if op == "BatchGetItem" else ""
        rows.append([f"    {op} per id{why}", round(f.per_id(op), 3), f"floor {floor.get(op, 0.0):.2f}"])
    rows.append(["  WCU per id (DynamoDB Local)", wcu, None])
    return rows


def main() -> int:
    """``python -m bench.throughput``: the fleet starts alone, on their own DynamoDB Local."""
    from bench import report, stack

    with stack.dynamodb_local(), stack.fresh_table():
        recorder = DynamoDBRecorder().install()
        try:
            os.environ["NANOCMD_API"] = API_KEY
            reset_settings_cache()
            api_fn = _load_handler("api", InMemoryMDMClient())
            fleet_starts(api_fn, recorder, requests=1, per_request=10, prefix="warm")  # clients, caches
            fleet = fleet_starts(api_fn, recorder)
        finally:
            recorder.uninstall()
    info = report.machine()
    print(f"{info['cpu']}, {info['cores']} cores; load average {' '.join(map(str, info['load_average']))}")
    print(report.table(["measure", "value", "target"], fleet_rows(fleet)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
