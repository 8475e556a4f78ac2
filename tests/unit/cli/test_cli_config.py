"""Where nanocmdctl sends its requests: flags, then --server, then NANOCMD_URL/NANOCMD_API, then
the config file's default server, then make run's URL; each of URL and key on its own."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from nanocmd_core.cli.config import DEFAULT_URL, ConfigError, resolve
from nanocmd_core.cli.main import cli
from tests.unit.cli.fake_api import KEY, FakeAPI, runner

CONFIG = """
default = "local"

[servers.local]
url = "http://local.example:9003"
api_key = "local-key"

[servers.prod]
url = "https://prod.example/Prod/"
api_key_env = "PROD_KEY"

[servers.nokey]
url = "https://nokey.example"
"""


@pytest.fixture
def config(tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG)
    return {"NANOCMDCTL_CONFIG": str(path)}


def test_nothing_configured_is_make_run_without_a_key(tmp_path: Path) -> None:
    target = resolve(None, None, None, {"NANOCMDCTL_CONFIG": str(tmp_path / "none.toml")})
    assert (target.url, target.api_key, target.source) == (DEFAULT_URL, "", "default")


def test_the_default_server_of_the_config_file(config: dict[str, str]) -> None:
    target = resolve(None, None, None, config)
    assert (target.url, target.api_key) == ("http://local.example:9003", "local-key")


def test_the_environment_beats_the_default_server(config: dict[str, str]) -> None:
    target = resolve(None, None, None, {**config, "NANOCMD_URL": "http://env:1", "NANOCMD_API": "env-key"})
    assert (target.url, target.api_key, target.source) == ("http://env:1", "env-key", "$NANOCMD_URL")


def test_a_named_server_beats_the_environment_and_reads_its_key_variable(config: dict[str, str]) -> None:
    env = {**config, "NANOCMD_URL": "http://env:1", "NANOCMD_API": "env-key", "PROD_KEY": "prod-key"}
    target = resolve(None, None, "prod", env)
    prod = ("https://prod.example/Prod", "prod-key", "server prod")
    assert (target.url, target.api_key, target.source) == prod
    assert resolve(None, None, None, {**env, "NANOCMDCTL_SERVER": "prod"}).url == "https://prod.example/Prod"


def test_flags_beat_everything_one_field_at_a_time(config: dict[str, str]) -> None:
    env = {**config, "NANOCMD_API": "env-key", "PROD_KEY": "prod-key"}
    assert resolve("http://flag:2", None, "prod", env).api_key == "prod-key"
    target = resolve(None, "flag-key", "prod", env)
    assert (target.url, target.api_key) == ("https://prod.example/Prod", "flag-key")
    # a server without a key takes the next key that is set
    assert resolve(None, None, "nokey", env).api_key == "env-key"


@pytest.mark.parametrize(
    ("text", "server", "env", "message"),
    [
        (CONFIG, "staging", {}, "no server 'staging'"),
        (CONFIG, "prod", {}, "$PROD_KEY, which is not set"),
        ("servers = [", None, {}, "not valid TOML"),
        ('default = "gone"\n[servers.a]\nurl = "http://a"', None, {}, "default server 'gone'"),
        ("[servers.a]\nurl = 5", "a", {}, "servers.a.url must be a string"),
        ('[servers.a]\nurl = "ftp://a"', "a", {}, "must start with http"),
    ],
)
def test_configuration_errors(tmp_path: Path, text: str, server: str | None, env: Any, message: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("$", r"\$").replace("(", r"\(")):
        resolve(None, None, server, {"NANOCMDCTL_CONFIG": str(path), **env})


def invoke(args: list[str], env: Mapping[str, str | None]) -> Result:
    base: dict[str, str | None] = {"NANOCMD_URL": None, "NANOCMD_API": None, "NANOCMDCTL_SERVER": None}
    return runner().invoke(cli, args, env={**base, **env}, catch_exceptions=False)


def test_the_cli_uses_a_named_server_of_the_config_file(api: FakeAPI, tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f'[servers.fake]\nurl = "{api.url}"\napi_key = "{KEY}"\n')
    api.on("GET", "/v1/events", {})
    result = invoke(["--server", "fake", "events", "list"], {"NANOCMDCTL_CONFIG": str(path)})
    assert result.exit_code == 0, result.stderr
    sent = api.requests("GET", "/v1/events")[0].headers["authorization"]
    assert base64.b64decode(sent.split()[1]).decode() == f"nanocmd:{KEY}"


def test_the_cli_uses_the_environment(api: FakeAPI, tmp_path: Path) -> None:
    api.on("GET", "/version", {"version": "1.2.3"})
    env = {"NANOCMDCTL_CONFIG": str(tmp_path / "none"), "NANOCMD_URL": api.url + "/"}
    result = invoke(["version"], env)
    assert result.exit_code == 0 and f"at {api.url} (from $NANOCMD_URL)" in result.stdout


def test_a_bad_config_is_a_usage_error_of_the_cli(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[servers.a]\n")
    result = invoke(["--server", "b", "events", "list"], {"NANOCMDCTL_CONFIG": str(path)})
    assert result.exit_code == 2 and "no server 'b'" in result.stderr and "servers there: a" in result.stderr


def test_help_states_the_precedence(tmp_path: Path) -> None:
    text = " ".join(invoke(["--help"], {}).stdout.split())
    assert "--url/--api-key; the config file's server named by --server" in text
    assert "$NANOCMD_URL/$NANOCMD_API; the config file's `default` server" in text
