"""The fake MDM server behaves like NanoMDM / MicroMDM where our tests rely on it."""

from __future__ import annotations

import base64
import plistlib
import threading

import pytest
import urllib3

from tests.fakes.mdm_server import FakeMDMServer

HTTP = urllib3.PoolManager()


def auth(user: str = "nanomdm", key: str = "mdm-secret") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{key}".encode()).decode()}


def cmd(uuid: str = "U1") -> bytes:
    return plistlib.dumps({"CommandUUID": uuid, "Command": {"RequestType": "ProfileList"}})


def test_gap10_empty_enqueue_body_only_pushes(nanomdm: FakeMDMServer) -> None:
    # how the Go client's later chunks went wrong: NanoMDM treats an empty body as a push request
    response = HTTP.request("PUT", nanomdm.enqueue_url + "A,B", body=b"", headers=auth())
    assert response.status == 200
    assert set(response.json()["status"]) == {"A", "B"}
    assert nanomdm.commands_for("A") == [] and nanomdm.requests[0].pushed_ids == ["A", "B"]


def test_nanomdm_splits_the_decoded_path_on_commas(nanomdm: FakeMDMServer) -> None:
    HTTP.request("PUT", nanomdm.enqueue_url + "a%2Cb", body=cmd(), headers=auth())
    assert nanomdm.requests[0].ids == ["a", "b"]
    assert nanomdm.commands_for("a") and nanomdm.commands_for("b")


def test_nanomdm_enqueue_accepts_any_method_and_pushes(nanomdm: FakeMDMServer) -> None:
    response = HTTP.request("POST", nanomdm.enqueue_url + "A", body=cmd(), headers=auth())
    doc = response.json()
    assert response.status == 200
    assert doc["command_uuid"] == "U1" and doc["request_type"] == "ProfileList"
    assert "push_result" in doc["status"]["A"]


def test_nanomdm_nopush_with_empty_body_is_an_error(nanomdm: FakeMDMServer) -> None:
    response = HTTP.request("PUT", nanomdm.enqueue_url + "A?nopush=1", body=b"", headers=auth())
    assert response.status == 500
    assert response.json() == {"no_push": True, "command_error": "must enqueue or push"}


def test_nanomdm_invalid_commands(nanomdm: FakeMDMServer) -> None:
    missing = plistlib.dumps({"CommandUUID": "U", "Command": {}})
    response = HTTP.request("PUT", nanomdm.enqueue_url + "A", body=missing, headers=auth())
    assert response.status == 500 and response.json()["command_error"] == "decoding command: invalid command"
    response = HTTP.request("PUT", nanomdm.enqueue_url, body=cmd(), headers=auth())
    assert response.status == 500 and "empty path" in response.json()["command_error"]


def test_nanomdm_unknown_route_and_auth(nanomdm: FakeMDMServer) -> None:
    assert HTTP.request("GET", nanomdm.base_url + "/v1/other/A", headers=auth()).status == 404
    denied = HTTP.request("GET", nanomdm.push_url + "A", headers=auth(key="bad"))
    assert denied.status == 401 and denied.headers["WWW-Authenticate"].startswith("Basic")
    assert HTTP.request("GET", nanomdm.push_url + "A").status == 401
    assert [r.auth_ok for r in nanomdm.requests] == [True, False, False]


def test_failure_injection(nanomdm: FakeMDMServer) -> None:
    nanomdm.fail_next(1, status=502, body=b"gateway", kind="push")
    assert HTTP.request("PUT", nanomdm.enqueue_url + "A", body=cmd(), headers=auth()).status == 200
    push = HTTP.request("GET", nanomdm.push_url + "A", headers=auth())
    assert (push.status, push.data) == (502, b"gateway")
    assert HTTP.request("GET", nanomdm.push_url + "A", headers=auth()).status == 200
    nanomdm.fail_always(status=500)
    assert HTTP.request("PUT", nanomdm.enqueue_url + "B", body=cmd("U2"), headers=auth()).status == 500
    assert nanomdm.commands_for("B") == []  # injected failures store nothing
    nanomdm.heal()
    assert HTTP.request("PUT", nanomdm.enqueue_url + "B", body=cmd("U2"), headers=auth()).status == 200


def test_wait_for_reset_and_stop() -> None:
    server = FakeMDMServer().start()
    threading.Timer(
        0.05, lambda: HTTP.request("PUT", server.enqueue_url + "A", body=cmd(), headers=auth())
    ).start()
    assert server.wait_for(lambda: server.commands_for("A"), timeout=5)
    with pytest.raises(AssertionError, match="not met"):
        server.wait_for(lambda: server.commands_for("nobody"), timeout=0.05)
    server.reset()
    assert server.requests == [] and server.command_uuids == set()
    url = server.push_url + "A"
    server.stop()
    with pytest.raises(urllib3.exceptions.HTTPError):  # keep-alive connections were closed too
        HTTP.request("GET", url, headers=auth(), retries=False)


def test_micromdm_routes(micromdm: FakeMDMServer) -> None:
    headers = auth("micromdm")
    created = HTTP.request("PUT", micromdm.enqueue_url + "U-1", body=cmd(), headers=headers)
    assert created.status == 201
    assert created.json() == {
        "payload": {"udid": "U-1", "command_uuid": "U1", "command": {"request_type": "ProfileList"}}
    }
    # MicroMDM keeps no UUID registry: the same command again is queued again
    assert HTTP.request("POST", micromdm.enqueue_url + "U-1", body=cmd(), headers=headers).status == 201
    assert micromdm.command_uuids_for("U-1") == ["U1", "U1"]
    assert HTTP.request("GET", micromdm.enqueue_url + "U-1", headers=headers).status == 405
    assert HTTP.request("POST", micromdm.enqueue_url + "a%2Fb", body=cmd(), headers=headers).status == 404
    bad = HTTP.request("POST", micromdm.enqueue_url + "U-1", body=b"<nope", headers=headers)
    assert bad.status == 500 and "error" in bad.json()
    pushed = HTTP.request("GET", micromdm.push_url + "U-1", headers=headers)
    assert pushed.status == 200 and pushed.json()["status"] == "success"
    assert HTTP.request("POST", micromdm.base_url + "/v1/push/U-1", headers=headers).status == 200
    assert micromdm.pushed_ids() == ["U-1", "U-1"]
    assert HTTP.request("GET", micromdm.push_url + "U-1", headers=auth()).status == 401
