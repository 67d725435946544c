"""The packages' imports run one way: apps -> monitor -> model and apps -> training -> model.

Every import statement of every module is read with `ast` (top-level and function-local alike:
a lazy import is still an arrow), so a new arrow against the direction fails here, not in review.
"""
from __future__ import annotations

import ast

from conftest import ROOT

PACKAGES = ("model", "monitor", "training", "apps")
ALLOWED = {
    "model": set(),
    "monitor": {"model"},
    "training": {"model"},
    "apps": {"model", "monitor", "training"},
}


def imported_packages(path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return {n.split(".")[0] for n in names} & set(PACKAGES)


def arrows() -> list[tuple[str, str, str]]:
    """(module path, its package, the package it imports) for every import between packages."""
    out = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for target in imported_packages(path) - {package}:
                out.append((str(path.relative_to(ROOT)), package, target))
    return out


def test_imports_run_one_way():
    wrong = [f"{path} ({package}) imports {target}" for path, package, target in arrows()
             if target not in ALLOWED[package]]
    assert not wrong, "imports against apps -> monitor/training -> model:\n" + "\n".join(wrong)


def test_walker_sees_lazy_and_dotted_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("import os\nimport monitor.sources as s\n\ndef f():\n    from training.scene import X\n"
                      "    from . import sibling\n")
    assert imported_packages(module) == {"monitor", "training"}


def test_every_package_is_walked():
    # The layering holds only if the walk reaches each package's modules (a renamed root would
    # pass vacuously): each package has modules, and apps does import the layers below it.
    for package in PACKAGES:
        assert list((ROOT / package).rglob("*.py")), package
    assert {t for _, p, t in arrows() if p == "apps"} == {"model", "monitor", "training"}
