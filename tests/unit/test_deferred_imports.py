"""What the functions' imports leave for first use (issue 14: cold starts), and that first use
still finds it: the status views, the typed commands, responses and check-in messages, certprof's
context models, the API's route modules. Each case runs in a fresh interpreter: this one has
imported everything already."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FUNCTION_ENV = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "NANOCMD_TABLE": "t",
    "NANOCMD_API": "k",
    "POWERTOOLS_TRACE_DISABLED": "true",
}
TYPED = (
    "nanocmd_core.mdm.command_types",
    "nanocmd_core.mdm.deferred_responses",
    "nanocmd_core.mdm.checkin",
    "nanocmd_core.workflows.certprof_context",
)
"""The modules of typed models the engine and the built-in workflows use only once they run."""


def _fresh(code: str, env: dict[str, str] | None = None) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter; it prints one JSON line, returned decoded."""
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


LOADED = "lambda *names: [n for n in names if n in sys.modules]"


def test_the_engine_imports_neither_the_status_views_nor_the_typed_models() -> None:
    result = _fresh(
        "import json, sys\n"
        f"loaded = {LOADED}\n"
        "import nanocmd_core.engine.engine, nanocmd_core.wiring\n"
        "deferred = ('nanocmd_core.status.device_views', 'nanocmd_core.status.instance_views',\n"
        f"            *{TYPED!r})\n"
        "before = loaded(*deferred)\n"
        "from nanocmd_core.mdm.commands import command_type_for\n"
        "from nanocmd_core.mdm.responses import response_type_for\n"
        "from nanocmd_core.status.views import DeviceStatus\n"
        "kind = response_type_for('RemoveProfile').__name__\n"
        "command = command_type_for('DeviceLock').__name__\n"
        "print(json.dumps({'before': before, 'after': loaded(*deferred), 'kind': kind,\n"
        "                  'command': command, 'unknown': repr(command_type_for('Settings')),\n"
        "                  'device': DeviceStatus.__module__}))\n"
    )
    assert result["before"] == []
    assert result["after"] == [
        "nanocmd_core.status.device_views",
        "nanocmd_core.mdm.command_types",
        "nanocmd_core.mdm.deferred_responses",
    ]
    assert result["kind"] == "RemoveProfileResponse"
    assert (result["command"], result["unknown"]) == ("DeviceLock", "None")
    assert result["device"] == "nanocmd_core.status.device_views"


@pytest.mark.parametrize("function", ["api", "events", "sweeper"])
def test_a_function_loads_the_typed_models_on_first_use(function: str) -> None:
    """Importing the function leaves every typed model module out; building a command, parsing
    a report and a check-in, decoding a certprof context each import theirs, and work."""
    result = _fresh(
        "import importlib.util, json, plistlib, sys\n"
        "from datetime import UTC, datetime\n"
        f"loaded = {LOADED}\n"
        f"typed = {TYPED!r}\n"
        f"spec = importlib.util.spec_from_file_location('app', 'functions/{function}/app.py')\n"
        "app = importlib.util.module_from_spec(spec); spec.loader.exec_module(app)\n"
        "steps = {'import': loaded(*typed)}\n"
        "from nanocmd_core.mdm.commands import DeviceInformation\n"
        "command = plistlib.loads(DeviceInformation(queries=['SerialNumber']).to_plist())['Command']\n"
        "steps['command'] = loaded(*typed)\n"
        "from nanocmd_core.mdm.responses import parse_response\n"
        "from tests.fakes.reports import checkin_webhook, device_information\n"
        "info = parse_response('DeviceInformation', device_information('c-1', 'U-1', SerialNumber='S-1'))\n"
        "steps['report'] = loaded(*typed)\n"
        "from nanocmd_core.engine.webhook_events import process_webhook_event\n"
        "from nanocmd_core.mdm.webhook import parse_webhook\n"
        "class Engine:\n"
        "    def handle_checkin(self, enrollment_id, message, mdm_context=None):\n"
        "        self.checkin = [enrollment_id, type(message).__name__, message.enrolling, message.topic]\n"
        "engine = Engine()\n"
        "webhook = parse_webhook(checkin_webhook('TokenUpdate', 'U-1', tally=1, Topic='com.apple.mgmt.x'))\n"
        "process_webhook_event(engine, webhook, datetime.now(UTC))\n"
        "steps['checkin'] = loaded(*typed)\n"
        "from nanocmd_core.workflows.certprof import CertProfWorkflow\n"
        "context = CertProfWorkflow(None, None).context_codec('').decode(b'{\"profile\": \"p\"}')\n"
        "steps['certprof'] = loaded(*typed)\n"
        "print(json.dumps({'steps': steps, 'command': command, 'checkin': engine.checkin,\n"
        "                  'report': [type(info).__name__, info.query_responses.serial_number],\n"
        "                  'context': [type(context).__name__, context.profile]}))\n",
        FUNCTION_ENV,
    )
    assert result["steps"] == {
        "import": [],
        "command": list(TYPED[:1]),
        "report": list(TYPED[:2]),
        "checkin": list(TYPED[:3]),
        "certprof": list(TYPED),
    }
    assert result["command"] == {"RequestType": "DeviceInformation", "Queries": ["SerialNumber"]}
    assert result["report"] == ["DeviceInformationResponse", "S-1"]
    assert result["checkin"] == ["U-1", "TokenUpdate", True, "com.apple.mgmt.x"]
    assert result["context"] == ["CertProfContext", "p"]


