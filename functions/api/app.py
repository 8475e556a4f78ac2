"""ApiFunction: the management API (API Gateway REST proxy)."""

from __future__ import annotations

from functools import cache
from typing import Any

from nanocmd_core.api.app import create_api
from nanocmd_core.config import settings
from nanocmd_core.observability import MetricsTelemetry, function_logger, function_tracer, instrumented
from nanocmd_core.wiring import App, build_app

logger = function_logger(settings())
telemetry = MetricsTelemetry()
tracer = function_tracer()


@cache
def _services() -> App:
    return build_app(settings(), telemetry=telemetry)


api = create_api(settings(), _services)


@instrumented(logger, telemetry, tracer)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return api.resolve(event, context)
