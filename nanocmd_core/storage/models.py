"""pynamodb models of the single DynamoDB table (design.md §2).

Every enrollment id owns one partition, ``ENR#<id>``, holding everything the engine tracks for
it, so cancelling an id (Authenticate, CheckOut) is one Query, and a device's events never
contend with another device's:

| pk            | sk                  | item                                                      |
|---------------|---------------------|-----------------------------------------------------------|
| ENR#<id>      | CMD#<command uuid>  | CommandRecord: which step target a report belongs to       |
| ENR#<id>      | STEP#<step id>      | StepTarget: one step for one id (commands, reports, done) |
| ENR#<id>      | LOCK#<workflow>     | WorkflowLock: exclusive workflow running for the id       |
| ENR#<id>      | START#<workflow>    | WorkflowStart: last start time (IdleNotStartedSince)      |
| ENR#<udid>    | USER#<user id>      | UserChannel: the device has steps on ``<udid>:<user id>``  |
| INST#<inst>   | INST                | InstanceItem: who started what, when; the start's counts  |
| IOUT#<inst>#n | <id>                | OutcomeItem: where one id of the instance stands          |
| ICNT#<inst>#n | C                   | OutcomeCounter: ids of the instance that ended, by outcome |
| INV#<id>      | INV                 | InventoryItem: inventory values, an attribute `v:<key>` each |

Sparse KEYS_ONLY indexes: ``gsi1`` (gsi1pk, gsi1sk) holds step targets by due time for the
timeout sweep; ``gsi2`` holds them by last push for re-pushes. Keys are structured (separate
attributes, prefixes), so ids or names containing separators cannot collide (GAP-22).
"""

from __future__ import annotations

from typing import Any

from pynamodb.attributes import (
    BinaryAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    NumberSetAttribute,
    TTLAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
)
from pynamodb.connection.table import TableConnection
from pynamodb.indexes import GlobalSecondaryIndex, KeysOnlyProjection
from pynamodb.models import Model

from nanocmd_core.aws.clients import aws_client
from nanocmd_core.config import DEFAULT_TABLE

ENROLLMENT = "ENR#"
COMMAND = "CMD#"
STEP = "STEP#"
LOCK = "LOCK#"
START = "START#"
INVENTORY = "INV#"
DELAYED = "DELAY#"
SUBSCRIPTION = "SUB#"
USER_CHANNEL = "USER#"
INSTANCE = "INST#"
OUTCOMES = "IOUT#"
COUNTERS = "ICNT#"


def enrollment_pk(enrollment_id: str) -> str:
    return ENROLLMENT + enrollment_id


class TableMeta:
    table_name = DEFAULT_TABLE
    # region and endpoint come from the standard AWS environment (AWS_DEFAULT_REGION,
    # AWS_ENDPOINT_URL_DYNAMODB), so local runs differ from AWS by environment only.
    max_retry_attempts = 3
    connect_timeout_seconds = 5
    read_timeout_seconds = 10


class TableItem(Model):
    Meta = TableMeta  # type: ignore[assignment]

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    ttl = TTLAttribute(null=True)

    @classmethod
    def _get_connection(cls) -> TableConnection:
        """pynamodb's per-class connection (it knows the class's indexes), made to use the
        process's one DynamoDB client instead of building a session and a client of its own."""
        table = super()._get_connection()
        connection: Any = table.connection
        if connection._client is None:  # pynamodb 6 makes its client lazily, here
            connection._client = aws_client("dynamodb")
        return table


class CommandRecord(TableItem):
    """(enrollment id, command UUID) → the step target a report for it updates."""

    Meta = TableMeta
    step_id = UnicodeAttribute()
    request_type = UnicodeAttribute()
    canonical = UnicodeAttribute(null=True)
    """For a retried send's alias UUID: the UUID the step target knows the command by."""


class DueIndex(GlobalSecondaryIndex["StepTarget"]):  # type: ignore[no-untyped-call]
    """``gsi1``: step targets by timeout (``TIMEOUT#<shard>``, epoch seconds)."""

    class Meta:
        index_name = "gsi1"
        projection = KeysOnlyProjection()

    gsi1pk = UnicodeAttribute(hash_key=True)
    gsi1sk = NumberAttribute(range_key=True)


class PushIndex(GlobalSecondaryIndex["StepTarget"]):  # type: ignore[no-untyped-call]
    """``gsi2``: sent step targets by last push or report (``PUSH#<shard>``, epoch seconds)."""

    class Meta:
        index_name = "gsi2"
        projection = KeysOnlyProjection()

    gsi2pk = UnicodeAttribute(hash_key=True)
    gsi2sk = NumberAttribute(range_key=True)


class StepCommand(MapAttribute[str, Any]):
    uuid = UnicodeAttribute()
    """The UUID sent to the MDM server for this id (differs from ``logical`` past the first chunk)."""
    logical = UnicodeAttribute()
    """The UUID the workflow gave the command."""
    request_type = UnicodeAttribute()


