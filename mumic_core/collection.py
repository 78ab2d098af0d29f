"""Images and human labels: import, annotate, export."""

from __future__ import annotations

import csv
import getpass
import io
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select, update

from db.models import Annotation, Image, LabelClass, Submission, utcnow

from .auth import PermissionDenied, audit, requires
from .classes import normalize_name
from .csv_rows import read_csv_rows
from .errors import StaleView
from .images import ImageRejected, ImportReport, iter_image_files, validate_file, validate_image
from .studio import Studio

VAL_FRACTION = 0.2
_BATCH = 64


def default_annotator() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user database in some containers
        return "unknown"


def split_for(sha256: str, val_fraction: float = VAL_FRACTION) -> str:
    """Fixed train/val assignment from the content hash, identical across model versions."""
    return "val" if int(sha256[:8], 16) / 2**32 < val_fraction else "train"


@requires("import")
def import_files(studio: Studio, files: Iterable[tuple[str, Path | bytes]],
                 progress: Callable[[int], None] | None = None) -> ImportReport:
    """Validate, store and register images; bad files are reported one by one, never fatal."""
    report = ImportReport()
    settings = studio.settings
    pending: list[Image] = []
    seen: dict[str, str] = {}
    for name, source in files:
        if progress:
            progress(1)
        limits = {"max_pixels": settings.max_image_pixels, "max_bytes": settings.max_image_bytes}
        try:
            if isinstance(source, Path):
                data, info = validate_file(source, **limits)
            else:
                data, info = source, validate_image(source, **limits)
        except ImageRejected as exc:
            report.rejected.append((name, exc.reason))
            continue
        if info.sha256 in seen:
            report.duplicates.append((name, f"same content as {seen[info.sha256]}"))
            continue
        seen[info.sha256] = name
        relpath = studio.store.put(data, info)
        pending.append(
            Image(sha256=info.sha256, original_name=name, relpath=relpath, width=info.width,
                  height=info.height, format=info.format, split=split_for(info.sha256))
        )
        if len(pending) >= _BATCH:
            _register(studio, pending, report)
            pending = []
    _register(studio, pending, report)
    return report


def _register(studio: Studio, images: list[Image], report: ImportReport) -> None:
    if not images:
        return
    with studio.write() as s:
        shas = [im.sha256 for im in images]
        known = dict(s.execute(select(Image.sha256, Image.original_name).where(Image.sha256.in_(shas))).all())
        for im in images:
            if im.sha256 in known:
                report.duplicates.append((im.original_name, f"already in the collection as {known[im.sha256]}"))
            else:
                s.add(im)
                report.added.append(im.original_name)
        audit(s, studio, "import_images", added=sum(im.sha256 not in known for im in images))


@requires("import")
def import_folder(studio: Studio, folder: Path, progress: Callable[[int], None] | None = None) -> ImportReport:
    """Import every file below ``folder``; names are kept relative to it. A signed-in person
    may import only below the import root (MUMIC_IMPORT_ROOT); the command line anywhere."""
    folder = Path(folder)
    if not studio.actor.system:
        root = studio.settings.import_root
        real = folder.expanduser().resolve()
        if root is None or not real.is_relative_to(root):
            raise PermissionDenied(f"only folders below {root} can be imported from the browser "
                                   "(set MUMIC_IMPORT_ROOT, or use `python -m mumic_core import FOLDER`)")
        folder = real
    if not folder.is_dir():
        raise FileNotFoundError(f"not a folder: {folder}")
    return import_files(studio, ((p.relative_to(folder).as_posix(), p) for p in iter_image_files(folder)), progress)


@requires("review", acting_as="annotator")
def record_labels(
    studio: Studio,
    labels_by_image: Mapping[int, Mapping[int, bool]],
    annotator: str,
    source: str = "review",
    suggested: Mapping[int, Mapping[int, float]] | None = None,
    seen: Mapping[int, Mapping[int, bool]] | None = None,
) -> tuple[int, int]:
    """Record positives/negatives for several images as one submission (the unit of undo).

    ``seen`` holds each image's current labels as the person saw them: when another person
    changed them since, nothing is recorded and StaleView says who and when.

    Returns (submission id, number of new annotation rows). A statement that differs from the
    current one supersedes it (the old row stays, marked not current); an identical one adds
    nothing. One short write transaction: on SQLite the write lock is taken before the first
    read (BEGIN IMMEDIATE), on PostgreSQL the images' rows are locked FOR UPDATE, so concurrent
    writers never lose an update.
    """
    added = 0
    with studio.write() as s:
        # PostgreSQL: lock the images' rows first, in id order, so that two submissions to one image
        # run one after the other, as SQLite's write lock makes them (a no-op there)
        s.execute(select(Image.id).where(Image.id.in_(sorted(int(i) for i in labels_by_image)))
                  .order_by(Image.id).with_for_update())
        if seen is not None:
            _refuse_stale(s, annotator, {i: seen.get(i, {}) for i in labels_by_image})
        submission = Submission(annotator=annotator, image_ids=[int(i) for i in labels_by_image])
        s.add(submission)
        s.flush()
        for image_id, labels in labels_by_image.items():
            if s.get(Image, image_id) is None:
                raise KeyError(f"no image with id {image_id}")
            current = {
                a.class_id: a
                for a in s.scalars(
                    select(Annotation)
                    .where(Annotation.image_id == image_id, Annotation.is_current.is_(True),
                           Annotation.class_id.in_(list(labels)))
                    .with_for_update()
                )
            }
            shown = (suggested or {}).get(image_id, {})
            for class_id, positive in labels.items():
                old = current.get(class_id)
                confirms = source == "second_review" and old is not None and old.annotator != annotator
                if old is not None and old.positive == bool(positive) and not confirms:
                    continue
                if old is not None:
                    old.is_current = False
                    s.flush()
                s.add(Annotation(image_id=image_id, class_id=class_id, positive=bool(positive),
                                 annotator=annotator, source=source, supersedes_id=old.id if old else None,
                                 submission_id=submission.id, suggested_score=shown.get(class_id)))
                added += 1
            s.execute(
                update(Image).where(Image.id == image_id)
                .values(review_count=Image.review_count + 1, reviewed_at=utcnow())
            )
        return submission.id, added


