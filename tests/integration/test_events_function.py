"""The events function's batch handling: a failing event holds back only its own enrollment's
later events of the batch (FIFO order per device), never another device's."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from infra.local.resources import Provisioned
from infra.local.run import reset_settings_cache
from infra.local.worker import sqs_event
from nanocmd_core.mdm.commands import DeviceInformation
from nanocmd_core.workflow import StepEnqueueing
from tests.fakes.mdm_server import FakeMDMServer
from tests.fakes.reports import connect_webhook, device_information, report


class Context:
    function_name, memory_limit_in_mb, aws_request_id = "EventsFunction", 512, "r1"
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:EventsFunction"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def message(n: int, body: bytes, group: str) -> dict[str, Any]:
    return {
        "MessageId": f"m{n}",
        "ReceiptHandle": f"r{n}",
        "Body": body.decode(),
        "Attributes": {
            "MessageGroupId": group,
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1700000000000",
        },
    }


def test_a_poison_event_blocks_only_its_own_device(
    nanocmd_env: Provisioned, monkeypatch: pytest.MonkeyPatch, repo_root: Path
) -> None:
    with FakeMDMServer() as mdm:
        monkeypatch.setenv("NANOCMD_ENQUEUE_URL", mdm.enqueue_url)
        monkeypatch.setenv("NANOCMD_PUSH_URL", mdm.push_url)
        monkeypatch.setenv("NANOCMD_ENQUEUE_API", mdm.api_key)
        reset_settings_cache()
        spec = importlib.util.spec_from_file_location(
            "nanocmd_fn_events_batch", repo_root / "functions/events/app.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        engine = module._app().engine
        step = DeviceInformation(queries=["Model"])
        engine.enqueue_step(
            "io.micromdm.wf.devinfolog.v1", StepEnqueueing(instance_id="i", ids=["A", "B"], commands=[step])
        )
        uuid = step.command_uuid
        poison = plistlib_bytes(uuid, "A")
        batch = [
            message(1, connect_webhook("A", uuid, poison), "A"),
            message(2, connect_webhook("A", "other", report("other", "A")), "A"),
            message(3, connect_webhook("B", uuid, device_information(uuid, "B", Model="M")), "B"),
        ]
        reply = module.handler(sqs_event(batch, "arn:aws:sqs:us-east-1:123456789012:q.fifo"), Context())
        assert {f["itemIdentifier"] for f in reply["batchItemFailures"]} == {"m1", "m2"}
        assert engine.store.lookup_command("B", uuid) is None  # B's step completed
        assert engine.store.lookup_command("A", uuid) is not None  # A's is still there for the retry
        reset_settings_cache()


def plistlib_bytes(uuid: str, udid: str) -> bytes:
    """A DeviceInformation report whose QueryResponses is not a dictionary: it cannot be typed."""
    import plistlib

    return plistlib.dumps(
        {"CommandUUID": uuid, "Status": "Acknowledged", "UDID": udid, "QueryResponses": "x"}
    )
