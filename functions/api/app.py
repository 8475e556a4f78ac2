"""ApiFunction: the management API (API Gateway REST proxy)."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools import Logger

from nanocmd_core.api.app import create_api
from nanocmd_core.config import settings
from nanocmd_core.wiring import App, build_app

logger = Logger(service="nanocmd")


@cache
def _services() -> App:
    return build_app(settings())


api = create_api(settings(), _services)


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return api.resolve(event, context)
