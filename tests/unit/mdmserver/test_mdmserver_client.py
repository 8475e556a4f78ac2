"""HTTPMDMServerClient against a fake NanoMDM/MicroMDM over real loopback HTTP (MC-1..5, GAP-9/10/21)."""

from __future__ import annotations

import base64
import logging
import plistlib
import time

import pytest

from nanocmd_core.config import ConfigError, Settings
from nanocmd_core.mdmserver import (
    ChunkResult,
    HTTPMDMServerClient,
    MDMServerClient,
    MDMServerError,
)
from tests.fakes.mdm_server import FakeMDMServer, closed_port_url, ids_of

API_KEY = "mdm-secret"


def command(uuid: str = "11111111-2222-3333-4444-555555555555", request_type: str = "ProfileList") -> bytes:
    return plistlib.dumps({"CommandUUID": uuid, "Command": {"RequestType": request_type}})


class Sleeps:
    """Records backoff delays instead of sleeping: keeps the tests fast and checks the schedule."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def client_for(server: FakeMDMServer, **kwargs: object) -> HTTPMDMServerClient:
    options: dict[str, object] = {"micromdm": server.micromdm, "timeout": 2.0, "backoff": 0.001}
    options.update(kwargs)
    return HTTPMDMServerClient(server.enqueue_url, server.push_url, API_KEY, **options)  # type: ignore[arg-type]


def basic(user: str, password: str = API_KEY) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# --- NanoMDM mode: request shape --------------------------------------------------------------


def test_mc2_nanomdm_enqueue_request(nanomdm: FakeMDMServer) -> None:
    client = client_for(nanomdm)
    body = command()
    result = client.enqueue(["DEV-1", "DEV-2"], body)

    assert result == ChunkResult(["DEV-1", "DEV-2"], True, 200, "", [], attempts=1)
    (request,) = nanomdm.requests
    assert request.method == "PUT"
    assert request.path == "/v1/enqueue/DEV-1,DEV-2"
    assert request.headers["authorization"] == basic("nanomdm")
    assert request.headers["content-type"] == "application/xml"
    assert request.body == body
    assert request.auth_ok
    assert request.command_uuid == "11111111-2222-3333-4444-555555555555"
    assert request.request_type == "ProfileList"
    assert nanomdm.commands_for("DEV-1")[0]["Command"] == {"RequestType": "ProfileList"}
    assert nanomdm.command_uuids_for("DEV-2") == ["11111111-2222-3333-4444-555555555555"]


def test_mc2_nanomdm_modes_reported_to_the_engine(nanomdm: FakeMDMServer) -> None:
    client = client_for(nanomdm)
    assert isinstance(client, MDMServerClient)
    assert client.max_ids_per_request == 30
    assert client.supports_multi_target is True
    assert API_KEY not in repr(client)


def test_enqueue_sends_one_request_of_up_to_30_ids(nanomdm: FakeMDMServer) -> None:
    client = client_for(nanomdm)
    ids = [f"D{i:02}" for i in range(30)]
    assert client.enqueue(ids, command()).ok
    assert ids_of(nanomdm.enqueued()) == [ids]
    with pytest.raises(ValueError, match="at most 30"):
        client.enqueue([*ids, "D30"], command("other"))
    assert len(nanomdm.requests) == 1


def test_gap10_every_request_carries_the_full_body(nanomdm: FakeMDMServer) -> None:
    client = client_for(nanomdm)
    for k in range(3):  # the engine's chunks, each with its own command UUID (design.md §6)
        assert client.enqueue([f"C{k}-{i}" for i in range(30)], command(f"uuid-{k}")).ok
    assert [r.command_uuid for r in nanomdm.enqueued()] == ["uuid-0", "uuid-1", "uuid-2"]
    assert all(r.body for r in nanomdm.enqueued())
    assert nanomdm.command_uuids_for("C2-29") == ["uuid-2"]


def test_mc5_push_chunks_internally(nanomdm: FakeMDMServer) -> None:
    client = client_for(nanomdm)
    ids = [f"P{i:02}" for i in range(65)]
    results = client.push(ids)

    assert [len(r.ids) for r in results] == [30, 30, 5]
    assert all(r.ok and r.status == 200 and r.failed_ids == [] for r in results)
    pushes = nanomdm.pushes()
    assert ids_of(pushes) == [ids[:30], ids[30:60], ids[60:]]
    assert {r.method for r in pushes} == {"GET"}
    assert all(r.body == b"" and "content-type" not in r.headers for r in pushes)
    assert all(r.headers["authorization"] == basic("nanomdm") for r in pushes)
    assert nanomdm.pushed_ids() == ids


def test_push_of_nothing_sends_nothing_and_duplicates_are_pushed_once(nanomdm: FakeMDMServer) -> None:
    client = client_for(nanomdm)
    assert client.push([]) == []
    client.push(["A", "B", "A"])
    assert ids_of(nanomdm.pushes()) == [["A", "B"]]


# --- GAP-21: ids and URLs ---------------------------------------------------------------------


def test_gap21_ids_are_percent_escaped_on_the_wire(nanomdm: FakeMDMServer) -> None:
    client = client_for(nanomdm)
    ids = ["a/b", "c?d", "e#f", "UDID:user", "with space", "plain"]
    assert client.enqueue(ids, command()).ok
    (request,) = nanomdm.requests
    assert request.path == "/v1/enqueue/a%2Fb,c%3Fd,e%23f,UDID%3Auser,with%20space,plain"
    assert request.query == ""
    assert request.ids == ids  # the server decodes them back
    assert all(nanomdm.commands_for(i) for i in ids)
    assert [r.ids for r in client.push(ids)] == [ids]
    assert nanomdm.pushes()[0].ids == ids


def test_gap21_comma_in_an_id_is_refused_for_nanomdm(nanomdm: FakeMDMServer) -> None:
    # NanoMDM decodes the path before splitting on ",": "a%2Cb" would address enrollments "a" and "b"
    client = client_for(nanomdm)
    with pytest.raises(ValueError, match="commas"):
        client.enqueue(["a,b"], command())
    with pytest.raises(ValueError, match="commas"):
        client.push(["ok", "a,b"])
    assert nanomdm.requests == []


def test_gap21_query_string_on_the_base_url_survives(nanomdm: FakeMDMServer) -> None:
    client = HTTPMDMServerClient(
        nanomdm.enqueue_url.rstrip("/") + "?nopush=1", nanomdm.push_url, API_KEY, backoff=0.001
    )
    result = client.enqueue(["A", "B"], command())
    assert result.ok and result.push_failed_ids == []
    (request,) = nanomdm.requests
    assert request.path == "/v1/enqueue/A,B"
    assert request.query == "nopush=1"
    assert request.json == {
        "no_push": True,
        "command_uuid": "11111111-2222-3333-4444-555555555555",
        "request_type": "ProfileList",
    }
    assert request.pushed_ids == []  # NanoMDM honoured nopush: it got the query


@pytest.mark.parametrize("ids", [[""], ["A", ""], [".."], ["."]])
def test_gap21_unaddressable_id_rejected_before_any_request(nanomdm: FakeMDMServer, ids: list[str]) -> None:
    client = client_for(nanomdm)
    with pytest.raises(ValueError):
        client.enqueue(ids, command())
    with pytest.raises(ValueError):
        client.push(["fine", *ids])
    assert nanomdm.requests == []


def test_other_invalid_enqueue_input(nanomdm: FakeMDMServer) -> None:
    client = client_for(nanomdm)
    with pytest.raises(ValueError, match="no enrollment ids"):
        client.enqueue([], command())
    with pytest.raises(ValueError, match="duplicate"):
        client.enqueue(["A", "A"], command())
    with pytest.raises(ValueError, match="non-empty"):
        client.enqueue(["A"], b"")  # NanoMDM would treat it as push-only (GAP-10)
    with pytest.raises(TypeError):
        client.enqueue("A", command())
    assert nanomdm.requests == []


# --- GAP-9: status and result are read ----------------------------------------------------------


def test_gap9_5xx_is_retried_with_backoff_then_reported(nanomdm: FakeMDMServer) -> None:
    sleeps = Sleeps()
    client = client_for(nanomdm, retries=2, backoff=0.01, sleep=sleeps)
    nanomdm.fail_always(status=503, body=b"<html>upstream unavailable</html>")

    result = client.enqueue(["A", "B"], command())

    assert not result.ok
    assert result.status == 503
    assert "upstream unavailable" in result.detail
    assert result.failed_ids == ["A", "B"]
    assert result.attempts == 3 and len(nanomdm.requests) == 3
    assert sleeps.delays == [0.01, 0.02]
    assert all(r.body == command() for r in nanomdm.requests)  # each retry carries the command
    assert nanomdm.commands_for("A") == []


def test_gap9_transient_5xx_then_success(nanomdm: FakeMDMServer) -> None:
    nanomdm.fail_next(1, status=500)
    result = client_for(nanomdm).enqueue(["A"], command())
    assert result.ok and result.status == 200 and result.attempts == 2
    assert nanomdm.command_uuids_for("A") == ["11111111-2222-3333-4444-555555555555"]


def test_gap9_wrong_api_key_is_401_not_retried(nanomdm: FakeMDMServer) -> None:
    client = HTTPMDMServerClient(nanomdm.enqueue_url, nanomdm.push_url, "wrong", backoff=0.001)
    result = client.enqueue(["A"], command())
    assert not result.ok and result.status == 401
    assert "unauthorized" in result.detail.lower() and "Unauthorized" in result.detail
    assert result.failed_ids == ["A"] and result.attempts == 1
    assert len(nanomdm.requests) == 1 and not nanomdm.requests[0].auth_ok
    (push,) = client.push(["A"])
    assert push.status == 401 and not push.ok


def test_gap9_micromdm_user_against_nanomdm_is_401(nanomdm: FakeMDMServer) -> None:
    client = HTTPMDMServerClient(nanomdm.enqueue_url, nanomdm.push_url, API_KEY, micromdm=True)
    result = client.enqueue(["A"], command())
    assert result.status == 401 and not result.ok


def test_gap9_other_4xx_not_retried(nanomdm: FakeMDMServer) -> None:
    client = HTTPMDMServerClient(nanomdm.base_url + "/v1/nothing-here/", nanomdm.push_url, API_KEY)
    result = client.enqueue(["A"], command())
    assert (result.ok, result.status, result.attempts) == (False, 404, 1)
    assert "404 page not found" in result.detail


def test_429_is_retried(nanomdm: FakeMDMServer) -> None:
    nanomdm.fail_next(1, status=429, body=b"slow down")
    assert client_for(nanomdm).enqueue(["A"], command()).attempts == 2


def test_per_id_command_errors_become_failed_ids(nanomdm: FakeMDMServer) -> None:
    nanomdm.fail_command_for("B", message="disk full")
    result = client_for(nanomdm).enqueue(["A", "B", "C"], command())

    assert not result.ok
    assert result.status == 207
    assert result.failed_ids == ["B"]
    assert "B: command_error: disk full" in result.detail
    assert result.attempts == 1  # definitive per-id answer: A and C have the command
    assert [bool(nanomdm.commands_for(i)) for i in "ABC"] == [True, False, True]


def test_push_errors_alone_do_not_fail_an_enqueue(nanomdm: FakeMDMServer) -> None:
    nanomdm.fail_push_for("B", message="BadDeviceToken")
    result = client_for(nanomdm).enqueue(["A", "B"], command())
    assert result.ok and result.status == 207 and result.detail == ""
    assert result.failed_ids == [] and result.push_failed_ids == ["B"]
    assert nanomdm.commands_for("B")


def test_enqueue_ok_even_when_nanomdm_answers_500_because_every_push_failed(nanomdm: FakeMDMServer) -> None:
    # NanoMDM's code() counts push errors: all pushes failing gives 500 though the command is stored
    nanomdm.fail_push_for("A", "B")
    result = client_for(nanomdm).enqueue(["A", "B"], command())
    assert result.ok and result.status == 500 and result.push_failed_ids == ["A", "B"]
    assert result.attempts == 1 and len(nanomdm.requests) == 1  # not retried: it would be "already exists"


def test_already_exists_is_recognised_and_not_retried(nanomdm: FakeMDMServer) -> None:
    client = client_for(nanomdm)
    assert client.enqueue(["A"], command("dup-uuid")).ok
    result = client.enqueue(["B"], command("dup-uuid"))  # other ids: NanoMDM still refuses

    assert not result.ok
    assert result.already_exists
    assert result.status == 500
    assert "command already exists: dup-uuid" in result.detail
    assert result.failed_ids == ["B"] and result.attempts == 1
    assert nanomdm.commands_for("B") == []


def test_lost_answer_then_retry_reports_already_exists(nanomdm: FakeMDMServer) -> None:
    # the first attempt is stored but its answer is lost: the retry learns the UUID is held
    nanomdm.drop_response_next(1)
    result = client_for(nanomdm).enqueue(["A"], command("once"))
    assert not result.ok and result.already_exists and result.attempts == 2
    assert nanomdm.command_uuids_for("A") == ["once"]


def test_invalid_command_plist_is_reported(nanomdm: FakeMDMServer) -> None:
    result = client_for(nanomdm, retries=0).enqueue(["A"], b"not a plist")
    assert not result.ok and result.status == 500 and not result.already_exists
    assert "decoding command" in result.detail


def test_transport_error_gives_status_none(nanomdm: FakeMDMServer) -> None:
    sleeps = Sleeps()
    client = HTTPMDMServerClient(closed_port_url(), closed_port_url("/v1/push/"), API_KEY, sleep=sleeps)
    result = client.enqueue(["A", "B"], command())
    assert not result.ok
    assert result.status is None
    assert result.failed_ids == ["A", "B"]
    assert result.attempts == 3 and len(sleeps.delays) == 2
    assert "Connect" in result.detail or "refused" in result.detail.lower()
    (push,) = client.push(["A"])
    assert push.status is None and not push.ok


def test_read_timeout_is_a_transport_error(nanomdm: FakeMDMServer) -> None:
    nanomdm.delay = 0.5
    client = client_for(nanomdm, timeout=0.1, retries=0)
    started = time.monotonic()
    result = client.enqueue(["A"], command())
    assert result.status is None and not result.ok
    assert "timed out" in result.detail.lower()
    assert time.monotonic() - started < 2


def test_push_per_id_errors(nanomdm: FakeMDMServer) -> None:
    nanomdm.fail_push_for("B", message="Unregistered")
    (result,) = client_for(nanomdm).push(["A", "B"])
    assert not result.ok and result.status == 207
    assert result.failed_ids == ["B"] and result.push_failed_ids == ["B"]
    assert "Unregistered" in result.detail


def test_push_every_id_failing_is_500_and_not_retried(nanomdm: FakeMDMServer) -> None:
    nanomdm.fail_push_for("A")
    (result,) = client_for(nanomdm).push(["A"])
    assert (result.ok, result.status, result.attempts, result.failed_ids) == (False, 500, 1, ["A"])


def test_push_gateway_error_is_retried(nanomdm: FakeMDMServer) -> None:
    nanomdm.fail_next(2, status=502, body=b"Bad Gateway", kind="push")
    first, second = client_for(nanomdm).push([f"X{i}" for i in range(31)])
    assert first.ok and first.attempts == 3
    assert second.ok and second.attempts == 1


# --- MicroMDM mode ------------------------------------------------------------------------------


def test_mc2_micromdm_enqueue_and_push(micromdm: FakeMDMServer) -> None:
    client = client_for(micromdm)
    assert client.max_ids_per_request == 1 and client.supports_multi_target is False

    result = client.enqueue(["UDID-1"], command())
    assert result.ok and result.status == 201
    (request,) = micromdm.requests
    assert (request.method, request.path) == ("POST", "/v1/commands/UDID-1")
    assert request.headers["authorization"] == basic("micromdm")
    assert request.body == command()
    assert request.json["payload"]["command_uuid"] == "11111111-2222-3333-4444-555555555555"
    assert micromdm.commands_for("UDID-1")

    results = client.push(["UDID-1", "UDID-2"])
    assert [r.ids for r in results] == [["UDID-1"], ["UDID-2"]] and all(r.ok for r in results)
    assert [(r.method, r.path) for r in micromdm.pushes()] == [
        ("GET", "/push/UDID-1"),
        ("GET", "/push/UDID-2"),
    ]


def test_mc4_micromdm_refuses_more_than_one_id(micromdm: FakeMDMServer) -> None:
    with pytest.raises(ValueError, match="multiple ids not supported"):
        client_for(micromdm).enqueue(["A", "B"], command())
    assert micromdm.requests == []


def test_micromdm_comma_ids_are_escaped_not_refused(micromdm: FakeMDMServer) -> None:
    assert client_for(micromdm).enqueue(["a,b"], command()).ok
    assert micromdm.requests[0].path == "/v1/commands/a%2Cb"
    assert micromdm.commands_for("a,b")


def test_micromdm_errors(micromdm: FakeMDMServer) -> None:
    micromdm.fail_push_for("B", message="invalid push token")
    (push,) = client_for(micromdm, retries=0).push(["B"])
    assert not push.ok and push.status == 500 and push.detail == "invalid push token"

    bad_key = HTTPMDMServerClient(micromdm.enqueue_url, micromdm.push_url, "nope", micromdm=True)
    denied = bad_key.enqueue(["A"], command())
    assert denied.status == 401 and "Authorization Required" in denied.detail


# --- errors, construction, logging --------------------------------------------------------------


def test_mdm_server_error_message() -> None:
    result = ChunkResult([f"id{i}" for i in range(8)], False, 500, "command already exists: X", ["id0"])
    with pytest.raises(MDMServerError) as caught:
        result.raise_for_error()
    error = caught.value
    assert (error.status, error.detail) == (500, "command already exists: X")
    assert error.ids == result.ids
    text = str(error)
    assert "HTTP 500" in text and "id0" in text and "+3 more" in text and "command already exists" in text
    assert "\n" not in text
    assert "no HTTP answer" in str(MDMServerError(["A"], None, "ConnectionRefused"))
    ChunkResult(["A"], True, 200, "", []).raise_for_error()  # ok: nothing raised


def test_constructor_validation() -> None:
    with pytest.raises(ValueError, match="enqueue URL, push URL, and API required"):
        HTTPMDMServerClient("http://h/", "http://h/", "")
    with pytest.raises(ValueError):
        HTTPMDMServerClient("http://h/", "http://h/", "k", timeout=0)
    with pytest.raises(ValueError):
        HTTPMDMServerClient("not a url", "http://h/", "k")


@pytest.mark.parametrize("missing", ["enqueue_url", "push_url", "enqueue_api_value"])
def test_from_settings_requires_all_three(missing: str) -> None:
    values = {
        "enqueue_url": "http://h/v1/enqueue/",
        "push_url": "http://h/v1/push/",
        "enqueue_api_value": "k",
    }
    values[missing] = ""
    with pytest.raises(ConfigError, match=r"^enqueue URL, push URL, and API required$"):
        HTTPMDMServerClient.from_settings(Settings(**values))  # type: ignore[arg-type]


def test_from_settings(nanomdm: FakeMDMServer) -> None:
    settings = Settings.from_env(
        {
            "NANOCMD_ENQUEUE_URL": nanomdm.enqueue_url.rstrip("/"),
            "NANOCMD_PUSH_URL": nanomdm.push_url,
            "NANOCMD_ENQUEUE_API": API_KEY,
        }
    )
    client = HTTPMDMServerClient.from_settings(settings)
    assert client.enqueue_url == nanomdm.enqueue_url and client.max_ids_per_request == 30
    assert client.enqueue(["A"], command()).ok

    micro = HTTPMDMServerClient.from_settings(
        Settings(
            enqueue_url="http://h/v1/commands", push_url="http://h/push", enqueue_api_value="k", micromdm=True
        )
    )
    assert micro.max_ids_per_request == 1 and micro.mode.enqueue_method == "POST"

    with pytest.raises(ConfigError):
        HTTPMDMServerClient.from_settings(
            Settings(enqueue_url="h/x", push_url="http://h/", enqueue_api_value="k")
        )


def test_from_settings_reads_the_key_from_a_secret() -> None:
    settings = Settings(
        enqueue_url="http://h/v1/enqueue/",
        push_url="http://h/v1/push/",
        enqueue_api_secret="arn:secret",
        secret_reader=lambda name: "from-" + name,
    )
    client = HTTPMDMServerClient.from_settings(settings)
    assert client._headers["authorization"] == basic("nanomdm", "from-arn:secret")


def test_logs_carry_ids_status_and_url_but_never_the_key(
    nanomdm: FakeMDMServer, caplog: pytest.LogCaptureFixture
) -> None:
    nanomdm.fail_always(status=500, body=b"broken")
    with caplog.at_level(logging.DEBUG):
        client_for(nanomdm, retries=1).enqueue(["A"], command())
    records = [r for r in caplog.records if "MDM server" in r.getMessage()]
    assert [r.levelname for r in records] == ["WARNING", "ERROR"]
    final = records[-1].__dict__
    assert final["ids"] == ["A"] and final["http_status"] == 500 and final["method"] == "PUT"
    assert final["url"] == nanomdm.enqueue_url + "A"
    dumped = " ".join(str(r.__dict__) for r in caplog.records)
    assert API_KEY not in dumped and base64.b64encode(f"nanomdm:{API_KEY}".encode()).decode() not in dumped
