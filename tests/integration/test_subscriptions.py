"""Check-in events and user event subscriptions (engine.md §2.5-2.7, CI-*, ID-*, EV-*, CT-12,
CT-26; design.md §6; GAP-17, GAP-18, GAP-23)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from nanocmd_core.engine.subscriptions import CachedSubscriptions, EventSubscription
from nanocmd_core.mdm.checkin import Authenticate, CheckOut, TokenUpdate
from nanocmd_core.storage.models import bind_table
from nanocmd_core.storage.subscription_store import DynamoSubscriptionStore
from nanocmd_core.workflow import EventFlag, MDMContext
from tests.support.engine import Harness, MultiWorkflow, StepsWorkflow, engine_harness


@pytest.fixture
def store(table_name: str) -> DynamoSubscriptionStore:
    bind_table(table_name)
    return DynamoSubscriptionStore()


@pytest.fixture
def harness(table_name: str, store: DynamoSubscriptionStore) -> Iterator[Harness]:
    with engine_harness(table_name, subscriptions=CachedSubscriptions(store, ttl=0)) as h:
        yield h


def token_update(udid: str, enrolling: bool) -> TokenUpdate:
    message = TokenUpdate(MessageType="TokenUpdate", UDID=udid, Topic="t", PushMagic="m", Token=b"x")
    message.enrolling = enrolling
    return message


def test_store_round_trip_by_name_and_by_event(store: DynamoSubscriptionStore) -> None:
    """CT-12, CT-26 (a PUT replaces the whole item), and delete."""
    sub = EventSubscription(event="Enrollment", workflow="wf", context="ctx", event_context="evCtx")
    store.put("test", sub)
    assert store.get("test") == sub
    assert store.by_event(EventFlag.ENROLLMENT) == {"test": sub}
    assert store.by_event(EventFlag.CHECK_OUT) == {}
    store.put("test", EventSubscription(event="CheckOut", workflow="wf"))
    assert store.get("test") == EventSubscription(event="CheckOut", workflow="wf")
    assert store.by_event(EventFlag.ENROLLMENT) == {}
    store.put("other", EventSubscription(event="Idle", workflow="wf2"))
    assert list(store.all()) == ["other", "test"]
    assert store.delete("test") and not store.delete("test")
    assert store.get("test") is None


def test_first_token_update_raises_token_update_then_enrollment(
    harness: Harness, store: DynamoSubscriptionStore
) -> None:
    """CI-3, WH-10: subscriptions start their workflow with their context, the event and the MDM
    context; Enrollment only for the first TokenUpdate."""
    store.put(
        "on-enroll", EventSubscription(event="Enrollment", workflow=MultiWorkflow.name, context="hello")
    )
    store.put("on-token", EventSubscription(event="TokenUpdate", workflow=MultiWorkflow.name))
    harness.engine.handle_checkin("DEV", token_update("DEV", enrolling=True), MDMContext({"site": "b"}))
    assert [(s.event.flag if s.event else None, s.context) for s in harness.rec.started] == [
        (EventFlag.TOKEN_UPDATE, ""),  # no context: the codec's empty string
        (EventFlag.ENROLLMENT, "hello"),
    ]
    assert all(s.ids == ["DEV"] and s.mdm_context == MDMContext({"site": "b"}) for s in harness.rec.started)
    assert isinstance(harness.rec.started[1].event.data, TokenUpdate)  # type: ignore[union-attr]
    harness.engine.handle_checkin("DEV", token_update("DEV", enrolling=False))
    assert [s.event.flag for s in harness.rec.started[2:]] == [EventFlag.TOKEN_UPDATE]  # type: ignore[union-attr]


def test_both_events_naming_one_exclusive_workflow_start_it_once(
    harness: Harness, store: DynamoSubscriptionStore
) -> None:
    """EV-5."""
    store.put("a", EventSubscription(event="TokenUpdate", workflow=StepsWorkflow.name))
    store.put("b", EventSubscription(event="Enrollment", workflow=StepsWorkflow.name))
    harness.engine.handle_checkin("DEV", token_update("DEV", enrolling=True))
    assert len(harness.rec.started) == 1
    assert len(harness.sent("DEV")) == 1


def test_authenticate_and_check_out_cancel_then_start(
    harness: Harness, store: DynamoSubscriptionStore
) -> None:
    """CI-1, CI-2: the id's steps are cancelled first, so an exclusive workflow starts afresh."""
    store.put("auth", EventSubscription(event="Authenticate", workflow=StepsWorkflow.name))
    store.put("out", EventSubscription(event="CheckOut", workflow=MultiWorkflow.name))
    harness.engine.start_workflow(StepsWorkflow.name, ["DEV"])
    harness.engine.handle_checkin("DEV", Authenticate(MessageType="Authenticate", UDID="DEV"))
    assert [s.event.flag for s in harness.rec.started if s.event] == [EventFlag.AUTHENTICATE]
    harness.engine.handle_checkin("DEV", CheckOut(MessageType="CheckOut", UDID="DEV"))
    assert [s.event.flag for s in harness.rec.started if s.event] == [
        EventFlag.AUTHENTICATE,
        EventFlag.CHECK_OUT,
    ]


def test_idle_subscriptions_start_their_workflow(harness: Harness, store: DynamoSubscriptionStore) -> None:
    """GAP-17: Idle subscriptions work (exclusivity still applies)."""
    store.put("idle", EventSubscription(event="Idle", workflow=StepsWorkflow.name))
    harness.engine.handle_idle("DEV")
    harness.engine.handle_idle("DEV")
    assert [s.event.flag for s in harness.rec.started if s.event] == [EventFlag.IDLE]


def test_idle_not_started_since(harness: Harness, store: DynamoSubscriptionStore) -> None:
    """ID-3, ID-5: never started starts at once; then only after event_context seconds; any start
    resets the clock; Authenticate clears it."""
    store.put(
        "inv",
        EventSubscription(event="IdleNotStartedSince", workflow=MultiWorkflow.name, event_context="3600"),
    )
    t0 = datetime.now(UTC)
    harness.engine.handle_idle("DEV", event_at=t0)
    assert len(harness.rec.started) == 1
    harness.engine.handle_idle("DEV", event_at=t0 + timedelta(minutes=30))
    assert len(harness.rec.started) == 1
    harness.engine.handle_idle("DEV", event_at=t0 + timedelta(minutes=61))
    assert len(harness.rec.started) == 2
    harness.engine.start_workflow(MultiWorkflow.name, ["DEV"])  # an API start resets the clock too
    harness.engine.handle_idle("DEV", event_at=datetime.now(UTC) + timedelta(minutes=59))
    assert len(harness.rec.started) == 3
    harness.engine.handle_checkin("DEV", CheckOut(MessageType="CheckOut", UDID="DEV"))
    harness.engine.handle_idle("DEV", event_at=datetime.now(UTC))
    assert len(harness.rec.started) == 4
    assert harness.rec.started[-1].event is not None
    assert harness.rec.started[-1].event.flag == EventFlag.IDLE_NOT_STARTED_SINCE


def test_a_failing_subscription_store_still_reaches_config_subscribers(harness: Harness) -> None:
    """EV-3."""

    class Broken:
        def by_event(self, flag: EventFlag) -> dict[str, EventSubscription]:
            raise RuntimeError("table unavailable")

    harness.engine.subscriptions = Broken()  # type: ignore[assignment]
    harness.engine.handle_idle("DEV")
    assert [e[0].flag for e in harness.rec.events] == [EventFlag.IDLE]
