"""Webhook intake: authenticate, validate, put on the events queue, answer 200 (design.md §1).

NanoMDM posts each webhook once and treats anything but 200 as failure, so this path is short
and imports only what it uses (no engine, no workflows, no pynamodb) to keep cold starts low.
Everything that fails validation here is answered 400 and never reaches the queue, so poison
messages are rare; anything answered 200 is on the queue (or the intake raised, and the MDM
server saw a 5xx).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import plistlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from nanocmd_core.aws.blobs import BlobStore
from nanocmd_core.aws.queue import EventQueue
from nanocmd_core.mdm.errors import WebhookParseError
from nanocmd_core.mdm.webhook import WebhookEvent, parse_webhook
from nanocmd_core.webhook.message import BLOB_POINTER, COMMAND_UUID_ATTRIBUTE, ENROLLMENT_ID_ATTRIBUTE

CHECKIN_TOPICS = {"Authenticate", "TokenUpdate", "CheckOut"}
MAX_MESSAGE_BYTES = 240 * 1024
"""Bodies above this go to the blob store and the message carries a pointer (SQS limit: 256 KiB)."""
# what a DynamoDB key of the engine can hold (sort key ≤ 1024 bytes, partition key ≤ 2048), with
# room for the key prefixes; real ones are a few dozen characters
MAX_COMMAND_UUID_BYTES = 1000
MAX_ENROLLMENT_ID_BYTES = 1000


@dataclass(frozen=True)
class IntakeReply:
    """What the intake answers NanoMDM, and the event it queued, if any."""

    status: int
    error: str = ""
    event: WebhookEvent | None = None
    """The parsed event, for logging; None when the body did not parse."""

    @property
    def body(self) -> str:
        return json.dumps({"error": self.error}) if self.error else ""


def signature_ok(body: bytes, headers: Mapping[str, str], key: str) -> bool:
    """NanoMDM's ``X-Hmac-Signature``: base64 of HMAC-SHA256 of the raw body."""
    given = next((v for k, v in headers.items() if k.lower() == "x-hmac-signature"), "")
    try:
        signature = base64.b64decode(given, validate=True)
    except (binascii.Error, ValueError):
        return False
    expected = hmac.new(key.encode(), body, hashlib.sha256).digest()
    return hmac.compare_digest(signature, expected)


def _is_plist_dict(raw: bytes) -> bool:
    try:
        return isinstance(plistlib.loads(raw), dict)
    except Exception:
        return False


def validate(event: WebhookEvent) -> str:
    """Why the event cannot be processed ("" when it can). Ignored topics are fine."""
    processed = event.is_command_report or event.checkin_type in CHECKIN_TOPICS
    if processed and len(event.enrollment_id.encode()) > MAX_ENROLLMENT_ID_BYTES:
        return f"enrollment id longer than {MAX_ENROLLMENT_ID_BYTES} bytes"
    if event.is_command_report:
        ack = event.acknowledge_event
        if ack is None:
            return "mdm.Connect without acknowledge_event"
        if not event.enrollment_id:
            return "no enrollment id (ids.id, udid or enrollment_id)"
        if ack.status == "Idle":
            return ""
        if not ack.command_uuid:
            return "command report without command_uuid"
        if len(ack.command_uuid.encode()) > MAX_COMMAND_UUID_BYTES:
            return f"command_uuid longer than {MAX_COMMAND_UUID_BYTES} bytes"
        if not _is_plist_dict(ack.raw_payload):
            return "raw_payload is not a plist dictionary"
        return ""
    if event.checkin_type in CHECKIN_TOPICS:
        if event.checkin_event is None:
            return f"{event.topic} without checkin_event"
        if not event.enrollment_id:
            return "no enrollment id (ids.id, udid or enrollment_id)"
        if not _is_plist_dict(event.checkin_event.raw_payload):
            return "raw_payload is not a plist dictionary"
    return ""


def accept_webhook(
    body: bytes,
    headers: Mapping[str, str],
    *,
    queue: EventQueue,
    hmac_key: str = "",
    blobs: BlobStore | None = None,
    received_at: datetime,
) -> IntakeReply:
    if hmac_key and not signature_ok(body, headers, hmac_key):
        return IntakeReply(401, "invalid or missing X-Hmac-Signature")
    try:
        event = parse_webhook(body)
    except WebhookParseError as exc:
        return IntakeReply(400, f"invalid webhook: {exc}")
    problem = validate(event)
    if problem:
        return IntakeReply(400, problem, event)
    if not event.is_command_report and event.checkin_type not in CHECKIN_TOPICS:
        return IntakeReply(200, "", event)  # GAP-16: acknowledged, nothing to do

    digest = hashlib.sha256(body).hexdigest()
    text = body.decode() if body.isascii() else json.dumps(json.loads(body))
    if len(text) > MAX_MESSAGE_BYTES:
        if blobs is None:
            return IntakeReply(413, "webhook body too large and no blob store configured", event)
        key = f"webhook/{digest}"
        blobs.put(key, body)
        text = json.dumps({BLOB_POINTER: key})
    attributes = {"received_at": received_at.isoformat(), "topic": event.topic}
    ack = event.acknowledge_event if event.is_command_report else None
    if ack is not None and ack.command_uuid:
        # lets the events function look up a whole batch's reports at once (report_keys)
        attributes[COMMAND_UUID_ATTRIBUTE] = ack.command_uuid
        attributes[ENROLLMENT_ID_ATTRIBUTE] = event.enrollment_id
    queue.send(text, group_id=event.enrollment_id, dedup_id=digest, attributes=attributes)
    return IntakeReply(200, "", event)
