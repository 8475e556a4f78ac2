"""Commands on workflows and their instances: ``start``, ``status``, ``instance``, ``instances``,
``cancel`` (the routes of start_routes.py and status_routes.py)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import IO, Any

import click

from nanocmd_core.cli import render
from nanocmd_core.cli.client import ApiError, Reply, segment
from nanocmd_core.cli.state import (
    State,
    chunks,
    id_query,
    ids_file_option,
    json_flag,
    pages,
    pass_state,
    read_ids,
    show_per_id,
)
from nanocmd_core.cli.watch import follow

QUERY_START_MAX = 10
"""Up to this many ids (given as arguments) a start uses the query form (``?id=``), as the Go
clients do; more, or any ids file, go as the JSON body form (up to 100,000 ids)."""
INSTANCE_PAGE = 1000
HISTORY_PAGE = 100
OUTCOMES = ("in_flight", "completed", "timed_out", "cancelled", "errored", "skipped", "failed")

interval_option = click.option(
    "--interval",
    type=click.FloatRange(min=0.2),
    default=2.0,
    show_default=True,
    help="Seconds between polls while waiting.",
)
max_wait_option = click.option(
    "--max-wait",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Give up (exit status 1) when not done after SECONDS; default: wait until done.",
)
limit_option = click.option(
    "--limit",
    type=click.IntRange(min=1),
    metavar="N",
    help="At most N items (default: all, page after page).",
)
next_option = click.option(
    "--next", "next_token", metavar="TOKEN", help="Continue from the TOKEN a previous --limit printed."
)


def _show_merged(state: State, replies: Sequence[Reply], doc: Any, table: Any) -> None:
    """One answer as it came; several (a long id list sent in chunks) merged into one document
    of the same shape."""
    state.show(replies[0].body if len(replies) == 1 else json.dumps(doc).encode(), doc, table)


@click.command()
@click.argument("workflow")
@click.argument("ids", nargs=-1)
@ids_file_option
@click.option("--context", metavar="TEXT", help="The start's context, passed to the workflow.")
@click.option(
    "--idempotency-key",
    metavar="KEY",
    help="Repeat the same start safely: the same KEY within 24 h returns the first answer.",
)
@click.option("--wait", is_flag=True, help="Show a progress bar until the instance is done, then the counts.")
@interval_option
@max_wait_option
@json_flag
@pass_state
def start(
    state: State,
    workflow: str,
    ids: tuple[str, ...],
    ids_file: IO[str] | None,
    context: str | None,
    idempotency_key: str | None,
    wait: bool,
    interval: float,
    max_wait: float | None,
) -> None:
    """Start WORKFLOW on enrollment IDs (UDIDs, or UDID:user for a user channel).

    A few ids go in the query string (?id=...); more than 10, or an --ids-file, go as one
    JSON body {"ids": [...], "context": ...} of up to 100,000 ids. The server starts more than
    NANOCMD_SYNC_START_MAX ids in the background (HTTP 202): follow them with --wait or
    `nanocmdctl instance ID --watch`. With --json --wait: two JSON lines, the start's answer
    and then the instance once done.

    \b
    Examples:
      nanocmdctl start io.micromdm.wf.inventory.v1 5B8D1F9A-...-0C2E
      nanocmdctl start io.micromdm.wf.inventory.v1 --ids-file devices.txt --context wave-1 --wait
      jamf-export | nanocmdctl start io.micromdm.wf.cmdplan.v1 --ids-file - --context baseline
    """
    wanted = read_ids(ids, ids_file)
    if not wanted:
        raise click.UsageError("no ids: give them as arguments or with --ids-file")
    client = state.authed()
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
    path = f"/v1/workflow/{segment(workflow)}/start"
    try:
        if ids_file is not None or len(wanted) > QUERY_START_MAX:
            doc: dict[str, Any] = {"ids": wanted}
            if context is not None:
                doc["context"] = context
            body = json.dumps(doc).encode()
            reply = client.request("POST", path, body=body, content_type="application/json", headers=headers)
        else:
            query = [*id_query(wanted), *([("context", context)] if context is not None else [])]
            reply = client.request("POST", path, query, headers=headers)
    except ApiError as exc:
        raise _start_error(state, exc) from None
    answer = reply.json()
    if state.as_json:
        render.raw_json(reply.body)
    else:
        render.start_answer(state.console(), workflow, len(wanted), answer)
    if wait:
        final = follow(client, answer["instance_id"], interval, max_wait)
        state.show(final.body, final.json(), render.instance)


def _start_error(state: State, exc: ApiError) -> ApiError:
    """A refused start; when the instance exists all the same (502: the engine retries the send),
    its id is in the message, and with --json the API's document goes to stdout too."""
    doc = exc.document if isinstance(exc.document, dict) else {}
    if state.as_json and doc:
        render.raw_json(doc)
    if doc.get("instance_id"):
        return ApiError(exc.status, f"{exc.message}; instance {doc['instance_id']}", doc)
    return exc


