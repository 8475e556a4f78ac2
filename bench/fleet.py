"""Fleet run: the inventory workflow across N simulated devices, end to end over HTTP.

The stack is ``python -m infra.local.run`` (what ``make run`` starts) in a subprocess; its MDM
server is a NanoMDM-shaped fake in this process, behind which N devices (``bench/fleet_devices.py``)
connect when pushed and answer their commands through ``/webhook`` as NanoMDM posts them. The
clock runs from the first ``POST /v1/workflow/io.micromdm.wf.inventory.v1/start`` (100 ids a
request, one request after the other, as an admin script would) until every device's inventory
record, read back with ``GET /v1/inventory``, holds both the DeviceInformation and the SecurityInfo
values the device sent.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.fleet_devices import MODEL, Fleet
from bench.nanomdm import INVENTORY, Admin, WebhookSender, bench_stack, percentile
from infra.local.stack_process import StackProcess
from tests.fakes.mdm_server import FakeMDMServer

SIZES = (200, 1_000)
QUICK_SIZES = (50, 200)
TARGET_SECONDS = {200: 3.5, 1_000: 15.0}
FLAT_RATIO = 1.2  # "time per device flat": the largest size's s/device within 1.2 x the smallest's
START_CHUNK = 100
POLL_CHUNK = 100
POLL_INTERVAL = 0.2


@dataclass
class FleetResult:
    devices: int
    senders: int
    complete: int = 0  # inventories verified
    seconds: float = 0.0  # first start request -> all inventories (or the timeout)
    starts_seconds: float = 0.0  # first start request -> last start answered
    answered_seconds: float = 0.0  # first start request -> last device's last answer
    drain_seconds: float = 0.0  # after the finish line, until the events queue was empty
    webhooks: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)
    start_statuses: dict[int, int] = field(default_factory=dict)
    sessions: int = 0
    dead_letters: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.complete == self.devices and not self.errors and set(self.statuses) == {200}

    @property
    def per_device(self) -> float:
        return self.seconds / self.devices if self.devices else 0.0

    @property
    def events_per_second(self) -> float:
        return self.webhooks / self.seconds if self.seconds else 0.0

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.update(ok=self.ok, per_device=self.per_device, events_per_second=self.events_per_second)
        doc["errors"] = self.errors[:20]
        return doc


def run(
    sizes: Sequence[int] = SIZES,
    *,
    senders: int = 48,
    warmup: int = 10,
    idle: bool = True,
    timeout: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[FleetResult]:
    """One stack for every size (fresh device ids per size), after an unreported warm-up fleet."""
    say = progress or (lambda _m: None)
    api_key, hmac_key = secrets.token_hex(16), secrets.token_hex(16)
    results: list[FleetResult] = []
    with bench_stack(api_key, hmac_key) as (mdm, stack):
        say(f"fleet: stack {stack.prefix} on {stack.base_url} (log {stack.log_path})")
        admin = Admin(stack.base_url, api_key)
        offset = 0
        if warmup:
            say(f"fleet: warm-up, {warmup} devices")
            one(stack, mdm, admin, warmup, offset, senders=min(senders, warmup), hmac_key=hmac_key, idle=idle)
            offset += warmup
        for n in sizes:
            say(f"fleet: {n} devices, {senders} senders")
            result = one(
                stack, mdm, admin, n, offset, senders=senders, hmac_key=hmac_key, idle=idle, timeout=timeout
            )
            offset += n
            say(
                f"fleet: {n} devices: {result.complete} inventories in {result.seconds:.2f}s"
                + ("" if result.ok else f" (NOT complete; {len(result.errors)} errors)")
            )
            results.append(result)
    return results


def one(
    stack: StackProcess,
    mdm: FakeMDMServer,
    admin: Admin,
    n: int,
    first_index: int,
    *,
    senders: int,
    hmac_key: str,
    idle: bool = True,
    timeout: float | None = None,
) -> FleetResult:
    limit = timeout if timeout is not None else max(60.0, 0.5 * n)
    result = FleetResult(devices=n, senders=senders)
    sender = WebhookSender(stack.base_url, hmac_key)
    with Fleet(mdm, n, first_index=first_index, senders=senders, idle=idle) as fleet:
        fleet.connect(sender)
        sender.latencies.clear()
        ids = fleet.ids
        starts_done = threading.Event()

        def start_all() -> None:
            try:
                for i in range(0, n, START_CHUNK):
                    status, body = admin.start(INVENTORY, ids[i : i + START_CHUNK])
                    result.start_statuses[status] = result.start_statuses.get(status, 0) + 1
                    if status != 200:
                        result.errors.append(f"start answered {status}: {body}")
                result.starts_seconds = time.perf_counter() - t0
            finally:
                starts_done.set()

        t0 = time.perf_counter()
        starter = threading.Thread(target=start_all, name="fleet-starts", daemon=True)
        starter.start()
        # the finish line: every device has answered and the events queue is empty, so every
        # answer has been processed (a message leaves the queue after its handler returned); then
        # every inventory is read back once. Polling inventories all along instead would load the
        # stack with reads while it works (each device read again until its events are processed).
        _wait_processed(stack, fleet, t0 + limit)
        t_end = time.perf_counter()
        verified = _verify(admin, fleet.ids)
        if len(verified) < n:  # not all there at the finish line: keep reading until they are
            verified = _poll_inventories(admin, fleet, t0 + limit)
            t_end = time.perf_counter()
        starter.join(timeout=max(0.0, t0 + limit - t_end) + 30)
        result.seconds = t_end - t0
        result.complete = len(verified)
        done_at = [d.done_at for d in fleet.devices.values() if d.done_at is not None]
        result.answered_seconds = (max(done_at) - t0) if done_at else 0.0
        result.sessions = fleet.sessions
        result.errors.extend(fleet.errors)
        if fleet.stray_pushes:
            result.errors.append(f"{fleet.stray_pushes} pushes to ids not in this fleet")
    lat = list(sender.latencies)
    result.errors.extend(f"no answer to {n} webhooks: {why}" for why, n in sender.failures.items())
    result.webhooks = len(lat)
    result.statuses = dict(sender.statuses)
    result.p50_ms = percentile(lat, 50) * 1000
    result.p99_ms = percentile(lat, 99) * 1000
    result.max_ms = max(lat, default=0.0) * 1000
    drained, result.drain_seconds = stack.wait_drained(timeout=60)
    if not drained:
        result.errors.append("events queue not empty 60s after the finish line")
    result.dead_letters = stack.queue_depths()[1]
    if result.dead_letters:
        result.errors.append(f"{result.dead_letters} events dead-lettered")
    return result


def _complete(record: Any) -> bool:
    """Both answers' values are in: DeviceInformation's model, SecurityInfo's SIP and FileVault."""
    return (
        isinstance(record, dict)
        and record.get("model") == MODEL
        and record.get("sip_enabled") is True
        and record.get("fde_enabled") is False
    )


