"""Labels in and out: CSV, JSON and COCO-style exports, and imports that read the first two back
exactly (positives, negatives, assumed negatives, authors, sources, times).

Files name an image by ``sha256`` (wins when given: it names the same picture in any store),
``image_id``, or ``filename`` (the name as imported, a folder import's relative path included; a
bare file name matches when exactly one image has it). A row that could mean two images is
refused with its line number, never resolved silently.

Two CSV shapes are read:
- one row per image, ``filename,labels`` (labels joined by ``|``): a person's or a tool's tag list.
  Listed classes become positives; what the other active classes become depends on the import's
  ``mode`` (:data:`TAG_MODES`): ``assumed`` (the default) assumed negatives, ``partial`` unknown,
  ``complete`` human negatives. An empty labels cell says nothing (unless ``complete``: then every
  class is absent).
- one row per statement, the product's own export: ``image_id,sha256,filename,class,state,
  annotator,source,labelled_at``; an image with no labels has one row with empty class and state.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Protocol

from sqlalchemy import case, func, select, true

from db.models import Annotation, Image, LabelClass, Submission
from mumic_core.store import label_studio
from mumic_core.store.auth import audit, requires
from mumic_core.store.classes import normalize_name
from mumic_core.store.collection import Statement, import_statements
from mumic_core.store.csv_rows import MAX_FILE_BYTES, read_csv_rows, write_csv
from mumic_core.store.studio import Studio

FORMATS = ("csv", "json", "coco")
JSON_FORMAT = "mumic-studio-labels"
IDENTIFIERS = ("image_id", "sha256", "filename")
EXPORT_COLUMNS = (*IDENTIFIERS, "class", "state", "annotator", "source", "labelled_at")
# state word -> (positive, assumed)
STATES = {"positive": (True, False), "negative": (False, False), "assumed_negative": (False, True)}
_STATE_WORDS = STATES | {"present": (True, False), "absent": (False, False), "assumed negative": (False, True)}
IMPORT_SOURCES = ("import", "migration")  # sources of rows that a labels import (or migration 0010) wrote
TAG_MODES = {
    "assumed": "the classes a row does not list become assumed negatives (tags: a listed label is usually right, "
    "an unlisted one is probably absent)",
    "partial": "the classes a row does not list stay unknown",
    "complete": "the classes a row does not list become human negatives (every row is a full judgement)",
}
_SOURCE = re.compile(r"[a-z][a-z0-9_]{0,19}")
_SHA = re.compile(r"[0-9a-f]{64}")
MAX_ANNOTATOR = 100


@dataclass
class LabelImportReport:
    """What a labels file did: images it said something about, images whose labels changed,
    rows added, and one 'line N: reason' (or 'item N: reason') per refused row."""

    images_labelled: int
    images_changed: int = 0
    labels_added: int = 0
    errors: list[str] = field(default_factory=list)
    submission_id: int | None = None
    assumed_added: int = 0  # assumed negatives written (the classes tag rows left out)
    without_negatives: list[str] = field(default_factory=list)  # classes with positives and no negative at all

    def summary(self) -> str:
        assumed = f", {self.assumed_added} assumed negatives" if self.assumed_added else ""
        return (
            f"{self.images_labelled} images labelled ({self.images_changed} changed, {self.labels_added} "
            f"labels added{assumed}); {len(self.errors)} rows refused"
        )

    def warning(self) -> str | None:
        """What to do when some classes now have positives but no negative anywhere (tags imported
        as partial): training cannot learn what such a class is not, only how it scores compared
        with its zero-shot prompt."""
        if not self.without_negatives:
            return None
        n = len(self.without_negatives)
        shown = ", ".join(self.without_negatives[:5]) + (f" and {n - 5} more" if n > 5 else "")
        return (
            f"{n} {'class has' if n == 1 else 'classes have'} positive labels but no negative on any image "
            f"({shown}): training cannot learn what {'it is' if n == 1 else 'they are'} not. Import the tags "
            "with unlisted classes as assumed absent (the default; `labels declare` changes an earlier import), "
            "or mark some images without them in Review."
        )


# --- export -----------------------------------------------------------------------------------


class Stated(Protocol):
    """A current statement as the exports read it (a row of the annotations table's columns)."""

    positive: bool
    assumed: bool
    annotator: str
    source: str
    created_at: datetime | None


@dataclass
class ExportImage:
    image_id: int
    sha256: str
    filename: str
    width: int
    height: int
    labels: list[tuple[str, Stated]]  # (class name, current statement), by class id


def export_rows(studio: Studio, image_ids: Iterable[int] | None = None) -> tuple[list[str], list[ExportImage]]:
    """Active class names, and every image (or those of ``image_ids``) with its current labels
    of active classes."""
    wanted = None if image_ids is None else list(image_ids)
    with studio.read() as s:
        classes = {
            c.id: c.name
            for c in s.scalars(select(LabelClass).where(LabelClass.active.is_(True)).order_by(LabelClass.id))
        }
        # Columns, not ORM objects: a 1M-image export builds no identity map.
        images = {
            i: ExportImage(i, sha, name, w, h, [])
            for i, sha, name, w, h in s.execute(
                select(Image.id, Image.sha256, Image.original_name, Image.width, Image.height)
                .where(Image.id.in_(wanted) if wanted is not None else true())
                .order_by(Image.id)
            )
        }
        for a in s.execute(
            select(
                Annotation.image_id,
                Annotation.class_id,
                Annotation.positive,
                Annotation.assumed,
                Annotation.annotator,
                Annotation.source,
                Annotation.created_at,
            )
            .where(
                Annotation.is_current.is_(True),
                Annotation.class_id.in_(list(classes)),
                Annotation.image_id.in_(wanted) if wanted is not None else true(),
            )
            .order_by(Annotation.image_id, Annotation.class_id)
        ):
            images[a.image_id].labels.append((classes[a.class_id], a))
    return list(classes.values()), list(images.values())


def state_word(positive: bool, assumed: bool) -> str:
    """The label state as exports write it: positive, negative or assumed_negative."""
    return "positive" if positive else "assumed_negative" if assumed else "negative"


def label_time(at: datetime | None) -> str:
    if at is None:
        return ""
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).isoformat()


