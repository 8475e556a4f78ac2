"""Session-wide fixtures: one DynamoDB Local, one moto server and one fauxqs for the whole session.

The AWS environment (dummy credentials, region, ``AWS_ENDPOINT_URL_*`` for the servers) is set
here at import time, before any test module is imported, so a boto3 client or pynamodb model created
at import already points at the local servers; real AWS can never be reached from a test. The servers
themselves start on first use (every test under tests/integration and tests/e2e, through an autouse
fixture there, or any test asking for ``aws_env``/``table_name``/``queue_url``/``nanocmd_env``), so a
unit-only run stays fast.

Resources are made per test from template.yaml's own definitions (infra.local.resources) under a
unique prefix, so tests are isolated and the schema cannot drift from what is deployed.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # `tests.fakes...` and `infra.local...` import from the repo root
    sys.path.insert(0, str(REPO_ROOT))

from infra.local import services  # noqa: E402
from infra.local.resources import Provisioned, provision, write_contract_template  # noqa: E402
from infra.local.stack import reset_settings_cache  # noqa: E402

_DYNAMODB_PORT = services.free_port()
_MOTO_PORT = services.free_port()
_FAUXQS_PORT = services.free_port()
AWS_ENV = services.aws_env(
    f"http://127.0.0.1:{_DYNAMODB_PORT}", f"http://127.0.0.1:{_MOTO_PORT}", f"http://127.0.0.1:{_FAUXQS_PORT}"
)
services.apply_env(AWS_ENV)

Services = tuple[services.DynamoDBLocal, services.MotoServer, services.Fauxqs]


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests under tests/e2e carry the ``e2e`` marker (``-m "not e2e"`` skips them)."""
    e2e_dir = REPO_ROOT / "tests" / "e2e"
    for item in items:
        if item.path.is_relative_to(e2e_dir):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_testdata(repo_root: Path) -> Path:
    """The shared NanoCMD test data (../shared/testdata/nanocmd), or skip when it is not there."""
    path = Path(repo_root).parent / "shared" / "testdata" / "nanocmd"
    if not path.is_dir():
        pytest.skip(f"shared test data not found at {path}")
    return path


@pytest.fixture(scope="session")
def aws_services() -> Iterator[Services]:
    """DynamoDB Local, moto and fauxqs (all in memory) on the ports AWS_ENV names; stopped at session end."""
    ddb, moto, fauxqs = services.start_services(
        dynamodb_port=_DYNAMODB_PORT,
        moto_port=_MOTO_PORT,
        fauxqs_port=_FAUXQS_PORT,
        log_dir=services.DEFAULT_LOG_DIR,
    )
    try:
        yield ddb, moto, fauxqs
    finally:
        services.stop_all(fauxqs, moto, ddb)


@pytest.fixture(scope="session")
def aws_env(aws_services: Services) -> dict[str, str]:
    """The AWS_* environment every test runs with (also already in os.environ)."""
    services.apply_env(AWS_ENV)  # again, in case a test before this one changed it
    return dict(AWS_ENV)


@pytest.fixture(scope="session")
def template_path(repo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """template.yaml, or the contract's minimal template while template.yaml does not exist."""
    path = repo_root / "template.yaml"
    if path.exists():
        return path
    return write_contract_template(tmp_path_factory.mktemp("template") / "template.yaml")


def _unique_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def _settings_cache() -> Iterator[None]:
    """nanocmd_core caches its settings: start and end every env-changing fixture with a clean cache."""
    reset_settings_cache()
    yield
    reset_settings_cache()


@pytest.fixture
def table_name(
    aws_env: dict[str, str], template_path: Path, monkeypatch: pytest.MonkeyPatch, _settings_cache: None
) -> Iterator[str]:
    """A fresh table made from the template's ``Table`` (keys, GSIs, TTL); NANOCMD_TABLE names it."""
    p = provision(template_path, _unique_prefix(), {}, only=["Table"])
    try:
        name = p.ref("Table")
        monkeypatch.setenv("NANOCMD_TABLE", name)
        reset_settings_cache()
        yield name
    finally:
        p.delete()


@pytest.fixture
def queue_url(
    aws_env: dict[str, str], template_path: Path, monkeypatch: pytest.MonkeyPatch, _settings_cache: None
) -> Iterator[str]:
    """A fresh FIFO ``EventsQueue`` with its dead-letter queue and redrive policy; NANOCMD_QUEUE_URL."""
    p = provision(template_path, _unique_prefix(), {}, only=["EventsQueue"])
    try:
        url = p.ref("EventsQueue")
        monkeypatch.setenv("NANOCMD_QUEUE_URL", url)
        reset_settings_cache()
        yield url
    finally:
        p.delete()


@pytest.fixture
def nanocmd_env(
    aws_env: dict[str, str], template_path: Path, monkeypatch: pytest.MonkeyPatch, _settings_cache: None
) -> Iterator[Provisioned]:
    """Every resource of the template, fresh, with the functions' NANOCMD_* env set (as on Lambda).

    Returns the :class:`~infra.local.resources.Provisioned` (``.env``, ``.ref(id)``, ``.attr(id, a)``).
    Plain secret values are not set: a test wanting one sets e.g. NANOCMD_API itself.
    """
    p = provision(template_path, _unique_prefix(), {})
    try:
        for key, value in p.env.items():
            monkeypatch.setenv(key, value)
        reset_settings_cache()
        yield p
    finally:
        p.delete()
