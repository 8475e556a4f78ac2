"""Where the FileVault subsystem keeps its state: the one key pair (DynamoDB) and escrowed PRKs
(the inventory record's ``prk``, subsystems.md §5.4).

The key pair is created once and kept (design.md §6; the Go in-memory store regenerated it on
every start, breaking PRKs encrypted to the old certificate). The private key is stored as PEM in
the table, which DynamoDB encrypts at rest; it is never served by the API. Whoever can read the
table can decrypt escrowed PRKs — but the decrypted PRKs sit in that same table anyway, so
encrypting the key again (KMS) would not protect anything more.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from pynamodb.attributes import BinaryAttribute, UnicodeAttribute
from pynamodb.exceptions import PutError

from nanocmd_core.storage.models import TableItem, TableMeta
from nanocmd_core.workflows.common import local_timestamp

if TYPE_CHECKING:
    from nanocmd_core.subsystems.filevault.keypair import KeyPair

FVKEY = "FVKEY"
INV_PRK_SOURCE = "InvPRK"


class KeyPairStore(Protocol):
    def keypair(self) -> KeyPair:
        """The key pair, created on first use and the same ever after."""
        ...


class FileVaultKeyItem(TableItem):
    """``FVKEY`` / ``FVKEY``: the one PRK-encryption key pair of this deployment."""

    Meta = TableMeta
    key_pem = BinaryAttribute(legacy_encoding=False)
    """PKCS#1 PEM of the RSA private key (the table is encrypted at rest)."""
    cert_der = BinaryAttribute(legacy_encoding=False)
    created = UnicodeAttribute(null=True)


class DynamoKeyPairStore:
    """Get-or-create with a conditional put, so concurrent cold starts agree on one pair: the
    loser of the race discards its pair and reads the winner's. Cached per table per process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[str, KeyPair] = {}

    def keypair(self) -> KeyPair:
        table = TableMeta.table_name
        with self._lock:
            if table not in self._cache:
                self._cache[table] = self._load_or_create()
            return self._cache[table]

    def _load_or_create(self) -> KeyPair:
        from nanocmd_core.subsystems.filevault.keypair import KeyPair, generate_self_signed

        try:
            item = FileVaultKeyItem.get(FVKEY, FVKEY, consistent_read=True)
            return KeyPair.load(item.key_pem, item.cert_der)
        except FileVaultKeyItem.DoesNotExist:
            pass
        fresh = generate_self_signed()
        item = FileVaultKeyItem(
            FVKEY,
            FVKEY,
            key_pem=fresh.key_pem(),
            cert_der=fresh.certificate_der,
            created=local_timestamp(datetime.now().astimezone()),
        )
        try:
            item.save(condition=FileVaultKeyItem.pk.does_not_exist())
            return fresh
        except PutError as exc:
            if getattr(exc, "cause_response_code", None) != "ConditionalCheckFailedException":
                raise
        winner = FileVaultKeyItem.get(FVKEY, FVKEY, consistent_read=True)
        return KeyPair.load(winner.key_pem, winner.cert_der)


class MemoryKeyPairStore:
    """A pair generated on first use, for tests and tools."""

    def __init__(self, pair: KeyPair | None = None) -> None:
        self._pair = pair

    def keypair(self) -> KeyPair:
        if self._pair is None:
            from nanocmd_core.subsystems.filevault.keypair import generate_self_signed

            self._pair = generate_self_signed()
        return self._pair


class PRKStoreError(LookupError):
    """No usable PRK for an id; ``transient`` when the inventory itself could not be read."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient

    def __str__(self) -> str:
        return str(self.args[0])


class Inventory(Protocol):
    """The part of ``InventoryStore`` the PRK adapter uses."""

    def retrieve(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]: ...
    def store(self, enrollment_id: str, values: Mapping[str, Any]) -> None: ...


class InventoryPRKStore:
    """PRKs escrowed in the inventory record (``InvPRK``), with the Go error texts."""

    def __init__(self, inventory: Inventory) -> None:
        self.inventory = inventory

    def store_prk(self, enrollment_id: str, prk: str) -> None:
        self.inventory.store(
            enrollment_id,
            {
                "prk": prk,
                "last_source": INV_PRK_SOURCE,
                "modified": local_timestamp(datetime.now().astimezone()),
            },
        )

    def retrieve_prk(self, enrollment_id: str) -> str:
        try:
            found = self.inventory.retrieve([enrollment_id])
        except Exception as exc:
            raise PRKStoreError(f"retrieve inventory: {exc}", transient=True) from exc
        if found is None:
            raise PRKStoreError("no values returned from inventory")
        record = found.get(enrollment_id)
        if record is None:
            raise PRKStoreError(f"id not in inventory: {enrollment_id}")
        prk = record.get("prk")
        if prk is None:
            raise PRKStoreError(f"inventory does not contain PRK value: {enrollment_id}")
        if not isinstance(prk, str):
            raise PRKStoreError("PRK incorrect inventory type")
        return prk
