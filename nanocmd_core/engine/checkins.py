"""Check-ins, idle and events: what they cancel, and whom they start or tell."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger

from nanocmd_core.engine.cancel import CancelMixin
from nanocmd_core.engine.errors import AlreadyStartedError
from nanocmd_core.engine.fleet_start import FleetStartMixin
from nanocmd_core.engine.subscriptions import EventSubscription
from nanocmd_core.workflow.events import Event, EventFlag
from nanocmd_core.workflow.step import MDMContext

if TYPE_CHECKING:  # the check-in models are imported when a check-in comes (issue 14: cold starts)
    from nanocmd_core.mdm.checkin import CheckinMessage

logger = Logger(service="nanocmd", child=True)


class CheckinsMixin(FleetStartMixin, CancelMixin):
    """Check-ins and idle (§2.5, §2.6): resets, events, subscription starts."""

    def handle_checkin(
        self, enrollment_id: str, message: CheckinMessage, mdm_context: MDMContext | None = None
    ) -> None:
        from nanocmd_core.mdm.checkin import Authenticate, CheckOut, TokenUpdate

        if isinstance(message, Authenticate | CheckOut):
            removed = self.reset_enrollment(enrollment_id, type(message).__name__)  # CI-1, GAP-4 fixed
            logger.info(
                "enrollment reset: steps cancelled",
                extra={
                    "enrollment_id": enrollment_id,
                    "message_type": type(message).__name__,
                    "items": removed,
                },
            )
            flags = [EventFlag.AUTHENTICATE if isinstance(message, Authenticate) else EventFlag.CHECK_OUT]
        elif isinstance(message, TokenUpdate):
            flags = [EventFlag.TOKEN_UPDATE] + ([EventFlag.ENROLLMENT] if message.enrolling else [])
        else:
            return
        for flag in flags:  # CI-3: one after the other
            self.dispatch_event(Event(flag, message), enrollment_id, mdm_context)

    def handle_idle(
        self, enrollment_id: str, mdm_context: MDMContext | None = None, event_at: datetime | None = None
    ) -> None:
        """ID-1..5: Idle to its subscribers, then IdleNotStartedSince subscriptions whose workflow
        was last started for this id more than ``event_context`` seconds before ``event_at``."""
        self.dispatch_event(Event(EventFlag.IDLE), enrollment_id, mdm_context)
        event_at = event_at or self.clock()
        for name, sub in self._user_subscriptions(EventFlag.IDLE_NOT_STARTED_SINCE).items():
            try:
                last = self.store.last_started(enrollment_id, sub.workflow)
            except Exception as exc:
                logger.warning(
                    "reading the last start failed", extra={"subscription": name, "error": str(exc)}
                )
                continue
            if last is not None and event_at <= last + timedelta(seconds=sub.idle_seconds):
                continue
            self._start_for_subscription(
                name, sub, Event(EventFlag.IDLE_NOT_STARTED_SINCE), enrollment_id, mdm_context
            )

    def dispatch_event(self, event: Event, enrollment_id: str, mdm_context: MDMContext | None) -> None:
        """EV-1 user subscriptions start their workflow; EV-2 workflows subscribed in their config
        get ``event``. Errors are logged only (CI-5)."""
        for name, sub in self._user_subscriptions(event.flag).items():
            self._start_for_subscription(name, sub, event, enrollment_id, mdm_context)
        for workflow in self.registry.event_workflows(event.flag):
            self._call_event(workflow, event, enrollment_id, mdm_context)

    def _user_subscriptions(self, flag: EventFlag) -> dict[str, EventSubscription]:
        if self.subscriptions is None:
            return {}
        try:
            return self.subscriptions.by_event(flag)
        except Exception as exc:  # EV-3: config subscribers still get the event
            logger.warning(
                "loading event subscriptions failed", extra={"event": flag.name, "error": str(exc)}
            )
            return {}

    def _start_for_subscription(
        self,
        name: str,
        sub: EventSubscription,
        event: Event,
        enrollment_id: str,
        mdm_context: MDMContext | None,
    ) -> None:
        log = {
            "subscription": name,
            "workflow": sub.workflow,
            "event": event.name,
            "enrollment_id": enrollment_id,
        }
        try:
            result = self.start_workflow(
                sub.workflow, [enrollment_id], sub.context.encode(), event, mdm_context, started_by=name
            )
        except AlreadyStartedError:
            logger.debug("subscription start skipped: workflow already running", extra=log)
            return
        except Exception as exc:
            logger.warning("subscription start failed", extra={**log, "error": str(exc)})
            return
        logger.info("workflow started by subscription", extra={**log, "instance_id": result.instance_id})
