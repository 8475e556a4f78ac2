"""What the engine is doing, read back: per-device status, instance progress, history.

Reads only: one Query of the id's partition per id for a device (whatever the fleet's size), a
GetItem and one BatchGetItem for an instance's counts, a Query per page of its ids' outcomes.

The view models are reached through ``views`` when a read builds them, not imported by name at
the top: the events and sweeper functions import this module and never build one (issue 14).
"""

from __future__ import annotations

import plistlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from nanocmd_core.engine.cancel import per_id
from nanocmd_core.engine.core import EngineCore
from nanocmd_core.status import views
from nanocmd_core.storage.engine_store import NOT_NOW_KEY, REPORTED_KEY
from nanocmd_core.storage.instance_store import InstanceRecord
from nanocmd_core.storage.models import StepTarget
from nanocmd_core.storage.partition_store import PartitionView, lock_held
from nanocmd_core.workflow.step import unique_ids

if TYPE_CHECKING:
    from nanocmd_core.status.views import (
        CommandStatus,
        DeviceStatus,
        InstancePage,
        InstanceStatus,
        StepStatus,
    )

_STATES = {"Acknowledged", "Error", "CommandFormatError", "NotNow", "Idle"}


def iso(epoch: Any) -> str | None:
    """RFC 3339 in UTC, as the Go NanoCMD writes times; None stays None."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(int(epoch), tz=UTC).isoformat().replace("+00:00", "Z")


def _iso_time(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def command_status(uuid: str, request_type: str, results: dict[str, Any]) -> CommandStatus:
    raw = results.get(uuid)
    state, chain = "Pending", None
    if isinstance(raw, bytes | bytearray):
        try:
            report = plistlib.loads(bytes(raw))
        except Exception:
            report = {}
        status = report.get("Status") if isinstance(report, dict) else None
        state = status if status in _STATES else "Error"
        errors = report.get("ErrorChain") if isinstance(report, dict) else None
        if state in {"Error", "CommandFormatError"} and isinstance(errors, list):
            chain = [
                views.ErrorChainEntry(
                    code=e.get("ErrorCode") if isinstance(e.get("ErrorCode"), int) else None,
                    domain=e.get("ErrorDomain") if isinstance(e.get("ErrorDomain"), str) else None,
                    description=e.get("USEnglishDescription") or e.get("LocalizedDescription") or None,
                )
                for e in errors
                if isinstance(e, dict)
            ]
    count = results.get(NOT_NOW_KEY + uuid)
    return views.CommandStatus(
        command_uuid=uuid,
        request_type=request_type,
        status=state,
        not_now_count=int(count) if isinstance(count, int | float) else 0,
        reported_at=iso(results.get(REPORTED_KEY + uuid)),
        error_chain=chain,
    )


def step_status(item: StepTarget) -> StepStatus:
    results = item.results.as_dict() if item.results is not None else {}  # type: ignore[no-untyped-call]
    sent_at = item.sent_at
    if sent_at is None and item.not_until is None and item.send_error is None and item.last_push:
        sent_at = item.created_at  # a step stored before sent_at was recorded
    return views.StepStatus(
        workflow=item.workflow,
        instance_id=item.instance_id,
        step_name=item.step_name or "",
        created_at=iso(item.created_at),
        sent_at=iso(sent_at),
        not_until=iso(item.not_until),
        timeout_at=iso(item.timeout_at),
        last_push_at=iso(item.last_push),
        send_error=(
            views.SendError(error=item.send_error, retry_at=iso(item.retry_at)) if item.send_error else None
        ),
        # the workflow's own UUIDs where a chunk was sent under a derived one
        commands=[command_status(c.uuid, c.request_type, results) for c in item.commands or []],
    )


def device_view(view: PartitionView, now: datetime) -> DeviceStatus:
    steps = sorted(view.steps, key=lambda s: (int(s.created_at or 0), s.sk))
    return views.DeviceStatus(
        steps=[step_status(s) for s in steps],
        running=[
            views.RunningWorkflow(
                workflow=view.lock_workflow(lock), instance_id=lock.instance_id, since=iso(lock.acquired_at)
            )
            for lock in view.locks
            if lock_held(lock, now)
        ],
    )


def _summary(record: InstanceRecord) -> dict[str, Any]:
    return {
        "instance_id": record.instance_id,
        "workflow": record.workflow,
        "started_at": _iso_time(record.started_at),
        "started_by": record.started_by,
        "context": record.context,
        "requested": record.requested,
    }


class StatusMixin(EngineCore):
    """The read side of issue 11: status, instance, history."""

    def device_status(self, ids: Sequence[str]) -> dict[str, DeviceStatus]:
        now = self.clock()
        wanted = unique_ids(ids)
        views = per_id(lambda i: self.store.read_partition(i), wanted)
        return {i: device_view(v, now) for i, v in zip(wanted, views, strict=True)}  # type: ignore[arg-type]

    def instance_status(
        self, instance_id: str, *, with_ids: bool = False, limit: int = 100, next_token: str | None = None
    ) -> InstanceStatus | None:
        if self.instances is None:
            return None
        record = self.instances.get_instance(instance_id, self.clock())
        if record is None:
            return None
        counts = views.Counts(**record.counts)
        done = counts.in_flight == 0 and counts.pending == 0
        status = views.InstanceStatus(**_summary(record), counts=counts, done=done)
        if with_ids:
            page, status.next = self.instances.outcomes_page(instance_id, max(1, limit), next_token)
            status.ids = [
                views.IdOutcome(
                    id=o.enrollment_id, outcome=o.outcome, updated_at=iso_dt(o.updated_at), error=o.error
                )
                for o in page
            ]
        return status

    def instance_history(
        self, workflow: str | None, *, limit: int = 50, next_token: str | None = None
    ) -> InstancePage:
        if self.instances is None:
            return views.InstancePage(instances=[])
        records, token = self.instances.history(workflow or None, max(1, limit), next_token, self.clock())
        summaries = [views.InstanceSummary(**_summary(r)) for r in records]
        return views.InstancePage(instances=summaries, next=token)


def iso_dt(when: datetime | None) -> str | None:
    return iso(when.timestamp()) if when else None
