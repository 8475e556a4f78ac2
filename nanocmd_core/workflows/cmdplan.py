"""``io.micromdm.wf.cmdplan.v1``: send a stored command plan — profiles, app manifests and
DeviceConfigured — typically on enrollment (workflows.md §5)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger

from nanocmd_core.subsystems.cmdplan.storage import CommandPlan, CommandPlanNotFoundError, CommandPlanStore
from nanocmd_core.subsystems.profile.store import ProfileNotFoundError, ProfileStore
from nanocmd_core.workflow import (
    Event,
    EventFlag,
    IncorrectContextTypeError,
    StepEnqueuer,
    StepResult,
    StepStart,
    StringContext,
    Workflow,
    WorkflowError,
)
from nanocmd_core.workflows.common import log_install_results

if TYPE_CHECKING:
    from nanocmd_core.mdm.commands import Command

NAME = "io.micromdm.wf.cmdplan.v1"

logger = Logger(service="nanocmd", child=True)

_SPECIAL = frozenset("*#$@!?-0123456789")


def _is_name_char(c: str) -> bool:
    return c == "_" or ("0" <= c <= "9") or ("a" <= c <= "z") or ("A" <= c <= "Z")


def _shell_name(s: str) -> tuple[str, int]:
    """The reference after a ``$`` and how many characters it spans (Go's ``getShellName``);
    an empty name with a non-zero width is invalid syntax whose characters are dropped."""
    if s[0] == "{":
        if len(s) > 2 and s[1] in _SPECIAL and s[2] == "}":
            return s[1], 3
        close = s.find("}", 1)
        if close == 1:
            return "", 2  # "${}"
        if close == -1:
            return "", 1  # "${" without "}"
        return s[1:close], close + 1
    if s[0] in _SPECIAL:
        return s[0], 1
    i = 0
    while i < len(s) and _is_name_char(s[i]):
        i += 1
    return s[:i], i


def resolve_reference(text: str, params: Mapping[str, str]) -> str:
    """``name[:fallback]``: the parameter if present (even empty), else the fallback, else ""."""
    name, sep, fallback = text.partition(":")
    if name in params:
        return params[name]
    return fallback if sep else ""


def expand(template: str, params: Mapping[str, str]) -> str:
    """Expand ``$name``, ``${name}`` and ``${name:fallback}`` from the MDM URL parameters,
    exactly as Go's ``os.Expand`` scans (workflows.md §5.3), so plan names written for the Go
    server resolve the same here. Scanning continues after an unclosed ``${`` (which is
    dropped), as in Go."""
    out: list[str] = []
    i = j = 0
    while j < len(template):
        if template[j] == "$" and j + 1 < len(template):
            out.append(template[i:j])
            name, width = _shell_name(template[j + 1 :])
            if name:
                out.append(resolve_reference(name, params))
            elif width == 0:
                out.append("$")  # not a reference: keep the dollar
            j += width
            i = j + 1
        j += 1
    out.append(template[i:])
    return "".join(out)


def device_configured_skip_reason(event: Event | None) -> str | None:
    """Why DeviceConfigured must not be sent, or None when the start came from an enrollment
    whose TokenUpdate awaits configuration (sending it otherwise would release a device from
    Setup Assistant too early, or do nothing)."""
    from nanocmd_core.mdm.checkin import TokenUpdate

    if event is None:
        return "empty event"
    if event.flag != EventFlag.ENROLLMENT:
        return f"event type mismatch: {event.name}"
    if not isinstance(event.data, TokenUpdate):
        return "event data type mismatch"
    if not event.data.awaiting_configuration:
        return "not awaiting configuration"
    return None


class CommandPlanWorkflow(Workflow):
    name = NAME

    def __init__(self, enqueuer: StepEnqueuer, plans: CommandPlanStore, profiles: ProfileStore) -> None:
        super().__init__(enqueuer)
        self.plans = plans
        self.profiles = profiles

    def context_codec(self, step_name: str) -> StringContext:
        return StringContext()

    def start(self, step: StepStart) -> None:
        if step.context is not None and not isinstance(step.context, str):
            raise IncorrectContextTypeError()
        if not step.context:
            raise WorkflowError("missing cmdplan name")
        params = step.mdm_context.params if step.mdm_context is not None else {}
        plan_name = expand(step.context, params)
        try:
            plan = self.plans.retrieve(plan_name)
        except CommandPlanNotFoundError as exc:
            raise WorkflowError(f"retrieving cmdplan: {exc}") from exc
        commands = self.commands_for(plan, step.event)
        if not commands:
            raise WorkflowError("no commands to queue")
        self.enqueue(step.new_step_enqueueing(*commands))

    def commands_for(self, plan: CommandPlan, event: Event | None) -> list[Command]:
        """Profiles (in list order), then app manifests, then DeviceConfigured if it applies."""
        from nanocmd_core.mdm.commands import DeviceConfigured, InstallApplication, InstallProfile

        commands: list[Command] = []
        if plan.profile_names:
            raw: dict[str, bytes] = {}
            try:
                for profile in dict.fromkeys(plan.profile_names):
                    raw[profile] = self.profiles.retrieve_raw(profile)
            except ProfileNotFoundError as exc:
                raise WorkflowError(f"creating commands from cmdplan: retrieving profiles: {exc}") from exc
            commands.extend(InstallProfile(payload=raw[profile]) for profile in plan.profile_names)
        commands.extend(
            InstallApplication(manifest_url=url, management_flags=1) for url in plan.manifest_urls or []
        )
        if plan.device_configured:
            reason = device_configured_skip_reason(event)
            if reason is None:
                commands.append(DeviceConfigured())
            else:
                logger.info("skipping DeviceConfigured", extra={"workflow": self.name, "reason": reason})
        return commands

    def step_completed(self, result: StepResult) -> None:
        log_install_results(self.name, result)
