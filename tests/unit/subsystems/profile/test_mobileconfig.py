"""Reading a profile's top-level keys: XML, binary, CMS-signed, the fvenable placeholder, and the
Go original's error texts (subsystems.md §4.4)."""

from __future__ import annotations

import plistlib
from pathlib import Path

import pytest

from nanocmd_core.subsystems.profile.mobileconfig import ProfileParseError, is_plist, parse, signed_content
from tests.unit.subsystems.profile.profile_fixtures import (
    FVENABLE_TEMPLATE,
    profile_binary,
    profile_doc,
    profile_xml,
    sign,
)

pytest.importorskip("cryptography")


def test_xml_and_binary_profiles() -> None:
    for raw in (profile_xml("com.example.dock", "UUID-1"), profile_binary("com.example.dock", "UUID-1")):
        parsed = parse(raw)
        assert (parsed.identifier, parsed.uuid, parsed.signed) == ("com.example.dock", "UUID-1", False)
        assert parsed.payload_type == "Configuration" and parsed.version == 1
        assert is_plist(raw)


def test_signed_profile_reads_the_inner_plist() -> None:
    inner = profile_xml("com.example.signed", "UUID-S")
    raw = sign(inner)
    assert not is_plist(raw)
    assert signed_content(raw) == inner
    parsed = parse(raw)
    assert (parsed.identifier, parsed.uuid, parsed.signed) == ("com.example.signed", "UUID-S", True)


def test_signed_binary_plist_profile() -> None:
    parsed = parse(sign(profile_binary("com.example.bin", "UUID-B")))
    assert parsed.identifier == "com.example.bin" and parsed.signed


def test_tampered_signed_content_is_refused() -> None:
    inner = profile_xml("com.example.signed", "UUID-S")
    raw = sign(inner)
    at = raw.index(b"UUID-S")
    tampered = raw[:at] + b"UUID-T" + raw[at + 6 :]
    with pytest.raises(ProfileParseError, match=r"^verifying pkcs7: message digest"):
        parse(tampered)


def test_fvenable_template_placeholder_is_accepted() -> None:
    """design.md §6: the placeholder in <data> is not base64, yet the upload must be readable."""
    with pytest.raises(ValueError):
        plistlib.loads(FVENABLE_TEMPLATE)  # what makes the Go original refuse it
    parsed = parse(FVENABLE_TEMPLATE)
    assert parsed.identifier == "io.micromdm.wf.fvenable.v1.profile"
    assert parsed.uuid == "49DDB449-163E-4408-B05D-FA4814CDEE3E"


def test_leading_bom_and_whitespace_are_tolerated() -> None:
    raw = profile_xml("com.example.ws", "U")
    assert parse(b"\xef\xbb\xbf\n  " + raw).identifier == "com.example.ws"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "empty body"),
        (b"not a profile at all", r"^parsing pkcs7: "),
        (b"\x30\x03\x02\x01\x01", r"^parsing pkcs7: "),
        (b"<?xml version='1.0'?><plist><dict><key>a</key>", r"^unmarshal plist: "),
        (b"bplist00garbage", r"^unmarshal plist: "),
        (plistlib.dumps(["a", "list"]), r"^unmarshal plist: top level is a list"),
        (profile_xml("", "U"), r"^invalid payload: PayloadIdentifier is empty$"),
        (profile_xml("com.x", ""), r"^invalid payload: PayloadUUID is empty$"),
        (profile_xml("com.x", "U", PayloadType=""), r"^invalid payload: PayloadType is empty$"),
        (profile_xml("com.x", "U", PayloadVersion=2), r"^invalid payload: PayloadVersion is not 1$"),
        (profile_xml("com.x", "U", PayloadIdentifier=7), r"PayloadIdentifier is empty"),
    ],
)
def test_errors_carry_the_go_texts(raw: bytes, message: str) -> None:
    with pytest.raises(ProfileParseError, match=message):
        parse(raw)


def test_signed_non_profile_is_refused() -> None:
    with pytest.raises(ProfileParseError, match=r"^unmarshal plist: "):
        parse(sign(b"hello"))
    with pytest.raises(ProfileParseError, match=r"PayloadUUID is empty"):
        parse(sign(plistlib.dumps({**profile_doc("com.x", "U"), "PayloadUUID": ""})))


def test_go_testdata(shared_testdata: Path) -> None:
    """subsystems.md §4.4's unit test, and the certprof SCEP profile, signed and not."""
    raw = (shared_testdata / "utils" / "mobileconfig" / "testdata" / "test.mobileconfig").read_bytes()
    parsed = parse(raw)
    assert parsed.display_name == "Google Chrome Default Browser"
    assert parsed.identifier == "0DA6B871-623D-400A-B0EB-3BE489E39F2A"
    assert parsed.organization == "Org" and parsed.payload_type == "Configuration"
    assert parsed.uuid == "D0CCE647-B1D6-49B0-82BC-C1BCC8A33218"
    assert parsed.version == 1 and parsed.description == ""
    assert parse(sign(raw)) == type(parsed)(**{**parsed.__dict__, "signed": True})
    scep = (shared_testdata / "workflow" / "certprof" / "testdata" / "scep.mobileconfig").read_bytes()
    for candidate in (scep, sign(scep)):
        info = parse(candidate)
        assert (info.identifier, info.uuid) == ("com.example.scep", "99DE38CA-FE94-49EA-BADB-768D89049973")
