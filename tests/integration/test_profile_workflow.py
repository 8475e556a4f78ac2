"""``io.micromdm.wf.profile.v1`` end to end on the engine: DynamoDB Local for the engine and the
profile store, a fake NanoMDM receiving the commands (workflows.md §4)."""

from __future__ import annotations

import plistlib
from collections.abc import Iterator

import pytest

from nanocmd_core.engine.engine import AlreadyStartedError, StartError
from nanocmd_core.subsystems.profile.storage import DynamoProfileStore
from nanocmd_core.workflows.profile import NAME, ProfileWorkflow
from tests.fakes.reports import report
from tests.support.engine import Harness, engine_harness
from tests.unit.subsystems.profile.profile_fixtures import profile_binary, profile_xml

DEVICE = "PROFILE-DEVICE-1"


@pytest.fixture
def harness(table_name: str) -> Iterator[tuple[Harness, DynamoProfileStore]]:
    with engine_harness(table_name) as h:
        profiles = DynamoProfileStore()
        h.engine.register(ProfileWorkflow(h.engine, profiles))
        yield h, profiles


def profile_list_report(command_uuid: str, *items: tuple[str, str]) -> bytes:
    listed = [{"PayloadIdentifier": i, "PayloadUUID": u, "PayloadVersion": 1} for i, u in items]
    return report(command_uuid, DEVICE, ProfileList=listed)


def test_install_and_remove_after_profile_list(harness: tuple[Harness, DynamoProfileStore]) -> None:
    h, profiles = harness
    dock = profile_xml("com.example.dock", "DOCK-1")
    profiles.store("dock", dock)
    profiles.store("wifi", profile_binary("com.example.wifi", "WIFI-1"))
    profiles.store("old", profile_xml("com.example.old", "OLD-1"))

    h.engine.start_workflow(NAME, [DEVICE], b"dock,wifi,-old")
    [listing] = h.sent(DEVICE)
    assert listing["Command"] == {"RequestType": "ProfileList", "ManagedOnly": True}

    h.engine.handle_command_report(
        DEVICE,
        listing["CommandUUID"],
        profile_list_report(
            listing["CommandUUID"], ("com.example.wifi", "WIFI-1"), ("com.example.old", "OLD-0")
        ),
    )
    install, remove = h.sent(DEVICE)[1:]
    assert install["Command"] == {"RequestType": "InstallProfile", "Payload": dock}
    assert remove["Command"] == {"RequestType": "RemoveProfile", "Identifier": "com.example.old"}

    # the workflow holds its lock until the install step is answered
    with pytest.raises(AlreadyStartedError):
        h.engine.start_workflow(NAME, [DEVICE], b"dock")
    for command in (install, remove):
        h.engine.handle_command_report(DEVICE, command["CommandUUID"], report(command["CommandUUID"], DEVICE))
    h.engine.start_workflow(NAME, [DEVICE], b"dock")  # ended: startable again
    assert h.sent(DEVICE)[-1]["Command"]["RequestType"] == "ProfileList"


def test_nothing_to_do_ends_the_workflow(harness: tuple[Harness, DynamoProfileStore]) -> None:
    h, profiles = harness
    profiles.store("dock", profile_xml("com.example.dock", "DOCK-1"))
    h.engine.start_workflow(NAME, [DEVICE], b"dock,-dock,dock")
    [listing] = h.sent(DEVICE)
    h.engine.handle_command_report(
        DEVICE,
        listing["CommandUUID"],
        profile_list_report(listing["CommandUUID"], ("com.example.dock", "DOCK-1")),
    )
    assert len(h.sent(DEVICE)) == 1
    h.engine.start_workflow(NAME, [DEVICE], b"dock")
    assert len(h.sent(DEVICE)) == 2


def test_start_errors_reach_the_caller(harness: tuple[Harness, DynamoProfileStore]) -> None:
    h, _ = harness
    with pytest.raises(StartError, match="no managed profiles supplied in context"):
        h.engine.start_workflow(NAME, [DEVICE], b"")
    with pytest.raises(StartError, match="retrieving profile info: profile not found: nope"):
        h.engine.start_workflow(NAME, [DEVICE], b"nope")
    assert h.sent(DEVICE) == []


def test_command_plist_carries_the_profile_as_data(harness: tuple[Harness, DynamoProfileStore]) -> None:
    """InstallProfile's Payload is <data> holding the stored bytes (workflows.md §1.4)."""
    h, profiles = harness
    raw = profile_binary("com.example.bin", "BIN-1")
    profiles.store("bin", raw)
    h.engine.start_workflow(NAME, [DEVICE], b"bin")
    [listing] = h.sent(DEVICE)
    h.engine.handle_command_report(
        DEVICE, listing["CommandUUID"], profile_list_report(listing["CommandUUID"])
    )
    [_, install] = h.sent(DEVICE)
    assert isinstance(install["Command"]["Payload"], bytes) and install["Command"]["Payload"] == raw
    assert plistlib.loads(install["Command"]["Payload"])["PayloadUUID"] == "BIN-1"
