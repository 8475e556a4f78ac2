"""The Lambda layer carries the deployer's own workflow packages (issue 6): list them in
workflows.txt, build, deploy; the functions find them through their entry points."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_a_listed_workflow_package_lands_in_the_layer_with_its_entry_point(tmp_path: Path) -> None:
    requirements = tmp_path / "workflows.txt"
    requirements.write_text("# the example package, by its folder\nexamples/appaudit\n")
    out = tmp_path / "layer"
    env = {**os.environ, "NANOCMD_WORKFLOW_REQUIREMENTS": str(requirements)}
    build = [sys.executable, str(REPO / "infra/build/build.py"), "--repo", str(REPO)]
    subprocess.run([*build, "layer", str(out)], check=True, env=env, capture_output=True)
    python = out / "python"
    assert (python / "nanocmd_appaudit" / "workflow.py").is_file()
    [dist] = python.glob("nanocmd_example_appaudit-*.dist-info")
    assert "appaudit = nanocmd_appaudit.workflow:make_workflow" in (dist / "entry_points.txt").read_text()
    assert list(python.glob("pydantic_core/*aarch64*.so"))  # still built for the Lambda runtime
