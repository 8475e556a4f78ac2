"""The local API Gateway as several processes sharing one port, as Lambda runs several instances
of the webhook and API functions when a fleet posts at once.

One interpreter holds one interpreter lock: a gateway in the stack's own process answers a burst
of webhooks at the speed of one core, behind whatever else that process runs. Here each worker is
a fresh interpreter (``python -m infra.local.gateway_pool``) that loads the handlers from their
files, as a cold Lambda does, and serves the same port (SO_REUSEPORT: the kernel spreads the
connections over them).
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from infra.local import processes
from infra.local.gateway import LocalGateway, routes_from_template
from infra.local.lambda_runtime import FunctionHost, function_specs
from infra.local.services import free_port
from infra.local.template import Template


class GatewayPool:
    """``workers`` gateway processes on ``host:port`` (a free port when 0)."""

    def __init__(
        self,
        workers: int,
        *,
        template: Path,
        functions_dir: Path,
        prefix: str,
        host: str,
        port: int,
        stage: str,
    ) -> None:
        self.workers = max(1, workers)
        self.config: dict[str, Any] = {
            "template": str(template),
            "functions_dir": str(functions_dir),
            "prefix": prefix,
            "host": host,
            "port": port or free_port(host),
            "stage": stage,
        }
        self._children: list[subprocess.Popen[bytes]] = []

    @property
    def base_url(self) -> str:
        return f"http://{self.config['host']}:{self.config['port']}"

    def start(self, timeout: float = 120.0) -> None:
        spawned = [processes.spawn("infra.local.gateway_pool", self.config) for _ in range(self.workers)]
        self._children = [child for child, _ in spawned]
        try:
            processes.wait_ready(spawned, "gateway worker", timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 10.0) -> None:
        """In-flight requests finish (each worker's server shuts down gracefully on SIGTERM)."""
        children, self._children = self._children, []
        processes.stop(children, "gateway worker", timeout)


def _serve(config: dict[str, Any], stop: threading.Event) -> None:
    template = Template.load(Path(config["template"]))
    functions = FunctionHost(function_specs(template, Path(config["functions_dir"]), config["prefix"]))
    functions.load_all()
    gateway = LocalGateway(
        functions,
        host=config["host"],
        port=int(config["port"]),
        routes=routes_from_template(template),
        stage=config["stage"],
        reuse_port=True,
    )
    gateway.start()
    processes.say_ready(config)
    while not stop.wait(0.5):
        pass
    gateway.stop()


def main(argv: list[str] | None = None) -> int:
    return processes.child_main("gateway", _serve, argv)


if __name__ == "__main__":
    sys.exit(main())