def test_load_deferred_imports_what_first_use_would() -> None:
    result = _fresh(
        "import json, sys\n"
        "import nanocmd_core.status.views, nanocmd_core.mdm.commands, nanocmd_core.mdm.responses\n"
        "import nanocmd_core.workflows.certprof\n"
        "from nanocmd_core import snapstart\n"
        "resolved = snapstart.load_deferred()\n"
        "print(json.dumps({'resolved': resolved, 'again': snapstart.load_deferred(),\n"
        "                  'built': snapstart.build_models() > 0, 'rest': snapstart.build_models()}))\n"
    )
    # 11 status views, 12 commands (FileVaultUnlock too), 17 responses (11 + 6 nested), 3 certprof
    assert result["resolved"] == 43
    assert result["again"] == 0
    assert result["built"] and result["rest"] == 0


def test_the_api_function_builds_its_routes_on_first_use() -> None:
    result = _fresh(
        "import importlib.util, json, sys\n"
        f"loaded = {LOADED}\n"
        "spec = importlib.util.spec_from_file_location('app', 'functions/api/app.py')\n"
        "app = importlib.util.module_from_spec(spec); spec.loader.exec_module(app)\n"
        "before = loaded('nanocmd_core.api.app', 'nanocmd_core.status.device_views')\n"
        "routes = len(app._api()._static_routes) + len(app._api()._dynamic_routes)\n"
        "print(json.dumps({'before': before, 'routes': routes > 0,\n"
        "                  'after': loaded('nanocmd_core.api.app', 'nanocmd_core.status.device_views')}))\n",
        FUNCTION_ENV,
    )
    assert result["before"] == []
    assert result["routes"]
    assert result["after"] == ["nanocmd_core.api.app", "nanocmd_core.status.device_views"]


RARELY_USED = (
    "nanocmd_core.subsystems.filevault.keypair",
    "nanocmd_core.subsystems.filevault.cms",
    "nanocmd_core.subsystems.profile.mobileconfig",
)
"""What only an escrow, a certificate or a profile upload needs: the key pair, the CMS code (the
``cryptography`` and ``asn1crypto`` code under them) and the profile parser."""