class StepTarget(TableItem):
    """One step for one enrollment id: what was sent, what came back, what is final."""

    Meta = TableMeta
    workflow = UnicodeAttribute()
    instance_id = UnicodeAttribute()
    step_name = UnicodeAttribute(default="")
    context = BinaryAttribute(null=True, legacy_encoding=False)
    commands = ListAttribute(of=StepCommand)
    results = MapAttribute[str, Any](default=dict)  # type: ignore[no-untyped-call]
    """Sent command UUID → the latest raw report (NotNow included)."""
    done = UnicodeSetAttribute(null=True)
    """Sent command UUIDs with a final report; the step completes when it holds them all."""
    n_commands = NumberAttribute(null=True)
    aliases = UnicodeSetAttribute(null=True)
    """Command UUIDs of retried sends (see CommandRecord.canonical), deleted with the target."""
    created_at = NumberAttribute()
    timeout_at = NumberAttribute(null=True)
    last_push = NumberAttribute(null=True)
    timing_out = NumberAttribute(null=True)
    """Set (to a lease end) when the sweeper claims the step for a timeout: reports no longer count."""
    claimed_until = NumberAttribute(null=True)
    """Lease of whoever is delivering the completed step; a sweep redelivers only after it ends."""
    sent_at = NumberAttribute(null=True)
    """When the MDM server took the commands for this id; unset while delayed or refused."""
    not_until = NumberAttribute(null=True)
    send_error = UnicodeAttribute(null=True)
    """The MDM server's refusal of the last send, while the engine retries it."""
    retry_at = NumberAttribute(null=True)
    outcome_tracked = NumberAttribute(null=True)
    """1 when the step belongs to an instance whose outcomes are recorded (it has an OutcomeItem)."""
    prior_error = UnicodeAttribute(null=True)
    """An earlier step of the instance ended with an error for this id: its end is ``errored``."""
    gsi1pk = UnicodeAttribute(null=True)
    gsi1sk = NumberAttribute(null=True)
    gsi2pk = UnicodeAttribute(null=True)
    gsi2sk = NumberAttribute(null=True)
    gsi1 = DueIndex()
    gsi2 = PushIndex()


class DelayedCommand(MapAttribute[str, Any]):
    logical = UnicodeAttribute()
    request_type = UnicodeAttribute()
    plist = BinaryAttribute(legacy_encoding=False)


class DelayedDueIndex(GlobalSecondaryIndex["DelayedStep"]):  # type: ignore[no-untyped-call]
    """``gsi1`` seen from delayed steps: ``SEND#<shard>`` by send time."""

    class Meta:
        index_name = "gsi1"
        projection = KeysOnlyProjection()

    gsi1pk = UnicodeAttribute(hash_key=True)
    gsi1sk = NumberAttribute(range_key=True)


class DelayedStep(TableItem):
    """A step waiting for its NotUntil time: the raw commands and the ids still to send to
    (``DELAY#<step id>`` / ``DELAY``). Its ``gsi1`` entry (``SEND#<shard>``, send time) is the
    sweeper's safety net behind the one-time schedule."""

    Meta = TableMeta
    workflow = UnicodeAttribute()
    instance_id = UnicodeAttribute()
    step_name = UnicodeAttribute(default="")
    ids = ListAttribute[str](of=UnicodeAttribute)  # type: ignore[arg-type]
    """In enqueue order: chunk k of ``chunk_size`` ids carries the chunk-k command UUIDs."""
    pending = ListAttribute[str](of=UnicodeAttribute)  # type: ignore[arg-type]
    """Ids not sent yet."""
    chunk_size = NumberAttribute()
    commands = ListAttribute(of=DelayedCommand)
    send_at = NumberAttribute()
    attempts = NumberAttribute(default=0)
    sending_until = NumberAttribute(null=True)
    gsi1pk = UnicodeAttribute(null=True)
    gsi1sk = NumberAttribute(null=True)
    gsi1 = DelayedDueIndex()


class PartitionEntry(TableItem):
    """Any item of an enrollment's partition, read with just what a cancel needs."""

    Meta = TableMeta
    step_id = UnicodeAttribute(null=True)
    workflow = UnicodeAttribute(null=True)


class WorkflowLock(TableItem):
    """Held while an exclusive workflow runs for an id (GAP-1, GAP-3); TTL is a safety net."""

    Meta = TableMeta
    instance_id = UnicodeAttribute()
    acquired_at = NumberAttribute()


class WorkflowStart(TableItem):
    Meta = TableMeta
    started_at = NumberAttribute()


