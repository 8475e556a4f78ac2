"""Runs the Lambda handlers in-process, as the local stack's stand-in for the Lambda service.

Each ``functions/<name>/app.py`` is a module called ``app``; they are loaded from their files under
distinct names (``nanocmd_fn_<name>``) so the four can live in one process, and freshly for each
:class:`FunctionHost`, so two local stacks started one after the other do not share module state.
Every invocation gets its own context object with the attributes handlers (and Powertools) read.

Unlike Lambda, concurrent invocations share one process (they run on the gateway's and worker's
threads), so handlers must not keep per-request state in globals, which they must not on Lambda
either since a warm container serves many requests.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from infra.local.services import ACCOUNT_ID, REGION
from infra.local.template import FUNCTION_TYPES, Template

log = logging.getLogger(__name__)

#: The contract's functions and their code folders, for when there is no template to read them from.
DEFAULT_FUNCTIONS: dict[str, str] = {
    "WebhookFunction": "webhook",
    "ApiFunction": "api",
    "EventsFunction": "events",
    "SweeperFunction": "sweeper",
}


@dataclass(frozen=True)
class FunctionSpec:
    """Where a function's handler lives and how Lambda would run it."""

    logical_id: str
    name: str  # code folder: webhook, api, events, sweeper
    path: Path  # the handler module's file
    handler_attr: str
    function_name: str
    timeout: int = 30
    memory: int = 128

    @property
    def arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.function_name}"


def function_specs(
    template: Template | None, functions_dir: Path, prefix: str = "nanocmd-local"
) -> dict[str, FunctionSpec]:
    """The template's functions, with code looked up in ``functions_dir/<name>/`` (e.g. ApiFunction:
    ``functions/api/app.py``), the handler's module and attribute from its Handler property.

    ``functions_dir`` is configurable so tests can point the stack at stand-in handlers.
    """
    specs: dict[str, FunctionSpec] = {}
    if template is not None:
        for logical_id, _ in template.of_type(*FUNCTION_TYPES):
            handler = str(template.function_property(logical_id, "Handler", "app.handler"))
            # the code of <Name>Function is functions/<name>/ (CodeUri may point at a build folder)
            name = DEFAULT_FUNCTIONS.get(logical_id, logical_id.removesuffix("Function").lower())
            module, _, attr = handler.rpartition(".")
            timeout = template.function_property(logical_id, "Timeout", 3)
            memory = template.function_property(logical_id, "MemorySize", 128)
            specs[logical_id] = FunctionSpec(
                logical_id=logical_id,
                name=name,
                path=functions_dir / name / (module.replace(".", "/") + ".py"),
                handler_attr=attr,
                function_name=f"{prefix}-{logical_id}"[:64],
                timeout=int(timeout) if isinstance(timeout, int | str) else 3,
                memory=int(memory) if isinstance(memory, int | str) else 128,
            )
    if not specs:
        for logical_id, name in DEFAULT_FUNCTIONS.items():
            specs[logical_id] = FunctionSpec(
                logical_id, name, functions_dir / name / "app.py", "handler", f"{prefix}-{logical_id}"
            )
    return specs


class LambdaContext:
    """The context object Lambda passes to a Python handler (the attributes handlers and
    Powertools read). The local stack, tests and benchmarks all use this one."""

    def __init__(self, function_name: str, *, memory: int = 128, timeout: int = 30) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{function_name}"
        self.memory_limit_in_mb = memory
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = time.strftime("%Y/%m/%d/[$LATEST]") + uuid.uuid4().hex
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class HandlerNotFound(RuntimeError):
    """A function's handler file or attribute does not exist (yet)."""


def load_module(path: Path, module_name: str) -> ModuleType:
    """Execute the file ``path`` as a fresh module registered as ``module_name``."""
    if not path.is_file():
        raise HandlerNotFound(f"no handler module at {path}")
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise HandlerNotFound(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def run_fresh(
    code: str, args: Sequence[str], env: Mapping[str, str], cwd: Path, timeout: float = 300
) -> tuple[dict[str, Any], str]:
    """Run ``code`` (``python -c``) in a fresh interpreter, as a cold Lambda starts one; its last
    line of output is JSON. Returns that document and what it wrote to stderr."""
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"fresh interpreter failed ({' '.join(args)}):\n{out.stderr[-2000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1])), out.stderr


class FunctionHost:
    """Loads each handler on first use (like a cold start) and invokes it with a new context."""

    def __init__(self, specs: dict[str, FunctionSpec] | None = None) -> None:
        self.specs = dict(specs or {})
        self._handlers: dict[str, Callable[[Any, Any], Any]] = {}
        self._lock = threading.Lock()

    def register(self, logical_id: str, fn: Callable[[Any, Any], Any], *, timeout: int = 30) -> None:
        """Use ``fn`` as the handler of ``logical_id`` (tests drive the worker with plain callables)."""
        with self._lock:
            if logical_id not in self.specs:
                name = DEFAULT_FUNCTIONS.get(logical_id, logical_id.lower())
                self.specs[logical_id] = FunctionSpec(
                    logical_id, name, Path(f"<{name}>"), "handler", f"local-{logical_id}", timeout
                )
            self._handlers[logical_id] = fn

    def has(self, logical_id: str) -> bool:
        return logical_id in self.specs

    def handler(self, logical_id: str) -> Callable[[Any, Any], Any]:
        with self._lock:
            if logical_id not in self._handlers:
                spec = self.specs[logical_id]
                module = load_module(spec.path, f"nanocmd_fn_{spec.name}")
                fn = getattr(module, spec.handler_attr, None)
                if not callable(fn):
                    raise HandlerNotFound(f"{spec.path} has no callable {spec.handler_attr!r}")
                self._handlers[logical_id] = fn
            return self._handlers[logical_id]

    def load_all(self) -> None:
        """Import every handler now, so a broken one shows at start-up rather than on first request."""
        for logical_id in self.specs:
            self.handler(logical_id)

    def invoke(self, logical_id: str, event: Any) -> Any:
        """Call the handler as Lambda would; exceptions propagate (the caller maps them)."""
        spec = self.specs[logical_id]
        fn = self.handler(logical_id)
        context = LambdaContext(spec.function_name, memory=spec.memory, timeout=spec.timeout)
        t0 = time.monotonic()
        log.debug("START %s RequestId: %s", spec.function_name, context.aws_request_id)
        try:
            return fn(event, context)
        finally:
            elapsed = (time.monotonic() - t0) * 1000
            log.debug(
                "REPORT %s RequestId: %s Duration: %.1f ms",
                spec.function_name,
                context.aws_request_id,
                elapsed,
            )
            if elapsed > spec.timeout * 1000:
                log.warning(
                    "%s ran %.0f ms, over its %d s timeout (Lambda would have stopped it)",
                    spec.function_name,
                    elapsed,
                    spec.timeout,
                )
