"""Check-in messages: Authenticate, TokenUpdate, CheckOut as devices send them."""

from __future__ import annotations

import base64
import plistlib

import pytest

from nanocmd_core.mdm.checkin import (
    CHECKIN_TYPES,
    Authenticate,
    CheckinMessage,
    CheckinParseError,
    CheckOut,
    TokenUpdate,
    parse_checkin,
)
from nanocmd_core.mdm.errors import MDMParseError, ReportParseError

TOPIC = "com.apple.mgmt.External.3a4c0b7e-0000-4000-8000-0123456789ab"
HEADER = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">\n'
    '<plist version="1.0">\n<dict>\n'
)


def message(message_type: str, body: str) -> bytes:
    return (
        HEADER
        + f"\t<key>MessageType</key>\n\t<string>{message_type}</string>\n"
        + f"\t<key>Topic</key>\n\t<string>{TOPIC}</string>\n"
        + body
        + "</dict>\n</plist>\n"
    ).encode()


AUTHENTICATE = message(
    "Authenticate",
    """\t<key>BuildVersion</key>
\t<string>21G72</string>
\t<key>DeviceName</key>
\t<string>Jane's iPhone</string>
\t<key>IMEI</key>
\t<string>35 000000 000000 0</string>
\t<key>MEID</key>
\t<string>35000000000000</string>
\t<key>Model</key>
\t<string>MN9H2LL/A</string>
\t<key>ModelName</key>
\t<string>iPhone</string>
\t<key>OSVersion</key>
\t<string>15.6</string>
\t<key>ProductName</key>
\t<string>iPhone14,5</string>
\t<key>SerialNumber</key>
\t<string>F2LXX0AAPLJM</string>
\t<key>UDID</key>
\t<string>00008110-000A1B2C3D4E5F60</string>
""",
)

TOKEN = bytes(range(32))
UNLOCK = b"\x01\x02\x03unlock"

TOKEN_UPDATE = message(
    "TokenUpdate",
    f"""\t<key>AwaitingConfiguration</key>
\t<true/>
\t<key>NotOnConsole</key>
\t<false/>
\t<key>PushMagic</key>
\t<string>04EAC351-56EA-4FFF-89A7-C76B1306F36A</string>
\t<key>Token</key>
\t<data>
\t{base64.b64encode(TOKEN).decode()}
\t</data>
\t<key>UDID</key>
\t<string>00008110-000A1B2C3D4E5F60</string>
\t<key>UnlockToken</key>
\t<data>{base64.b64encode(UNLOCK).decode()}</data>
""",
)

USER_TOKEN_UPDATE = message(
    "TokenUpdate",
    f"""\t<key>PushMagic</key>
\t<string>magic</string>
\t<key>Token</key>
\t<data>{base64.b64encode(TOKEN).decode()}</data>
\t<key>UDID</key>
\t<string>UDID-MAC</string>
\t<key>UserID</key>
\t<string>B1D2A3C4-0000-4000-8000-0000000000AA</string>
\t<key>UserLongName</key>
\t<string>Jane Appleseed</string>
\t<key>UserShortName</key>
\t<string>jane</string>
""",
)

CHECKOUT = message("CheckOut", "\t<key>UDID</key>\n\t<string>00008110-000A1B2C3D4E5F60</string>\n")

USER_ENROLLMENT_AUTH = message(
    "Authenticate",
    "\t<key>EnrollmentID</key>\n\t<string>ENR-0001</string>\n"
    "\t<key>EnrollmentUserID</key>\n\t<string>ENRU-0001</string>\n",
)


def test_authenticate() -> None:
    msg = parse_checkin("Authenticate", AUTHENTICATE)
    assert isinstance(msg, Authenticate)
    assert msg.message_type == "Authenticate"
    assert msg.topic == TOPIC
    assert msg.udid == "00008110-000A1B2C3D4E5F60"
    assert msg.build_version == "21G72"
    assert msg.device_name == "Jane's iPhone"
    assert msg.imei == "35 000000 000000 0"
    assert msg.meid == "35000000000000"
    assert msg.model == "MN9H2LL/A"
    assert msg.model_name == "iPhone"
    assert msg.os_version == "15.6"
    assert msg.product_name == "iPhone14,5"
    assert msg.serial_number == "F2LXX0AAPLJM"
    assert msg.raw == AUTHENTICATE


