"""Following an instance until it is done (``start --wait``, ``instance --watch``): a rich progress
bar on a terminal, a line per change of the counts otherwise (a CI log), always on stderr so
stdout keeps only the result."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from nanocmd_core.cli import render
from nanocmd_core.cli.client import Client, Reply, segment
from nanocmd_core.cli.state import Failure

Update = Callable[[dict[str, Any]], None]


def finished(doc: dict[str, Any]) -> tuple[int, int]:
    """(ids past their start or done with, ids requested): what the bar shows."""
    counts = doc.get("counts", {})
    total = int(doc.get("requested") or 0)
    left = int(counts.get("pending", 0)) + int(counts.get("in_flight", 0))
    return max(0, total - left), total


def follow(
    client: Client,
    instance_id: str,
    interval: float,
    max_wait: float | None,
    stream: TextIO | None = None,
) -> Reply:
    """Poll ``GET /v1/instance/<id>`` until ``done``; the last answer. Ctrl-C stops the waiting
    (status 130), not the instance; ``max_wait`` passed without ``done`` is a failure (status 1)."""
    err = stream or sys.stderr
    deadline = None if max_wait is None else time.monotonic() + max_wait
    path = f"/v1/instance/{segment(instance_id)}"
    try:
        with _Reporter(err, instance_id) as update:
            while True:
                reply = client.request("GET", path)
                doc = reply.json()
                update(doc)
                if doc.get("done"):
                    return reply
                if deadline is not None and time.monotonic() + interval > deadline:
                    raise Failure(
                        f"instance {instance_id} not done after {max_wait:g} s: {render.counts_line(doc)}"
                    )
                time.sleep(interval)
    except KeyboardInterrupt:
        click.echo(
            f"\nstopped waiting; the instance goes on: nanocmdctl instance {instance_id} --watch", file=err
        )
        raise click.exceptions.Exit(130) from None


class _Reporter:
    """A context manager giving the function to call with each answer."""

    def __init__(self, stream: TextIO, instance_id: str) -> None:
        self.stream = stream
        self.instance_id = instance_id
        self.progress: Progress | None = None
        self.last = ""

    def __enter__(self) -> Update:
        if self.stream.isatty():
            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"),
                TimeElapsedColumn(),
                console=Console(file=self.stream),
            )
            self.progress.start()
            self.task = self.progress.add_task(self.instance_id, total=None, detail="")
        return self.update

    def update(self, doc: dict[str, Any]) -> None:
        line = render.counts_line(doc)
        if self.progress is not None:
            done, total = finished(doc)
            self.progress.update(self.task, completed=done, total=total or None, detail=line)
        elif line != self.last:
            click.echo(f"{self.instance_id}: {line}", file=self.stream)
        self.last = line

    def __exit__(self, *_: object) -> None:
        if self.progress is not None:
            self.progress.stop()
