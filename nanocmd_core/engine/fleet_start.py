"""Asynchronous starts for fleets (issue 12): the API answers 202 at once with the instance, and
the ids go through the queue in chunks, each started as a synchronous start would be.

Exactly once per id, though SQS delivers a chunk at least once: the chunk's counts are added to
the instance only once (a conditional update naming the chunk); a first attempt of a chunk runs
as a synchronous start, a retry first looks at what an earlier attempt did (the ids' outcomes, and
for ids left ``in_flight`` whether their partition holds a step of the instance) and starts only
the rest. Locks are re-entrant for the instance, so a retry keeps what it took. A chunk that fails
on every delivery is counted as ``failed`` by the queue's last attempt, never lost silently.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any, NamedTuple

from aws_lambda_powertools import Logger

from nanocmd_core.aws.queue import QueuedMessage
from nanocmd_core.engine.core import EngineCore
from nanocmd_core.engine.errors import EngineError
from nanocmd_core.engine.start import StartMixin
from nanocmd_core.storage.instance_store import StartRecord

logger = Logger(service="nanocmd", child=True)

START_CHUNK_KEY = "nanocmd_start_chunk"
CHUNK_IDS = 200
"""Ids per queued chunk (NanoMDM): about a second of work (7 enqueue requests per command, 7
pushes, the batched writes), so a batch of 10 chunks fits in the events function's 30 s."""
MICROMDM_CHUNK_IDS = 20
"""MicroMDM takes one id per request: 20 ids of a 2-command step are 40 requests, ~2 s."""
CHUNK_RESENDS = 3
"""Times a chunk whose last receive came with too little time left is queued again as a new
message (its receive count starts over) before that last receive runs it anyway."""


class StartChunk(NamedTuple):
    """One queued part of an asynchronous start."""

    instance_id: str
    workflow: str
    chunk: int
    ids: list[str]
    context: str = ""
    started_by: str = "api"
    resent: int = 0
    """How often the chunk was queued again as a new message (``resend_chunk``)."""

    def to_message(self) -> QueuedMessage:
        body = json.dumps({START_CHUNK_KEY: self._asdict()}, separators=(",", ":"))
        # a group per chunk: chunks run side by side; the dedup id makes a resend of the same
        # message a no-op, while a chunk queued again on purpose is a message of its own
        group = f"start:{self.instance_id}:{self.chunk}"
        return QueuedMessage(body, group, f"{group}:r{self.resent}" if self.resent else group)


def start_chunk_of(body: str) -> StartChunk | None:
    """The chunk a queue message carries, or None for any other message."""
    if not body.startswith('{"' + START_CHUNK_KEY):
        return None
    doc = json.loads(body).get(START_CHUNK_KEY)
    if not isinstance(doc, dict):
        return None
    try:
        chunk = StartChunk(**doc)
    except TypeError:
        return None
    ok = isinstance(chunk.ids, list) and all(isinstance(i, str) for i in chunk.ids)
    return chunk if ok else None


