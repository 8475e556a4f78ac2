"""The profile store on DynamoDB Local (large profiles in moto's S3) and its routes through the
REST resolver with API Gateway proxy events (subsystems.md §4, api.md §7, design.md §6)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from infra.local.events import basic_auth as basic
from infra.local.events import proxy_event, reply_headers
from infra.local.lambda_runtime import LambdaContext
from infra.local.resources import Provisioned
from nanocmd_core.api.app import create_api
from nanocmd_core.aws.blobs import S3BlobStore
from nanocmd_core.config import Settings
from nanocmd_core.storage.models import bind_table
from nanocmd_core.subsystems.profile.http import profile_routes
from nanocmd_core.subsystems.profile.storage import INLINE_LIMIT, S3_PREFIX, DynamoProfileStore, ProfileItem
from nanocmd_core.subsystems.profile.store import ProfileInfo, ProfileNotFoundError
from tests.unit.subsystems.profile.profile_fixtures import (
    FVENABLE_TEMPLATE,
    profile_binary,
    profile_xml,
    sign,
)

API_KEY = "api-secret"


def s3_keys(bucket: str) -> list[str]:
    listed = boto3.client("s3").list_objects_v2(Bucket=bucket)
    return sorted(o["Key"] for o in listed.get("Contents", []))


@pytest.fixture
def store(table_name: str) -> DynamoProfileStore:
    bind_table(table_name)
    return DynamoProfileStore()


@pytest.fixture
def s3_store(nanocmd_env: Provisioned) -> DynamoProfileStore:
    settings = Settings.from_env()
    assert settings.bucket
    bind_table(settings.table_name)
    return DynamoProfileStore(S3BlobStore(settings.bucket))


def test_conformance(store: DynamoProfileStore) -> None:
    """subsystems.md §4.6, adapted to this interface: store, read back, list, delete."""
    raw = profile_xml("com.test", "01AB")
    assert store.store("test", raw) == ProfileInfo("com.test", "01AB")
    assert store.retrieve_infos(["test"]) == {"test": ProfileInfo("com.test", "01AB")}
    assert store.list_infos() == {"test": ProfileInfo("com.test", "01AB")}
    assert store.retrieve_raw("test") == raw
    assert store.retrieve_infos([]) == {}
    store.delete("test")
    store.delete("test")  # missing is not an error
    assert store.retrieve_infos(["test"]) == {}
    assert store.list_infos() == {}
    with pytest.raises(ProfileNotFoundError, match="profile not found: test"):
        store.retrieve_raw("test")


def test_replace_list_and_odd_names(store: DynamoProfileStore) -> None:
    names = ["a", "b/c", "with space", "ünï", "-x", "PROF#y"]
    for i, name in enumerate(names):
        store.store(name, profile_binary(f"com.{i}", f"U{i}"))
    store.store("a", profile_xml("com.a2", "U-new"))
    infos = store.list_infos()
    assert set(infos) == set(names)
    assert infos["a"] == ProfileInfo("com.a2", "U-new") and infos["PROF#y"] == ProfileInfo("com.5", "U5")
    assert list(store.retrieve_infos(["-x", "nope", "a", "-x"])) == ["-x", "a"]
    assert store.retrieve_infos(["A"]) == {}  # names are case-sensitive
    item = ProfileItem.get("PROF#a", "PROF", consistent_read=True)
    assert item.gsi2pk == "PROFILES" and item.s3_key is None and item.size == len(store.retrieve_raw("a"))


def test_not_a_profile_is_refused_and_nothing_stored(store: DynamoProfileStore) -> None:
    with pytest.raises(ValueError, match="PayloadUUID is empty"):
        store.store("bad", profile_xml("com.x", ""))
    assert store.list_infos() == {}


def test_many_profiles_are_listed_without_scan(store: DynamoProfileStore) -> None:
    """More than one batch_get round (100 keys) and a page of the index."""
    for i in range(130):
        store.store(f"p{i:03d}", profile_xml(f"com.p{i}", f"U{i}"))
    infos = store.list_infos()
    assert len(infos) == 130 and infos["p129"] == ProfileInfo("com.p129", "U129")


def test_large_signed_profile_round_trips_through_s3(s3_store: DynamoProfileStore) -> None:
    """A 1 MB CMS-signed profile: the item keeps identifier, UUID, size and the S3 key."""
    pytest.importorskip("cryptography")
    raw = sign(profile_xml("com.example.big", "BIG-1", padding=750_000))
    assert len(raw) > 1_000_000
    bucket = Settings.from_env().bucket
    assert s3_store.store("big", raw) == ProfileInfo("com.example.big", "BIG-1")
    assert s3_store.retrieve_raw("big") == raw
    item = ProfileItem.get("PROF#big", "PROF", consistent_read=True)
    assert item.raw is None and item.size == len(raw) and item.s3_key
    assert item.s3_key.startswith(S3_PREFIX) and s3_keys(bucket) == [item.s3_key]
    assert s3_store.list_infos() == {"big": ProfileInfo("com.example.big", "BIG-1")}

    # replaced by another large one: the old object goes
    again = sign(profile_xml("com.example.big", "BIG-2", padding=400_000))
    s3_store.store("big", again)
    assert s3_store.retrieve_raw("big") == again
    [key] = s3_keys(bucket)
    assert key != item.s3_key
    # replaced by a small one: inline, no object left
    small = profile_xml("com.example.big", "BIG-3")
    s3_store.store("big", small)
    assert s3_store.retrieve_raw("big") == small and s3_keys(bucket) == []
    # and deleting a large one removes its object
    s3_store.store("big", raw)
    s3_store.delete("big")
    assert s3_keys(bucket) == []
    with pytest.raises(ProfileNotFoundError):
        s3_store.retrieve_raw("big")


def test_just_over_the_inline_limit(s3_store: DynamoProfileStore) -> None:
    raw = profile_xml("com.example.edge", "E", padding=INLINE_LIMIT)
    s3_store.store("edge", raw)
    assert ProfileItem.get("PROF#edge", "PROF").s3_key is not None
    assert s3_store.retrieve_raw("edge") == raw


def test_concurrent_large_uploads_leave_one_object(s3_store: DynamoProfileStore) -> None:
    """Writes are conditional on the S3 key read: racing replacements orphan nothing."""
    bucket = Settings.from_env().bucket
    bodies = [profile_xml("com.race", f"R{i}", padding=INLINE_LIMIT + 10) for i in range(6)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(lambda raw: s3_store.store("race", raw), bodies))
    stored = s3_store.retrieve_raw("race")
    assert stored in bodies
    assert s3_keys(bucket) == [ProfileItem.get("PROF#race", "PROF", consistent_read=True).s3_key]


def test_large_profile_without_a_bucket_is_a_server_error(store: DynamoProfileStore) -> None:
    with pytest.raises(RuntimeError, match="NANOCMD_BUCKET"):
        store.store("big", profile_xml("com.big", "B", padding=INLINE_LIMIT))
    assert store.list_infos() == {}


# --- routes ---------------------------------------------------------------------------------


@dataclass
class Services:
    profiles: DynamoProfileStore


@dataclass
class ProfileApi:
    resolver: Any
    profiles: DynamoProfileStore

    def call(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]] | None = None,
        body: bytes | None = None,
        auth: str | None = basic("nanocmd", API_KEY),
    ) -> tuple[int, dict[str, str], bytes]:
        reply = self.resolver.resolve(
            proxy_event(method, path, query, auth, body), LambdaContext("ApiFunction")
        )
        headers = reply_headers(reply)
        raw = reply.get("body") or ""
        data = base64.b64decode(raw) if reply.get("isBase64Encoded") else raw.encode()
        return reply["statusCode"], headers, data


@pytest.fixture
def api(nanocmd_env: Provisioned) -> Iterator[ProfileApi]:
    settings = Settings.from_env()
    settings = Settings(table_name=settings.table_name, bucket=settings.bucket, api_key_value=API_KEY)
    bind_table(settings.table_name)
    services = Services(DynamoProfileStore(S3BlobStore(settings.bucket)))
    yield ProfileApi(create_api(settings, lambda: services, modules=[profile_routes]), services.profiles)


def test_put_get_list_delete(api: ProfileApi) -> None:
    xml = profile_xml("com.example.dock", "D0C38014-4DBB-4F19-A23F-2768FA2246AE")
    status, _, body = api.call("PUT", "/v1/profile/dockleft", body=xml)
    assert (status, body) == (204, b"")
    status, headers, body = api.call("GET", "/v1/profile/dockleft")
    assert status == 200 and body == xml
    assert headers["content-type"] == "application/x-apple-aspen-config"
    status, headers, body = api.call("GET", "/v1/profiles")
    assert status == 200 and headers["content-type"] == "application/json"
    assert json.loads(body) == {
        "dockleft": {"identifier": "com.example.dock", "uuid": "D0C38014-4DBB-4F19-A23F-2768FA2246AE"}
    }
    api.call("PUT", "/v1/profile/other", body=profile_binary("com.example.other", "O-1"))
    status, _, body = api.call("GET", "/v1/profiles", {"name": ["other"]})
    assert json.loads(body) == {"other": {"identifier": "com.example.other", "uuid": "O-1"}}
    assert set(json.loads(api.call("GET", "/v1/profiles")[2])) == {"dockleft", "other"}
    assert api.call("DELETE", "/v1/profile/dockleft")[:2][0] == 204
    assert api.call("DELETE", "/v1/profile/dockleft")[0] == 204  # idempotent
    status, headers, body = api.call("GET", "/v1/profile/dockleft")
    assert status == 404 and headers["content-type"] == "application/json"
    assert json.loads(body) == {"error": "profile not found: dockleft"}
    assert json.loads(api.call("GET", "/v1/profiles")[2]) == {
        "other": {"identifier": "com.example.other", "uuid": "O-1"}
    }


def test_binary_bodies_survive_both_ways(api: ProfileApi) -> None:
    """Binary plist and a 1 MB CMS-signed profile, byte for byte through base64 proxy events."""
    pytest.importorskip("cryptography")
    for name, raw in [
        ("bin", profile_binary("com.example.bin", "B-1")),
        ("signed", sign(profile_xml("com.example.signed", "S-1"))),
        ("big", sign(profile_xml("com.example.big", "G-1", padding=750_000))),
    ]:
        assert api.call("PUT", f"/v1/profile/{name}", body=raw)[0] == 204
        status, _, body = api.call("GET", f"/v1/profile/{name}")
        assert status == 200 and body == raw, name
    listed = json.loads(api.call("GET", "/v1/profiles", {"name": ["big", "signed"]})[2])
    assert listed == {
        "big": {"identifier": "com.example.big", "uuid": "G-1"},
        "signed": {"identifier": "com.example.signed", "uuid": "S-1"},
    }


def test_percent_encoded_names(api: ProfileApi) -> None:
    raw = profile_xml("com.example.space", "SP")
    assert api.call("PUT", "/v1/profile/my%20profile%2Fv2", body=raw)[0] == 204
    assert api.call("GET", "/v1/profile/my%20profile%2Fv2")[2] == raw
    assert json.loads(api.call("GET", "/v1/profiles", {"name": ["my profile/v2"]})[2]) == {
        "my profile/v2": {"identifier": "com.example.space", "uuid": "SP"}
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (None, "empty body"),
        (b"hello", "parsing pkcs7: "),
        (b"<?xml version='1.0'?><plist><dict>", "unmarshal plist: "),
        (profile_xml("", "U"), "invalid payload: PayloadIdentifier is empty"),
        (profile_xml("com.x", ""), "invalid payload: PayloadUUID is empty"),
    ],
)
def test_bad_uploads_are_400(api: ProfileApi, body: bytes | None, message: str) -> None:
    status, headers, data = api.call("PUT", "/v1/profile/bad", body=body)
    assert status == 400 and headers["content-type"] == "application/json"
    assert json.loads(data)["error"].startswith(message)
    assert json.loads(api.call("GET", "/v1/profiles")[2]) == {}


def test_unknown_names_in_listing_are_404(api: ProfileApi) -> None:
    api.call("PUT", "/v1/profile/known", body=profile_xml("com.k", "K"))
    status, _, body = api.call("GET", "/v1/profiles", {"name": ["known", "nope"]})
    assert status == 404 and json.loads(body) == {"error": "profile not found: nope"}
    status, _, body = api.call("GET", "/v1/profiles", {"name": [""]})
    assert status == 404 and json.loads(body) == {"error": "profile not found: "}


def test_fvenable_template_upload_is_accepted(api: ProfileApi) -> None:
    """design.md §6: the customised fvenable template is stored byte for byte."""
    name = "io.micromdm.wf.fvenable.v1"
    assert api.call("PUT", f"/v1/profile/{name}", body=FVENABLE_TEMPLATE)[0] == 204
    assert api.call("GET", f"/v1/profile/{name}")[2] == FVENABLE_TEMPLATE
    assert json.loads(api.call("GET", "/v1/profiles", {"name": [name]})[2]) == {
        name: {
            "identifier": "io.micromdm.wf.fvenable.v1.profile",
            "uuid": "49DDB449-163E-4408-B05D-FA4814CDEE3E",
        }
    }


def test_routes_need_auth_and_answer_405(api: ProfileApi) -> None:
    assert api.call("GET", "/v1/profiles", auth=None)[0] == 401
    assert api.call("PUT", "/v1/profile/x", body=b"x", auth=basic("nanocmd", "no"))[0] == 401
    status, headers, _ = api.call("POST", "/v1/profile/x")
    assert status == 405 and "PUT" in headers["allow"]


def test_go_testdata_through_the_api(api: ProfileApi, shared_testdata: Path) -> None:
    raw = (shared_testdata / "utils" / "mobileconfig" / "testdata" / "test.mobileconfig").read_bytes()
    assert api.call("PUT", "/v1/profile/chrome", body=raw)[0] == 204
    assert api.call("GET", "/v1/profile/chrome")[2] == raw
    assert json.loads(api.call("GET", "/v1/profiles")[2]) == {
        "chrome": {
            "identifier": "0DA6B871-623D-400A-B0EB-3BE489E39F2A",
            "uuid": "D0CCE647-B1D6-49B0-82BC-C1BCC8A33218",
        }
    }
