"""FileVault on DynamoDB Local: the key pair is made once and kept, even when cold starts race
(design.md §6); the profile template route (api.md §8.1); fvenable end to end on the engine."""

from __future__ import annotations

import base64
import hashlib
import plistlib
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from infra.local.events import basic_auth as basic
from infra.local.events import proxy_event, reply_headers
from infra.local.lambda_runtime import LambdaContext
from nanocmd_core.api.app import create_api
from nanocmd_core.config import Settings
from nanocmd_core.storage.models import bind_table
from nanocmd_core.subsystems.filevault import (
    DynamoKeyPairStore,
    FileVault,
    FileVaultKeyItem,
    InventoryPRKStore,
)
from nanocmd_core.subsystems.filevault.http import filevault_routes
from nanocmd_core.subsystems.inventory.storage import DynamoInventoryStore
from nanocmd_core.subsystems.profile.store import ProfileNotFoundError
from nanocmd_core.workflows.fvenable import FileVaultEnableWorkflow
from tests.fakes.reports import report, security_info
from tests.support.engine import engine_harness

FVENABLE = "io.micromdm.wf.fvenable.v1"


class NoProfiles:
    def retrieve_raw(self, name: str) -> bytes:
        raise ProfileNotFoundError(name)


def test_key_pair_is_created_once_and_kept(table_name: str) -> None:
    bind_table(table_name)
    first = DynamoKeyPairStore()
    pair = first.keypair()
    assert first.keypair() is pair  # cached in the process
    again = DynamoKeyPairStore().keypair()  # a new process reads the stored pair
    assert again.certificate_der == pair.certificate_der
    assert again.key.private_numbers() == pair.key.private_numbers()
    item = FileVaultKeyItem.get("FVKEY", "FVKEY")
    assert item.cert_der == pair.certificate_der and item.key_pem.startswith(b"-----BEGIN RSA PRIVATE KEY")


def test_racing_cold_starts_agree_on_one_pair(table_name: str) -> None:
    bind_table(table_name)
    with ThreadPoolExecutor(8) as pool:
        certs = list(pool.map(lambda _: DynamoKeyPairStore().keypair().certificate_der, range(8)))
    assert len(set(certs)) == 1
    assert DynamoKeyPairStore().keypair().certificate_der == certs[0]


def test_profile_template_route(table_name: str) -> None:
    settings = Settings(table_name=table_name, api_key_value="k")
    resolver = create_api(settings, lambda: None, modules=[filevault_routes])
    event = proxy_event("GET", "/v1/fvenable/profiletemplate", auth=basic("nanocmd", "k"))
    reply = resolver.resolve(event, LambdaContext("ApiFunction"))
    assert reply["statusCode"] == 200
    assert reply_headers(reply)["content-type"] == "application/x-apple-aspen-config"
    body = base64.b64decode(reply["body"]) if reply.get("isBase64Encoded") else reply["body"].encode()
    assert len(body) == 1940
    assert (
        hashlib.sha256(body).hexdigest() == "a156661970782d026a21b50201b92c64ce878b6b1ef54810418cef7fc52428ef"
    )
    unauthorized = resolver.resolve(
        proxy_event("GET", "/v1/fvenable/profiletemplate"), LambdaContext("ApiFunction")
    )
    assert unauthorized["statusCode"] == 401


def test_fvenable_end_to_end(table_name: str) -> None:
    """install → poll (delayed) → FDE off → poll again → PRK CMS → escrowed in inventory."""
    with engine_harness(table_name) as h:
        h.engine.repush_interval = 0
        inventory = DynamoInventoryStore()
        keys = DynamoKeyPairStore()
        filevault = FileVault(keys, InventoryPRKStore(inventory))
        h.engine.register(FileVaultEnableWorkflow(h.engine, NoProfiles(), filevault))

        h.engine.start_workflow(FVENABLE, ["MAC-1"])
        [install] = h.sent("MAC-1")
        assert install["Command"]["RequestType"] == "InstallProfile"
        profile = plistlib.loads(install["Command"]["Payload"])
        certificate_der = profile["PayloadContent"][2]["PayloadContent"]
        assert certificate_der == keys.keypair().certificate_der
        uuid = install["CommandUUID"]
        h.engine.handle_command_report("MAC-1", uuid, report(uuid, "MAC-1"))

        assert len(h.sent("MAC-1")) == 1  # the poll waits two minutes
        now = datetime.now(UTC)
        assert h.engine.sweep(now + timedelta(seconds=30)).sent == 0
        assert h.engine.sweep(now + timedelta(minutes=3)).sent == 1
        poll = h.sent("MAC-1")[-1]
        assert poll["Command"]["RequestType"] == "SecurityInfo"
        uuid = poll["CommandUUID"]
        h.engine.handle_command_report("MAC-1", uuid, security_info(uuid, "MAC-1", FDE_Enabled=False))

        assert h.engine.sweep(datetime.now(UTC) + timedelta(minutes=3)).sent == 1
        poll = h.sent("MAC-1")[-1]
        uuid = poll["CommandUUID"]
        cms = (
            pkcs7.PKCS7EnvelopeBuilder()
            .set_data(b"ABCD-EFGH-IJKL-MNOP-QRST-UVWX")
            .add_recipient(keys.keypair().certificate)
            .encrypt(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])
        )
        raw = security_info(uuid, "MAC-1", FDE_Enabled=True, FDE_PersonalRecoveryKeyCMS=cms)
        h.engine.handle_command_report("MAC-1", uuid, raw)

        record = inventory.retrieve(["MAC-1"])["MAC-1"]
        assert record["prk"] == "ABCD-EFGH-IJKL-MNOP-QRST-UVWX" and record["last_source"] == "InvPRK"
        assert h.engine.sweep(datetime.now(UTC) + timedelta(minutes=10)).sent == 0
        assert len(h.sent("MAC-1")) == 3
        h.engine.start_workflow(FVENABLE, ["MAC-1"])  # ended: the exclusive lock is free again
        assert len(h.sent("MAC-1")) == 4
