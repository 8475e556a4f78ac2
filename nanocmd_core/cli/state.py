"""What every command gets from the global options (``click``'s context object), and the helpers
the commands share: reading ids, paging, deciding between a table and ``--json``."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import click
from rich.console import Console

from nanocmd_core.cli import render
from nanocmd_core.cli.client import Client, Query
from nanocmd_core.cli.config import ConfigError, Target, resolve

QUERY_IDS = 100
"""Ids one request carries in its query string: the status route's limit, and well below API
Gateway's URL limit (8,192 characters) for UUIDs."""


class Failure(click.ClickException):
    """A request that failed: one line on stderr, exit status 1, no traceback."""

    exit_code = 1

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.message}", file=file or sys.stderr)


@dataclass
class State:
    """The global options. The target is resolved on first use, so ``--help`` and bad usage
    never read the config file."""

    url: str | None = None
    api_key: str | None = None
    server: str | None = None
    timeout: float = 30.0
    as_json: bool = False
    _target: Target | None = field(default=None, repr=False)
    _client: Client | None = field(default=None, repr=False)

    @property
    def target(self) -> Target:
        if self._target is None:
            try:
                self._target = resolve(self.url, self.api_key, self.server)
            except ConfigError as exc:
                raise click.UsageError(str(exc)) from None
        return self._target

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(self.target.url, self.target.api_key, self.timeout)
        return self._client

    def authed(self) -> Client:
        """The client for a ``/v1`` route: a usage error, before any request, when no key is set."""
        client = self.client
        if not client.api_key:
            raise click.UsageError(
                "no API key: pass --api-key, set $NANOCMD_API, or name a server of the config file "
                "with --server (see nanocmdctl --help)"
            )
        return client

    def console(self) -> Console:
        return render.console()

    def show(self, raw: bytes, doc: Any, table: Callable[[Console, Any], None]) -> None:
        """``--json``: the API's body as it came; else the table."""
        if self.as_json:
            render.raw_json(raw)
        else:
            table(self.console(), doc)


pass_state = click.make_pass_decorator(State)


def read_ids(args: Sequence[str], ids_file: IO[str] | None) -> list[str]:
    """Ids from the arguments, then from the file (one per line; blank lines and ``#`` comments
    skipped, so an inventory export works as it is), in order, repeats dropped."""
    ids = [a.strip() for a in args if a.strip()]
    if ids_file is not None:
        for line in ids_file:
            value = line.split("#", 1)[0].strip()
            if value:
                ids.append(value)
    return list(dict.fromkeys(ids))


def chunks(items: Sequence[str], size: int = QUERY_IDS) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def id_query(ids: Sequence[str]) -> Query:
    return [("id", i) for i in ids]


def show_per_id(state: State, path: str, wanted: Sequence[str], table: Any) -> None:
    """GET ``path`` for ``wanted`` ids, 100 a request; one answer is shown as it came, several are
    merged into one document of the same shape (a dict keyed by id)."""
    client = state.authed()
    replies = [client.request("GET", path, id_query(chunk)) for chunk in chunks(wanted)]
    merged: dict[str, Any] = {}
    for reply in replies:
        merged.update(reply.json())
    raw = replies[0].body if len(replies) == 1 else json.dumps(merged).encode()
    state.show(raw, merged, table)


def pages(
    client: Client,
    path: str,
    key: str,
    query: Query,
    limit: int | None,
    page_most: int,
    next_token: str | None,
) -> dict[str, Any]:
    """Follow ``next`` until ``limit`` items (None: all) are read; the last page's document with
    ``key`` holding every item read and ``next`` the token to continue from (null at the end).
    Each page asks for exactly what is still wanted, so that token continues where this stops."""
    items: list[Any] = []
    doc: dict[str, Any] = {}
    while True:
        size = page_most if limit is None else min(page_most, limit - len(items))
        page_query = [*query, ("limit", str(size))] + ([("next", next_token)] if next_token else [])
        doc = client.get(path, page_query)
        items.extend(doc.get(key) or [])
        if doc.get("next") and doc.get("next") == next_token:  # would loop for ever
            raise Failure(f"{path}: the server answered the same next token again")
        next_token = doc.get("next")
        if not next_token or (limit is not None and len(items) >= limit):
            break
    doc[key] = items
    return doc


ids_file_option = click.option(
    "--ids-file",
    type=click.File("r"),
    metavar="FILE",
    help="Read ids from FILE, one a line ('#' starts a comment); '-' reads standard input.",
)


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.ensure_object(State).as_json = True


json_flag = click.option(
    "--json",
    is_flag=True,
    expose_value=False,
    callback=_set_json,
    help="Print the API's JSON unchanged (as the global --json).",
)
"""``--json`` after the command too (``nanocmdctl status X --json``), as people type it."""
