"""`sam build` (no Docker) makes artifacts that hold every module the handlers import.

The layer is built for CPython 3.12 on arm64, which this host (x86_64, Python 3.11) cannot load, so
completeness is proved statically: the import graph of each handler (its ``app.py`` and every
``nanocmd_core`` module it reaches, imports inside functions included, ``if TYPE_CHECKING:`` and
``try/except ImportError`` imports excluded) must resolve to the standard library, the function artifact
or the layer's ``python/`` folder, and the layer's own distributions must satisfy each other's
``Requires-Dist`` for that platform. The function artifact is also imported for real, with the dev venv
standing in for the layer.
"""

from __future__ import annotations

import ast
import email.parser
import filecmp
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
CONSTRAINTS = REPO / "infra" / "build" / "layer-constraints.txt"
FUNCTIONS = {
    "WebhookFunction": "webhook",
    "ApiFunction": "api",
    "EventsFunction": "events",
    "SweeperFunction": "sweeper",
}
LAYER = "DependenciesLayer"

# What the python3.12 runtime has that 3.11's stdlib list says, minus what 3.12 removed (PEP 594/632).
REMOVED_IN_312 = {"distutils", "imp", "asynchat", "asyncore", "smtpd"}
STDLIB = (set(sys.stdlib_module_names) | {"__future__"}) - REMOVED_IN_312
# Environment markers of the Lambda python3.12 runtime on Graviton.
LAMBDA_MARKERS = {
    "python_version": "3.12",
    "python_full_version": "3.12.0",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "implementation_version": "3.12.0",
    "os_name": "posix",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "aarch64",
    "extra": "",
}


# ------------------------------------------------------------------------------------------- the build


def _sam() -> str | None:
    beside = Path(sys.executable).with_name("sam")
    return str(beside) if beside.exists() else shutil.which("sam")


@dataclass
class Build:
    root: Path
    seconds: float
    template: dict[str, Any] = field(default_factory=dict)

    def function(self, logical_id: str) -> Path:
        return self.root / logical_id

    @property
    def layer_python(self) -> Path:
        return self.root / LAYER / "python"


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_multi_constructor("!", lambda loader, suffix, node: {suffix: None})


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    sam = _sam()
    if sam is None:
        pytest.skip("the SAM CLI (sam) is not installed: pip install -e .[dev]")
    missing = [
        f"functions/{d}/app.py"
        for d in FUNCTIONS.values()
        if not (REPO / "functions" / d / "app.py").is_file()
    ]
    assert not missing, f"handlers missing, nothing to build: {missing}"
    out = tmp_path_factory.mktemp("sam") / "build"
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0", "SAM_CLI_CONTAINER_CONNECTION_TIMEOUT": "1"}
    cmd = [sam, "build", "--template-file", str(TEMPLATE), "--build-dir", str(out), "--parallel"]
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    seconds = time.monotonic() - started
    assert proc.returncode == 0, f"sam build failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    with (out / "template.yaml").open() as fh:
        built = yaml.load(fh, Loader=_Loader)
    print(f"sam build took {seconds:.1f}s")
    return Build(out, seconds, built)


slow = pytest.mark.slow  # everything that needs `sam build`


# ------------------------------------------------------------------------------------ artifact shape


@slow
def test_built_template_points_at_artifacts(build: Build) -> None:
    res = build.template["Resources"]
    for logical_id in FUNCTIONS:
        assert res[logical_id]["Properties"]["CodeUri"] == logical_id
        assert build.function(logical_id).is_dir()
    assert res[LAYER]["Properties"]["ContentUri"] == LAYER
    assert build.layer_python.is_dir()


def _runtime_bytecode(path: Path) -> bool:
    """``__pycache__/<module>.cpython-312.pyc`` beside its source, hash-based: the bytecode the
    build compiles for the Lambda runtime with a CPython 3.12 (infra/build/build.py), so a cold
    start does not compile every module. Anything else in a cache is the build host's."""
    if path.parent.name != "__pycache__" or not path.name.endswith(".cpython-312.pyc"):
        return False
    source = path.parent.parent / (path.name.removesuffix(".cpython-312.pyc") + ".py")
    header = path.read_bytes()[:8]
    return source.is_file() and bool(int.from_bytes(header[4:8], "little") & 0b1)


