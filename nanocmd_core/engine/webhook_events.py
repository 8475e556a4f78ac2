"""Turn a message of the events queue into engine calls: webhook events (engine.md §5.3-5.6)
and the "send this delayed step" messages of one-time schedules."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from nanocmd_core.aws.blobs import BlobStore
from nanocmd_core.aws.scheduler import SEND_STEP_KEY
from nanocmd_core.engine.engine import Engine
from nanocmd_core.mdm.webhook import WebhookEvent, parse_webhook
from nanocmd_core.webhook.message import BLOB_POINTER, COMMAND_UUID_ATTRIBUTE, ENROLLMENT_ID_ATTRIBUTE
from nanocmd_core.workflow.step import MDMContext


def load_queued_webhook(body: str, blobs: BlobStore | None) -> WebhookEvent:
    """The webhook as the intake queued it, fetching it from the blob store when it was too
    large for a message."""
    raw = body.encode()
    if body.startswith('{"' + BLOB_POINTER):
        pointer = json.loads(body)
        if set(pointer) == {BLOB_POINTER}:
            if blobs is None:
                raise RuntimeError("queued webhook lives in the blob store, but none is configured")
            raw = blobs.get(pointer[BLOB_POINTER])
    return parse_webhook(raw)


def process_webhook_event(engine: Engine, event: WebhookEvent, received_at: datetime) -> None:
    enrollment_id = event.enrollment_id
    mdm_context = MDMContext(dict(event.url_params)) if event.url_params else None
    if event.is_command_report and event.acknowledge_event is not None:
        ack = event.acknowledge_event
        if ack.status == "Idle":  # WH-8
            engine.handle_idle(enrollment_id, mdm_context, received_at)
        else:  # WH-9
            engine.handle_command_report(enrollment_id, ack.command_uuid or "", ack.raw_payload, mdm_context)
        return
    if event.checkin_type and event.checkin_event is not None:
        # the check-in models are imported when a check-in comes (issue 14: cold starts)
        from nanocmd_core.mdm.checkin import TokenUpdate, parse_checkin

        message = parse_checkin(event.checkin_type, event.checkin_event.raw_payload)  # WH-5
        if isinstance(message, TokenUpdate):
            message.enrolling = event.checkin_event.enrolling  # WH-10
        engine.handle_checkin(enrollment_id, message, mdm_context)


def delayed_step_id(body: str) -> str | None:
    """The step id of a one-time schedule's message, or None for a webhook event."""
    if not body.startswith('{"' + SEND_STEP_KEY):
        return None
    doc = json.loads(body)
    step_id = doc.get(SEND_STEP_KEY) if isinstance(doc, dict) and len(doc) == 1 else None
    return step_id if isinstance(step_id, str) and step_id else None


def report_keys(records: Iterable[Mapping[str, Any]]) -> Iterator[tuple[str, str]]:
    """(enrollment id, command UUID) of each command report in a batch of SQS records, read from
    the attributes the intake set, without loading or parsing a body."""
    for record in records:
        attributes = record.get("messageAttributes") or {}
        enrollment_id = (attributes.get(ENROLLMENT_ID_ATTRIBUTE) or {}).get("stringValue")
        command_uuid = (attributes.get(COMMAND_UUID_ATTRIBUTE) or {}).get("stringValue")
        if isinstance(enrollment_id, str) and isinstance(command_uuid, str):
            yield enrollment_id, command_uuid  # empty ones are skipped by the lookup
