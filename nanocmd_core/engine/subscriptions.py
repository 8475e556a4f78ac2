"""User event subscriptions: "when this event happens to an enrollment, start that workflow"
(engine.md §1.8, §2.7; api.md §5.2-5.3), with the validation the Go original lacked
(GAP-17, GAP-18) and whole-item replacement on PUT (GAP-23)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol

from nanocmd_core.workflow.events import EventFlag, event_flag_from_name

# AllCommandResponse would start a workflow on every command report: refused (GAP-17); a
# workflow that wants responses names their request types in its config instead.
SUBSCRIBABLE = {
    EventFlag.AUTHENTICATE,
    EventFlag.TOKEN_UPDATE,
    EventFlag.ENROLLMENT,
    EventFlag.CHECK_OUT,
    EventFlag.IDLE,
    EventFlag.IDLE_NOT_STARTED_SINCE,
}


class SubscriptionError(ValueError):
    """A subscription that cannot be stored; the message is the API's 400 error text."""


class EventSubscription(NamedTuple):
    """An event that starts a workflow (Go: an event subscription), with the start's context."""

    event: str
    workflow: str
    context: str = ""
    event_context: str = ""

    @property
    def flag(self) -> EventFlag:
        return event_flag_from_name(self.event) or EventFlag(0)

    @property
    def idle_seconds(self) -> int:
        """IdleNotStartedSince: how long since the last start before the next (validated ≥ 1)."""
        return int(self.event_context)

    def to_json(self) -> dict[str, str]:
        """Empty ``context`` and ``event_context`` are omitted, as in Go."""
        doc = {"event": self.event, "workflow": self.workflow}
        if self.context:
            doc["context"] = self.context
        if self.event_context:
            doc["event_context"] = self.event_context
        return doc


def parse_subscription(doc: Any, is_registered: Callable[[str], bool]) -> EventSubscription:
    """Validate a PUT body (keys matched case-insensitively, unknown keys ignored, as Go does)."""
    if not isinstance(doc, Mapping):
        raise SubscriptionError("body must be a JSON object")
    folded = {str(k).lower(): v for k, v in doc.items()}
    fields: dict[str, str] = {}
    for key in ("event", "workflow", "context", "event_context"):
        value = folded.get(key)
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise SubscriptionError(f"{key} must be a string")
        fields[key] = value
    sub = EventSubscription(**fields)
    if not sub.event:
        raise SubscriptionError("missing event type")
    flag = event_flag_from_name(sub.event)
    if flag is None:
        raise SubscriptionError(f"invalid event type: {sub.event}")
    if flag not in SUBSCRIBABLE:
        raise SubscriptionError(
            f"event type {sub.event} cannot start workflows; name its request types "
            "in a workflow's config instead"
        )
    if not sub.workflow:
        raise SubscriptionError("missing workflow name")
    if not is_registered(sub.workflow):
        raise SubscriptionError("workflow not registered")
    if flag == EventFlag.IDLE_NOT_STARTED_SINCE:
        try:
            seconds = int(sub.event_context, 10)
        except ValueError:
            seconds = 0
        if seconds < 1:
            raise SubscriptionError("IdleNotStartedSince needs event_context: a whole number of seconds ≥ 1")
    return sub


class SubscriptionStore(Protocol):
    def put(self, name: str, sub: EventSubscription) -> None: ...
    def get(self, name: str) -> EventSubscription | None: ...
    def delete(self, name: str) -> bool: ...
    def by_event(self, flag: EventFlag) -> dict[str, EventSubscription]: ...
    def all(self) -> dict[str, EventSubscription]: ...


class CachedSubscriptions:
    """Subscriptions by event, kept per process for ``ttl`` seconds: every device Idle would
    otherwise cost a Query. A change made through the API reaches warm containers within ``ttl``."""

    def __init__(
        self, store: SubscriptionStore, ttl: float = 30.0, clock: Callable[[], float] = time.monotonic
    ):
        self.store = store
        self.ttl = ttl
        self.clock = clock
        self._cache: dict[EventFlag, tuple[float, dict[str, EventSubscription]]] = {}

    def by_event(self, flag: EventFlag) -> dict[str, EventSubscription]:
        now = self.clock()
        hit = self._cache.get(flag)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        subs = self.store.by_event(flag)
        if self.ttl > 0:
            self._cache[flag] = (now, subs)
        return subs
