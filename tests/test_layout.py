"""The folder layout is the architecture: imports go downwards only, and modules stay small.

Layers, lowest first (a package may import its own modules and any lower layer, never a higher one or
a sibling of its own layer):

    leaf utilities: errors, files, faults, registry, settings, yamlfile, plugins, metrics
    sparse | models | data        the algorithm, the backbones, the data (independent of each other)
    methods                       the mask-based baselines (PackNet, WSN, SupSup) on the sparse core
    train                         one task's training loop and evaluation
    config                        a run's settings (reads the registries above)
    run                           the life of one run
    sweep | report | deploy       grids of runs, tables over them, using a finished run
    cli                           the command line
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "dstcl"
LAYERS = [
    {"errors", "files", "faults", "registry", "settings", "yamlfile", "plugins", "metrics", "safeload", "vision"},
    {"sparse", "models", "data"},
    {"methods"},  # PackNet, WSN, SupSup: learners built on the sparse core, found by train's METHODS registry
    {"train"},
    {"config"},
    {"run"},
    {"sweep", "report", "deploy", "avalanche"},
    {"cli", "__init__"},  # dstcl/__init__.py: the package's public face (dstcl.load) sits on top
]
LEVEL = {name: i for i, layer in enumerate(LAYERS) for name in layer}
LEAVES = LAYERS[0]
MAX_LINES = 360


def top_level(module: Path) -> str:
    """The first component under dstcl/ (``sparse`` for dstcl/sparse/learner.py, ``files`` for dstcl/files.py)."""
    rel = module.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def imported_tops(module: Path, source: str | None = None) -> set[str]:
    """The dstcl top-level components ``module`` imports (relative or absolute); ``source`` instead of the
    file's text (the module need not exist)."""
    tree = ast.parse(source if source is not None else module.read_text(encoding="utf-8"))
    depth = len(module.relative_to(PACKAGE).parts) - 1  # 0: dstcl/x.py, 1: dstcl/pkg/x.py
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                up = node.level - 1  # levels above the module's own package
                if up < depth:  # inside its own package
                    continue
                if node.module:
                    found.add(node.module.split(".")[0])
                else:
                    found.update(alias.name for alias in node.names)
            elif node.module and node.module.startswith("dstcl."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("dstcl."):
                    found.add(alias.name.split(".")[1])
    return found


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_module_belongs_to_a_layer():
    assert {top_level(m) for m in modules()} <= set(LEVEL)


def test_imports_only_go_down():
    wrong = []
    for module in modules():
        own = top_level(module)
        for other in imported_tops(module):
            if other == own or other == "__version__":
                continue
            if other not in LEVEL:
                wrong.append(f"{module.relative_to(PACKAGE)} imports unknown dstcl.{other}")
            elif LEVEL[other] > LEVEL[own] or (LEVEL[other] == LEVEL[own] and own not in LEAVES):
                wrong.append(f"{module.relative_to(PACKAGE)} ({own}) imports {other}")
    assert not wrong, "upward or sideways imports:\n" + "\n".join(wrong)


def test_modules_stay_small():
    big = {str(m.relative_to(PACKAGE)): n for m in modules()
           if (n := len(m.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines (split them by job): {big}"


def test_the_checker_sees_a_violation():
    """The import check itself must be able to fail (on source text: no test writes into the package)."""
    fake = PACKAGE / "sparse" / "_layout_probe.py"
    assert "run" in imported_tops(fake, "from ..run import experiment\n")
    assert LEVEL["run"] > LEVEL[top_level(fake)]
    assert module_imports(PACKAGE / "a" / "b.py", "from . import c\nfrom .d import e\n") == {"dstcl.a.c", "dstcl.a.d",
                                                                                       "dstcl.a.d.e"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_imports(path: Path, source: str | None = None) -> set[str]:
    """Every dstcl module (or package) ``path`` imports, lazily inside a function or not; ``from . import x``
    names x, not the package."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(source if source is not None else path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                full = ".".join(base + ([node.module] if node.module else []))
            else:
                full = node.module or ""
            if node.module:
                found.add(full)
            found.update(f"{full}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m.startswith("dstcl")}


def test_no_two_modules_import_each_other():
    """A cycle hidden by a lazy import is still a cycle: it means two modules share one job."""
    names = {module_name(m): m for m in modules()}
    graph = {name: {m for m in module_imports(path) if m in names and m != name} for name, path in names.items()}
    cycles = sorted({tuple(sorted((a, b))) for a, deps in graph.items() for b in deps if a in graph[b]})
    assert not cycles, f"modules importing each other: {cycles}"