@requires("export")
def export_labels(studio: Studio, fmt: str) -> str:
    """Current labels of the active classes as CSV (one row per statement, its state positive,
    negative or assumed_negative; an image without labels gets one row with empty class and state),
    JSON (the same, per image), or COCO-style JSON (image-level categories, positives only).
    Unknown pairs have no row."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; use {', '.join(FORMATS)}")
    classes, images = export_rows(studio)
    if fmt == "csv":
        rows: list[tuple] = []
        for im in images:
            ident = (im.image_id, im.sha256, im.filename)
            rows += [
                (*ident, name, state_word(a.positive, a.assumed), a.annotator, a.source, label_time(a.created_at))
                for name, a in im.labels
            ] or [(*ident, "", "", "", "", "")]
        return write_csv(EXPORT_COLUMNS, rows)
    if fmt == "json":
        return json.dumps(
            {
                "format": JSON_FORMAT,
                "version": 1,
                "classes": classes,
                "images": [
                    {
                        "image_id": im.image_id,
                        "sha256": im.sha256,
                        "filename": im.filename,
                        "labels": [
                            {
                                "class": name,
                                "state": state_word(a.positive, a.assumed),
                                "annotator": a.annotator,
                                "source": a.source,
                                "labelled_at": label_time(a.created_at),
                            }
                            for name, a in im.labels
                        ],
                    }
                    for im in images
                ],
            },
            indent=1,
            ensure_ascii=False,
        )
    category = {name: k for k, name in enumerate(classes, start=1)}
    positives = [(im.image_id, category[name]) for im in images for name, a in im.labels if a.positive]
    return json.dumps(
        {
            "info": {"description": "MuMIC Studio image-level labels (positives only)"},
            "images": [
                {
                    "id": im.image_id,
                    "file_name": im.filename,
                    "sha256": im.sha256,
                    "width": im.width,
                    "height": im.height,
                }
                for im in images
            ],
            "categories": [{"id": k, "name": name} for name, k in category.items()],
            "annotations": [{"id": k, "image_id": i, "category_id": c} for k, (i, c) in enumerate(positives, start=1)],
        },
        indent=1,
        ensure_ascii=False,
    )


# --- import -----------------------------------------------------------------------------------


def _nfc(name: str) -> str:
    """A file name in Unicode's composed form: macOS file systems give names decomposed (NFD, an
    "é" as "e" and an accent), most other places composed; both name the same file."""
    return unicodedata.normalize("NFC", name)


class _ImageIndex:
    """Finds the one image a row names (names compared in composed form), or says why it cannot."""

    def __init__(self, rows: Iterable[tuple[int, str, str]]) -> None:
        self.by_id: dict[int, str] = {}
        self.by_sha: dict[str, int] = {}
        self.by_name: dict[str, list[int]] = {}
        self.by_base: dict[str, list[int]] = {}
        for image_id, sha, name in rows:
            self.by_id[image_id] = name
            self.by_sha[sha] = image_id
            self.by_name.setdefault(_nfc(name), []).append(image_id)
            self.by_base.setdefault(_nfc(PurePosixPath(name).name), []).append(image_id)

    def find(self, row: Mapping[str, str]) -> int:
        """The image id a row names; ValueError with the reason."""
        sha = (row.get("sha256") or "").strip().lower()
        raw_id = (row.get("image_id") or "").strip()
        name = _nfc(row.get("filename") or "")
        if sha:
            if not _SHA.fullmatch(sha):
                raise ValueError(f"{sha[:80]!r} is not a SHA-256 (64 hexadecimal digits)")
            if sha not in self.by_sha:
                raise ValueError(f"no image with SHA-256 {sha[:12]}…")
            return self.by_sha[sha]
        if raw_id:
            if not raw_id.isdigit() or int(raw_id) not in self.by_id:
                raise ValueError(f"no image with id {raw_id[:20]!r}")
            image_id = int(raw_id)
            if name.strip() and name not in (
                _nfc(self.by_id[image_id]),
                _nfc(PurePosixPath(self.by_id[image_id]).name),
            ):
                raise ValueError(f"image {image_id} is named {self.by_id[image_id][:100]!r}, not {name[:100]!r}")
            return image_id
        if not name.strip():
            raise ValueError("names no image (filename, image_id and sha256 are all empty)")
        for candidates in (
            self.by_name.get(name),
            self.by_name.get(name.strip()),
            self.by_base.get(PurePosixPath(name.strip()).name),
        ):
            if candidates and len(candidates) == 1:
                return candidates[0]
            if candidates:
                shown = ", ".join(f"{self.by_id[i][:60]!r} (id {i})" for i in candidates[:3])
                raise ValueError(
                    f"{name[:100]!r} could be {len(candidates)} images: {shown}; name one by its "
                    "path, image_id or sha256"
                )
        raise ValueError(f"unknown image {name[:200]!r}")


@dataclass
class _Reader:
    """Turns rows into statements per image, collecting errors by line (or item) number."""

    index: _ImageIndex
    classes: dict[str, int]  # normalised active class name -> id
    inactive: set[str]
    importer: str
    statements: dict[int, dict[int, Statement]] = field(default_factory=dict)
    origin: dict[tuple[int, int], str] = field(default_factory=dict)  # (image, class) -> where it was said
    errors: list[tuple[int, str]] = field(default_factory=list)
    unit: str = "line"

    def refuse(self, where: int, reason: str) -> None:
        self.errors.append((where, f"{self.unit} {where}: {reason}"))

    def class_id(self, name: str) -> int:
        key = normalize_name(name)
        if key in self.classes:
            return self.classes[key]
        raise ValueError(
            f"class {name[:100]!r} is inactive" if key in self.inactive else f"unknown class {name[:100]!r}"
        )

    def add(self, where: int, image_id: int, said: Mapping[int, Statement]) -> None:
        """Record a row's statements unless one contradicts an earlier row of the file."""
        mine = self.statements.setdefault(image_id, {})
        for class_id, st in said.items():
            before = mine.get(class_id)
            if before is not None and not (st.assumed or before.assumed) and before.positive != st.positive:
                self.refuse(where, f"contradicts {self.origin[(image_id, class_id)]} about the same image and class")
                return
        for class_id, st in said.items():
            before = mine.get(class_id)
            if st.assumed and before is not None:
                continue  # a row's assumption never overrides what another row says
            mine[class_id] = st
            self.origin[(image_id, class_id)] = f"{self.unit} {where}"

    def tag_row(self, where: int, row: Mapping[str, str], mode: str) -> None:
        """``labels`` joined by '|': listed classes present, the others as ``mode`` says."""
        try:
            image_id = self.index.find(row)
            names = [n for n in row["labels"].split("|") if n.strip()]
            unknown = []
            positives = set()
            for n in names:
                try:
                    positives.add(self.class_id(n))
                except ValueError as exc:
                    unknown.append(str(exc))
            if unknown:
                raise ValueError("; ".join(unknown[:5]))
        except ValueError as exc:
            self.refuse(where, str(exc))
            return
        if not positives and mode != "complete":
            return  # an empty cell says nothing about the image
        said = {c: Statement(True, self.importer, "import") for c in positives}
        if mode != "partial":
            assumed = mode == "assumed"
            said |= {
                c: Statement(False, self.importer, "import", assumed=assumed)
                for c in self.classes.values()
                if c not in positives
            }
        self.add(where, image_id, said)

    def statement_row(self, where: int, row: Mapping[str, str]) -> None:
        """One statement (class, state, and optionally annotator, source, labelled_at)."""
        name, state = (row.get("class") or "").strip(), (row.get("state") or "").strip().lower()
        try:
            image_id = self.index.find(row)
            if not name and not state:
                return  # an image without labels
            if state not in _STATE_WORDS:
                raise ValueError(f"state {state[:30]!r} is not one of {', '.join(STATES)}")
            class_id = self.class_id(name)
            annotator = (row.get("annotator") or "").strip() or self.importer
            if len(annotator) > MAX_ANNOTATOR:
                raise ValueError(f"an annotator name over {MAX_ANNOTATOR} characters")
            source = (row.get("source") or "").strip() or "import"
            if not _SOURCE.fullmatch(source):
                raise ValueError(f"source {source[:30]!r} is not a short lower-case word")
            at = _parse_time((row.get("labelled_at") or "").strip())
        except ValueError as exc:
            self.refuse(where, str(exc))
            return
        positive, assumed = _STATE_WORDS[state]
        self.add(where, image_id, {class_id: Statement(positive, annotator, source, at, assumed)})


