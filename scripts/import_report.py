"""Import hygiene of the product's code: cycles among its modules and imports inside functions.

    .venv/bin/python scripts/import_report.py [--strict]

Prints every import cycle among the modules of ``mumic_core``, ``app_pages`` and ``db`` (strongly
connected components of grimp's import graph, module level and function level alike), and each
import made inside a function. An import inside a function is allowed only where a heavy optional
dependency is deferred on purpose, said by a ``# deferred: ...`` comment on its line. With
``--strict`` the script exits 1 when there is a cycle or an unexplained function-level import
(``make lint`` runs it so).
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mumic_core", "app_pages", "db")


def cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    modules = sorted(m for m in graph.modules if m.split(".")[0] in PACKAGES)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.find_modules_directly_imported_by(v)):
            if w.split(".")[0] not in PACKAGES:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for m in modules:
        if m not in index:
            visit(m)
    return found


def function_level_imports(paths: list[Path]) -> list[tuple[str, int, str, bool]]:
    """(file, line, statement, explained) for each import inside a function body."""
    out = []
    for path in paths:
        source = path.read_text()
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)) and inner is not node:
                    line = lines[inner.lineno - 1]
                    out.append((str(path.relative_to(ROOT)), inner.lineno, line.strip(), "# deferred:" in line))
    return sorted(set(out))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strict", action="store_true", help="exit 1 on a cycle or an unexplained deferred import")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    graph = grimp.build_graph(*PACKAGES, include_external_packages=False)
    found = cycles(graph)
    print(f"import cycles among {', '.join(PACKAGES)}: {len(found)}")
    for component in found:
        print("  " + " <-> ".join(component))
    files = sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py") if "migrations" not in p.parts)
    files += [ROOT / name for name in ("app.py", "serve.py") if (ROOT / name).exists()]
    deferred = function_level_imports(files)
    unexplained = [d for d in deferred if not d[3]]
    print(
        f"imports inside functions: {len(deferred)} ({len(deferred) - len(unexplained)} deferred on purpose, "
        f"{len(unexplained)} unexplained)"
    )
    for file, line, statement, explained in deferred:
        print(f"  {file}:{line}: {statement}" + ("" if explained else "   <- unexplained"))
    return 1 if args.strict and (found or unexplained) else 0


if __name__ == "__main__":
    sys.exit(main())
