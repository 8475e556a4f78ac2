"""FileVault subsystem: one PRK-encryption key pair, CMS decryption, PRK escrow in inventory."""

from nanocmd_core.subsystems.filevault.keypair import KeyPair, generate_self_signed
from nanocmd_core.subsystems.filevault.service import FileVault, FileVaultError, FileVaultOps, PRKStore
from nanocmd_core.subsystems.filevault.storage import (
    DynamoKeyPairStore,
    FileVaultKeyItem,
    InventoryPRKStore,
    KeyPairStore,
    MemoryKeyPairStore,
    PRKStoreError,
)

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
