"""SweeperFunction: one worker pass on the worker interval (EventBridge Scheduler rate schedule):
overdue delayed steps and send retries, step timeouts, completions whose delivery died, re-pushes."""

from __future__ import annotations

import gc

# No garbage collection while the handler loads (README, "Cold starts"): nothing the import builds is
# garbage, yet the collector ran ~130 times over it, a full pass among them; back on at the end.
gc.disable()

from dataclasses import asdict
from functools import cache
from typing import Any

from nanocmd_core import snapstart
from nanocmd_core.config import settings
from nanocmd_core.observability import MetricsTelemetry, function_logger, function_tracer, instrumented
from nanocmd_core.wiring import App, build_app

logger = function_logger(settings())
telemetry = MetricsTelemetry()
tracer = function_tracer()
snapstart.prime(clients=("dynamodb", "sqs", "s3", "scheduler"))


@cache
def _app() -> App:
    return build_app(settings(), telemetry=telemetry)


@instrumented(logger, telemetry, tracer)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return asdict(_app().engine.sweep())


# The handler has loaded: later collections skip what the import built (gc.freeze), then resume.
gc.freeze()
gc.enable()
