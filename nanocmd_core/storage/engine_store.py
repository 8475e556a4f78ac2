"""The engine's storage on DynamoDB: every state change is a conditional write.

DynamoDB calls per event (see models.py for the items). None depends on the number of enrolled
devices or of steps in flight: each is a key lookup, a Query of one enrollment's partition, or a
Query of a sparse index that holds only what is due.

- workflow start, per id: the lock (conditional; exclusive workflows only: a PutItem each for a
  few ids, TransactWriteItems of 100 for more, lock_store.py), the enqueue below, start record
  (BatchWriteItem), DeleteItem lock if Start enqueued nothing.
- enqueue, per id: step target + one command record per command, 25 items to a BatchWriteItem
  (the calls run together), after one consistent BatchGetItem per 100 command records: a batch
  write takes no condition, and a tracked (id, UUID) is never overwritten (SC-3); none for the
  UUIDs a typed command drew itself and no step used yet (engine/fresh_uuids.py). A delayed step
  adds one PutItem of its raw commands. So a 100-id start of a 2-command step costs 1
  TransactWriteItems of 100 locks + 2 BatchGetItems + 12 + 4 BatchWriteItems.
- untracked report: GetItem command record (strongly consistent). That is all. The events
  function looks up a whole batch's reports in one BatchGetItem instead (``prefetched_commands``).
- tracked report (NotNow, or not the last): GetItem + UpdateItem step target.
- final report of a step: GetItem + UpdateItem, then (when the instance ended for the id) one
  TransactWriteItems of its outcome, counter and the lock's release (``end_step``), and one
  BatchWriteItem deleting the target and its command records.
- check-in (TokenUpdate): reads only the subscriptions (one index Query + BatchGetItem, cached per
  process); Authenticate/CheckOut add one Query of the id's partition + BatchWriteItem deletes.
- Idle: the cached subscriptions + one GetItem start record per IdleNotStartedSince subscription.
- sweep: one Query per shard of each sparse index (delayed sends, timeouts, re-pushes), then per
  due item one conditional UpdateItem (the claim) and the deletes of what ended.
"""

from __future__ import annotations

import zlib
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger
from pynamodb.models import Model

from nanocmd_core.aws.clients import aws_client
from nanocmd_core.storage.dynamo import (
    BatchWriteError,
    _conditional,
    _epoch,
    batch_write,
    fan_out,
    transaction_cancelled,
)
from nanocmd_core.storage.lock_store import LockStoreMixin, lock_release_write
from nanocmd_core.storage.models import (
    COMMAND,
    ENROLLMENT,
    STEP,
    USER_CHANNEL,
    CommandRecord,
    StepCommand,
    StepTarget,
    UserChannel,
    enrollment_pk,
)
from nanocmd_core.storage.partition_store import PartitionStoreMixin
from nanocmd_core.storage.send_store import (
    DELIVERY_LEASE,
    PUSH_INDEX_SHARDS,
    PUSH_PREFIX,
    TIMEOUT_INDEX_SHARDS,
    DelayedCommandData,
    DelayedState,
    SendStoreMixin,
)
from nanocmd_core.storage.targets import (
    NOT_NOW_KEY,
    REPORTED_KEY,
    TIMEOUT_PREFIX,
    DuplicateCommandError,
    NewTarget,
    TargetCommand,
    TargetState,
    TrackedCommand,
    _trackable,
    raw_results,
    target_state,
    user_channel_of,
)
from nanocmd_core.storage.timeout_store import TimeoutStoreMixin

logger = Logger(service="nanocmd", child=True)

__all__ = [  # re-exports: the engine and the tests know these from here
    "NOT_NOW_KEY",
    "REPORTED_KEY",
    "TIMEOUT_PREFIX",
    "BatchWriteError",
    "DelayedCommandData",
    "DelayedState",
    "DuplicateCommandError",
    "NewTarget",
    "TargetCommand",
    "TargetState",
    "TrackedCommand",
    "batch_write",
    "fan_out",
    "raw_results",
    "user_channel_of",
]

