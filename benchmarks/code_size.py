"""Module and function sizes of the four packages, largest first: where the code is concentrated.

    python benchmarks/code_size.py [--top 10]
"""
from __future__ import annotations

import argparse
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("model", "monitor", "training", "apps")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--top", type=int, default=10)
    args = ap.parse_args(argv)
    modules, functions = [], []
    for path in sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")):
        text = path.read_text()
        rel = str(path.relative_to(ROOT))
        modules.append((len(text.splitlines()), rel))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                functions.append((node.end_lineno - node.lineno + 1, f"{rel}:{node.lineno} {node.name}"))
    print(f"{len(modules)} modules, {sum(n for n, _ in modules)} lines")
    print("largest modules:")
    for n, name in sorted(modules, reverse=True)[:args.top]:
        print(f"  {n:5d}  {name}")
    print("largest functions:")
    for n, name in sorted(functions, reverse=True)[:args.top]:
        print(f"  {n:5d}  {name}")


if __name__ == "__main__":
    main()
