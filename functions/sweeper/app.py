"""SweeperFunction: runs on the worker interval (EventBridge Scheduler).

Step timeouts, re-pushes and overdue delayed steps arrive with the complete engine (issue 3);
until then a sweep only builds the engine, so a misconfiguration shows in its logs.
"""

from __future__ import annotations

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
    app = _app()
    logger.info("sweep", extra={"workflows": app.engine.registry.names()})
    return {"timed_out": 0, "repushed": 0, "sent": 0}
