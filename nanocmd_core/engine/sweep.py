"""The periodic sweep: what is due or was lost, found through the sparse indexes."""

from __future__ import annotations

from datetime import datetime, timedelta

from aws_lambda_powertools import Logger

from nanocmd_core.engine.errors import EngineError
from nanocmd_core.engine.reports import step_outcome
from nanocmd_core.engine.send import SendMixin
from nanocmd_core.engine.types import SweepReport
from nanocmd_core.storage.engine_store import (
    TargetState,
)
from nanocmd_core.workflow.errors import WorkflowError

logger = Logger(service="nanocmd", child=True)


class SweepMixin(SendMixin):
    """The sweeper (§3): overdue delayed sends, step timeouts, lost deliveries, re-pushes."""

    def sweep(self, now: datetime | None = None) -> SweepReport:
        """One pass of the worker: step timeouts (WK-6..9), and completions whose delivery died."""
        now = now or self.clock()
        report = SweepReport()
        for step_id in self.store.due_delayed(now):  # WK-2 phase 1: overdue delayed steps
            try:
                report.sent += self.send_delayed_step(step_id, now)
            except Exception:
                logger.exception("sending a delayed step failed", extra={"step_id": step_id})
                report.failed += 1
        for enrollment_id, step_id in self.store.due_timeouts(now):
            state = self.store.claim_timeout(enrollment_id, step_id, self.clock())
            if state is not None:
                outcome = self._deliver_timeout(state)
                report.timed_out += outcome
                report.failed += 1 - outcome
                continue
            state = self.store.claim_stuck_completion(enrollment_id, step_id, self.clock())
            if state is not None:
                try:
                    self._deliver_claimed_completion(state)
                    report.redelivered += 1
                except Exception:
                    logger.exception(
                        "redelivering a completed step failed",
                        extra={
                            "workflow": state.workflow,
                            "instance_id": state.instance_id,
                            "step_name": state.step_name,
                            "enrollment_id": enrollment_id,
                        },
                    )
                    report.failed += 1
        if self.repush_interval > 0:  # WK-2 phase 3; 0 disables (GAP-29)
            report.repushed = self.repush(now)
        if report.sent or report.timed_out or report.redelivered or report.failed or report.repushed:
            logger.info(
                "sweep",
                extra={
                    "sent": report.sent,
                    "repushed": report.repushed,
                    "timed_out": report.timed_out,
                    "redelivered": report.redelivered,
                    "failed": report.failed,
                },
            )
        return report

    def repush(self, now: datetime) -> int:
        """WK-10..13: one APNs push per id whose commands waited a re-push interval with neither a
        push nor a report. A push the MDM server refuses is logged; the clock still moved."""
        ids = self.store.claim_repushes(now - timedelta(seconds=self.repush_interval), now)
        if not ids:
            return 0
        self.telemetry.count("RePushes", len(ids))
        for reply in self.mdm.push(ids):
            if not reply.ok:
                logger.error(
                    "re-push refused by the MDM server",
                    extra={
                        "enrollment_ids": reply.failed_ids or reply.ids,
                        "status": reply.status,
                        "detail": reply.detail,
                    },
                )
        return len(ids)

    def _deliver_timeout(self, state: TargetState) -> int:
        """StepTimeout once for this (step, id), with the reports that did arrive (NotNow included,
        GAP-25). Returns 1 when delivered (or dropped for good), 0 when it will be retried."""
        log = {
            "workflow": state.workflow,
            "instance_id": state.instance_id,
            "step_name": state.step_name,
            "enrollment_id": state.enrollment_id,
        }
        workflow = self.registry.get(state.workflow)
        if workflow is None:  # WK-7: nobody to tell; drop it rather than retry forever
            logger.error("timed-out step of an unregistered workflow dropped", extra=log)
            if state.outcome_tracked and self.instances is not None:
                self.instances.end_outcome(
                    state.instance_id,
                    state.enrollment_id,
                    "timed_out",
                    self.clock(),
                    "workflow not registered",
                )
            self.store.delete_target(state)
            return 1
        try:
            result = self._step_result(workflow, state, {}, None)
        except Exception as exc:
            logger.error("cannot build timed-out step result; step dropped", extra={**log, "error": str(exc)})
            self._finish(workflow, state, set(), "errored", f"step result: {exc}")
            return 1
        with self._tracking_enqueues(state.outcome_tracked, state.prior_error) as scope:
            try:
                workflow.step_timeout(result)
            except WorkflowError as exc:  # WK-8 (TimeoutNotUsed included)
                logger.info(
                    "workflow step timeout handler returned an error", extra={**log, "error": str(exc)}
                )
            except Exception:
                logger.exception("workflow step timeout handler failed; a later sweep retries", extra=log)
                return 0
        self._finish(workflow, state, scope.enqueued, "timed_out")
        self.telemetry.count("StepsTimedOut")
        logger.info("step timed out", extra=log)
        return 1

    def _deliver_claimed_completion(self, state: TargetState) -> None:
        workflow = self.registry.get(state.workflow)
        if workflow is None:
            raise EngineError(f"workflow not registered: {state.workflow}")
        result = self._step_result(workflow, state, {}, None)
        outcome, error = step_outcome(result.command_results)
        with self._tracking_enqueues(state.outcome_tracked, error or state.prior_error) as scope:
            try:
                workflow.step_completed(result)
            except WorkflowError as exc:
                outcome, error = "errored", f"workflow: {exc}"
                logger.error(
                    "workflow step completed with an error",
                    extra={
                        "workflow": state.workflow,
                        "enrollment_id": state.enrollment_id,
                        "error": str(exc),
                    },
                )
        self._finish(workflow, state, scope.enqueued, outcome, error)
