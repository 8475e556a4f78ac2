"""What each nanocmdctl command sends and shows, against the fake API: the requests (method, path,
query, body) the API's routes expect, tables for people, the API's JSON unchanged with --json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.unit.cli.fake_api import FakeAPI, instance_doc

INV = "io.micromdm.wf.inventory.v1"
START = f"/v1/workflow/{INV}/start"
MOBILECONFIG = "application/x-apple-aspen-config"


def counts_table(stdout: str) -> dict[str, str]:
    """The counts table of an instance as {COLUMN: value}."""
    lines = stdout.splitlines()
    at = next(n for n, line in enumerate(lines) if "COMPLETED" in line)
    return dict(zip(lines[at].split(), lines[at + 1].split(), strict=True))


def test_a_few_ids_start_in_the_query_form_as_the_go_clients_do(run: Any, api: FakeAPI) -> None:
    api.on("POST", START, {"instance_id": "inst-1", "skipped_ids": ["B"]})
    result = run("start", INV, "A", "B", "--context", "wave-1")
    assert result.exit_code == 0, result.stderr
    [seen] = api.requests("POST", START)
    assert seen.values("id") == ["A", "B"] and seen.values("context") == ["wave-1"] and seen.body == b""
    assert "instance inst-1" in result.stdout
    assert "skipped (already running): 1: B" in result.stdout


def test_many_ids_go_as_the_json_body(run: Any, api: FakeAPI) -> None:
    api.on("POST", START, {"instance_id": "inst-1"})
    ids = [f"DEV-{n}" for n in range(11)]
    result = run("start", INV, *ids, "--context", "c")
    assert result.exit_code == 0, result.stderr
    [seen] = api.requests("POST", START)
    assert seen.query == [] and seen.headers["content-type"] == "application/json"
    assert seen.json() == {"ids": ids, "context": "c"}


def test_an_ids_file_goes_as_the_body_without_comments_blanks_or_repeats(
    run: Any, api: FakeAPI, tmp_path: Path
) -> None:
    api.on("POST", START, {"instance_id": "inst-1", "status_url": "/v1/instance/inst-1"}, status=202)
    devices = tmp_path / "devices.txt"
    devices.write_text("# exported today\nA\n\n  B  # the CEO's\nA\n")
    result = run("start", INV, "--ids-file", str(devices), "--idempotency-key", "wave-1")
    assert result.exit_code == 0, result.stderr
    [seen] = api.requests("POST", START)
    assert seen.json() == {"ids": ["A", "B"]} and seen.headers["idempotency-key"] == "wave-1"
    assert "queued" in result.stdout and "on 2 id(s)" in result.stdout


def test_ids_from_standard_input(run: Any, api: FakeAPI) -> None:
    api.on("POST", START, {"instance_id": "inst-1"})
    result = run("start", INV, "--ids-file", "-", input="X1\nX2\n")
    assert result.exit_code == 0, result.stderr
    assert api.requests("POST", START)[0].json() == {"ids": ["X1", "X2"]}


def test_start_json_prints_the_api_answer_unchanged(run: Any, api: FakeAPI) -> None:
    raw = b'{"instance_id": "inst-1", "retrying_ids": []}\n'
    api.on("POST", START, raw=raw)
    result = run("--json", "start", INV, "A")
    assert result.exit_code == 0 and result.stdout_bytes == raw


def test_start_wait_follows_the_instance_until_done_then_prints_the_counts(run: Any, api: FakeAPI) -> None:
    api.on("POST", START, {"instance_id": "inst-1", "status_url": "/v1/instance/inst-1"}, status=202)
    api.on("GET", "/v1/instance/inst-1", instance_doc(pending=3))
    api.on("GET", "/v1/instance/inst-1", instance_doc(started=3, in_flight=1, completed=2))
    api.on("GET", "/v1/instance/inst-1", instance_doc(True, started=3, completed=2, errored=1))
    result = run("start", INV, "A", "B", "C", "--wait", "--interval", "0.2")
    assert result.exit_code == 0, result.stderr
    assert len(api.requests("GET", "/v1/instance/inst-1")) == 3
    # the progress (stderr is no terminal here: a line per change), then the final counts
    assert "inst-1: requested 3, pending 3" in result.stderr
    assert "inst-1: requested 3, started 3, completed 2, errored 1" in result.stderr
    counts = counts_table(result.stdout)
    assert counts["REQUESTED"] == "3" and counts["COMPLETED"] == "2" and counts["ERRORED"] == "1"


def test_start_wait_json_prints_the_answer_then_the_final_instance(run: Any, api: FakeAPI) -> None:
    api.on("POST", START, {"instance_id": "inst-1"})
    api.on("GET", "/v1/instance/inst-1", instance_doc(True, started=1, completed=1))
    result = run("--json", "start", INV, "A", "--wait")
    assert result.exit_code == 0, result.stderr
    first, final = (json.loads(line) for line in result.stdout.splitlines())
    assert first == {"instance_id": "inst-1"} and final["done"] and final["counts"]["completed"] == 1


def test_start_wait_gives_up_after_max_wait(run: Any, api: FakeAPI) -> None:
    api.on("POST", START, {"instance_id": "inst-1"})
    api.on("GET", "/v1/instance/inst-1", instance_doc(started=3, in_flight=3))
    result = run("start", INV, "A", "--wait", "--interval", "0.2", "--max-wait", "0.5")
    assert result.exit_code == 1
    assert "error: instance inst-1 not done after 0.5 s: requested 3, started 3, in_flight 3" in result.stderr


def test_status_shows_each_step_and_its_commands(run: Any, api: FakeAPI) -> None:
    command = {"command_uuid": "u", "request_type": "SecurityInfo", "status": "NotNow", "not_now_count": 2}
    step = {"workflow": INV, "instance_id": "inst-1", "step_name": "", "sent_at": "2026-12-01T09:00:00Z",
            "commands": [command]}  # fmt: skip
    running = [{"workflow": INV, "instance_id": "inst-1"}]
    doc = {"MAC1": {"steps": [step], "running": running}, "MAC2": {"steps": [], "running": []}}
    api.on("GET", "/v1/status", doc)
    result = run("status", "MAC1", "MAC2")
    assert result.exit_code == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("MAC1"))
    assert INV in row and "inst-1" in row and "SecurityInfo: NotNow 2x" in row
    assert "idle" in next(line for line in result.stdout.splitlines() if line.startswith("MAC2"))


def test_status_of_many_ids_asks_100_a_request_and_merges(run: Any, api: FakeAPI) -> None:
    ids = [f"D{n:03d}" for n in range(150)]
    api.on("GET", "/v1/status", {i: {"steps": [], "running": []} for i in ids[:100]})
    api.on("GET", "/v1/status", {i: {"steps": [], "running": []} for i in ids[100:]})
    result = run("--json", "status", *ids)
    assert result.exit_code == 0, result.stderr
    assert [len(s.values("id")) for s in api.requests("GET", "/v1/status")] == [100, 50]
    assert sorted(json.loads(result.stdout)) == ids


def test_instance_ids_reads_every_page(run: Any, api: FakeAPI) -> None:
    path = "/v1/instance/inst-1"
    first = {**instance_doc(), "ids": [{"id": "A", "outcome": "completed"}], "next": "t1"}
    last = {**instance_doc(), "ids": [{"id": "B", "outcome": "errored", "error": "SecurityInfo: 12021"}],
            "next": None}  # fmt: skip
    api.on("GET", path, first)
    api.on("GET", path, last)
    result = run("--json", "instance", "inst-1", "--ids")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert [i["id"] for i in doc["ids"]] == ["A", "B"] and doc["next"] is None
    pages = api.requests("GET", path)
    assert [p.values("next") for p in pages] == [[], ["t1"]]
    assert all(p.values("ids") == ["1"] and p.values("limit") == ["1000"] for p in pages)

    api.routes[("GET", path)] = []
    api.on("GET", path, last)
    table = run("instance", "inst-1", "--ids", "--outcome", "errored")
    rows = [line.split(maxsplit=3) for line in table.stdout.splitlines() if line.startswith(("A ", "B "))]
    assert rows == [["B", "errored", "-", "SecurityInfo: 12021"]]


def test_instance_limit_stops_with_the_token_to_continue(run: Any, api: FakeAPI) -> None:
    path = "/v1/instance/inst-1"
    api.on("GET", path, {**instance_doc(), "ids": [{"id": "A", "outcome": "in_flight"}], "next": "t1"})
    result = run("instance", "inst-1", "--ids", "--limit", "1")
    assert result.exit_code == 0, result.stderr
    assert api.requests("GET", path)[0].values("limit") == ["1"]
    assert "more ids: --next t1" in result.stdout
    api.routes[("GET", path)] = []
    api.on("GET", path, {**instance_doc(), "ids": [{"id": "B", "outcome": "in_flight"}], "next": None})
    again = run("instance", "inst-1", "--ids", "--next", "t1")
    assert again.exit_code == 0 and api.requests("GET", path)[-1].values("next") == ["t1"]


def test_instance_without_ids_prints_the_api_json_unchanged(run: Any, api: FakeAPI) -> None:
    raw = json.dumps(instance_doc(True, started=3, completed=3)).encode() + b"\n"
    api.on("GET", "/v1/instance/inst-1", raw=raw)
    assert run("--json", "instance", "inst-1").stdout_bytes == raw
    table = run("instance", "inst-1")
    assert "inst-1" in table.stdout and "yes" in table.stdout  # done


def test_instance_watch_polls_until_done(run: Any, api: FakeAPI) -> None:
    api.on("GET", "/v1/instance/inst-1", instance_doc(started=3, in_flight=3))
    api.on("GET", "/v1/instance/inst-1", instance_doc(True, started=3, cancelled=3))
    result = run("--json", "instance", "inst-1", "--watch", "--interval", "0.2")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["counts"]["cancelled"] == 3
    assert len(api.requests("GET", "/v1/instance/inst-1")) == 2


def test_instances_pages_through_the_history(run: Any, api: FakeAPI) -> None:
    one = {"instance_id": "i2", "workflow": INV, "started_at": "t", "started_by": "api", "requested": 5}
    two = {**one, "instance_id": "i1", "started_by": "enroll-sub"}
    api.on("GET", "/v1/instances", {"instances": [one], "next": "n1"})
    api.on("GET", "/v1/instances", {"instances": [two], "next": None})
    result = run("instances", "--workflow", INV)
    assert result.exit_code == 0, result.stderr
    seen = api.requests("GET", "/v1/instances")
    assert [s.values("workflow") for s in seen] == [[INV], [INV]] and seen[1].values("next") == ["n1"]
    rows = [line.split()[0] for line in result.stdout.splitlines()[1:]]
    assert rows == ["i2", "i1"]


def test_cancel_an_instance_on_all_or_some_ids_and_a_workflow(run: Any, api: FakeAPI) -> None:
    api.on("DELETE", "/v1/instance/inst-1", {"cancelled_ids": ["A", "B"], "not_running_ids": []})
    result = run("cancel", "inst-1")
    assert result.exit_code == 0 and "cancelled: 2: A, B" in result.stdout
    assert api.requests("DELETE", "/v1/instance/inst-1")[0].query == []

    run("cancel", "inst-1", "A")
    assert api.requests("DELETE", "/v1/instance/inst-1")[1].values("id") == ["A"]

    api.on("POST", f"/v1/workflow/{INV}/cancel", {"cancelled_ids": [], "not_running_ids": ["C"]})
    result = run("--json", "cancel", "--workflow", INV, "C")
    assert json.loads(result.stdout) == {"cancelled_ids": [], "not_running_ids": ["C"]}
    assert api.requests("POST", f"/v1/workflow/{INV}/cancel")[0].values("id") == ["C"]


def test_inventory_shows_a_table_per_device_and_names_those_without(run: Any, api: FakeAPI) -> None:
    api.on("GET", "/v1/inventory", {"MAC1": {"model": "MacBookPro11,3", "sip_enabled": True}})
    result = run("inventory", "MAC1", "MAC9")
    assert result.exit_code == 0, result.stderr
    assert "MacBookPro11,3" in result.stdout and "sip_enabled  true" in result.stdout
    assert "no inventory: MAC9" in result.stdout
    assert api.requests("GET", "/v1/inventory")[0].values("id") == ["MAC1", "MAC9"]


def test_profiles_put_get_list_rm(run: Any, api: FakeAPI, tmp_path: Path) -> None:
    profile = b"<?xml version='1.0'?><plist><dict/></plist>"
    source = tmp_path / "wifi.mobileconfig"
    source.write_bytes(profile)
    api.on("PUT", "/v1/profile/com.example.wifi", status=204)
    result = run("profiles", "put", "com.example.wifi", str(source))
    assert result.exit_code == 0 and "stored profile com.example.wifi" in result.stdout
    [put] = api.requests("PUT", "/v1/profile/com.example.wifi")
    assert put.body == profile and put.headers["content-type"] == MOBILECONFIG

    api.on("GET", "/v1/profile/com.example.wifi", raw=profile, content_type=MOBILECONFIG)
    assert run("profiles", "get", "com.example.wifi").stdout_bytes == profile
    out = tmp_path / "copy.mobileconfig"
    assert run("profiles", "get", "com.example.wifi", "-o", str(out)).exit_code == 0
    assert out.read_bytes() == profile

    api.on("GET", "/v1/profiles", {"com.example.wifi": {"identifier": "com.example.wifi.p", "uuid": "U-1"}})
    listed = run("profiles", "list")
    row = next(line for line in listed.stdout.splitlines() if line.startswith("com.example.wifi "))
    assert row.split() == ["com.example.wifi", "com.example.wifi.p", "U-1"]

    api.on("DELETE", "/v1/profile/a", status=204)
    api.on("DELETE", "/v1/profile/b", status=204)
    assert run("--json", "profiles", "rm", "a", "b").stdout == ""
    assert len(api.requests("DELETE", "/v1/profile/a")) == len(api.requests("DELETE", "/v1/profile/b")) == 1


def test_names_are_one_path_segment(run: Any, api: FakeAPI) -> None:
    api.on("GET", "/v1/cmdplan/a/b c", {"profile_names": ["p"]})
    result = run("cmdplans", "get", "a/b c")
    assert result.exit_code == 0, result.stderr
    assert api.seen[-1].path == "/v1/cmdplan/a/b c"  # the fake decodes; it arrived as a%2Fb%20c


def test_cmdplans_put_from_options_or_a_file(run: Any, api: FakeAPI, tmp_path: Path) -> None:
    api.on("PUT", "/v1/cmdplan/baseline", status=204)
    result = run("cmdplans", "put", "baseline", "--profile", "p1", "--profile", "p2", "--device-configured")
    assert result.exit_code == 0, result.stderr
    sent = {"profile_names": ["p1", "p2"], "manifest_urls": [], "device_configured": True}
    assert api.seen[-1].json() == sent
    plan = tmp_path / "plan.json"
    plan.write_text('{"manifest_urls": ["https://m"]}')
    assert run("cmdplans", "put", "baseline", str(plan)).exit_code == 0
    assert api.seen[-1].json() == {"manifest_urls": ["https://m"]}

    api.on("GET", "/v1/cmdplan/baseline", {"profile_names": ["p1"], "device_configured": False})
    shown = run("cmdplans", "get", "baseline")
    row = next(line for line in shown.stdout.splitlines() if line.startswith("baseline"))
    assert row.split() == ["baseline", "p1", "-", "no"]


def test_events_put_list_get_rm(run: Any, api: FakeAPI) -> None:
    api.on("PUT", "/v1/event/enroll", status=204)
    result = run("events", "put", "enroll", "--event", "Enrollment", "--workflow", INV, "--context", "x")
    assert result.exit_code == 0, result.stderr
    assert api.seen[-1].json() == {"event": "Enrollment", "workflow": INV, "context": "x"}
    sub = {"event": "Enrollment", "workflow": INV}
    api.on("GET", "/v1/events", {"enroll": sub})
    assert json.loads(run("--json", "events", "list").stdout) == {"enroll": sub}
    api.on("GET", "/v1/event/enroll", sub)
    shown = run("events", "get", "enroll").stdout.splitlines()
    row = next(line for line in shown if line.startswith("enroll"))
    assert row.split()[:3] == ["enroll", "Enrollment", INV]
    api.on("DELETE", "/v1/event/enroll", status=204)
    assert "deleted event subscription enroll" in run("events", "rm", "enroll").stdout


def test_fvenable_template_is_written_as_it_came(run: Any, api: FakeAPI, tmp_path: Path) -> None:
    template = b"<plist>template</plist>"
    api.on("GET", "/v1/fvenable/profiletemplate", raw=template, content_type=MOBILECONFIG)
    out = tmp_path / "fv.mobileconfig"
    assert run("fvenable-template", "-o", str(out)).exit_code == 0
    assert out.read_bytes() == template


def test_version_shows_both_versions_without_a_key(run: Any, api: FakeAPI) -> None:
    api.on("GET", "/version", {"version": "9.9.9"})
    result = run("version", key=None)
    assert result.exit_code == 0, result.stderr
    assert "nanocmdctl " in result.stdout and "server 9.9.9" in result.stdout
    assert "authorization" not in api.seen[-1].headers
    doc = json.loads(run("version", "--json").stdout)
    assert doc["server"] == {"version": "9.9.9"} and doc["cli_version"]


@pytest.mark.parametrize("where", ["before", "after"])
def test_json_goes_before_or_after_the_command(run: Any, api: FakeAPI, where: str) -> None:
    api.on("GET", "/v1/events", raw=b'{"a": {"event": "Idle", "workflow": "w"}}\n')
    args = ["--json", "events", "list"] if where == "before" else ["events", "list", "--json"]
    assert run(*args).stdout_bytes == b'{"a": {"event": "Idle", "workflow": "w"}}\n'
