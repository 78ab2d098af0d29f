"""Bad inputs against a real store: each is refused with a clear message and loses nothing.

    .venv/bin/python benchmarks/bad_inputs.py [--out FILE.md] [--smoke [DIR]]

Writes benchmarks/results/bad_inputs.md. tests/test_bad_inputs.py runs the same cases and checks
every expected outcome (a phrase, or several, that the real outcome must contain: the table's
"as expected" column is computed, never written). ``--smoke``: every case but the slow ones (real
worker processes started and killed), the table written under DIR, and checked to have one row
per case run. The disk-full cases mount a 2 MiB tmpfs (as root); where mounting is not permitted
they simulate ENOSPC and say so in their row.
"""

from __future__ import annotations

import argparse
import csv
import errno
import hashlib
import io
import os
import signal
import struct
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import unicodedata
import zipfile
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image as PILImage  # noqa: E402
from PIL import PngImagePlugin  # noqa: E402
from sqlalchemy import select  # noqa: E402

from benchmarks._smoke import add_smoke_option, check_written, smoke_folder  # noqa: E402
from db.models import Annotation, Image  # noqa: E402


def png(size=(32, 32), colour=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def jpeg() -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", (32, 32), (10, 120, 200)).save(buf, "JPEG")
    return buf.getvalue()


def bomb() -> bytes:
    """A 30000 x 30000 one-bit PNG: a few kB on disk, 900 megapixels decoded."""
    buf = io.BytesIO()
    PILImage.new("1", (30_000, 30_000)).save(buf, "PNG", optimize=True)
    return buf.getvalue()


def zipped() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("evil.jsp", "<% Runtime.exec() %>")
    return buf.getvalue()


# --- formats, encodings, sizes and names (added for issue 17, "go further than this list") ---------


def _save(img, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


def _frames(n: int = 4, size=(40, 30)) -> list:
    return [PILImage.new("RGB", size, (60 * k % 256, 90, 200 - 40 * k)) for k in range(n)]


def _animated(fmt: str, n: int = 4, size=(40, 30), **options) -> bytes:
    first, *rest = _frames(n, size)
    return _save(first, fmt, save_all=True, append_images=rest, **options)


def _with_exif_orientation(value: int) -> bytes:
    exif = PILImage.Exif()
    exif[0x0112] = value
    return _save(PILImage.new("RGB", (40, 30), (30, 140, 60)), "JPEG", exif=exif.tobytes())


def _numpy_tiff(array) -> bytes:
    return _save(PILImage.fromarray(array), "TIFF")


def _png_field(offset: int, value: int, fix_crc: bool) -> bytes:
    """A 40 x 30 PNG with one 4-byte IHDR field changed (width at 16, height at 20), its CRC
    recomputed or not."""
    data = bytearray(_save(PILImage.new("RGB", (40, 30), (9, 99, 199)), "PNG"))
    struct.pack_into(">I", data, offset, value)
    if fix_crc:
        struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _bottom_up_bmp_negated() -> bytes:
    """A BMP with a negative height: rows stored top-down, as the format allows."""
    data = bytearray(_save(PILImage.new("RGB", (40, 30), (200, 200, 20)), "BMP"))
    struct.pack_into("<i", data, 22, -30)
    return bytes(data)


def _huge_text_chunk() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "x" * (8 * 2**20), zip=True)  # 8 MiB of text in about 8 kB
    return _save(PILImage.new("RGB", (40, 30)), "PNG", pnginfo=info)


def _upload_shown(name: str, data: bytes | Callable[[], bytes]):
    """Import one file (its bytes, or made when the case runs); when imported, make its display
    rendition (what the Review page shows)."""

    def run(studio, ann, tmp):
        from sqlalchemy import select

        from db.models import Image
        from mumic_core.store.collection import import_files
        from mumic_core.store.renditions import TILE, renditions

        report = import_files(studio, [(name, data() if callable(data) else data)])
        if not report.added:
            return "; ".join(r for _, r in report.rejected + report.duplicates)
        with studio.read() as s:
            image = s.scalar(select(Image).where(Image.original_name == name))
        shown = renditions(studio, [image], TILE)[0]
        if shown.problem:
            return f"imported as {image.format}, but the page cannot show it: {shown.problem}"
        with PILImage.open(io.BytesIO(shown.data)) as pic:
            return (
                f"imported as {image.format} {image.width} x {image.height}; Review shows it as "
                f"{pic.mode} {pic.width} x {pic.height}"
            )

    return run


def _timed_labels_csv(make: Callable[[], bytes], within_s: float):
    def run(studio, ann, tmp):
        from mumic_core.store.label_io import import_labels

        data = make()
        start = time.perf_counter()
        report = import_labels(studio, data, "system")
        took = time.perf_counter() - start
        rows = data.count(b"\n") - 1
        return f"{report.summary()} in {'under' if took < within_s else 'OVER'} {within_s:g} s ({rows:,} rows)" + (
            f"; {report.errors[0]}" if report.errors else ""
        )

    return run


def _named_then_labelled(stored: str, written: str):
    """Import an image named ``stored``, then a labels CSV row naming it ``written``."""

    def run(studio, ann, tmp):
        from mumic_core.store.collection import import_files
        from mumic_core.store.label_io import import_labels

        colour = tuple(hashlib.sha256(stored.encode()).digest()[:3])
        report = import_files(studio, [(stored, png(colour=colour))])
        if not report.added:
            return "; ".join(r for _, r in report.rejected + report.duplicates)
        row = csv_text([["filename", "labels"], [written, "circle"]])
        labels = import_labels(studio, row.encode(), "system")
        return f"imported; a CSV row naming it: {labels.summary()}" + "".join(f"; {e}" for e in labels.errors)

    return run


def csv_text(rows: list[list[str]]) -> str:
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    return buf.getvalue()


def _round_trip_name(name: str):
    """Import an image named ``name`` with a label, export CSV, import the export: nothing changes."""

    def run(studio, ann, tmp):
        from mumic_core.store.collection import annotate, import_files
        from mumic_core.store.label_io import export_labels, import_labels

        colour = tuple(hashlib.sha256(name.encode()).digest()[:3])
        import_files(studio, [(name, png(colour=colour))])
        with studio.read() as s:
            image_id = s.scalar(select(Image.id).where(Image.original_name == name))
        annotate(studio, image_id, {1: True}, "system")
        exported = export_labels(studio, "csv")
        again = import_labels(studio, exported.encode(), "system")
        cell = next(c for row in csv.reader(io.StringIO(exported)) for c in row if c.endswith(name))
        return f"exported as the cell [{cell}]; re-imported: {again.summary()}"

    return run


def _class_round_trip(name: str):
    """Add a class named ``name``, label an image with it, export CSV and re-import the export."""

    def run(studio, ann, tmp):
        from mumic_core.store.classes import add_class
        from mumic_core.store.collection import annotate
        from mumic_core.store.label_io import export_labels, import_labels

        cls = add_class(studio, name)
        annotate(studio, 7, {cls.id: True}, "system")
        exported = export_labels(studio, "csv")
        cell = next(c for row in csv.reader(io.StringIO(exported)) for c in row if c.endswith(name))
        again = import_labels(studio, exported.encode(), "system")
        return f"exported as the cell {cell!r} (a spreadsheet shows text); re-imported: {again.summary()}"

    return run


# --- concurrency ------------------------------------------------------------------------------------


def _at_once(n: int, work: Callable[[int], str]) -> list[str]:
    """Run ``work(k)`` for k < n in n threads started together; each result or refusal."""
    barrier = threading.Barrier(n)

    def one(k: int) -> str:
        barrier.wait()
        try:
            return work(k)
        except Exception as exc:  # noqa: BLE001 - a refusal is an outcome
            return f"refused ({type(exc).__name__}): {exc}"

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def _same_folder_at_once(studio, ann, tmp):
    from mumic_core.store.collection import import_folder

    folder = tmp / "same-folder"
    folder.mkdir(exist_ok=True)
    for k in range(24):
        (folder / f"f{k:02d}.png").write_bytes(png(colour=(k, 200, 100)))
    before = counts(studio)["images"]
    outcomes = _at_once(3, lambda k: import_folder(studio, folder).summary())
    added = counts(studio)["images"] - before
    return f"{added} images added once in all ({'no duplicates' if added == 24 else 'WRONG COUNT'}): " + " / ".join(
        outcomes
    )


def _same_class_at_once(studio, ann, tmp):
    from mumic_core.store.classes import add_class

    outcomes = _at_once(4, lambda k: f"added {add_class(studio, 'zebra crossing').name!r}")
    won = sum(o.startswith("added") for o in outcomes)
    refused = sorted({o for o in outcomes if not o.startswith("added")})
    return f"{won} of 4 added it; the others: {'; '.join(refused)}"


def _undo_races_submit(studio, ann, tmp):
    from sqlalchemy import func

    from mumic_core.store.collection import annotate, undo_last_submission

    def work(k: int) -> str:
        if k % 2:
            return f"undid {undo_last_submission(ann, 'ann')}"
        return f"submitted {annotate(ann, 20 + k, {2: True, 3: False}, 'ann')} labels"

    outcomes = _at_once(8, work)
    with studio.read() as s:
        doubled = s.scalar(
            select(func.count()).select_from(
                select(Annotation.image_id, Annotation.class_id)
                .where(Annotation.is_current.is_(True))
                .group_by(Annotation.image_id, Annotation.class_id)
                .having(func.count() > 1)
                .subquery()
            )
        )
    failed = [o for o in outcomes if o.startswith("refused")]
    return (
        f"{len(outcomes) - len(failed)} of 8 went through{', ' + failed[0] if failed else ''}; "
        f"{doubled} image-class pairs with two current labels"
    )


def _sign_ins_at_once(studio, ann, tmp):
    from mumic_core.store.auth import sign_in

    outcomes = _at_once(8, lambda k: sign_in(studio, "ann", "correct horse battery") and "signed in")
    others = sorted({o for o in outcomes if o != "signed in"})
    return (
        f"{outcomes.count('signed in')} of 8 sign-ins at once got a session"
        + (f"; the others: {'; '.join(others)}" if others else "")
        + ("" if any("failed" in o for o in others) else "; no correct password was called a failed sign-in")
    )


# --- a full disk: a small tmpfs (mounted as root), or ENOSPC simulated where mounting is refused ----

SMALL_DISK = 2 * 2**20


@contextmanager
def _small_disk(folder: Path, fill_to: int = 0):
    """A 2 MiB filesystem at ``folder`` (a tmpfs) for the block; yields how it was made. Where
    mounting is not permitted (not root, a container without CAP_SYS_ADMIN), writes of more than
    2 MiB in all below ``folder`` fail with ENOSPC instead (os.fsync is patched: every atomic
    write in the product syncs before renaming). ``fill_to``: bytes taken by a filler file first."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={SMALL_DISK}", "tmpfs", str(folder)], capture_output=True
        ).returncode
        == 0
    )
    real_fsync = os.fsync

    def fsync_on_small_disk(fd: int) -> None:
        if (
            Path(os.readlink(f"/proc/self/fd/{fd}")).is_relative_to(folder)
            and sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) > SMALL_DISK
        ):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    if not mounted:
        os.fsync = fsync_on_small_disk
    try:
        if fill_to:
            with open(folder / "filler", "wb") as fh:
                fh.write(b"\0" * fill_to)
        yield "on a 2 MiB tmpfs" if mounted else "ENOSPC simulated (mounting a tmpfs was not permitted)"
    finally:
        os.fsync = real_fsync
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], check=False)


def _noise_png(seed: int, side: int = 180) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    return _save(PILImage.fromarray(pixels), "PNG")


def _partials(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if p.is_file() and (p.name.startswith(".") or "partial" in p.name)]


def _import_into_full_store(studio, ann, tmp):
    """Images imported until the image store's disk is full (about 120 kB each, 2 MiB disk)."""
    from dataclasses import replace

    from mumic_core.store.collection import import_files

    disk = tmp / "small-store"
    with _small_disk(disk) as how:
        small = replace(studio, settings=replace(studio.settings, storage_url=str(disk)))
        files = [(f"noise{k:02d}.png", _noise_png(1000 + k)) for k in range(30)]
        report = import_files(small, files)
        with studio.read() as s:
            rows = list(
                s.execute(
                    select(Image.original_name, Image.sha256, Image.relpath).where(
                        Image.original_name.in_([n for n, _ in files])
                    )
                )
            )
        complete = sum(
            (disk / "images" / rel).is_file()
            and hashlib.sha256((disk / "images" / rel).read_bytes()).hexdigest() == sha
            for _, sha, rel in rows
        )
        partials = _partials(disk)
        for _, _, rel in rows:  # kept in the real store before the small disk goes
            studio.store.storage.write_bytes(rel, (disk / "images" / rel).read_bytes())
    agree = "store and database agree" if complete == len(rows) == len(report.added) and not partials else "MISMATCH"
    return (
        f"{how}: {report.summary()}; stopped: {report.stopped}; {agree}: {len(rows)} new rows, {complete} "
        f"complete files, {len(partials)} partial files"
    )


def _export_into_full_disk(studio, ann, tmp):
    from click.testing import CliRunner

    from mumic_core.cli import main

    disk = tmp / "small-export"
    with _small_disk(disk, fill_to=SMALL_DISK - 16 * 2**10) as how:
        result = CliRunner().invoke(main, ["export", "labels", "--format", "json", "--out", str(disk / "labels.json")])
        left = sorted(p.name for p in disk.iterdir() if p.name != "filler")
    return f"{how}: exit status {result.exit_code}, {result.output.strip()!r}; files left: {left or 'none'}"


def _backup_into_full_disk(studio, ann, tmp):
    from mumic_core.store.backup import backup

    disk = tmp / "small-backup"
    with _small_disk(disk) as how:
        try:
            backup(studio, disk / "store.tar")
            outcome = "backup written"
        except Exception as exc:  # noqa: BLE001 - the refusal is the outcome
            outcome = f"refused ({type(exc).__name__}): {exc}"
        left = sorted(p.name for p in disk.iterdir())
    return f"{how}: {outcome}; files left: {left or 'none'}"


# --- interrupted processes --------------------------------------------------------------------------


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "mumic_core", *args]


