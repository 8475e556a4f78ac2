"""``nanocmdctl``'s entry point: the global options, the exit statuses, ``version``, and the
commands of ``workflows`` and ``stores`` put together."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Any

import click

from nanocmd_core.cli import render
from nanocmd_core.cli.client import ClientError
from nanocmd_core.cli.config import PRECEDENCE
from nanocmd_core.cli.state import Failure, State, json_flag, pass_state
from nanocmd_core.cli.stores import cmdplans, events, fvenable_template, inventory, profiles
from nanocmd_core.cli.workflows import cancel, instance, instances, start, status


def cli_version() -> str:
    """The installed distribution's version (the source tree's when run uninstalled)."""
    try:
        return package_version("nanocmd-serverless")
    except PackageNotFoundError:
        from nanocmd_core import __version__

        return __version__


class Group(click.Group):
    """Turns the client's errors into ``Failure`` (status 1); usage errors stay click's (2)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ClientError as exc:
            raise Failure(str(exc)) from None


@click.group(
    cls=Group,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=f"""Configuration: {PRECEDENCE}

Exit status: 0 success; 1 the API answered an error (its text on stderr), the
server could not be reached, or the key is wrong; 2 bad usage or configuration.

\b
Example:
  export NANOCMD_URL=https://abc123.execute-api.eu-west-1.amazonaws.com/Prod NANOCMD_API=...
  nanocmdctl start io.micromdm.wf.inventory.v1 --ids-file devices.txt --wait""",
)
@click.option("--url", metavar="URL", help="API base URL (a deployment's ends with its stage, /Prod).")
@click.option("--api-key", metavar="KEY", help="The API key (HTTP Basic password of user nanocmd).")
@click.option("--server", "-s", metavar="NAME", help="A server of the config file.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="Seconds to wait for each answer.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON unchanged (for scripts).")
@click.version_option(cli_version(), "--version", prog_name="nanocmdctl", message="%(prog)s %(version)s")
@click.pass_context
def cli(
    ctx: click.Context,
    url: str | None,
    api_key: str | None,
    server: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Drive a NanoCMD server (serverless or `make run`) from the terminal: start workflows on
    devices and fleets, follow them, stop them, and manage profiles, command plans and event
    subscriptions."""
    ctx.obj = State(url=url, api_key=api_key, server=server, timeout=timeout, as_json=as_json)


@cli.command()
@json_flag
@pass_state
def version(state: State) -> None:
    """Print this CLI's version and the server's (GET /version, no key needed).

    \b
    --json prints {"cli_version": "...", "server": <the server's /version JSON>}.

    \b
    Examples:
      nanocmdctl version
      nanocmdctl --server prod version
    """
    mine = cli_version()
    con = state.console()
    if not state.as_json:  # first, so it is there even when the server is not
        con.print(f"nanocmdctl {mine}")
    doc = state.client.request("GET", "/version", auth=False).json()
    if state.as_json:
        render.raw_json({"cli_version": mine, "server": doc})
        return
    server = doc.get("version", "?") if isinstance(doc, dict) else "?"
    con.print(f"server {server} at {state.target.url} (from {state.target.source})")


for command in (
    start,
    status,
    instance,
    instances,
    cancel,
    inventory,
    profiles,
    cmdplans,
    events,
    fvenable_template,
):
    cli.add_command(command)


def main() -> None:
    """The console script ``nanocmdctl``."""
    cli(prog_name="nanocmdctl")


if __name__ == "__main__":
    main()