def test_user_enrollment_ids() -> None:
    msg = parse_checkin("Authenticate", USER_ENROLLMENT_AUTH)
    assert (msg.udid, msg.enrollment_id, msg.enrollment_user_id) == ("", "ENR-0001", "ENRU-0001")
    assert isinstance(msg, Authenticate)
    assert msg.serial_number == ""


def test_token_update() -> None:
    msg = parse_checkin("TokenUpdate", TOKEN_UPDATE)
    assert isinstance(msg, TokenUpdate)
    assert msg.awaiting_configuration is True
    assert msg.not_on_console is False
    assert msg.push_magic == "04EAC351-56EA-4FFF-89A7-C76B1306F36A"
    assert msg.token == TOKEN
    assert msg.unlock_token == UNLOCK
    assert msg.enrolling is False


def test_user_channel_token_update() -> None:
    msg = parse_checkin("TokenUpdate", USER_TOKEN_UPDATE)
    assert isinstance(msg, TokenUpdate)
    assert msg.user_id == "B1D2A3C4-0000-4000-8000-0000000000AA"
    assert (msg.user_short_name, msg.user_long_name) == ("jane", "Jane Appleseed")
    assert msg.unlock_token is None
    assert msg.awaiting_configuration is False


def test_enrolling_cannot_come_from_the_plist() -> None:
    raw = plistlib.dumps({"MessageType": "TokenUpdate", "UDID": "x", "enrolling": True})
    msg = parse_checkin("TokenUpdate", raw)
    assert isinstance(msg, TokenUpdate)
    assert msg.enrolling is False


def test_enrolling_is_settable_by_the_engine() -> None:
    msg = parse_checkin("TokenUpdate", TOKEN_UPDATE)
    assert isinstance(msg, TokenUpdate)
    msg.enrolling = True
    assert msg.enrolling is True


def test_checkout() -> None:
    msg = parse_checkin("CheckOut", CHECKOUT)
    assert type(msg) is CheckOut
    assert msg.udid == "00008110-000A1B2C3D4E5F60"
    assert msg.message_type == "CheckOut"


def test_type_comes_from_the_caller_not_the_plist() -> None:
    msg = parse_checkin("Authenticate", CHECKOUT)
    assert type(msg) is Authenticate
    assert msg.message_type == "CheckOut"


def test_unknown_keys_are_kept() -> None:
    raw = message(
        "CheckOut", "\t<key>UDID</key>\n\t<string>u</string>\n\t<key>Future</key>\n\t<integer>1</integer>\n"
    )
    assert parse_checkin("CheckOut", raw).model_extra == {"Future": 1}


def test_registry() -> None:
    assert {"Authenticate": Authenticate, "TokenUpdate": TokenUpdate, "CheckOut": CheckOut} == CHECKIN_TYPES
    assert all(issubclass(cls, CheckinMessage) for cls in CHECKIN_TYPES.values())


@pytest.mark.parametrize(
    "message_type", ["UserAuthenticate", "SetBootstrapToken", "DeclarativeManagement", "", "checkout"]
)
def test_unsupported_message_type(message_type: str) -> None:
    with pytest.raises(CheckinParseError, match=f"^no checkin type for message type: {message_type}$"):
        parse_checkin(message_type, CHECKOUT)


@pytest.mark.parametrize(
    ("raw", "message_text"),
    [
        (b"", "^empty TokenUpdate message$"),
        (b"garbage", "^TokenUpdate message is not a valid plist"),
        (plistlib.dumps([1, 2]), "^TokenUpdate message plist is a list, not a dictionary$"),
        (
            plistlib.dumps({"AwaitingConfiguration": {"x": 1}}),
            "^invalid TokenUpdate message: AwaitingConfiguration",
        ),
        (plistlib.dumps({"UDID": 12}), "^invalid TokenUpdate message: UDID"),
    ],
)
def test_parse_errors(raw: bytes, message_text: str) -> None:
    with pytest.raises(CheckinParseError, match=message_text) as info:
        parse_checkin("TokenUpdate", raw)
    assert isinstance(info.value, ReportParseError)
    assert isinstance(info.value, MDMParseError)
