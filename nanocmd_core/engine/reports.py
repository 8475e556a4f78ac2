"""Command reports: routing each back to its step and delivering completed steps."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager

from aws_lambda_powertools import Logger

from nanocmd_core.engine.core import EngineCore
from nanocmd_core.engine.errors import EngineError
from nanocmd_core.mdm.responses import CommandResponse, parse_response
from nanocmd_core.storage.engine_store import (
    TargetState,
)
from nanocmd_core.workflow.errors import WorkflowError
from nanocmd_core.workflow.events import Event, EventFlag
from nanocmd_core.workflow.step import MDMContext

logger = Logger(service="nanocmd", child=True)

ERROR_STATUSES = frozenset({"Error", "CommandFormatError"})


def describe_error(response: CommandResponse) -> str:
    """The device's error chain, last to first, as the Go workflows render it."""
    chain = response.error_chain or []
    return ": ".join(item.describe() for item in reversed(chain)) or response.status


def step_outcome(results: Iterable[CommandResponse]) -> tuple[str, str]:
    """``errored`` (with the first error) when a command of the step ended in an error."""
    for response in results:
        if response.status in ERROR_STATUSES:
            return (
                "errored",
                f"{response.request_type or 'command'} {response.status}: {describe_error(response)}",
            )
    return "completed", ""


class ReportsMixin(EngineCore):
    """Command reports (§2.4): route each to its step; deliver the step when it is complete."""

    def reports_ahead(self, pairs: Iterable[tuple[str, str]]) -> AbstractContextManager[None]:
        """Around a batch of events: the (enrollment id, command UUID) of the reports in it,
        looked up together (one DynamoDB call for the batch instead of one per report)."""
        return self.store.prefetched_commands(pairs)

    def handle_command_report(
        self, enrollment_id: str, command_uuid: str, raw_report: bytes, mdm_context: MDMContext | None = None
    ) -> None:
        tracked = self.store.lookup_command(enrollment_id, command_uuid)
        if tracked is None:  # CR-2: not ours, or its step already ended
            self.telemetry.count("UntrackedReports")
            logger.debug(
                "untracked command report",
                extra={"enrollment_id": enrollment_id, "command_uuid": command_uuid},
            )
            return
        step_id, request_type, canonical = tracked
        response = parse_response(request_type, raw_report)  # CR-3
        self.telemetry.count("CommandReports", status=response.status)
        if response.command_uuid and response.command_uuid != command_uuid:  # GAP-24
            logger.warning(
                "report CommandUUID differs from the webhook's; using the webhook's",
                extra={
                    "enrollment_id": enrollment_id,
                    "command_uuid": command_uuid,
                    "report_command_uuid": response.command_uuid,
                },
            )

        self._dispatch_all_command_response(request_type, response, enrollment_id, mdm_context)  # CR-5

        state = self.store.record_report(
            enrollment_id, step_id, canonical, raw_report, response.completed, self.clock()
        )  # CR-4, CR-6, CR-7
        if response.status in ERROR_STATUSES:  # nanocmd #5: every command error is visible
            logger.error(
                "device reported a command error",
                extra={
                    "workflow": state.workflow if state else None,
                    "instance_id": state.instance_id if state else None,
                    "step_name": state.step_name if state else None,
                    "enrollment_id": enrollment_id,
                    "command_uuid": command_uuid,
                    "request_type": request_type,
                    "status": response.status,
                    "error_chain": describe_error(response),
                },
            )
        if state is None or not (response.completed and state.complete):
            return  # CR-8
        self._deliver_completion(state, canonical, response, mdm_context)

    def _deliver_completion(
        self, state: TargetState, command_uuid: str, current: CommandResponse, mdm_context: MDMContext | None
    ) -> None:
        log = {
            "workflow": state.workflow,
            "instance_id": state.instance_id,
            "step_name": state.step_name,
            "enrollment_id": state.enrollment_id,
            "command_uuid": command_uuid,
        }
        workflow = self.registry.get(state.workflow)
        if workflow is None:  # CR-9, but recoverable: the step stays tracked for a retry
            self.store.reopen(state.enrollment_id, state.step_id, command_uuid)
            raise EngineError(f"workflow not registered: {state.workflow}")
        try:
            result = self._step_result(workflow, state, {command_uuid: current}, mdm_context)
        except Exception as exc:
            # a stored report or context that does not decode will not decode on a retry either
            logger.error("cannot build step result; step dropped", extra={**log, "error": str(exc)})
            self._finish(workflow, state, set(), "errored", f"step result: {exc}")
            return
        outcome, error = step_outcome(result.command_results)
        with self._tracking_enqueues(state.outcome_tracked, error or state.prior_error) as scope:
            try:
                workflow.step_completed(result)  # CR-12
            except WorkflowError as exc:
                # the workflow looked at the result and rejected it: that is an outcome, not a
                # failure to deliver, so the step ends here (as in Go, minus the lost result)
                logger.error("workflow step completed with an error", extra={**log, "error": str(exc)})
                outcome, error = "errored", f"workflow: {exc}"
            except Exception:
                # unexpected failure: keep the result so the queue's retry delivers it again (GAP-6)
                self.store.reopen(state.enrollment_id, state.step_id, command_uuid)
                raise
        self._finish(workflow, state, scope.enqueued, outcome, error)
        self.telemetry.count("StepsCompleted")
        logger.info("step completed", extra=log)

    def _dispatch_all_command_response(
        self, request_type: str, response: CommandResponse, enrollment_id: str, mdm_context: MDMContext | None
    ) -> None:
        event = Event(EventFlag.ALL_COMMAND_RESPONSE, response)
        for workflow in self.registry.all_response_workflows(request_type):
            self._call_event(workflow, event, enrollment_id, mdm_context)
