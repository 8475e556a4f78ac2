"""SnapStart hooks (issue 14): priming before the snapshot, uniqueness and fresh connections after
each restore; the AWS clients made on first use; bytecode in the build artifacts."""

from __future__ import annotations

import importlib.util
import random
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nanocmd_core import snapstart
from nanocmd_core.aws import blobs, clients, queue, scheduler

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def fresh_hooks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, Any]]]:
    """A stand-in for the runtime's ``snapshot_restore_py``, recording what registers."""
    registered: list[tuple[str, Any]] = []
    fake = types.ModuleType("snapshot_restore_py")
    fake.register_before_snapshot = lambda fn: registered.append(("before", fn))  # type: ignore[attr-defined]
    fake.register_after_restore = lambda fn: registered.append(("after", fn))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", fake)
    monkeypatch.setattr(snapstart, "_STEPS", [])
    monkeypatch.setattr(snapstart, "_SERVICES", [])
    monkeypatch.setattr(snapstart, "_registered", False)
    yield registered


def test_prime_registers_both_hooks_once(fresh_hooks: list[tuple[str, Any]]) -> None:
    snapstart.prime(lambda: None, clients=["sqs"])
    snapstart.prime(clients=["sqs", "s3"])
    assert fresh_hooks == [("before", snapstart.before_snapshot), ("after", snapstart.after_restore)]
    assert snapstart._SERVICES == ["sqs", "s3"]


def test_without_the_runtime_nothing_registers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", None)  # import fails
    monkeypatch.setattr(snapstart, "_STEPS", [])
    monkeypatch.setattr(snapstart, "_registered", False)
    snapstart.prime(lambda: None)
    assert not snapstart._registered
    assert len(snapstart._STEPS) == 1  # kept: the bench (and a test) can still run them


def test_before_snapshot_makes_clients_runs_steps_and_builds_models(
    fresh_hooks: list[tuple[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[str] = []
    ran: list[str] = []
    monkeypatch.setattr(snapstart, "aws_client", made.append)
    snapstart.prime(lambda: ran.append("routes"), clients=["dynamodb", "sqs"])
    from nanocmd_core.status.views import DeviceStatus

    snapstart.before_snapshot()
    assert made == ["dynamodb", "sqs"]
    assert ran == ["routes"]
    assert DeviceStatus.__pydantic_complete__  # deferred until now
    assert snapstart.build_models() == 0  # nothing left to build


def test_after_restore_reseeds_random_and_drops_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    dropped: list[bool] = []
    monkeypatch.setattr(snapstart, "fresh_connections", lambda: dropped.append(True))
    random.seed(1)
    state = random.getstate()
    snapstart.after_restore()
    assert random.getstate() != state  # two restored environments do not share one sequence
    assert dropped == [True]


def test_fresh_connections_closes_pools_and_clients_still_work(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", "http://127.0.0.1:9")
    client = clients.aws_client("sqs")
    manager = client._endpoint.http_session._manager
    manager.connection_from_url("http://127.0.0.1:9/")  # a pool, as a call would leave one
    assert len(manager.pools) == 1
    clients.fresh_connections()
    assert len(manager.pools) == 0
    assert clients.aws_client("sqs") is client


def test_clients_are_made_on_first_use(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[str] = []

    def fake(service: str) -> object:
        made.append(service)
        return object()

    monkeypatch.setattr(clients, "aws_client", fake)
    stores: list[Any] = [
        blobs.S3BlobStore("bucket"),
        queue.SQSEventQueue("url"),
        scheduler.EventBridgeStepScheduler("g", "r", "t"),
    ]
    assert made == []  # building the app makes none: a cold invocation pays for what it calls
    for store in stores:
        assert store.client is store.client
    assert made == ["s3", "sqs", "scheduler"]
    given = object()
    assert queue.SQSEventQueue("url", client=given).client is given


def _build_py() -> Any:
    spec = importlib.util.spec_from_file_location("nanocmd_build_test", REPO / "infra/build/build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_build_compiles_hash_based_bytecode(tmp_path: Path) -> None:
    build = _build_py()
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text("X = 1\n")
    build.compile_bytecode(tmp_path, sys.executable, build.LAYER_BYTECODE_MODE)
    [pyc] = (tmp_path / "pkg" / "__pycache__").glob("mod.*.pyc")
    assert pyc.name == f"mod.{sys.implementation.cache_tag}.pyc"
    flags = int.from_bytes(pyc.read_bytes()[4:8], "little")
    assert flags & 0b1  # hash-based: valid whatever file times the zip gives the source


def test_bytecode_python_can_be_turned_off_and_checks_the_version(monkeypatch: pytest.MonkeyPatch) -> None:
    build = _build_py()
    monkeypatch.setenv(build.BYTECODE_PYTHON_ENV, "off")
    assert build.bytecode_python() is None
    monkeypatch.setenv(build.BYTECODE_PYTHON_ENV, sys.executable)  # this host's Python: 3.11, not 3.12
    expected = sys.executable if sys.version_info[:2] == (3, 12) else None
    assert build.bytecode_python() == expected
