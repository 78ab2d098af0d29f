"""Class definitions: names, prompts, descriptions."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from db.models import Annotation, ClassPrompt, LabelClass
from mumic_core.errors import ClassError
from mumic_core.store.auth import audit, requires
from mumic_core.store.collection import record_labels
from mumic_core.store.csv_rows import read_csv_rows
from mumic_core.store.studio import Studio

MAX_NAME_LENGTH = 80
MAX_PROMPT_LENGTH = 300
_NAME_FORBIDDEN = "<>|`"


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
    bad = sorted(set(shown) & set(_NAME_FORBIDDEN))
    if bad:
        raise ClassError(f"class name may not contain {' '.join(bad)} (markup, or the label separator |)")
    return shown


def clean_description(text: str) -> str:
    """A class's description: stripped; line breaks and tabs allowed, no other control character."""
    text = (text or "").strip()
    if any(unicodedata.category(ch) == "Cc" and ch not in "\n\r\t" for ch in text):
        raise ClassError("description contains control characters")
    return text


def clean_prompts(name: str, prompts: Iterable[str]) -> list[str]:
    """Strip, drop blanks and duplicates; default to a CLIP-style prompt from the name."""
    out: list[str] = []
    for p in prompts:
        p = re.sub(r"\s+", " ", p or "").strip()
        if any(unicodedata.category(ch) == "Cc" for ch in p):
            raise ClassError("prompt contains control characters")
        if len(p) > MAX_PROMPT_LENGTH:
            raise ClassError(f"prompt is longer than {MAX_PROMPT_LENGTH} characters: {p[:40]}...")
        if p and p not in out:
            out.append(p)
    return out or [f"a photo of a {name}"]


@dataclass(frozen=True)
class ClassInfo:
    """A class as pages and the pipeline see it (not a database row)."""

    id: int
    name: str
    normalized_name: str
    description: str
    active: bool
    prompt_texts: list[str]

    @classmethod
    def of(cls, row: LabelClass) -> ClassInfo:
        return cls(
            row.id, row.name, row.normalized_name, row.description or "", bool(row.active), list(row.prompt_texts)
        )


@requires("classes")
def add_class(studio: Studio, name: str, prompts: Sequence[str] = (), description: str = "") -> ClassInfo:
    """Create a class; refuses empty, over-long and duplicate (up to case and spaces) names."""
    shown = clean_name(name)
    key = normalize_name(shown)
    texts = clean_prompts(shown, prompts)
    with studio.write() as s:
        existing = s.scalar(select(LabelClass).where(LabelClass.normalized_name == key))
        if existing is not None:
            raise ClassError(f"a class named '{existing.name}' already exists")
        cls = LabelClass(name=shown, normalized_name=key, description=clean_description(description))
        cls.prompts = [ClassPrompt(position=i, text=t) for i, t in enumerate(texts)]
        s.add(cls)
        audit(s, studio, "add_class", name=shown, prompts=texts)
        s.flush()
        s.refresh(cls)
        return ClassInfo.of(cls)


def list_classes(studio: Studio, active_only: bool = True) -> list[ClassInfo]:
    """Every class (or the active ones), by id."""
    with studio.read() as s:
        q = select(LabelClass).order_by(LabelClass.id)
        if active_only:
            q = q.where(LabelClass.active.is_(True))
        return [ClassInfo.of(row) for row in s.scalars(q)]


def read_class_csv(path: Path) -> tuple[dict[str, list[str]], list[str]]:
    """``name,prompt`` rows (a name may repeat, one prompt per row) -> ({name: prompts},
    'line N: reason' for rows that cannot be read)."""
    try:
        parsed = read_csv_rows(path, ["name"], ["prompt", "description"])
    except ValueError as exc:
        raise ClassError(f"{Path(path).name}: {exc}") from None
    grouped: dict[str, list[str]] = {}
    errors = list(parsed.errors)
    for line, row in parsed.rows:
        name = row["name"].strip()
        if name:
            grouped.setdefault(name, []).append(row.get("prompt", ""))
        else:
            errors.append(f"line {line}: no class name")
    return grouped, sorted(errors, key=lambda e: int(e.split()[1].rstrip(":")))


