"""Decisions of ``io.micromdm.wf.profile.v1`` (workflows.md §4) against an in-memory profile
store and engine stand-in. The engine round trip is in tests/integration/test_profile_workflow.py."""

from __future__ import annotations

import plistlib
from typing import Any

import pytest

from nanocmd_core.mdm.commands import InstallProfile, ProfileList, RemoveProfile
from nanocmd_core.mdm.responses import CommandResponse, parse_response
from nanocmd_core.subsystems.profile.storage import MemoryProfileStore
from nanocmd_core.workflow import (
    CommaListContext,
    Event,
    EventFlag,
    EventsNotSupportedError,
    IncorrectContextTypeError,
    StepResult,
    StepResultCommandLenMismatchError,
    StepStart,
    TimeoutNotUsedError,
    UnknownStepNameError,
    WorkflowError,
)
from nanocmd_core.workflows.profile import NAME, ProfileWorkflow, desired_states
from tests.fakes.reports import error_report, report
from tests.fakes.stores import Enqueued
from tests.unit.subsystems.profile.profile_fixtures import profile_xml


@pytest.fixture
def store() -> MemoryProfileStore:
    profiles = MemoryProfileStore()
    profiles.store("dock", profile_xml("com.example.dock", "DOCK-1"))
    profiles.store("wifi", profile_xml("com.example.wifi", "WIFI-1"))
    profiles.store("old", profile_xml("com.example.old", "OLD-1"))
    return profiles


@pytest.fixture
def wf(store: MemoryProfileStore) -> tuple[ProfileWorkflow, Enqueued]:
    enqueued = Enqueued()
    return ProfileWorkflow(enqueued, store), enqueued


def listing(*items: tuple[str, str], status: str = "Acknowledged") -> CommandResponse:
    raw = report(
        "L",
        "DEV",
        status,
        ProfileList=[{"PayloadIdentifier": i, "PayloadUUID": u, "PayloadVersion": 1} for i, u in items],
    )
    return parse_response("ProfileList", raw)


def list_result(context: Any, *responses: CommandResponse, name: str = "list") -> StepResult:
    return StepResult(instance_id="I", id="DEV", name=name, context=context, command_results=list(responses))


def test_desired_states_last_wins_and_one_dash_is_stripped() -> None:
    states = desired_states(["a", "-b", "--c", "-a", "b"])
    assert [(n, s.value) for n, s in states.items()] == [("a", "remove"), ("b", "install"), ("-c", "remove")]


def test_codecs_per_step(wf: Any) -> None:
    workflow, _ = wf
    assert isinstance(workflow.context_codec(""), CommaListContext)
    assert isinstance(workflow.context_codec("list"), CommaListContext)
    assert workflow.context_codec("install") is None
    assert workflow.config is None  # exclusive, engine-default timeout


def test_start_sends_one_profile_list_to_all_ids(wf: Any) -> None:
    workflow, enqueued = wf
    workflow.start(StepStart(instance_id="I", ids=["A", "B"], context=["dock", "-old"]))
    [(name, step)] = enqueued.steps
    assert name == NAME and step.name == "list" and step.ids == ["A", "B"]
    assert step.context == ["dock", "-old"]
    [command] = step.commands
    assert isinstance(command, ProfileList) and command.managed_only is True
    assert plistlib.loads(command.to_plist())["Command"] == {
        "RequestType": "ProfileList",
        "ManagedOnly": True,
    }


@pytest.mark.parametrize("context", [[], None])
def test_start_without_names(wf: Any, context: Any) -> None:
    workflow, enqueued = wf
    with pytest.raises(WorkflowError, match=r"^no managed profiles supplied in context$"):
        workflow.start(StepStart(instance_id="I", ids=["A"], context=context))
    assert enqueued.steps == []


@pytest.mark.parametrize("context", [["dock", "nope"], ["-nope"], ["dock", ""]])
def test_start_with_unknown_profile(wf: Any, context: list[str]) -> None:
    workflow, enqueued = wf
    missing = context[-1].removeprefix("-")
    with pytest.raises(WorkflowError, match=f"^retrieving profile info: profile not found: {missing}$"):
        workflow.start(StepStart(instance_id="I", ids=["A"], context=context))
    assert enqueued.steps == []