class FleetStartMixin(StartMixin, EngineCore):
    """``start_async`` and the queue's side of it, ``start_chunk`` and ``fail_chunk``."""

    def start_async(
        self, name: str, ids: Sequence[str], context: bytes = b"", started_by: str = "api"
    ) -> str:
        """Check the start as a synchronous one would (404, 400), record the instance, queue its
        chunks; returns the instance id at once."""
        if self.start_queue is None or self.instances is None:
            raise EngineError("asynchronous starts need the start queue and the instance store")
        _, requested, _ = self._check_start(name, ids, context)
        instance_id = str(uuid.uuid4())
        size = CHUNK_IDS if self.mdm.supports_multi_target else MICROMDM_CHUNK_IDS
        chunks = [requested[i : i + size] for i in range(0, len(requested), size)]
        record = StartRecord(instance_id, name, started_by, context, len(requested), 0, 0)
        self.instances.open_async(record, len(chunks), self.clock())
        text = context.decode(errors="replace")
        self.start_queue.send_batch(
            [
                StartChunk(instance_id, name, k, chunk, text, started_by).to_message()
                for k, chunk in enumerate(chunks)
            ]
        )
        logger.info(
            "asynchronous start queued",
            extra={
                "workflow": name,
                "instance_id": instance_id,
                "ids": len(requested),
                "chunks": len(chunks),
            },
        )
        return instance_id

    def start_chunk(self, chunk: StartChunk, attempt: int = 1) -> None:
        """Start the chunk's ids (its ``attempt``-th delivery); a chunk already counted is done."""
        instances = self.instances
        if instances is None:
            raise EngineError("asynchronous starts need the instance store")
        if instances.chunk_counted(chunk.instance_id, chunk.chunk):
            return  # a redelivery of a chunk that finished
        workflow, ids, start_context = self._check_start(chunk.workflow, chunk.ids, chunk.context.encode())
        before = StartRecord(
            chunk.instance_id, chunk.workflow, chunk.started_by, b"", 0, 0, 0, chunk=chunk.chunk
        )
        if attempt > 1 or chunk.resent:  # what an earlier delivery did stays done
            ids = self._left_to_start(chunk, ids, before)
        record = StartRecord(
            chunk.instance_id, chunk.workflow, chunk.started_by, b"", 0, 0, 0, chunk=chunk.chunk
        )

        def settle(now: Any) -> None:
            record.started += before.started
            record.skipped += before.skipped
            record.failed_ids = [*before.failed_ids, *record.failed_ids]
            instances.settle_chunk(chunk.instance_id, chunk.chunk, record, now)

        self._start_ids(
            workflow,
            record,
            ids,
            start_context,
            None,
            None,
            open_outcomes=lambda started, busy, now: instances.open_chunk(
                chunk.instance_id, started, busy, now
            ),
            settle=settle,
            raise_when_busy=False,
        )

    def _left_to_start(self, chunk: StartChunk, ids: list[str], before: StartRecord) -> list[str]:
        """A retried chunk: the ids an earlier delivery did not start (``before`` counts the rest)."""
        assert self.instances is not None
        outcomes = self.instances.outcomes_of(chunk.instance_id, ids)
        left: list[str] = []
        failed: list[str] = []
        for enrollment_id in ids:
            outcome = outcomes.get(enrollment_id)
            if outcome is None:
                left.append(enrollment_id)
            elif outcome == "skipped":
                before.skipped += 1
            elif outcome == "failed":
                failed.append(enrollment_id)
            elif outcome != "in_flight":
                before.started += 1  # started, and ended already
            elif any(
                s.instance_id == chunk.instance_id
                for s in self.store.read_partition(enrollment_id, consistent=True).steps
            ):
                before.started += 1
            else:
                left.append(enrollment_id)  # opened, but its Start never ran
        before.failed_ids = failed
        return left

    def resend_chunk(self, chunk: StartChunk) -> bool:
        """Queue ``chunk`` again as a new message, so a chunk handed back until its last receive
        is not run short of time (a timeout would dead-letter it uncounted); False once it has been
        resent ``CHUNK_RESENDS`` times, or without a queue: then its last receive runs it."""
        if self.start_queue is None or chunk.resent >= CHUNK_RESENDS:
            return False
        self.start_queue.send_batch([chunk._replace(resent=chunk.resent + 1).to_message()])
        logger.info(
            "start chunk queued again: its last receive had too little time left",
            extra={"instance_id": chunk.instance_id, "chunk": chunk.chunk, "resent": chunk.resent + 1},
        )
        return True

    def fail_chunk(self, chunk: StartChunk, error: str) -> None:
        """The queue's last delivery of a chunk failed too: its ids not started count as failed."""
        instances = self.instances
        if instances is None or instances.chunk_counted(chunk.instance_id, chunk.chunk):
            return
        before = StartRecord(
            chunk.instance_id, chunk.workflow, chunk.started_by, b"", 0, 0, 0, chunk=chunk.chunk
        )
        try:
            left = self._left_to_start(chunk, list(dict.fromkeys(chunk.ids)), before)
        except Exception:  # the table itself may be what fails: count the whole chunk
            left, before = list(dict.fromkeys(chunk.ids)), StartRecord("", "", "", b"", 0, 0, 0)
        before.failed_ids = [*before.failed_ids, *left]
        before.failed_error = f"start chunk failed: {error}"[:2000]
        instances.settle_chunk(chunk.instance_id, chunk.chunk, before, self.clock())
        logger.error(
            "asynchronous start chunk failed for good; its ids count as failed",
            extra={
                "instance_id": chunk.instance_id,
                "workflow": chunk.workflow,
                "chunk": chunk.chunk,
                "failed": len(left),
            },
        )
