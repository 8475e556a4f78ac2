"""The FileVault subsystem as workflows use it (subsystems.md §5.3): hand out the certificate,
escrow a CMS-encrypted PRK, retrieve the escrowed PRK."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from nanocmd_core.subsystems.filevault.storage import KeyPairStore

if TYPE_CHECKING:
    from nanocmd_core.subsystems.filevault.keypair import KeyPair


class FileVaultError(RuntimeError):
    """An escrow or retrieval failed; the message carries the Go error text. ``transient`` is
    True when storage failed (worth a retry), False when the CMS itself is unusable."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class FileVaultOps(Protocol):
    """What the FileVault workflows use (a test can stand in for it)."""

    def retrieve_prk_cert_raw(self, enrollment_id: str) -> bytes: ...
    def retrieve_prk(self, enrollment_id: str) -> str: ...
    def escrow_prk(self, enrollment_id: str, cms_bytes: bytes) -> str: ...


class PRKStore(Protocol):
    def store_prk(self, enrollment_id: str, prk: str) -> None: ...
    def retrieve_prk(self, enrollment_id: str) -> str: ...


class FileVault:
    def __init__(self, keys: KeyPairStore, prks: PRKStore) -> None:
        self.keys = keys
        self.prks = prks

    def _keypair(self) -> KeyPair:
        try:
            return self.keys.keypair()
        except Exception as exc:
            raise FileVaultError(f"getting keypair: {exc}", transient=True) from exc

    def retrieve_prk_cert_raw(self, enrollment_id: str) -> bytes:
        """The certificate (DER) PRKs are encrypted to; the same for every id."""
        return self._keypair().certificate_der

    def retrieve_prk(self, enrollment_id: str) -> str:
        return self.prks.retrieve_prk(enrollment_id)

    def escrow_prk(self, enrollment_id: str, cms_bytes: bytes) -> str:
        """Decrypt ``cms_bytes`` and store the PRK for ``enrollment_id``; returns the PRK.

        The plaintext is stored as text, as the Go original does (``string(bytes)``); bytes that
        are not UTF-8 are replaced so the value can still be stored.
        """
        from nanocmd_core.subsystems.filevault import cms  # cryptography, on the first escrow

        try:
            enveloped = cms.parse_enveloped(cms_bytes)
        except cms.CMSError as exc:
            raise FileVaultError(f"parse PRK CMS: {exc}", transient=False) from exc
        pair = self._keypair()
        try:
            plaintext = cms.decrypt_enveloped(enveloped, pair.certificate, pair.key)
        except cms.CMSError as exc:
            raise FileVaultError(f"decrypting PRK CMS: {exc}", transient=False) from exc
        prk = plaintext.decode("utf-8", errors="replace")
        try:
            self.prks.store_prk(enrollment_id, prk)
        except Exception as exc:
            raise FileVaultError(f"store PRK: {exc}", transient=True) from exc
        return prk