_PREFETCHED: ContextVar[dict[tuple[str, str], TrackedCommand | None] | None] = ContextVar(
    "nanocmd_prefetched_commands", default=None
)
"""The command lookups of the batch of reports being processed (``prefetched_commands``)."""


class DynamoEngineStore(SendStoreMixin, PartitionStoreMixin, LockStoreMixin, TimeoutStoreMixin):
    """The engine's tracking data in one DynamoDB table (models.py)."""

    # --- steps -----------------------------------------------------------------------------

    def put_targets(self, targets: Sequence[NewTarget], fresh: Collection[str] = ()) -> None:
        """Store step targets and their command records in batches; none when a command is
        already tracked for its id (SC-3). A batch write takes no condition, so the records are
        looked up first (one consistent BatchGetItem per 100), but for the commands whose author's
        UUID is in ``fresh`` (engine/fresh_uuids.py: no step can hold it yet)."""
        self._forget_prefetched(t.enrollment_id for t in targets)
        items: list[Model] = []
        checked: list[tuple[CommandRecord, TargetCommand]] = []
        markers: dict[tuple[str, str], UserChannel] = {}
        for t in targets:
            pk = enrollment_pk(t.enrollment_id)
            target = StepTarget(
                pk,
                STEP + t.step_id,
                workflow=t.workflow,
                instance_id=t.instance_id,
                step_name=t.step_name,
                context=t.context or None,
                commands=[
                    StepCommand(uuid=c.uuid, logical=c.logical, request_type=c.request_type)  # type: ignore[no-untyped-call]
                    for c in t.commands
                ],
                results={},
                n_commands=len(t.commands),
                created_at=t.created_at,
                timeout_at=t.timeout_at,
                last_push=t.pushed_at,
                sent_at=t.pushed_at,
                not_until=t.not_until,
                outcome_tracked=1 if t.outcome_tracked else None,
                prior_error=t.prior_error[:2000] or None,
            )
            if t.pushed_at is not None:  # sent: on the re-push clock (gsi2)
                target.gsi2pk = f"{PUSH_PREFIX}{zlib.crc32(pk.encode()) % PUSH_INDEX_SHARDS}"
                target.gsi2sk = t.pushed_at
            if t.timeout_at is not None:
                target.gsi1pk = f"{TIMEOUT_PREFIX}{zlib.crc32(pk.encode()) % TIMEOUT_INDEX_SHARDS}"
                target.gsi1sk = t.timeout_at
            items.append(target)
            channel = user_channel_of(t.enrollment_id)
            if channel is not None:  # the device's Authenticate/CheckOut ends this channel too
                markers[channel] = UserChannel(enrollment_pk(channel[0]), USER_CHANNEL + channel[1])
            checked += [
                (CommandRecord(pk, COMMAND + c.uuid, step_id=t.step_id, request_type=c.request_type), c)
                for c in t.commands
            ]
        tracked = {
            (r.pk, r.sk)
            for r in CommandRecord.batch_get(
                [(r.pk, r.sk) for r, c in checked if c.logical not in fresh],
                consistent_read=True,
                attributes_to_get=["pk", "sk"],
            )
        }
        if tracked:
            dupes = sorted(pk.removeprefix(ENROLLMENT) + "/" + sk.removeprefix(COMMAND) for pk, sk in tracked)
            raise DuplicateCommandError(f"command already tracked: {', '.join(dupes[:5])}")
        items += [r for r, _ in checked]
        items += markers.values()
        try:
            batch_write(puts=items)
        except Exception:
            try:  # all or nothing: take back whatever part of the batches was written
                batch_write(deletes=items)
            except Exception as exc:
                logger.error("rolling back a failed step store failed", extra={"error": str(exc)})
            raise

    @contextmanager
    def prefetched_commands(self, pairs: Iterable[tuple[str, str]]) -> Iterator[None]:
        """Look up the command records of a batch of reports in one consistent BatchGetItem;
        ``lookup_command`` answers from it inside the block, once per pair.

        The answers stay right: a prefetched record a later write removed (its step completed or
        was cancelled) only makes the report's conditional update fail, as a live lookup's miss
        would; and every write that adds or removes an id's records here drops that id's
        prefetched answers, so they are looked up live again."""
        keys = list(dict.fromkeys((i, u) for i, u in pairs if _trackable(i, u)))
        found: dict[tuple[str, str], TrackedCommand | None] = dict.fromkeys(keys)
        try:
            if keys:
                wanted = [(enrollment_pk(i), COMMAND + u) for i, u in keys]
                for rec in CommandRecord.batch_get(wanted, consistent_read=True):
                    command_uuid = rec.sk.removeprefix(COMMAND)
                    found[(rec.pk.removeprefix(ENROLLMENT), command_uuid)] = TrackedCommand(
                        rec.step_id, rec.request_type, rec.canonical or command_uuid
                    )
        except Exception as exc:  # each report then looks itself up, and fails (or not) on its own
            logger.warning("batch lookup of command records failed", extra={"error": str(exc)})
            found = {}
        token = _PREFETCHED.set(found)
        try:
            yield
        finally:
            _PREFETCHED.reset(token)

    @staticmethod
    def _forget_prefetched(enrollment_ids: Iterable[str]) -> None:
        prefetched = _PREFETCHED.get()
        if prefetched:
            ids = set(enrollment_ids)
            for key in [k for k in prefetched if k[0] in ids]:
                del prefetched[key]

    def lookup_command(self, enrollment_id: str, command_uuid: str) -> TrackedCommand | None:
        """SC-1: the step and request type of a tracked (id, UUID) pair, or None."""
        if not _trackable(enrollment_id, command_uuid):
            return None
        prefetched = _PREFETCHED.get()
        if prefetched is not None and (enrollment_id, command_uuid) in prefetched:
            return prefetched.pop((enrollment_id, command_uuid))
        try:
            rec = CommandRecord.get(
                enrollment_pk(enrollment_id), COMMAND + command_uuid, consistent_read=True
            )
        except CommandRecord.DoesNotExist:
            return None
        return TrackedCommand(rec.step_id, rec.request_type, rec.canonical or command_uuid)

    def add_aliases(self, step_id: str, aliases: Sequence[tuple[str, str, str, str]]) -> None:
        """Track (id, alias UUID) as (id, canonical UUID) of the step: a retried send must use a
        new UUID, because NanoMDM refuses a UUID it already holds (from the ids it did accept).
        The records go in batches (one left by an interrupted attempt is the same record), then
        each id's target learns its aliases, so deleting the target deletes them too."""
        self._forget_prefetched(a[0] for a in aliases)
        batch_write(
            puts=[
                CommandRecord(
                    enrollment_pk(i), COMMAND + alias, step_id=step_id, request_type=rt, canonical=canonical
                )
                for i, alias, canonical, rt in aliases
            ]
        )
        by_id: dict[str, set[str]] = {}
        for enrollment_id, alias, _, _ in aliases:
            by_id.setdefault(enrollment_id, set()).add(alias)

        def add(entry: tuple[str, set[str]]) -> None:
            enrollment_id, uuids = entry
            with _conditional():
                StepTarget(enrollment_pk(enrollment_id), STEP + step_id).update(
                    actions=[StepTarget.aliases.add(uuids)], condition=StepTarget.pk.exists()
                )

        fan_out(add, list(by_id.items()))

    def record_report(
        self, enrollment_id: str, step_id: str, command_uuid: str, raw: bytes, final: bool, now: datetime
    ) -> TargetState | None:
        """Store a report on its step target; returns the target as the update left it, or None
        when the report no longer counts. ``final`` and ``.complete`` together are true only for
        the one caller whose final report completed the step for this id (GAP-2): the done-set
        ADD is guarded by ``NOT contains(done, uuid)``, so duplicates and concurrent finals
        cannot both win."""
        target = StepTarget(enrollment_pk(enrollment_id), STEP + step_id)
        # any report resets the id's re-push clock (design.md §6; GAP-12)
        actions: list[Any] = [
            StepTarget.results[command_uuid].set(raw),
            StepTarget.results[REPORTED_KEY + command_uuid].set(_epoch(now)),
            StepTarget.gsi2sk.set(_epoch(now)),
        ]
        if not final:
            not_now = StepTarget.results[NOT_NOW_KEY + command_uuid]
            actions.append(not_now.set((not_now | 0) + 1))
        if final:
            # the lease keeps a sweep from redelivering while the winner delivers
            actions += [
                StepTarget.done.add({command_uuid}),
                StepTarget.claimed_until.set(_epoch(now) + DELIVERY_LEASE),
            ]
        condition = (
            StepTarget.pk.exists()
            & ~StepTarget.done.contains(command_uuid)
            & StepTarget.timing_out.does_not_exist()  # a claimed timeout wins over late reports
        )
        with _conditional() as write:
            target.update(actions=actions, condition=condition)
        if write.failed:
            return None  # finished, cancelled or timed out meanwhile, or a repeat of a final
        return target_state(target)

    def reopen(self, enrollment_id: str, step_id: str, command_uuid: str) -> None:
        """Undo a completion whose delivery failed, so a retry of the same report completes again."""
        target = StepTarget(enrollment_pk(enrollment_id), STEP + step_id)
        with _conditional():
            target.update(
                actions=[StepTarget.done.delete({command_uuid}), StepTarget.claimed_until.remove()],
                condition=StepTarget.pk.exists(),
            )

    def delete_target(self, state: TargetState) -> None:
        self._forget_prefetched([state.enrollment_id])
        pk = enrollment_pk(state.enrollment_id)
        items: list[Model] = [StepTarget(pk, STEP + state.step_id)]
        items += [
            CommandRecord(pk, COMMAND + uuid)
            for uuid in [c.uuid for c in state.commands] + sorted(state.aliases)
        ]
        self._delete_items(items)

    def end_step(self, state: TargetState, release_lock: bool, along: Sequence[dict[str, Any]] = ()) -> bool:
        """A step's end for its id: ``along`` (the id's outcome end: conditional) and the release
        of the instance's lock (``release_lock``) in one TransactWriteItems, then the target and
        its command records in one BatchWriteItem: a call fewer than apart, for one WCU more (a
        deletion in a transaction costs 2). The deletes go in no transaction: unconditional,
        they would cost twice as much there. False when the transaction was cancelled (a
        condition did not hold: the outcome had ended already, the lock is another instance's;
        or it conflicted): nothing was written, the caller does it a part at a time."""
        if along:
            writes = list(along)
            if release_lock:
                writes.append(lock_release_write(state.workflow, state.enrollment_id, state.instance_id))
            try:
                aws_client("dynamodb").transact_write_items(TransactItems=writes)
            except Exception as exc:
                if transaction_cancelled(exc):
                    logger.debug(
                        "step end transaction cancelled; a part at a time", extra={"error": str(exc)}
                    )
                    return False
                raise
            self.delete_target(state)
            return True
        self.delete_target(state)  # as before: the target first, then the lock it held
        if release_lock:
            self.release_lock(state.workflow, state.enrollment_id, state.instance_id)
        return True

    # --- helpers -------------------------------------------------------------------------------

    @staticmethod
    def _delete_items(items: Iterable[Model]) -> None:
        items = list(items)
        if len(items) == 1:
            items[0].delete()
        elif items:
            batch_write(deletes=items)