def _cli_import_killed(studio, ann, tmp):
    """`python -m mumic_core import FOLDER` killed (SIGKILL) once its first batch is in the
    database, then run again."""
    folder = tmp / "killed-import"
    folder.mkdir(exist_ok=True)
    for k in range(700):
        (folder / f"k{k:03d}.png").write_bytes(_noise_png(5000 + k, side=24))
    before = counts(studio)["images"]
    proc = subprocess.Popen(
        _cli("import", str(folder), "--no-score"),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    while proc.poll() is None and counts(studio)["images"] < before + 64:
        time.sleep(0.01)
    killed = proc.poll() is None
    if killed:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    at_kill = counts(studio)["images"] - before
    again = subprocess.run(_cli("import", str(folder), "--no-score"), cwd=ROOT, capture_output=True, text=True)
    with studio.read() as s:
        names = list(s.scalars(select(Image.original_name).where(Image.original_name.like("k___.png"))))
    once = len(names) == len(set(names)) == 700
    return (
        f"{'killed' if killed else 'NOT KILLED (it finished first)'} with {at_kill} of 700 imported; run again: "
        f"{again.stdout.strip().splitlines()[0] if again.stdout.strip() else again.stderr.strip()[-200:]}; "
        f"{'each of the 700 files imported once' if once else f'WRONG: {len(names)} rows'}"
    )


def _label_import_interrupted(studio, ann, tmp):
    """Ctrl-C (KeyboardInterrupt) inside a labels import's write transaction, after its rows were
    added; then the same file imported again."""
    from mumic_core.store import collection
    from mumic_core.store.collection import undo_last_submission
    from mumic_core.store.label_io import import_labels

    rows = "filename,labels\n" + "".join(f"scene_{k:05d}.png,triangle|red object\n" for k in range(30, 50))
    real = collection._write_statements

    def interrupted(*args, **kwargs):
        real(*args, **kwargs)
        raise KeyboardInterrupt("Ctrl-C")

    before = counts(studio)["annotations"]
    collection._write_statements = interrupted
    try:
        import_labels(studio, rows.encode(), "system")
        first = "not interrupted"
    except KeyboardInterrupt:
        first = f"interrupted: {counts(studio)['annotations'] - before} label rows kept"
    finally:
        collection._write_statements = real
    again = import_labels(studio, rows.encode(), "system")
    twice = import_labels(studio, rows.encode(), "system")
    undone = undo_last_submission(studio, "system") is not None
    after_undo = counts(studio)["annotations"]  # undo keeps rows (not current): the count stays
    return (
        f"{first}; imported again: {again.summary()}; a third time: {twice.images_changed} changed; "
        f"undo {'takes the import back in one step' if undone else 'FOUND NOTHING'} ({after_undo - before} "
        "rows kept in the history)"
    )


def _worker_killed_while_scoring(studio, ann, tmp):
    """The worker (a real huey consumer) killed with SIGKILL while it scores newly imported
    images, then started again: the new images are all scored and reach Review."""
    from mumic_core.pipeline.scoring import unscored_count
    from mumic_core.services.training import request_scoring_of_new_images
    from mumic_core.store.collection import import_files
    from mumic_core.store.registry import active_version

    import_files(studio, [(f"w{k:03d}.png", _noise_png(9000 + k, side=96)) for k in range(400)])
    version = active_version(studio)
    waiting = unscored_count(studio, version.id)
    env = {**os.environ, "MUMIC_EMBEDDING_CHUNK": "32", "PYTHONPATH": str(ROOT)}
    worker = [
        sys.executable,
        "-m",
        "huey.bin.huey_consumer",
        "mumic_core.pipeline.worker.huey",
        "--workers",
        "1",
        "--max-delay",
        "0.5",
    ]
    proc = subprocess.Popen(
        worker, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        request_scoring_of_new_images(studio)
        deadline = time.monotonic() + 300
        embedded = Path(studio.settings.embedding_dir)
        while time.monotonic() < deadline and len(list(embedded.rglob("part-*-ids.npy"))) < 3:
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        left_at_kill = unscored_count(studio, version.id)
        proc = subprocess.Popen(
            worker, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        while time.monotonic() < deadline and unscored_count(studio, version.id):
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    left = unscored_count(studio, version.id)
    return (
        f"{waiting} images waited for scores; {left_at_kill} still waited when the worker was killed; after "
        f"it started again: {'all scored, in the Review queue' if left == 0 else f'{left} NEVER SCORED'}"
    )


@dataclass
class Case:
    area: str
    what: str
    run: Callable  # (studio, annotator studio, tmp folder) -> outcome text; raises when refused
    expect: str | tuple[str, ...]  # phrases the outcome (or the refusal) must all contain
    slow: bool = False  # real processes started and killed (tens of seconds): the full run only, not --smoke


def _upload(name: str, data: bytes):
    def run(studio, ann, tmp):
        from mumic_core.store.collection import import_files

        report = import_files(studio, [(name, data)])
        if report.added:
            return f"imported as {name!r}"
        return "; ".join(r for _, r in report.rejected + report.duplicates)

    return run


def _traversal_name(studio, ann, tmp):
    from mumic_core.store.collection import import_files

    import_files(studio, [("../../outside.png", png(colour=(1, 2, 3)))])
    escaped = (studio.settings.home.parent / "outside.png").exists() or (tmp.parent / "outside.png").exists()
    stored = sorted(p.relative_to(studio.settings.home).as_posix() for p in studio.settings.image_dir.rglob("*.png"))
    return (
        f"stored content-addressed ({'ESCAPED' if escaped else 'nothing written outside the store'}); "
        f"{len(stored)} files under images/"
    )


def _duplicate(studio, ann, tmp):
    from mumic_core.store.collection import import_files

    data = png(colour=(9, 9, 9))
    report = import_files(studio, [("a.png", data), ("b.png", data)])
    return report.summary()


def _folder(path_of: Callable[[Path], Path]):
    def run(studio, ann, tmp):
        from mumic_core.store.collection import import_folder

        lead = studio.as_actor(_lead())
        return import_folder(lead, path_of(tmp)).summary()

    return run


def _lead():
    from mumic_core.store.auth import Actor

    return Actor("lead", "admin")


def _symlink_out(studio, ann, tmp):
    from mumic_core.store.collection import import_folder

    folder = studio.settings.import_root / "linked"
    folder.mkdir(parents=True, exist_ok=True)
    secret = tmp / "secret.png"
    secret.write_bytes(png(colour=(5, 6, 7)))
    if not (folder / "link.png").exists():
        os.symlink(secret, folder / "link.png")
    report = import_folder(studio.as_actor(_lead()), folder)
    return report.summary() + (
        "; IMPORTED a file from outside the folder"
        if report.added
        else "; the symlink to a file outside the folder was skipped"
    )


def _class(name: str, prompts=()):
    def run(studio, ann, tmp):
        from mumic_core.store.classes import add_class

        return f"added {add_class(studio, name, list(prompts)).name!r}"

    return run


def _labels_csv(content: bytes):
    def run(studio, ann, tmp):
        from mumic_core.store.label_io import import_labels

        path = tmp / "labels.csv"
        path.write_bytes(content)
        report = import_labels(studio, path, "system")
        return f"{report.images_labelled} rows imported; " + "; ".join(report.errors)

    return run


def _classes_csv(content: bytes):
    def run(studio, ann, tmp):
        from mumic_core.store.classes import import_class_csv

        path = tmp / "classes.csv"
        path.write_bytes(content)
        added, refused = import_class_csv(studio, path)
        return f"added {added}; refused: " + "; ".join(refused)

    return run


def _sign_in(name: str, password: str):
    def run(studio, ann, tmp):
        from mumic_core.store.auth import sign_in

        sign_in(studio, name, password)
        return "signed in"

    return run


def _forged_token(studio, ann, tmp):
    from mumic_core.store.auth import actor_for_token

    return f"token accepted as {actor_for_token(studio, 'A' * 43)}"


def _annotator_adds_class(studio, ann, tmp):
    from mumic_core.store.classes import add_class

    add_class(ann, "sneaky")
    return "added"


def _label_as_other(studio, ann, tmp):
    from mumic_core.store.collection import annotate

    annotate(ann, 1, {1: True}, "bob")
    return "labelled"


def _stale(studio, ann, tmp):
    from mumic_core.services.review import submit
    from mumic_core.store.auth import Actor
    from mumic_core.store.queue import image_views
    from mumic_core.store.registry import active_version

    version = active_version(studio).id
    view = image_views(ann, [2], version)[0]
    bob = studio.as_actor(Actor("bob", "annotator"))
    submit(bob, image_views(bob, [2], version)[0], {1}, set(), "bob")
    submit(ann, view, set(), {1}, "ann")
    return "overwrote bob's label"


def _bad_backup(studio, ann, tmp):
    from mumic_core.store.backup import restore

    archive = tmp / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        for name in ("manifest.json", "mumic.db", "../../etc/cron.d/evil"):
            info = tarfile.TarInfo(name)
            info.size = 2
            tar.addfile(info, io.BytesIO(b"{}"))
    restore(archive, tmp / "restore-here")
    return "restored"


def _huge_file(studio, ann, tmp):
    from mumic_core.store.collection import import_files

    report = import_files(studio, [("huge.png", png() + b"\0" * studio.settings.max_image_bytes)])
    return "; ".join(r for _, r in report.rejected) or "imported"


CASES = [
    Case("upload", "empty file", _upload("empty.png", b""), "empty file"),
    Case("upload", "text file named .jpg", _upload("notes.jpg", b"just some text\n" * 10), "not an image"),
    Case(
        "upload",
        "SVG with a script",
        _upload("x.svg", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'),
        "unsupported format SVG",
    ),
    Case(
        "upload", "HTML page named .png", _upload("page.png", b"<html><body><script>alert(1)</script>"), "not an image"
    ),
    Case("upload", "PDF", _upload("doc.pdf", b"%PDF-1.4\n%\xe2\xe3\n1 0 obj\n"), "unsupported format PDF"),
    Case(
        "upload",
        "HEIC photo",
        _upload("phone.heic", b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + b"\0" * 64),
        "unsupported format HEIC",
    ),
    Case("upload", "truncated PNG", _upload("cut.png", png()[:60]), "truncated or corrupt"),
    Case("upload", "decompression bomb (30000 x 30000 PNG of a few kB)", _upload("bomb.png", bomb()), "pixel limit"),
    Case("upload", "file over the 64 MiB limit", _huge_file, "file too large"),
    Case(
        "upload",
        "PNG with an HTML page appended (polyglot)",
        _upload("poly.png", png() + b"<html><script>alert(1)</script></html>"),
        "polyglot",
    ),
    Case(
        "upload", "JPEG with a ZIP archive appended (GIFAR-style)", _upload("poly.jpg", jpeg() + zipped()), "polyglot"
    ),
    Case("upload", "file name with ../ (path traversal)", _traversal_name, "nothing written outside"),
    Case("upload", "the same image twice under two names", _duplicate, "duplicate"),
    Case(
        "folder import",
        "a folder outside the import root (from the browser)",
        _folder(lambda tmp: Path("/etc")),
        "only folders in the import folder",
    ),
    Case(
        "folder import",
        "a path with .. climbing out of the import root",
        _folder(lambda tmp: Path(str(tmp)) / "home" / "incoming" / ".." / ".."),
        "only folders in the import folder",
    ),
    Case("folder import", "a symlink inside the folder pointing outside it", _symlink_out, "was skipped"),
    Case("classes", "empty class name", _class("   "), "empty"),
    Case("classes", "duplicate name up to case and spaces", _class("  CIRCLE "), "already exists"),
    Case("classes", "HTML/script in a class name", _class("<img src=x onerror=alert(1)>"), "may not contain"),
    Case("classes", "the label separator | in a class name", _class("cat|dog"), "may not contain"),
    Case("classes", "class name of 81 characters", _class("x" * 81), "the limit is 80"),
    Case("classes", "control character in a class name", _class("bad\x07name"), "control characters"),
    Case("classes", "prompt of 301 characters", _class("longprompt", ["p" * 301]), "longer than 300"),
    Case("label CSV", "no header row", _labels_csv(b"x.png,circle\n"), "expected a header"),
    Case(
        "label CSV",
        "unknown class and unknown image, good rows kept",
        _labels_csv(b"filename,labels\nscene_00000.png,circle\nscene_00001.png,unicorn\nnope.png,circle\n"),
        "line 3: unknown class 'unicorn'; line 4: unknown image",
    ),
    Case(
        "label CSV",
        "a row that is not UTF-8",
        _labels_csv(b"filename,labels\nscene_00002.png,circle\nscene_\xff\xfe.png,circle\n"),
        "line 3: not UTF-8",
    ),
    Case(
        "label CSV",
        "a row with too many fields",
        _labels_csv(b"filename,labels\nscene_00003.png,circle,extra\n"),
        "line 2: 3 fields",
    ),
    Case(
        "label CSV",
        "a 20,000-character field",
        _labels_csv(b"filename,labels\nscene_00004.png," + b"a" * 20_000 + b"\n"),
        "a field of 20,000 characters",
    ),
    Case("label CSV", "a NUL byte in a row", _labels_csv(b"filename,labels\nscene_00005.png,cir\x00cle\n"), "line 2"),
    Case(
        "label CSV",
        "a multi-line quoted field: line numbers stay right",
        _labels_csv(b'filename,labels\n"scene_00006.png","circle\nsquare"\nnope.png,circle\n'),
        "line 4: unknown image",
    ),
    Case(
        "class CSV",
        "bad rows among good ones",
        _classes_csv(b"name,prompt\nkite,a kite\n,empty name\nkite2,\xff\xfe\n"),
        "line 3: no class name",
    ),
    Case("accounts", "wrong password", _sign_in("ann", "not her password"), "wrong username or password"),
    Case("accounts", "unknown user", _sign_in("mallory", "whatever password"), "wrong username or password"),
    Case("accounts", "a forged session token", _forged_token, "token accepted as None"),
    Case("roles", "an annotator adds a class (service layer, no UI)", _annotator_adds_class, "may not change classes"),
    Case("roles", "an annotator labels in someone else's name", _label_as_other, "cannot act as 'bob'"),
    Case("concurrency", "submitting a view someone else changed meanwhile", _stale, "by bob at"),
    Case("backup", "a backup archive with a ../ entry", _bad_backup, "unexpected entries"),
    # formats: each accepted one is shown as the model saw it, first frame, upright, 8-bit RGB
    Case(
        "format",
        "CMYK JPEG (print workflow)",
        _upload_shown("cmyk.jpg", _save(PILImage.new("CMYK", (40, 30), (0, 200, 200, 0)), "JPEG")),
        "Review shows it as RGB 40 x 30",
    ),
    Case(
        "format",
        "1-bit PNG",
        _upload_shown("onebit.png", _save(PILImage.new("1", (40, 30), 1), "PNG")),
        "Review shows it as RGB 40 x 30",
    ),
    Case(
        "format",
        "palette PNG with a transparent colour",
        _upload_shown("palette.png", _save(PILImage.new("P", (40, 30), 3), "PNG", transparency=3)),
        "Review shows it as RGB 40 x 30",
    ),
    Case(
        "format",
        "animated GIF (4 frames)",
        _upload_shown("anim.gif", _animated("GIF")),
        "Review shows it as RGB 40 x 30",
    ),
    Case(
        "format",
        "animated PNG (APNG)",
        _upload_shown("anim.apng.png", _animated("PNG")),
        "imported as PNG 40 x 30; Review shows it as RGB",
    ),
    Case("format", "animated WebP", _upload_shown("anim.webp", _animated("WEBP")), "imported as WEBP 40 x 30"),
    Case(
        "format",
        "WebP animation bomb: 12 frames of 4000 x 4000 (192 megapixels in all)",
        _upload_shown("bomb.webp", lambda: _animated("WEBP", 12, (4000, 4000), quality=1, method=0)),
        "imported as WEBP 4000 x 4000; Review shows it as RGB 512 x 512",
    ),
    Case(
        "format",
        "16-bit greyscale TIFF",
        _upload_shown("deep.tif", _numpy_tiff(np.arange(1200, dtype=np.uint16).reshape(30, 40) * 50)),
        "Review shows it as RGB 40 x 30",
    ),
    Case(
        "format",
        "32-bit float TIFF holding NaN and 10^6",
        _upload_shown(
            "float.tif",
            _numpy_tiff(
                np.where(np.eye(30, 40) > 0, np.nan, np.linspace(-5, 1e6, 1200).reshape(30, 40)).astype(np.float32)
            ),
        ),
        "Review shows it as RGB 40 x 30",
    ),
    Case("format", "multi-page TIFF", _upload_shown("pages.tif", _animated("TIFF")), "imported as TIFF 40 x 30"),
    Case(
        "format",
        "progressive JPEG",
        _upload_shown("progressive.jpg", _save(PILImage.new("RGB", (40, 30)), "JPEG", progressive=True)),
        "Review shows it as RGB 40 x 30",
    ),
    Case(
        "format",
        "JPEG with EXIF orientation 6 (a phone held upright)",
        _upload_shown("rotated.jpg", _with_exif_orientation(6)),
        "imported as JPEG 30 x 40; Review shows it as RGB 30 x 40",
    ),
    Case(
        "format",
        "JPEG with an impossible EXIF orientation (9)",
        _upload_shown("orient9.jpg", _with_exif_orientation(9)),
        "Review shows it as RGB 40 x 30",
    ),
    Case(
        "format",
        "JPEG whose EXIF block is garbage",
        _upload_shown(
            "badexif.jpg",
            _save(PILImage.new("RGB", (40, 30)), "JPEG", exif=b"Exif\0\0MM\0*\0\0\0\x08\xff\xff" + b"\x01" * 40),
        ),
        "Review shows it as RGB 40 x 30",
    ),
    Case(
        "format",
        "PNG with a bad header checksum (CRC)",
        _upload_shown("badcrc.png", _png_field(16, 40, False)[:29] + b"\0\0\0\0" + _png_field(16, 40, False)[33:]),
        "a damaged PNG file",
    ),
    Case(
        "format",
        "PNG whose header says 0 pixels wide",
        _upload_shown("zero.png", _png_field(16, 0, True)),
        "a damaged PNG file",
    ),
    Case(
        "format",
        "PNG with 8 MiB of compressed text (a text-chunk bomb)",
        _upload_shown("text.png", _huge_text_chunk()),
        "truncated or corrupt image data",
    ),
    Case(
        "format",
        "BMP with a negative height (rows top-down)",
        _upload_shown("topdown.bmp", _bottom_up_bmp_negated()),
        "imported as BMP 40 x 30",
    ),
    Case(
        "format",
        "JPEG named .png (the extension lies)",
        _upload_shown("liar.png", _save(PILImage.new("RGB", (40, 30), (1, 2, 250)), "JPEG")),
        "imported as JPEG",
    ),
    # encodings and sizes of labels files
    Case(
        "label file",
        "UTF-16 CSV with a byte-order mark (a spreadsheet's 'Unicode text')",
        _labels_csv("filename,labels\nscene_00010.png,circle\n".encode("utf-16")),
        "1 rows imported",
    ),
    Case(
        "label file",
        "UTF-16 CSV without a byte-order mark",
        _labels_csv("filename,labels\nscene_00010.png,circle\n".encode("utf-16-le")),
        "Save it as CSV UTF-8",
    ),
    Case(
        "label file",
        "CSV with a UTF-8 byte-order mark",
        _labels_csv(b"\xef\xbb\xbffilename,labels\nscene_00011.png,square\n"),
        "1 rows imported",
    ),
    Case(
        "label file",
        "CSV with old-Mac line endings (CR only)",
        _labels_csv(b"filename,labels\rscene_00012.png,circle\rscene_00013.png,square\r"),
        "2 rows imported",
    ),
    Case(
        "label file",
        "a Latin-1 class name among UTF-8 rows",
        _labels_csv("filename,labels\nscene_00014.png,circle\nscene_00015.png,caf\xe9\n".encode("latin-1")),
        ("1 rows imported", "line 3: not UTF-8"),
    ),
    Case(
        "label file",
        "the labels column twice in the header",
        _labels_csv(b"filename,labels,labels\nscene_00016.png,circle,square\n"),
        "appears twice",
    ),
    Case("label file", "a JSON labels file that is a string", _labels_csv(b'"labels"'), "expected a JSON object"),
    Case("label file", "a JSON labels file that is a number", _labels_csv(b"42\n"), "expected a JSON object"),
    Case(
        "label file", "JSON nested 100 levels deep", _labels_csv(b"[" * 100 + b"]" * 100), "item 1: not a JSON object"
    ),
    Case(
        "label file",
        "JSON nested 100,000 levels deep",
        _labels_csv(b"[" * 100_000 + b"]" * 100_000),
        "nested too deeply",
    ),
    Case(
        "label file",
        "a 65 MiB JSON labels file",
        _labels_csv(b'{"images": [], "pad": "' + b"x" * (65 * 2**20) + b'"}'),
        "the limit is 64 MiB",
    ),
    Case(
        "label file",
        "a labels CSV of 100,000 rows",
        _timed_labels_csv(
            lambda: (
                "filename,labels\n" + "".join(f"scene_{k % 60:05d}.png,circle\n" for k in range(100_000))
            ).encode(),
            10,
        ),
        ("60 images labelled", "under 10 s"),
    ),
    # names
    Case("names", "a file named with emoji", _named_then_labelled("🐱 at 🌅.png", "🐱 at 🌅.png"), "1 images labelled"),
    Case(
        "names",
        "a decomposed (NFD, macOS) file name, named composed (NFC) in the CSV",
        _named_then_labelled(
            unicodedata.normalize("NFD", "café crème.png"), unicodedata.normalize("NFC", "café crème.png")
        ),
        "1 images labelled",
    ),
    Case("names", "a Windows reserved name (CON.png)", _named_then_labelled("CON.png", "CON.png"), "1 images labelled"),
    Case(
        "names",
        "a file name of 600 characters",
        _named_then_labelled("n" * 596 + ".png", "n" * 596 + ".png"),
        "the limit is 512",
    ),
    Case(
        "names",
        "a file name with a newline, exported and re-imported",
        _round_trip_name("two\nlines.png"),
        "(0 changed, 0 labels added)",
    ),
    Case(
        "names",
        "a file name that is a formula (=HYPERLINK(...)), exported and re-imported",
        _round_trip_name('=HYPERLINK("http://x.example","open").png'),
        ("cell ['=HYPERLINK", "(0 changed, 0 labels added)"),
    ),
    Case(
        "names",
        "a class name in full-width letters (ｃｉｒｃｌｅ, NFKC-equal to circle)",
        _class("ｃｉｒｃｌｅ"),
        "a class named 'circle' already exists",
    ),
    Case(
        "names",
        "a class named like a formula (=1+1), exported and re-imported",
        _class_round_trip("=1+1"),
        ('"\'=1+1"', "(0 changed, 0 labels added)"),
    ),
    # concurrency
    Case("concurrency", "three imports of the same folder at once", _same_folder_at_once, "no duplicates"),
    Case(
        "concurrency",
        "four people add the same class at once",
        _same_class_at_once,
        "1 of 4 added it; the others: refused (ClassError): a class named 'zebra crossing' already exists",
    ),
    Case(
        "concurrency",
        "undo racing submits of the same person",
        _undo_races_submit,
        ("8 of 8 went through", "0 image-class pairs with two current labels"),
    ),
    Case(
        "concurrency",
        "eight sign-ins of one person at once (correct password)",
        _sign_ins_at_once,
        "no correct password was called a failed sign-in",
    ),
    # a full disk
    Case(
        "disk full",
        "images imported until the image store's disk is full",
        _import_into_full_store,
        ("could not be written (No space left on device)", "store and database agree"),
    ),
    Case(
        "disk full",
        "a labels export (CLI) into a full disk",
        _export_into_full_disk,
        ("exit status 1", "error: ", "No space left on device", "files left: none"),
    ),
    Case(
        "disk full",
        "a backup into a full disk",
        _backup_into_full_disk,
        ("cannot write the backup", "files left: none"),
    ),
    # interrupted processes
    Case(
        "interrupted",
        "a CLI folder import killed (SIGKILL) mid-way, then run again",
        _cli_import_killed,
        ("killed with", "each of the 700 files imported once"),
    ),
    Case(
        "interrupted",
        "a labels import interrupted (Ctrl-C) inside its write, then run again",
        _label_import_interrupted,
        ("interrupted: 0 label rows kept", "a third time: 0 changed", "takes the import back in one step"),
    ),
    Case(
        "interrupted",
        "the worker killed (SIGKILL) while scoring 400 new images, then started again",
        _worker_killed_while_scoring,
        "all scored, in the Review queue",
        slow=True,
    ),
]


def counts(studio) -> dict[str, int]:
    from sqlalchemy import func, select

    from db.models import Annotation, Image, LabelClass, User

    with studio.read() as s:
        return {
            m.__tablename__: s.scalar(select(func.count()).select_from(m))
            for m in (Image, LabelClass, Annotation, User)
        }


def run_case(case: Case, studio, ann, tmp: Path) -> tuple[str, bool]:
    """(outcome, whether it matched the expectation)."""
    try:
        outcome = case.run(studio, ann, tmp)
    except Exception as exc:  # noqa: BLE001 - every refusal is reported as what a person would read
        outcome = f"refused ({type(exc).__name__}): {exc}"
    phrases = (case.expect,) if isinstance(case.expect, str) else case.expect
    return outcome, all(phrase in outcome for phrase in phrases)


def demo_store(home: Path):
    """A demo store (60 images, 20 classes) with an annotator account 'ann'."""
    for key in [k for k in os.environ if k.startswith("MUMIC_")]:
        del os.environ[key]
    os.environ["MUMIC_HOME"] = str(home)  # no weights there: the small built-in model, offline
    os.environ.update({"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "1"})
    from mumic_core.config import load_settings
    from mumic_core.pipeline.lifecycle import ensure_base_version
    from mumic_core.pipeline.scoring import score_collection
    from mumic_core.services.demo import seed_demo
    from mumic_core.store.auth import SYSTEM, actor_for_token, add_user, sign_in
    from mumic_core.store.studio import open_studio

    studio = open_studio(load_settings(), actor=SYSTEM)
    base = ensure_base_version(studio)
    seed_demo(studio, n_images=60)
    score_collection(studio, base)
    add_user(studio, "ann", "correct horse battery")
    return studio, studio.as_actor(actor_for_token(studio, sign_in(studio, "ann", "correct horse battery")))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bad_inputs.md")
    add_smoke_option(ap)
    args = ap.parse_args()
    if args.smoke is not None:
        args.out = smoke_folder(args.smoke, "bad_inputs") / "bad_inputs.md"
    with tempfile.TemporaryDirectory() as tmp:
        studio, ann = demo_store(Path(tmp) / "home")
        lines = [
            "# Bad inputs",
            "",
            "Each case runs against a demo store through the service layer "
            "(`.venv/bin/python benchmarks/bad_inputs.py`; checked by tests/test_bad_inputs.py).",
            "",
            "| # | area | input | outcome | as expected |",
            "|---|---|---|---|---|",
        ]
        cases = [c for c in CASES if not (args.smoke is not None and c.slow)]
        for k, case in enumerate(cases, 1):
            outcome, ok = run_case(case, studio, ann, Path(tmp))
            lines.append(
                f"| {k} | {case.area} | {case.what} | {' '.join(outcome.replace('|', '¦').split())[:420]} | "
                f"{'yes' if ok else '**NO**'} |"
            )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
    check_written(args.out)
    rows = [line for line in args.out.read_text().splitlines() if line.startswith("| ") and line[2:3].isdigit()]
    if len(rows) != len(cases):
        raise SystemExit(f"malformed result: {args.out} has {len(rows)} rows for {len(cases)} cases")


if __name__ == "__main__":
    main()
