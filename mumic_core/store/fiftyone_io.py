"""FiftyOne in and out: a ``FiftyOneImageClassificationDataset`` folder (zipped) with two label
fields, and reading such a folder's labels back.

The export holds ``data/`` (every stored image, its original bytes, named ``<name>-<image id>.<ext>``
so names are unique), ``labels.json`` (the human labels: the classes present on each image people
labelled, confidence null; an image labelled with nothing present has ``[]``, an image nobody
labelled is left out) and ``predictions.json`` (the active model version's suggestions: the
classes at or above their thresholds, confidence the score). Both have FiftyOne's shape
``{"classes": [...], "labels": {"<file stem>": [{"label": ..., "confidence": ...}, ...]}}``, which
FiftyOne's importer reads as a multi-label ``Classifications`` field (a single object instead of
a list is a single-label ``Classification``). ``README.txt`` in the archive says how to load them.

The import reads ``labels.json`` (what FiftyOne writes when a dataset's ``ground_truth`` field is
exported as ``FiftyOneImageClassificationDataset``; labels may be class names or indices into
``classes``). Each entry is matched to a stored image by the SHA-256 of its file in ``data/`` when
the file is there, else by the export's ``<name>-<image id>`` naming, else by the original file
name; the labels are recorded as tag rows through :func:`label_io.import_labels`, so the import
modes mean what they mean there (``assumed``: classes an entry leaves out become assumed
negatives, which never replace a person's label; to take back a class removed in FiftyOne, import
with ``complete``). An entry whose label is null says nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import unicodedata
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from sqlalchemy import select

from db.models import Image
from mumic_core.store.auth import requires
from mumic_core.store.csv_rows import MAX_FILE_BYTES, write_csv
from mumic_core.store.images import IMAGE_SUFFIXES
from mumic_core.store.label_io import LabelImportReport, import_labels
from mumic_core.store.snapshot import collection_snapshot
from mumic_core.store.studio import Studio

LABELS_FILE = "labels.json"
PREDICTIONS_FILE = "predictions.json"
DATA_DIR = "data"
MAX_UNCOMPRESSED = 2 * 2**30  # an archive that unpacks to more is refused
MAX_NAME = 100  # characters of an exported file stem before its -<image id>
_UNSAFE = re.compile(r"[^\w.-]+")
_SHA_CHUNK = 2**20
_LINE = re.compile(r"\bline (\d+)\b")
_LAST = 2**62  # where a report line that names no sample goes

README = """\
MuMIC Studio export: a FiftyOne image classification dataset (FiftyOneImageClassificationDataset)
with two label fields over the images in data/:

  labels.json       the human labels (the classes present on each image people labelled)
  predictions.json  the active model's suggestions (classes at or above their thresholds,
                    with the model's score as confidence)

Load both in Python (pip install fiftyone), after unzipping into DIR:

    import fiftyone as fo

    dataset = fo.Dataset.from_dir(
        dataset_dir=DIR, dataset_type=fo.types.FiftyOneImageClassificationDataset,
        labels_path="labels.json", label_field="ground_truth", include_all_data=True,
    )
    dataset.merge_dir(
        dataset_dir=DIR, dataset_type=fo.types.FiftyOneImageClassificationDataset,
        labels_path="predictions.json", label_field="predictions",
    )

To bring edited labels back, export the human field and import the folder (or a zip of it):

    dataset.export(
        export_dir=OUT, dataset_type=fo.types.FiftyOneImageClassificationDataset,
        label_field="ground_truth",
    )

    python -m mumic_core labels fiftyone-import OUT --complete

