"""A stand-in for a Lambda execution environment, to import handlers the way Lambda does.

Lambda's Python runtime starts a fresh interpreter whose ``sys.path`` begins with the function's code
(``/var/task``: ``app.py`` and the ``nanocmd_core`` package, as ``infra/build/build.py`` lays them
out) and the layer (``/opt/python``: the pinned third-party packages and nothing else), imports a
few modules of its own (its bootstrap), then ``app``. Here:

* the task root is built by ``infra/build/build.py`` itself, with the bytecode the build ships
  (``build.compile_bytecode``, same invalidation mode; compiled by this interpreter);
* the layer is a folder of links to this venv's copies of exactly the distributions of
  ``infra/build/layer-constraints.txt`` (the same pins): the dev venv's extras, which third-party
  code picks up when present (botocore imports ``awscrt``, urllib3 ``pyOpenSSL``), are absent, as
  on Lambda;
* the interpreter runs isolated (``-I -S``: no site-packages, no ``PYTHON*`` variables) with an
  environment of only what Lambda sets (``LAMBDA_TASK_ROOT``, ``AWS_LAMBDA_FUNCTION_NAME``, the
  X-Ray daemon address, ...) and the template's variables: Powertools sees Lambda, so tracing is on
  as deployed (the Tracer patches botocore).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import io
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = REPO_ROOT / "infra" / "build" / "layer-constraints.txt"
CLOSED = "http://127.0.0.1:9"
"""Where every endpoint points: a closed port, so an import that touched the network would fail."""
MEMORY = {"webhook": 256, "api": 512, "events": 512, "sweeper": 512}
BOOTSTRAP_MODULES = ("importlib", "json", "logging", "os", "site", "time", "traceback", "warnings", "decimal")
"""What the runtime's bootstrap (awslambdaric) has imported before it imports the handler."""

# Runs in the sandboxed interpreter. argv: mode (handler|floor|module|prime), target (a module
# name: "app", a floor module written by write_floor, or e.g. "boto3"), task root, layer. Prints one
# JSON line. "prime" imports the handler, then runs what SnapStart would run before the snapshot
# (nanocmd_core.snapstart).
CHILD = r"""
import sys
mode, target, task, layer = sys.argv[1:5]
sys.path[:0] = [task, layer]
import importlib, json, time
for name in BOOTSTRAP:
    importlib.import_module(name)
before = set(sys.modules)
t0, c0 = time.perf_counter(), time.process_time()
module = importlib.import_module(target)
elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
failed = list(getattr(module, "FAILED", [])) if mode == "floor" else []
prime_cpu = None
if mode == "prime":
    from nanocmd_core import snapstart
    c1 = time.process_time()
    snapstart.before_snapshot()
    prime_cpu = time.process_time() - c1
third_party, own = [], []
for name, mod in list(sys.modules.items()):
    path = getattr(mod, "__file__", None) or ""
    if name in before or not path or name == target:
        continue
    if path.startswith(layer + "/"):
        third_party.append(name)
    elif path.startswith(task + "/"):
        own.append(name)
out = {"seconds": elapsed, "cpu": cpu, "prime_cpu": prime_cpu, "failed": failed}
print(json.dumps({**out, "third_party": third_party, "own": own}))
"""


def write_floor(
    task: Path, modules: Sequence[str], name: str = "floor_app", *, gc_paused: bool = False
) -> str:
    """The floor as a module beside ``app.py``: the handler with every line of ours taken out,
    importing exactly the third-party modules the handler's import loaded, in load order. A module,
    imported as Lambda imports ``app``, because the same imports cost about a tenth more CPU run as
    a module's body than as a loop of ``import_module`` calls at top level (even from a module that
    holds nothing but them): a loop would make a handler without code of its own look 1.1x its floor.
    ``gc_paused``: with the garbage collector off during the imports, as the handlers run theirs, so
    the ratio compares the same imports under the same interpreter settings."""
    lines = ["import gc", "gc.disable()"] if gc_paused else []
    lines.append("FAILED = []")
    for module in modules:
        lines += ["try:", f"    import {module}", "except Exception as exc:"]
        lines.append(f"    FAILED.append({module!r} + ': ' + repr(exc))")
    if gc_paused:
        lines += ["gc.freeze()", "gc.enable()"]
    (task / f"{name}.py").write_text("\n".join(lines) + "\n")
    return name