def _parse_time(text: str) -> datetime | None:
    if not text:
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"labelled_at {text[:40]!r} is not an ISO 8601 time") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _reader(studio: Studio, importer: str) -> _Reader:
    with studio.read() as s:
        index = _ImageIndex(s.execute(select(Image.id, Image.sha256, Image.original_name)).all())
        classes = list(s.scalars(select(LabelClass)))
    return _Reader(
        index,
        {c.normalized_name: c.id for c in classes if c.active},
        {c.normalized_name for c in classes if not c.active},
        importer,
    )


def _read_csv(reader: _Reader, data: bytes, mode: str) -> None:
    try:
        parsed = read_csv_rows(data, ["class", "state"], (*IDENTIFIERS, "annotator", "source", "labelled_at"))
        shape = "statements"
    except ValueError as as_statements:
        try:
            parsed = read_csv_rows(data, ["labels"], IDENTIFIERS)
            shape = "tags"
        except ValueError as as_tags:
            first = data[:2000].split(b"\n", 1)[0].lower()
            reason = as_statements if b"class" in first and b"labels" not in first else as_tags
            raise ValueError(
                f"{reason}; a labels CSV has the columns filename,labels (one row per image) or "
                f"{','.join(EXPORT_COLUMNS)} (one row per label, as exported)"
            ) from None
    if not set(parsed.columns) & set(IDENTIFIERS):
        raise ValueError("expected a column naming the image: filename, image_id or sha256")
    reader.errors += [(int(e.split()[1].rstrip(":")), e) for e in parsed.errors]
    for line, row in parsed.rows:
        if shape == "tags":
            reader.tag_row(line, row, mode)
        else:
            reader.statement_row(line, row)


