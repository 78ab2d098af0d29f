"""The starter recipe's data: drawings that Debian ships with descriptions, and emoji.

Sources (installed by ``make starter-model``):
- ``tuxpaint-stamps-default``: about 1,000 drawings in category folders, most with a ``.txt``
  description whose first line is English;
- ``fonts-noto-color-emoji``: emoji rendered with Pillow, captioned from their Unicode names.

``build_corpus`` writes a ``filename,caption`` CSV of pictures (single drawings on varied
backgrounds, and composites of 2–3 drawings captioned with all their names) for ``pretrain``,
and keeps a part of each evaluation category out of it, for zero-shot evaluation.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import unicodedata
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

TUXPAINT_DIR = Path("/usr/share/tuxpaint/stamps")
EMOJI_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
SPRITE_SIZE = 112
STYLE_WORDS = {"cartoon", "filled", "outlined", "toys", "plastic", "uppercase", "lowercase", "english", "00_symbols"}

# Evaluation classes: a readable name and the stamp folders it covers (longest prefix wins).
EVAL_CATEGORIES: dict[str, tuple[str, ...]] = {
    "bird": ("animals/birds",),
    "fish": ("animals/fish",),
    "insect": ("animals/insects",),
    "mammal": ("animals/mammals",),
    "fruit": ("food/fruit",),
    "vegetable": ("food/vegetables",),
    "flower": ("plants/flowers",),
    "tree": ("plants/trees",),
    "house": ("town/houses",),
    "road sign": ("town/roadsigns",),
    "flag": ("town/flags",),
    "hat": ("clothes/hats",),
    "piece of clothing": ("clothes",),
    "tool": ("household/tools",),
    "electronic device": ("household/electronics",),
    "dish": ("household/dishes",),
    "musical instrument": ("hobbies/music",),
    "planet": ("space/planets",),
    "vehicle": ("vehicles",),
    "christmas decoration": ("seasonal/christmas",),
    "halloween decoration": ("seasonal/halloween",),
    "chess piece": ("symbols/chess",),
    "coin": ("symbols/money/us", "symbols/money/euro", "symbols/money/canadian", "symbols/money/japanese"),
    "letter": ("symbols/alphabets/english",),
    "body part": ("people/body_parts",),
}
CATEGORY_PROMPTS = ("a drawing of {}", "a picture of {}", "{}")  # filled with "a bird", "an insect"

# Emoji join the evaluation classes through Unicode's emoji subgroups (emoji-test.txt, from
# Debian's unicode-data); some subgroups only through names that contain a word.
EMOJI_TEST = Path("/usr/share/unicode/emoji/emoji-test.txt")
EMOJI_SUBGROUPS: dict[str, str] = {
    "animal-bird": "bird",
    "animal-bug": "insect",
    "animal-mammal": "mammal",
    "food-fruit": "fruit",
    "food-vegetable": "vegetable",
    "plant-flower": "flower",
    "tool": "tool",
    "computer": "electronic device",
    "phone": "electronic device",
    "dishware": "dish",
    "musical-instrument": "musical instrument",
    "transport-ground": "vehicle",
    "transport-air": "vehicle",
    "transport-water": "vehicle",
    "clothing": "piece of clothing",
    "body-parts": "body part",
}
EMOJI_NAME_WORDS: dict[tuple[str, str], str] = {  # (subgroup, word in the name) -> class
    ("animal-marine", "fish"): "fish",
    ("animal-marine", "shark"): "fish",
    ("plant-other", "tree"): "tree",
    ("place-building", "house"): "house",
    ("clothing", "hat"): "hat",
    ("clothing", "cap"): "hat",
    ("clothing", "helmet"): "hat",
    ("sky & weather", "planet"): "planet",
    ("game", "chess"): "chess piece",
    ("money", "coin"): "coin",
    ("event", "christmas"): "christmas decoration",
    ("event", "jack-o-lantern"): "halloween decoration",
    ("flag", "flag"): "flag",
}
NOT_VEHICLE_WORDS = (
    "station",
    "track",
    "stop",
    "light",
    "pump",
    "motorway",
    "drum",
    "wheel",
    "buoy",
    "anchor",
    "seat",
    "satellite",
    "parachute",
    "sign",
)


@dataclass(frozen=True)
class Drawing:
    """One source picture with what is known about it."""

    key: str  # stable id: stamp path relative to the stamps folder, or "emoji/U+XXXX"
    name: str
    description: str
    folder: str  # category folder ("animals/birds/cartoon"), "emoji" for emoji
    category: str | None  # evaluation class, if any


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("_", " ").replace("-", " ")).strip()


def _stamp_name(path: Path) -> str:
    return _clean(re.sub(r"[-_]?\d+$", "", path.stem)).lower()


def eval_category(folder: str) -> str | None:
    """The evaluation class of a stamp folder (longest matching prefix), if any."""
    best, best_len = None, -1
    for name, prefixes in EVAL_CATEGORIES.items():
        for prefix in prefixes:
            if (folder == prefix or folder.startswith(prefix + "/")) and len(prefix) > best_len:
                best, best_len = name, len(prefix)
    return best


def folder_words(folder: str) -> str:
    """Readable words of a category folder, without style words: 'animals/birds/cartoon' -> 'animals birds'."""
    return " ".join(_clean(p) for p in folder.split("/") if p not in STYLE_WORDS)


def _first_line(txt: Path) -> str:
    try:
        return txt.read_text(encoding="utf-8", errors="replace").splitlines()[0].strip()
    except (OSError, IndexError):
        return ""


def tuxpaint_drawings(root: Path = TUXPAINT_DIR) -> list[Drawing]:
    """Every PNG (and, with rsvg-convert, SVG) stamp with its description and folder."""
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in (".png", ".svg"):
            stem_key = str(path.with_suffix("").relative_to(root))
            if stem_key not in found or path.suffix.lower() == ".png":
                found[stem_key] = path
    out = []
    for _, path in sorted(found.items()):
        if path.suffix.lower() == ".svg" and not shutil.which("rsvg-convert"):
            continue
        folder = str(path.parent.relative_to(root))
        out.append(
            Drawing(
                str(path.relative_to(root)),
                _stamp_name(path),
                _first_line(path.with_suffix(".txt")),
                folder,
                eval_category(folder),
            )
        )
    return out


def emoji_subgroups(path: Path = EMOJI_TEST) -> dict[int, str]:
    """Code point -> Unicode emoji subgroup, for single-code-point emoji (empty without the file)."""
    out: dict[int, str] = {}
    subgroup = ""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return out
    for line in lines:
        if line.startswith("# subgroup:"):
            subgroup = line.split(":", 1)[1].strip()
        elif line and not line.startswith("#"):
            cps = [c for c in line.split(";")[0].split() if c != "FE0F"]
            if len(cps) == 1:
                out.setdefault(int(cps[0], 16), subgroup)
    return out


def emoji_category(subgroup: str, name: str) -> str | None:
    """The evaluation class of an emoji, from its subgroup and name, if any."""
    for (group, word), category in EMOJI_NAME_WORDS.items():
        if group == subgroup and word in name:
            return category
    category = EMOJI_SUBGROUPS.get(subgroup)
    if category == "vehicle" and any(w in name for w in NOT_VEHICLE_WORDS):
        return None
    return category


def emoji_drawings(font: Path = EMOJI_FONT, emoji_test: Path = EMOJI_TEST) -> list[Drawing]:
    """Single-codepoint emoji that the font draws, named from Unicode, with an evaluation class
    where their Unicode subgroup gives one."""
    ranges = [(0x1F300, 0x1FAFF), (0x2600, 0x27BF)]
    subgroups = emoji_subgroups(emoji_test)
    pil_font = ImageFont.truetype(str(font), 109)
    out = []
    for lo, hi in ranges:
        for cp in range(lo, hi + 1):
            try:
                name = unicodedata.name(chr(cp)).lower()
            except ValueError:
                continue
            if _render_emoji(chr(cp), pil_font).getbbox() is None:
                continue
            out.append(Drawing(f"emoji/U+{cp:04X}", name, "", "emoji", emoji_category(subgroups.get(cp, ""), name)))
    return out


def _render_emoji(ch: str, font: ImageFont.FreeTypeFont) -> Image.Image:
    im = Image.new("RGBA", (136, 128), (0, 0, 0, 0))
    ImageDraw.Draw(im).text((0, 0), ch, font=font, embedded_color=True)
    return im


def load_sprite(d: Drawing, root: Path = TUXPAINT_DIR, font: Path = EMOJI_FONT) -> Image.Image:
    """The drawing as an RGBA image cropped to its content and fitted in SPRITE_SIZE."""
    if d.key.startswith("emoji/"):
        im = _render_emoji(chr(int(d.key.split("U+")[1], 16)), ImageFont.truetype(str(font), 109))
    elif d.key.endswith(".svg"):
        png = subprocess.run(
            ["rsvg-convert", "-w", str(2 * SPRITE_SIZE), str(root / d.key)], capture_output=True, check=True
        ).stdout

        im = Image.open(BytesIO(png)).convert("RGBA")
    else:
        with Image.open(root / d.key) as src:
            im = src.convert("RGBA")
    box = im.getchannel("A").getbbox() or (0, 0, im.width, im.height)
    im = im.crop(box)
    im.thumbnail((SPRITE_SIZE, SPRITE_SIZE), Image.LANCZOS)
    return im


def split_held_out(drawings: Sequence[Drawing], fraction: float = 0.25, seed: int = 0) -> tuple[list, list]:
    """(training, held-out): a part of each evaluation class's Tux Paint drawings is kept out
    (classes with at least 4 drawings keep out at least one); emoji and other drawings all train."""
    rng = np.random.default_rng(seed)
    by_cat: dict[str, list[Drawing]] = {}
    for d in drawings:
        if d.category and d.folder != "emoji":
            by_cat.setdefault(d.category, []).append(d)
    held: set[str] = set()
    for items in by_cat.values():
        if len(items) >= 4:
            k = max(1, int(round(fraction * len(items))))
            held.update(items[i].key for i in rng.choice(len(items), size=k, replace=False))
    return [d for d in drawings if d.key not in held], [d for d in drawings if d.key in held]


def article(word: str) -> str:
    """ "a" or "an", by the first letter."""
    return "an" if word[:1] in "aeiou" else "a"


def captions_for(d: Drawing) -> list[str]:
    """A few caption templates from the drawing's name, description and category folder."""
    if d.folder == "emoji":
        caps = [f"an emoji of {d.name}", d.name, f"a picture of {d.name}"]
        if d.category:
            c = d.category
            caps += [f"{d.name}, a kind of {c}", f"an emoji of {article(c)} {c}"]
        return caps
    caps = [f"a drawing of {article(d.name)} {d.name}", f"{article(d.name)} {d.name}"]
    if d.description:
        caps.append(d.description)
    words = folder_words(d.folder)
    if words:
        caps.append(f"{article(d.name)} {d.name}, {words}")
    if d.category:
        c = d.category
        caps += [
            f"{article(d.name)} {d.name}, a kind of {c}",
            f"a drawing of {article(c)} {c}",
            f"{article(c)} {c}: {article(d.name)} {d.name}",
        ]
    return caps


