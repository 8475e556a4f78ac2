"""Fixtures of the nanocmdctl unit tests: the fake API on loopback (``api``) and ``run``, which
invokes nanocmdctl in-process against it with a clean environment (no NANOCMD_* of the
developer's shell, no config file of theirs)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from nanocmd_core.cli.main import cli
from tests.unit.cli.fake_api import KEY, FakeAPI, handler, runner


@pytest.fixture
def api() -> Iterator[FakeAPI]:
    fake = FakeAPI()
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler(fake))
    server.daemon_threads = True
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def clean_env(tmp_path: Path) -> dict[str, str | None]:
    """No NANOCMD_* from the developer's shell and no config file of theirs."""
    return {
        "NANOCMD_URL": None,
        "NANOCMD_API": None,
        "NANOCMDCTL_SERVER": None,
        "NANOCMDCTL_CONFIG": str(tmp_path / "absent.toml"),
        "COLUMNS": "200",
    }


@pytest.fixture
def run(api: FakeAPI, clean_env: dict[str, str | None]) -> Any:
    """``run(*args, input=..., env=..., url=..., key=...)``: nanocmdctl against the fake."""

    def invoke(
        *args: str,
        input: str | bytes | None = None,
        env: dict[str, str | None] | None = None,
        url: str | None = None,
        key: str | None = KEY,
    ) -> Result:
        target = ["--url", url or api.url] + (["--api-key", key] if key is not None else [])
        return runner().invoke(
            cli, [*target, *args], input=input, env={**clean_env, **(env or {})}, catch_exceptions=False
        )

    return invoke