@pytest.mark.parametrize("function", ["events", "sweeper"])
def test_a_function_loads_the_crypto_and_the_profile_parser_on_first_use(function: str) -> None:
    """Neither the events nor the sweeper function load the FileVault crypto, the profile parser
    or the webhook intake at import; the key pair, a PRK escrow and a profile's parse still work."""
    result = _fresh(
        "import importlib.util, json, sys\n"
        f"loaded = {LOADED}\n"
        f"rare = {RARELY_USED!r}\n"
        f"spec = importlib.util.spec_from_file_location('app', 'functions/{function}/app.py')\n"
        "app = importlib.util.module_from_spec(spec); spec.loader.exec_module(app)\n"
        "steps = {'import': loaded(*rare, 'nanocmd_core.webhook.intake')}\n"
        "from nanocmd_core.subsystems import filevault\n"
        "from nanocmd_core.subsystems.filevault.storage import MemoryKeyPairStore\n"
        "pair = MemoryKeyPairStore().keypair()\n"
        "steps['keypair'] = loaded(*rare)\n"
        "from tests.unit.subsystems.filevault.cms_builder import envelope\n"
        "class PRKs:\n"
        "    def store_prk(self, enrollment_id, prk): self.stored = (enrollment_id, prk)\n"
        "prks = PRKs()\n"
        "vault = filevault.FileVault(MemoryKeyPairStore(pair), prks)\n"
        "prk = vault.escrow_prk('U-1', envelope(b'ABCD-EFGH', pair.certificate))\n"
        "from nanocmd_core.subsystems.profile.storage import MemoryProfileStore\n"
        "keys = {'PayloadIdentifier': 'com.x', 'PayloadUUID': 'u', 'PayloadType': 'Configuration',\n"
        "        'PayloadVersion': 1}\n"
        "import plistlib\n"
        "parsed = MemoryProfileStore().store('p', plistlib.dumps(keys))\n"
        "print(json.dumps({'steps': steps, 'prk': prk, 'stored': prks.stored,\n"
        "                  'same': filevault.KeyPair is type(pair), 'identifier': parsed.identifier,\n"
        "                  'after': loaded(*rare)}))\n",
        FUNCTION_ENV,
    )
    assert result["steps"] == {
        "import": [],
        "keypair": ["nanocmd_core.subsystems.filevault.keypair"],
    }
    assert result["prk"] == "ABCD-EFGH"
    assert result["stored"] == ["U-1", "ABCD-EFGH"]
    assert result["same"] is True
    assert result["identifier"] == "com.x"
    assert result["after"] == list(RARELY_USED)


@pytest.mark.parametrize("function", ["api", "events", "sweeper", "webhook"])
def test_a_function_collects_garbage_again_once_loaded(function: str) -> None:
    """The handlers pause the collector while they load: afterwards it is on again, with what the
    import built frozen out of later passes, and a cycle made after the import is collected."""
    result = _fresh(
        "import gc, importlib.util, json, weakref\n"
        "enabled_before = gc.isenabled()\n"
        f"spec = importlib.util.spec_from_file_location('app', 'functions/{function}/app.py')\n"
        "app = importlib.util.module_from_spec(spec); spec.loader.exec_module(app)\n"
        "class Node: pass\n"
        "node = Node(); node.me = node; probe = weakref.ref(node); del node\n"
        "gc.collect()\n"
        "print(json.dumps({'before': enabled_before, 'enabled': gc.isenabled(),\n"
        "                  'frozen': gc.get_freeze_count(), 'cycle_collected': probe() is None}))\n",
        FUNCTION_ENV,
    )
    assert result["before"] is True
    assert result["enabled"] is True
    assert isinstance(result["frozen"], int) and result["frozen"] > 10_000
    assert result["cycle_collected"] is True


def test_the_events_function_leaves_powertools_parser_models_out() -> None:
    """The handler imports pydantic at its top level after Powertools' batch utility: pydantic loaded
    before it would make the utility import its parser models (16 modules no event here uses)."""
    result = _fresh(
        "import importlib.util, json, sys\n"
        "spec = importlib.util.spec_from_file_location('app', 'functions/events/app.py')\n"
        "app = importlib.util.module_from_spec(spec); spec.loader.exec_module(app)\n"
        "libraries = ('boto3', 'pynamodb.models', 'pydantic')\n"
        "print(json.dumps({'parser': [m for m in sys.modules if 'utilities.parser' in m],\n"
        "                  'libraries': [m in sys.modules for m in libraries]}))\n",
        FUNCTION_ENV,
    )
    assert result["parser"] == []
    assert result["libraries"] == [True, True, True]
