"""What the end-to-end tests do over HTTP, as NanoMDM and an admin's scripts would: call the API,
post webhooks, wait for an outcome, read the fake MDM server's commands, answer as a device."""

from __future__ import annotations

import base64
import json
import plistlib
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tests.e2e.conftest import API_KEY
from tests.fakes.mdm_server import FakeMDMServer
from tests.fakes.reports import device_information, security_info

INVENTORY = "io.micromdm.wf.inventory.v1"
DEVINFOLOG = "io.micromdm.wf.devinfolog.v1"
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "nanocmd"
T = TypeVar("T")


def call(
    base: str,
    method: str,
    path: str,
    body: bytes | None = None,
    auth: bool = True,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(base + path, data=body, method=method, headers=headers or {})
    if auth:
        token = base64.b64encode(f"nanocmd:{API_KEY}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            status, raw, hdrs = reply.status, reply.read(), dict(reply.headers)
    except urllib.error.HTTPError as exc:
        status, raw, hdrs = exc.code, exc.read(), dict(exc.headers)
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw
    return status, {k.lower(): v for k, v in hdrs.items()}, parsed


def eventually(probe: Callable[[], T | None], timeout: float = 20.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def webhook(stack: Any, body: bytes) -> int:
    return call(
        stack.base_url, "POST", "/webhook", body, auth=False, headers={"Content-Type": "application/json"}
    )[0]


def start(stack: Any, workflow: str, *ids: str) -> tuple[int, Any]:
    query = "&".join(f"id={i}" for i in ids)
    status, _, body = call(stack.base_url, "POST", f"/v1/workflow/{workflow}/start?{query}")
    return status, body


def inventory(stack: Any, *ids: str) -> dict[str, Any]:
    query = "&".join(f"id={i}" for i in ids)
    status, headers, body = call(stack.base_url, "GET", f"/v1/inventory?{query}")
    assert status == 200 and headers["content-type"] == "application/json"
    return dict(body)


def sent_commands(mdm: FakeMDMServer, enrollment_id: str, count: int) -> list[dict[str, Any]]:
    return mdm.wait_for(lambda: (c := mdm.commands_for(enrollment_id)) and len(c) >= count and c)


def reply_plists(udid: str, di_uuid: str, si_uuid: str) -> tuple[bytes, bytes]:
    """The Go suite's devinfo/secinfo reports when the shared test data is there (re-addressed to
    the UUIDs and id of this run), else reports built per Apple's schema with the same values."""
    folder = SHARED / "workflow" / "inventory" / "testdata"
    if folder.is_dir():
        di = plistlib.loads((folder / "devinfo.plist").read_bytes())
        si = plistlib.loads((folder / "secinfo.plist").read_bytes())
        di.update(CommandUUID=di_uuid, UDID=udid)
        di["QueryResponses"]["UDID"] = udid
        si.update(CommandUUID=si_uuid, UDID=udid)
        return plistlib.dumps(di), plistlib.dumps(si)
    return (
        device_information(di_uuid, udid, Model="MacBookPro11,3", ProductName="MacBookPro11,3", UDID=udid),
        security_info(si_uuid, udid, SystemIntegrityProtectionEnabled=True, FDE_Enabled=False),
    )
