"""Event flags a workflow or a user subscription can react to (engine.md §1.4).

The numeric values are stored, so they are append-only.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntFlag
from typing import Any


class EventFlag(IntFlag):
    ALL_COMMAND_RESPONSE = 1
    AUTHENTICATE = 2
    TOKEN_UPDATE = 4
    ENROLLMENT = 8
    CHECK_OUT = 16
    IDLE = 32
    IDLE_NOT_STARTED_SINCE = 64


EVENT_NAMES: dict[EventFlag, str] = {
    EventFlag.ALL_COMMAND_RESPONSE: "AllCommandResponse",
    EventFlag.AUTHENTICATE: "Authenticate",
    EventFlag.TOKEN_UPDATE: "TokenUpdate",
    EventFlag.ENROLLMENT: "Enrollment",
    EventFlag.CHECK_OUT: "CheckOut",
    EventFlag.IDLE: "Idle",
    EventFlag.IDLE_NOT_STARTED_SINCE: "IdleNotStartedSince",
}
_BY_NAME = {name: flag for flag, name in EVENT_NAMES.items()}


def event_flag_from_name(name: str) -> EventFlag | None:
    """Exact, case-sensitive (DM-2); None for anything else."""
    return _BY_NAME.get(name)


def event_name(flag: int) -> str:
    try:
        return EVENT_NAMES[EventFlag(flag)]
    except (KeyError, ValueError):
        return f"unknown event type: {flag}"


def valid_event_flag(flag: int) -> bool:
    """DM-1: any non-empty combination of the seven bits."""
    return 0 < flag < 128


@dataclass(frozen=True)
class Event:
    """An MDM event handed to a workflow: the flag and its data (a check-in message, a typed
    command response for AllCommandResponse, or None for Idle events)."""

    flag: EventFlag
    data: Any = None

    @property
    def name(self) -> str:
        return event_name(self.flag)
