"""The key pair's certificate (subsystems.md §5.2, §7.2) and CMS decryption of what devices send
(§5.3): every listed algorithm, BER, constructed content, and the failure texts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.serialization import pkcs7

from nanocmd_core.subsystems.filevault import cms
from nanocmd_core.subsystems.filevault.keypair import KeyPair, generate_self_signed
from tests.unit.subsystems.filevault.cms_builder import envelope

PRK = b"ABCD-EFGH-IJKL-MNOP-QRST-UVWX"


@pytest.fixture(scope="module")
def pair() -> KeyPair:
    return generate_self_signed()


@pytest.fixture(scope="module")
def other() -> KeyPair:
    return generate_self_signed()


def test_certificate_is_self_signed_filevault_rsa2048(pair: KeyPair) -> None:
    now = datetime.now(UTC)
    cert = pair.certificate
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "filevault")])
    assert cert.subject == name and cert.issuer == name
    assert cert.serial_number == 1 and cert.version == x509.Version.v3
    assert isinstance(pair.key, rsa.RSAPrivateKey) and pair.key.key_size == 2048
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    assert timedelta(minutes=9) < now - cert.not_valid_before_utc < timedelta(minutes=11)
    assert abs(cert.not_valid_after_utc - (now + timedelta(days=3650))) < timedelta(minutes=1)
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.key_encipherment and not usage.key_cert_sign
    cert.verify_directly_issued_by(cert)


def test_empty_common_name_gives_an_empty_subject() -> None:
    assert generate_self_signed("", days=1).certificate.subject == x509.Name([])


def test_key_pair_round_trips_through_its_stored_form(pair: KeyPair) -> None:
    loaded = KeyPair.load(pair.key_pem(), pair.certificate_der)
    assert pair.key_pem().startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert loaded.certificate == pair.certificate
    assert loaded.key.private_numbers() == pair.key.private_numbers()


@pytest.mark.parametrize("algorithm", [None, algorithms.AES128, algorithms.AES256])
def test_decrypts_what_cryptographys_envelope_builder_makes(pair: KeyPair, algorithm: object) -> None:
    builder = pkcs7.PKCS7EnvelopeBuilder().set_data(PRK).add_recipient(pair.certificate)
    if algorithm is not None:
        builder = builder.set_content_encryption_algorithm(algorithm)  # type: ignore[arg-type]
    blob = builder.encrypt(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])
    assert cms.decrypt(blob, pair.certificate, pair.key) == PRK


@pytest.mark.parametrize(
    "content", [cms.DES_CBC, cms.DES_EDE3_CBC, cms.AES128_CBC, cms.AES256_CBC, cms.AES128_GCM, cms.AES256_GCM]
)
@pytest.mark.parametrize("key_transport", [cms.RSA_PKCS1, cms.RSA_OAEP])
def test_every_listed_algorithm(pair: KeyPair, content: str, key_transport: str) -> None:
    blob = envelope(PRK, pair.certificate, content=content, key_transport=key_transport)
    assert cms.decrypt(blob, pair.certificate, pair.key) == PRK


def test_oaep_with_sha256_parameters(pair: KeyPair) -> None:
    blob = envelope(PRK, pair.certificate, key_transport=cms.RSA_OAEP, oaep_sha256=True)
    assert cms.decrypt(blob, pair.certificate, pair.key) == PRK


@pytest.mark.parametrize(("ber", "chunked"), [(True, False), (False, True), (True, True)])
def test_ber_indefinite_lengths_and_constructed_content(pair: KeyPair, ber: bool, chunked: bool) -> None:
    blob = envelope(PRK, pair.certificate, ber=ber, chunked=chunked)
    assert cms.decrypt(blob, pair.certificate, pair.key) == PRK


def test_not_enveloped_data_is_not_decryptable(pair: KeyPair) -> None:
    blob = envelope(PRK, pair.certificate, content_type="1.2.840.113549.1.7.2")
    with pytest.raises(cms.CMSError, match="content data is not decryptable"):
        cms.parse_enveloped(blob)


def test_garbage_does_not_parse() -> None:
    with pytest.raises(cms.CMSError):
        cms.parse_enveloped(b"not a cms at all")


def test_another_certificate_has_no_recipient(pair: KeyPair, other: KeyPair) -> None:
    """Same issuer name and serial as ours, but the device encrypted to another key."""
    blob = envelope(PRK, other.certificate)
    with pytest.raises(cms.CMSError):
        cms.decrypt(blob, pair.certificate, pair.key)
    wrong_serial = envelope(PRK, pair.certificate, serial=2)
    with pytest.raises(cms.CMSError, match="no enveloped recipient for provided certificate"):
        cms.decrypt(wrong_serial, pair.certificate, pair.key)


def test_unsupported_content_algorithm(pair: KeyPair) -> None:
    blob = envelope(PRK, pair.certificate, content="2.16.840.1.101.3.4.1.22")  # AES-192-CBC
    with pytest.raises(cms.CMSError, match="unsupported content encryption algorithm"):
        cms.decrypt(blob, pair.certificate, pair.key)


def test_tampered_content_fails(pair: KeyPair) -> None:
    blob = bytearray(envelope(PRK, pair.certificate, content=cms.AES128_GCM))
    blob[-1] ^= 0xFF
    with pytest.raises(cms.CMSError):
        cms.decrypt(bytes(blob), pair.certificate, pair.key)
