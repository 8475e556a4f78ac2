"""A step target as the engine sees it: the shapes the stores read and write (models.py has the
items), shared by the engine store and its timeout mixin."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pynamodb.expressions.condition import size

from nanocmd_core.storage.models import COMMAND, STEP, StepTarget, enrollment_pk

TIMEOUT_PREFIX = "TIMEOUT#"


class DuplicateCommandError(ValueError):
    """An (enrollment id, command UUID) pair is already tracked by a live step (SC-3)."""


class TargetCommand(NamedTuple):
    """One command of a step target: the UUID sent, the author's (logical) UUID, its type."""

    uuid: str
    logical: str
    request_type: str


@dataclass
class NewTarget:
    """One step for one id, as the engine stores it before sending."""

    enrollment_id: str
    step_id: str
    workflow: str
    instance_id: str
    step_name: str
    context: bytes
    commands: list[TargetCommand]
    created_at: int
    timeout_at: int | None = None
    pushed_at: int | None = None
    not_until: int | None = None
    outcome_tracked: bool = False
    """The step's instance records its ids' outcomes (the engine ends them with the step)."""
    prior_error: str = ""

    def state(self) -> TargetState:
        return TargetState(
            enrollment_id=self.enrollment_id,
            step_id=self.step_id,
            workflow=self.workflow,
            instance_id=self.instance_id,
            step_name=self.step_name,
            context=self.context,
            commands=self.commands,
            outcome_tracked=self.outcome_tracked,
            prior_error=self.prior_error,
        )


class TrackedCommand(NamedTuple):
    step_id: str
    request_type: str
    canonical: str
    """The UUID the step target tracks the command by (the sent UUID, or the one a retry's
    alias stands for)."""


@dataclass
class TargetState:
    """A step target as read back for a report, a timeout or a step end."""

    enrollment_id: str
    step_id: str
    workflow: str
    instance_id: str
    step_name: str
    context: bytes
    commands: list[TargetCommand]
    results: dict[str, bytes] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)
    aliases: set[str] = field(default_factory=set)
    outcome_tracked: bool = False
    prior_error: str = ""

    @property
    def complete(self) -> bool:
        return all(c.uuid in self.done for c in self.commands)


def _trackable(enrollment_id: str, command_uuid: str) -> bool:
    """Whether (id, UUID) can be a command record's key at all (DynamoDB: partition key ≤ 2048
    bytes, sort key ≤ 1024); anything else is untracked without asking DynamoDB."""
    return (
        bool(enrollment_id and command_uuid)
        and len(enrollment_pk(enrollment_id).encode()) <= 2048
        and len((COMMAND + command_uuid).encode()) <= 1024
    )


NOT_NOW_KEY = "nn:"
"""``results`` keys beside the raw reports: NotNow count and report time per command UUID."""
REPORTED_KEY = "at:"


def target_state(item: StepTarget) -> TargetState:
    results = raw_results(item)
    return TargetState(
        enrollment_id=item.pk.removeprefix("ENR#"),
        step_id=item.sk.removeprefix(STEP),
        workflow=item.workflow,
        instance_id=item.instance_id,
        step_name=item.step_name or "",
        context=item.context or b"",
        commands=[TargetCommand(c.uuid, c.logical, c.request_type) for c in item.commands or []],
        results={k: bytes(v) for k, v in results.items()},
        done=set(item.done or ()),
        aliases=set(item.aliases or ()),
        outcome_tracked=bool(item.outcome_tracked),
        prior_error=item.prior_error or "",
    )


def raw_results(item: StepTarget) -> dict[str, bytes]:
    """Command UUID → its last raw report (the map also holds numbers: NotNow counts, times)."""
    results = item.results.as_dict() if item.results is not None else {}  # type: ignore[no-untyped-call]
    return {k: bytes(v) for k, v in results.items() if isinstance(v, bytes | bytearray)}


def user_channel_of(enrollment_id: str) -> tuple[str, str] | None:
    """``<udid>:<user id>`` (NanoMDM's user channel ids) → (udid, user id)."""
    device, sep, user = enrollment_id.partition(":")
    return (device, user) if sep and device and user else None


def done_count() -> Any:
    """``size(done)`` in a condition: how many commands of the step have a final report."""
    return size(StepTarget.done)  # type: ignore[no-untyped-call]
