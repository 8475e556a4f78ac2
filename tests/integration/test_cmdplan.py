"""The command-plan store and routes on DynamoDB Local, and one run of the cmdplan and certprof
workflows each through the engine and a fake NanoMDM (subsystems.md §6, workflows.md §5-§6)."""

from __future__ import annotations

import json
import plistlib
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from infra.local.events import basic_auth, proxy_event
from infra.local.lambda_runtime import LambdaContext
from nanocmd_core.api.app import create_api
from nanocmd_core.config import Settings
from nanocmd_core.engine.engine import AlreadyStartedError, StartError
from nanocmd_core.mdm.checkin import TokenUpdate
from nanocmd_core.storage.models import bind_table
from nanocmd_core.subsystems.cmdplan import CommandPlan, CommandPlanNotFoundError, DynamoCommandPlanStore
from nanocmd_core.subsystems.cmdplan.http import cmdplan_routes
from nanocmd_core.workflow import Event, EventFlag, MDMContext
from nanocmd_core.workflows.certprof import CertProfWorkflow
from nanocmd_core.workflows.cmdplan import CommandPlanWorkflow
from tests.fakes.reports import error_report, report
from tests.fakes.stores import MemoryProfiles
from tests.support.engine import Harness, engine_harness

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "nanocmd"
CERTPROF_DATA = SHARED / "workflow" / "certprof" / "testdata"
API_KEY = "k"
CMDPLAN = "io.micromdm.wf.cmdplan.v1"
CERTPROF = "io.micromdm.wf.certprof.v1"


def profile(identifier: str, *strings: str) -> bytes:
    return plistlib.dumps(
        {
            "PayloadType": "Configuration",
            "PayloadVersion": 1,
            "PayloadIdentifier": identifier,
            "PayloadUUID": "7A1F0D5E-6B8C-4D2A-9E3F-1C2B3A4D5E6F",
            "PayloadContent": [
                {
                    "PayloadType": "com.apple.security.scep",
                    "PayloadVersion": 1,
                    "PayloadIdentifier": identifier + ".scep",
                    "PayloadUUID": "8B2E1F6A-7C9D-4E3B-8F4A-2D3C4B5E6F70",
                    "PayloadContent": {"URL": "https://scep.example/scep", "Subject": [list(strings)]},
                }
            ],
        }
    )


# --- the store and routes on DynamoDB --------------------------------------------------------


def test_dynamo_store_conformance(table_name: str) -> None:
    """subsystems.md §6.4, plus replace and the omission rules surviving the round trip."""
    bind_table(table_name)
    store = DynamoCommandPlanStore()
    plan = CommandPlan(profile_names=["hello"], manifest_urls=["gopher://example.com/1/news"])
    store.store("test1", plan)
    assert store.retrieve("test1") == plan and store.retrieve("test1").device_configured is None
    store.delete("test1")
    with pytest.raises(CommandPlanNotFoundError, match="key not found: test1"):
        store.retrieve("test1")
    store.delete("test1")
    store.store("p#1", CommandPlan(device_configured=False))
    store.store("p#1", CommandPlan(device_configured=False, manifest_urls=[]))
    assert store.retrieve("p#1").to_json() == {"device_configured": False}
    with pytest.raises(CommandPlanNotFoundError):
        store.retrieve("p")  # keys are exact, never prefixes


