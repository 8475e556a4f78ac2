"""Tables for people (rich). Each function takes the API's JSON document as it came and prints it;
``--json`` output never goes through here, so scripts see the API's JSON unchanged."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

COUNT_ORDER = (
    "requested",
    "pending",
    "started",
    "skipped",
    "failed",
    "in_flight",
    "completed",
    "timed_out",
    "cancelled",
    "errored",
)
"""Counts in the order a rollout moves through them (``requested`` is the instance's)."""
BAD_OUTCOMES = {"errored", "failed", "timed_out"}
SHOWN_IDS = 20
"""Ids listed inline (skipped, failed, ...) before the rest are summarised as "and N more"."""


def console(stream: TextIO | None = None) -> Console:
    """A console on stdout (or ``stream``). Not a terminal: no colours, and wide enough (or
    ``$COLUMNS``) that ids are never folded, so ``grep`` finds them."""
    out = stream or sys.stdout
    tty = out.isatty()
    width = None if tty else int(os.environ.get("COLUMNS") or 200)
    return Console(file=out, width=width, no_color=not tty, highlight=False, soft_wrap=False)


def raw_json(body: bytes | str | Any, stream: TextIO | None = None) -> None:
    """Print the API's JSON as it came (bytes or text), or a document as one line of JSON."""
    out = stream or sys.stdout
    if isinstance(body, bytes):
        text = body.decode()
    elif isinstance(body, str):
        text = body
    else:
        text = json.dumps(body)
    out.write(text if text.endswith("\n") else text + "\n")
    out.flush()


def dash(value: Any) -> str:
    """A cell: '-' for nothing, the value otherwise."""
    return "-" if value is None or value == "" else str(value)


def _ids_line(ids: Sequence[str]) -> str:
    shown = ", ".join(ids[:SHOWN_IDS])
    return shown + (f" and {len(ids) - SHOWN_IDS} more" if len(ids) > SHOWN_IDS else "")


def table(*columns: str, title: str | None = None) -> Table:
    """Columns as kubectl prints them (no box, first column at the margin), so ``grep`` and
    ``awk`` work on them; ids are folded only when even the last column cannot give way."""
    out = Table(title=title, title_justify="left", box=None, pad_edge=False, header_style="bold")
    for n, name in enumerate(columns):  # only the last column (free text) wraps while others fit
        out.add_column(name, no_wrap=n < len(columns) - 1, overflow="fold")
    return out


def start_answer(con: Console, workflow: str, count: int, doc: Mapping[str, Any]) -> None:
    """A start's 200/202 answer: the instance and which ids did not start."""
    queued = " (queued: started in the background)" if doc.get("status_url") else ""
    con.print(f"started {workflow} on {count} id(s){queued}")
    con.print(f"instance {doc.get('instance_id')}")
    for key, label in (
        ("skipped_ids", "skipped (already running)"),
        ("failed_ids", "failed"),
        ("retrying_ids", "retrying the send"),
    ):
        ids = doc.get(key) or []
        if ids:
            con.print(f"{label}: {len(ids)}: {_ids_line(ids)}")
    for error in doc.get("errors") or []:
        con.print(f"error: {error}")


def device_status(con: Console, doc: Mapping[str, Any]) -> None:
    """``/v1/status``: a row per step of each id; an id without steps says "idle" (or which
    workflow holds it)."""
    out = table("ID", "WORKFLOW", "INSTANCE", "STEP", "SENT", "COMMANDS")
    for enrollment_id, status in doc.items():
        steps = status.get("steps", [])
        if not steps:
            running = ", ".join(f"{r.get('workflow')} (running)" for r in status.get("running", []))
            out.add_row(enrollment_id, running or "idle", "-", "-", "-", "-")
        for step in steps:
            commands = ", ".join(_command_text(c) for c in step.get("commands", [])) or "-"
            sent = dash(step.get("sent_at") or ("waiting" if step.get("not_until") else None))
            if step.get("send_error"):
                sent = f"send failed: {step['send_error'].get('error')}"
            out.add_row(
                enrollment_id,
                step.get("workflow", "?"),
                dash(step.get("instance_id")),
                dash(step.get("step_name")),
                sent,
                commands,
            )
    con.print(out)


def _command_text(command: Mapping[str, Any]) -> str:
    """``SecurityInfo: NotNow 2x``, or ``...: Acknowledged (NotNow 2x)`` once it got through."""
    state, count = command.get("status", "?"), command.get("not_now_count")
    text = f"{command.get('request_type', '?')}: {state}"
    if count:
        text += f" {count}x" if state == "NotNow" else f" (NotNow {count}x)"
    return text


def counts_line(doc: Mapping[str, Any]) -> str:
    """``completed 3, errored 1, ...``: the counts that are not zero, in rollout order."""
    counts = {"requested": doc.get("requested", 0), **doc.get("counts", {})}
    parts = [f"{name} {counts[name]}" for name in COUNT_ORDER if counts.get(name)]
    return ", ".join(parts) or "nothing counted yet"


def instance(con: Console, doc: Mapping[str, Any], outcome: str | None = None) -> None:
    """``/v1/instance/<id>``: the start record, the counts, and the ids' outcomes when asked."""
    head = table("INSTANCE", "WORKFLOW", "STARTED", "BY", "CONTEXT", "DONE")
    head.add_row(
        doc.get("instance_id", "?"),
        dash(doc.get("workflow")),
        dash(doc.get("started_at")),
        dash(doc.get("started_by")),
        dash(doc.get("context")),
        "yes" if doc.get("done") else "no",
    )
    con.print(head)
    counts = {"requested": doc.get("requested", 0), **doc.get("counts", {})}
    out = table(*[name.upper() for name in COUNT_ORDER])
    out.add_row(*[str(counts.get(name, 0)) for name in COUNT_ORDER])
    con.print(out)
    ids = doc.get("ids")
    if ids is not None:
        outcomes(con, ids, outcome)
        if doc.get("next"):
            con.print(f"more ids: --next {doc['next']}")


def outcomes(con: Console, ids: Iterable[Mapping[str, Any]], outcome: str | None = None) -> None:
    """The ids' outcomes, the bad ones highlighted."""
    out = table("ID", "OUTCOME", "UPDATED", "ERROR")
    for item in ids:
        if outcome and item.get("outcome") != outcome:
            continue
        state = str(item.get("outcome", "?"))
        style = "red" if state in BAD_OUTCOMES else "green" if state == "completed" else ""
        out.add_row(
            item.get("id", "?"),
            Text(state, style=style),
            dash(item.get("updated_at")),
            dash(item.get("error")),
        )
    con.print(out)


def instances(con: Console, doc: Mapping[str, Any]) -> None:
    """``/v1/instances``: newest first."""
    out = table("INSTANCE", "WORKFLOW", "STARTED", "BY", "REQUESTED", "CONTEXT")
    for item in doc.get("instances", []):
        out.add_row(
            item.get("instance_id", "?"),
            dash(item.get("workflow")),
            dash(item.get("started_at")),
            dash(item.get("started_by")),
            str(item.get("requested", 0)),
            dash(item.get("context")),
        )
    con.print(out)
    if doc.get("next"):
        con.print(f"more instances: --next {doc['next']}")


def cancel_result(con: Console, doc: Mapping[str, Any]) -> None:
    """A cancel's answer: what was stopped and what was not running."""
    cancelled, idle = doc.get("cancelled_ids", []), doc.get("not_running_ids", [])
    con.print(f"cancelled: {len(cancelled)}" + (f": {_ids_line(cancelled)}" if cancelled else ""))
    if idle:
        con.print(f"not running: {len(idle)}: {_ids_line(idle)}")


def inventory(con: Console, doc: Mapping[str, Any], asked: Sequence[str]) -> None:
    """``/v1/inventory``: a key/value table per id; ids without a record are named."""
    for enrollment_id, record in doc.items():
        out = table("KEY", "VALUE", title=enrollment_id)
        for key in sorted(record):
            value = record[key]
            out.add_row(key, value if isinstance(value, str) else json.dumps(value))
        con.print(out)
    missing = [i for i in dict.fromkeys(asked) if i not in doc]
    if missing:
        con.print(f"no inventory: {_ids_line(missing)}")


def profiles(con: Console, doc: Mapping[str, Any]) -> None:
    """``/v1/profiles``: name, PayloadIdentifier, PayloadUUID."""
    out = table("NAME", "IDENTIFIER", "UUID")
    for name in sorted(doc):
        out.add_row(name, dash(doc[name].get("identifier")), dash(doc[name].get("uuid")))
    con.print(out)


def cmdplan(con: Console, name: str, doc: Mapping[str, Any]) -> None:
    """A command plan: its profiles, manifests and the DeviceConfigured flag."""
    out = table("PLAN", "PROFILES", "MANIFESTS", "DEVICE CONFIGURED")
    configured = doc.get("device_configured")
    out.add_row(
        name,
        ", ".join(doc.get("profile_names") or []) or "-",
        ", ".join(doc.get("manifest_urls") or []) or "-",
        "-" if configured is None else "yes" if configured else "no",
    )
    con.print(out)


def events(con: Console, doc: Mapping[str, Any]) -> None:
    """Event subscriptions by name."""
    out = table("NAME", "EVENT", "WORKFLOW", "CONTEXT", "EVENT CONTEXT")
    for name in sorted(doc):
        sub = doc[name]
        out.add_row(
            name,
            dash(sub.get("event")),
            dash(sub.get("workflow")),
            dash(sub.get("context")),
            dash(sub.get("event_context")),
        )
    con.print(out)