def background(rng: np.random.Generator, size: int) -> Image.Image:
    """A light plain, gradient or paper-like background."""
    base = rng.uniform(200, 255, size=3)
    kind = rng.integers(0, 3)
    if kind == 0:
        arr = np.broadcast_to(base, (size, size, 3)).copy()
    elif kind == 1:
        other = rng.uniform(170, 255, size=3)
        t = np.linspace(0, 1, size)[:, None, None]
        arr = base * (1 - t) + other * t
        arr = np.broadcast_to(arr, (size, size, 3)).copy()
    else:
        arr = base + rng.normal(0, 6, size=(size, size, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def compose(sprites: Sequence[Image.Image], rng: np.random.Generator, size: int = 128) -> Image.Image:
    """Paste 1–3 sprites on a background, scaled so that they share the picture."""
    canvas = background(rng, size)
    n = len(sprites)
    scale_range = {1: (0.55, 0.9), 2: (0.38, 0.55), 3: (0.32, 0.45)}.get(n, (0.3, 0.4))
    slots = rng.permutation([(0, 0), (1, 0), (0, 1), (1, 1)])[:n] if n > 1 else [(0.5, 0.5)]
    for sprite, (sx, sy) in zip(sprites, slots):
        side = int(size * rng.uniform(*scale_range))
        im = sprite.copy()
        im.thumbnail((side, side), Image.LANCZOS)
        cell = size / 2 if n > 1 else size
        x0 = int(sx * cell + rng.uniform(0, max(1, cell - im.width))) if n > 1 else int(rng.uniform(0, size - im.width))
        y0 = (
            int(sy * cell + rng.uniform(0, max(1, cell - im.height)))
            if n > 1
            else int(rng.uniform(0, size - im.height))
        )
        canvas.paste(im, (min(x0, size - im.width), min(y0, size - im.height)), im)
    return canvas


def _join_names(names: Sequence[str]) -> str:
    phrases = [f"{article(n)} {n}" for n in names]
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def partial_captions(picks: Sequence[Drawing]) -> list[str]:
    """True but incomplete captions of a composite: each drawing alone, by name and by class.
    A class is then learnt as something a picture contains, which is how a multi-label prompt
    ("a drawing of a bird") is scored against a picture of several things."""
    caps = [f"a drawing of {article(d.name)} {d.name}" for d in picks]
    caps += [f"a drawing of {article(d.category)} {d.category}" for d in picks if d.category]
    return list(dict.fromkeys(caps))


def all_drawings(root: Path = TUXPAINT_DIR, font: Path = EMOJI_FONT) -> list[Drawing]:
    """Tux Paint stamps and emoji found on this machine; a clear error when there are none."""
    drawings = tuxpaint_drawings(root) if root.is_dir() else []
    if font.exists():
        drawings += emoji_drawings(font)
    if not drawings:
        raise FileNotFoundError(
            f"no drawings found in {root}: install tuxpaint-stamps-default "
            "(and fonts-noto-color-emoji), e.g. with `make starter-model`"
        )
    return drawings


def build_corpus(
    out_dir: Path,
    seed: int = 0,
    variants: int = 2,
    composites: int = 4000,
    size: int = 128,
    root: Path = TUXPAINT_DIR,
    font: Path = EMOJI_FONT,
    sprites: dict[str, Image.Image] | None = None,
    drawings: Sequence[Drawing] | None = None,
) -> dict:
    """Write the pretraining corpus and the held-out drawings list; returns a summary.

    ``drawings`` and their ``sprites`` (by key) may be given, e.g. from a sprite pack made on
    another machine; by default they are read from ``root`` and ``font``."""
    out_dir = Path(out_dir)
    img_dir = out_dir / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    drawings = list(drawings) if drawings is not None else all_drawings(root, font)
    train, held = split_held_out(drawings, seed=seed)
    rng = np.random.default_rng(seed)
    sprites = sprites if sprites is not None else {d.key: load_sprite(d, root, font) for d in train}
    rows: list[tuple[str, str]] = []
    for k, d in enumerate(train):
        for v in range(variants):
            name = f"single_{k:05d}_{v}.png"
            compose([sprites[d.key]], rng, size).save(img_dir / name, optimize=False)
            rows += [(f"images/{name}", c) for c in captions_for(d)]
    for k in range(composites):
        n = int(rng.integers(2, 4))
        picks = [train[i] for i in rng.choice(len(train), size=n, replace=False)]
        name = f"multi_{k:05d}.png"
        compose([sprites[d.key] for d in picks], rng, size).save(img_dir / name, optimize=False)
        names = [d.name for d in picks]
        rows += [(f"images/{name}", f"a drawing of {_join_names(names)}"), (f"images/{name}", _join_names(names))]
        cats = list(dict.fromkeys(d.category or d.name for d in picks))
        rows.append((f"images/{name}", f"a drawing of {_join_names(cats)}"))
        rows += [(f"images/{name}", c) for c in partial_captions(picks)]
    with open(out_dir / "captions.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["filename", "caption"])
        writer.writerows(rows)
    (out_dir / "held_out.json").write_text(
        json.dumps({"root": str(root), "font": str(font), "drawings": [asdict(d) for d in held]}, indent=1)
    )
    summary = {
        "drawings": len(drawings),
        "training_drawings": len(train),
        "held_out_drawings": len(held),
        "pictures": len(train) * variants + composites,
        "captions": len(rows),
        "emoji": sum(d.folder == "emoji" for d in drawings),
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def load_held_out(corpus_dir: Path) -> tuple[list[Drawing], Path, Path]:
    """(held-out drawings, stamps folder, emoji font) recorded by build_corpus."""
    data = json.loads((Path(corpus_dir) / "held_out.json").read_text())
    return [Drawing(**d) for d in data["drawings"]], Path(data["root"]), Path(data["font"])


def held_out_scenes(
    held: Sequence[Drawing],
    n: int,
    seed: int,
    out_dir: Path,
    size: int = 128,
    max_objects: int = 3,
    root: Path = TUXPAINT_DIR,
    font: Path = EMOJI_FONT,
    sprites: dict[str, Image.Image] | None = None,
) -> list[tuple[str, frozenset[str]]]:
    """Multi-label test pictures composed of held-out drawings of 1..max_objects distinct classes."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    by_cat: dict[str, list[Drawing]] = {}
    for d in held:
        if d.category:
            by_cat.setdefault(d.category, []).append(d)
    cats = sorted(by_cat)
    max_objects = min(max_objects, len(cats))
    cache: dict[str, Image.Image] = dict(sprites or {})
    rows = []
    for k in range(n):
        m = int(rng.integers(1, max_objects + 1))
        chosen = [cats[i] for i in rng.choice(len(cats), size=m, replace=False)]
        picks = [by_cat[c][int(rng.integers(len(by_cat[c])))] for c in chosen]
        sprites = [
            cache[d.key] if d.key in cache else cache.setdefault(d.key, load_sprite(d, root, font)) for d in picks
        ]
        name = f"heldout_{k:05d}.png"
        compose(sprites, rng, size).save(out_dir / name)
        rows.append((name, frozenset(chosen)))
    return rows


def category_prompts(classes: list[str]) -> list[list[str]]:
    """The prompt ensemble of each evaluation class: "a drawing of an insect", ..."""
    return [[t.format(f"{article(c)} {c}") for t in CATEGORY_PROMPTS] for c in classes]
