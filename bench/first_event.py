"""Benchmark 2b: the first event after a cold start, beyond the import (``cold_start.py``).

A cold Lambda also pays on its first invocation for what was left for later: the AWS clients
(botocore loads the service model and endpoint rules), pydantic schemas built on first use, the
first connection to DynamoDB. This runs ``functions/events/app.py`` in fresh interpreters against
DynamoDB Local: import it, then hand it two SQS batches, each the two answers of one device to the
inventory workflow's step (so each batch completes a step and writes inventory: every model a
report touches). The CPU of the first batch beside the second is that first-event cost.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench import cold_start
from bench.fakes import InMemoryMDMClient, sqs_event
from bench.stack import REPO_ROOT
from infra.local.lambda_runtime import run_fresh
from infra.local.stack import reset_settings_cache
from nanocmd_core import wiring
from nanocmd_core.config import Settings
from nanocmd_core.workflows.inventory import NAME as INVENTORY
from tests.fakes.intake import through_intake
from tests.fakes.reports import connect_webhook, device_information, security_info

_CHILD = r"""
import json, sys, time
from pathlib import Path
from infra.local.lambda_runtime import LambdaContext, load_module

handler_path, events_path = sys.argv[1], sys.argv[2]
module = load_module(Path(handler_path), "app")
cpu = []
for event in json.load(open(events_path)):
    c0 = time.process_time()
    reply = module.handler(event, LambdaContext("EventsFunction", timeout=900))
    cpu.append(time.process_time() - c0)
    if reply.get("batchItemFailures"):
        raise SystemExit(f"records failed: {reply}")
print(json.dumps({"cpu": cpu}))
"""


@dataclass
class FirstEvent:
    function: str
    first_ms: float
    next_ms: float
    runs: int

    @property
    def extra_ms(self) -> float:
        return self.first_ms - self.next_ms

    def to_json(self) -> dict[str, Any]:
        return {
            "function": self.function,
            "first_batch_cpu_ms": round(self.first_ms, 1),
            "next_batch_cpu_ms": round(self.next_ms, 1),
            "runs": self.runs,
        }


def _device_batches(client: InMemoryMDMClient, engine: Any, run: int) -> list[dict[str, Any]]:
    """Two SQS events, each both answers of one freshly started device."""
    devices = [f"cold{run:02d}-{n}" for n in range(2)]
    engine.start_workflow(INVENTORY, devices)
    sent = client.take_commands()
    events = []
    for dev in devices:
        webhooks = []
        for command_uuid, request_type in sent[dev]:
            if request_type == "DeviceInformation":
                raw = device_information(command_uuid, dev, Model="Mac14,2", SerialNumber="C02X")
            else:
                raw = security_info(command_uuid, dev, SystemIntegrityProtectionEnabled=True)
            webhooks.append(connect_webhook(dev, command_uuid, raw))
        events.append(sqs_event(through_intake(webhooks)))
    return events


def run(table_name: str, runs: int = 5, progress: Callable[[str], None] | None = None) -> FirstEvent:
    client = InMemoryMDMClient()
    os.environ["NANOCMD_TABLE"] = table_name
    reset_settings_cache()
    engine = wiring.build_app(Settings.from_env(), mdm=client, plugins=[]).engine
    env = cold_start.child_env(dynamodb_endpoint=os.environ["AWS_ENDPOINT_URL_DYNAMODB"])
    env["NANOCMD_TABLE"] = table_name  # a completed step sends nothing: the MDM URLs stay closed
    firsts: list[float] = []
    nexts: list[float] = []
    handler = str(REPO_ROOT / "functions" / "events" / "app.py")
    for n in range(runs + 1):  # the first run only writes the bytecode caches
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(_device_batches(client, engine, n), f)
            events_path = f.name
        try:
            first, second = run_fresh(_CHILD, [handler, events_path], env, REPO_ROOT)[0]["cpu"]
        finally:
            os.unlink(events_path)
        if n:
            firsts.append(first * 1000)
            nexts.append(second * 1000)
    result = FirstEvent("events", statistics.median(firsts), statistics.median(nexts), runs)
    if progress:
        progress(f"first event: {result.first_ms:.0f} ms CPU, next {result.next_ms:.0f} ms")
    return result


def render(r: FirstEvent) -> tuple[list[str], list[list[Any]], list[str]]:
    headers = ["function", "1st batch CPU ms", "2nd batch CPU ms", "first-event extra ms"]
    rows: list[list[Any]] = [[r.function, round(r.first_ms, 1), round(r.next_ms, 1), round(r.extra_ms, 1)]]
    notes = [
        f"Medians of {r.runs} fresh interpreters: import, then two SQS batches, each one device's"
        " two answers to the inventory step (a completion and an inventory write each)."
    ]
    return headers, rows, notes
