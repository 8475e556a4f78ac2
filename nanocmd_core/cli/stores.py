"""Commands on what the server stores: ``inventory``, ``profiles``, ``cmdplans``, ``events`` and
``fvenable-template`` (app.py's engine and inventory routes, the subsystems' http modules).
Routes answering 204 print a line for people and nothing with --json."""

from __future__ import annotations

import json
import sys
from typing import IO, Any

import click

from nanocmd_core.cli import render
from nanocmd_core.cli.client import Reply, segment
from nanocmd_core.cli.state import (
    State,
    ids_file_option,
    json_flag,
    pass_state,
    read_ids,
    show_per_id,
)

MOBILECONFIG = "application/x-apple-aspen-config"
EVENTS = "Authenticate, TokenUpdate, Enrollment, CheckOut, Idle, IdleNotStartedSince"


def _done(state: State, text: str) -> None:
    """A 204's confirmation, for people only."""
    if not state.as_json:
        state.console().print(text)


def _write_bytes(data: bytes, output: IO[bytes] | None) -> None:
    """A profile as it is stored; refused on a terminal when it is binary (a signed profile)."""
    if output is not None:
        output.write(data)
        return
    if sys.stdout.isatty():
        try:
            data.decode()
        except UnicodeDecodeError:
            raise click.UsageError(
                "the answer is binary (a signed profile?): write it with -o FILE"
            ) from None
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def _json_file(source: IO[str], what: str) -> Any:
    try:
        return json.load(source)
    except ValueError as exc:
        raise click.UsageError(f"{what} is not JSON: {exc}") from None


@click.command()
@click.argument("ids", nargs=-1)
@ids_file_option
@json_flag
@pass_state
def inventory(state: State, ids: tuple[str, ...], ids_file: IO[str] | None) -> None:
    """What the inventory workflow recorded about enrollment IDs (model, OS, serial, SIP, FileVault...).

    \b
    Example:
      nanocmdctl inventory 5B8D1F9A-...-0C2E
    """
    wanted = read_ids(ids, ids_file)
    if not wanted:
        raise click.UsageError("no ids: give them as arguments or with --ids-file")
    show_per_id(state, "/v1/inventory", wanted, lambda con, doc: render.inventory(con, doc, wanted))


@click.group()
def profiles() -> None:
    """Configuration profiles the workflows install (by name; a .mobileconfig each).

    \b
    Examples:
      nanocmdctl profiles put com.example.wifi wifi.mobileconfig
      nanocmdctl profiles list
    """


@profiles.command("list")
@click.argument("names", nargs=-1)
@json_flag
@pass_state
def profiles_list(state: State, names: tuple[str, ...]) -> None:
    """The stored profiles (or only NAMES) with their PayloadIdentifier and PayloadUUID.

    \b
    Example:
      nanocmdctl profiles list
    """
    reply = state.authed().request("GET", "/v1/profiles", [("name", n) for n in names])
    state.show(reply.body, reply.json(), render.profiles)


@profiles.command("get")
@click.argument("name")
@click.option("--output", "-o", type=click.File("wb"), help="Write to FILE instead of standard output.")
@pass_state
def profiles_get(state: State, name: str, output: IO[bytes] | None) -> None:
    """Download profile NAME exactly as it was uploaded.

    \b
    Example:
      nanocmdctl profiles get com.example.wifi -o wifi.mobileconfig
    """
    reply = state.authed().request("GET", f"/v1/profile/{segment(name)}", headers={"Accept": MOBILECONFIG})
    _write_bytes(reply.body, output)


@profiles.command("put")
@click.argument("name")
@click.argument("file", type=click.File("rb"))
@json_flag
@pass_state
def profiles_put(state: State, name: str, file: IO[bytes]) -> None:
    """Upload FILE (a .mobileconfig, signed or not; '-' reads standard input) as profile NAME.

    \b
    Example:
      nanocmdctl profiles put com.example.wifi wifi.mobileconfig
    """
    state.authed().request("PUT", f"/v1/profile/{segment(name)}", body=file.read(), content_type=MOBILECONFIG)
    _done(state, f"stored profile {name}")


@profiles.command("rm")
@click.argument("names", nargs=-1, required=True)
@json_flag
@pass_state
def profiles_rm(state: State, names: tuple[str, ...]) -> None:
    """Delete profiles NAMES (a name that is not there is no error).

    \b
    Example:
      nanocmdctl profiles rm com.example.wifi
    """
    client = state.authed()
    for name in names:
        client.request("DELETE", f"/v1/profile/{segment(name)}")
        _done(state, f"deleted profile {name}")


@click.group()
def cmdplans() -> None:
    """Command plans: what io.micromdm.wf.cmdplan.v1 sends (profiles, app manifests, DeviceConfigured).

    \b
    Example:
      nanocmdctl cmdplans put baseline --profile com.example.wifi --device-configured
      nanocmdctl start io.micromdm.wf.cmdplan.v1 5B8D1F9A-...-0C2E --context baseline
    """


@cmdplans.command("get")
@click.argument("name")
@json_flag
@pass_state
def cmdplans_get(state: State, name: str) -> None:
    """Show command plan NAME.

    \b
    Example:
      nanocmdctl cmdplans get baseline
    """
    reply = state.authed().request("GET", f"/v1/cmdplan/{segment(name)}")
    state.show(reply.body, reply.json(), lambda con, doc: render.cmdplan(con, name, doc))