def call(resolver: Any, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
    event = proxy_event(method, path, auth=basic_auth("nanocmd", API_KEY), body=body)
    reply = resolver.resolve(event, LambdaContext("ApiFunction"))
    text = reply.get("body") or ""
    return reply["statusCode"], json.loads(text) if text else None


def test_routes_on_dynamo(table_name: str) -> None:
    bind_table(table_name)
    services = SimpleNamespace(cmdplans=DynamoCommandPlanStore())
    resolver = create_api(Settings(api_key_value=API_KEY), lambda: services, modules=[cmdplan_routes])
    assert call(resolver, "GET", "/v1/cmdplan/enroll") == (404, {"error": "key not found: enroll"})
    body = b'{"Profile_Names":["p1"],"manifest_urls":["https://x/m.plist"],"device_configured":true}'
    assert call(resolver, "PUT", "/v1/cmdplan/enroll", body) == (204, None)
    assert call(resolver, "GET", "/v1/cmdplan/enroll") == (
        200,
        {"profile_names": ["p1"], "manifest_urls": ["https://x/m.plist"], "device_configured": True},
    )
    status, reply = call(resolver, "PUT", "/v1/cmdplan/enroll", b'{"device_configured":1}')
    assert status == 400 and "device_configured" in reply["error"]
    assert call(resolver, "GET", "/v1/cmdplan/enroll")[0] == 200  # the bad PUT changed nothing


# --- the workflows on the engine -------------------------------------------------------------


@pytest.fixture
def harness(table_name: str) -> Iterator[Harness]:
    with engine_harness(table_name) as h:
        yield h


def request_types(h: Harness, enrollment_id: str) -> list[str]:
    return [c["Command"]["RequestType"] for c in h.sent(enrollment_id)]


def test_cmdplan_on_the_engine(harness: Harness) -> None:
    h = harness
    plans = DynamoCommandPlanStore()
    profiles = MemoryProfiles(wifi=profile("com.example.wifi"))
    h.engine.register(CommandPlanWorkflow(h.engine, plans, profiles))
    plans.store(
        "enroll_staff",
        CommandPlan(profile_names=["wifi"], manifest_urls=["https://x/app.plist"], device_configured=True),
    )
    token = TokenUpdate(UDID="D1", AwaitingConfiguration=True)
    result = h.engine.start_workflow(
        CMDPLAN,
        ["D1"],
        b"enroll_${group:default}",
        event=Event(EventFlag.ENROLLMENT, token),
        mdm_context=MDMContext({"group": "staff"}),
    )
    assert result.started_ids == ["D1"]
    assert request_types(h, "D1") == ["InstallProfile", "InstallApplication", "DeviceConfigured"]
    install, app, _ = h.sent("D1")
    assert install["Command"]["Payload"] == profiles.raw["wifi"]
    assert app["Command"] == {
        "RequestType": "InstallApplication",
        "ManifestURL": "https://x/app.plist",
        "ManagementFlags": 1,
    }
    with pytest.raises(AlreadyStartedError):
        h.engine.start_workflow(CMDPLAN, ["D1"], b"enroll_staff")

    uuids = h.uuids("D1")
    h.engine.handle_command_report("D1", uuids[0], report(uuids[0], "D1"))
    h.engine.handle_command_report("D1", uuids[1], error_report(uuids[1], "D1"))
    h.engine.handle_command_report("D1", uuids[2], report(uuids[2], "D1"))

    # the step ended (a failed install is only logged): the exclusive lock is free again, and
    # an API start (no event) of a plan that only has DeviceConfigured has nothing to send
    plans.store("only_configured", CommandPlan(device_configured=True))
    with pytest.raises(StartError, match="no commands to queue"):
        h.engine.start_workflow(CMDPLAN, ["D1"], b"only_configured")
    with pytest.raises(StartError, match="retrieving cmdplan: key not found: enroll_default"):
        h.engine.start_workflow(CMDPLAN, ["D1"], b"enroll_${group:default}")
    assert h.engine.start_workflow(CMDPLAN, ["D1"], b"enroll_staff").started_ids == ["D1"]
    assert request_types(h, "D1")[3:] == ["InstallProfile", "InstallApplication"]


def with_uuid(raw: bytes, command_uuid: str) -> bytes:
    doc = plistlib.loads(raw)
    doc["CommandUUID"] = command_uuid
    return plistlib.dumps(doc)


def test_certprof_on_the_engine(harness: Harness) -> None:
    """No matching certificate on the device → the profile goes out with its placeholders filled."""
    h = harness
    profiles = MemoryProfiles(scep=profile("com.example.scep", "CN", "%CN%"))
    h.engine.register(CertProfWorkflow(h.engine, profiles))
    context = b'{"profile":"scep","filter":{"cn_prefix":"device-"},"text_replacements":{"%CN%":"device-D2"}}'
    h.engine.start_workflow(CERTPROF, ["D2"], context)
    [listing] = h.sent("D2")
    assert listing["Command"] == {"RequestType": "CertificateList", "ManagedOnly": True}
    other = {"CommonName": "other", "IsIdentity": True, "Data": b"\x30\x00"}
    h.engine.handle_command_report(
        "D2", listing["CommandUUID"], report(listing["CommandUUID"], "D2", CertificateList=[other])
    )
    assert request_types(h, "D2") == ["CertificateList", "InstallProfile"]
    install = h.sent("D2")[1]
    payload = plistlib.loads(install["Command"]["Payload"])
    assert payload["PayloadContent"][0]["PayloadContent"]["Subject"] == [["CN", "device-D2"]]
    h.engine.handle_command_report("D2", install["CommandUUID"], report(install["CommandUUID"], "D2"))
    assert h.engine.start_workflow(CERTPROF, ["D2"], context).started_ids == ["D2"]  # it ended


def test_certprof_go_scenario_on_the_engine(harness: Harness) -> None:
    """workflows.md §6.7 with the shared test data, command UUIDs as the engine assigned them."""
    if not CERTPROF_DATA.is_dir():
        pytest.skip("shared certprof testdata not present")
    h = harness
    enrollment_id = "6362F867-FFF2-4EA6-905C-3C796DF4EF68"
    profiles = MemoryProfiles(scep=(CERTPROF_DATA / "scep.mobileconfig").read_bytes())
    h.engine.register(CertProfWorkflow(h.engine, profiles))
    context = (
        b'{"criteria":{"always_replace":true},"filter":{"cn_prefix":"?Error"},"profile":"scep",'
        b'"text_replacements":{"%CN%":"324429DE-46B4-4209-AF95-82D9D8942A0E",'
        b'"%CHAL%":"D6E71C89-4831-4B88-9F1F-83714D526C63"}}'
    )
    h.engine.start_workflow(CERTPROF, [enrollment_id], context)
    [listing] = h.sent(enrollment_id)
    cert_uuid = listing["CommandUUID"]
    raw = with_uuid((CERTPROF_DATA / "certlist.plist").read_bytes(), cert_uuid)
    h.engine.handle_command_report(enrollment_id, cert_uuid, raw)
    assert request_types(h, enrollment_id) == ["CertificateList", "InstallProfile"]
    install = h.sent(enrollment_id)[1]
    payload: bytes = install["Command"]["Payload"]
    assert plistlib.loads(payload)["PayloadIdentifier"] == "com.example.scep"
    assert b"<string>324429DE-46B4-4209-AF95-82D9D8942A0E</string>" in payload
    assert b"<string>D6E71C89-4831-4B88-9F1F-83714D526C63</string>" in payload
    ack = with_uuid((CERTPROF_DATA / "resp-ack.plist").read_bytes(), install["CommandUUID"])
    h.engine.handle_command_report(enrollment_id, install["CommandUUID"], ack)
    assert h.engine.start_workflow(CERTPROF, [enrollment_id], context).started_ids == [enrollment_id]
