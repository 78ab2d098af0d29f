"""Self-generated multi-label demo collection: 1–4 coloured shapes on a patterned background.

Everything is drawn with numpy and Pillow at twice the target resolution and downsampled
with LANCZOS, so a few hundred images take a second or two and need no downloads.
"""

from __future__ import annotations

import colorsys
import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


@dataclass(frozen=True)
class ClassSpec:
    """A label class: its name, CLIP-style text prompts and a short description."""

    name: str
    prompts: tuple[str, ...]
    description: str


@dataclass
class Scene:
    """One generated picture and the set of class names it depicts."""

    image: Image.Image
    labels: frozenset[str]


def _shape(name: str, phrase: str, description: str) -> ClassSpec:
    article = "an" if name[0] in "aeiou" else "a"
    return ClassSpec(name, (f"a photo of {article} {name}", phrase, f"a drawing of {article} {name}"), description)


def _colour(colour: str) -> ClassSpec:
    return ClassSpec(
        f"{colour} object",
        (f"a photo of a {colour} object", f"a {colour} shape", f"something coloured {colour}"),
        f"At least one object in the picture is {colour}.",
    )


SHAPE_CLASSES: tuple[ClassSpec, ...] = (
    _shape("circle", "a round disc shape", "A filled round disc."),
    _shape("square", "a square shape with four equal sides", "A filled square, possibly rotated."),
    _shape("triangle", "a triangular shape", "A filled equilateral triangle."),
    _shape("star", "a five-pointed star shape", "A filled five-pointed star."),
    _shape("heart", "a heart symbol", "A filled heart symbol, roughly upright."),
    _shape("cross", "a plus sign shape", "A plus-shaped cross, possibly rotated into an X."),
    _shape("ring", "a donut shape with a hole in the middle", "A thick ring with a hole showing the background."),
    _shape("hexagon", "a six-sided hexagon shape", "A filled regular hexagon."),
    _shape("arrow", "an arrow shape pointing in one direction", "A block arrow pointing in a random direction."),
    _shape("crescent", "a crescent moon shape", "A crescent, like a new moon."),
)
COLOUR_CLASSES: tuple[ClassSpec, ...] = tuple(
    _colour(c) for c in ("red", "green", "blue", "yellow", "purple", "orange")
)
BACKGROUND_CLASSES: tuple[ClassSpec, ...] = (
    ClassSpec(
        "striped background",
        ("shapes on a striped background", "a picture with stripes in the background", "a striped pattern"),
        "The background is covered with parallel stripes.",
    ),
    ClassSpec(
        "dotted background",
        ("shapes on a polka dot background", "a picture with dots in the background", "a dotted pattern"),
        "The background is covered with a grid of small dots.",
    ),
    ClassSpec(
        "checkered background",
        ("shapes on a checkered background", "a picture with a checkerboard background", "a checkerboard pattern"),
        "The background is a checkerboard of two pale shades.",
    ),
    ClassSpec(
        "plain background",
        ("shapes on a plain background", "a picture with a plain uniform background", "a solid colour background"),
        "The background is a single uniform pale colour.",
    ),
)
DEMO_CLASSES: tuple[ClassSpec, ...] = SHAPE_CLASSES + COLOUR_CLASSES + BACKGROUND_CLASSES

COMPOUND_CLASSES: tuple[ClassSpec, ...] = tuple(
    ClassSpec(
        f"{colour.name.split()[0]} {shape.name}",
        (
            f"a photo of a {colour.name.split()[0]} {shape.name}",
            f"a {colour.name.split()[0]} {shape.name} shape",
            f"a drawing of a {colour.name.split()[0]} {shape.name}",
        ),
        f"At least one {shape.name} in the picture is {colour.name.split()[0]}.",
    )
    for colour in COLOUR_CLASSES
    for shape in SHAPE_CLASSES
)
# The demo's 20 classes plus the 60 colour-shape pairs: with Zipf-weighted shapes and colours
# (``zipf_weights``) a long-tailed label set, used by the active-learning benchmark.
LONG_TAIL_CLASSES: tuple[ClassSpec, ...] = DEMO_CLASSES + COMPOUND_CLASSES

SHAPE_NAMES = frozenset(c.name for c in SHAPE_CLASSES)
COMPOUND_NAMES = frozenset(c.name for c in COMPOUND_CLASSES)
COLOUR_NAMES = frozenset(c.name for c in COLOUR_CLASSES)
BACKGROUND_NAMES = frozenset(c.name for c in BACKGROUND_CLASSES)

