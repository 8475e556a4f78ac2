"""The FileVault PRK-encryption key pair: RSA 2048 and a self-signed certificate that devices
encrypt their personal recovery keys to (subsystems.md §5.2, §7.2)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

COMMON_NAME = "filevault"
VALIDITY_DAYS = 3650


@dataclass(frozen=True)
class KeyPair:
    """The private key and its certificate; the certificate is what every device sees."""

    key: rsa.RSAPrivateKey
    certificate: x509.Certificate

    @property
    def certificate_der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    def key_pem(self) -> bytes:
        """PKCS#1 ``RSA PRIVATE KEY`` PEM (the Go original keeps PKCS#1 too, as DER)."""
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )

    @classmethod
    def load(cls, key_pem: bytes, certificate_der: bytes) -> KeyPair:
        """Parse a stored pair; ValueError when either part is unreadable or not RSA."""
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("parsing key: not an RSA private key")
        return cls(key=key, certificate=x509.load_der_x509_certificate(certificate_der))


def generate_self_signed(
    common_name: str = COMMON_NAME, days: int = VALIDITY_DAYS, now: datetime | None = None
) -> KeyPair:
    """RSA 2048 and a v3 certificate, issuer = subject = ``CN=<common_name>`` (empty subject when
    no name), serial 1, valid from now - 10 minutes for ``days`` days, key usage digital
    signature + key encipherment, SHA-256 with RSA — as the Go ``cryptoutil`` makes it."""
    now = now or datetime.now(UTC)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else [])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - timedelta(minutes=10))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return KeyPair(key=key, certificate=certificate)
