"""Child interpreters of the local stack that stand in for Lambda execution environments (events
consumers, gateway workers): started with the stack's environment, each says on a pipe when it
is ready, and each dies with its parent."""

from __future__ import annotations

import argparse
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from infra.local.services import REPO_ROOT
from infra.local.services import _parent_death_signal as parent_death_signal

log = logging.getLogger(__name__)

Child = tuple[subprocess.Popen[bytes], int]
"""A child process and the read end of its readiness pipe."""


def spawn(module: str, config: Mapping[str, Any]) -> Child:
    """``python -m module <config as JSON>``; the config gets ``ready_fd`` for :func:`say_ready`."""
    ready, ready_w = os.pipe()
    try:
        child = subprocess.Popen(
            [sys.executable, "-m", module, json.dumps({**config, "ready_fd": ready_w})],
            cwd=REPO_ROOT,
            env=dict(os.environ),  # the stack's environment, as the function's configuration
            stdin=subprocess.DEVNULL,
            pass_fds=(ready_w,),
            preexec_fn=parent_death_signal(),  # only a prctl call
        )
    finally:
        os.close(ready_w)
    return child, ready


def wait_ready(children: Sequence[Child], what: str, timeout: float = 120.0) -> None:
    """Block until every child has said it is ready; fail if one exits first or time runs out."""
    deadline = time.monotonic() + timeout
    for child, ready in children:
        with os.fdopen(ready, "rb") as pipe:
            while not select.select([pipe], [], [], 0.5)[0]:
                if child.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{what} {child.pid} did not start ({child.poll()})")
            pipe.read(1)


def say_ready(config: Mapping[str, Any]) -> None:
    """In the child: tell the parent it is ready."""
    fd = config.get("ready_fd")
    if isinstance(fd, int):
        os.write(fd, b"1")
        os.close(fd)


def stop(children: Sequence[subprocess.Popen[bytes]], what: str, timeout: float) -> None:
    """SIGTERM every child (each ends its work in hand), then SIGKILL what is left at ``timeout``."""
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s %s did not stop in %.0fs: killed", what, child.pid, timeout)
            child.kill()
            child.wait(5)


def child_main(
    tag: str, work: Callable[[dict[str, Any], threading.Event], None], argv: list[str] | None = None
) -> int:
    """A child's ``main``: the JSON config from argv, logging marked with ``tag`` and the pid, and
    ``work(config, stop)``, where ``stop`` is set by SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog=f"local {tag} process")
    parser.add_argument("config", help="JSON, as the parent wrote it")
    config = json.loads(parser.parse_args(argv).config)
    _child_logging(tag)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    work(config, stop)
    return 0


def _child_logging(tag: str) -> None:
    """A child's log lines, marked with what it is and its pid."""
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format=f"%(asctime)s %(levelname)s %(name)s[{tag} %(process)d]: %(message)s",
    )
    for noisy in ("botocore", "boto3", "urllib3", "pynamodb"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
