"""Lambda SnapStart runtime hooks: priming before the snapshot, uniqueness and connections after.

With SnapStart (``template.yaml``: the API function), Lambda runs a function's init once, when a
version is published, snapshots the memory, and resumes every new execution environment from that
snapshot. So the work a first invocation would otherwise do belongs before the snapshot, and what
must differ per environment is renewed after each restore:

* before the snapshot: the AWS clients the function calls (a boto3 client costs tens of ms: its
  service model and endpoint rules), whatever the function adds (the API's route table), the
  models our modules import only on first use (a module's ``_DEFERRED``) and the schemas of every
  deferred pydantic model of ours;
* after each restore: ``random`` reseeded (botocore's retry jitter; one snapshot must not give many
  environments one sequence; ``uuid4`` and ``secrets`` read the kernel's generator, which Lambda
  renews), and every cached client's pooled connections closed (a connection from before the
  snapshot is stale). Credentials need nothing: under SnapStart, Lambda serves them through
  ``AWS_CONTAINER_CREDENTIALS_FULL_URI`` and botocore refreshes them as they expire.

Secrets are not primed: a snapshot may be restored for days, a rotated key must still be read
fresh (each function reads its secrets on first use, as without SnapStart).

The hooks go through ``snapshot_restore_py``, which Lambda's Python runtime provides. Elsewhere
(tests, the local stack) there are no snapshots and nothing registers; every primed step then
simply happens on first use, as on a function without SnapStart.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable, Iterable

from nanocmd_core.aws.clients import aws_client, fresh_connections

_STEPS: list[Callable[[], object]] = []
_SERVICES: list[str] = []
_registered = False


def prime(*steps: Callable[[], object], clients: Iterable[str] = ()) -> None:
    """Called at import by a function's ``app.py``: ``steps`` and the clients of ``clients`` (AWS
    service names) run before the snapshot, when the function has SnapStart."""
    global _registered
    _STEPS.extend(steps)
    _SERVICES.extend(s for s in clients if s not in _SERVICES)
    if _registered:
        return
    try:
        from snapshot_restore_py import (  # type: ignore[import-not-found,unused-ignore]
            register_after_restore,
            register_before_snapshot,
        )
    except ImportError:  # not Lambda's Python runtime: nothing snapshots here
        return
    register_before_snapshot(before_snapshot)
    register_after_restore(after_restore)
    _registered = True


def before_snapshot() -> None:
    for service in _SERVICES:
        aws_client(service)
    for step in _STEPS:
        step()
    load_deferred()
    build_models()


def after_restore() -> None:
    random.seed()  # from os.urandom, renewed for each restored environment
    fresh_connections()


def load_deferred() -> int:
    """Import what our modules already imported defer to first access (PEP 562: a module's
    ``_DEFERRED`` maps each such attribute to the module defining it), as a first use would;
    returns how many attributes were resolved."""
    resolved = 0
    for name, module in list(sys.modules.items()):
        if not name.startswith("nanocmd_core.") or module is None:
            continue
        deferred: dict[str, str] = vars(module).get("_DEFERRED") or {}
        for attribute in deferred:
            if attribute not in vars(module):
                getattr(module, attribute)
                resolved += 1
    return resolved


def build_models() -> int:
    """Build the validators of every deferred pydantic model of ours already imported (each is
    otherwise built by its first use); returns how many were built."""
    if "pydantic" not in sys.modules:  # the webhook intake has none
        return 0
    from pydantic import BaseModel

    built = 0
    for name, module in list(sys.modules.items()):
        if not name.startswith("nanocmd_core.") or module is None:
            continue
        for value in list(vars(module).values()):
            if (
                isinstance(value, type)
                and issubclass(value, BaseModel)
                and value.__module__ == name
                and not value.__pydantic_complete__
                and value.model_rebuild(raise_errors=False)
            ):
                built += 1
    return built