def _wait_processed(stack: StackProcess, fleet: Fleet, deadline: float) -> None:
    while time.perf_counter() < deadline:
        if len(fleet.done_ids()) == len(fleet.devices) and stack.queue_depths()[0] == 0:
            return
        time.sleep(0.02)


def _verify(admin: Admin, ids: Sequence[str]) -> set[str]:
    verified: set[str] = set()
    for k in range(0, len(ids), POLL_CHUNK):
        chunk = list(ids[k : k + POLL_CHUNK])
        records = admin.inventory(chunk)
        verified.update(i for i in chunk if _complete(records.get(i)))
    return verified


def _poll_inventories(admin: Admin, fleet: Fleet, deadline: float) -> set[str]:
    """Read back the inventories of the devices that have answered everything, until all N are
    complete or the deadline; returns the verified ids. Only answered devices are polled, 100 ids
    a request, so the polling costs the stack little while the devices are still busy."""
    verified: set[str] = set()
    while len(verified) < len(fleet.devices) and time.perf_counter() < deadline:
        pending = [i for i in fleet.done_ids() if i not in verified]
        for k in range(0, len(pending), POLL_CHUNK):
            chunk = pending[k : k + POLL_CHUNK]
            records = admin.inventory(chunk)
            verified.update(i for i in chunk if _complete(records.get(i)))
        if len(verified) < len(fleet.devices):
            time.sleep(POLL_INTERVAL)
    return verified


def render(results: Sequence[FleetResult]) -> tuple[list[str], list[list[Any]], list[str]]:
    headers = [
        "devices",
        "start → all inventories (s)",
        "target (s)",
        "s per device",
        "starts answered (s)",
        "last answer (s)",
        "webhooks",
        "webhook p50 (ms)",
        "p99 (ms)",
        "events/s",
        "complete",
        "ok",
    ]
    rows: list[list[Any]] = []
    for r in results:
        target = TARGET_SECONDS.get(r.devices)
        rows.append(
            [
                r.devices,
                round(r.seconds, 2),
                target,
                round(r.per_device, 4),
                round(r.starts_seconds, 2),
                round(r.answered_seconds, 2),
                r.webhooks,
                round(r.p50_ms, 1),
                round(r.p99_ms, 1),
                round(r.events_per_second, 1),
                r.complete,
                r.ok and (target is None or r.seconds <= target),
            ]
        )
    notes: list[str] = []
    if results:
        senders = results[0].senders
        notes.append(
            f"{senders} device senders (threads, one keep-alive connection each); a device's webhooks go one "
            "after the other (Idle check-in, then each command's answer), as NanoMDM posts them. Latency "
            "is measured at the senders. events/s = webhooks / (start → all inventories)."
        )
    if len(results) >= 2:
        small, large = results[0], results[-1]
        if small.per_device:
            ratio = large.per_device / small.per_device
            flat = "yes" if ratio <= FLAT_RATIO else "NO"
            notes.append(
                f"s per device, {large.devices} vs {small.devices} devices: x{ratio:.2f} "
                f"(target flat, ≤ x{FLAT_RATIO}): {flat}"
            )
    for r in results:
        if r.errors:
            notes.append(f"{r.devices} devices: {len(r.errors)} problems, first: {r.errors[0]}")
        if r.dead_letters:
            notes.append(f"{r.devices} devices: {r.dead_letters} dead-lettered events")
    notes.append("ok = every inventory complete, every webhook 200, nothing dead-lettered, within target.")
    return headers, rows, notes
