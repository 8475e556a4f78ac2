"""WebhookFunction: MDM server webhooks (API Gateway REST proxy) → the events queue.

Traced by Lambda's active tracing alone, without the X-Ray SDK: the intake's cold start is what a
fleet checking in waits for, and Lambda's own segment plus the trace header botocore passes to SQS
keep a webhook connected to the events function that processes it (README, "Tracing").
"""

from __future__ import annotations

import gc

# No garbage collection while the handler loads (README, "Cold starts"): nothing the import builds is
# garbage, yet the collector ran over it ~130 times (for the sweeper, a full pass too); on again at the end.
gc.disable()

import base64
from datetime import UTC, datetime
from functools import cache
from typing import Any

# The libraries nanocmd_core builds on, imported here at the top level rather than from deep inside
# nanocmd_core: there CPython 3.11 allocated and freed a new frame-stack chunk over and over while
# their import chains ran (1,400-1,800 page faults, README "Cold starts").
import boto3  # noqa: F401

from nanocmd_core import snapstart
from nanocmd_core.aws.blobs import S3BlobStore
from nanocmd_core.aws.queue import SQSEventQueue
from nanocmd_core.config import settings
from nanocmd_core.observability import MetricsTelemetry, function_logger, instrumented
from nanocmd_core.webhook.intake import accept_webhook

logger = function_logger(settings())
telemetry = MetricsTelemetry()
snapstart.prime(clients=("sqs", "s3"))


@cache
def _queue() -> SQSEventQueue:
    return SQSEventQueue(settings().queue_url)


@cache
def _blobs() -> S3BlobStore | None:
    bucket = settings().bucket
    return S3BlobStore(bucket) if bucket else None


@instrumented(logger, telemetry)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    config = settings()
    raw = event.get("body") or ""
    body = base64.b64decode(raw) if event.get("isBase64Encoded") else raw.encode()
    headers = {k: v for k, v in (event.get("headers") or {}).items() if isinstance(v, str)}
    if config.dump_webhook:
        logger.info("webhook body", extra={"body": body.decode(errors="replace")})
    reply = accept_webhook(
        body,
        headers,
        queue=_queue(),
        hmac_key=config.webhook_hmac_key,
        blobs=_blobs(),
        received_at=datetime.now(UTC),
    )
    parsed = reply.event
    if reply.status != 200:
        telemetry.count("WebhooksRejected", status=str(reply.status))
        logger.warning(
            "webhook rejected",
            extra={
                "status": reply.status,
                "error": reply.error,
                "topic": parsed.topic if parsed else None,
                "enrollment_id": parsed.enrollment_id if parsed else None,
                "body_bytes": len(body),
            },
        )
        return {
            "statusCode": reply.status,
            "headers": {"Content-Type": "application/json"},
            "body": reply.body,
        }
    telemetry.count("EventsReceived", topic=parsed.topic if parsed else "")
    return {"statusCode": 200, "headers": {}, "body": ""}


# The handler has loaded: later collections skip what the import built (gc.freeze), then resume.
gc.freeze()
gc.enable()
