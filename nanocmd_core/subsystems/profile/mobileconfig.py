"""Reading a configuration profile's top-level keys on upload (subsystems.md §4.4, §7.3).

A profile arrives as an XML plist, a binary plist, or a CMS (PKCS#7) SignedData in DER/BER whose
encapsulated content is the plist. Only the top-level keys are read; the bytes are stored exactly
as uploaded, so a signed profile keeps its signature.

Deliberate differences from the Go original:

* The fvenable template's ``<data>__CERTIFICATE__</data>`` placeholder is not valid base64; it is
  stood in for by empty data while reading, so the documented customisation (download, edit,
  upload as ``io.micromdm.wf.fvenable.v1``) works (design.md §6).
* A UTF-8 byte-order mark or leading whitespace before an XML plist is tolerated.
* For signed profiles the message-digest signed attribute is checked against the content (so a
  profile altered after signing is refused), but signatures are not verified cryptographically:
  the Go original does not validate a chain either, and the device verifies the signature itself.
"""

from __future__ import annotations

import hashlib
import plistlib
import re
from dataclasses import dataclass
from typing import Any

from asn1crypto import cms

CERTIFICATE_PLACEHOLDER = b"__CERTIFICATE__"
_PLACEHOLDER_DATA = re.compile(rb"<data>\s*" + re.escape(CERTIFICATE_PLACEHOLDER) + rb"\s*</data>")
_BOM = b"\xef\xbb\xbf"
_XML_WHITESPACE = b" \t\r\n"


class ProfileParseError(ValueError):
    """The bytes are not a usable profile; the message is the API's 400 text."""


@dataclass(frozen=True)
class Mobileconfig:
    """The top-level keys of a profile (missing keys are empty / 0)."""

    identifier: str
    uuid: str
    payload_type: str = ""
    version: int = 0
    display_name: str = ""
    description: str = ""
    organization: str = ""
    signed: bool = False


def _is_xml(raw: bytes) -> bool:
    return raw.removeprefix(_BOM).lstrip(_XML_WHITESPACE).startswith(b"<")


def is_plist(raw: bytes) -> bool:
    """Unsigned property list (XML or binary), as opposed to a CMS structure."""
    return raw.startswith(b"bplist0") or _is_xml(raw)


def _digest(algorithm: str, content: bytes) -> bytes:
    try:
        return hashlib.new(algorithm, content).digest()
    except ValueError as exc:
        raise ProfileParseError(f"verifying pkcs7: unsupported digest algorithm {algorithm}") from exc


def signed_content(raw: bytes) -> bytes:
    """The encapsulated content of a CMS SignedData, after checking each signer's message digest."""
    try:
        info = cms.ContentInfo.load(raw)
        if info["content_type"].native != "signed_data":
            raise ValueError(f"not signed data: {info['content_type'].native}")
        signed = info["content"]
        content = signed["encap_content_info"]["content"]
        if content is None or content.native is None:
            raise ValueError("no encapsulated content (detached signature)")
        data = content.native
        if not isinstance(data, bytes):
            raise ValueError("encapsulated content is not an octet string")
        signers: list[Any] = list(signed["signer_infos"])
    except ProfileParseError:
        raise
    except Exception as exc:  # asn1crypto raises ValueError, TypeError, KeyError... on bad input
        raise ProfileParseError(f"parsing pkcs7: {exc}") from exc
    if not signers:
        raise ProfileParseError("verifying pkcs7: no signers")
    for signer in signers:
        attrs = signer["signed_attrs"]
        if not attrs or attrs.native is None:
            continue
        digests = [a["values"][0].native for a in attrs if a["type"].native == "message_digest"]
        if not digests:
            raise ProfileParseError("verifying pkcs7: signed attributes without a message digest")
        algorithm = signer["digest_algorithm"]["algorithm"].native
        if _digest(algorithm, data) != digests[0]:
            raise ProfileParseError("verifying pkcs7: message digest does not match the content")
    return bytes(data)


def _load_plist(raw: bytes) -> dict[str, Any]:
    if _is_xml(raw):
        raw = _PLACEHOLDER_DATA.sub(b"<data></data>", raw.removeprefix(_BOM).lstrip(_XML_WHITESPACE))
    try:
        doc = plistlib.loads(raw)
    except Exception as exc:  # plistlib raises ValueError, ExpatError, binascii.Error, ...
        raise ProfileParseError(f"unmarshal plist: {exc}") from exc
    if not isinstance(doc, dict):
        raise ProfileParseError(f"unmarshal plist: top level is a {type(doc).__name__}, not a dict")
    return doc


def _text(doc: dict[str, Any], key: str) -> str:
    value = doc.get(key)
    return value if isinstance(value, str) else ""


def parse(raw: bytes) -> Mobileconfig:
    """Read and validate the top-level keys, in the Go original's order of checks."""
    if not raw:
        raise ProfileParseError("empty body")
    signed = not is_plist(raw)
    doc = _load_plist(signed_content(raw) if signed else raw)
    version = doc.get("PayloadVersion")
    profile = Mobileconfig(
        identifier=_text(doc, "PayloadIdentifier"),
        uuid=_text(doc, "PayloadUUID"),
        payload_type=_text(doc, "PayloadType"),
        version=version if isinstance(version, int) and not isinstance(version, bool) else 0,
        display_name=_text(doc, "PayloadDisplayName"),
        description=_text(doc, "PayloadDescription"),
        organization=_text(doc, "PayloadOrganization"),
        signed=signed,
    )
    if not profile.identifier:
        raise ProfileParseError("invalid payload: PayloadIdentifier is empty")
    if not profile.uuid:
        raise ProfileParseError("invalid payload: PayloadUUID is empty")
    if not profile.payload_type:
        raise ProfileParseError("invalid payload: PayloadType is empty")
    if profile.version != 1:
        raise ProfileParseError("invalid payload: PayloadVersion is not 1")
    return profile
