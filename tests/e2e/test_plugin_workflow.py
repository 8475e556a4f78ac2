"""A workflow from another installed package runs in the local stack like a built-in one
(issue 6: `make run` loads it). The Makefile installs examples/appaudit into the dev venv."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

import pytest

from tests.e2e.client import call, eventually, inventory, sent_commands, webhook
from tests.fakes.mdm_server import FakeMDMServer
from tests.fakes.reports import connect_webhook, device_information, report

pytestmark = pytest.mark.skipif(
    not any(ep.name == "appaudit" for ep in entry_points(group="nanocmd.workflows")),
    reason="the example package is not installed (make installs it: pip install -e examples/appaudit)",
)


def test_the_example_workflow_over_http(local_stack: Any, fake_mdm: FakeMDMServer) -> None:
    udid = "EXAMPLE-MAC"
    status, _, body = call(
        local_stack.base_url,
        "POST",
        f"/v1/workflow/com.example.wf.appaudit.v1/start?id={udid}&context=com.x.vpn",
    )
    assert status == 200, body
    [info] = sent_commands(fake_mdm, udid, 1)
    uuid = info["CommandUUID"]
    webhook(local_stack, connect_webhook(udid, uuid, device_information(uuid, udid, ProductName="Mac14,2")))
    apps = sent_commands(fake_mdm, udid, 2)[1]
    assert apps["Command"]["RequestType"] == "InstalledApplicationList"
    uuid = apps["CommandUUID"]
    listing = report(uuid, udid, InstalledApplicationList=[{"Identifier": "com.apple.Safari"}])
    webhook(local_stack, connect_webhook(udid, uuid, listing))
    record = eventually(lambda: inventory(local_stack, udid).get(udid))
    assert record["appaudit.missing"] == ["com.x.vpn"] and record["appaudit.app_count"] == 1