@requires("classes")
def import_class_csv(studio: Studio, path: Path) -> tuple[list[str], list[str]]:
    """Add every class in a CSV; returns (added names, reasons for refused rows and classes)."""
    grouped, refused = read_class_csv(path)
    added = []
    for name, prompts in grouped.items():
        try:
            added.append(add_class(studio, name, prompts).name)
        except ClassError as exc:
            refused.append(f"{name}: {exc}")
    return added, refused


def _get(s, class_id: int) -> LabelClass:
    cls = s.get(LabelClass, class_id)
    if cls is None:
        raise ClassError(f"no class with id {class_id}")
    return cls


@requires("classes")
def rename_class(studio: Studio, class_id: int, new_name: str) -> ClassInfo:
    """Rename; refused when another class has the same name up to case and spaces."""
    shown = clean_name(new_name)
    key = normalize_name(shown)
    with studio.write() as s:
        cls = _get(s, class_id)
        clash = s.scalar(select(LabelClass).where(LabelClass.normalized_name == key, LabelClass.id != class_id))
        if clash is not None:
            raise ClassError(f"a class named '{clash.name}' already exists")
        audit(s, studio, "rename_class", class_id=class_id, old=cls.name, new=shown)
        cls.name, cls.normalized_name = shown, key
        return ClassInfo.of(cls)


@requires("classes")
def set_prompts(studio: Studio, class_id: int, prompts: Sequence[str], description: str | None = None) -> ClassInfo:
    """Replace a class's prompts (and optionally its description)."""
    with studio.write() as s:
        cls = _get(s, class_id)
        texts = clean_prompts(cls.name, prompts)
        cls.prompts = [ClassPrompt(position=i, text=t) for i, t in enumerate(texts)]
        if description is not None:
            cls.description = clean_description(description)
        audit(s, studio, "set_prompts", class_id=class_id, prompts=texts)
        s.flush()
        s.refresh(cls)
        return ClassInfo.of(cls)


@requires("classes")
def set_active(studio: Studio, class_id: int, active: bool) -> None:
    """Deactivate (hide from suggestions and training) or reactivate; labels are kept."""
    with studio.write() as s:
        _get(s, class_id).active = active
        audit(s, studio, "activate_class" if active else "deactivate_class", class_id=class_id)


@requires("classes")
def merge_classes(studio: Studio, source_id: int, target_id: int, annotator: str) -> int:
    """Fold ``source`` into ``target``: each image's current label of the source is recorded on the
    target (a positive wins over a negative, a human label over an assumed negative), then the
    source is deactivated. Nothing is deleted:
    the source's history stays, and the new rows say they come from a merge. The target must be
    active (labels merged into a hidden class would leave review and training); the source may
    already be inactive (folding a retired class into another). Returns rows added."""
    if source_id == target_id:
        raise ClassError("cannot merge a class into itself")
    with studio.read() as s:
        source, target = _get(s, source_id), _get(s, target_id)
        if not target.active:
            raise ClassError(f"cannot merge into '{target.name}': '{target.name}' is inactive; reactivate it first")
        rows = s.execute(
            select(Annotation.image_id, Annotation.class_id, Annotation.positive, Annotation.assumed).where(
                Annotation.class_id.in_([source_id, target_id]), Annotation.is_current.is_(True)
            )
        ).all()
    source_labels = {i: p for i, c, p, a in rows if c == source_id and not a}
    source_assumed = {i for i, c, p, a in rows if c == source_id and a}
    target_labels = {i: p for i, c, p, a in rows if c == target_id and not a}
    labels = {
        i: {target_id: p or target_labels.get(i, False)}
        for i, p in source_labels.items()
        if target_labels.get(i) is not True
    }
    assumed = {i: [target_id] for i in source_assumed}  # kept only where the target has no label
    added = record_labels(studio, labels, annotator, source="merge", assumed=assumed)[1] if labels or assumed else 0
    with studio.write() as s:
        _get(s, source_id).active = False
        audit(
            s,
            studio,
            "merge_classes",
            source=source.name,
            target=target.name,
            source_id=source_id,
            target_id=target_id,
            labels_added=added,
        )
    return added


def active_classes(studio: Studio) -> list[ClassInfo]:
    """The active classes, by id."""
    return list_classes(studio, active_only=True)
