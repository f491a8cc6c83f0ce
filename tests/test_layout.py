"""The folder layout is the architecture: imports go downwards only, and modules stay small.

Layers, lowest first (a package may import its own modules and any lower layer, never a higher one or
a sibling of its own layer):

    leaf utilities: errors, files, faults, registry, settings, yamlfile, plugins, metrics
    sparse | models | data        the algorithm, the backbones, the data (independent of each other)
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
    {"errors", "files", "faults", "registry", "settings", "yamlfile", "plugins", "metrics", "safeload"},
    {"sparse", "models", "data"},
    {"train"},
    {"config"},
    {"run"},
    {"sweep", "report", "deploy", "avalanche"},
    {"cli"},
]
LEVEL = {name: i for i, layer in enumerate(LAYERS) for name in layer}
LEAVES = LAYERS[0]
MAX_LINES = 360


def top_level(module: Path) -> str:
    """The first component under dstcl/ (``sparse`` for dstcl/sparse/learner.py, ``files`` for dstcl/files.py)."""
    rel = module.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def imported_tops(module: Path) -> set[str]:
    """The dstcl top-level components ``module`` imports (relative or absolute)."""
    tree = ast.parse(module.read_text(encoding="utf-8"))
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
    return sorted(p for p in PACKAGE.rglob("*.py") if p != PACKAGE / "__init__.py")


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


def test_the_checker_sees_a_violation(tmp_path):
    """The import check itself must be able to fail."""
    fake = PACKAGE / "sparse" / "_layout_probe.py"
    fake.write_text("from ..run import experiment\n", encoding="utf-8")
    try:
        assert "run" in imported_tops(fake)
        assert LEVEL["run"] > LEVEL[top_level(fake)]
    finally:
        fake.unlink()
