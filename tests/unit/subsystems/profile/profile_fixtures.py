"""Configuration profiles built per Apple's schema (Configuration Profile Reference: top-level
``PayloadContent``, ``PayloadIdentifier``, ``PayloadUUID``, ``PayloadType`` = ``Configuration``,
``PayloadVersion`` = 1), plain, binary and CMS-signed, for the profile subsystem's tests."""

from __future__ import annotations

import datetime
import os
import plistlib
from typing import Any


def profile_doc(identifier: str, uuid: str, padding: int = 0, **top: Any) -> dict[str, Any]:
    """A one-payload profile; ``padding`` bytes of random data make it as large as wanted."""
    payload: dict[str, Any] = {
        "PayloadType": "com.apple.dock",
        "PayloadIdentifier": f"{identifier}.dock",
        "PayloadUUID": f"{uuid[:-4]}0001" if len(uuid) > 4 else uuid + "-1",
        "PayloadVersion": 1,
        "orientation": "left",
    }
    if padding:
        payload["PayloadContent"] = os.urandom(padding)
    doc: dict[str, Any] = {
        "PayloadContent": [payload],
        "PayloadDisplayName": f"Test {identifier}",
        "PayloadIdentifier": identifier,
        "PayloadType": "Configuration",
        "PayloadUUID": uuid,
        "PayloadVersion": 1,
    }
    doc.update(top)
    return doc


def profile_xml(identifier: str, uuid: str, padding: int = 0, **top: Any) -> bytes:
    return plistlib.dumps(profile_doc(identifier, uuid, padding, **top), fmt=plistlib.FMT_XML)


def profile_binary(identifier: str, uuid: str, **top: Any) -> bytes:
    return plistlib.dumps(profile_doc(identifier, uuid, **top), fmt=plistlib.FMT_BINARY)


def sign(content: bytes) -> bytes:
    """A CMS SignedData (DER, content attached) over ``content`` with a throw-away self-signed
    certificate, as ``security cms -S`` or a profile signing tool produces."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import pkcs7
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Profile Signer")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(minutes=10))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(content)
        .add_signer(cert, key, hashes.SHA256())
        .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])
    )


FVENABLE_TEMPLATE_HEAD = b"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
\t<key>PayloadContent</key>
\t<array>
\t\t<dict>
\t\t\t<key>PayloadContent</key>
\t\t\t<data>__CERTIFICATE__</data>
\t\t\t<key>PayloadIdentifier</key>
\t\t\t<string>io.micromdm.wf.fvenable.v1.payload.pkcs1</string>
\t\t\t<key>PayloadType</key>
\t\t\t<string>com.apple.security.pkcs1</string>
\t\t\t<key>PayloadUUID</key>
\t\t\t<string>00FD73C8-9AE6-4A1E-BBD0-22315CDE7533</string>
\t\t\t<key>PayloadVersion</key>
\t\t\t<integer>1</integer>
\t\t</dict>
\t</array>
"""
FVENABLE_TEMPLATE = (
    FVENABLE_TEMPLATE_HEAD
    + b"""\t<key>PayloadDisplayName</key>
\t<string>FileVault</string>
\t<key>PayloadIdentifier</key>
\t<string>io.micromdm.wf.fvenable.v1.profile</string>
\t<key>PayloadType</key>
\t<string>Configuration</string>
\t<key>PayloadUUID</key>
\t<string>49DDB449-163E-4408-B05D-FA4814CDEE3E</string>
\t<key>PayloadVersion</key>
\t<integer>1</integer>
</dict>
</plist>
"""
)
"""A cut-down fvenable template (workflows.md §7.7) with the ``__CERTIFICATE__`` placeholder."""
