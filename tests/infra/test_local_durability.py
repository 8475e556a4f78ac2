"""``make run``'s servers skip fsync (libeatmydata) for speed: what they wrote must still be there
after the process is killed outright, and the switch back to real flushes must work."""

from __future__ import annotations

import signal
from pathlib import Path

import boto3
import pytest

from infra.local import services
from infra.local.services import DynamoDBLocal, no_fsync_env


def _client(ddb: DynamoDBLocal) -> object:
    return boto3.client(
        "dynamodb",
        endpoint_url=ddb.endpoint_url,
        region_name=services.REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def test_fsync_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NANOCMD_LOCAL_FSYNC", "true")
    assert no_fsync_env() is None
    monkeypatch.delenv("NANOCMD_LOCAL_FSYNC")
    env = no_fsync_env()
    if env is None:
        pytest.skip("libeatmydata1 is not installed here (make deps installs it where it can)")
    assert "libeatmydata" in env["LD_PRELOAD"]


@pytest.mark.slow
def test_writes_survive_a_killed_dynamodb_local(tmp_path: Path) -> None:
    if no_fsync_env() is None:
        pytest.skip("libeatmydata1 is not installed here")
    db = tmp_path / "dynamodb"
    first = DynamoDBLocal(db_path=db).start()
    try:
        c = _client(first)
        c.create_table(  # type: ignore[attr-defined]
            TableName="kept",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        for i in range(50):
            c.put_item(TableName="kept", Item={"pk": {"S": f"item-{i}"}})  # type: ignore[attr-defined]
        assert first.process is not None
        first.process.send_signal(signal.SIGKILL)  # no shutdown, no flush
        first.process.wait(10)
    finally:
        first.stop()
    second = DynamoDBLocal(db_path=db).start()
    try:
        c = _client(second)
        got = [
            c.get_item(TableName="kept", Key={"pk": {"S": f"item-{i}"}}, ConsistentRead=True)  # type: ignore[attr-defined]
            for i in range(50)
        ]
        assert all("Item" in g for g in got)
    finally:
        second.stop()
