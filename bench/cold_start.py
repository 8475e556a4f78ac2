"""Benchmark 2: cold start, as the import of each function's handler module the way Lambda does it.

In a Lambda-like sandbox (``bench/lambda_sandbox.py``: the function artifact ``sam build`` makes, a
layer of exactly the pinned distributions, an isolated interpreter, Lambda's environment, so
tracing is on as deployed) each handler is imported in a fresh interpreter, paired with a fresh
interpreter importing only the third-party modules that import loaded (every module from the layer,
in load order): the floor, what the handler cannot avoid short of importing less of its libraries.
Each of ``pairs`` rounds runs the pair back to back (alternating which goes first), the floor once
more with the garbage collector on throughout (the handlers pause it while they load; the paired
floor pauses it too, so the ratio compares like with like) and ``import boto3`` once; the ratio is
the median of the per-round ratios, so a load drift hits both sides of a ratio alike. Times are
the importing process's CPU time (user + system): what an import costs on a Lambda's own CPU, and
not inflated when other processes share this machine's cores (wall times are kept in the JSON).
Targets: handler ≤ 1.2 x floor; the webhook ≤ 1.6 x ``import boto3``.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.lambda_sandbox import CLOSED, Sandbox, lambda_env, write_floor
from infra.local import services

REPO_ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = REPO_ROOT / "functions"
TARGET_RATIO = 1.2
WEBHOOK_BOTO3_TARGET = 1.6
PAIRS = 15
HEAVY = ("nanocmd_core.engine", "nanocmd_core.workflows", "pynamodb")
"""Packages the webhook intake must not import (README: it stays short and lean)."""


@dataclass
class ColdStart:
    function: str
    handler_ms: float
    floor_ms: float
    ratio: float
    """Median over the rounds of handler / floor."""
    boto3_ms: float
    boto3_ratio: float
    """Median over the rounds of handler / ``import boto3`` (same round)."""
    third_party_modules: int
    own_modules: int
    heavy_imports: list[str]
    floor_failures: list[str] = field(default_factory=list)
    wall_ms: tuple[float, float] = (0.0, 0.0)
    """Median wall-clock times of the handler and its floor (the figures above are CPU times)."""
    prime_ms: float = 0.0
    """CPU of ``snapstart.before_snapshot`` after the import: the AWS clients, model schemas (and the
    API's route table) a first invocation builds, which SnapStart moves into the snapshot."""
    plain_floor_ms: float = 0.0
    plain_ratio: float = 0.0
    """The floor with the collector on throughout (Python's default), and the handler's ratio to it:
    what the handler's paused collection saves over importing its libraries plainly."""

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "target_ratio": TARGET_RATIO}


@dataclass
class NoBytecode:
    """The same imports with every bytecode cache hidden: a build that ships sources only."""

    boto3_ms: float
    webhook_ms: float


def child_env(dynamodb_endpoint: str = CLOSED) -> dict[str, str]:
    """For ``first_event.py``'s fresh interpreters (the dev venv, not the sandbox): dummy AWS and
    NANOCMD_* settings, no network but DynamoDB at ``dynamodb_endpoint`` when given."""
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


def function_names() -> list[str]:
    return sorted(p.parent.name for p in FUNCTIONS_DIR.glob("*/app.py"))


def _median_ms(values: Sequence[float]) -> float:
    return statistics.median(values) * 1000


def _pair_ratio(top: Sequence[float], bottom: Sequence[float]) -> float:
    """The median of the rounds' ratios."""
    return statistics.median(t / b for t, b in zip(top, bottom, strict=True))


def _heavy(modules: Sequence[str]) -> list[str]:
    return sorted({h for h in HEAVY for n in modules if n == h or n.startswith(h + ".")})


def run(
    names: Sequence[str] | None = None,
    runs: int = PAIRS,
    progress: Callable[[str], None] | None = None,
    without_bytecode: bool = False,
) -> list[ColdStart]:
    """``runs`` rounds of (handler, floor) per function and one ``import boto3``."""
    results, _ = measure(names or function_names(), runs, progress, without_bytecode)
    return results


