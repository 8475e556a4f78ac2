#!/usr/bin/env python3
"""Lambda artifact builder behind SAM's ``BuildMethod: makefile`` (see infra/build/Makefile).

Two kinds of artifact, neither needs Docker:

``function NAME ARTIFACTS_DIR``
    ``functions/NAME/*.py`` (``app.py`` is the handler module) at the artifact root, and the
    ``nanocmd_core`` package beside it: every ``.py`` file, ``py.typed``, and whatever
    ``[tool.setuptools.package-data]`` in pyproject.toml declares for ``nanocmd_core`` (so the artifact
    holds what a wheel would). ``__pycache__``, ``*.pyc`` and dot-files of the repo are never copied;
    the artifact's bytecode is compiled afresh (below).

``layer ARTIFACTS_DIR``
    The third-party runtime dependencies, i.e. ``[project].dependencies`` of pyproject.toml, pinned by
    ``infra/build/layer-constraints.txt``, installed into ``ARTIFACTS_DIR/python`` as binary wheels for
    CPython 3.12 on Linux/arm64 (the Lambda ``python3.12`` runtime on Graviton): pip is told the target
    platform, so this works from any host (x86_64, Python 3.11 here). Installs are cached by a hash of
    their inputs under ``.aws-sam/layer-cache`` (override: ``NANOCMD_LAYER_CACHE``; ``off`` disables).

Bytecode: Lambda's code and layer folders are read-only, so a module without a ``.pyc`` is compiled
from source at every cold start (``import boto3`` alone takes about four times as long). Both
artifacts therefore ship ``__pycache__/*.cpython-312.pyc``, compiled by a CPython 3.12 interpreter
(``NANOCMD_BYTECODE_PYTHON``, else ``python3.12`` on PATH; ``off`` ships sources only): hash-based,
so they stay valid whatever file times the zip and Lambda give the sources. The layer's are
``unchecked-hash`` (never compared with their source: the layer is immutable); the function's
``checked-hash`` (an edit of a source file in the Lambda console is still honoured). Without a 3.12
interpreter the build says so and ships sources only.

Only the standard library is used, so any Python >= 3.11 with pip can run it.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_REPO = HERE.parent.parent
PACKAGE = "nanocmd_core"
CONSTRAINTS = HERE / "layer-constraints.txt"

# The Lambda runtime the layer is built for. Keep in step with template.yaml (Runtime, Architectures,
# CompatibleRuntimes, CompatibleArchitectures). AL2023 (python3.12) has glibc 2.34, so any manylinux
# wheel up to 2_34 runs there; pip expands each manylinux tag to the older ones.
PYTHON_VERSION = "3.12"
PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_28_aarch64", "manylinux_2_34_aarch64")
IMPLEMENTATION = "cp"

# Installed by wheels but of no use in a layer (console scripts are built for the build host).
LAYER_PRUNE_DIRS = ("bin",)

BYTECODE_PYTHON_ENV = "NANOCMD_BYTECODE_PYTHON"
FUNCTION_BYTECODE_MODE = "checked-hash"
LAYER_BYTECODE_MODE = "unchecked-hash"


def log(msg: str) -> None:
    print(f"[nanocmd-build] {msg}", file=sys.stderr, flush=True)


def pyproject(repo: Path) -> dict:
    with (repo / "pyproject.toml").open("rb") as fh:
        return tomllib.load(fh)


# --------------------------------------------------------------------------------------------- function


def _package_data_globs(repo: Path) -> list[tuple[Path, str]]:
    """(directory, glob) pairs from [tool.setuptools.package-data] that apply to nanocmd_core."""
    data = pyproject(repo).get("tool", {}).get("setuptools", {}).get("package-data", {})
    out: list[tuple[Path, str]] = []
    for pkg, patterns in data.items():
        if pkg == "*":
            base = repo / PACKAGE
            out.extend((base, f"**/{p}") for p in patterns)
        elif pkg == PACKAGE or pkg.startswith(PACKAGE + "."):
            base = repo.joinpath(*pkg.split("."))
            out.extend((base, p) for p in patterns)
    return out


def _skipped(rel: Path) -> bool:
    return any(part == "__pycache__" or part.startswith(".") for part in rel.parts)


def package_files(repo: Path) -> list[Path]:
    """Files of nanocmd_core that go into a function artifact, relative to the repo root."""
    root = repo / PACKAGE
    if not (root / "__init__.py").is_file():
        raise SystemExit(f"{root}/__init__.py not found: is --repo the project root?")
    files: set[Path] = set()
    for path in root.rglob("*"):
        rel = path.relative_to(repo)
        if path.is_file() and not _skipped(rel) and (path.suffix == ".py" or path.name == "py.typed"):
            files.add(rel)
    for base, pattern in _package_data_globs(repo):
        for path in base.glob(pattern):
            rel = path.relative_to(repo)
            if path.is_file() and not _skipped(rel) and not fnmatch.fnmatch(path.name, "*.py[co]"):
                files.add(rel)
    return sorted(files)


def handler_files(repo: Path, name: str) -> list[Path]:
    src = repo / "functions" / name
    if not (src / "app.py").is_file():
        raise SystemExit(f"{src}/app.py not found: the {name} function has no handler module")
    return sorted(p for p in src.glob("*.py") if p.is_file() and not p.name.startswith("test_"))


def bytecode_python() -> str | None:
    """A CPython 3.12 interpreter to compile the artifacts' bytecode with (None: ship sources only):
    ``NANOCMD_BYTECODE_PYTHON``, else ``python3.12`` on PATH, in /usr[/local]/bin or a pyenv version
    (a pyenv shim of a version that is not active fails the probe and is skipped)."""
    setting = os.environ.get(BYTECODE_PYTHON_ENV, "").strip()
    if setting.lower() in {"off", "0", "false", "no"}:
        return None
    name = f"python{PYTHON_VERSION}"
    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    installed = sorted(str(p) for p in pyenv.glob(f"versions/{PYTHON_VERSION}.*/bin/{name}"))
    candidates = [setting] if setting else [name, f"/usr/local/bin/{name}", f"/usr/bin/{name}", *installed]
    for candidate in candidates:
        path = shutil.which(candidate) or (candidate if Path(candidate).is_file() else None)
        if path is None:
            continue
        probe = "import sys; print(sys.implementation.cache_tag)"
        try:
            out = subprocess.run([path, "-c", probe], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            continue
        if out.returncode == 0 and out.stdout.strip() == f"cpython-{PYTHON_VERSION.replace('.', '')}":
            return path
    log(f"no CPython {PYTHON_VERSION} found (set {BYTECODE_PYTHON_ENV}): shipping sources without bytecode,"
        " so every cold start compiles every module")  # fmt: skip
    return None


def compile_bytecode(root: Path, python: str, mode: str) -> None:
    """``__pycache__`` beside every source under ``root``, made by ``python`` (its own cache tag)."""
    cmd = [python, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", mode, str(root)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:  # a file that does not compile is imported from source, as before
        log(f"compileall reported problems under {root}:\n{(out.stdout + out.stderr)[-2000:]}")


def build_function(repo: Path, name: str, artifacts: Path) -> None:
    artifacts.mkdir(parents=True, exist_ok=True)
    # start from a clean artifact (SAM reuses the folder when --build-dir is given twice)
    for child in artifacts.iterdir():
        shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    for src in handler_files(repo, name):
        shutil.copy2(src, artifacts / src.name)
    files = package_files(repo)
    for rel in files:
        dest = artifacts / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / rel, dest)
    python = bytecode_python()
    if python is not None:
        compile_bytecode(artifacts, python, FUNCTION_BYTECODE_MODE)
    log(f"function {name}: app.py + {len(files)} files of {PACKAGE} -> {artifacts}"
        + (" (with bytecode)" if python else ""))  # fmt: skip


# ------------------------------------------------------------------------------------------------ layer


def layer_requirements(repo: Path) -> list[str]:
    deps = pyproject(repo).get("project", {}).get("dependencies", [])
    if not deps:
        raise SystemExit("pyproject.toml [project].dependencies is empty: nothing to put in the layer")
    return list(deps)


WORKFLOW_REQUIREMENTS = "workflows.txt"


def workflow_requirements(repo: Path) -> list[str]:
    """Packages of the deployer's own workflows, one pip requirement a line (a name, a version
    spec, or a path to a package folder relative to the repo), from ``workflows.txt`` at the
    repo root or the file ``NANOCMD_WORKFLOW_REQUIREMENTS`` names. They go into the layer, where
    nanocmd finds their workflows through the ``nanocmd.workflows`` entry points."""
    path = Path(os.environ.get("NANOCMD_WORKFLOW_REQUIREMENTS") or repo / WORKFLOW_REQUIREMENTS)
    if not path.is_file():
        return []
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def _wheels_for_local(repo: Path, requirements: list[str], wheel_dir: Path) -> list[str]:
    """Local package folders become wheels (the layer takes binary packages only); this project
    is built too, so a workflow package that depends on nanocmd-serverless resolves here."""
    out: list[str] = []
    local = [r for r in requirements if (repo / r).is_dir()]
    for folder in [repo, *(repo / r for r in local)]:
        pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet"]
        subprocess.run([*pip_wheel, "--wheel-dir", str(wheel_dir), str(folder)], check=True)
    for requirement in requirements:
        if requirement in local:
            name = pyproject(repo / requirement)["project"]["name"]
            out.append(name)
        else:
            out.append(requirement)
    return out


def _pip_command(requirements: Path, target: Path) -> list[str]:
    cmd = [
        sys.executable, "-m", "pip", "install",
        "--requirement", str(requirements),
        "--constraint", str(CONSTRAINTS),
        "--target", str(target),
        "--implementation", IMPLEMENTATION,
        "--python-version", PYTHON_VERSION,
        "--only-binary=:all:",
        "--no-compile",             # .pyc made by this host's Python would be the wrong version anyway
        "--no-warn-conflicts",      # pip compares against the build venv, which is irrelevant here
        "--no-warn-script-location",
        "--disable-pip-version-check",
        "--quiet",
    ]  # fmt: skip
    for platform in PLATFORMS:
        cmd += ["--platform", platform]
    return cmd


def _cache_key(requirements: list[str], bytecode: bool) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(
        {"requirements": requirements, "python": PYTHON_VERSION, "platforms": PLATFORMS,
         "implementation": IMPLEMENTATION, "prune": LAYER_PRUNE_DIRS, "bytecode": bytecode},
        sort_keys=True).encode())  # fmt: skip
    h.update(CONSTRAINTS.read_bytes())
    h.update(Path(__file__).read_bytes())
    return h.hexdigest()[:20]


def _cache_dir(repo: Path) -> Path | None:
    setting = os.environ.get("NANOCMD_LAYER_CACHE", "").strip()
    if setting.lower() in {"off", "0", "false", "no"}:
        return None
    return Path(setting) if setting else repo / ".aws-sam" / "layer-cache"


def _pip_install(
    requirements: list[str], target: Path, python: str | None, find_links: Path | None = None
) -> None:
    with tempfile.TemporaryDirectory(prefix="nanocmd-layer-") as tmp:
        req = Path(tmp) / "requirements.txt"
        req.write_text("\n".join(requirements) + "\n")
        cmd = _pip_command(req, target)
        if find_links is not None:
            cmd += ["--find-links", str(find_links)]
        log("pip " + " ".join(cmd[3:]))
        subprocess.run(cmd, check=True)
    for name in LAYER_PRUNE_DIRS:
        shutil.rmtree(target / name, ignore_errors=True)
    for pycache in list(target.rglob("__pycache__")):
        shutil.rmtree(pycache, ignore_errors=True)
    if python is not None:  # made for the Lambda runtime's Python, not this host's
        compile_bytecode(target, python, LAYER_BYTECODE_MODE)


def _copy_tree(src: Path, dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest, symlinks=True)


def build_layer(repo: Path, artifacts: Path) -> None:
    requirements = layer_requirements(repo)
    target = artifacts / "python"
    python = bytecode_python()
    extras = workflow_requirements(repo)
    if extras:  # the deployer's workflow packages: built fresh, not cached (their code changes)
        with tempfile.TemporaryDirectory(prefix="nanocmd-wheels-") as wheels:
            extras = _wheels_for_local(repo, extras, Path(wheels))
            if target.exists():
                shutil.rmtree(target)
            _pip_install(requirements + extras, target, python, find_links=Path(wheels))
        log(f"layer: {', '.join(requirements + extras)} -> {target}")
        return
    cache_root = _cache_dir(repo)
    if cache_root is None:
        if target.exists():
            shutil.rmtree(target)
        _pip_install(requirements, target, python)
    else:
        cached = cache_root / _cache_key(requirements, python is not None)
        if (cached / ".complete").is_file():
            log(f"layer: reusing {cached}")
        else:
            cache_root.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix="staging-", dir=cache_root))
            try:
                _pip_install(requirements, staging / "python", python)
                (staging / ".complete").write_text(json.dumps(requirements) + "\n")
                if cached.exists():  # a concurrent build finished first
                    shutil.rmtree(staging)
                else:
                    staging.rename(cached)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            # keep only the newest few installs
            olds = sorted((p for p in cache_root.iterdir() if p.is_dir() and p != cached
                           and not p.name.startswith("staging-")),
                          key=lambda p: p.stat().st_mtime)  # fmt: skip
            for old in olds[:-2]:
                shutil.rmtree(old, ignore_errors=True)
        _copy_tree(cached / "python", target)
    log(f"layer: {', '.join(requirements)} -> {target}")


# -------------------------------------------------------------------------------------------------- cli


def _walk(args: argparse.Namespace) -> Iterator[str]:  # pragma: no cover - debugging aid
    repo = args.repo.resolve()
    for rel in package_files(repo):
        yield str(rel)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=DEFAULT_REPO, help="project root (default: %(default)s)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    fn = sub.add_parser("function", help="build one function artifact")
    fn.add_argument("name", help="folder under functions/, e.g. webhook")
    fn.add_argument("artifacts", type=Path, help="SAM's $(ARTIFACTS_DIR)")
    ly = sub.add_parser("layer", help="build the dependencies layer")
    ly.add_argument("artifacts", type=Path, help="SAM's $(ARTIFACTS_DIR)")
    sub.add_parser("list-package", help="print the nanocmd_core files a function artifact gets")
    args = parser.parse_args(argv)

    repo = args.repo.resolve()
    if args.cmd == "function":
        build_function(repo, args.name, args.artifacts.resolve())
    elif args.cmd == "layer":
        build_layer(repo, args.artifacts.resolve())
    else:
        for line in _walk(args):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
