"""Harder multi-label scenes: 1–4 objects, each a drawing of a category or a coloured shape, on
the varied backgrounds of ``scenes``, with long-tailed class frequencies.

Used by the quality benchmark. Test scenes take their drawings from the starter recipe's
held-out drawings, so no test object instance was seen in pretraining or in training.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from mumic_core.synthetic.scenes import (
    BACKGROUND_CLASSES,
    COLOUR_CLASSES,
    SHAPE_CLASSES,
    background_image,
    shape_sprite,
    zipf_weights,
)
from mumic_core.synthetic.starter_corpus import (
    Drawing,
    all_drawings,
    article,
    category_prompts,
    load_held_out,
    load_sprite,
)

SHAPE_NAMES: tuple[str, ...] = tuple(c.name for c in SHAPE_CLASSES)
_COLOURS: tuple[str, ...] = tuple(c.name for c in COLOUR_CLASSES)
_BACKGROUNDS: tuple[str, ...] = tuple(c.name for c in BACKGROUND_CLASSES)


@dataclass(frozen=True)
class SceneClasses:
    """The classes of a scene set: drawing categories and shapes, with their frequencies."""

    names: tuple[str, ...]
    probabilities: np.ndarray  # how often each class is picked for an object

    def prompts(self) -> list[list[str]]:
        """Text prompts per class: the starter's category templates; shapes get "shape" words."""
        out = []
        for name in self.names:
            if name in SHAPE_NAMES:
                out.append(
                    [
                        f"a drawing of {article(name)} {name}",
                        f"{article(name)} {name} shape",
                        f"a picture of {article(name)} {name}",
                    ]
                )
            else:
                out.append(category_prompts([name])[0])
        return out


def long_tailed_classes(
    categories: Sequence[str], shapes: Sequence[str] = SHAPE_NAMES, exponent: float = 1.1, seed: int = 0
) -> SceneClasses:
    """Categories and shapes in a seeded random order with Zipf frequencies (a long tail)."""
    names = list(categories) + [s for s in shapes if s not in categories]
    order = np.random.default_rng(seed).permutation(len(names))
    return SceneClasses(tuple(names[i] for i in order), zipf_weights(len(names), exponent))


def _paste(canvas: Image.Image, sprites: Sequence[Image.Image], rng: np.random.Generator) -> None:
    """Paste up to 4 sprites in distinct quadrants (or one anywhere), each 30–55% of the side."""
    size = canvas.width
    n = len(sprites)
    slots = [(0.5, 0.5)] if n == 1 else rng.permutation([(0, 0), (1, 0), (0, 1), (1, 1)])[:n]
    for sprite, (sx, sy) in zip(sprites, slots):
        side = int(size * (rng.uniform(0.45, 0.85) if n == 1 else rng.uniform(0.3, 0.5)))
        im = sprite.copy()
        im.thumbnail((side, side), Image.LANCZOS)
        cell = size / 2 if n > 1 else size
        ox = sx * cell if n > 1 else 0
        oy = sy * cell if n > 1 else 0
        x0 = int(ox + rng.uniform(0, max(1, cell - im.width)))
        y0 = int(oy + rng.uniform(0, max(1, cell - im.height)))
        canvas.paste(im, (min(x0, size - im.width), min(y0, size - im.height)), im)


def generate_scenes(
    n: int,
    seed: int,
    out_dir: Path,
    classes: SceneClasses,
    drawings: Mapping[str, Sequence[Drawing]],
    sprite: Callable[[Drawing], Image.Image],
    size: int = 128,
    max_objects: int = 4,
) -> list[tuple[str, frozenset[str]]]:
    """Write ``n`` scenes to ``out_dir`` and return (filename, labels) rows.

    Each scene has 1..max_objects objects of distinct classes drawn by ``classes.probabilities``;
    a category object is a random drawing of ``drawings[category]`` (rendered by ``sprite``), a
    shape object a shape in a random colour. Categories without drawings are never drawn."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    usable = np.array([name in SHAPE_NAMES or bool(drawings.get(name)) for name in classes.names])
    p = np.where(usable, classes.probabilities, 0.0)
    p = p / p.sum()
    rows = []
    for k in range(n):
        m = min(int(rng.integers(1, max_objects + 1)), int(usable.sum()))
        picked = [classes.names[i] for i in rng.choice(len(p), size=m, replace=False, p=p)]
        sprites = []
        for name in picked:
            if name in SHAPE_NAMES:
                sprites.append(shape_sprite(rng, name, _COLOURS[rng.integers(len(_COLOURS))], size))
            else:
                pool = drawings[name]
                sprites.append(sprite(pool[int(rng.integers(len(pool)))]))
        canvas = background_image(rng, _BACKGROUNDS[rng.integers(len(_BACKGROUNDS))], size)
        _paste(canvas, sprites, rng)
        name = f"scene_{k:05d}.png"
        canvas.save(out_dir / name)
        rows.append((name, frozenset(picked)))
    return rows


def held_out_scene_splits(
    corpus: Path, folder: Path, sizes: Mapping[str, int], seeds: Mapping[str, int], size: int = 128
) -> tuple[SceneClasses, dict[str, list[tuple[str, frozenset[str]]]]]:
    """Scenes of the starter corpus's drawings, written under ``folder/<split>``: the ``train``
    split draws the drawings the starter model was pretrained on, the ``test`` split only its
    held-out drawings, so no test object instance was seen in pretraining. Returns the classes
    and, per split, ``generate_scenes``'s rows."""
    held, root, font = load_held_out(corpus)
    held_keys = {d.key for d in held}
    categories = sorted({d.category for d in held})
    classes = long_tailed_classes(categories)
    pool = {
        "train": [d for d in all_drawings(root, font) if d.key not in held_keys and d.category],
        "test": held,
    }
    cache: dict[str, Image.Image] = {}

    def sprite(d: Drawing) -> Image.Image:
        if d.key not in cache:
            cache[d.key] = load_sprite(d, root, font)
        return cache[d.key]

    rows = {}
    for split, n in sizes.items():
        by_category = {c: [d for d in pool[split] if d.category == c] for c in categories}
        rows[split] = generate_scenes(n, seeds[split], folder / split, classes, by_category, sprite, size=size)
    return classes, rows