def _build_module() -> ModuleType:
    """``infra/build/build.py``, the artifact builder SAM runs (a script, not a package module)."""
    path = REPO_ROOT / "infra" / "build" / "build.py"
    spec = importlib.util.spec_from_file_location("nanocmd_build", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("nanocmd_build", module)
    spec.loader.exec_module(module)
    return module


def layer_distributions() -> list[str]:
    """The distributions of the layer: every pin of ``layer-constraints.txt``."""
    names = []
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            names.append(line.split("==", 1)[0].strip())
    return names


def build_layer(dest: Path) -> Path:
    """A layer folder: links to this venv's files of the layer's distributions (their bytecode
    caches included), nothing else."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in layer_distributions():
        dist = importlib.metadata.distribution(name)
        for file in dist.files or []:
            parts = Path(str(file)).parts
            if not parts or parts[0] in {"..", "bin"}:
                continue
            source = Path(str(dist.locate_file(file)))
            if parts[0] == "__pycache__":  # the cache of a top-level module (six.py, ...)
                (dest / "__pycache__").mkdir(exist_ok=True)
                link = dest / "__pycache__" / parts[-1]
            else:
                link = dest / parts[0]
                source = Path(str(dist.locate_file(parts[0])))
            if not link.exists() and source.exists():
                link.symlink_to(source)
    return dest


def build_task_root(name: str, dest: Path) -> Path:
    """``functions/<name>`` as ``sam build`` makes it (``build.py function``), with the bytecode the
    build ships, compiled here by this interpreter."""
    build = _build_module()
    with contextlib.redirect_stderr(io.StringIO()):  # its log lines
        build.build_function(REPO_ROOT, name, dest)
    build.compile_bytecode(dest, sys.executable, build.FUNCTION_BYTECODE_MODE)
    return dest


def lambda_env(name: str) -> dict[str, str]:
    """What Lambda sets in a ``python3.12`` function's environment, plus the template's variables
    (dummy values) and dummy credentials; every endpoint a closed port."""
    function_name = f"nanocmd-{name.capitalize()}Function"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "LAMBDA_TASK_ROOT": "/var/task",
        "LAMBDA_RUNTIME_DIR": "/var/runtime",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
        "AWS_LAMBDA_FUNCTION_NAME": function_name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(MEMORY.get(name, 512)),
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function_name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2026/01/01/[$LATEST]0123456789abcdef",
        "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9",
        "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        "_AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1",
        "_AWS_XRAY_DAEMON_PORT": "2000",
        "_HANDLER": "app.handler",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_ENDPOINT_URL": CLOSED,
        "AWS_EC2_METADATA_DISABLED": "true",
        # template.yaml Globals (dummy values)
        "NANOCMD_TABLE": "nanocmd-Table",
        "NANOCMD_QUEUE_URL": f"{CLOSED}/123456789012/nanocmd-events.fifo",
        "NANOCMD_BUCKET": "nanocmd-blobs",
        "NANOCMD_ENQUEUE_URL": f"{CLOSED}/v1/enqueue/",
        "NANOCMD_PUSH_URL": f"{CLOSED}/v1/push/",
        "NANOCMD_MICROMDM": "false",
        "NANOCMD_API_SECRET": "arn:aws:secretsmanager:us-east-1:123456789012:secret:api",
        "NANOCMD_ENQUEUE_API_SECRET": "arn:aws:secretsmanager:us-east-1:123456789012:secret:enqueue",
        "NANOCMD_WEBHOOK_HMAC_KEY_SECRET": "arn:aws:secretsmanager:us-east-1:123456789012:secret:hmac",
        "NANOCMD_SCHEDULE_GROUP": "nanocmd",
        "NANOCMD_SCHEDULER_ROLE_ARN": "arn:aws:iam::123456789012:role/scheduler",
        "NANOCMD_SCHEDULE_TARGET_ARN": "arn:aws:sqs:us-east-1:123456789012:nanocmd-events.fifo",
        "NANOCMD_VERSION": "bench",
        "POWERTOOLS_SERVICE_NAME": "nanocmd",
        "POWERTOOLS_METRICS_NAMESPACE": "NanoCMD",
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }
    return env


class Sandbox:
    """Task roots per function and one layer under ``root`` (a scratch folder the caller owns)."""

    def __init__(self, root: Path, names: Sequence[str]) -> None:
        self.root = root
        self.layer = build_layer(root / "opt-python")
        self.tasks = {name: build_task_root(name, root / f"task-{name}") for name in names}

    def run(
        self, mode: str, target: str, task: Path, env: Mapping[str, str], *, bytecode: bool = True
    ) -> dict[str, Any]:
        """One fresh isolated interpreter; ``bytecode=False`` hides every cache (a build that
        ships none: each module compiled from source on each cold start)."""
        code = f"BOOTSTRAP = {BOOTSTRAP_MODULES!r}\n" + CHILD
        flags = ["-I", "-S"]
        if not bytecode:
            empty = self.root / "no-bytecode"
            empty.mkdir(exist_ok=True)
            flags += ["-B", "-X", f"pycache_prefix={empty}"]
        argv = [sys.executable, *flags, "-c", code, mode, target, str(task), str(self.layer)]
        out = subprocess.run(argv, env=dict(env), cwd=task, capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"sandboxed import failed ({mode} {target}):\n{out.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        return result