def _refuse_stale(s, annotator: str, seen: Mapping[int, Mapping[int, bool]]) -> None:
    """StaleView when another person's current labels differ from what ``annotator`` saw (inside
    the write transaction, so nobody can slip in between the check and the write)."""
    rows = s.execute(select(Annotation.image_id, Annotation.class_id, Annotation.positive, Annotation.annotator,
                            Annotation.created_at)
                     .where(Annotation.image_id.in_(list(seen)), Annotation.is_current.is_(True))).all()
    now: dict[int, dict[int, tuple]] = {i: {} for i in seen}
    for image_id, class_id, positive, who, when in rows:
        now[image_id][class_id] = (positive, who, when)
    stale: dict[int, tuple[str, object]] = {}
    for image_id, before in seen.items():
        for class_id in set(before) | set(now[image_id]):
            current = now[image_id].get(class_id)
            if (current[0] if current else None) == before.get(class_id):
                continue
            if current is None:  # an undo took a label back
                stale.setdefault(image_id, ("someone", None))
            elif current[1] != annotator:
                stale[image_id] = (current[1], current[2])
    if stale:
        names = dict(s.execute(select(Image.id, Image.original_name).where(Image.id.in_(list(stale)))).all())
        parts = [f"{names.get(i, i)} (by {who}{' at ' + when.strftime('%H:%M:%S') if when else ''})"
                 for i, (who, when) in sorted(stale.items())]
        raise StaleView("changed by someone else after you opened it, so nothing was saved: " + "; ".join(parts)
                        + ". Their labels are shown now; check and submit again.", sorted(stale))


@requires("review", acting_as="annotator")
def annotate(studio: Studio, image_id: int, labels: Mapping[int, bool], annotator: str,
             source: str = "review") -> int:
    """Record labels for one image; returns the number of new annotation rows."""
    return record_labels(studio, {image_id: labels}, annotator, source)[1]


@requires("review", acting_as="annotator")
def undo_last_submission(studio: Studio, annotator: str) -> int | None:
    """Undo this person's most recent submission that is not undone yet; returns its id.

    Its rows stop being current and the rows they superseded become current again, unless
    someone changed that label since (their later statement stands). Nothing is deleted.
    """
    with studio.write() as s:
        sub = s.scalar(select(Submission).where(Submission.annotator == annotator, Submission.undone_at.is_(None))
                       .order_by(Submission.id.desc()).limit(1).with_for_update())
        if sub is None:
            return None
        s.execute(select(Image.id).where(Image.id.in_(sorted(int(i) for i in sub.image_ids)))
                  .order_by(Image.id).with_for_update())  # as record_labels does (PostgreSQL)
        rows = list(s.scalars(select(Annotation).where(Annotation.submission_id == sub.id)))
        for row in rows:
            if not row.is_current:
                continue
            row.is_current = False
            s.flush()
            if row.supersedes_id is not None:
                s.execute(update(Annotation).where(Annotation.id == row.supersedes_id).values(is_current=True))
        images = set(sub.image_ids)
        if images:
            s.execute(update(Image).where(Image.id.in_(images), Image.review_count > 0)
                      .values(review_count=Image.review_count - 1))
        sub.undone_at = utcnow()
        return sub.id


@dataclass
class LabelImportReport:
    images_labelled: int
    errors: list[str]


