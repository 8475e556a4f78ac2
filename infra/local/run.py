"""``python -m infra.local.run`` (what ``make run`` starts): the whole system on loopback.

It starts DynamoDB Local, fauxqs (SQS, S3) and moto's server (the rest), creates template.yaml's
resources in them, points the process's AWS SDK at them with ``AWS_ENDPOINT_URL_*``, and runs the
local gateway (HTTP -> API Gateway proxy events -> the webhook/API handlers), the event source
mapping (consumer processes: queue -> events handler) and the worker's sweeper and one-time
schedules. Ctrl-C (SIGINT) or SIGTERM stops everything it started, the Java and Node processes and
the consumers included.

:class:`infra.local.stack.LocalStack` is the same thing as a context manager, for the end-to-end
tests; it can reuse already running servers (``aws_env=...``) and take extra settings (e.g. a fake
MDM server's URLs).

Settings are the NANOCMD_* variables of the Go NanoCMD (design.md §4) read from the environment:
NANOCMD_LISTEN (default 127.0.0.1:9003), NANOCMD_API, NANOCMD_ENQUEUE_URL, NANOCMD_PUSH_URL,
NANOCMD_ENQUEUE_API, NANOCMD_WEBHOOK_HMAC_KEY, NANOCMD_WORKER_INTERVAL ... The three secrets are put in
Secrets Manager (moto) and the handlers get only their ARNs, as on AWS (see infra.local.resources).
State is kept under ``.local/data/`` (``--data-dir``): DynamoDB Local's database, the queues and the
blobs, and the one-time schedules; a restart carries on where the last run stopped. ``--fresh``
(``make run FRESH=1``) starts from a clean slate; ``--in-memory`` keeps nothing.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from infra.local.durable import wipe
from infra.local.event_source import DEFAULT_CONCURRENCY
from infra.local.services import DEFAULT_LOG_DIR
from infra.local.stack import (
    DEFAULT_DATA_DIR,
    DEFAULT_FUNCTIONS_DIR,
    DEFAULT_GATEWAY_PROCESSES,
    DEFAULT_TEMPLATE,
    LocalStack,
)

log = logging.getLogger("infra.local")


def _gateway_processes(flag: int | None) -> int:
    if flag is not None:
        return max(0, flag)
    raw = os.environ.get("NANOCMD_LOCAL_GATEWAY_PROCESSES", "").strip()
    return int(raw) if raw.isdigit() else DEFAULT_GATEWAY_PROCESSES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.local.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", help="host:port (default NANOCMD_LISTEN or 127.0.0.1:9003)")
    parser.add_argument("--template", type=Path, default=DEFAULT_TEMPLATE)
    parser.add_argument("--functions-dir", type=Path, default=DEFAULT_FUNCTIONS_DIR)
    parser.add_argument("--prefix", default="nanocmd-local", help="prefix of the resources' names")
    parser.add_argument("--log-dir", type=Path, default=DEFAULT_LOG_DIR, help="the servers' logs")
    parser.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO"))
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="where the state is kept (default .local/data)",
    )
    parser.add_argument("--fresh", action="store_true", help="wipe the kept state first: a clean slate")
    parser.add_argument("--in-memory", action="store_true", help="keep nothing (state is gone at Ctrl-C)")
    parser.add_argument(
        "--events-concurrency",
        type=int,
        default=None,
        help="events batches processed at once"
        f" (default NANOCMD_LOCAL_EVENTS_CONCURRENCY or {DEFAULT_CONCURRENCY})",
    )
    parser.add_argument(
        "--gateway-processes",
        type=int,
        default=None,
        help="HTTP worker processes (default NANOCMD_LOCAL_GATEWAY_PROCESSES or"
        f" {DEFAULT_GATEWAY_PROCESSES}; 0: a thread of this process)",
    )
    args = parser.parse_args(argv)
    data_dir: Path | None = None if args.in_memory else args.data_dir.resolve()
    if data_dir is not None:
        if args.fresh:
            wipe(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("botocore", "boto3", "urllib3", "pynamodb"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    stack = LocalStack(
        template=args.template,
        functions_dir=args.functions_dir,
        listen=args.listen,
        prefix=args.prefix,
        log_dir=args.log_dir,
        data_dir=data_dir,
        events_concurrency=args.events_concurrency,
        gateway_processes=_gateway_processes(args.gateway_processes),
    )
    try:
        stack.start()
    except Exception as exc:
        log.error("local stack did not start: %s", exc)
        return 1
    try:
        print(stack.summary(), flush=True)
        print("Ctrl-C stops it.", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        print("stopping ...", flush=True)
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