@click.command()
@click.argument("ids", nargs=-1)
@ids_file_option
@json_flag
@pass_state
def status(state: State, ids: tuple[str, ...], ids_file: IO[str] | None) -> None:
    """What enrollment IDs are waiting for: their steps, the commands' states (Pending, NotNow,
    Acknowledged, Error) and the workflows running there. Asks 100 ids a request.

    \b
    Example:
      nanocmdctl status 5B8D1F9A-...-0C2E 0F6E0B2C-...-11AA
    """
    wanted = read_ids(ids, ids_file)
    if not wanted:
        raise click.UsageError("no ids: give them as arguments or with --ids-file")
    show_per_id(state, "/v1/status", wanted, render.device_status)


@click.command()
@click.argument("instance_id")
@click.option("--ids", "with_ids", is_flag=True, help="List every id's outcome too (page after page).")
@click.option("--outcome", type=click.Choice(OUTCOMES), help="With --ids: only the ids of this outcome.")
@limit_option
@next_option
@click.option("--watch", is_flag=True, help="Follow the instance with a progress bar until it is done.")
@interval_option
@max_wait_option
@json_flag
@pass_state
def instance(
    state: State,
    instance_id: str,
    with_ids: bool,
    outcome: str | None,
    limit: int | None,
    next_token: str | None,
    watch: bool,
    interval: float,
    max_wait: float | None,
) -> None:
    """How instance INSTANCE_ID (of a start) stands: its start record and counts, and with --ids
    each id's outcome. --json with --ids prints the API's document with the ids of every page
    read in "ids" and "next" the token to continue from (null once all are read).

    \b
    Examples:
      nanocmdctl instance 0d6c2a1e-... --watch
      nanocmdctl instance 0d6c2a1e-... --ids --outcome errored
      nanocmdctl --json instance 0d6c2a1e-... --ids | jq -r '.ids[] | select(.outcome == "errored") | .id'
    """
    client = state.authed()
    if (outcome or limit or next_token) and not with_ids:
        raise click.UsageError("--outcome, --limit and --next go with --ids")
    path = f"/v1/instance/{segment(instance_id)}"
    if watch:
        reply = follow(client, instance_id, interval, max_wait)
        if not with_ids:
            state.show(reply.body, reply.json(), render.instance)
            return
    if not with_ids:
        reply = client.request("GET", path)
        state.show(reply.body, reply.json(), render.instance)
        return
    doc = pages(client, path, "ids", [("ids", "1")], limit, INSTANCE_PAGE, next_token)
    if outcome:
        doc["ids"] = [item for item in doc["ids"] if item.get("outcome") == outcome]
    if state.as_json:
        render.raw_json(doc)
    else:
        render.instance(state.console(), doc)


@click.command()
@click.option("--workflow", "-w", metavar="NAME", help="Only the instances of this workflow.")
@limit_option
@next_option
@json_flag
@pass_state
def instances(state: State, workflow: str | None, limit: int | None, next_token: str | None) -> None:
    """The started instances, newest first (kept NANOCMD_HISTORY_DAYS days), all of them unless
    --limit. --json prints the API's page document with every instance read in "instances".

    \b
    Examples:
      nanocmdctl instances --workflow io.micromdm.wf.inventory.v1 --limit 10
    """
    client = state.authed()
    query = [("workflow", workflow)] if workflow else []
    doc = pages(client, "/v1/instances", "instances", query, limit, HISTORY_PAGE, next_token)
    if state.as_json:
        render.raw_json(doc)
    else:
        render.instances(state.console(), doc)


@click.command()
@click.argument("args", nargs=-1, metavar="[INSTANCE_ID] [ID]...")
@click.option(
    "--workflow", "-w", metavar="NAME", help="Cancel this workflow's steps on the IDs, whatever the instance."
)
@ids_file_option
@json_flag
@pass_state
def cancel(state: State, args: tuple[str, ...], workflow: str | None, ids_file: IO[str] | None) -> None:
    """Stop an instance (on all of its ids, or only on the IDs given), or with --workflow a
    workflow on IDs. Ends the steps and frees the ids for a new start at once.

    \b
    Examples:
      nanocmdctl cancel 0d6c2a1e-...                      # the whole instance
      nanocmdctl cancel 0d6c2a1e-... 5B8D1F9A-...-0C2E    # only there
      nanocmdctl cancel --workflow io.micromdm.wf.inventory.v1 5B8D1F9A-...-0C2E
    """
    client = state.authed()
    if workflow is None:
        if not args:
            raise click.UsageError("give the INSTANCE_ID to cancel (or --workflow NAME and ids)")
        instance_id, wanted = args[0], read_ids(args[1:], ids_file)
        path = f"/v1/instance/{segment(instance_id)}"
        groups = list(chunks(wanted)) if wanted else [[]]
        replies = [client.request("DELETE", path, id_query(group)) for group in groups]
    else:
        wanted = read_ids(args, ids_file)
        if not wanted:
            raise click.UsageError("no ids: --workflow cancels on the ids given (arguments or --ids-file)")
        path = f"/v1/workflow/{segment(workflow)}/cancel"
        replies = [client.request("POST", path, id_query(group)) for group in chunks(wanted)]
    merged: dict[str, list[str]] = {"cancelled_ids": [], "not_running_ids": []}
    for reply in replies:
        for key, value in reply.json().items():
            merged.setdefault(key, []).extend(value)
    _show_merged(state, replies, merged, render.cancel_result)
