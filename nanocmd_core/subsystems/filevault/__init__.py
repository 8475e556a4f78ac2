"""FileVault subsystem: one PRK-encryption key pair, CMS decryption, PRK escrow in inventory.

The key pair's module (and the ``cryptography`` it needs) loads on first use: a function that never
escrows or hands out a certificate does not pay for it at its cold start."""

from typing import TYPE_CHECKING

from nanocmd_core.deferred import deferred_attributes
from nanocmd_core.subsystems.filevault.service import FileVault, FileVaultError, FileVaultOps, PRKStore
from nanocmd_core.subsystems.filevault.storage import (
    DynamoKeyPairStore,
    FileVaultKeyItem,
    InventoryPRKStore,
    KeyPairStore,
    MemoryKeyPairStore,
    PRKStoreError,
)

if TYPE_CHECKING:
    from nanocmd_core.subsystems.filevault.keypair import KeyPair, generate_self_signed

__all__ = [
    "DynamoKeyPairStore",
    "FileVault",
    "FileVaultError",
    "FileVaultKeyItem",
    "FileVaultOps",
    "InventoryPRKStore",
    "KeyPair",
    "KeyPairStore",
    "MemoryKeyPairStore",
    "PRKStore",
    "PRKStoreError",
    "generate_self_signed",
]

_DEFERRED = dict.fromkeys(("KeyPair", "generate_self_signed"), "nanocmd_core.subsystems.filevault.keypair")
__getattr__ = deferred_attributes(__name__, _DEFERRED)