def _py_files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*.py") if "__pycache__" not in p.parts}


@slow
@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_function_artifact_holds_handler_and_package(build: Build, logical_id: str) -> None:
    art = build.function(logical_id)
    src = REPO / "functions" / FUNCTIONS[logical_id]
    assert filecmp.cmp(src / "app.py", art / "app.py", shallow=False), "app.py is not the handler's source"
    # the whole nanocmd_core package, byte for byte
    pkg_src, pkg_art = REPO / "nanocmd_core", art / "nanocmd_core"
    assert _py_files(pkg_art) == _py_files(pkg_src)
    for rel in _py_files(pkg_src):
        assert filecmp.cmp(pkg_src / rel, pkg_art / rel, shallow=False), rel
    assert (pkg_art / "py.typed").is_file()
    # nothing else: no caches but the runtime's own bytecode, no third-party code (that is the
    # layer's), no dev files
    strays = [p for p in art.rglob("*") if p.is_file() and not _runtime_bytecode(p) and (
        "__pycache__" in p.parts or p.suffix in {".pyc", ".pyo"})]  # fmt: skip
    assert not strays, strays
    top = {p.name for p in art.iterdir()}
    assert top <= {"nanocmd_core", "__pycache__"} | {p.name for p in src.glob("*.py")}, top


# ----------------------------------------------------------------------------------- the import graph


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    if handler.type is None:
        return True
    names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(
        isinstance(n, ast.Name) and n.id in {"ImportError", "ModuleNotFoundError", "Exception"} for n in names
    )


@dataclass(frozen=True)
class Import:
    module: str  # absolute dotted name
    names: tuple[str, ...] = ()  # for "from module import a, b": a, b (maybe submodules)
    line: int = 0


