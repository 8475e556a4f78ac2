"""SweeperFunction: one worker pass on the worker interval (EventBridge Scheduler rate schedule):
step timeouts and completions whose delivery died."""

from __future__ import annotations

from dataclasses import asdict
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger

from nanocmd_core.config import settings
from nanocmd_core.wiring import App, build_app

logger = Logger(service="nanocmd")


@cache
def _app() -> App:
    return build_app(settings())


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return asdict(_app().engine.sweep())
