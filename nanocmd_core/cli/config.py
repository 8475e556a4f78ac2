"""Where ``nanocmdctl`` sends its requests and with which key.

Each of the URL and the API key is taken from the first of these that sets it:

1. the ``--url`` / ``--api-key`` flags;
2. the config file's server named by ``--server`` (or ``NANOCMDCTL_SERVER``);
3. the ``NANOCMD_URL`` / ``NANOCMD_API`` environment variables (``NANOCMD_API`` is the variable the
   server itself reads its key from, so a shell that runs ``make run`` needs no more);
4. the config file's ``default`` server;
5. the URL of ``make run`` (``http://127.0.0.1:9003``); there is no default key.

The config file is ``$NANOCMDCTL_CONFIG``, else ``$XDG_CONFIG_HOME/nanocmdctl/config.toml``
(``~/.config/nanocmdctl/config.toml``)::

    default = "local"

    [servers.local]
    url = "http://127.0.0.1:9003"
    api_key = "the key of make run"

    [servers.prod]
    url = "https://abc123.execute-api.eu-west-1.amazonaws.com/Prod"
    api_key_env = "NANOCMD_PROD_API"   # read the key from this variable, not from the file
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_URL = "http://127.0.0.1:9003"
URL_ENV = "NANOCMD_URL"
KEY_ENV = "NANOCMD_API"
CONFIG_ENV = "NANOCMDCTL_CONFIG"
SERVER_ENV = "NANOCMDCTL_SERVER"

PRECEDENCE = (
    "The URL and the API key each come from the first of: --url/--api-key; the config file's "
    f"server named by --server (or ${SERVER_ENV}); ${URL_ENV}/${KEY_ENV}; the config file's "
    f"`default` server; {DEFAULT_URL} (make run) and no key. The config file is ${CONFIG_ENV}, "
    'else ~/.config/nanocmdctl/config.toml (TOML: default = "name", and [servers.name] tables '
    "with url and api_key or api_key_env)."
)
"""The rule above in one paragraph, for ``nanocmdctl --help``."""


class ConfigError(ValueError):
    """The configuration cannot be used (bad file, unknown server); a usage error (exit 2)."""


@dataclass(frozen=True)
class Target:
    """The server to talk to. ``api_key`` is empty when none is configured (``version`` needs none)."""

    url: str
    api_key: str
    source: str
    """Where the URL came from (``--url``, ``server prod``, ``$NANOCMD_URL``, ...), for messages."""


def config_path(env: Mapping[str, str]) -> Path:
    """The config file's path (which need not exist)."""
    explicit = env.get(CONFIG_ENV)
    if explicit:
        return Path(explicit).expanduser()
    base = env.get("XDG_CONFIG_HOME") or str(Path("~/.config").expanduser())
    return Path(base) / "nanocmdctl" / "config.toml"


def load_servers(path: Path) -> tuple[dict[str, dict[str, Any]], str | None]:
    """(servers by name, the default server's name) of a config file; nothing when it is absent."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}, None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    try:
        doc = tomllib.loads(raw.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    servers = doc.get("servers", {})
    if not isinstance(servers, dict) or not all(isinstance(s, dict) for s in servers.values()):
        raise ConfigError(f"config file {path}: [servers.NAME] must be tables")
    default = doc.get("default")
    if default is not None and not isinstance(default, str):
        raise ConfigError(f"config file {path}: default must be a server name")
    if default is not None and default not in servers:
        raise ConfigError(f"config file {path}: default server {default!r} is not in [servers]")
    for name, server in servers.items():
        for key in ("url", "api_key", "api_key_env"):
            if key in server and not isinstance(server[key], str):
                raise ConfigError(f"config file {path}: servers.{name}.{key} must be a string")
    return servers, default


def _server_values(name: str, server: Mapping[str, Any], env: Mapping[str, str]) -> tuple[str, str]:
    """(url, api key) a server entry sets; empty strings for what it leaves out."""
    key = str(server.get("api_key", ""))
    key_env = server.get("api_key_env")
    if key_env and not key:
        key = env.get(str(key_env), "")
        if not key:
            raise ConfigError(f"server {name!r} reads its API key from ${key_env}, which is not set")
    return str(server.get("url", "")), key


def resolve(
    url: str | None,
    api_key: str | None,
    server: str | None,
    env: Mapping[str, str] | None = None,
) -> Target:
    """Apply the precedence of the module docstring to the flags given (None: not given)."""
    env = os.environ if env is None else env
    path = config_path(env)
    servers, default = load_servers(path)
    server = server or env.get(SERVER_ENV) or None
    layers: list[tuple[str, str, str]] = [("--url", url or "", api_key or "")]
    if server:
        if server not in servers:
            known = ", ".join(sorted(servers)) or "none"
            raise ConfigError(f"no server {server!r} in {path} (servers there: {known})")
        layers.append((f"server {server}", *_server_values(server, servers[server], env)))
    layers.append((f"${URL_ENV}", env.get(URL_ENV, ""), env.get(KEY_ENV, "")))
    if default and not server:
        layers.append((f"server {default}", *_server_values(default, servers[default], env)))
    layers.append(("default", DEFAULT_URL, ""))
    found_url, source = next((u, s) for s, u, _ in layers if u)
    found_key = next((k for _, _, k in layers if k), "")
    if not found_url.startswith(("http://", "https://")):
        raise ConfigError(f"URL from {source} must start with http:// or https://: {found_url!r}")
    return Target(url=found_url.rstrip("/"), api_key=found_key, source=source)
