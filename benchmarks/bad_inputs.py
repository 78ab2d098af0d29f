"""Bad inputs against a real store: each is refused with a clear message and loses nothing.

    .venv/bin/python benchmarks/bad_inputs.py [--out FILE.md] [--smoke [DIR]]

Writes benchmarks/results/bad_inputs.md. tests/test_bad_inputs.py runs the same cases and checks
every expected outcome. ``--smoke``: every case (they are small already), the table written
under DIR, and checked to have one row per case.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PIL import Image as PILImage  # noqa: E402

from benchmarks._smoke import add_smoke_option, check_written, smoke_folder  # noqa: E402


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


@dataclass
class Case:
    area: str
    what: str
    run: Callable  # (studio, annotator studio, tmp folder) -> outcome text; raises when refused
    expect: str  # a phrase the outcome (or the refusal) must contain


def _upload(name: str, data: bytes):
    def run(studio, ann, tmp):
        from mumic_core.collection import import_files

        report = import_files(studio, [(name, data)])
        if report.added:
            return f"imported as {name!r}"
        return "; ".join(r for _, r in report.rejected + report.duplicates)
    return run


def _traversal_name(studio, ann, tmp):
    from mumic_core.collection import import_files

    import_files(studio, [("../../outside.png", png(colour=(1, 2, 3)))])
    escaped = (studio.settings.home.parent / "outside.png").exists() or (tmp.parent / "outside.png").exists()
    stored = sorted(p.relative_to(studio.settings.home).as_posix() for p in studio.settings.image_dir.rglob("*.png"))
    return f"stored content-addressed ({'ESCAPED' if escaped else 'nothing written outside the store'}); " \
           f"{len(stored)} files under images/"


def _duplicate(studio, ann, tmp):
    from mumic_core.collection import import_files

    data = png(colour=(9, 9, 9))
    report = import_files(studio, [("a.png", data), ("b.png", data)])
    return report.summary()


def _folder(path_of: Callable[[Path], Path]):
    def run(studio, ann, tmp):
        from mumic_core.collection import import_folder

        lead = studio.as_actor(_lead())
        return import_folder(lead, path_of(tmp)).summary()
    return run


def _lead():
    from mumic_core.auth import Actor

    return Actor("lead", "admin")


def _symlink_out(studio, ann, tmp):
    from mumic_core.collection import import_folder

    folder = studio.settings.import_root / "linked"
    folder.mkdir(parents=True, exist_ok=True)
    secret = tmp / "secret.png"
    secret.write_bytes(png(colour=(5, 6, 7)))
    if not (folder / "link.png").exists():
        os.symlink(secret, folder / "link.png")
    report = import_folder(studio.as_actor(_lead()), folder)
    return report.summary() + ("; IMPORTED a file from outside the folder" if report.added
                               else "; the symlink to a file outside the folder was skipped")


def _class(name: str, prompts=()):
    def run(studio, ann, tmp):
        from mumic_core.classes import add_class

        return f"added {add_class(studio, name, list(prompts)).name!r}"
    return run


def _labels_csv(content: bytes):
    def run(studio, ann, tmp):
        from mumic_core.label_io import import_labels

        path = tmp / "labels.csv"
        path.write_bytes(content)
        report = import_labels(studio, path, "system")
        return f"{report.images_labelled} rows imported; " + "; ".join(report.errors)
    return run


def _classes_csv(content: bytes):
    def run(studio, ann, tmp):
        from mumic_core.classes import import_class_csv

        path = tmp / "classes.csv"
        path.write_bytes(content)
        added, refused = import_class_csv(studio, path)
        return f"added {added}; refused: " + "; ".join(refused)
    return run


def _sign_in(name: str, password: str):
    def run(studio, ann, tmp):
        from mumic_core.auth import sign_in

        sign_in(studio, name, password)
        return "signed in"
    return run


def _forged_token(studio, ann, tmp):
    from mumic_core.auth import actor_for_token

    return f"token accepted as {actor_for_token(studio, 'A' * 43)}"


def _annotator_adds_class(studio, ann, tmp):
    from mumic_core.classes import add_class

    add_class(ann, "sneaky")
    return "added"


def _label_as_other(studio, ann, tmp):
    from mumic_core.collection import annotate

    annotate(ann, 1, {1: True}, "bob")
    return "labelled"


def _stale(studio, ann, tmp):
    from mumic_core.auth import Actor
    from mumic_core.registry import active_version
    from mumic_core.review import image_views, submit

    version = active_version(studio).id
    view = image_views(ann, [2], version)[0]
    bob = studio.as_actor(Actor("bob", "annotator"))
    submit(bob, image_views(bob, [2], version)[0], {1}, set(), "bob")
    submit(ann, view, set(), {1}, "ann")
    return "overwrote bob's label"


def _bad_backup(studio, ann, tmp):
    from mumic_core.backup import restore

    archive = tmp / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        for name in ("manifest.json", "mumic.db", "../../etc/cron.d/evil"):
            info = tarfile.TarInfo(name)
            info.size = 2
            tar.addfile(info, io.BytesIO(b"{}"))
    restore(archive, tmp / "restore-here")
    return "restored"


def _huge_file(studio, ann, tmp):
    from mumic_core.collection import import_files

    report = import_files(studio, [("huge.png", png() + b"\0" * studio.settings.max_image_bytes)])
    return "; ".join(r for _, r in report.rejected) or "imported"


CASES = [
    Case("upload", "empty file", _upload("empty.png", b""), "empty file"),
    Case("upload", "text file named .jpg", _upload("notes.jpg", b"just some text\n" * 10), "not an image"),
    Case("upload", "SVG with a script", _upload("x.svg", b'<svg xmlns="http://www.w3.org/2000/svg">'
                                               b"<script>alert(1)</script></svg>"), "unsupported format SVG"),
    Case("upload", "HTML page named .png", _upload("page.png", b"<html><body><script>alert(1)</script>"),
         "not an image"),
    Case("upload", "PDF", _upload("doc.pdf", b"%PDF-1.4\n%\xe2\xe3\n1 0 obj\n"), "unsupported format PDF"),
    Case("upload", "HEIC photo", _upload("phone.heic", b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + b"\0" * 64),
         "unsupported format HEIC"),
    Case("upload", "truncated PNG", _upload("cut.png", png()[:60]), "truncated or corrupt"),
    Case("upload", "decompression bomb (30000 x 30000 PNG of a few kB)", _upload("bomb.png", bomb()), "pixel limit"),
    Case("upload", "file over the 64 MiB limit", _huge_file, "file too large"),
    Case("upload", "PNG with an HTML page appended (polyglot)",
         _upload("poly.png", png() + b"<html><script>alert(1)</script></html>"), "polyglot"),
    Case("upload", "JPEG with a ZIP archive appended (GIFAR-style)", _upload("poly.jpg", jpeg() + zipped()),
         "polyglot"),
    Case("upload", "file name with ../ (path traversal)", _traversal_name, "nothing written outside"),
    Case("upload", "the same image twice under two names", _duplicate, "duplicate"),
    Case("folder import", "a folder outside the import root (from the browser)",
         _folder(lambda tmp: Path("/etc")), "only folders in the import folder"),
    Case("folder import", "a path with .. climbing out of the import root",
         _folder(lambda tmp: Path(str(tmp)) / "home" / "incoming" / ".." / ".."), "only folders in the import folder"),
    Case("folder import", "a symlink inside the folder pointing outside it", _symlink_out, "was skipped"),
    Case("classes", "empty class name", _class("   "), "empty"),
    Case("classes", "duplicate name up to case and spaces", _class("  CIRCLE "), "already exists"),
    Case("classes", "HTML/script in a class name", _class("<img src=x onerror=alert(1)>"), "may not contain"),
    Case("classes", "the label separator | in a class name", _class("cat|dog"), "may not contain"),
    Case("classes", "class name of 81 characters", _class("x" * 81), "the limit is 80"),
    Case("classes", "control character in a class name", _class("bad\x07name"), "control characters"),
    Case("classes", "prompt of 301 characters", _class("longprompt", ["p" * 301]), "longer than 300"),
    Case("label CSV", "no header row", _labels_csv(b"x.png,circle\n"), "expected a header"),
    Case("label CSV", "unknown class and unknown image, good rows kept",
         _labels_csv(b"filename,labels\nscene_00000.png,circle\nscene_00001.png,unicorn\nnope.png,circle\n"),
         "line 3: unknown class 'unicorn'; line 4: unknown image"),
    Case("label CSV", "a row that is not UTF-8",
         _labels_csv(b"filename,labels\nscene_00002.png,circle\nscene_\xff\xfe.png,circle\n"), "line 3: not UTF-8"),
    Case("label CSV", "a row with too many fields",
         _labels_csv(b"filename,labels\nscene_00003.png,circle,extra\n"), "line 2: 3 fields"),
    Case("label CSV", "a 20,000-character field",
         _labels_csv(b"filename,labels\nscene_00004.png," + b"a" * 20_000 + b"\n"), "a field of 20,000 characters"),
    Case("label CSV", "a NUL byte in a row", _labels_csv(b"filename,labels\nscene_00005.png,cir\x00cle\n"), "line 2"),
    Case("label CSV", "a multi-line quoted field: line numbers stay right",
         _labels_csv(b'filename,labels\n"scene_00006.png","circle\nsquare"\nnope.png,circle\n'), "line 4: unknown image"),
    Case("class CSV", "bad rows among good ones",
         _classes_csv(b"name,prompt\nkite,a kite\n,empty name\nkite2,\xff\xfe\n"), "line 3: no class name"),
    Case("accounts", "wrong password", _sign_in("ann", "not her password"), "wrong username or password"),
    Case("accounts", "unknown user", _sign_in("mallory", "whatever password"), "wrong username or password"),
    Case("accounts", "a forged session token", _forged_token, "token accepted as None"),
    Case("roles", "an annotator adds a class (service layer, no UI)", _annotator_adds_class, "may not change classes"),
    Case("roles", "an annotator labels in someone else's name", _label_as_other, "cannot act as 'bob'"),
    Case("concurrency", "submitting a view someone else changed meanwhile", _stale, "by bob at"),
    Case("backup", "a backup archive with a ../ entry", _bad_backup, "unexpected entries"),
]


def counts(studio) -> dict[str, int]:
    from sqlalchemy import func, select

    from db.models import Annotation, Image, LabelClass, User

    with studio.read() as s:
        return {m.__tablename__: s.scalar(select(func.count()).select_from(m)) for m in (Image, LabelClass,
                                                                                          Annotation, User)}


def run_case(case: Case, studio, ann, tmp: Path) -> tuple[str, bool]:
    """(outcome, whether it matched the expectation)."""
    try:
        outcome = case.run(studio, ann, tmp)
    except Exception as exc:  # noqa: BLE001 - every refusal is reported as what a person would read
        outcome = f"refused ({type(exc).__name__}): {exc}"
    return outcome, case.expect in outcome


def demo_store(home: Path):
    """A demo store (60 images, 20 classes) with an annotator account 'ann'."""
    for key in [k for k in os.environ if k.startswith("MUMIC_")]:
        del os.environ[key]
    os.environ["MUMIC_HOME"] = str(home)  # no weights there: the small built-in model, offline
    os.environ.update({"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "1"})
    from mumic_core.auth import SYSTEM, actor_for_token, add_user, sign_in
    from mumic_core.config import load_settings
    from mumic_core.demo import seed_demo
    from mumic_core.registry import ensure_base_version
    from mumic_core.scoring import score_collection
    from mumic_core.studio import open_studio

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
        lines = ["# Bad inputs", "", "Each case runs against a demo store through the service layer "
                 "(`.venv/bin/python benchmarks/bad_inputs.py`; checked by tests/test_bad_inputs.py).", "",
                 "| # | area | input | outcome | as expected |", "|---|---|---|---|---|"]
        for k, case in enumerate(CASES, 1):
            outcome, ok = run_case(case, studio, ann, Path(tmp))
            lines.append(f"| {k} | {case.area} | {case.what} | {outcome.replace('|', '¦')[:300]} | "
                         f"{'yes' if ok else '**NO**'} |")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
    check_written(args.out)
    rows = [line for line in args.out.read_text().splitlines() if line.startswith("| ") and line[2:3].isdigit()]
    if len(rows) != len(CASES):
        raise SystemExit(f"malformed result: {args.out} has {len(rows)} rows for {len(CASES)} cases")


if __name__ == "__main__":
    main()
