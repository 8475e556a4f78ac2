"""Which command UUIDs of a step cannot be tracked yet, so storing the step needs no SC-3 lookup.

A typed command whose UUID its own default factory drew (random, version 4) and that this process
has not enqueued before carries a UUID no step can hold: the consistent BatchGetItem that guards
SC-3 (a tracked (id, UUID) is never overwritten) would find nothing, for ~1 RCU and a call per 50
ids of a 2-command step. A UUID given explicitly (by the author, a stored plan, a raw plist), or
seen in an earlier step of this process (the same object, or a copy of it, enqueued again), is
looked up as before.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from nanocmd_core.mdm.commands import AnyCommand, Command

SEEN_LIMIT = 100_000
"""UUIDs remembered per process; past it every UUID is looked up again (memory stays bounded)."""

_seen: set[str] = set()
_lock = threading.Lock()


def claim_fresh(commands: Iterable[AnyCommand]) -> frozenset[str]:
    """The UUIDs of ``commands`` that are fresh, each claimed (no longer fresh) as it is returned."""
    drawn = [c.command_uuid for c in commands if isinstance(c, Command) and _drew_own_uuid(c)]
    if not drawn:
        return frozenset()
    with _lock:
        if len(_seen) + len(drawn) > SEEN_LIMIT:
            return frozenset()
        fresh = frozenset(u for u in drawn if u not in _seen)
        _seen.update(drawn)
    return fresh


def _drew_own_uuid(command: Command) -> bool:
    """pydantic leaves a field its default factory filled out of ``model_fields_set``."""
    return "command_uuid" not in command.model_fields_set
