"""The local SQS event source mapping, run as Lambda runs it: several batches at once.

Lambda scales a FIFO queue's consumers with its active message groups, each consumer an execution
environment of its own that handles one batch at a time; SQS never hands out a message group
another consumer holds in flight, so one slow device never holds back the others. This runs
``concurrency`` such consumers, each a :class:`~infra.local.worker.QueuePoller`:

- ``mode="process"`` (what ``make run`` and the end-to-end tests use): one fresh interpreter per
  consumer (``python -m infra.local.event_source``), which imports the handler from its file as a
  cold Lambda does and runs with the stack's environment. The consumers then use both cores instead
  of sharing one interpreter lock with the gateway.
- ``mode="thread"``: consumer threads in this process, for handlers given as plain callables.

A consumer stops between batches: SIGTERM (or the stop event) lets the batch in hand finish, and a
batch received after it is handed back to the queue at once.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

from infra.local import processes
from infra.local.lambda_runtime import FunctionHost, FunctionSpec
from infra.local.worker import QueuePoller

log = logging.getLogger(__name__)

Mode = Literal["process", "thread"]

#: consumers when nothing says otherwise: enough to overlap DynamoDB round-trips on two cores
DEFAULT_CONCURRENCY = 4


class EventSourceMapping:
    """``concurrency`` consumers of one queue for one function; the worker's loop of the stack."""

    def __init__(
        self,
        functions: FunctionHost,
        function: str,
        queue_url: str,
        *,
        batch_size: int = 10,
        wait_seconds: int = 1,
        retry_visibility: int | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        mode: Mode = "process",
    ) -> None:
        self.functions = functions
        self.function = function
        self.queue_url = queue_url
        # how each consumer polls: the same for a thread here and a process's own poller
        self.polling: dict[str, Any] = {
            "batch_size": batch_size,
            "wait_seconds": wait_seconds,
            "retry_visibility": retry_visibility,
        }
        self.concurrency = max(1, concurrency)
        self.mode = mode
        self._pollers: list[QueuePoller] = []
        self._children: list[subprocess.Popen[bytes]] = []

    def _poller(self) -> QueuePoller:
        return QueuePoller(self.functions, self.function, self.queue_url, **self.polling)

    def start(self, timeout: float = 120.0) -> None:
        """Bring the consumers up and wait until each has loaded its handler and polls, so the first
        events are shared out as Lambda would share them, not swallowed by the first one up."""
        if self._pollers or self._children:
            return
        if self.mode == "thread":
            self._pollers = [self._poller() for _ in range(self.concurrency)]
            return
        spawned = [self._spawn() for _ in range(self.concurrency)]
        self._children = [child for child, _ in spawned]
        processes.wait_ready(spawned, "events consumer", timeout)

    def run(self, stop: threading.Event) -> None:
        """Run the consumers until ``stop`` is set (the Worker calls this on a thread of its own)."""
        self.start()
        if self.mode == "thread":
            threads = [
                threading.Thread(target=p.run, args=(stop,), name=f"local-esm-{n}", daemon=True)
                for n, p in enumerate(self._pollers)
            ]
            for t in threads:
                t.start()
            stop.wait()
            return
        while not stop.wait(0.5):
            for n, child in enumerate(self._children):
                if child.poll() is not None and not stop.is_set():
                    log.warning("events consumer %d exited with %s; starting another", n, child.returncode)
                    replacement, ready = self._spawn()
                    os.close(ready)
                    self._children[n] = replacement

    def _spawn(self) -> processes.Child:
        spec = self.functions.specs[self.function]
        return processes.spawn(
            "infra.local.event_source",
            {"spec": {**asdict(spec), "path": str(spec.path)}, "queue_url": self.queue_url, **self.polling},
        )

    def quiesce(self, timeout: float) -> None:
        """Let every consumer finish the batch in hand, then end the consumer processes."""
        for p in self._pollers:
            p.quiesce(timeout)
        children, self._children = self._children, []
        processes.stop(children, "events consumer", timeout)


def _consume(config: dict[str, Any], stop: threading.Event) -> None:
    """One consumer process: load the handler, poll until SIGTERM/SIGINT."""
    raw_spec = dict(config["spec"])
    spec = FunctionSpec(**{**raw_spec, "path": Path(str(raw_spec["path"]))})
    functions = FunctionHost({spec.logical_id: spec})
    functions.load_all()
    polling = {k: config[k] for k in ("batch_size", "wait_seconds", "retry_visibility")}
    poller = QueuePoller(functions, spec.logical_id, str(config["queue_url"]), **polling)
    processes.say_ready(config)
    poller.run(stop)


def main(argv: list[str] | None = None) -> int:
    return processes.child_main("events", _consume, argv)


if __name__ == "__main__":
    sys.exit(main())
