"""Decryption of the CMS EnvelopedData a device encrypts its FileVault recovery key to
(``FDE_PersonalRecoveryKeyCMS``, ``RotateResult.EncryptedNewRecoveryKey``), per the algorithm of
subsystems.md §5.3.

``cryptography``'s own ``pkcs7_decrypt_der`` only takes DER with RSA PKCS#1 v1.5 and AES-CBC; the
spec requires BER, OAEP, DES/3DES and AES-GCM too, so asn1crypto parses (BER included) and
``cryptography`` does the primitives.
"""

from __future__ import annotations

from typing import Any

from asn1crypto import algos, cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

ENVELOPED_DATA = "1.2.840.113549.1.7.3"
RSA_PKCS1 = "1.2.840.113549.1.1.1"
RSA_OAEP = "1.2.840.113549.1.1.7"
DES_CBC = "1.3.14.3.2.7"
DES_EDE3_CBC = "1.2.840.113549.3.7"
AES128_CBC = "2.16.840.1.101.3.4.1.2"
AES256_CBC = "2.16.840.1.101.3.4.1.42"
AES128_GCM = "2.16.840.1.101.3.4.1.6"
AES256_GCM = "2.16.840.1.101.3.4.1.46"

_KEY_SIZES = {DES_CBC: 8, DES_EDE3_CBC: 24, AES128_CBC: 16, AES256_CBC: 32, AES128_GCM: 16, AES256_GCM: 32}
_OAEP_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


class CMSError(ValueError):
    """The CMS cannot be parsed or decrypted with our key pair."""


class _GCMParameters(core.Sequence):  # type: ignore[misc]
    """RFC 5084 ``GCMParameters``; asn1crypto has no spec for the GCM content OIDs."""

    _fields = [("aes_nonce", core.OctetString), ("aes_icvlen", core.Integer, {"default": 12})]


def parse_enveloped(data: bytes) -> cms.EnvelopedData:
    """Parse ``data`` (DER or BER) as a ContentInfo holding EnvelopedData."""
    try:
        info = cms.ContentInfo.load(data)
        content_type = info["content_type"].dotted
        content = info["content"]
        if content_type != ENVELOPED_DATA:
            raise CMSError("content data is not decryptable")
        # force the lazy parse so structural errors surface here, as "parse PRK CMS"
        content["recipient_infos"].native  # noqa: B018
        _encrypted_content_info(content)
    except CMSError:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        raise CMSError(str(exc)) from exc
    return content


def decrypt_enveloped(
    enveloped: cms.EnvelopedData, certificate: x509.Certificate, key: rsa.RSAPrivateKey
) -> bytes:
    """The plaintext content of ``enveloped`` for our certificate (subsystems.md §5.3 steps 2-4)."""
    try:
        recipient = _our_recipient(enveloped, certificate)
        content_key = _decrypt_key(recipient, key)
        return _decrypt_content(enveloped, content_key)
    except CMSError:
        raise
    except (ValueError, TypeError, KeyError, InvalidTag) as exc:
        raise CMSError(str(exc) or type(exc).__name__) from exc


def decrypt(data: bytes, certificate: x509.Certificate, key: rsa.RSAPrivateKey) -> bytes:
    return decrypt_enveloped(parse_enveloped(data), certificate, key)


def _our_recipient(enveloped: cms.EnvelopedData, certificate: x509.Certificate) -> Any:
    """The first key-transport recipient naming our certificate by issuer and serial number."""
    issuer = asn1_x509.Name.load(certificate.issuer.public_bytes(serialization.Encoding.DER))
    for info in enveloped["recipient_infos"]:
        if info.name != "ktri":
            continue
        rid = info.chosen["rid"]
        if rid.name != "issuer_and_serial_number":
            continue
        if rid.chosen["serial_number"].native == certificate.serial_number and rid.chosen["issuer"] == issuer:
            return info.chosen
    raise CMSError("no enveloped recipient for provided certificate")


def _decrypt_key(recipient: Any, key: rsa.RSAPrivateKey) -> bytes:
    algorithm = recipient["key_encryption_algorithm"]
    oid = algorithm["algorithm"].dotted
    encrypted_key: bytes = recipient["encrypted_key"].native
    if oid == RSA_PKCS1:
        return key.decrypt(encrypted_key, padding.PKCS1v15())
    if oid == RSA_OAEP:
        hash_name = "sha1"
        params = algorithm["parameters"]
        if params.native is not None:
            oaep = algos.RSAESOAEPParams.load(params.dump())
            hash_name = oaep["hash_algorithm"]["algorithm"].native
        if hash_name not in _OAEP_HASHES:
            raise CMSError(f"unsupported OAEP hash: {hash_name}")
        digest = _OAEP_HASHES[hash_name]()
        return key.decrypt(encrypted_key, padding.OAEP(padding.MGF1(digest), digest, None))
    raise CMSError(f"unsupported key encryption algorithm: {oid}")


