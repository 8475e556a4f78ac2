"""Event subscriptions in DynamoDB: by name (key lookup) and by event (Query on ``gsi1``)."""

from __future__ import annotations

from pynamodb.exceptions import DeleteError

from nanocmd_core.engine.subscriptions import EventSubscription
from nanocmd_core.storage.models import SUBSCRIPTION, EventSubscriptionItem
from nanocmd_core.workflow.events import EVENT_NAMES, EventFlag

_SK = "SUB"
_EVENT_PREFIX = "SUBEVENT#"


def _from_item(item: EventSubscriptionItem) -> EventSubscription:
    return EventSubscription(
        event=item.event,
        workflow=item.workflow,
        context=item.context or "",
        event_context=item.event_context or "",
    )


class DynamoSubscriptionStore:
    def put(self, name: str, sub: EventSubscription) -> None:
        """Replaces the whole item, so optional fields left out are cleared (GAP-23)."""
        EventSubscriptionItem(
            SUBSCRIPTION + name,
            _SK,
            event=sub.event,
            workflow=sub.workflow,
            context=sub.context or None,
            event_context=sub.event_context or None,
            gsi1pk=_EVENT_PREFIX + sub.event,
            gsi1sk=0,
        ).save()

    def get(self, name: str) -> EventSubscription | None:
        try:
            return _from_item(EventSubscriptionItem.get(SUBSCRIPTION + name, _SK, consistent_read=True))
        except EventSubscriptionItem.DoesNotExist:
            return None

    def delete(self, name: str) -> bool:
        try:
            EventSubscriptionItem(SUBSCRIPTION + name, _SK).delete(
                condition=EventSubscriptionItem.pk.exists()
            )
        except DeleteError as exc:
            if getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def by_event(self, flag: EventFlag) -> dict[str, EventSubscription]:
        name = EVENT_NAMES.get(flag)
        if name is None:
            return {}
        keys = [(k.pk, k.sk) for k in EventSubscriptionItem.gsi1.query(_EVENT_PREFIX + name)]
        if not keys:
            return {}
        return {
            item.pk.removeprefix(SUBSCRIPTION): _from_item(item)
            for item in EventSubscriptionItem.batch_get(keys, consistent_read=True)
        }

    def all(self) -> dict[str, EventSubscription]:
        """Every subscription: one index Query per event type (seven), never a table scan."""
        found: dict[str, EventSubscription] = {}
        for flag in EVENT_NAMES:
            found.update(self.by_event(flag))
        return dict(sorted(found.items()))
