"""ApiFunction: the management API (API Gateway REST proxy).

The route table, and the route modules with it, are built on the first request (or before the
snapshot: this function has SnapStart), not at import (issue 14: the import is what every cold
start without SnapStart pays)."""

from __future__ import annotations

import gc

# No garbage collection while the handler loads (README, "Cold starts"): nothing the import builds is
# garbage, yet the collector ran over it ~130 times (for the sweeper, a full pass too); on again at the end.
gc.disable()

from functools import cache
from typing import Any

# The libraries nanocmd_core builds on, imported here at the top level rather than from deep inside
# nanocmd_core: there CPython 3.11 allocated and freed a new frame-stack chunk over and over while
# their import chains ran (1,400-1,800 page faults, README "Cold starts").
import boto3  # noqa: F401
import pynamodb.models  # noqa: F401
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from pydantic import BaseModel, Field  # noqa: F401

from nanocmd_core import snapstart
from nanocmd_core.config import settings
from nanocmd_core.observability import MetricsTelemetry, function_logger, function_tracer, instrumented
from nanocmd_core.wiring import App, build_app

logger = function_logger(settings())
telemetry = MetricsTelemetry()
tracer = function_tracer()


@cache
def _services() -> App:
    return build_app(settings(), telemetry=telemetry)


@cache
def _api() -> APIGatewayRestResolver:
    from nanocmd_core.api.app import create_api

    return create_api(settings(), _services)


snapstart.prime(_api, clients=("dynamodb", "sqs", "s3", "scheduler"))


@instrumented(logger, telemetry, tracer)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _api().resolve(event, context)


# The handler has loaded: later collections skip what the import built (gc.freeze), then resume.
gc.freeze()
gc.enable()