@requires("import")
def import_labels_csv(
    studio: Studio, path: Path, annotator: str, complete: bool = False, source: str = "import"
) -> LabelImportReport:
    """``filename,labels`` (labels joined by '|') -> positive annotations.

    With ``complete``, every other active class becomes a negative for that image. Rows with
    unknown files or classes are reported by line number; the others are imported.
    """
    with studio.read() as s:
        images = s.execute(select(Image.id, Image.original_name)).all()
        classes = {c.normalized_name: c.id for c in s.scalars(select(LabelClass).where(LabelClass.active.is_(True)))}
    by_name: dict[str, int] = {}
    for image_id, name in images:
        by_name[name] = image_id
        by_name.setdefault(Path(name).name, image_id)
    try:
        parsed = read_csv_rows(path, ["filename", "labels"])
    except ValueError as exc:
        raise ValueError(f"{Path(path).name}: {exc}") from None
    errors = list(parsed.errors)
    done = 0
    for line, row in parsed.rows:
        image_id = by_name.get(row["filename"])
        if image_id is None:
            errors.append(f"line {line}: unknown image {row['filename'][:200]!r}")
            continue
        names = [n for n in row["labels"].split("|") if n.strip()]
        unknown = [n for n in names if normalize_name(n) not in classes]
        if unknown:
            errors.append(f"line {line}: unknown class {', '.join(repr(n[:100]) for n in unknown[:5])}")
            continue
        positives = {classes[normalize_name(n)] for n in names}
        labels = {cid: True for cid in positives}
        if complete:
            labels.update({cid: False for cid in classes.values() if cid not in positives})
        annotate(studio, image_id, labels, annotator, source=source)
        done += 1
    errors.sort(key=lambda e: int(e.split()[1].rstrip(":")))
    return LabelImportReport(done, errors)


def current_labels(studio: Studio) -> list[tuple[int, int, bool]]:
    """(image_id, class_id, positive) for every current annotation."""
    with studio.read() as s:
        return [tuple(r) for r in s.execute(
            select(Annotation.image_id, Annotation.class_id, Annotation.positive)
            .where(Annotation.is_current.is_(True))
        ).all()]


def collection_counts(studio: Studio) -> dict[str, int]:
    """Images, reviewed images, active classes, current annotations."""
    with studio.read() as s:
        return {
            "images": s.scalar(select(func.count(Image.id))) or 0,
            "reviewed": s.scalar(select(func.count(Image.id)).where(Image.review_count > 0)) or 0,
            "classes": s.scalar(select(func.count(LabelClass.id)).where(LabelClass.active.is_(True))) or 0,
            "annotations": s.scalar(select(func.count(Annotation.id)).where(Annotation.is_current.is_(True))) or 0,
        }


@requires("export")
def export_labels(studio: Studio, fmt: str) -> str:
    """Current human labels as CSV, JSON or COCO-style JSON (image-level categories)."""
    with studio.read() as s:
        images = list(s.scalars(select(Image).order_by(Image.id)))
        classes = {c.id: c.name for c in s.scalars(select(LabelClass).order_by(LabelClass.id))}
    pos: dict[int, list[int]] = {}
    neg: dict[int, list[int]] = {}
    for image_id, class_id, positive in current_labels(studio):
        (pos if positive else neg).setdefault(image_id, []).append(class_id)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["filename", "labels"])
        for im in images:
            writer.writerow([im.original_name, "|".join(sorted(classes[c] for c in pos.get(im.id, [])))])
        return buf.getvalue()
    if fmt == "json":
        return json.dumps([
            {"filename": im.original_name, "sha256": im.sha256,
             "positives": sorted(classes[c] for c in pos.get(im.id, [])),
             "negatives": sorted(classes[c] for c in neg.get(im.id, []))}
            for im in images
        ], indent=1)
    if fmt == "coco":
        anns = [
            {"id": i, "image_id": image_id, "category_id": class_id}
            for i, (image_id, class_id) in enumerate(
                ((im.id, c) for im in images for c in sorted(pos.get(im.id, []))), start=1)
        ]
        return json.dumps({
            "info": {"description": "MuMIC Studio image-level labels"},
            "images": [{"id": im.id, "file_name": im.original_name, "width": im.width, "height": im.height}
                       for im in images],
            "categories": [{"id": cid, "name": name} for cid, name in classes.items()],
            "annotations": anns,
        }, indent=1)
    raise ValueError(f"unknown export format {fmt!r}; use csv, json or coco")


def class_counts(studio: Studio, version_id: int | None, threshold: float = 0.5) -> list[dict]:
    """Per active class: prompts, human positives and negatives, predicted positives >= threshold."""
    from db.models import Prediction

    with studio.read() as s:
        classes = list(s.scalars(select(LabelClass).where(LabelClass.active.is_(True)).order_by(LabelClass.id)))
        human = s.execute(
            select(Annotation.class_id, Annotation.positive, func.count())
            .where(Annotation.is_current.is_(True)).group_by(Annotation.class_id, Annotation.positive)
        ).all()
        predicted = dict(s.execute(
            select(Prediction.class_id, func.count())
            .where(Prediction.model_version_id == version_id, Prediction.score >= threshold)
            .group_by(Prediction.class_id)
        ).all()) if version_id is not None else {}
    counts = {(c, p): n for c, p, n in human}
    return [
        {"class": c.name, "prompts": " | ".join(c.prompt_texts), "human +": counts.get((c.id, True), 0),
         "human −": counts.get((c.id, False), 0), f"predicted ≥ {threshold:g}": predicted.get(c.id, 0)}
        for c in classes
    ]