def _read_limited(source: Path | bytes) -> bytes:
    """A labels file's bytes; ValueError for one over MAX_FILE_BYTES (checked before reading)."""
    size = len(source) if isinstance(source, bytes) else Path(source).stat().st_size
    if size > MAX_FILE_BYTES:
        raise ValueError(f"the labels file is {size / 2**20:.0f} MiB; the limit is {MAX_FILE_BYTES // 2**20} MiB")
    return source if isinstance(source, bytes) else Path(source).read_bytes()


def _json_document(data: bytes) -> object | None:
    """The parsed document when ``data`` is JSON (an object or a list, or any other JSON value,
    which is then refused as not a labels file), None when it is a CSV; ValueError for a file that
    starts as JSON but is not valid, or nests too deeply to read."""
    text = data.lstrip(b"\xef\xbb\xbf \t\r\n")
    looks_like_json = text[:1] in (b"{", b"[")
    if not (looks_like_json or text[:1] in b'"-0123456789' or text.startswith((b"true", b"false", b"null"))):
        return None
    try:
        return json.loads(text.decode("utf-8"))
    except RecursionError:
        raise ValueError("the JSON is nested too deeply to be a labels file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        if looks_like_json:
            raise ValueError(f"not valid JSON ({exc})") from None
        return None  # a CSV whose header is quoted, or whose first cell is a number


def _read_label_studio(reader: _Reader, tasks: list, mode: str) -> None:
    """A Label Studio JSON export: each task's newest annotation that was not skipped is a full
    judgement (its annotator saw every choice): ticked classes present, the other active classes
    absent, or unknown with ``mode`` partial. Tasks nobody annotated are left alone."""
    reader.unit = "task"
    for k, item in enumerate(tasks, start=1):
        annotation = label_studio.latest_annotation(item)
        if annotation is None:
            continue
        names = label_studio.chosen_classes(annotation.get("result"))
        if any("|" in n for n in names):
            reader.refuse(k, "a class name with '|' cannot be imported")
            continue
        row = label_studio.task_image(item) | {"labels": "|".join(names)}
        reader.tag_row(k, row, "partial" if mode == "partial" else "complete")


def _read_json(reader: _Reader, doc: object, mode: str) -> None:
    """The product's JSON export; also its earlier shape, a list of {filename, sha256, positives,
    negatives}; and a Label Studio export (a list of tasks)."""
    if label_studio.is_label_studio_export(doc):
        _read_label_studio(reader, doc, mode)
        return
    items = doc.get("images") if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise ValueError(f"expected a JSON object with an 'images' list (format {JSON_FORMAT!r}), or a list of images")
    reader.unit = "item"
    for k, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            reader.refuse(k, "not a JSON object")
            continue
        ident = {key: str(item[key]) for key in IDENTIFIERS if item.get(key) is not None}
        labels = item.get("labels")
        if labels is None and ("positives" in item or "negatives" in item):
            labels = [
                {"class": n, "state": state}
                for state, key in (("positive", "positives"), ("negative", "negatives"))
                for n in item.get(key) or []
            ]
        if not isinstance(labels, list) or not all(isinstance(x, dict) for x in labels):
            reader.refuse(k, "'labels' must be a list of objects with class and state")
            continue
        if not labels:
            reader.statement_row(k, ident)  # checks that the image exists
        for label in labels:
            reader.statement_row(
                k,
                ident
                | {
                    key: "" if label.get(key) is None else str(label[key])
                    for key in ("class", "state", "annotator", "source", "labelled_at")
                },
            )


@requires("import")
def import_labels(studio: Studio, source: Path | bytes, annotator: str, mode: str = "assumed") -> LabelImportReport:
    """Read a labels file (CSV or JSON, told apart by content) and record its statements as one
    submission of ``annotator`` (one undo step). ``mode`` (:data:`TAG_MODES`) says what the classes
    a tag row leaves out become. Refused rows are reported by line (CSV) or item (JSON); the others
    are imported. Importing the same file again changes nothing."""
    if mode not in TAG_MODES:
        raise ValueError(f"unknown import mode {mode!r}; use {', '.join(TAG_MODES)}")
    data = _read_limited(source)
    reader = _reader(studio, annotator)
    document = _json_document(data)
    if document is not None:
        _read_json(reader, document, mode)
    else:
        _read_csv(reader, data, mode)
    errors = [e for _, e in sorted(reader.errors, key=lambda x: x[0])]
    if not reader.statements:
        return LabelImportReport(0, errors=errors)
    submission, changed, added, assumed = import_statements(studio, reader.statements, annotator)
    return LabelImportReport(
        len(reader.statements), changed, added, errors, submission, assumed, classes_without_negatives(studio)
    )


def classes_without_negatives(studio: Studio) -> list[str]:
    """Active classes with at least one current positive and no current negative (human or assumed)."""
    with studio.read() as s:
        rows = s.execute(
            select(LabelClass.name)
            .join(Annotation, Annotation.class_id == LabelClass.id)
            .where(LabelClass.active.is_(True), Annotation.is_current.is_(True))
            .group_by(LabelClass.id, LabelClass.name)
            .having(func.sum(case((Annotation.positive, 0), else_=1)) == 0)
            .order_by(LabelClass.name)
        ).all()
    return [name for (name,) in rows]


# --- earlier imports --------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportInfo:
    """An earlier submission that wrote labels from a file (or the label-state migration)."""

    submission_id: int
    annotator: str
    at: datetime
    images: int
    positives: int
    negatives: int
    assumed_negatives: int  # current rows of each kind that this submission wrote
    undone: bool


@requires("import")
def list_imports(studio: Studio) -> list[ImportInfo]:
    """Submissions that imported labels, newest first, with the current rows each still holds."""
    with studio.read() as s:
        rows = s.execute(
            select(
                Submission.id,
                Submission.annotator,
                Submission.created_at,
                Submission.undone_at,
                func.count(func.distinct(Annotation.image_id)),
                func.sum(case((Annotation.is_current & Annotation.positive, 1), else_=0)),
                func.sum(case((Annotation.is_current & ~Annotation.positive & ~Annotation.assumed, 1), else_=0)),
                func.sum(case((Annotation.is_current & Annotation.assumed, 1), else_=0)),
            )
            .join(Annotation, Annotation.submission_id == Submission.id)
            .where(Annotation.source.in_(IMPORT_SOURCES))
            .group_by(Submission.id)
            .order_by(Submission.id.desc())
        ).all()
    return [
        ImportInfo(sid, who, at, int(n), int(p or 0), int(neg or 0), int(a or 0), undone is not None)
        for sid, who, at, undone, n, p, neg, a in rows
    ]


@requires("import")
def redeclare_import(studio: Studio, submission_id: int, mode: str) -> dict[str, int]:
    """Say again what the classes an earlier import left out are (:data:`TAG_MODES`), without
    re-importing: ``partial`` makes its assumed negatives unknown; ``assumed`` makes the unknown
    pairs of its images (and its negatives) assumed negatives; ``complete`` makes them human
    negatives. Only classes that existed at the import count; labels written later by anyone
    else stand. Returns counts of rows changed."""
    if mode not in TAG_MODES:
        raise ValueError(f"unknown mode {mode!r}; use {', '.join(TAG_MODES)}")
    with studio.write() as s:
        sub = s.get(Submission, submission_id)
        mine = (
            select(Annotation).where(Annotation.submission_id == submission_id, Annotation.is_current.is_(True))
            if sub is not None
            else None
        )
        if sub is None or not s.scalar(
            select(func.count())
            .select_from(Annotation)
            .where(Annotation.submission_id == submission_id, Annotation.source.in_(IMPORT_SOURCES))
        ):
            raise ValueError(f"submission {submission_id} is not a labels import; see the list of imports")
        if sub.undone_at is not None:
            raise ValueError(f"import {submission_id} was undone; there is nothing to re-declare")
        image_ids = sorted(
            s.scalars(select(Annotation.image_id).where(Annotation.submission_id == submission_id).distinct())
        )
        s.execute(select(Image.id).where(Image.id.in_(image_ids)).order_by(Image.id).with_for_update())
        counts = {"made_unknown": 0, "assumed_negatives": 0, "negatives": 0}
        current = list(s.scalars(mine.with_for_update()))
        if mode == "partial":
            for row in current:
                if row.assumed:
                    row.is_current = False
                    counts["made_unknown"] += 1
            audit(s, studio, "redeclare_import", submission=submission_id, mode=mode, **counts)
            return counts
        active = list(  # a class added after the import stays unknown on its images
            s.scalars(select(LabelClass.id).where(LabelClass.active.is_(True), LabelClass.created_at <= sub.created_at))
        )
        judged = {
            (i, c)
            for i, c in s.execute(
                select(Annotation.image_id, Annotation.class_id).where(
                    Annotation.image_id.in_(image_ids), Annotation.is_current.is_(True)
                )
            )
        }
        assumed = mode == "assumed"
        replace = [r for r in current if not r.positive and r.assumed != assumed]
        for row in replace:
            row.is_current = False
        s.flush()
        for row in replace:
            s.add(_restated(row.image_id, row.class_id, sub, assumed, supersedes=row.id))
        for image_id in image_ids:
            for class_id in active:
                if (image_id, class_id) not in judged:
                    s.add(_restated(image_id, class_id, sub, assumed))
                    counts["assumed_negatives" if assumed else "negatives"] += 1
        counts["assumed_negatives" if assumed else "negatives"] += len(replace)
        audit(s, studio, "redeclare_import", submission=submission_id, mode=mode, **counts)
        return counts


def _restated(image_id: int, class_id: int, sub: Submission, assumed: bool, supersedes: int | None = None):
    return Annotation(
        image_id=image_id,
        class_id=class_id,
        positive=False,
        assumed=assumed,
        annotator=sub.annotator,
        source="import",
        supersedes_id=supersedes,
        submission_id=sub.id,
    )