(--complete: each listed image's classes are its whole set, so a class removed in FiftyOne is
recorded as absent; the default, --assumed, only adds classes.)
"""


# --- export -----------------------------------------------------------------------------------


def export_name(original_name: str, image_id: int, relpath: str) -> str:
    """The file name an image has in the export: its original name's stem (characters other than
    letters, digits, '.', '_' and '-' replaced), ``-<image_id>``, and its extension (the original
    one when it is an image's, else the stored file's)."""
    base = PurePosixPath(unicodedata.normalize("NFC", original_name.replace("\\", "/"))).name
    stem, suffix = PurePosixPath(base).stem, PurePosixPath(base).suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        suffix = PurePosixPath(relpath).suffix.lower()
    safe = _UNSAFE.sub("_", stem).strip("._")[:MAX_NAME] or "image"
    return f"{safe}-{image_id}{suffix}"


def _label_list(names: list[str], scores: dict[str, float] | None = None) -> list[dict]:
    return [{"label": n, "confidence": None if scores is None else float(scores[n])} for n in names]


def _fiftyone_json(classes: list[str], labels: dict[str, list[dict]]) -> bytes:
    return json.dumps({"classes": classes, "labels": labels}, ensure_ascii=False, indent=1).encode("utf-8")


@requires("export")
def export_fiftyone(studio: Studio, out: BinaryIO) -> int:
    """Write the collection to ``out`` as a zipped FiftyOne image classification dataset (see the
    module's docstring): the images, the human labels and the active version's suggestions.
    Images are copied one at a time; ``out`` need not be seekable. Returns the images written."""
    snap = collection_snapshot(studio)
    names, thresholds = snap.classes, snap.thresholds
    human: dict[str, list[dict]] = {}
    suggested: dict[str, list[dict]] = {}
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, strict_timestamps=False) as zf:
        for image_id, original_name, relpath in snap.images:
            filename = export_name(original_name, image_id, relpath)
            zf.write(studio.store.open(relpath), f"{DATA_DIR}/{filename}", compress_type=zipfile.ZIP_STORED)
            key = PurePosixPath(filename).stem
            if image_id in snap.present:
                human[key] = _label_list(snap.present[image_id])
            if image_id in snap.scores:
                mine = snap.scores[image_id]
                chosen = sorted((n for n in names if n in mine and mine[n] >= thresholds[n]), key=lambda n: -mine[n])
                suggested[key] = _label_list(chosen, mine)
        zf.writestr(LABELS_FILE, _fiftyone_json(names, human))
        zf.writestr(PREDICTIONS_FILE, _fiftyone_json(names, suggested))
        zf.writestr("README.txt", README)
    return len(snap.images)


# --- import -----------------------------------------------------------------------------------


@dataclass
class _Dataset:
    """A dataset folder's labels file and media: ``media`` maps a file's path below ``data/``
    without its extension (FiftyOne's sample key) to the files so named; ``open_media`` opens one."""

    labels: bytes
    media: dict[str, list[str]]
    open_media: Callable[[str], BinaryIO]


def _media_key(rel: str) -> str:
    path = PurePosixPath(rel)
    return unicodedata.normalize("NFC", str(path.with_suffix("")) if path.suffix else str(path))


def _check_size(name: str, size: int) -> None:
    """ValueError for a labels file over MAX_FILE_BYTES (checked before it is read)."""
    if size > MAX_FILE_BYTES:
        raise ValueError(f"{name} is {size / 2**20:.0f} MiB; the limit is {MAX_FILE_BYTES // 2**20} MiB")


def _checked_member(name: str) -> str:
    """An archive member's name, or ValueError when it is absolute or climbs out of the folder."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or re.match(r"^[A-Za-z]:", name):
        raise ValueError(f"the archive holds a path outside its folder ({name[:200]!r}); it is refused")
    return str(path)


def _from_zip(zf: zipfile.ZipFile) -> _Dataset:
    infos = [i for i in zf.infolist() if not i.is_dir()]
    names = {_checked_member(i.filename): i for i in infos}
    total = sum(i.file_size for i in infos)
    if total > MAX_UNCOMPRESSED:
        raise ValueError(
            f"the archive unpacks to {total / 2**30:.1f} GiB; the limit is {MAX_UNCOMPRESSED // 2**30} GiB "
            "(import the labels.json alone, or a folder)"
        )
    root = ""
    if LABELS_FILE not in names:  # a zipped folder: one folder at the top holding labels.json
        inner = [n for n in names if PurePosixPath(n).name == LABELS_FILE and len(PurePosixPath(n).parts) == 2]
        if len(inner) != 1:
            raise ValueError(f"no {LABELS_FILE} in the archive: is it a FiftyOne image classification dataset?")
        root = str(PurePosixPath(inner[0]).parent) + "/"
    labels_info = names[root + LABELS_FILE]
    _check_size(LABELS_FILE, labels_info.file_size)
    media: dict[str, list[str]] = {}
    prefix = f"{root}{DATA_DIR}/"
    for name, info in names.items():
        if name.startswith(prefix):
            media.setdefault(_media_key(name[len(prefix) :]), []).append(info.filename)
    return _Dataset(zf.read(labels_info), media, lambda member: zf.open(member))


def _from_folder(folder: Path) -> _Dataset:
    labels_path = folder / LABELS_FILE
    if not labels_path.is_file():
        raise ValueError(f"no {LABELS_FILE} in {folder}: is it a FiftyOne image classification dataset?")
    _check_size(LABELS_FILE, labels_path.stat().st_size)
    media: dict[str, list[str]] = {}
    data = folder / DATA_DIR
    if data.is_dir():
        for path in sorted(data.rglob("*")):
            if path.is_file():
                media.setdefault(_media_key(path.relative_to(data).as_posix()), []).append(str(path))
    return _Dataset(labels_path.read_bytes(), media, lambda path: open(path, "rb"))


@dataclass
class _Entry:
    """One sample of labels.json: its key, the class names it lists (None: says nothing), or why
    it cannot be read."""

    key: str
    names: list[str] | None
    error: str | None = None


def _label_name(target: object, classes: list | None) -> str:
    """A target's class name: a string, or an index into ``classes`` (as FiftyOne writes when
    the dataset has classes)."""
    label = target.get("label") if isinstance(target, dict) else target
    if isinstance(label, bool) or label is None:
        raise ValueError(f"a label must be a class name or a class index, not {json.dumps(label)}")
    if isinstance(label, int):
        if classes is None or not 0 <= label < len(classes):
            raise ValueError(f"label {label} is a class index but 'classes' has no such entry")
        label = classes[label]
    if not isinstance(label, str):
        raise ValueError(f"a label must be a class name or a class index, not {type(label).__name__}")
    if "|" in label or any(unicodedata.category(ch) == "Cc" for ch in label):
        raise ValueError(f"class name {label[:100]!r} holds '|' or a control character")
    return label


def _entries(data: bytes) -> Iterator[_Entry]:
    """labels.json's samples in file order; ValueError when the file is not of FiftyOne's shape."""
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except RecursionError:
        raise ValueError(f"{LABELS_FILE} is nested too deeply") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{LABELS_FILE} is not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("labels"), dict):
        raise ValueError(
            f'{LABELS_FILE} must be a JSON object {{"classes": [...], "labels": {{"<sample>": ...}}}} '
            "(FiftyOne's image classification format)"
        )
    classes = doc.get("classes")
    if classes is not None and not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)):
        raise ValueError(f"'classes' in {LABELS_FILE} must be a list of class names, or null")
    for key, value in doc["labels"].items():
        if value is None:
            yield _Entry(key, None)
            continue
        try:
            names = [_label_name(t, classes) for t in (value if isinstance(value, list) else [value])]
        except ValueError as exc:
            yield _Entry(key, None, str(exc))
            continue
        yield _Entry(key, list(dict.fromkeys(names)))


class _Matcher:
    """Finds the stored image a sample names: by its media's SHA-256, the export's naming, or the
    original file name's stem."""

    def __init__(self, rows: list[tuple[int, str, str, str]], dataset: _Dataset) -> None:
        self.dataset = dataset
        self.sha_of = {image_id: sha for image_id, sha, _, _ in rows}
        self.by_sha = {sha: image_id for image_id, sha, _, _ in rows}
        self.by_export = {
            PurePosixPath(export_name(name, image_id, relpath)).stem: image_id for image_id, _, name, relpath in rows
        }
        self.by_stem: dict[str, list[int]] = {}
        for image_id, _, name, _ in rows:
            stem = PurePosixPath(unicodedata.normalize("NFC", name.replace("\\", "/"))).stem
            self.by_stem.setdefault(stem, []).append(image_id)

    def _sha256(self, member: str) -> str:
        digest = hashlib.sha256()
        try:
            with self.dataset.open_media(member) as fh:
                while chunk := fh.read(_SHA_CHUNK):
                    digest.update(chunk)
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise ValueError(f"its image {PurePosixPath(member).name!r} cannot be read ({exc})") from None
        return digest.hexdigest()

    def find(self, key: str) -> int:
        """The image id; ValueError saying why none."""
        norm = unicodedata.normalize("NFC", key.replace("\\", "/"))
        files = self.dataset.media.get(norm.strip("/"))
        if files:
            if len(files) > 1:
                raise ValueError(f"{len(files)} files in {DATA_DIR}/ are named {norm[:100]!r}; which one is meant?")
            sha = self._sha256(files[0])
            if sha not in self.by_sha:
                raise ValueError(
                    f"its image {PurePosixPath(files[0]).name!r} is not in the store (SHA-256 {sha[:12]}…)"
                )
            return self.by_sha[sha]
        stem = PurePosixPath(norm).stem if PurePosixPath(norm).suffix.lower() in IMAGE_SUFFIXES else norm
        stem = PurePosixPath(stem).name
        if stem in self.by_export:
            return self.by_export[stem]
        candidates = self.by_stem.get(stem, [])
        if len(candidates) == 1:
            return candidates[0]
        if candidates:
            raise ValueError(f"{len(candidates)} stored images are named {stem[:100]!r}; include the images in data/")
        raise ValueError(f"no stored image matches it (by its file in {DATA_DIR}/, the export's naming or a file name)")


def _labels_alone(data: bytes) -> _Dataset:
    _check_size(LABELS_FILE, len(data))
    return _Dataset(data, {}, lambda _: io.BytesIO())


def _open(source: Path | bytes) -> tuple[_Dataset, zipfile.ZipFile | None]:
    """The dataset in ``source``: a ZIP (bytes or a path), a folder, or a labels.json alone
    (bytes, or a path: then its folder's data/ is the media); and the open archive to close."""
    if isinstance(source, bytes | bytearray):
        if source[:2] != b"PK":
            return _labels_alone(bytes(source)), None
        fileobj: io.BytesIO | Path = io.BytesIO(source)
    else:
        path = Path(source)
        if path.is_dir():
            return _from_folder(path), None
        if not zipfile.is_zipfile(path):
            if path.name == LABELS_FILE:
                return _from_folder(path.parent), None
            if path.suffix.lower() == ".json":
                _check_size(path.name, path.stat().st_size)
                return _labels_alone(path.read_bytes()), None
            raise ValueError(f"{path.name} is neither a ZIP archive nor the folder of a FiftyOne dataset")
        fileobj = path
    try:
        zf = zipfile.ZipFile(fileobj)
    except (zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
        raise ValueError(f"not a readable ZIP archive ({exc})") from None
    try:
        return _from_zip(zf), zf
    except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
        zf.close()
        raise ValueError(f"the archive is damaged ({exc})") from None
    except BaseException:
        zf.close()
        raise


@requires("import")
def import_fiftyone(studio: Studio, source: Path | bytes, annotator: str, mode: str = "assumed") -> LabelImportReport:
    """Record the labels of a FiftyOne image classification dataset (a ZIP, as bytes or a path, a
    folder, or its labels.json alone) as one submission of ``annotator``; ``mode`` as in
    :func:`label_io.import_labels`. Samples that match no stored image, or whose labels cannot be
    read, are reported as ``sample '<key>': reason``; a file that is not such a dataset raises
    ValueError."""
    dataset, zf = _open(source)
    errors: list[tuple[int, str]] = []  # (position of the sample in labels.json, message)
    samples: list[tuple[int, str]] = []  # (position, key) of the sample on CSV line k + 2
    tag_rows: list[tuple[str, str]] = []
    try:
        with studio.read() as s:
            rows = [tuple(r) for r in s.execute(select(Image.id, Image.sha256, Image.original_name, Image.relpath))]
        matcher = _Matcher(rows, dataset)
        for k, entry in enumerate(_entries(dataset.labels)):
            if entry.error is None and entry.names is None:
                continue  # null: the sample has no label in this field
            try:
                if entry.error is not None:
                    raise ValueError(entry.error)
                image_id = matcher.find(entry.key)
            except ValueError as exc:
                errors.append((k, f"sample {entry.key[:200]!r}: {exc}"))
                continue
            samples.append((k, entry.key))
            tag_rows.append((matcher.sha_of[image_id], "|".join(entry.names or [])))
    finally:
        if zf is not None:
            zf.close()
    if not tag_rows:
        return LabelImportReport(0, errors=[e for _, e in sorted(errors, key=lambda x: x[0])])
    report = import_labels(studio, write_csv(("sha256", "labels"), tag_rows).encode("utf-8"), annotator, mode)
    for message in report.errors:  # "line N: ..." -> "sample '<key>': ..."
        found = _LINE.search(message)
        line = int(found.group(1)) - 2 if found else -1
        position = samples[line][0] if 0 <= line < len(samples) else _LAST
        errors.append((position, _LINE.sub(lambda m: _sample_at(m, samples), message)))
    report.errors = [e for _, e in sorted(errors, key=lambda x: x[0])]
    return report


def _sample_at(line: re.Match, samples: list[tuple[int, str]]) -> str:
    k = int(line.group(1)) - 2
    return f"sample {samples[k][1][:200]!r}" if 0 <= k < len(samples) else line.group()
