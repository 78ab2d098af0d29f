"""Draw the layers of the product and the imports between them, from the code.

    .venv/bin/python scripts/architecture_diagram.py      # writes docs/architecture.png (and .dot)

grimp (import-linter's graph) reads the imports of every module; modules are grouped into the
layers of ``pyproject.toml``'s layers contract (plus the entry points and ``db``), and an arrow
A -> B with a count says that many modules of A import modules of B. Needs Graphviz's ``dot``
(Debian: ``apt-get install graphviz``).
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from collections import Counter
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "architecture"
NOTES = {
    "app_pages": "Streamlit pages: widgets only",
    "mumic_core.cli": "python -m mumic_core",
    "mumic_core.api": "HTTP API (FastAPI), Label Studio ML backend",
    "mumic_core.services": "one function per user action",
    "mumic_core.pipeline": "scoring, training, lifecycle,\\njobs, queue, worker, search",
    "mumic_core.store": "images, classes, labels, queue, leases,\\naccounts, versions, settings, storage",
    "mumic_core.encoders": "open_clip factory, encoding,\\nembedding cache, fine-tuning, pretraining",
    "mumic_core.model": "pure tensors and arrays: losses, head,\\nmetrics, strategies, label quality",
    "mumic_core.synthetic": "generated scenes, starter corpus",
    "db": "SQLAlchemy tables, sessions, migrations",
}


def layers() -> list[list[str]]:
    """The layers contract of pyproject.toml, top first; a layer may hold independent siblings."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    contract = next(c for c in config if c["type"] == "layers")
    return [[part.strip() for part in layer.split("|")] for layer in contract["layers"]]


def group_of(module: str, groups: list[str]) -> str | None:
    return max((g for g in groups if module == g or module.startswith(g + ".")), key=len, default=None)


def main() -> None:
    sys.path.insert(0, str(ROOT))
    stack = layers()
    groups = [g for layer in stack for g in layer] + ["db"]
    graph = grimp.build_graph("mumic_core", "app_pages", "db", include_external_packages=False)
    edges: Counter[tuple[str, str]] = Counter()
    for module in graph.modules:
        source = group_of(module, groups)
        if source is None:
            continue
        for imported in graph.find_modules_directly_imported_by(module):
            target = group_of(imported, groups)
            if target is not None and target != source:
                edges[(source, target)] += 1
    lines = [
        "digraph layers {",
        "  rankdir=TB; nodesep=0.35; ranksep=0.45;",
        '  node [shape=box, style="rounded,filled", fillcolor="#eef3fb", fontname="Helvetica", fontsize=11];',
        '  edge [color="#8a94a6", fontname="Helvetica", fontsize=9];',
    ]
    for layer in [*stack, ["db"]]:
        names = " ".join(f'"{g}"' for g in layer)
        lines.append(f"  {{ rank=same; {names} }}")
        for g in layer:
            fill = ', fillcolor="#fdf1dc"' if g == "db" else ""
            lines.append(f'  "{g}" [label="{g}\\n{NOTES.get(g, "")}"{fill}];')
    for (a, b), n in sorted(edges.items()):
        lines.append(f'  "{a}" -> "{b}" [label="{n}"];')
    lines.append("}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    dot = OUT.with_suffix(".dot")
    dot.write_text("\n".join(lines) + "\n")
    subprocess.run(["dot", "-Tpng", "-Gdpi=110", str(dot), "-o", str(OUT.with_suffix(".png"))], check=True)
    print(f"wrote {OUT.with_suffix('.png').relative_to(ROOT)}: {len(edges)} layer-to-layer import edges")


if __name__ == "__main__":
    main()
