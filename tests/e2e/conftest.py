"""End-to-end fixtures: the whole local system (gateway + worker + handlers) driven over HTTP.

``local_stack`` runs :class:`infra.local.stack.LocalStack` in-process (threads) against the session's
DynamoDB Local and moto, with fresh resources from template.yaml, on a free port. Its MDM server is a
``fake_mdm`` (tests/fakes/mdm_server.py) when that is available. Override ``local_stack_env`` in a
test module to change settings, e.g. ``{"NANOCMD_WEBHOOK_HMAC_KEY": "k"}`` or a sweeper interval.

Defaults: API key :data:`API_KEY` (user ``nanocmd``), sweeper off (``NANOCMD_WORKER_INTERVAL=0``: call
``local_stack.sweep()``), failed events retried after 1 s instead of the queue's 180 s.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.local.lambda_runtime import HandlerNotFound
from infra.local.stack import LocalStack

API_KEY = "nanocmd-e2e-key"


@pytest.fixture(autouse=True)
def _aws_services(aws_env: dict[str, str]) -> None:
    """Start the session's DynamoDB Local and moto before any test here, whatever it asks for."""


@pytest.fixture
def fake_mdm() -> Iterator[Any]:
    """A fake NanoMDM enqueue/push server on a free port (``.enqueue_url``, ``.push_url``, ``.api_key``)."""
    try:
        from tests.fakes.mdm_server import FakeMDMServer
    except ImportError as exc:
        pytest.skip(f"fake MDM server not available: {exc}")
    with FakeMDMServer() as mdm:
        yield mdm


@pytest.fixture
def local_stack_env() -> dict[str, str]:
    """NANOCMD_* settings of the stack under test; override in a module for other settings."""
    return {"NANOCMD_API": API_KEY, "NANOCMD_WORKER_INTERVAL": "0"}


@pytest.fixture
def local_stack_options() -> dict[str, Any]:
    """Further LocalStack arguments; override in a module, e.g. ``{"gateway_processes": 2}``."""
    return {}


@pytest.fixture
def local_stack(
    request: pytest.FixtureRequest,
    aws_env: dict[str, str],
    template_path: Path,
    repo_root: Path,
    local_stack_env: dict[str, str],
    local_stack_options: dict[str, Any],
) -> Iterator[LocalStack]:
    """The running local system; ``.base_url`` is where to send HTTP requests."""
    env: dict[str, str] = {}
    try:
        mdm = request.getfixturevalue("fake_mdm")
    except pytest.skip.Exception:
        mdm = None
    if mdm is not None:
        env["NANOCMD_ENQUEUE_URL"] = mdm.enqueue_url
        env["NANOCMD_PUSH_URL"] = mdm.push_url
        env["NANOCMD_ENQUEUE_API"] = getattr(mdm, "api_key", "mdm-secret")
    env.update(local_stack_env)
    stack = LocalStack(
        template=template_path,
        functions_dir=repo_root / "functions",
        listen="127.0.0.1:0",
        extra_env=env,
        aws_env=aws_env,
        inherit_env=False,
        retry_visibility=1,
        schedule_poll_interval=0.2,
        **local_stack_options,
    )
    try:
        stack.start()
    except HandlerNotFound as exc:
        pytest.skip(f"handlers not there yet: {exc}")
    try:
        yield stack
    finally:
        stack.stop()
