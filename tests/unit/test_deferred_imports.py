"""What the functions' imports leave for first use (issue 14: cold starts), and that first use
still finds it: the status views, the response types no built-in workflow names, the API's route
modules. Each case runs in a fresh interpreter: this one has imported everything already."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


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


def test_the_engine_imports_neither_the_status_views_nor_the_unnamed_response_types() -> None:
    result = _fresh(
        "import json, sys\n"
        f"loaded = {LOADED}\n"
        "import nanocmd_core.engine.engine, nanocmd_core.wiring\n"
        "deferred = ('nanocmd_core.status.device_views', 'nanocmd_core.status.instance_views',\n"
        "            'nanocmd_core.mdm.deferred_responses')\n"
        "before = loaded(*deferred)\n"
        "from nanocmd_core.mdm.responses import response_type_for\n"
        "from nanocmd_core.status.views import DeviceStatus\n"
        "kind = response_type_for('RemoveProfile').__name__\n"
        "print(json.dumps({'before': before, 'after': loaded(*deferred), 'kind': kind,\n"
        "                  'device': DeviceStatus.__module__}))\n"
    )
    assert result["before"] == []
    assert result["after"] == ["nanocmd_core.status.device_views", "nanocmd_core.mdm.deferred_responses"]
    assert result["kind"] == "RemoveProfileResponse"
    assert result["device"] == "nanocmd_core.status.device_views"


def test_load_deferred_imports_what_first_use_would() -> None:
    result = _fresh(
        "import json, sys\n"
        "import nanocmd_core.status.views, nanocmd_core.mdm.responses\n"
        "from nanocmd_core import snapstart\n"
        "resolved = snapstart.load_deferred()\n"
        "print(json.dumps({'resolved': resolved, 'again': snapstart.load_deferred(),\n"
        "                  'built': snapstart.build_models() > 0, 'rest': snapstart.build_models()}))\n"
    )
    assert result["resolved"] == 16  # 11 status views, 5 response types
    assert result["again"] == 0
    assert result["built"] and result["rest"] == 0


def test_the_api_function_builds_its_routes_on_first_use() -> None:
    env = {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "NANOCMD_TABLE": "t",
        "NANOCMD_API": "k",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    result = _fresh(
        "import importlib.util, json, sys\n"
        f"loaded = {LOADED}\n"
        "spec = importlib.util.spec_from_file_location('app', 'functions/api/app.py')\n"
        "app = importlib.util.module_from_spec(spec); spec.loader.exec_module(app)\n"
        "before = loaded('nanocmd_core.api.app', 'nanocmd_core.status.device_views')\n"
        "routes = len(app._api()._static_routes) + len(app._api()._dynamic_routes)\n"
        "print(json.dumps({'before': before, 'routes': routes > 0,\n"
        "                  'after': loaded('nanocmd_core.api.app', 'nanocmd_core.status.device_views')}))\n",
        env,
    )
    assert result["before"] == []
    assert result["routes"]
    assert result["after"] == ["nanocmd_core.api.app", "nanocmd_core.status.device_views"]
