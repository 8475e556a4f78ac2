"""Builds CMS EnvelopedData the way devices send it, byte by byte, so the tests can cover what
``cryptography``'s builder cannot make: BER indefinite lengths, constructed content, OAEP, 3DES,
DES and AES-GCM (subsystems.md §5.3)."""

from __future__ import annotations

import os

from cryptography import x509
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from nanocmd_core.subsystems.filevault import cms


def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def tlv(tag: int, *parts: bytes, ber: bool = False) -> bytes:
    """DER TLV, or BER with indefinite length (constructed tags only) when ``ber``."""
    body = b"".join(parts)
    if ber:
        return bytes([tag, 0x80]) + body + b"\x00\x00"
    return bytes([tag]) + _len(len(body)) + body


def oid(dotted: str) -> bytes:
    nums = [int(x) for x in dotted.split(".")]
    out = bytearray([nums[0] * 40 + nums[1]])
    for n in nums[2:]:
        chunk = [n & 0x7F]
        n >>= 7
        while n:
            chunk.append(0x80 | (n & 0x7F))
            n >>= 7
        out += bytes(reversed(chunk))
    return tlv(0x06, bytes(out))


def integer(n: int) -> bytes:
    return tlv(0x02, n.to_bytes(max(1, (n.bit_length() + 8) // 8), "big"))


def octets(data: bytes) -> bytes:
    return tlv(0x04, data)


NULL = b"\x05\x00"
SHA256 = "2.16.840.1.101.3.4.2.1"
MGF1 = "1.2.840.113549.1.1.8"


def envelope(
    plaintext: bytes,
    certificate: x509.Certificate,
    *,
    content: str = cms.AES256_CBC,
    key_transport: str = cms.RSA_PKCS1,
    oaep_sha256: bool = False,
    ber: bool = False,
    chunked: bool = False,
    serial: int | None = None,
    content_type: str = cms.ENVELOPED_DATA,
) -> bytes:
    """A ContentInfo(EnvelopedData) with one key-transport recipient for ``certificate``."""
    key_size = {cms.DES_CBC: 8, cms.DES_EDE3_CBC: 24, cms.AES128_CBC: 16, cms.AES128_GCM: 16}.get(content, 32)
    content_key = os.urandom(key_size)
    if content in (cms.AES128_GCM, cms.AES256_GCM):
        nonce = os.urandom(12)
        ciphertext = AESGCM(content_key).encrypt(nonce, plaintext, None)  # ciphertext || 16-byte tag
        params = tlv(0x30, octets(nonce), integer(16))
    else:
        des = content in (cms.DES_CBC, cms.DES_EDE3_CBC)
        block = 8 if des else 16
        iv = os.urandom(block)
        padder = sym_padding.PKCS7(block * 8).padder()
        padded = padder.update(plaintext) + padder.finalize()
        key = content_key * 3 if content == cms.DES_CBC else content_key
        algorithm = TripleDES(key) if des else algorithms.AES(content_key)
        encryptor = Cipher(algorithm, modes.CBC(iv)).encryptor()
        ciphertext = encryptor.update(padded) + encryptor.finalize()
        params = octets(iv)

    public_key = certificate.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    if key_transport == cms.RSA_OAEP:
        digest: hashes.HashAlgorithm = hashes.SHA256() if oaep_sha256 else hashes.SHA1()
        encrypted_key = public_key.encrypt(content_key, padding.OAEP(padding.MGF1(digest), digest, None))
        sha256_id = tlv(0x30, oid(SHA256), NULL)
        key_params = (
            tlv(0x30, tlv(0xA0, sha256_id), tlv(0xA1, tlv(0x30, oid(MGF1), sha256_id)))
            if oaep_sha256
            else tlv(0x30)
        )
    else:
        encrypted_key = public_key.encrypt(content_key, padding.PKCS1v15())
        key_params = NULL

    issuer = certificate.issuer.public_bytes(serialization.Encoding.DER)
    recipient = tlv(
        0x30,
        integer(0),
        tlv(0x30, issuer, integer(certificate.serial_number if serial is None else serial)),
        tlv(0x30, oid(key_transport), key_params),
        octets(encrypted_key),
    )
    if chunked:  # constructed [0] IMPLICIT OCTET STRING made of several primitive parts
        parts = [octets(ciphertext[i : i + 5]) for i in range(0, len(ciphertext), 5)]
        encrypted_content = tlv(0xA0, *parts, ber=ber)
    else:
        encrypted_content = tlv(0x80, ciphertext)
    content_info = tlv(
        0x30, oid("1.2.840.113549.1.7.1"), tlv(0x30, oid(content), params), encrypted_content, ber=ber
    )
    enveloped = tlv(0x30, integer(0), tlv(0x31, recipient), content_info, ber=ber)
    return tlv(0x30, oid(content_type), tlv(0xA0, enveloped, ber=ber), ber=ber)
