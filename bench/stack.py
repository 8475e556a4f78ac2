"""The benchmark's own DynamoDB Local and table, so ``make bench`` needs nothing running first.

The AWS environment is set the way the tests set it (``services.aws_env`` / ``apply_env``): dummy
credentials, and every ``AWS_ENDPOINT_URL_*`` on loopback. Nothing but DynamoDB is used; the other
services point at a closed port so a stray call fails at once instead of reaching AWS.
"""

from __future__ import annotations

import logging
import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from infra.local import services
from infra.local.resources import provision
from infra.local.stack import reset_settings_cache

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = REPO_ROOT / "template.yaml"
CLOSED_ENDPOINT = "http://127.0.0.1:9"  # discard port: nothing listens there
_CONSOLE = (sys.__stdout__, sys.__stderr__)


@contextmanager
def dynamodb_local() -> Iterator[str]:
    """Start DynamoDB Local on a free port with the AWS env pointing at it; yields its URL."""
    ddb = services.DynamoDBLocal(log_path=services.DEFAULT_LOG_DIR / f"bench-dynamodb-{os.getpid()}.log")
    ddb.start()
    previous = services.apply_env(services.aws_env(ddb.endpoint_url, CLOSED_ENDPOINT, CLOSED_ENDPOINT))
    try:
        yield ddb.endpoint_url
    finally:
        services.restore_env(previous)
        services.stop_all(ddb)


@contextmanager
def fresh_table() -> Iterator[str]:
    """A table made from template.yaml's ``Table`` (keys, GSIs, TTL); NANOCMD_TABLE names it."""
    p = provision(TEMPLATE, f"b{uuid.uuid4().hex[:10]}", {}, only=["Table"])
    previous = os.environ.get("NANOCMD_TABLE")
    try:
        name = p.ref("Table")
        os.environ["NANOCMD_TABLE"] = name
        reset_settings_cache()
        yield name
    finally:
        if previous is None:
            os.environ.pop("NANOCMD_TABLE", None)
        else:
            os.environ["NANOCMD_TABLE"] = previous
        reset_settings_cache()
        p.delete()


def silence_logs() -> None:
    """Keep the handlers' JSON log lines (Powertools, INFO) out of the tables: they still format
    every record, as on Lambda, but write to /dev/null."""
    sink = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    for logger in [logging.getLogger(), *map(logging.getLogger, list(logging.root.manager.loggerDict))]:
        for handler in logger.handlers:
            # only the console's: a test runner's capturing handlers (StringIO) stay as they are
            stream = getattr(handler, "stream", None)
            if isinstance(handler, logging.StreamHandler) and stream in (sys.stdout, sys.stderr, *_CONSOLE):
                handler.setStream(sink)
