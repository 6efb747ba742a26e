"""Counts edgekit's function-level imports of its own modules (library code, not cli/).

    python tools/import_stats.py [--all]

Prints the count and, with --all, each place. Imports inside functions hide cycles and
layer breaks from a reader; the layers test (tests/test_layers.py) checks them all.
"""

from __future__ import annotations

import ast
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1] / "edgekit"


def function_level_imports(root: pathlib.Path = ROOT) -> list[tuple[str, int, str]]:
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent)
        if rel.parts[1] == "cli":
            continue
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("edgekit"):
                    found.append((str(rel), node.lineno, node.module))
                elif isinstance(node, ast.ImportFrom) and node.level:
                    found.append((str(rel), node.lineno, "." * node.level + (node.module or "")))
                elif isinstance(node, ast.Import):
                    for alias in node.names:
                        if alias.name.startswith("edgekit"):
                            found.append((str(rel), node.lineno, alias.name))
    # one per (file, line)
    return sorted(set(found))


if __name__ == "__main__":
    places = function_level_imports()
    print(f"{len(places)} function-level imports of edgekit modules outside cli/")
    if "--all" in sys.argv:
        for p in places:
            print(*p)