def test_list_installs_missing_and_changed_removes_present(wf: Any, store: MemoryProfileStore) -> None:
    workflow, enqueued = wf
    device = listing(
        ("com.example.wifi", "WIFI-0"),  # an older version: re-install
        ("com.example.old", "OLD-7"),  # any UUID: remove by identifier
        ("com.other", "X"),
    )
    workflow.step_completed(list_result(["dock", "wifi", "-old"], device))
    [(name, step)] = enqueued.steps
    assert name == NAME and step.name == "install" and step.ids == ["DEV"] and step.context is None
    dock, wifi, old = step.commands
    assert isinstance(dock, InstallProfile) and dock.payload == store.retrieve_raw("dock")
    assert isinstance(wifi, InstallProfile) and wifi.payload == store.retrieve_raw("wifi")
    assert isinstance(old, RemoveProfile) and old.identifier == "com.example.old"
    assert len({c.command_uuid for c in step.commands}) == 3


def test_list_keeps_scanning_for_a_matching_uuid(wf: Any) -> None:
    workflow, enqueued = wf
    device = listing(("com.example.dock", "DOCK-0"), ("com.example.dock", "DOCK-1"))
    workflow.step_completed(list_result(["dock"], device))
    assert enqueued.steps == []


def test_nothing_sent_when_already_in_the_desired_state(wf: Any) -> None:
    workflow, enqueued = wf
    device = listing(("com.example.dock", "DOCK-1"), ("com.example.wifi", "WIFI-1"))
    workflow.step_completed(list_result(["dock", "wifi", "-old"], device))
    assert enqueued.steps == []


def test_comparison_is_case_sensitive(wf: Any) -> None:
    workflow, enqueued = wf
    workflow.step_completed(
        list_result(["dock", "-old"], listing(("com.example.dock", "dock-1"), ("COM.example.old", "OLD-1")))
    )
    [(_, step)] = enqueued.steps
    assert [type(c) for c in step.commands] == [InstallProfile]


def test_reupload_between_steps_is_seen(wf: Any, store: MemoryProfileStore) -> None:
    workflow, enqueued = wf
    workflow.start(StepStart(instance_id="I", ids=["DEV"], context=["dock"]))
    store.store("dock", profile_xml("com.example.dock", "DOCK-2"))
    workflow.step_completed(list_result(["dock"], listing(("com.example.dock", "DOCK-1"))))
    [_, (_, step)] = enqueued.steps
    [command] = step.commands
    assert isinstance(command, InstallProfile) and b"DOCK-2" in command.payload


def test_profile_deleted_between_steps(wf: Any, store: MemoryProfileStore) -> None:
    workflow, enqueued = wf
    store.delete("wifi")
    with pytest.raises(WorkflowError, match=r"^retrieving profile info: profile not found: wifi$"):
        workflow.step_completed(list_result(["dock", "wifi"], listing()))
    assert enqueued.steps == []


def test_list_rejects_wrong_shapes(wf: Any) -> None:
    workflow, enqueued = wf
    with pytest.raises(StepResultCommandLenMismatchError):
        workflow.step_completed(list_result(["dock"]))
    with pytest.raises(StepResultCommandLenMismatchError):
        workflow.step_completed(list_result(["dock"], listing(), listing()))
    with pytest.raises(WorkflowError, match=r"^incorrect command type: not a profile list$"):
        workflow.step_completed(list_result(["dock"], parse_response("SecurityInfo", report("S", "DEV"))))
    with pytest.raises(
        WorkflowError, match=r"^validating profile list: MDM error for status Error: The MDM command failed"
    ):
        workflow.step_completed(
            list_result(["dock"], parse_response("ProfileList", error_report("L", "DEV")))
        )
    with pytest.raises(IncorrectContextTypeError):
        workflow.step_completed(list_result("dock", listing()))
    with pytest.raises(UnknownStepNameError, match=r"^unknown step name: other$"):
        workflow.step_completed(list_result(None, listing(), name="other"))
    assert enqueued.steps == []


def test_install_results_are_logged_and_end_the_workflow(wf: Any) -> None:
    workflow, enqueued = wf
    done = StepResult(
        instance_id="I",
        id="DEV",
        name="install",
        command_results=[
            parse_response("InstallProfile", report("A", "DEV")),
            parse_response("RemoveProfile", error_report("B", "DEV")),
        ],
    )
    workflow.step_completed(done)  # no error: the workflow ends
    assert enqueued.steps == []


def test_timeouts_and_events_are_not_used(wf: Any) -> None:
    workflow, _ = wf
    with pytest.raises(TimeoutNotUsedError):
        workflow.step_timeout(list_result(["dock"]))
    with pytest.raises(EventsNotSupportedError):
        workflow.event(Event(EventFlag.IDLE), "DEV", None)
