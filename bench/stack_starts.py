"""Starts at fleet speed, measured on the ``make run`` stack over HTTP: the inventory workflow for
500 ids in 5 requests of 100, one after the other, as an admin's script sends them (target: ≤ 5 s
in total). The devices stay silent, so the figure is the start path alone: locks, batched step
writes and the MDM server's enqueue requests. The DynamoDB calls and units per started id are in
the throughput table (``bench/throughput.py``)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.nanomdm import INVENTORY, Admin, bench_stack

TARGET_SECONDS = 5.0


@dataclass
class StartsResult:
    requests: int
    per_request: int
    seconds: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    enqueued: int = 0  # ids with both commands at the MDM server afterwards

    @property
    def total(self) -> float:
        return sum(self.seconds)

    @property
    def ok(self) -> bool:
        ids = self.requests * self.per_request
        return set(self.statuses) == {200} and self.enqueued == ids and self.total <= TARGET_SECONDS

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "total": self.total, "ok": self.ok}


def run(
    requests: int = 5, per_request: int = 100, progress: Callable[[str], None] | None = None
) -> StartsResult:
    say = progress or (lambda _m: None)
    api_key = secrets.token_hex(16)
    result = StartsResult(requests, per_request)
    with bench_stack(api_key, secrets.token_hex(16)) as (mdm, stack):
        admin = Admin(stack.base_url, api_key)
        admin.start(INVENTORY, [f"WARM-{i}" for i in range(10)])  # the handlers' first calls
        say(f"starts: {requests} requests of {per_request} ids on {stack.base_url}")
        ids = [f"START-{i:05d}" for i in range(requests * per_request)]
        for k in range(requests):
            chunk = ids[k * per_request : (k + 1) * per_request]
            t0 = time.perf_counter()
            status, _ = admin.start(INVENTORY, chunk)
            result.seconds.append(time.perf_counter() - t0)
            result.statuses[status] = result.statuses.get(status, 0) + 1
        result.enqueued = sum(len(mdm.commands_for(i)) == 2 for i in ids)
    return result


def render(r: StartsResult) -> tuple[list[str], list[list[Any]], list[str]]:
    ids = r.requests * r.per_request
    headers = ["ids", "requests", "total (s)", "target (s)", "per request (s)", "ids/s", "enqueued", "ok"]
    per = " / ".join(f"{s:.2f}" for s in r.seconds)
    rate = ids / r.total if r.total else 0.0
    rows = [
        [
            ids,
            r.requests,
            round(r.total, 2),
            TARGET_SECONDS,
            per,
            round(rate, 1),
            r.enqueued,
            "yes" if r.ok else "no",
        ]
    ]
    notes = [
        "The make run stack (durable data directory) over HTTP; one request after the other; devices silent.",
        "enqueued = ids whose DeviceInformation and SecurityInfo reached the MDM server.",
    ]
    return headers, rows, notes
