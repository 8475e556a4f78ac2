"""SweeperFunction: one worker pass on the worker interval (EventBridge Scheduler rate schedule):
overdue delayed steps and send retries, step timeouts, completions whose delivery died, re-pushes."""

from __future__ import annotations

import gc

# No garbage collection while the handler loads (README, "Cold starts"): nothing the import builds is
# garbage, yet the collector ran over it ~130 times (for the sweeper, a full pass too); on again at the end.
gc.disable()

from dataclasses import asdict
from functools import cache
from typing import Any

# The libraries nanocmd_core builds on, imported here at the top level rather than from deep inside
# nanocmd_core: there CPython 3.11 allocated and freed a new frame-stack chunk over and over while
# their import chains ran (1,400-1,800 page faults, README "Cold starts").
import boto3  # noqa: F401
import pynamodb.models  # noqa: F401
from pydantic import BaseModel, Field  # noqa: F401

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