class InventoryItem(TableItem):
    """The record's values are top-level attributes ``v:<key>``, one per inventory key, read
    and written by ``subsystems/inventory/storage.py``. pynamodb drops attributes a model does
    not declare, so a read keeps them, still in DynamoDB's form, in ``undeclared``."""

    Meta = TableMeta
    undeclared: dict[str, Any]

    @classmethod
    def from_raw_data(cls, data: dict[str, Any]) -> InventoryItem:
        item = super().from_raw_data(data)
        declared = {a.attr_name for a in cls.get_attributes().values()}
        item.undeclared = {name: value for name, value in data.items() if name not in declared}
        return item


class UserChannel(TableItem):
    """Marks that ``<udid>:<user id>`` had steps, so the device's Authenticate or CheckOut finds
    its user channels with the Query of its own partition (no scan)."""

    Meta = TableMeta


class HistoryIndex(GlobalSecondaryIndex["InstanceItem"]):  # type: ignore[no-untyped-call]
    """``gsi1`` seen from instances: ``HIST#<workflow>#<shard>`` by start time (ms)."""

    class Meta:
        index_name = "gsi1"
        projection = KeysOnlyProjection()

    gsi1pk = UnicodeAttribute(hash_key=True)
    gsi1sk = NumberAttribute(range_key=True)


class AllHistoryIndex(GlobalSecondaryIndex["InstanceItem"]):  # type: ignore[no-untyped-call]
    """``gsi2`` seen from instances: ``HISTALL#<shard>`` by start time (ms), every workflow."""

    class Meta:
        index_name = "gsi2"
        projection = KeysOnlyProjection()

    gsi2pk = UnicodeAttribute(hash_key=True)
    gsi2sk = NumberAttribute(range_key=True)


class InstanceItem(TableItem):
    """A started instance (``INST#<instance id>`` / ``INST``): kept ``NANOCMD_HISTORY_DAYS``."""

    Meta = TableMeta
    workflow = UnicodeAttribute()
    started_at = NumberAttribute()
    """Epoch milliseconds (the history's order)."""
    started_by = UnicodeAttribute()
    context = UnicodeAttribute(null=True)
    requested = NumberAttribute(default=0)
    c_started = NumberAttribute(default=0)
    c_skipped = NumberAttribute(default=0)
    c_failed = NumberAttribute(default=0)
    c_completed = NumberAttribute(default=0)
    """Ids whose start enqueued nothing: the instance ended for them at once."""
    chunks = NumberAttribute(null=True)
    """An asynchronous start: how many chunks of ids go through the queue."""
    chunks_done = NumberSetAttribute(null=True)
    """The chunks already counted (each once: a retried chunk's counts are added only once)."""
    gsi1pk = UnicodeAttribute(null=True)
    gsi1sk = NumberAttribute(null=True)
    gsi2pk = UnicodeAttribute(null=True)
    gsi2sk = NumberAttribute(null=True)
    gsi1 = HistoryIndex()
    gsi2 = AllHistoryIndex()


class OutcomeItem(TableItem):
    """One id of an instance (``IOUT#<instance>#<shard>`` / the enrollment id)."""

    Meta = TableMeta
    outcome = UnicodeAttribute()
    updated_at = NumberAttribute(null=True)
    error = UnicodeAttribute(null=True)


class OutcomeCounter(TableItem):
    """One shard of an instance's end counts (``ICNT#<instance>#<shard>`` / ``C``): the ids'
    ends spread over shards so a 100,000-id instance never makes one partition hot."""

    Meta = TableMeta
    completed = NumberAttribute(null=True)
    timed_out = NumberAttribute(null=True)
    cancelled = NumberAttribute(null=True)
    errored = NumberAttribute(null=True)


ALL_MODELS: tuple[type[TableItem], ...] = (
    CommandRecord,
    StepTarget,
    DelayedStep,
    WorkflowLock,
    WorkflowStart,
    InventoryItem,
    UserChannel,
    InstanceItem,
    OutcomeItem,
    OutcomeCounter,
)


def bind_table(table_name: str) -> None:
    """Point every model at ``table_name`` (all share one Meta); pynamodb reconnects on change."""
    TableMeta.table_name = table_name


class SubscriptionEventIndex(GlobalSecondaryIndex["EventSubscriptionItem"]):  # type: ignore[no-untyped-call]
    """``gsi1`` seen from subscriptions: ``SUBEVENT#<event name>``."""

    class Meta:
        index_name = "gsi1"
        projection = KeysOnlyProjection()

    gsi1pk = UnicodeAttribute(hash_key=True)
    gsi1sk = NumberAttribute(range_key=True)


class EventSubscriptionItem(TableItem):
    """A user's event subscription (``SUB#<name>`` / ``SUB``), indexed by event name."""

    Meta = TableMeta
    event = UnicodeAttribute()
    workflow = UnicodeAttribute()
    context = UnicodeAttribute(null=True)
    event_context = UnicodeAttribute(null=True)
    gsi1pk = UnicodeAttribute(null=True)
    gsi1sk = NumberAttribute(null=True)
    gsi1 = SubscriptionEventIndex()