# Object colour: hue centre and jitter in degrees, value (brightness) range.
_COLOURS: dict[str, tuple[float, float, float, float]] = {
    "red object": (0.0, 6.0, 0.70, 0.95),
    "green object": (125.0, 15.0, 0.55, 0.85),
    "blue object": (220.0, 12.0, 0.60, 0.95),
    "yellow object": (52.0, 5.0, 0.88, 1.00),
    "purple object": (280.0, 10.0, 0.50, 0.80),
    "orange object": (28.0, 4.0, 0.88, 1.00),
}
_COLOUR_ORDER = tuple(c.name for c in COLOUR_CLASSES)
_BACKGROUND_ORDER = tuple(c.name for c in BACKGROUND_CLASSES)
_ROUND_SHAPES = ("circle", "ring", "crescent")
_PLACEMENT_TRIES = 12
_MAX_HIDDEN = 0.3  # fraction of an earlier object that later objects may cover


def _unit_polygon(points: Iterable[tuple[float, float]]) -> np.ndarray:
    """Centre a polygon on its bounding box and scale it into the unit disc."""
    pts = np.asarray(list(points), dtype=np.float64)
    pts -= (pts.min(axis=0) + pts.max(axis=0)) / 2
    return pts / np.linalg.norm(pts, axis=1).max()


def _regular(n: int, radii: Sequence[float]) -> np.ndarray:
    k = n * len(radii)
    return _unit_polygon(
        (radii[i % len(radii)] * math.cos(a), radii[i % len(radii)] * math.sin(a))
        for i, a in enumerate(-math.pi / 2 + 2 * math.pi * np.arange(k) / k)
    )


_t = np.linspace(0, 2 * math.pi, 60, endpoint=False)
_POLYGONS: dict[str, np.ndarray] = {
    "square": _regular(4, [1.0]),  # a diamond at angle 0; squares are always rotated randomly
    "triangle": _regular(3, [1.0]),
    "star": _regular(5, [1.0, 0.42]),
    "hexagon": _regular(6, [1.0]),
    "heart": _unit_polygon(
        zip(16 * np.sin(_t) ** 3, -(13 * np.cos(_t) - 5 * np.cos(2 * _t) - 2 * np.cos(3 * _t) - np.cos(4 * _t)))
    ),
    "cross": _unit_polygon(
        [
            (-0.3, -1),
            (0.3, -1),
            (0.3, -0.3),
            (1, -0.3),
            (1, 0.3),
            (0.3, 0.3),
            (0.3, 1),
            (-0.3, 1),
            (-0.3, 0.3),
            (-1, 0.3),
            (-1, -0.3),
            (-0.3, -0.3),
        ]
    ),
    "arrow": _unit_polygon([(-1, -0.22), (0.15, -0.22), (0.15, -0.6), (1, 0), (0.15, 0.6), (0.15, 0.22), (-1, 0.22)]),
}


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32) * 255


def _background(rng: np.random.Generator, kind: str, side: int) -> np.ndarray:
    """A pale, low-saturation background of the given kind as a float (3, side, side) array."""
    h, s, v = rng.uniform(), rng.uniform(0.04, 0.22), rng.uniform(0.86, 0.97)
    base = _hsv(h, s, v)
    canvas = np.empty((3, side, side), dtype=np.float32)
    if kind == "plain background":
        canvas[...] = base[:, None, None]
        return canvas
    alt = _hsv(h + rng.uniform(-0.04, 0.04), min(s + rng.uniform(0.05, 0.15), 0.35), v - rng.uniform(0.15, 0.24))
    coords = np.arange(side, dtype=np.float32)
    xx, yy = coords[None, :], coords[:, None]  # broadcast rows/columns instead of full grids
    if kind == "striped background":
        a = rng.uniform(0, math.pi)
        t = (xx * math.cos(a) + yy * math.sin(a)) / (side * rng.uniform(0.07, 0.14)) + rng.uniform()
        pattern = t - np.floor(t) < 0.5
    elif kind == "dotted background":
        p = side * rng.uniform(0.09, 0.14)
        radius = p * rng.uniform(0.2, 0.3)
        ox, oy = rng.uniform(0, p, size=2)
        pattern = ((xx + ox) % p - p / 2) ** 2 + ((yy + oy) % p - p / 2) ** 2 < radius**2
    elif kind == "checkered background":
        p = side * rng.uniform(0.08, 0.14)
        ox, oy = rng.uniform(0, p, size=2)
        pattern = (np.floor((xx + ox) / p).astype(np.int64) + np.floor((yy + oy) / p).astype(np.int64)) & 1 == 1
    else:
        raise ValueError(f"unknown background {kind!r}")
    weight = pattern.astype(np.float32)
    for i in range(3):
        np.multiply(weight, alt[i] - base[i], out=canvas[i])
        canvas[i] += base[i]
    return canvas


