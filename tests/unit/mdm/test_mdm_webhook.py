"""The webhook body model: Go-compatible JSON decoding, the enrollment-ID rule, routing helpers."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from nanocmd_core.mdm.errors import MDMParseError
from nanocmd_core.mdm.webhook import (
    AcknowledgeEvent,
    CheckinEvent,
    WebhookEvent,
    WebhookParseError,
    enrolling_from_tally,
    parse_webhook,
)

REPO_ROOT = Path(__file__).resolve().parents[3]

REPORT = (
    b'<?xml version="1.0"?><plist version="1.0">'
    b"<dict><key>Status</key><string>Acknowledged</string></dict></plist>"
)
REPORT_B64 = base64.b64encode(REPORT).decode()
UDID = "FF269FDC-7A93-5F12-A4B7-09923F0D1F7F"


def body(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def connect(**ack: Any) -> dict[str, Any]:
    event = {"udid": UDID, "status": "Acknowledged", "command_uuid": "c-1", "raw_payload": REPORT_B64}
    event.update(ack)
    return {
        "topic": "mdm.Connect",
        "event_id": "",
        "created_at": "2023-05-24T14:28:06Z",
        "acknowledge_event": event,
    }


def checkin(topic: str = "mdm.TokenUpdate", **ev: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"udid": UDID, "url_params": {}, "raw_payload": REPORT_B64}
    event.update(ev)
    return {"topic": topic, "checkin_event": event}


def invalid(raw: bytes | dict[str, Any]) -> str:
    with pytest.raises(WebhookParseError) as info:
        parse_webhook(raw if isinstance(raw, bytes) else body(raw))
    return str(info.value)


def test_spec_example_command_report() -> None:
    ev = parse_webhook(body(connect(url_params={"group": "staff"})))
    assert ev.topic == "mdm.Connect"
    assert ev.is_command_report
    assert not ev.is_idle
    assert ev.checkin_type is None
    assert ev.created_at == datetime(2023, 5, 24, 14, 28, 6, tzinfo=UTC)
    ack = ev.acknowledge_event
    assert isinstance(ack, AcknowledgeEvent)
    assert (ack.udid, ack.status, ack.command_uuid) == (UDID, "Acknowledged", "c-1")
    assert ack.raw_payload == REPORT
    assert ev.raw_payload == REPORT
    assert ev.enrollment_id == UDID
    assert ev.url_params == {"group": "staff"}
    assert ev.checkin_event is None


def test_idle_report() -> None:
    ev = parse_webhook(body(connect(status="Idle", command_uuid="", raw_payload="")))
    assert ev.is_idle
    assert ev.raw_payload == b""


def test_idle_status_outside_connect_is_not_idle() -> None:
    raw = {"topic": "mdm.TokenUpdate", "acknowledge_event": {"status": "Idle"}}
    assert not parse_webhook(body(raw)).is_idle


def test_checkin_event() -> None:
    ev = parse_webhook(body(checkin(token_update_tally=1, url_params={"a": "b"})))
    assert ev.checkin_type == "TokenUpdate"
    assert not ev.is_command_report
    ci = ev.checkin_event
    assert isinstance(ci, CheckinEvent)
    assert ci.token_update_tally == 1
    assert ci.enrolling
    assert ev.url_params == {"a": "b"}
    assert ev.raw_payload == REPORT


def test_field_names_are_case_insensitive() -> None:
    raw = {
        "TOPIC": "mdm.Connect",
        "Event_ID": "e-1",
        "Created_At": "2023-05-24T14:28:06Z",
        "Acknowledge_Event": {
            "UDID": UDID,
            "Status": "NotNow",
            "COMMAND_UUID": "c-9",
            "Raw_Payload": REPORT_B64,
            "IDs": {"ID": "id-1", "Parent_ID": "p-1", "TYPE": "Device"},
            "URL_Params": {"Group": "Staff", "group": "other"},
        },
    }
    ev = parse_webhook(body(raw))
    assert (ev.topic, ev.event_id) == ("mdm.Connect", "e-1")
    ack = ev.acknowledge_event
    assert ack is not None
    assert (ack.udid, ack.status, ack.command_uuid, ack.raw_payload) == (UDID, "NotNow", "c-9", REPORT)
    assert ack.ids is not None
    assert (ack.ids.id, ack.ids.parent_id, ack.ids.type) == ("id-1", "p-1", "Device")
    # url_params keys are data: case kept, not folded together
    assert ev.url_params == {"Group": "Staff", "group": "other"}


def test_unicode_folding_like_go() -> None:
    # Go's case folding maps the Kelvin sign to k and long s to s, so these still match
    raw = b'{"topic":"mdm.Connect","acknowledge_event":{"\xc5\xbftatus":"Idle","udid":"x"}}'
    assert parse_webhook(raw).is_idle


def test_later_duplicate_key_wins_across_case() -> None:
    raw = b'{"topic":"a","Topic":"b","topic":"c","event_id":"1","EVENT_ID":"2"}'
    ev = parse_webhook(raw)
    assert (ev.topic, ev.event_id) == ("c", "2")


def test_unknown_fields_are_ignored() -> None:
    raw = connect(extra={"x": [1, 2]}, other=5)
    raw["future_field"] = {"nested": True}
    ev = parse_webhook(body(raw))
    assert ev.acknowledge_event is not None
    assert ev.acknowledge_event.status == "Acknowledged"


def test_nulls_leave_defaults() -> None:
    raw = {
        "topic": "mdm.Connect",
        "event_id": None,
        "created_at": None,
        "checkin_event": None,
        "acknowledge_event": {
            "udid": None,
            "enrollment_id": "E",
            "url_params": None,
            "raw_payload": None,
            "ids": None,
        },
    }
    ev = parse_webhook(body(raw))
    assert (ev.event_id, ev.created_at, ev.checkin_event) == ("", None, None)
    assert ev.enrollment_id == "E"
    assert ev.url_params is None
    assert ev.raw_payload == b""


# --- enrollment id rule (design.md §6) ------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"udid": "U", "enrollment_id": "E", "ids": {"id": "I", "parent_id": "U", "type": "User"}}, "I"),
        ({"udid": "U", "enrollment_id": "E", "ids": {"id": ""}}, "U"),
        ({"udid": "U", "enrollment_id": "E", "ids": {}}, "U"),
        ({"udid": "U", "enrollment_id": "E"}, "U"),
        ({"udid": "", "enrollment_id": "E"}, "E"),
        ({"enrollment_id": "E", "ids": {"parent_id": "P"}}, "E"),
        ({}, ""),
    ],
)
@pytest.mark.parametrize("kind", ["acknowledge_event", "checkin_event"])
def test_enrollment_id_rule(fields: dict[str, Any], expected: str, kind: str) -> None:
    topic = "mdm.Connect" if kind == "acknowledge_event" else "mdm.Authenticate"
    ev = parse_webhook(body({"topic": topic, kind: fields}))
    assert ev.enrollment_id == expected


def test_enrollment_id_without_sub_event_is_empty() -> None:
    ev = parse_webhook(b'{"topic":"mdm.Connect"}')
    assert ev.enrollment_id == ""
    assert ev.url_params is None
    assert ev.raw_payload == b""
    assert not ev.is_idle


def test_topic_picks_the_sub_event() -> None:
    raw = {
        "topic": "mdm.Connect",
        "acknowledge_event": {"udid": "A", "url_params": {"from": "ack"}},
        "checkin_event": {"udid": "C", "url_params": {"from": "checkin"}},
    }
    ev = parse_webhook(body(raw))
    assert (ev.enrollment_id, ev.url_params) == ("A", {"from": "ack"})
    raw["topic"] = "mdm.CheckOut"
    ev = parse_webhook(body(raw))
    assert (ev.enrollment_id, ev.url_params) == ("C", {"from": "checkin"})
    # only the "wrong" one present: still found
    ev = parse_webhook(body({"topic": "mdm.CheckOut", "acknowledge_event": {"udid": "A"}}))
    assert ev.enrollment_id == "A"


def test_ids_type_may_be_numeric() -> None:
    ev = parse_webhook(body(connect(ids={"id": "I", "type": 2})))
    assert ev.acknowledge_event is not None and ev.acknowledge_event.ids is not None
    assert ev.acknowledge_event.ids.type == "2"


# --- url_params -------------------------------------------------------------------------------


@pytest.mark.parametrize("params", [None, {}])
def test_empty_url_params_are_none(params: dict[str, str] | None) -> None:
    assert parse_webhook(body(connect(url_params=params))).url_params is None


def test_url_params_property_is_a_copy() -> None:
    ev = parse_webhook(body(connect(url_params={"a": "1"})))
    params = ev.url_params
    assert params == {"a": "1"}
    params["b"] = "2"
    assert ev.url_params == {"a": "1"}


def test_null_url_param_value_is_empty_string_like_go() -> None:
    assert parse_webhook(body(connect(url_params={"a": None}))).url_params == {"a": ""}


@pytest.mark.parametrize("value", [1, 1.5, True, ["x"], {"y": "z"}])
def test_non_string_url_param_value_is_invalid(value: Any) -> None:
    assert "url_params.a" in invalid(connect(url_params={"a": value}))


@pytest.mark.parametrize("params", ["a=b", ["a", "b"], 3])
def test_url_params_must_be_an_object(params: Any) -> None:
    assert "url_params" in invalid(checkin(url_params=params))


# --- raw_payload ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload", ["not base64!", "YQ", "YQ=", "====", "Y Q==", "YQ==\t", 12, True, ["YQ=="]]
)
def test_invalid_base64_is_invalid(payload: Any) -> None:
    assert "raw_payload" in invalid(connect(raw_payload=payload))


def test_url_safe_alphabet_is_rejected() -> None:
    data = bytes([0xFB, 0xFF, 0xBF])  # standard "+/+/" vs url-safe "-_-_"
    assert base64.b64encode(data) == b"+/+/"
    assert parse_webhook(body(connect(raw_payload="+/+/"))).raw_payload == data
    assert "raw_payload" in invalid(connect(raw_payload="-_-_"))


def test_base64_line_breaks_are_ignored_like_go() -> None:
    wrapped = "\r\n".join(REPORT_B64[i : i + 20] for i in range(0, len(REPORT_B64), 20))
    assert parse_webhook(body(connect(raw_payload=wrapped))).raw_payload == REPORT


# --- created_at -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2023-05-24T14:28:06Z", datetime(2023, 5, 24, 14, 28, 6, tzinfo=UTC)),
        (
            "2023-05-24T14:28:06.253316-07:00",
            datetime(2023, 5, 24, 14, 28, 6, 253316, tzinfo=timezone(-timedelta(hours=7))),
        ),
        ("2023-05-24T14:28:06.123456789+05:30", datetime(2023, 5, 24, 8, 58, 6, 123456, tzinfo=UTC)),
        ("2023-05-24t14:28:06.5z", datetime(2023, 5, 24, 14, 28, 6, 500000, tzinfo=UTC)),
    ],
)
def test_valid_created_at(value: str, expected: datetime) -> None:
    created = parse_webhook(body({"topic": "x", "created_at": value})).created_at
    assert created == expected
    assert created is not None and created.tzinfo is not None


@pytest.mark.parametrize(
    "value",
    [
        "",
        "2023-05-24",
        "2023-05-24T14:28:06",  # no offset
        "2023-05-24 14:28:06Z",  # space instead of T
        "2023-05-24T14:28Z",
        "2023-05-24T14:28:06.Z",
        "2023-13-01T00:00:00Z",
        "2023-02-30T00:00:00Z",
        "2023-05-24T24:00:00Z",
        "2023-05-24T14:28:06+24:00",
        "2023-05-24T14:28:06+0700",
        "\uff12\uff10\uff12\uff13-05-24T14:28:06Z",  # full-width digits
        "yesterday",
        12345,
        True,
        {"t": 1},
    ],
)
def test_invalid_created_at(value: Any) -> None:
    assert "created_at" in invalid({"topic": "x", "created_at": value})


# --- token_update_tally -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tally", "enrolling"), [(None, True), (1, True), (2, False), (0, False), (-1, False)]
)
def test_tally(tally: int | None, enrolling: bool) -> None:
    ev = parse_webhook(body(checkin(token_update_tally=tally)))
    assert ev.checkin_event is not None
    assert ev.checkin_event.token_update_tally == tally
    assert ev.checkin_event.enrolling is enrolling


@pytest.mark.parametrize("tally", ["true", "1.0", '"1"', "1e0", "[1]", "9223372036854775808"])
def test_non_integer_tally_is_invalid(tally: str) -> None:
    raw = b'{"topic":"mdm.TokenUpdate","checkin_event":{"token_update_tally":' + tally.encode() + b"}}"
    assert "token_update_tally" in invalid(raw)


def test_int64_tally_bounds_accepted() -> None:
    raw = b'{"topic":"mdm.TokenUpdate","checkin_event":{"token_update_tally":9223372036854775807}}'
    ev = parse_webhook(raw)
    assert ev.checkin_event is not None
    assert ev.checkin_event.token_update_tally == 2**63 - 1


@pytest.mark.parametrize(
    ("tally", "expected"), [(None, True), (1, True), (0, False), (2, False), (100, False)]
)
def test_enrolling_from_tally(tally: int | None, expected: bool) -> None:
    assert enrolling_from_tally(tally) is expected


# --- routing helpers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("mdm.Authenticate", "Authenticate"),
        ("mdm.TokenUpdate", "TokenUpdate"),
        ("mdm.CheckOut", "CheckOut"),
        ("mdm.UserAuthenticate", None),
        ("mdm.SetBootstrapToken", None),
        ("mdm.DeclarativeManagement", None),
        ("mdm.Connect", None),
        ("mdm.authenticate", None),
        ("Authenticate", None),
        ("xmdm.TokenUpdate", None),
        ("mdm.TokenUpdate.x", None),
        ("", None),
    ],
)
def test_checkin_type(topic: str, expected: str | None) -> None:
    assert parse_webhook(body({"topic": topic})).checkin_type == expected


def test_is_command_report_is_exact() -> None:
    assert not parse_webhook(body({"topic": "mdm.connect"})).is_command_report
    assert parse_webhook(body({"topic": "mdm.Connect"})).is_command_report


# --- invalid bodies ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"", "invalid JSON"),
        (b"{", "invalid JSON"),
        (b"not json", "invalid JSON"),
        (b'{"topic": NaN}', "invalid JSON"),
        (b'{"topic": "x",}', "invalid JSON"),
        (b"[]", "not a JSON object"),
        (b'"mdm.Connect"', "not a JSON object"),
        (b"null", "not a JSON object"),
        (b"{}", "topic: Field required"),
        (b'{"topic": null}', "topic: Field required"),
        (b'{"topic": 5}', "topic: Input should be a valid string"),
        (b'{"topic": "x", "event_id": 1}', "event_id"),
        (b'{"topic": "mdm.Connect", "acknowledge_event": "x"}', "acknowledge_event"),
        (b'{"topic": "mdm.Connect", "acknowledge_event": [1]}', "acknowledge_event"),
        (b'{"topic": "mdm.Connect", "acknowledge_event": {"status": 1}}', "acknowledge_event.status"),
        (b'{"topic": "mdm.Connect", "acknowledge_event": {"udid": false}}', "acknowledge_event.udid"),
        (b'{"topic": "mdm.Connect", "acknowledge_event": {"ids": "x"}}', "acknowledge_event.ids"),
        (b'{"topic": "mdm.Connect", "acknowledge_event": {"ids": {"id": 5}}}', "acknowledge_event.ids.id"),
        (
            b'{"topic": "mdm.Connect", "acknowledge_event": {"ids": {"type": true}}}',
            "acknowledge_event.ids.type",
        ),
        (b'{"topic": "mdm.CheckOut", "checkin_event": {"enrollment_id": 7}}', "checkin_event.enrollment_id"),
    ],
)
def test_invalid_bodies(raw: bytes, fragment: str) -> None:
    assert fragment in invalid(raw)


def test_error_message_is_short() -> None:
    message = invalid(b'{"topic": 5, "event_id": 6, "created_at": 7}')
    assert "\n" not in message
    assert "https://" not in message
    assert message.startswith("invalid webhook: ")


def test_deep_nesting_is_a_parse_error() -> None:
    raw = b'{"topic":"x","extra":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert "invalid JSON" in invalid(raw)


def test_invalid_utf8_is_replaced_like_go() -> None:
    assert parse_webhook(b'{"topic":"mdm.\xff"}').topic == "mdm.\ufffd"


def test_accepts_str_body() -> None:
    assert parse_webhook(json.dumps(connect())).enrollment_id == UDID


def test_webhook_parse_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_webhook(b"{")
    with pytest.raises(MDMParseError):
        parse_webhook(b"{")


def test_models_can_be_built_in_python() -> None:
    ev = WebhookEvent(topic="mdm.Connect", acknowledge_event=AcknowledgeEvent(udid="U", raw_payload=b"\x00"))
    assert ev.enrollment_id == "U"
    assert ev.raw_payload == b"\x00"


def test_webhook_module_imports_stay_lean() -> None:
    code = (
        "import sys\n"
        "import nanocmd_core.mdm.webhook\n"
        "watched = ('nanocmd_core', 'boto3', 'botocore', 'pynamodb')\n"
        "mods = sorted(m for m in sys.modules if m.startswith(watched))\n"
        "print(','.join(mods))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out.split(",") == [
        "nanocmd_core",
        "nanocmd_core.mdm",
        "nanocmd_core.mdm.errors",
        "nanocmd_core.mdm.webhook",
    ]
