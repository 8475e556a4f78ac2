"""``make run`` as a child process, for the benchmarks and the restart tests.

It is the stack exactly as an admin runs it (``python -m infra.local.run``), in a process of its
own: its AWS clients, caches and consumers are its own, and stopping it is a Ctrl-C (SIGINT).
The summary it prints gives its address and the events queue's URL.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import boto3

from infra.local.services import DEFAULT_LOG_DIR, REGION, REPO_ROOT, free_port

READY_LINE = "Ctrl-C stops it."


class StackProcess:
    """``python -m infra.local.run`` on a free loopback port with the given NANOCMD_* settings.

    ``data_dir`` None runs it ``--in-memory``; a directory keeps its state there (restart tests
    start a second one on the same directory). Output goes to ``.local/logs/stack-<prefix>.log``.
    """

    def __init__(
        self,
        settings: Mapping[str, str],
        *,
        prefix: str | None = None,
        data_dir: Path | None = None,
        args: Sequence[str] = (),
        start_timeout: float = 120.0,
    ) -> None:
        self.settings = dict(settings)
        self.prefix = prefix or f"stack-{uuid.uuid4().hex[:8]}"
        self.data_dir = data_dir
        self.args = list(args)
        self.start_timeout = start_timeout
        self.log_path = DEFAULT_LOG_DIR / f"stack-{self.prefix}-{uuid.uuid4().hex[:4]}.log"
        self.base_url = ""
        self.queue_url = ""
        self.dlq_url = ""
        self.summary: dict[str, str] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._sqs: Any = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NANOCMD_", "AWS_"))}
        env.update(self.settings)
        env.setdefault("NANOCMD_WORKER_INTERVAL", "0")
        env["PYTHONUNBUFFERED"] = "1"
        listen = f"127.0.0.1:{free_port()}"
        args = [sys.executable, "-m", "infra.local.run", "--listen", listen, "--prefix", self.prefix]
        args += ["--in-memory"] if self.data_dir is None else ["--data-dir", str(self.data_dir)]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:  # the child keeps its own descriptor
            self._proc = subprocess.Popen(
                [*args, *self.args], cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        try:
            self.summary = self._wait_summary()
            self.base_url = self.summary.get("listening", f"http://{listen}").split()[0]
            self.queue_url = self.summary.get("queue", "")
            self._wait_version()
            self._find_queues()
        except BaseException:
            self.stop()
            raise

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def _wait_summary(self) -> dict[str, str]:
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        while READY_LINE not in (text := self.output()):
            if self._proc.poll() is not None:
                raise RuntimeError(f"the local stack exited ({self._proc.returncode}):\n{text[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the local stack did not start in {self.start_timeout:g}s:\n{text[-3000:]}"
                )
            time.sleep(0.1)
        summary: dict[str, str] = {}
        started = False
        for line in text.splitlines():
            if line.startswith("nanocmd local stack "):
                started = True
            elif started and line.startswith("  "):
                key, _, value = line.strip().partition("  ")
                summary[key.strip()] = value.strip()
        return summary

    def _wait_version(self) -> None:
        parts = urlsplit(self.base_url)
        deadline = time.monotonic() + self.start_timeout
        while True:
            conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=5)
            try:
                conn.request("GET", "/version")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
            finally:
                conn.close()
            if time.monotonic() > deadline:
                raise TimeoutError("the local stack's /version did not answer")
            time.sleep(0.1)

    def _find_queues(self) -> None:
        endpoint = self.summary.get("queue, blobs", "").split(" ", 1)[0]
        if not (self.queue_url.startswith("http") and endpoint.startswith("http")):
            return
        # the queue server's endpoint, not the queue URL's host: a kept queue's URL names the port
        # of the run that created it
        self._sqs = boto3.client(
            "sqs",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        attrs = self._sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["RedrivePolicy"])
        dlq_arn = json.loads(attrs["Attributes"].get("RedrivePolicy", "{}")).get("deadLetterTargetArn", "")
        if dlq_arn:
            self.dlq_url = self._sqs.get_queue_url(QueueName=dlq_arn.rsplit(":", 1)[1])["QueueUrl"]

    def queue_depths(self) -> tuple[int, int]:
        """Messages in (the events queue: visible, in flight or delayed; its dead-letter queue)."""
        if self._sqs is None:
            return 0, 0
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]

        def depth(url: str) -> int:
            if not url:
                return 0
            attrs = self._sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
            return sum(int(attrs.get(n, 0)) for n in names)

        return depth(self.queue_url), depth(self.dlq_url)

    def wait_drained(self, timeout: float = 120.0, interval: float = 0.1) -> tuple[bool, float]:
        """Wait until the events queue is empty; (drained, seconds waited)."""
        t0 = time.monotonic()
        while self.queue_depths()[0]:
            if time.monotonic() - t0 > timeout:
                return False, time.monotonic() - t0
            time.sleep(interval)
        return True, time.monotonic() - t0

    def stop(self, timeout: float = 60.0) -> int | None:
        """Ctrl-C, then wait for everything it started to stop; returns its exit status."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        return proc.returncode
