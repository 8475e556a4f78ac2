"""EventsFunction: the engine, fed by the FIFO events queue in batches."""

from __future__ import annotations

import gc

# No garbage collection while the handler loads (README, "Cold starts"): nothing the import builds is
# garbage, yet the collector ran over it ~130 times (for the sweeper, a full pass too); on again at the end.
gc.disable()

from datetime import UTC, datetime
from functools import cache
from typing import Any

# The libraries nanocmd_core builds on, imported here at the top level rather than from deep inside
# nanocmd_core: there CPython 3.11 allocated and freed a new frame-stack chunk over and over while
# their import chains ran (1,400-1,800 page faults, README "Cold starts").
import boto3  # noqa: F401
import pynamodb.models  # noqa: F401
from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from pydantic import BaseModel  # noqa: F401

from nanocmd_core import snapstart
from nanocmd_core.aws.blobs import S3BlobStore
from nanocmd_core.aws.queue import SQSEventQueue
from nanocmd_core.config import settings
from nanocmd_core.engine.fleet_start import StartChunk, start_chunk_of
from nanocmd_core.engine.webhook_events import (
    delayed_step_id,
    load_queued_webhook,
    process_webhook_event,
    report_keys,
)
from nanocmd_core.observability import MetricsTelemetry, function_logger, function_tracer, instrumented
from nanocmd_core.wiring import App, build_app

logger = function_logger(settings())
telemetry = MetricsTelemetry()
tracer = function_tracer()
# a failing event holds back only its own enrollment's later events in the batch, not other devices'
processor = SqsFifoPartialProcessor(skip_group_on_error=True)
MAX_RECEIVES = 5
"""The events queue's maxReceiveCount (template.yaml): the try after which SQS dead-letters."""
CHUNK_TIME_MS = 12_000
"""Time a start chunk may take; with less left in the invocation it goes back to the queue."""
_context: dict[str, Any] = {}
snapstart.prime(clients=("dynamodb", "sqs", "s3", "scheduler"))


@cache
def _app() -> App:
    return build_app(settings(), telemetry=telemetry)


@cache
def _queue() -> SQSEventQueue:
    return SQSEventQueue(settings().queue_url)


@cache
def _blobs() -> S3BlobStore | None:
    bucket = settings().bucket
    return S3BlobStore(bucket) if bucket else None


def _received_at(record: SQSRecord) -> datetime:
    attribute = record.message_attributes["received_at"]
    if attribute is not None and attribute.string_value:
        return datetime.fromisoformat(attribute.string_value)
    return datetime.fromtimestamp(int(record.attributes.sent_timestamp) / 1000, tz=UTC)


def record_handler(record: SQSRecord) -> None:
    chunk = start_chunk_of(record.body)
    if chunk is not None:  # a part of an asynchronous start
        _start_chunk(chunk, record)
        return
    step_id = delayed_step_id(record.body)
    if step_id is not None:  # a one-time schedule: send the delayed step now
        _app().engine.send_delayed_step(step_id)
        return
    event = load_queued_webhook(record.body, _blobs())
    logger.append_keys(enrollment_id=event.enrollment_id, topic=event.topic)
    if settings().dump_webhook and event.acknowledge_event is not None:
        logger.info(
            "report plist", extra={"plist": event.acknowledge_event.raw_payload.decode(errors="replace")}
        )
    try:
        process_webhook_event(_app().engine, event, _received_at(record))
    except Exception:
        receives = int(record.attributes.approximate_receive_count or 0)
        last = receives >= MAX_RECEIVES
        if last:
            telemetry.count("EventsDeadLettered")
        logger.exception(
            "event processing failed; "
            + ("it goes to the dead-letter queue" if last else "the queue will retry it"),
            extra={"message_id": record.message_id, "receive_count": receives},
        )
        raise
    finally:
        logger.remove_keys(["enrollment_id", "topic"])


class ChunkDeferred(Exception):
    """Too little time left in this invocation for a start chunk: the queue hands it out again."""


def _visible_now(record: SQSRecord) -> None:
    """A handed-back chunk is due again at once, not after the queue's visibility timeout (180 s:
    that wait, not the work, would set the pace of a fleet start). Best effort: without it the
    chunk still comes back, later."""
    try:
        _queue().visible_now(record.receipt_handle)
    except Exception as exc:
        logger.warning("could not make a handed-back chunk visible again", extra={"error": str(exc)})


def _start_chunk(chunk: StartChunk, record: SQSRecord) -> None:
    receives = int(record.attributes.approximate_receive_count or 1)
    lambda_context = _context.get("lambda")
    left = lambda_context.get_remaining_time_in_millis() if lambda_context is not None else None
    if left is not None and left < CHUNK_TIME_MS:
        # a timeout would kill the batch (and the chunk's last-try accounting with it)
        if receives < MAX_RECEIVES:
            logger.info(
                "start chunk handed back: too little time left", extra={"chunk": chunk.chunk, "ms": left}
            )
            _visible_now(record)
            raise ChunkDeferred(chunk.instance_id)
        try:
            if _app().engine.resend_chunk(chunk):
                return  # this message is done; the chunk comes again as a new one
        except Exception:  # the queue refused: this last receive runs it, short of time or not
            logger.exception("could not queue a start chunk again", extra={"chunk": chunk.chunk})
    try:
        _app().engine.start_chunk(chunk, receives)
    except Exception as exc:
        if receives < MAX_RECEIVES:
            logger.exception("start chunk failed; the queue will retry it", extra={"chunk": chunk.chunk})
            raise
        _app().engine.fail_chunk(chunk, str(exc))  # counted as failed, not lost in the DLQ


@instrumented(logger, telemetry, tracer)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    _context["lambda"] = context
    with _app().engine.reports_ahead(report_keys(event.get("Records") or [])):
        return dict(
            process_partial_response(
                event=event, record_handler=record_handler, processor=processor, context=context
            )
        )


# The handler has loaded: later collections skip what the import built (gc.freeze), then resume.
gc.freeze()
gc.enable()
