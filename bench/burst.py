"""Webhook burst: many command-report webhooks at once against the running stack, over HTTP.

The stack is ``python -m infra.local.run`` in a subprocess (as for the fleet run), its MDM server
the NanoMDM-shaped fake in this process. Each run sends its webhooks from ``senders`` threads, one
keep-alive connection each, signed with the stack's HMAC key, and records every status code and
each webhook's latency at the sender; afterwards it waits until the events queue is empty and
reads the dead-letter queue (moto, at the endpoint the stack printed).

- **closed loop**: each sender sends its next webhook when the previous one is answered. Latency
  and throughput are then tied by Little's law (latency ≈ senders / throughput): the figures
  say how fast the intake answers when it is the bottleneck.
- **open loop**: the webhooks leave at a fixed aggregate rate (webhook j at t0 + j / rate, sender
  j mod senders), whatever the answers do. Latency is counted from the scheduled time, so a sender
  held up by a slow answer shows the wait it caused (no coordinated omission); the service time
  from the actual send is printed beside it.

The reports are valid (Acknowledged DeviceInformation, distinct devices and CommandUUIDs) for
commands the engine does not track (it accepts and ignores them), and in one more closed-loop run
for commands it does: the inventory workflow is started for ``webhooks / 2`` devices that do not
answer, and the burst is their DeviceInformation and SecurityInfo reports; every inventory must
then be complete, which proves no event was lost.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.fleet import POLL_CHUNK, START_CHUNK, _complete
from bench.fleet_devices import answer_plist, device_id
from bench.nanomdm import INVENTORY, Admin, WebhookSender, bench_stack, percentile
from infra.local.stack_process import StackProcess
from tests.fakes.mdm_server import FakeMDMServer
from tests.fakes.reports import connect_webhook, device_information

WEBHOOKS = 1_000
QUICK_WEBHOOKS = 300
SENDERS = 50
RATES = (200.0, 500.0)
TARGET_P50_MS = 20.0
TARGET_P99_MS = 100.0


@dataclass
class BurstResult:
    name: str
    model: str  # "closed" or "open"
    webhooks: int
    senders: int
    rate: float | None = None  # open loop: the aggregate send rate asked for (per second)
    seconds: float = 0.0  # first send -> last answer
    statuses: dict[int, int] = field(default_factory=dict)
    p50_ms: float = 0.0  # closed: from send; open: from the scheduled time
    p99_ms: float = 0.0
    max_ms: float = 0.0
    service_p50_ms: float = 0.0  # from the actual send
    service_p99_ms: float = 0.0
    late: int = 0  # open loop: webhooks sent more than 5 ms after their time
    failures: dict[str, int] = field(default_factory=dict)  # no answer: why
    drain_seconds: float = 0.0  # last answer -> events queue empty
    queue_left: int = 0
    dead_letters: int = 0  # new in the dead-letter queue since the run began
    tracked: int = 0  # devices whose reports these were (tracked run)
    verified: int = 0  # of those, inventories complete afterwards

    @property
    def throughput(self) -> float:
        return self.webhooks / self.seconds if self.seconds else 0.0

    @property
    def lost(self) -> bool:
        return (
            set(self.statuses) != {200}
            or self.queue_left > 0
            or self.dead_letters > 0
            or self.verified < self.tracked
        )

    @property
    def within_targets(self) -> bool:
        return self.p50_ms <= TARGET_P50_MS and self.p99_ms <= TARGET_P99_MS

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.update(throughput=self.throughput, lost=self.lost, within_targets=self.within_targets)
        return doc


def untracked_bodies(n: int, tag: int) -> list[bytes]:
    """``n`` valid DeviceInformation reports from ``n`` devices, for commands nobody sent."""
    bodies: list[bytes] = []
    for k in range(n):
        udid = device_id(10**6 * (tag + 1) + k)
        cmd_uuid = str(uuid.uuid4()).upper()
        raw = device_information(cmd_uuid, udid, UDID=udid, Model="Mac14,2", SerialNumber=f"C02B{k:08d}")
        bodies.append(connect_webhook(udid, cmd_uuid, raw))
    return bodies


def run(
    webhooks: int = WEBHOOKS,
    *,
    senders: int = SENDERS,
    rates: Sequence[float] = RATES,
    tracked: bool = True,
    warmup: int = 50,
    progress: Callable[[str], None] | None = None,
) -> list[BurstResult]:
    say = progress or (lambda _m: None)
    api_key, hmac_key = secrets.token_hex(16), secrets.token_hex(16)
    results: list[BurstResult] = []
    with bench_stack(api_key, hmac_key) as (mdm, stack):
        say(f"burst: stack {stack.prefix} on {stack.base_url} (log {stack.log_path})")
        sender_args = (stack, hmac_key, senders)
        if warmup:
            _closed("warm-up", untracked_bodies(warmup, 0), *sender_args)
        results.append(_closed("closed loop, untracked", untracked_bodies(webhooks, 1), *sender_args))
        say(_said(results[-1]))
        if tracked:
            results.append(_tracked(stack, mdm, api_key, hmac_key, senders, webhooks // 2))
            say(_said(results[-1]))
        for i, rate in enumerate(rates):
            bodies = untracked_bodies(webhooks, 10 + i)
            results.append(_open(f"open loop, {rate:g}/s, untracked", bodies, rate, *sender_args))
            say(_said(results[-1]))
    return results


def _said(r: BurstResult) -> str:
    return (
        f"burst: {r.name}: {r.webhooks} webhooks in {r.seconds:.2f}s, "
        f"p50 {r.p50_ms:.1f} ms, p99 {r.p99_ms:.1f} ms, drained in {r.drain_seconds:.1f}s"
    )


def _threads(senders: int, sender: WebhookSender, work: Callable[[int, float], None]) -> float:
    """Run ``work(i, t0)`` on ``senders`` threads, each with its connection already open; t0 is
    taken once every thread is ready. Returns t0."""
    t0_box: list[float] = []
    barrier = threading.Barrier(senders, action=lambda: t0_box.append(time.perf_counter()))

    def body(i: int) -> None:
        sender.http.connect()
        barrier.wait(timeout=60)
        work(i, t0_box[0])

    threads = [threading.Thread(target=body, args=(i,), name=f"burst-{i}") for i in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return t0_box[0]


def _closed(name: str, bodies: list[bytes], stack: StackProcess, hmac_key: str, senders: int) -> BurstResult:
    dlq_before = stack.queue_depths()[1]
    sender = WebhookSender(stack.base_url, hmac_key)
    lock = threading.Lock()
    queue = list(reversed(bodies))
    ends: list[float] = []

    def work(_i: int, _t0: float) -> None:
        while True:
            with lock:
                if not queue:
                    break
                body = queue.pop()
            sender.post(body)
        with lock:
            ends.append(time.perf_counter())

    t0 = _threads(senders, sender, work)
    result = BurstResult(name, "closed", len(bodies), senders, seconds=max(ends) - t0)
    lat = list(sender.latencies)
    result.p50_ms = result.service_p50_ms = percentile(lat, 50) * 1000
    result.p99_ms = result.service_p99_ms = percentile(lat, 99) * 1000
    result.max_ms = max(lat, default=0.0) * 1000
    result.statuses = dict(sender.statuses)
    result.failures = dict(sender.failures)
    _drain(stack, result, dlq_before)
    return result


def _open(
    name: str, bodies: list[bytes], rate: float, stack: StackProcess, hmac_key: str, senders: int
) -> BurstResult:
    dlq_before = stack.queue_depths()[1]
    sender = WebhookSender(stack.base_url, hmac_key)
    lock = threading.Lock()
    from_schedule: list[float] = []
    late = [0]
    ends: list[float] = []

    def work(i: int, t0: float) -> None:
        mine: list[float] = []
        behind = 0
        for j in range(i, len(bodies), senders):
            due = t0 + j / rate
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            sent = time.perf_counter()
            if sent - due > 0.005:
                behind += 1
            _, elapsed = sender.post(bodies[j])
            mine.append(sent - due + elapsed)
        with lock:
            from_schedule.extend(mine)
            late[0] += behind
            ends.append(time.perf_counter())

    t0 = _threads(senders, sender, work)
    result = BurstResult(name, "open", len(bodies), senders, rate=rate, seconds=max(ends) - t0)
    service = list(sender.latencies)
    result.p50_ms = percentile(from_schedule, 50) * 1000
    result.p99_ms = percentile(from_schedule, 99) * 1000
    result.max_ms = max(from_schedule, default=0.0) * 1000
    result.service_p50_ms = percentile(service, 50) * 1000
    result.service_p99_ms = percentile(service, 99) * 1000
    result.late = late[0]
    result.statuses = dict(sender.statuses)
    result.failures = dict(sender.failures)
    _drain(stack, result, dlq_before)
    return result


def _tracked(
    stack: StackProcess, mdm: FakeMDMServer, api_key: str, hmac_key: str, senders: int, devices: int
) -> BurstResult:
    """The inventory workflow started for ``devices`` silent devices; the burst is their reports."""
    admin = Admin(stack.base_url, api_key)
    ids = [device_id(9 * 10**7 + k) for k in range(devices)]
    for i in range(0, devices, START_CHUNK):
        status, body = admin.start(INVENTORY, ids[i : i + START_CHUNK])
        if status != 200:
            raise RuntimeError(f"starting the inventory workflow answered {status}: {body}")
    bodies: list[bytes] = []
    for index, udid in enumerate(ids):
        for command in mdm.commands_for(udid):
            raw = answer_plist(command, udid, index)
            bodies.append(connect_webhook(udid, str(command.get("CommandUUID", "")), raw))
    result = _closed("closed loop, tracked (inventory)", bodies, stack, hmac_key, senders)
    result.tracked = devices
    verified: set[str] = set()
    for k in range(0, devices, POLL_CHUNK):
        chunk = ids[k : k + POLL_CHUNK]
        records = admin.inventory(chunk)
        verified.update(i for i in chunk if _complete(records.get(i)))
    result.verified = len(verified)
    return result


def _drain(stack: StackProcess, result: BurstResult, dlq_before: int) -> None:
    drained, result.drain_seconds = stack.wait_drained(timeout=max(120.0, result.webhooks * 0.2))
    depth, dlq = stack.queue_depths()
    result.queue_left = 0 if drained else depth
    result.dead_letters = max(0, dlq - dlq_before)


def render(results: Sequence[BurstResult]) -> tuple[list[str], list[list[Any]], list[str]]:
    headers = [
        "run",
        "webhooks",
        "statuses",
        "p50 (ms)",
        "p99 (ms)",
        "max (ms)",
        "service p50/p99 (ms)",
        "webhooks/s",
        "drain (s)",
        "dead-lettered",
        "lost",
        "p50 ≤ 20, p99 ≤ 100",
    ]
    rows: list[list[Any]] = []
    for r in results:
        statuses = ", ".join(f"{code}: {count}" for code, count in sorted(r.statuses.items()))
        rows.append(
            [
                r.name,
                r.webhooks,
                statuses,
                round(r.p50_ms, 1),
                round(r.p99_ms, 1),
                round(r.max_ms, 1),
                f"{r.service_p50_ms:.1f} / {r.service_p99_ms:.1f}",
                round(r.throughput, 1),
                round(r.drain_seconds, 2),
                r.dead_letters,
                "NO LOSS" if not r.lost else "LOST",
                r.within_targets,
            ]
        )
    notes: list[str] = []
    if results:
        s = results[0].senders
        closed = next((r for r in results if r.model == "closed"), None)
        notes.append(
            f"{s} senders, one keep-alive connection each. Closed loop: each sends its next webhook when "
            "the previous is answered, so latency ≈ senders / throughput (Little's law)"
            + (
                f": {s} / {closed.throughput:.0f} per s = {1000 * s / closed.throughput:.0f} ms"
                if closed and closed.throughput
                else ""
            )
            + "."
        )
        notes.append(
            "Open loop: webhook j leaves at t0 + j / rate whatever the answers; p50/p99/max from the "
            "scheduled time (a held-up sender's wait counts), service from the actual send."
        )
    for r in results:
        if r.late:
            notes.append(f"{r.name}: {r.late} of {r.webhooks} left more than 5 ms after their time")
        if r.tracked:
            notes.append(f"{r.name}: {r.verified} of {r.tracked} inventories complete afterwards")
        for why, count in r.failures.items():
            notes.append(f"{r.name}: no answer to {count} webhooks: {why}")
        if r.queue_left:
            notes.append(f"{r.name}: {r.queue_left} events still queued when the wait gave up")
    notes.append(
        "drain = last answer until the events queue is empty; lost = any status but 200, anything left "
        "queued or dead-lettered, or (tracked) an inventory incomplete."
    )
    return headers, rows, notes