@cmdplans.command("put")
@click.argument("name")
@click.argument("file", type=click.File("r"), required=False)
@click.option(
    "--profile", "profile_names", multiple=True, metavar="NAME", help="A profile to install (repeat)."
)
@click.option(
    "--manifest", "manifest_urls", multiple=True, metavar="URL", help="An app manifest URL (repeat)."
)
@click.option(
    "--device-configured/--no-device-configured",
    default=None,
    help="Send DeviceConfigured at the end (ends Await Configuration).",
)
@json_flag
@pass_state
def cmdplans_put(
    state: State,
    name: str,
    file: IO[str] | None,
    profile_names: tuple[str, ...],
    manifest_urls: tuple[str, ...],
    device_configured: bool | None,
) -> None:
    """Store command plan NAME from FILE (its JSON; '-' reads standard input) or from the options.
    A plan replaces the one stored under NAME.

    \b
    Examples:
      nanocmdctl cmdplans put baseline --profile com.example.wifi --profile com.example.vpn
      nanocmdctl cmdplans put baseline plan.json
    """
    flags = bool(profile_names or manifest_urls or device_configured is not None)
    if file is not None and flags:
        raise click.UsageError("give the plan as FILE or as options, not both")
    if file is not None:
        doc = _json_file(file, "FILE")
    elif flags:
        doc = {"profile_names": list(profile_names), "manifest_urls": list(manifest_urls)}
        if device_configured is not None:
            doc["device_configured"] = device_configured
    else:
        raise click.UsageError("give the plan as FILE or with --profile/--manifest/--device-configured")
    body = json.dumps(doc).encode()
    state.authed().request("PUT", f"/v1/cmdplan/{segment(name)}", body=body, content_type="application/json")
    _done(state, f"stored command plan {name}")


@click.group()
def events() -> None:
    """Event subscriptions: start a workflow when an enrollment checks in with an event.

    \b
    Example:
      nanocmdctl events put inventory-on-enroll --event Enrollment --workflow io.micromdm.wf.inventory.v1
    """


@events.command("list")
@json_flag
@pass_state
def events_list(state: State) -> None:
    """Every event subscription.

    \b
    Example:
      nanocmdctl events list
    """
    reply = state.authed().request("GET", "/v1/events")
    state.show(reply.body, reply.json(), render.events)


@events.command("get")
@click.argument("name")
@json_flag
@pass_state
def events_get(state: State, name: str) -> None:
    """Show event subscription NAME.

    \b
    Example:
      nanocmdctl events get inventory-on-enroll
    """
    reply = state.authed().request("GET", f"/v1/event/{segment(name)}")
    state.show(reply.body, reply.json(), lambda con, doc: render.events(con, {name: doc}))


@events.command("put")
@click.argument("name")
@click.option("--event", help=f"The event: {EVENTS}.")
@click.option("--workflow", "-w", metavar="NAME", help="The workflow to start.")
@click.option("--context", metavar="TEXT", help="The start's context.")
@click.option("--event-context", metavar="TEXT", help="IdleNotStartedSince: seconds since the last start.")
@click.option("--file", type=click.File("r"), help="The subscription as JSON instead ('-': standard input).")
@json_flag
@pass_state
def events_put(
    state: State,
    name: str,
    event: str | None,
    workflow: str | None,
    context: str | None,
    event_context: str | None,
    file: IO[str] | None,
) -> None:
    """Store event subscription NAME (replacing one of that name).

    \b
    Examples:
      nanocmdctl events put inventory-on-enroll --event Enrollment --workflow io.micromdm.wf.inventory.v1
      nanocmdctl events put daily -w io.micromdm.wf.inventory.v1 \\
        --event IdleNotStartedSince --event-context 86400
    """
    if file is not None:
        if event or workflow or context or event_context:
            raise click.UsageError("give the subscription as --file or as options, not both")
        doc = _json_file(file, "--file")
    else:
        if not event or not workflow:
            raise click.UsageError("--event and --workflow are needed (or --file)")
        doc = {"event": event, "workflow": workflow}
        doc.update({k: v for k, v in (("context", context), ("event_context", event_context)) if v})
    body = json.dumps(doc).encode()
    state.authed().request("PUT", f"/v1/event/{segment(name)}", body=body, content_type="application/json")
    _done(state, f"stored event subscription {name}")


@events.command("rm")
@click.argument("names", nargs=-1, required=True)
@json_flag
@pass_state
def events_rm(state: State, names: tuple[str, ...]) -> None:
    """Delete event subscriptions NAMES (a name that is not there is no error).

    \b
    Example:
      nanocmdctl events rm inventory-on-enroll
    """
    client = state.authed()
    for name in names:
        client.request("DELETE", f"/v1/event/{segment(name)}")
        _done(state, f"deleted event subscription {name}")


@click.command("fvenable-template")
@click.option("--output", "-o", type=click.File("wb"), help="Write to FILE instead of standard output.")
@pass_state
def fvenable_template(state: State, output: IO[bytes] | None) -> None:
    """Download the built-in FileVault profile template of io.micromdm.wf.fvenable.v1, to edit and
    upload as profile io.micromdm.wf.fvenable.v1.

    \b
    Example:
      nanocmdctl fvenable-template -o fvenable.mobileconfig
      nanocmdctl profiles put io.micromdm.wf.fvenable.v1 fvenable.mobileconfig
    """
    reply: Reply = state.authed().request(
        "GET", "/v1/fvenable/profiletemplate", headers={"Accept": MOBILECONFIG}
    )
    _write_bytes(reply.body, output)