def _shape_mask(shape: str, side: int, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """Boolean (side, side) mask of one shape with bounding radius r centred at (cx, cy)."""
    img = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(img)
    if shape in _ROUND_SHAPES:
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
        if shape == "ring":
            ri = 0.55 * r
            draw.ellipse((cx - ri, cy - ri, cx + ri, cy + ri), fill=0)
        elif shape == "crescent":
            ox, oy, ri = cx + 0.42 * r * math.cos(angle), cy + 0.42 * r * math.sin(angle), 0.92 * r
            draw.ellipse((ox - ri, oy - ri, ox + ri, oy + ri), fill=0)
    else:
        c, s = math.cos(angle), math.sin(angle)
        pts = _POLYGONS[shape] @ np.array([[c, s], [-s, c]]) * r + (cx, cy)
        draw.polygon([tuple(p) for p in pts], fill=255)
    return np.asarray(img) > 127


def _rotation(rng: np.random.Generator, shape: str) -> float:
    if shape in ("circle", "ring"):
        return 0.0
    if shape == "heart":
        return rng.uniform(-0.35, 0.35)
    return rng.uniform(0, 2 * math.pi)


def _place(
    rng: np.random.Generator, shape: str, side: int, visible: list[np.ndarray], areas: list[int]
) -> tuple[np.ndarray, float, float, float] | None:
    """Find a placement that hides little of earlier objects; None if the canvas is too crowded."""
    r = rng.uniform(0.09, 0.20) * side  # diameter 18–40% of the image side
    angle = _rotation(rng, shape)
    best: tuple[float, np.ndarray, float, float, float] | None = None
    for _ in range(_PLACEMENT_TRIES):
        cx, cy = rng.uniform(r, side - r, size=2)
        mask = _shape_mask(shape, side, cx, cy, r, angle)
        hidden = max((1 - np.count_nonzero(vis & ~mask) / area for vis, area in zip(visible, areas)), default=0.0)
        if best is None or hidden < best[0]:
            best = (hidden, mask, cx, cy, r)
        if hidden <= _MAX_HIDDEN:
            break
        r *= 0.95
    assert best is not None
    return None if best[0] > _MAX_HIDDEN + 0.1 else best[1:]


def _paint(
    rng: np.random.Generator, canvas: np.ndarray, mask: np.ndarray, colour: str, cx: float, cy: float, r: float
) -> None:
    """Fill mask with a jittered shade of colour plus a soft linear lighting gradient."""
    hue, jitter, vmin, vmax = _COLOURS[colour]
    rgb = _hsv((hue + rng.uniform(-jitter, jitter)) / 360, rng.uniform(0.78, 1.0), rng.uniform(vmin, vmax))
    a, strength = rng.uniform(0, 2 * math.pi), rng.uniform(0.06, 0.15)
    side = canvas.shape[-1]
    x0, y0 = max(int(cx - r) - 1, 0), max(int(cy - r) - 1, 0)
    x1, y1 = min(int(cx + r) + 2, side), min(int(cy + r) + 2, side)
    xx = np.arange(x0, x1, dtype=np.float32)[None, :] - cx
    yy = np.arange(y0, y1, dtype=np.float32)[:, None] - cy
    light = 1 + strength * np.clip((xx * math.cos(a) + yy * math.sin(a)) / r, -1, 1)
    sub = mask[y0:y1, x0:x1]
    light = light[sub]
    for i in range(3):
        canvas[i, y0:y1, x0:x1][sub] = np.minimum(light * rgb[i], 255)


def background_image(rng: np.random.Generator, kind: str, size: int) -> Image.Image:
    """A pale background of one of the ``BACKGROUND_CLASSES`` kinds, as an RGB image."""
    canvas = _background(rng, kind, size)
    return Image.merge("RGB", [Image.fromarray(c) for c in np.rint(canvas).astype(np.uint8)])


def shape_sprite(rng: np.random.Generator, shape: str, colour: str, side: int) -> Image.Image:
    """One shape of one ``COLOUR_CLASSES`` colour, drawn at twice ``side`` and downsampled, on a
    transparent RGBA square (for pasting among other objects)."""
    big = 2 * side
    r = big / 2 - 1
    mask = _shape_mask(shape, big, big / 2, big / 2, r, _rotation(rng, shape))
    canvas = np.zeros((3, big, big), dtype=np.float32)
    _paint(rng, canvas, mask, colour, big / 2, big / 2, r)
    rgba = np.dstack([np.rint(canvas).astype(np.uint8).transpose(1, 2, 0), mask.astype(np.uint8) * 255])
    return Image.fromarray(rgba, "RGBA").resize((side, side), Image.Resampling.LANCZOS)


def zipf_weights(n: int, exponent: float = 1.2) -> np.ndarray:
    """Probabilities proportional to 1 / rank**exponent (a long tail), summing to 1."""
    w = 1.0 / np.arange(1, n + 1) ** exponent
    return w / w.sum()


def generate_scene(
    rng: np.random.Generator,
    size: int = 128,
    classes: Sequence[ClassSpec] = DEMO_CLASSES,
    max_objects: int = 4,
    shape_p: Sequence[float] | None = None,
    colour_p: Sequence[float] | None = None,
) -> Scene:
    """Draw one scene using only the shape/background kinds in classes; label what was drawn.

    Objects always get a colour; the colour label (and the colour-shape pair's) is added only if
    that class is in classes. ``shape_p`` (over the shape classes in the order given) and
    ``colour_p`` (over red, green, blue, yellow, purple, orange) make some far more common than
    others; by default all are equally likely.
    """
    names = list(dict.fromkeys(c.name for c in classes))
    unknown = set(names) - SHAPE_NAMES - COLOUR_NAMES - BACKGROUND_NAMES - COMPOUND_NAMES
    if unknown:
        raise ValueError(f"unknown classes: {sorted(unknown)}")
    shapes = [n for n in names if n in SHAPE_NAMES]
    if not shapes:
        raise ValueError("classes must contain at least one shape class")
    if max_objects < 1 or size < 8:
        raise ValueError("need max_objects >= 1 and size >= 8")
    backgrounds = [n for n in _BACKGROUND_ORDER if n in names]

    side = 2 * size
    background = backgrounds[rng.integers(len(backgrounds))] if backgrounds else "plain background"
    canvas = _background(rng, background, side)
    labels = {background} if backgrounds else set()
    visible: list[np.ndarray] = []
    areas: list[int] = []
    for _ in range(rng.integers(1, max_objects + 1)):
        shape = shapes[rng.choice(len(shapes), p=shape_p) if shape_p is not None else rng.integers(len(shapes))]
        colour = _COLOUR_ORDER[
            rng.choice(len(_COLOUR_ORDER), p=colour_p) if colour_p is not None else rng.integers(len(_COLOUR_ORDER))
        ]
        placed = _place(rng, shape, side, visible, areas)
        if placed is None:
            continue
        mask, cx, cy, r = placed
        _paint(rng, canvas, mask, colour, cx, cy, r)
        for vis in visible:
            vis &= ~mask
        visible.append(mask.copy())
        areas.append(max(int(np.count_nonzero(mask)), 1))
        labels.add(shape)
        if colour in names:
            labels.add(colour)
        pair = f"{colour.split()[0]} {shape}"
        if pair in names:
            labels.add(pair)
    channels = [Image.fromarray(c) for c in np.rint(canvas).astype(np.uint8)]
    image = Image.merge("RGB", channels).resize((size, size), Image.Resampling.LANCZOS)
    return Scene(image, frozenset(labels))


def generate_collection(
    n: int,
    seed: int,
    out_dir: Path,
    size: int = 128,
    classes: Sequence[ClassSpec] = DEMO_CLASSES,
    fmt: str = "png",
    shape_p: Sequence[float] | None = None,
    colour_p: Sequence[float] | None = None,
    first_index: int = 0,
) -> list[tuple[str, frozenset[str]]]:
    """Write n scenes as scene_00000.<fmt>, ... into out_dir; deterministic per seed. Names start
    at ``first_index`` (so that processes with other seeds can write parts of one folder)."""
    fmt = fmt.lower()
    pil_format = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG"}.get(fmt)
    if pil_format is None:
        raise ValueError(f"unsupported image format {fmt!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows: list[tuple[str, frozenset[str]]] = []
    for i in range(first_index, first_index + n):
        scene = generate_scene(rng, size=size, classes=classes, shape_p=shape_p, colour_p=colour_p)
        filename = f"scene_{i:05d}.{fmt}"
        options = {"quality": 92} if pil_format == "JPEG" else {}
        scene.image.save(out_dir / filename, format=pil_format, **options)
        rows.append((filename, scene.labels))
    return rows


def write_labels_csv(rows: Iterable[tuple[str, Iterable[str]]], path: Path) -> None:
    """Write a `filename,labels` CSV with labels sorted and joined by '|'."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["filename", "labels"])
        for filename, labels in rows:
            writer.writerow([filename, "|".join(sorted(labels))])


def read_labels_csv(path: Path) -> list[tuple[str, frozenset[str]]]:
    """Read a CSV written by write_labels_csv."""
    with Path(path).open(newline="", encoding="utf-8") as f:
        return [
            (row["filename"], frozenset(label for label in row["labels"].split("|") if label))
            for row in csv.DictReader(f)
        ]