def measure(
    names: Sequence[str],
    pairs: int = PAIRS,
    progress: Callable[[str], None] | None = None,
    without_bytecode: bool = False,
) -> tuple[list[ColdStart], NoBytecode | None]:
    scratch = Path(tempfile.mkdtemp(prefix="nanocmd-cold-"))
    try:
        box = Sandbox(scratch, names)
        envs = {name: lambda_env(name) for name in names}
        first = {name: box.run("handler", "app", box.tasks[name], envs[name]) for name in names}
        # the warm-up also finds each floor
        floors = {
            name: write_floor(box.tasks[name], first[name]["third_party"], gc_paused=True) for name in names
        }
        plain = {n: write_floor(box.tasks[n], first[n]["third_party"], "plain_floor_app") for n in names}
        failures = {n: box.run("floor", floors[n], box.tasks[n], envs[n])["failed"] for n in names}
        for n in names:
            box.run("floor", plain[n], box.tasks[n], envs[n])
        boto3_env, boto3_task = envs[names[0]], box.tasks[names[0]]
        box.run("module", "boto3", boto3_task, boto3_env)
        handler_s: dict[str, list[float]] = {n: [] for n in names}
        floor_s: dict[str, list[float]] = {n: [] for n in names}
        plain_s: dict[str, list[float]] = {n: [] for n in names}
        boto3_s: list[float] = []
        handler_w: dict[str, list[float]] = {n: [] for n in names}
        floor_w: dict[str, list[float]] = {n: [] for n in names}
        for i in range(pairs):
            for name in names:
                jobs = [("handler", "app"), ("floor", floors[name]), ("plain", plain[name])]
                for mode, target in jobs if i % 2 == 0 else jobs[::-1]:
                    out = box.run("floor" if mode == "plain" else mode, target, box.tasks[name], envs[name])
                    if mode == "plain":
                        plain_s[name].append(out["cpu"])
                        continue
                    (handler_s if mode == "handler" else floor_s)[name].append(out["cpu"])
                    (handler_w if mode == "handler" else floor_w)[name].append(out["seconds"])
            boto3_s.append(box.run("module", "boto3", boto3_task, boto3_env)["cpu"])
            if progress:
                progress(f"cold start: round {i + 1}/{pairs}")
        primes = {
            n: [box.run("prime", "app", box.tasks[n], envs[n])["prime_cpu"] for _ in range(3)] for n in names
        }
        results = []
        for name in names:
            results.append(
                ColdStart(
                    function=name,
                    handler_ms=_median_ms(handler_s[name]),
                    floor_ms=_median_ms(floor_s[name]),
                    ratio=_pair_ratio(handler_s[name], floor_s[name]),
                    boto3_ms=_median_ms(boto3_s),
                    boto3_ratio=_pair_ratio(handler_s[name], boto3_s),
                    third_party_modules=len(first[name]["third_party"]),
                    own_modules=len(first[name]["own"]),
                    heavy_imports=_heavy(first[name]["own"] + first[name]["third_party"]),
                    floor_failures=list(failures[name]),
                    wall_ms=(_median_ms(handler_w[name]), _median_ms(floor_w[name])),
                    prime_ms=_median_ms(primes[name]),
                    plain_floor_ms=_median_ms(plain_s[name]),
                    plain_ratio=_pair_ratio(handler_s[name], plain_s[name]),
                )
            )
        no_bytecode = None
        if without_bytecode and "webhook" in names:
            runs = 3
            env, task = envs["webhook"], box.tasks["webhook"]
            hidden = [box.run("module", "boto3", task, env, bytecode=False)["cpu"] for _ in range(runs)]
            webhook = [box.run("handler", "app", task, env, bytecode=False)["cpu"] for _ in range(runs)]
            no_bytecode = NoBytecode(boto3_ms=_median_ms(hidden), webhook_ms=_median_ms(webhook))
        return results, no_bytecode
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def render(
    results: Sequence[ColdStart], runs: int, no_bytecode: NoBytecode | None = None
) -> tuple[list[str], list[list[Any]], list[str]]:
    headers = [
        "function",
        "import CPU ms",
        "3rd-party floor, GC off",
        "ratio",
        f"≤ {TARGET_RATIO}x floor",
        "floor, GC on",
        "ratio to it",
        "import boto3",
        "x boto3",
        "first-call setup ms",
        "modules (ours + 3rd-party)",
        "imports engine/workflows/pynamodb",
    ]
    rows: list[list[Any]] = [
        [
            r.function,
            round(r.handler_ms),
            round(r.floor_ms),
            round(r.ratio, 2),
            "yes" if r.ratio <= TARGET_RATIO else "NO",
            round(r.plain_floor_ms),
            round(r.plain_ratio, 2),
            round(r.boto3_ms),
            round(r.boto3_ratio, 2),
            round(r.prime_ms),
            f"{r.own_modules} + {r.third_party_modules}",
            ", ".join(r.heavy_imports) or "none",
        ]
        for r in results
    ]
    notes = [
        f"{runs} rounds in a Lambda-like sandbox (the sam build artifact with its bytecode, the pinned"
        " layer only, isolated interpreter, Lambda's environment: tracing on as deployed); ratios are"
        " medians of per-round ratios, times medians. The floor runs with the garbage collector off"
        " during its imports, as the handlers do (README, \"Cold starts\"); 'floor, GC on' is the same"
        " imports with Python's default collection, and the handler's ratio to it.",
        "first-call setup: what the first invocation builds after the import (AWS clients, model"
        " schemas, the API's route table), done before the snapshot under SnapStart.",
    ]
    webhook = next((r for r in results if r.function == "webhook"), None)
    if webhook is not None:
        verdict = "OK" if not webhook.heavy_imports else "VIOLATION"
        notes.append(
            f"webhook: {webhook.boto3_ratio:.2f}x import boto3 (target ≤ {WEBHOOK_BOTO3_TARGET}:"
            f" {'yes' if webhook.boto3_ratio <= WEBHOOK_BOTO3_TARGET else 'NO'}); imports of"
            f" engine/workflows/pynamodb: {', '.join(webhook.heavy_imports) or 'none'} ({verdict})"
        )
    for r in results:
        if r.floor_failures:
            notes.append(f"{r.function}: {len(r.floor_failures)} floor modules failed to import alone")
    if no_bytecode is not None:
        notes.append(
            f"without bytecode (a build that ships sources only; Lambda's folders are read-only, so"
            f" every cold start compiles): import boto3 {no_bytecode.boto3_ms:.0f} ms, webhook"
            f" {no_bytecode.webhook_ms:.0f} ms"
        )
    return headers, rows, notes
