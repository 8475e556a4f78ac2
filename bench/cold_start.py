"""Benchmark 2: cold start, as the import time of each function's handler module.

Each figure is the median of fresh interpreters (one discarded warm-up first, so bytecode caches
exist), set up with dummy AWS credentials and NANOCMD_* values pointing at a closed port, so an
import that touched the network would fail rather than wait. The floor is the import of only the
third-party modules the handler pulls in (every module loaded from site-packages, in load order):
what the handler cannot avoid short of importing less of its libraries. Target: ≤ 1.2 x floor.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from infra.local import services
from infra.local.lambda_runtime import run_fresh

REPO_ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = REPO_ROOT / "functions"
TARGET_RATIO = 1.2
CLOSED = "http://127.0.0.1:9"
HEAVY = ("nanocmd_core.engine", "nanocmd_core.workflows", "pynamodb")
"""Packages the webhook intake must not import (README: it stays short and lean)."""

_CHILD = rf"""
import importlib, importlib.util, json, sys, time
mode, target, repo = sys.argv[1], sys.argv[2], sys.argv[3]
names = [] if mode == "handler" else json.loads(open(target).read())
before = set(sys.modules)
t0 = time.perf_counter()
if mode == "handler":
    spec = importlib.util.spec_from_file_location("app", target)
    module = importlib.util.module_from_spec(spec)
    sys.modules["app"] = module
    spec.loader.exec_module(module)
else:
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:
            pass
elapsed = time.perf_counter() - t0
third_party = []
for name, mod in list(sys.modules.items()):
    path = getattr(mod, "__file__", None) or ""
    if name in before or not path:
        continue
    if "site-packages" in path or "dist-packages" in path:  # the venv may live inside the repo
        third_party.append(name)
heavy = sorted({{h for h in {HEAVY!r} for n in sys.modules if n == h or n.startswith(h + ".")}})
print(json.dumps({{"seconds": elapsed, "third_party": third_party, "heavy": heavy}}))
"""


@dataclass
class ColdStart:
    function: str
    handler_ms: float
    floor_ms: float
    third_party_modules: int
    heavy_imports: list[str]

    @property
    def ratio(self) -> float:
        return self.handler_ms / self.floor_ms if self.floor_ms else float("inf")

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": round(self.ratio, 3), "target_ratio": TARGET_RATIO}


def function_names() -> list[str]:
    return sorted(p.parent.name for p in FUNCTIONS_DIR.glob("*/app.py"))


def child_env(dynamodb_endpoint: str = CLOSED) -> dict[str, str]:
    """Dummy AWS and NANOCMD_* settings: enough for every handler's import, no network (but
    DynamoDB at ``dynamodb_endpoint`` when given)."""
    env = {k: v for k, v in os.environ.items() if k not in services.AWS_VARS_TO_UNSET}
    env.update(services.aws_env(dynamodb_endpoint, CLOSED, CLOSED))
    env.update(
        {
            "NANOCMD_TABLE": "bench",
            "NANOCMD_QUEUE_URL": f"{CLOSED}/123456789012/bench.fifo",
            "NANOCMD_ENQUEUE_URL": f"{CLOSED}/v1/enqueue/",
            "NANOCMD_PUSH_URL": f"{CLOSED}/v1/push/",
            "NANOCMD_ENQUEUE_API": "bench",
            "NANOCMD_API": "bench",
            "PYTHONPATH": str(REPO_ROOT),
            "POWERTOOLS_SERVICE_NAME": "nanocmd",
        }
    )
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _run(mode: str, target: str, env: dict[str, str]) -> dict[str, Any]:
    return run_fresh(_CHILD, [mode, target, str(REPO_ROOT)], env, REPO_ROOT, timeout=120)[0]


def measure(name: str, runs: int = 10, progress: Callable[[str], None] | None = None) -> ColdStart:
    """Median import time of functions/<name>/app.py and of its third-party floor."""
    env = child_env()
    handler = str(FUNCTIONS_DIR / name / "app.py")
    first = _run("handler", handler, env)  # warm-up: writes bytecode caches, finds the floor
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(first["third_party"], f)
        floor_list = f.name
    try:
        _run("floor", floor_list, env)
        handler_s: list[float] = []
        floor_s: list[float] = []
        for _ in range(runs):  # interleaved, so machine load drifts hit both alike
            handler_s.append(_run("handler", handler, env)["seconds"])
            floor_s.append(_run("floor", floor_list, env)["seconds"])
    finally:
        os.unlink(floor_list)
    result = ColdStart(
        function=name,
        handler_ms=statistics.median(handler_s) * 1000,
        floor_ms=statistics.median(floor_s) * 1000,
        third_party_modules=len(first["third_party"]),
        heavy_imports=list(first["heavy"]),
    )
    if progress:
        progress(f"cold start: {name} {result.handler_ms:.0f} ms (floor {result.floor_ms:.0f} ms)")
    return result


def run(
    names: Sequence[str] | None = None, runs: int = 10, progress: Callable[[str], None] | None = None
) -> list[ColdStart]:
    return [measure(n, runs, progress) for n in (names or function_names())]


def render(results: Sequence[ColdStart], runs: int) -> tuple[list[str], list[list[Any]], list[str]]:
    headers = [
        "function",
        "handler import ms",
        "3rd-party floor ms",
        "ratio",
        "≤ 1.2x floor",
        "3rd-party modules",
        "imports engine/workflows/pynamodb",
    ]
    rows: list[list[Any]] = [
        [
            r.function,
            round(r.handler_ms, 1),
            round(r.floor_ms, 1),
            round(r.ratio, 2),
            "yes" if r.ratio <= TARGET_RATIO else "NO",
            r.third_party_modules,
            ", ".join(r.heavy_imports) or "none",
        ]
        for r in results
    ]
    notes = [
        f"Medians of {runs} fresh interpreters each (bytecode cached); floor = importing only the"
        " site-packages modules the handler loads."
    ]
    webhook = next((r for r in results if r.function == "webhook"), None)
    if webhook is not None:
        verdict = "OK" if not webhook.heavy_imports else "VIOLATION"
        notes.append(
            f"webhook imports of engine/workflows/pynamodb: {', '.join(webhook.heavy_imports) or 'none'}"
            f" ({verdict}: it must import none)"
        )
    return headers, rows, notes
