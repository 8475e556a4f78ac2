"""An enrollment's partition read as a whole: the status of an id, and the removals of a cancel.

Every item the engine keeps for an id lives in its partition ``ENR#<id>`` (models.py), so what an
id is waiting for, and everything a cancel or a check-out removes, is one Query away, whatever
the size of the fleet.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pynamodb.models import Model

from nanocmd_core.storage.models import (
    COMMAND,
    ENROLLMENT,
    LOCK,
    START,
    STEP,
    USER_CHANNEL,
    CommandRecord,
    PartitionEntry,
    StepTarget,
    WorkflowLock,
    enrollment_pk,
)


@dataclass
class PartitionView:
    """What one Query of an id's partition found."""

    enrollment_id: str
    steps: list[StepTarget] = field(default_factory=list)
    locks: list[WorkflowLock] = field(default_factory=list)
    """Expired ones too: see ``lock_held``."""
    user_channels: list[str] = field(default_factory=list)
    """``<udid>:<user id>`` enrollment ids the device had steps on."""
    start_keys: list[str] = field(default_factory=list)
    command_steps: dict[str, str] = field(default_factory=dict)
    """Command record sort key → the step id it points at."""

    def lock_workflow(self, lock: WorkflowLock) -> str:
        return lock.sk.removeprefix(LOCK)


class PartitionStoreMixin:
    """The partition reads and removals of ``DynamoEngineStore``."""

    if TYPE_CHECKING:

        @staticmethod
        def _forget_prefetched(enrollment_ids: Iterable[str]) -> None: ...

        @staticmethod
        def _delete_items(items: Iterable[Model]) -> None: ...

    def read_partition(self, enrollment_id: str, *, consistent: bool = False) -> PartitionView:
        """One Query of the id's partition (pages only past 1 MB), items sorted by kind."""
        pk = enrollment_pk(enrollment_id)
        view = PartitionView(enrollment_id)
        connection = StepTarget._get_connection()
        start: Any = None
        while True:
            reply = connection.query(pk, consistent_read=consistent, exclusive_start_key=start)
            for raw in reply.get("Items", []):
                sk = raw["sk"]["S"]
                if sk.startswith(STEP):
                    view.steps.append(StepTarget.from_raw_data(raw))
                elif sk.startswith(LOCK):
                    view.locks.append(WorkflowLock.from_raw_data(raw))
                elif sk.startswith(USER_CHANNEL):
                    view.user_channels.append(f"{enrollment_id}:{sk.removeprefix(USER_CHANNEL)}")
                elif sk.startswith(START):
                    view.start_keys.append(sk)
                elif sk.startswith(COMMAND):
                    view.command_steps[sk] = raw.get("step_id", {}).get("S", "")
            start = reply.get("LastEvaluatedKey")
            if not start:
                break
        return view

    def release_lock_of(self, workflow: str, enrollment_id: str) -> None:
        """Release ``workflow``'s lock for the id whoever holds it (a cancel of that workflow)."""
        WorkflowLock(enrollment_pk(enrollment_id), LOCK + workflow).delete()

    def remove_leftovers(self, view: PartitionView, *, clear_started: bool, user_channels: bool) -> int:
        """After a reset of the id (Authenticate, CheckOut): its start records (SC-8), command
        records whose step is gone, and the user channel markers. Returns the items removed."""
        self._forget_prefetched([view.enrollment_id])
        pk = enrollment_pk(view.enrollment_id)
        live = {s.sk.removeprefix(STEP) for s in view.steps}
        doomed: list[Model] = [
            CommandRecord(pk, sk) for sk, step_id in view.command_steps.items() if step_id not in live
        ]
        if clear_started:
            doomed += [CommandRecord(pk, sk) for sk in view.start_keys]
        if user_channels:
            doomed += [
                CommandRecord(pk, USER_CHANNEL + channel.partition(":")[2]) for channel in view.user_channels
            ]
        self._delete_items(doomed)
        return len(doomed)

    # --- the store-level cancels of the conformance suite (SC-5, SC-8) --------------------------

    def cancel_all(self, enrollment_id: str) -> int:
        """CI-1 with GAP-4 fixed: drop every step, command record, lock and start record of
        this id, in every workflow; other ids are untouched. One Query of the id's partition and
        batched deletes. Returns the items deleted. (The engine's resets go through
        ``engine/cancel.py``, which also tells the workflows and counts the outcomes.)"""
        return self.cancel_steps(enrollment_id, "", clear_started=True)

    def cancel_steps(self, enrollment_id: str, workflow: str = "", *, clear_started: bool = False) -> int:
        """SC-5: remove this id from every step of ``workflow`` (every workflow when empty),
        delayed steps included, and release that workflow's lock; SC-8 with ``clear_started``.
        Steps of other workflows and other ids' records stay (GAP-4, CT-21, CT-22)."""
        self._forget_prefetched([enrollment_id])
        pk = enrollment_pk(enrollment_id)
        items = list(
            PartitionEntry.query(
                pk, attributes_to_get=["pk", "sk", "step_id", "workflow"], consistent_read=True
            )
        )
        steps = {
            i.sk.removeprefix(STEP)
            for i in items
            if i.sk.startswith(STEP) and (not workflow or i.workflow == workflow)
        }
        doomed: list[Model] = []
        for item in items:
            sk = item.sk
            if (
                (sk.startswith(STEP) and sk.removeprefix(STEP) in steps)
                or (sk.startswith(COMMAND) and item.step_id in steps)
                or (sk.startswith(LOCK) and (not workflow or sk == LOCK + workflow))
                or (clear_started and sk.startswith(START))
            ):
                doomed.append(CommandRecord(pk, sk))
        self._delete_items(doomed)
        return len(doomed)


def enrollment_of(pk: str) -> str:
    return pk.removeprefix(ENROLLMENT)


def lock_held(lock: WorkflowLock, now: datetime) -> bool:
    return lock.ttl is None or lock.ttl > now
