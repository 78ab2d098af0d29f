"""Smoke sizes for the benchmarks: the ``--smoke`` option, stand-ins for what CI lacks, checks.

Every script under ``benchmarks/`` takes ``--smoke [DIR]``: the same code end to end at tiny
sizes, with its store, inputs and results under DIR (never ``benchmarks/results``), and its
results checked for the keys and rows a full run has. Where a script needs the starter model
(``make starter-model``: 37 minutes) or its corpus (Debian's Tux Paint stamps), a smoke run
uses the stand-ins below, made on the fly and labelled as such. ``_run_smoke.py`` runs them all.

The stand-ins import ``mumic_core`` (and so torch) when called, not when this module is
imported: the scripts parse their options first, and some set ``MUMIC_*`` before importing it.
Scripts import it as ``benchmarks._smoke`` (the repository root on ``sys.path``), as the tests
import ``benchmarks.bad_inputs``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Container, Iterable
from pathlib import Path

import numpy as np

SMOKE_HELP = (
    "run at smoke size (tiny inputs, the same code paths) with the store, inputs and results under DIR "
    "(default: a new temporary folder), never benchmarks/results; a stand-in replaces the starter model "
    "and its drawings where a run needs them"
)
STAMPS_PER_CATEGORY = 4  # split_held_out keeps one of each category's drawings out from 4 on
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def add_smoke_option(parser: argparse.ArgumentParser) -> None:
    """``--smoke [DIR]``: ``args.smoke`` is None for a full run, else DIR ("" for a temporary folder)."""
    parser.add_argument("--smoke", nargs="?", const="", default=None, metavar="DIR", help=SMOKE_HELP)


def smoke_folder(smoke: str, name: str) -> Path:
    """The folder of one smoke run: DIR as given (created), or a new temporary folder."""
    if smoke:
        folder = Path(smoke).resolve()
        folder.mkdir(parents=True, exist_ok=True)
    else:
        folder = Path(tempfile.mkdtemp(prefix=f"mumic-smoke-{name}-"))
    print(f"smoke run of {name}: store, inputs and results under {folder}", flush=True)
    return folder


def stand_in_model(folder: Path) -> Path:
    """A random-weight model of the starter's architecture in ``folder`` (made once), standing
    in for ``make starter-model``; its label says so."""
    from mumic_core.encoders.factory import create_random_local_dir
    from mumic_core.encoders.spec import CONFIG_NAME, STARTER_ARCH

    if not (folder / CONFIG_NAME).is_file():
        create_random_local_dir(STARTER_ARCH, folder, seed=0)
        config = json.loads((folder / CONFIG_NAME).read_text())
        config["mumic_label"] = f"stand-in for the starter model (same computation): {STARTER_ARCH}, random weights"
        (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2))
    return folder


def stand_in_stamps(folder: Path, per_category: int = STAMPS_PER_CATEGORY) -> Path:
    """A tiny stand-in for Debian's Tux Paint stamps folder: ``per_category`` coloured shapes
    (PNG with a one-line .txt description, as Tux Paint has them) in the folder of every
    evaluation category, so ``starter_corpus`` reads it like the real one."""
    from mumic_core.synthetic.scenes import COLOUR_CLASSES, SHAPE_CLASSES, shape_sprite
    from mumic_core.synthetic.starter_corpus import EVAL_CATEGORIES, SPRITE_SIZE

    rng = np.random.default_rng(0)
    shapes = [c.name for c in SHAPE_CLASSES]
    colours = [c.name for c in COLOUR_CLASSES]
    for i, (category, prefixes) in enumerate(sorted(EVAL_CATEGORIES.items())):
        stamp_dir = folder / prefixes[0]
        stamp_dir.mkdir(parents=True, exist_ok=True)
        for k in range(per_category):
            stem = f"{category.replace(' ', '_')}_{k}"
            shape_sprite(rng, shapes[i % len(shapes)], colours[(i + k) % len(colours)], SPRITE_SIZE).save(
                stamp_dir / f"{stem}.png"
            )
            (stamp_dir / f"{stem}.txt").write_text(f"A smoke-test stand-in drawing of {category}.\n")
    return folder


def stand_in_corpus(folder: Path, composites: int = 8) -> Path:
    """A starter corpus (captions, pictures, held-out drawings list) built by the product's
    ``build_corpus`` from the stand-in stamps (no emoji: the font path does not exist)."""
    from mumic_core.synthetic.starter_corpus import build_corpus

    if not (folder / "held_out.json").is_file():
        stamps = stand_in_stamps(folder / "stamps")
        build_corpus(folder, variants=1, composites=composites, root=stamps, font=folder / "no-emoji-font.ttf")
    return folder


def require(data: Container, keys: Iterable[str], what: str) -> None:
    """Stop with a clear message when ``data`` (a result's dict, or a set of its rows) lacks any of ``keys``."""
    missing = [k for k in keys if k not in data]
    if missing:
        raise SystemExit(f"malformed result: {what} lacks {', '.join(map(repr, missing))}")


def check_written(*paths: Path) -> None:
    """Each results file exists and is well-formed: JSON parses, Markdown has a table or a heading,
    a PNG starts with the PNG signature."""
    for path in paths:
        if not path.is_file() or path.stat().st_size == 0:
            raise SystemExit(f"malformed result: {path} is missing or empty")
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".md" and not path.read_text().lstrip().startswith(("#", "|")):
            raise SystemExit(f"malformed result: {path} is not a Markdown table")
        elif path.suffix == ".png" and path.read_bytes()[:8] != PNG_SIGNATURE:
            raise SystemExit(f"malformed result: {path} is not a PNG")
