"""``io.micromdm.wf.profile.v1``: bring named profiles to the desired state on a device
(workflows.md §4).

The start context is a comma list of profile names; a name with one leading ``-`` is to be
removed. The workflow asks the device for its managed profiles first (step ``list``), so it only
sends what is needed: InstallProfile for profiles missing or with another UUID, RemoveProfile for
``-names`` the device has. Nothing is kept in memory between steps (WF-1): the names travel in the
step context and the store is read again on completion, so a re-upload in between is seen.
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger

from nanocmd_core.mdm.errors import MDMResponseError
from nanocmd_core.subsystems.profile.store import ProfileInfo, ProfileNotFoundError, ProfileStore
from nanocmd_core.workflow import (
    CommaListContext,
    ContextCodec,
    IncorrectContextTypeError,
    StepEnqueuer,
    StepResult,
    StepResultCommandLenMismatchError,
    StepStart,
    UnknownStepNameError,
    Workflow,
    WorkflowError,
)
from nanocmd_core.workflows.common import log_install_results

if TYPE_CHECKING:
    from nanocmd_core.mdm.commands import InstallProfile, RemoveProfile
    from nanocmd_core.mdm.responses import ProfileListItem

logger = Logger(service="nanocmd", child=True)

NAME = "io.micromdm.wf.profile.v1"
STEP_LIST = "list"
STEP_INSTALL = "install"


class Desired(Enum):
    INSTALL = "install"
    REMOVE = "remove"


def desired_states(items: list[str]) -> dict[str, Desired]:
    """Name → desired state, in first-seen order; exactly one leading ``-`` means remove, and a
    name given twice takes its last state (workflows.md §4.3)."""
    states: dict[str, Desired] = {}
    for item in items:
        if item.startswith("-"):
            states[item[1:]] = Desired.REMOVE
        else:
            states[item] = Desired.INSTALL
    return states


def diff(
    states: dict[str, Desired], infos: dict[str, ProfileInfo], installed: list[ProfileListItem]
) -> tuple[list[str], list[str]]:
    """(names to install, names to remove), in context order (workflows.md §4.4 step 5).

    A name to install is skipped only when the device has an item with the same identifier and
    UUID; one to remove is removed when the device has an item with its identifier."""
    to_install: list[str] = []
    to_remove: list[str] = []
    for name, state in states.items():
        info = infos[name]
        same_identifier = [i for i in installed if i.payload_identifier == info.identifier]
        if state is Desired.REMOVE:
            if same_identifier:
                to_remove.append(name)
        elif not any(i.payload_uuid == info.uuid for i in same_identifier):
            to_install.append(name)
    return to_install, to_remove


class ProfileWorkflow(Workflow):
    name = NAME

    def __init__(self, enqueuer: StepEnqueuer, profiles: ProfileStore) -> None:
        super().__init__(enqueuer)
        self.profiles = profiles

    def context_codec(self, step_name: str) -> ContextCodec[Any] | None:
        return CommaListContext() if step_name in ("", STEP_LIST) else None

    def _infos(self, states: dict[str, Desired]) -> dict[str, ProfileInfo]:
        """Every named profile's identifier and UUID; removals need theirs too."""
        infos = self.profiles.retrieve_infos(list(states))
        for name in states:
            if name not in infos:
                raise WorkflowError(f"retrieving profile info: {ProfileNotFoundError(name)}")
        return infos

    def start(self, step: StepStart) -> None:
        from nanocmd_core.mdm.commands import ProfileList

        items = step.context if isinstance(step.context, list) else []
        if not items:
            raise WorkflowError("no managed profiles supplied in context")
        self._infos(desired_states(items))
        self.enqueue(step.new_step_enqueueing(ProfileList(managed_only=True), name=STEP_LIST, context=items))

    def step_completed(self, result: StepResult) -> None:
        if result.name == STEP_LIST:
            self._listed(result)
        elif result.name == STEP_INSTALL:
            self._installed(result)
        else:
            raise UnknownStepNameError(result.name)

    def _listed(self, result: StepResult) -> None:
        from nanocmd_core.mdm.commands import InstallProfile, RemoveProfile
        from nanocmd_core.mdm.responses import ProfileListResponse

        if len(result.command_results) != 1:
            raise StepResultCommandLenMismatchError()
        listing = result.command_results[0]
        if not isinstance(listing, ProfileListResponse):
            raise WorkflowError("incorrect command type: not a profile list")
        try:
            listing.validate_status()
        except MDMResponseError as exc:
            raise WorkflowError(f"validating profile list: {exc}") from exc
        if not isinstance(result.context, list) or not all(isinstance(i, str) for i in result.context):
            raise IncorrectContextTypeError()
        states = desired_states(result.context)
        infos = self._infos(states)
        to_install, to_remove = diff(states, infos, listing.profile_list)
        try:
            commands: list[InstallProfile | RemoveProfile] = [
                InstallProfile(payload=self.profiles.retrieve_raw(name)) for name in to_install
            ]
        except ProfileNotFoundError as exc:  # deleted since the infos were read
            raise WorkflowError(f"retrieving raw profiles: {exc}") from exc
        commands += [RemoveProfile(identifier=infos[name].identifier) for name in to_remove]
        if not commands:
            logger.info(
                "no profiles to install or remove after profile list",
                extra={"instance_id": result.instance_id, "enrollment_id": result.id},
            )
            return
        logger.info(
            "installing and removing profiles",
            extra={
                "instance_id": result.instance_id,
                "enrollment_id": result.id,
                "install": to_install,
                "remove": to_remove,
            },
        )
        self.enqueue(result.new_step_enqueueing(*commands, name=STEP_INSTALL))

    def _installed(self, result: StepResult) -> None:
        """Log the outcome; the workflow ends either way (workflows.md §4.5)."""
        log_install_results(self.name, result)
