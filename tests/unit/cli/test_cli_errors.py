"""Exit statuses and error lines: 0 success, 1 an API error (its text on stderr), an unreachable
server, a timeout or a wrong key, 2 bad usage; one line each, never a traceback (the runner
re-raises any exception nanocmdctl lets escape, so a traceback fails these tests)."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from tests.unit.cli.fake_api import FakeAPI

INV = "io.micromdm.wf.inventory.v1"
START = f"/v1/workflow/{INV}/start"


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def test_an_api_error_exits_1_with_the_api_text(run: Any, api: FakeAPI) -> None:
    api.on("POST", START, {"error": "workflow already started on 1 (of 1) ids"}, status=409)
    result = run("start", INV, "A")
    assert result.exit_code == 1 and result.stdout == ""
    assert one_line(result.stderr) == "error: workflow already started on 1 (of 1) ids (HTTP 409)"


def test_a_404_of_an_unknown_instance(run: Any, api: FakeAPI) -> None:
    api.on("GET", "/v1/instance/nope", {"error": "instance not found: nope"}, status=404)
    result = run("instance", "nope")
    assert result.exit_code == 1
    assert one_line(result.stderr) == "error: instance not found: nope (HTTP 404)"


def test_a_start_the_mdm_server_refused_names_the_instance(run: Any, api: FakeAPI) -> None:
    doc = {"instance_id": "inst-9", "retrying_ids": ["A"], "error": "MDM server did not accept the commands"}
    api.on("POST", START, doc, status=502)
    result = run("start", INV, "A")
    assert result.exit_code == 1
    assert "MDM server did not accept the commands; instance inst-9 (HTTP 502)" in one_line(result.stderr)


def test_a_wrong_key_says_so(run: Any, api: FakeAPI) -> None:
    result = run("status", "A", key="wrong")
    assert result.exit_code == 1
    assert one_line(result.stderr) == f"error: unauthorized: the API key is wrong for {api.url} (HTTP 401)"


def test_no_key_is_a_usage_error_before_any_request(run: Any, api: FakeAPI) -> None:
    result = run("status", "A", key=None)
    assert result.exit_code == 2 and "no API key" in result.stderr
    assert api.seen == []


def test_a_refused_connection_is_one_line(run: Any) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = run("status", "A", url=f"http://127.0.0.1:{port}")
    assert result.exit_code == 1
    assert one_line(result.stderr) == (
        f"error: cannot connect to http://127.0.0.1:{port}: Connection refused (is the server running?)"
    )


def test_a_timeout_is_one_line(run: Any, api: FakeAPI) -> None:
    api.on("GET", "/v1/events", {}, delay=1.5)
    result = run("--timeout", "0.3", "events", "list")
    assert result.exit_code == 1
    assert one_line(result.stderr) == f"error: no answer from {api.url} within 0.3 s (timed out)"
    assert len(api.requests("GET", "/v1/events")) == 1  # not sent again


def test_a_non_json_error_page_shows_its_first_line(run: Any, api: FakeAPI) -> None:
    api.on("GET", "/v1/events", raw=b"Bad Gateway\n<html>...</html>", status=502, content_type="text/html")
    result = run("events", "list")
    assert result.exit_code == 1 and one_line(result.stderr) == "error: Bad Gateway (HTTP 502)"


def test_a_non_json_success_is_an_error_not_a_traceback(run: Any, api: FakeAPI) -> None:
    api.on("GET", "/v1/events", raw=b"<html>login</html>", content_type="text/html")
    result = run("events", "list")
    assert result.exit_code == 1 and "not JSON" in one_line(result.stderr)


def test_a_repeated_next_token_stops_instead_of_looping(run: Any, api: FakeAPI) -> None:
    api.on("GET", "/v1/instances", {"instances": [], "next": "same"})
    result = run("instances", "--next", "same")
    assert result.exit_code == 1 and "same next token" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["start", INV], "no ids"),
        (["status"], "no ids"),
        (["inventory"], "no ids"),
        (["cancel"], "INSTANCE_ID"),
        (["cancel", "--workflow", INV], "no ids"),
        (["instance", "i", "--outcome", "errored"], "go with --ids"),
        (["instance", "i", "--ids", "--outcome", "lost"], "Invalid value"),
        (["instances", "--limit", "0"], "Invalid value"),
        (["cmdplans", "put", "p"], "give the plan"),
        (["events", "put", "e", "--event", "Idle"], "--event and --workflow"),
        (["profiles", "rm"], "Missing argument"),
        (["no-such-command"], "No such command"),
        (["status", "--bogus"], "No such option"),
    ],
)
def test_bad_usage_exits_2_and_sends_nothing(run: Any, api: FakeAPI, args: list[str], message: str) -> None:
    result = run(*args)
    assert result.exit_code == 2 and message in result.stderr, result.stderr
    assert api.seen == []


def test_a_plan_file_that_is_not_json_is_bad_usage(run: Any, api: FakeAPI) -> None:
    result = run("cmdplans", "put", "p", "-", input="{not json")
    assert result.exit_code == 2 and "FILE is not JSON" in result.stderr and api.seen == []


def test_a_plan_both_as_file_and_options_is_bad_usage(run: Any, api: FakeAPI) -> None:
    result = run("cmdplans", "put", "p", "-", "--profile", "x", input="{}")
    assert result.exit_code == 2 and "not both" in result.stderr