def runtime_imports(tree: ast.AST, module: str, is_package: bool) -> Iterator[Import]:
    """Imports that run when the module is imported or its functions are called."""

    def visit(node: ast.AST) -> Iterator[Import]:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                yield from visit(child)
            return
        if isinstance(node, ast.Try) and any(_catches_import_error(h) for h in node.handlers):
            # optional imports: `try: import x / except ImportError: fallback`
            for child in [*node.handlers, *node.orelse, *node.finalbody]:
                yield from visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(alias.name, (), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield Import(target, tuple(a.name for a in node.names if a.name != "*"), node.lineno)
        for child in ast.iter_child_nodes(node):
            yield from visit(child)

    yield from visit(tree)


def _find(root: Path, dotted: str) -> Path | None:
    """The file or folder that `dotted` is in `root` (a sys.path entry), else None."""
    here = root
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if (here / part).is_dir():
            here = here / part
            continue
        if last:
            if (here / f"{part}.py").is_file():
                return here / f"{part}.py"
            ext = [p for p in here.glob(f"{part}.*.so")] + [p for p in here.glob(f"{part}.so")]
            if ext:
                return ext[0]
        return None
    return here


class Resolver:
    def __init__(self, function_root: Path, layer_root: Path) -> None:
        self.function_root = function_root
        self.layer_root = layer_root
        self.missing: list[str] = []
        self.seen: set[Path] = set()
        self.third_party: set[str] = set()

    def locate(self, dotted: str) -> tuple[Path, Path] | None:
        """(sys.path entry, file or folder) of a module, searching like sys.path: artifact, then layer."""
        top = dotted.split(".")[0]
        for root in (self.function_root, self.layer_root):
            if _find(root, top) is not None:  # the first entry that has the top-level wins
                found = _find(root, dotted)
                return (root, found) if found is not None else None
        return None

    def check_file(self, path: Path, module: str) -> None:
        if path in self.seen or path.suffix != ".py":
            return
        self.seen.add(path)
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"
        for imp in runtime_imports(tree, module, is_package):
            self.check_import(imp, f"{path.relative_to(self.function_root)}:{imp.line}")

    def _enter(self, dotted: str, where: str) -> bool:
        """Resolve `dotted` and its parent packages; recurse into those in the function artifact."""
        parts = dotted.split(".")
        for i in range(1, len(parts) + 1):
            name = ".".join(parts[:i])
            loc = self.locate(name)
            if loc is None:
                self.missing.append(
                    f"{where}: imports {dotted!r}, but {name!r} is in neither artifact nor layer"
                )
                return False
            root, found = loc
            if root == self.function_root:
                init = found / "__init__.py" if found.is_dir() else found
                if init.is_file():
                    self.check_file(init, name)
            else:
                self.third_party.add(parts[0])
        return True

    def check_import(self, imp: Import, where: str) -> None:
        top = imp.module.split(".")[0]
        if not top:
            self.missing.append(f"{where}: relative import beyond the top-level package")
            return
        if top in STDLIB and self.locate(top) is None:
            return
        if not self._enter(imp.module, where):
            return
        for name in imp.names:  # `from pkg import sub` may import a submodule
            sub = f"{imp.module}.{name}"
            if self.locate(sub) is not None:
                self._enter(sub, where)


@slow
@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_every_import_resolves_in_artifact_or_layer(build: Build, logical_id: str) -> None:
    art = build.function(logical_id)
    resolver = Resolver(art, build.layer_python)
    resolver.check_file(art / "app.py", "app")
    assert not resolver.missing, "modules the handler imports are missing:\n" + "\n".join(resolver.missing)
    reached = {p.relative_to(art) for p in resolver.seen}
    assert Path("app.py") in reached


def test_import_checker_catches_a_missing_module(tmp_path: Path) -> None:
    """The static check itself: a module that is nowhere is reported; optional and typing-only are not."""
    fn, layer = tmp_path / "fn", tmp_path / "layer"
    (fn / "pkg").mkdir(parents=True)
    layer.mkdir()
    (layer / "present").mkdir()
    (layer / "present" / "__init__.py").write_text("")
    (fn / "pkg" / "__init__.py").write_text("from . import sub\n")
    (fn / "pkg" / "sub.py").write_text(
        "from typing import TYPE_CHECKING\nimport json\nimport present\n"
        "if TYPE_CHECKING:\n    import typing_only_stubs\n"
        "try:\n    import optional_speedup\nexcept ImportError:\n    optional_speedup = None\n"
        "def f():\n    import lazily_missing\n"
    )
    (fn / "app.py").write_text("import pkg\nfrom pkg.sub import f\nimport distutils\n")
    resolver = Resolver(fn, layer)
    resolver.check_file(fn / "app.py", "app")
    joined = "\n".join(resolver.missing)
    assert "'lazily_missing'" in joined and "'distutils'" in joined  # removed from 3.12's stdlib
    assert "typing_only_stubs" not in joined and "optional_speedup" not in joined
    assert "'present'" not in joined and "'pkg" not in joined and "'json'" not in joined


# -------------------------------------------------------------------------------------------- the layer


def _dists(layer: Path) -> dict[str, tuple[str, Path]]:
    from packaging.utils import canonicalize_name

    out = {}
    for info in layer.glob("*.dist-info"):
        meta = email.parser.Parser().parsestr((info / "METADATA").read_text(errors="replace"))
        out[canonicalize_name(meta["Name"])] = (meta["Version"], info)
    return out


def _pins() -> dict[str, str]:
    from packaging.utils import canonicalize_name

    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version.strip()
    return pins


def _top_level_names(info: Path) -> set[str]:
    """Import names a distribution installs (from its RECORD), e.g. python-dateutil -> dateutil."""
    names = set()
    for row in (info / "RECORD").read_text().splitlines():
        path = row.split(",", 1)[0]
        first = path.split("/", 1)[0]
        if not first or first.endswith((".dist-info", ".data")) or first in {"..", "bin", "__pycache__"}:
            continue
        names.add(re.sub(r"(\.cpython-[^.]+|\.abi3)?\.(py|so)$", "", first))
    return names


@slow
def test_layer_has_each_dependency_at_its_pin(build: Build) -> None:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    with (REPO / "pyproject.toml").open("rb") as fh:
        deps = [Requirement(d) for d in tomllib.load(fh)["project"]["dependencies"]]
    dists, pins = _dists(build.layer_python), _pins()
    for req in deps:
        name = canonicalize_name(req.name)
        assert name in dists, f"{req.name} is not in the layer"
        version, info = dists[name]
        assert version == pins[name], f"{req.name} {version} in the layer, pinned {pins[name]}"
        tops = _top_level_names(info)
        assert tops, f"{req.name} installs no importable module?"
        for top in tops:
            assert _find(build.layer_python, top) is not None, f"{req.name}: {top} missing from the layer"
    # the import names the code uses differ from the distribution names for these
    for dist, module in {
        "aws-lambda-powertools": "aws_lambda_powertools",
        "pydantic-core": "pydantic_core",
        "python-dateutil": "dateutil",
        "typing-extensions": "typing_extensions",
    }.items():
        assert module in _top_level_names(dists[dist][1])
    # every installed distribution is pinned: nothing unpinned slipped in
    assert set(dists) <= set(pins), f"unpinned distributions in the layer: {set(dists) - set(pins)}"


@slow
def test_layer_dependencies_are_closed_for_lambda(build: Build) -> None:
    from packaging.requirements import Requirement

    dists = _dists(build.layer_python)
    problems = []
    for name, (_, info) in dists.items():
        meta = email.parser.Parser().parsestr((info / "METADATA").read_text(errors="replace"))
        for line in meta.get_all("Requires-Dist") or []:
            req = Requirement(line)
            if req.marker is not None and not req.marker.evaluate(LAMBDA_MARKERS):
                continue
            from packaging.utils import canonicalize_name

            dep = canonicalize_name(req.name)
            if dep not in dists:
                problems.append(f"{name} requires {line!r}: not in the layer")
            elif not req.specifier.contains(dists[dep][0], prereleases=True):
                problems.append(f"{name} requires {line!r}: layer has {dists[dep][0]}")
    assert not problems, "\n".join(problems)


@slow
def test_layer_binaries_are_cp312_aarch64(build: Build) -> None:
    layer = build.layer_python
    sos = list(layer.rglob("*.so"))
    core = [p for p in sos if p.parent.name == "pydantic_core"]
    assert core, "pydantic_core's extension module is missing"
    assert all("aarch64" in p.name and "312" in p.name for p in core), core
    for so in sos:
        assert "x86_64" not in so.name and "amd64" not in so.name, f"host binary in the layer: {so}"
        m = re.search(r"\.cpython-(\d+)", so.name)
        assert m is None or m.group(1) == "312", f"binary for another Python: {so}"
    for info in layer.glob("*.dist-info"):
        wheel = (info / "WHEEL").read_text()
        for tag in re.findall(r"^Tag: (\S+)", wheel, re.M):
            py, abi, plat = tag.split("-")
            if plat == "any":
                continue
            assert "aarch64" in plat, f"{info.name}: wheel tag {tag} is not for arm64"
            assert py == "cp312" or (abi == "abi3" and py.startswith("cp3")), f"{info.name}: {tag}"
    caches = [p for p in layer.rglob("__pycache__/*") if not _runtime_bytecode(p)]
    assert not caches, f"compiled caches from the build host in the layer: {caches[:5]}"


# ------------------------------------------------------------------ a real import of the function code


@slow
@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_handler_imports_from_the_artifact(build: Build, logical_id: str, tmp_path: Path) -> None:
    """Import app.py from the function artifact in a fresh interpreter, the dev venv standing in for
    the layer (same pins): nanocmd_core must come from the artifact, and app.handler must exist."""
    art = build.function(logical_id)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NANOCMD_", "PYTHON"))}
    env.update(
        {
            "PYTHONPATH": str(art),
            "PYTHONDONTWRITEBYTECODE": "1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_EC2_METADATA_DISABLED": "true",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_SERVICE_NAME": "nanocmd",
            "AWS_LAMBDA_FUNCTION_NAME": logical_id,
            "NANOCMD_TABLE": "nanocmd-test",
            "NANOCMD_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/1/q.fifo",
            "NANOCMD_ENQUEUE_URL": "http://127.0.0.1:9/v1/enqueue/",
        }
    )
    code = (
        "import sys, app, nanocmd_core\n"
        f"art = {str(art)!r}\n"
        "assert nanocmd_core.__file__.startswith(art), nanocmd_core.__file__\n"
        "assert callable(app.handler)\n"
        "bad = [m.__name__ for m in list(sys.modules.values())\n"
        "       if m.__name__.startswith('nanocmd_core') and getattr(m, '__file__', None)\n"
        "       and not m.__file__.startswith(art)]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"importing {logical_id}'s app.py failed:\n{proc.stdout}\n{proc.stderr}"
