"""Class definitions: names, prompts, descriptions."""

from __future__ import annotations

import csv
import re
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path

from sqlalchemy import select

from db.models import ClassPrompt, LabelClass

from .errors import ClassError
from .studio import Studio

MAX_NAME_LENGTH = 80
MAX_PROMPT_LENGTH = 300


def normalize_name(name: str) -> str:
    """Case- and space-insensitive key: 'Red  Object ' -> 'red object'."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", name)).strip().casefold()


def clean_name(name: str) -> str:
    """Validate a display name; raise ClassError with a clear message."""
    shown = re.sub(r"\s+", " ", unicodedata.normalize("NFKC", name or "")).strip()
    if not shown:
        raise ClassError("class name is empty")
    if len(shown) > MAX_NAME_LENGTH:
        raise ClassError(f"class name is {len(shown)} characters long; the limit is {MAX_NAME_LENGTH}")
    if any(unicodedata.category(ch).startswith("C") for ch in shown):
        raise ClassError("class name contains control characters")
    return shown


def clean_prompts(name: str, prompts: Iterable[str]) -> list[str]:
    """Strip, drop blanks and duplicates; default to a CLIP-style prompt from the name."""
    out: list[str] = []
    for p in prompts:
        p = re.sub(r"\s+", " ", p or "").strip()
        if len(p) > MAX_PROMPT_LENGTH:
            raise ClassError(f"prompt is longer than {MAX_PROMPT_LENGTH} characters: {p[:40]}...")
        if p and p not in out:
            out.append(p)
    return out or [f"a photo of a {name}"]


def add_class(studio: Studio, name: str, prompts: Sequence[str] = (), description: str = "") -> LabelClass:
    """Create a class; refuses empty, over-long and duplicate (up to case and spaces) names."""
    shown = clean_name(name)
    key = normalize_name(shown)
    texts = clean_prompts(shown, prompts)
    with studio.write() as s:
        existing = s.scalar(select(LabelClass).where(LabelClass.normalized_name == key))
        if existing is not None:
            raise ClassError(f"a class named '{existing.name}' already exists")
        cls = LabelClass(name=shown, normalized_name=key, description=description.strip())
        cls.prompts = [ClassPrompt(position=i, text=t) for i, t in enumerate(texts)]
        s.add(cls)
        s.flush()
        s.refresh(cls)
        return cls


def list_classes(studio: Studio, active_only: bool = True) -> list[LabelClass]:
    with studio.read() as s:
        q = select(LabelClass).order_by(LabelClass.id)
        if active_only:
            q = q.where(LabelClass.active.is_(True))
        return list(s.scalars(q))


def read_class_csv(path: Path) -> dict[str, list[str]]:
    """``name,prompt`` rows (a name may repeat, one prompt per row) -> {name: prompts}."""
    grouped: dict[str, list[str]] = {}
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "name" not in reader.fieldnames:
            raise ClassError(f"{path}: expected a header 'name,prompt'")
        for row in reader:
            name = (row.get("name") or "").strip()
            if name:
                grouped.setdefault(name, []).append((row.get("prompt") or "").strip())
    return grouped


def import_class_csv(studio: Studio, path: Path) -> tuple[list[str], list[str]]:
    """Add every class in a CSV; returns (added names, 'name: reason' for refused ones)."""
    added, refused = [], []
    for name, prompts in read_class_csv(path).items():
        try:
            added.append(add_class(studio, name, prompts).name)
        except ClassError as exc:
            refused.append(f"{name}: {exc}")
    return added, refused