def _read_tlv(data: bytes, pos: int) -> tuple[int, bytes, int]:
    """(identifier octet, contents, end) of the BER element at ``pos``; indefinite lengths allowed."""
    if pos + 2 > len(data):
        raise CMSError("truncated element")
    tag, length = data[pos], data[pos + 1]
    if tag & 0x1F == 0x1F:
        raise CMSError("unsupported high tag number")
    pos += 2
    if length == 0x80:  # indefinite: constructed contents up to the end-of-contents octets
        if not tag & 0x20:
            raise CMSError("indefinite length on a primitive element")
        cursor = pos
        while data[cursor : cursor + 2] != b"\x00\x00":
            _, _, cursor = _read_tlv(data, cursor)
        return tag, data[pos:cursor], cursor + 2
    if length & 0x80:
        size = length & 0x7F
        if size == 0 or pos + size > len(data):
            raise CMSError("invalid length")
        length = int.from_bytes(data[pos : pos + size], "big")
        pos += size
    if pos + length > len(data):
        raise CMSError("truncated element")
    return tag, data[pos : pos + length], pos + length


def _children(contents: bytes) -> list[tuple[int, bytes, bytes]]:
    """(identifier, contents, whole encoding) of each element in ``contents``."""
    out: list[tuple[int, bytes, bytes]] = []
    pos = 0
    while pos < len(contents):
        tag, inner, end = _read_tlv(contents, pos)
        out.append((tag, inner, contents[pos:end]))
        pos = end
    return out


def _string_value(tag: int, contents: bytes) -> bytes:
    """A primitive string's contents, or the concatenated parts of a constructed one."""
    if not tag & 0x20:
        return contents
    return b"".join(_string_value(t, inner) for t, inner, _ in _children(contents))


def _encrypted_content_info(enveloped: cms.EnvelopedData) -> tuple[algos.EncryptionAlgorithm, bytes | None]:
    """The content algorithm and ciphertext, read by hand: asn1crypto rejects a constructed
    (definite-length) ``encryptedContent``, which BER allows."""
    parts = _children(enveloped["encrypted_content_info"].contents)
    if len(parts) < 2:
        raise CMSError("invalid encrypted content info")
    algorithm = algos.EncryptionAlgorithm.load(parts[1][2])
    algorithm["algorithm"].dotted  # noqa: B018 - parse it now
    if len(parts) < 3 or parts[2][0] & 0xDF != 0x80:
        return algorithm, None
    return algorithm, _string_value(parts[2][0], parts[2][1])


def _decrypt_content(enveloped: cms.EnvelopedData, content_key: bytes) -> bytes:
    algorithm, ciphertext = _encrypted_content_info(enveloped)
    oid = algorithm["algorithm"].dotted
    if oid not in _KEY_SIZES:
        raise CMSError(f"unsupported content encryption algorithm: {oid}")
    if len(content_key) != _KEY_SIZES[oid]:
        raise CMSError("content key has the wrong length for its algorithm")
    if ciphertext is None:
        raise CMSError("no encrypted content")
    raw_params = algorithm["parameters"].dump()
    if oid in (AES128_GCM, AES256_GCM):
        gcm = _GCMParameters.load(raw_params)
        nonce: bytes = gcm["aes_nonce"].native
        tag_length: int = gcm["aes_icvlen"].native
        if not 4 <= tag_length <= 16 or len(ciphertext) < tag_length:
            raise CMSError("invalid GCM tag")
        body, tag = ciphertext[:-tag_length], ciphertext[-tag_length:]
        gcm_decryptor = Cipher(algorithms.AES(content_key), modes.GCM(nonce, tag, tag_length)).decryptor()
        return gcm_decryptor.update(body) + gcm_decryptor.finalize()
    cipher: TripleDES | algorithms.AES = (
        # single DES is 3DES with one key thrice (cryptography dropped 8-byte TripleDES keys)
        TripleDES(content_key * 3 if oid == DES_CBC else content_key)
        if oid in (DES_CBC, DES_EDE3_CBC)
        else algorithms.AES(content_key)
    )
    block_bytes = cipher.block_size // 8
    iv: bytes = core.OctetString.load(raw_params).native
    if len(iv) != block_bytes:
        raise CMSError("invalid IV length")
    if not ciphertext or len(ciphertext) % block_bytes:
        raise CMSError("ciphertext is not a whole number of blocks")
    decryptor = Cipher(cipher, modes.CBC(iv)).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = sym_padding.PKCS7(cipher.block_size).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError as exc:
        raise CMSError("invalid padding") from exc
