"""Issue 13 end to end: an admin drives the running local system with the installed ``nanocmdctl``
(a subprocess, configured by NANOCMD_URL/NANOCMD_API as a shell next to ``make run`` is), while
the fake MDM server and webhooks play the devices. Every command runs at least once, its
``--json`` output parsed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nanocmd_core.workflows.fvenable import PROFILE_TEMPLATE
from tests.e2e.client import DEVINFOLOG, INVENTORY, eventually, reply_plists, sent_commands, webhook
from tests.e2e.conftest import API_KEY
from tests.fakes.mdm_server import FakeMDMServer
from tests.fakes.reports import connect_webhook, device_information
from tests.unit.subsystems.profile.profile_fixtures import profile_xml

SYNC_START_MAX = 4
"""Starts of more ids answer 202 and go through the queue: a small fleet shows it."""


@pytest.fixture
def local_stack_env() -> dict[str, str]:
    return {
        "NANOCMD_API": API_KEY,
        "NANOCMD_WORKER_INTERVAL": "0",
        "NANOCMD_SYNC_START_MAX": str(SYNC_START_MAX),
    }


def nanocmdctl() -> list[str]:
    """The console script the install put beside this interpreter (else the module)."""
    script = Path(sys.executable).with_name("nanocmdctl")
    return [str(script)] if script.exists() else [sys.executable, "-m", "nanocmd_core.cli.main"]


def cli_env(stack: Any, tmp_path: Path, key: str = API_KEY) -> dict[str, str]:
    return {
        **os.environ,
        "NANOCMD_URL": stack.base_url,
        "NANOCMD_API": key,
        "NANOCMDCTL_CONFIG": str(tmp_path / "no-config.toml"),
        "NANOCMDCTL_SERVER": "",
    }


class Ctl:
    """Runs nanocmdctl against the stack; ``json(...)`` adds --json and parses stdout."""

    def __init__(self, stack: Any, tmp_path: Path) -> None:
        self.env = cli_env(stack, tmp_path)

    def run(self, *args: str, input: bytes | None = None, env: dict[str, str] | None = None) -> Any:
        return subprocess.run(
            [*nanocmdctl(), *args], input=input, env=env or self.env, capture_output=True, timeout=120
        )

    def ok(self, *args: str, input: bytes | None = None) -> bytes:
        done = self.run(*args, input=input)
        assert done.returncode == 0, (args, done.stderr.decode())
        assert b"Traceback" not in done.stderr
        return bytes(done.stdout)

    def json(self, *args: str, input: bytes | None = None) -> Any:
        return json.loads(self.ok("--json", *args, input=input))


@pytest.fixture
def ctl(local_stack: Any, tmp_path: Path) -> Ctl:
    return Ctl(local_stack, tmp_path)


def answer_inventory(stack: Any, mdm: FakeMDMServer, udid: str) -> None:
    """The device answers both commands of the inventory workflow."""
    di, si = sent_commands(mdm, udid, 2)
    di_raw, si_raw = reply_plists(udid, di["CommandUUID"], si["CommandUUID"])
    assert webhook(stack, connect_webhook(udid, di["CommandUUID"], di_raw)) == 200
    assert webhook(stack, connect_webhook(udid, si["CommandUUID"], si_raw)) == 200


def test_roll_out_follow_inspect_and_cancel(
    ctl: Ctl, local_stack: Any, fake_mdm: FakeMDMServer, tmp_path: Path
) -> None:
    version = ctl.json("version")
    assert version["cli_version"] and "version" in version["server"]

    devices = ["CLI-1", "CLI-2", "CLI-3"]
    ids_file = tmp_path / "devices.txt"
    ids_file.write_text("# wave 1\n" + "\n".join(devices) + "\n")
    started = ctl.json("start", INVENTORY, "--ids-file", str(ids_file), "--context", "wave-1")
    instance_id = started["instance_id"]
    assert set(started) == {"instance_id"}  # 3 ids: a synchronous start

    status = ctl.json("status", *devices)
    assert set(status) == set(devices)
    [step] = status["CLI-1"]["steps"]
    assert step["instance_id"] == instance_id
    assert {c["request_type"] for c in step["commands"]} == {"DeviceInformation", "SecurityInfo"}
    assert "CLI-1" in ctl.ok("status", "CLI-1").decode()  # the table for people

    answer_inventory(local_stack, fake_mdm, "CLI-1")
    model = eventually(lambda: ctl.json("inventory", "CLI-1").get("CLI-1", {}).get("model"))
    assert model == "MacBookPro11,3"
    assert "MacBookPro11,3" in ctl.ok("inventory", "CLI-1").decode()

    def outcomes() -> dict[str, str]:
        return {i["id"]: i["outcome"] for i in ctl.json("instance", instance_id, "--ids")["ids"]}

    eventually(lambda: outcomes()["CLI-1"] == "completed")
    assert outcomes() == {"CLI-1": "completed", "CLI-2": "in_flight", "CLI-3": "in_flight"}
    history = ctl.json("instances", "--workflow", INVENTORY)
    assert [i["instance_id"] for i in history["instances"]] == [instance_id] and history["next"] is None
    assert history["instances"][0]["context"] == "wave-1"

    assert ctl.json("cancel", instance_id, "CLI-2") == {"cancelled_ids": ["CLI-2"], "not_running_ids": []}
    assert ctl.json("cancel", instance_id) == {"cancelled_ids": ["CLI-3"], "not_running_ids": []}
    final = ctl.json("instance", instance_id, "--watch", "--interval", "0.2", "--max-wait", "30")
    assert final["done"] and final["counts"]["completed"] == 1 and final["counts"]["cancelled"] == 2
    table = ctl.ok("instance", instance_id).decode()
    assert instance_id in table and "CANCELLED" in table

    # the query form for a single id, then a workflow's cancel on it
    again = ctl.json("start", INVENTORY, "CLI-2")
    assert again["instance_id"] != instance_id
    cancelled = ctl.json("cancel", "--workflow", INVENTORY, "CLI-2")
    assert cancelled == {"cancelled_ids": ["CLI-2"], "not_running_ids": []}


def test_a_fleet_start_waits_with_progress_until_every_device_answered(
    ctl: Ctl, local_stack: Any, fake_mdm: FakeMDMServer, tmp_path: Path
) -> None:
    fleet = [f"CLI-FLEET-{n}" for n in range(SYNC_START_MAX + 4)]
    ids = tmp_path / "fleet.txt"
    ids.write_text("\n".join(fleet) + "\n")
    command = [*nanocmdctl(), "--json", "start", DEVINFOLOG, "--ids-file", "-", "--wait"]
    with ids.open("rb") as stdin:  # the ids on standard input, as from an export pipeline
        waiting = subprocess.Popen(
            [*command, "--interval", "0.3", "--max-wait", "90"],
            env=ctl.env,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    try:
        for udid in fleet:  # each device answers its DeviceInformation
            [sent] = sent_commands(fake_mdm, udid, 1)
            uuid = sent["CommandUUID"]
            report = device_information(uuid, udid, Model="Mac14,2")
            assert webhook(local_stack, connect_webhook(udid, uuid, report)) == 200
        out, err = waiting.communicate(timeout=120)
    finally:
        waiting.kill()
    assert waiting.returncode == 0, err.decode()
    answer, final = (json.loads(line) for line in out.decode().splitlines())
    assert answer["status_url"] == f"/v1/instance/{answer['instance_id']}"  # 202: through the queue
    assert final["instance_id"] == answer["instance_id"] and final["done"]
    assert final["requested"] == len(fleet) and final["counts"]["completed"] == len(fleet)
    assert f"completed {len(fleet)}" in err.decode()  # the progress lines (stderr is no terminal)


def test_profiles_plans_events_and_errors(ctl: Ctl, local_stack: Any, tmp_path: Path) -> None:
    profile = profile_xml("com.example.cli", "5E1C3A1B-7D0F-4B4A-9D8E-1F2A3B4C5D6E")
    source = tmp_path / "cli.mobileconfig"
    source.write_bytes(profile)
    assert ctl.ok("--json", "profiles", "put", "com.example.cli", str(source)) == b""
    listed = ctl.json("profiles", "list")
    assert listed["com.example.cli"]["uuid"] == "5E1C3A1B-7D0F-4B4A-9D8E-1F2A3B4C5D6E"
    assert ctl.ok("profiles", "get", "com.example.cli") == profile
    assert "stored profile" in ctl.ok("profiles", "put", "com.example.other", "-", input=profile).decode()
    ctl.ok("profiles", "rm", "com.example.other")
    assert set(ctl.json("profiles", "list")) == {"com.example.cli"}

    ctl.ok("cmdplans", "put", "baseline", "--profile", "com.example.cli", "--device-configured")
    plan = ctl.json("cmdplans", "get", "baseline")
    assert plan == {"profile_names": ["com.example.cli"], "device_configured": True}

    ctl.ok("events", "put", "enroll", "--event", "Enrollment", "--workflow", INVENTORY, "--context", "x")
    sub = {"event": "Enrollment", "workflow": INVENTORY, "context": "x"}
    assert ctl.json("events", "list") == {"enroll": sub}
    assert ctl.json("events", "get", "enroll") == sub
    ctl.ok("events", "rm", "enroll")
    assert ctl.json("events", "list") == {}

    template = tmp_path / "fv.mobileconfig"
    ctl.ok("fvenable-template", "-o", str(template))
    assert template.read_bytes() == PROFILE_TEMPLATE

    # what a user sees when it goes wrong: one line, the API's text, exit status 1 or 2
    unknown = ctl.run("start", "io.example.nope", "A")
    assert unknown.returncode == 1
    assert unknown.stderr.decode().strip() == "error: no such workflow: io.example.nope (HTTP 404)"
    missing = ctl.run("cmdplans", "get", "nope")
    assert missing.returncode == 1
    assert missing.stderr.decode().strip() == "error: key not found: nope (HTTP 404)"
    wrong_key = ctl.run("status", "A", env=cli_env(local_stack, tmp_path, key="wrong"))
    assert wrong_key.returncode == 1
    assert "the API key is wrong" in wrong_key.stderr.decode() and len(wrong_key.stderr.splitlines()) == 1
    assert ctl.run("events", "put", "x", "--event", "Idle").returncode == 2
    bad_event = ctl.run("events", "put", "x", "--event", "AllCommandResponse", "--workflow", INVENTORY)
    assert bad_event.returncode == 1 and b"HTTP 400" in bad_event.stderr
