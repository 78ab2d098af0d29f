"""Labels in and out: exports read back exactly, re-imports change nothing, ambiguous or odd rows are
refused by line, formula cells are neutralised, and new images reach Review through the worker."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from conftest import signed_in_app
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage
from sqlalchemy import func, select

from db.models import Annotation, Image, Job
from mumic_core.config import load_settings
from mumic_core.pipeline.lifecycle import ensure_base_version
from mumic_core.pipeline.scoring import score_collection, unscored_count
from mumic_core.store.auth import SYSTEM
from mumic_core.store.classes import add_class
from mumic_core.store.collection import annotate, collection_counts, find_image, import_files
from mumic_core.store.csv_rows import from_cell, read_csv_rows, to_cell
from mumic_core.store.label_io import export_labels, import_labels, list_imports
from mumic_core.store.studio import open_studio

ROOT = Path(__file__).resolve().parents[1]


def png(colour: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", (16, 16), colour).save(buf, "PNG")
    return buf.getvalue()


def store(home: Path, names: list[str], classes=("cat", "dog", "tree")):
    """A store at ``home`` with one distinct image per name and the given classes."""
    studio = open_studio(load_settings({"MUMIC_HOME": str(home)}), actor=SYSTEM)
    import_files(studio, [(n, png((k * 7 % 256, k * 13 % 256, 40))) for k, n in enumerate(names)])
    ids = {c: add_class(studio, c).id for c in classes}
    with studio.read() as s:
        images = dict(s.execute(select(Image.original_name, Image.id)).all())
    return studio, images, ids


def current(studio) -> dict:
    """{(sha256, class name): (positive, assumed, annotator, source, time)} of every current label."""
    from db.models import LabelClass

    with studio.read() as s:
        rows = s.execute(
            select(
                Image.sha256,
                LabelClass.name,
                Annotation.positive,
                Annotation.assumed,
                Annotation.annotator,
                Annotation.source,
                Annotation.created_at,
            )
            .join(Image, Image.id == Annotation.image_id)
            .join(LabelClass, LabelClass.id == Annotation.class_id)
            .where(Annotation.is_current.is_(True))
        ).all()
    return {(sha, name): (p, a, who, src, at.replace(tzinfo=None)) for sha, name, p, a, who, src, at in rows}


def reviewed(studio) -> int:
    return collection_counts(studio)["reviewed"]


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_export_reads_back_exactly_into_a_fresh_store(tmp_path, fmt):
    names = ["a.png", "b.png", "c.png"]
    old, images, cls = store(tmp_path / "old", names)
    annotate(old, images["a.png"], {cls["cat"]: True, cls["dog"]: False}, "ann")
    annotate(old, images["b.png"], {cls["tree"]: False}, "bob", source="second_review")
    annotate(old, images["b.png"], {cls["dog"]: True}, "carl")
    exported = export_labels(old, fmt)
    new, _, _ = store(tmp_path / "new", list(reversed(names)))  # other ids for the same pictures
    report = import_labels(new, exported.encode(), "importer")
    assert not report.errors and report.images_labelled == 2
    assert current(new) == current(old)  # positives, negatives, authors, sources, times
    assert reviewed(new) == 2  # c.png, without labels, stays unreviewed
    again = import_labels(new, exported.encode(), "importer")
    assert (again.images_changed, again.labels_added) == (0, 0) and reviewed(new) == 2  # changes nothing


def test_reimporting_an_export_with_unlabelled_images_keeps_them_unreviewed(demo_studio):
    before = reviewed(demo_studio)
    for fmt in ("csv", "json"):
        report = import_labels(demo_studio, export_labels(demo_studio, fmt).encode(), "system")
        assert report.labels_added == 0 and not report.errors
        assert reviewed(demo_studio) == before


def test_an_empty_labels_cell_says_nothing(tmp_path):
    studio, images, cls = store(tmp_path / "h", ["a.png", "b.png"])
    report = import_labels(studio, b"filename,labels\na.png,\nb.png,cat\n", "lead")
    assert report.images_labelled == 1 and reviewed(studio) == 1
    complete = import_labels(studio, b"filename,labels\na.png,\n", "lead", mode="complete")
    assert complete.labels_added == 3  # complete: an empty cell means every class is absent


def test_ambiguous_names_are_refused_and_rows_can_name_an_image_by_path_id_or_sha(tmp_path):
    studio, images, cls = store(tmp_path / "h", ["x/IMG_0001.jpg", "y/IMG_0001.jpg", "z.png"])
    with studio.read() as s:
        sha = s.scalar(select(Image.sha256).where(Image.original_name == "y/IMG_0001.jpg"))
    data = (
        "filename,image_id,sha256,labels\n"
        "IMG_0001.jpg,,,cat\n"  # which one?
        f"x/IMG_0001.jpg,,,dog\n"
        f",,{sha},tree\n"
        f",{images['z.png']},,cat\n"
        f"z.png,{images['x/IMG_0001.jpg']},,cat\n"
    ).encode()
    report = import_labels(studio, data, "lead")
    assert len(report.errors) == 2
    assert report.errors[0].startswith("line 2:") and "could be 2 images" in report.errors[0]
    assert report.errors[1].startswith("line 6:") and "is named" in report.errors[1]
    got = {
        (name, c)
        for (sha_, c), (positive, *_) in current(studio).items()
        for name, i in images.items()
        if _sha(studio, i) == sha_ and positive
    }
    assert got == {("x/IMG_0001.jpg", "dog"), ("y/IMG_0001.jpg", "tree"), ("z.png", "cat")}


def _sha(studio, image_id: int) -> str:
    with studio.read() as s:
        return s.get(Image, image_id).sha256


def test_the_same_name_twice_in_one_folder_is_ambiguous_too(tmp_path):
    studio = open_studio(load_settings({"MUMIC_HOME": str(tmp_path / "h")}), actor=SYSTEM)
    import_files(studio, [("IMG_0001.jpg", png((1, 2, 3))), ("IMG_0001.jpg", png((4, 5, 6)))])
    add_class(studio, "cat")
    report = import_labels(studio, b"filename,labels\nIMG_0001.jpg,cat\n", "lead")
    assert report.images_labelled == 0 and "could be 2 images" in report.errors[0]


def test_a_file_name_starting_with_a_space_is_matched(tmp_path):
    studio, images, cls = store(tmp_path / "h", [" leading.png", "plain.png"])
    report = import_labels(studio, b'filename,labels\n" leading.png",cat\n', "lead")
    assert not report.errors and report.images_labelled == 1


def test_semicolons_and_tabs_are_read_and_a_wrong_separator_is_named(tmp_path):
    studio, images, cls = store(tmp_path / "h", ["a.png", "b.png"])
    assert import_labels(studio, b"filename;labels\na.png;cat|dog\n", "lead").labels_added == 2
    assert import_labels(studio, b"filename\tlabels\nb.png\tcat\n", "lead").labels_added == 1
    assert read_csv_rows(b"name;prompt\nx;y\n", ["name"], ["prompt"]).rows == [(2, {"name": "x", "prompt": "y"})]
    with pytest.raises(ValueError, match="seems to use semicolons"):
        read_csv_rows(b"nom;prompt\nx;y\n", ["name"], ["prompt"])
    with pytest.raises(ValueError, match="filename,labels"):
        import_labels(studio, b"file|labels\na.png|cat\n", "lead")


@pytest.mark.parametrize(
    "value", ["=cmd|' /C calc'!A0", "+1", "-2+3", "@SUM(A1)", "\tx", "\rx", "'=x", "''", "ok", "'plain", ""]
)
def test_formula_cells_are_neutralised_and_read_back(value):
    cell = to_cell(value)
    assert not cell.startswith(("=", "+", "-", "@", "\t", "\r"))
    assert from_cell(cell) == value


def test_csv_export_neutralises_formulas_in_names(tmp_path):
    studio, images, cls = store(tmp_path / "h", ["=HYPERLINK(evil).png", "-x.png"], classes=("@risk", "+plus"))
    annotate(studio, images["=HYPERLINK(evil).png"], {cls["@risk"]: True}, "ann")
    annotate(studio, images["-x.png"], {cls["+plus"]: False}, "ann")
    text = export_labels(studio, "csv")
    cells = [c for row in csv.reader(io.StringIO(text)) for c in row]
    assert not any(c.startswith(("=", "+", "-", "@")) for c in cells)
    fresh, _, _ = store(tmp_path / "fresh", ["=HYPERLINK(evil).png", "-x.png"], classes=("@risk", "+plus"))
    assert not import_labels(fresh, text.encode(), "lead").errors
    assert current(fresh) == current(studio)


def test_exports_say_which_image_by_id_and_sha_and_leave_out_inactive_classes(tmp_path):
    from mumic_core.store.classes import set_active

    studio, images, cls = store(tmp_path / "h", ["a.png"])
    annotate(studio, images["a.png"], {cls["cat"]: True, cls["dog"]: True}, "ann")
    set_active(studio, cls["dog"], False)
    rows = list(csv.DictReader(io.StringIO(export_labels(studio, "csv"))))
    assert [(r["image_id"], r["class"], r["state"]) for r in rows] == [(str(images["a.png"]), "cat", "positive")]
    assert len(rows[0]["sha256"]) == 64
    doc = json.loads(export_labels(studio, "json"))
    assert doc["classes"] == ["cat", "tree"] and doc["images"][0]["sha256"] == rows[0]["sha256"]
    coco = json.loads(export_labels(studio, "coco"))
    assert [c["name"] for c in coco["categories"]] == ["cat", "tree"] and len(coco["annotations"]) == 1


def test_earlier_json_exports_and_bad_json_items(tmp_path):
    studio, images, cls = store(tmp_path / "h", ["a.png", "b.png"])
    old = [
        {"filename": "a.png", "positives": ["cat"], "negatives": ["dog"]},
        "junk",
        {"filename": "nope.png", "positives": ["cat"]},
        {"filename": "b.png", "labels": "cat"},
    ]
    report = import_labels(studio, json.dumps(old).encode(), "lead")
    assert report.labels_added == 2
    assert [e.split(":")[0] for e in report.errors] == ["item 2", "item 3", "item 4"]
    with pytest.raises(ValueError, match="not valid JSON"):
        import_labels(studio, b"[{", "lead")


def test_contradicting_rows_and_bad_statement_fields_are_refused_by_line(tmp_path):
    studio, images, cls = store(tmp_path / "h", ["a.png"])
    data = (
        b"filename,class,state,annotator,source,labelled_at\n"
        b"a.png,cat,positive,ann,review,2026-01-02T03:04:05+00:00\n"
        b"a.png,cat,negative,bob,review,\n"
        b"a.png,dog,maybe,,,\n"
        b"a.png,tree,negative,,DROP TABLE,\n"
        b"a.png,tree,negative,,,yesterday\n"
        b"a.png,unicorn,positive,,,\n"
    )
    report = import_labels(studio, data, "lead")
    assert [e.split(":")[0] for e in report.errors] == [f"line {n}" for n in (3, 4, 5, 6, 7)]
    assert report.labels_added == 1


def test_an_import_is_one_undo_step(tmp_path):
    from mumic_core.store.collection import undo_last_submission

    studio, images, cls = store(tmp_path / "h", ["a.png", "b.png"])
    import_labels(studio, b"filename,labels\na.png,cat\nb.png,dog|tree\n", "lead")
    assert reviewed(studio) == 2
    undo_last_submission(studio, "lead")
    assert current(studio) == {} and reviewed(studio) == 0


def test_import_page_imports_a_labels_file_and_shows_the_exports(demo_studio):
    at = signed_in_app(ROOT / "app_pages" / "import_export.py", "lead", "admin").run()
    assert not at.exception
    assert len(at.get("download_button")) == 6  # the label exports are drawn; the model is zipped on request
    at.button(key="prepare_model").click().run()
    assert not at.exception
    labels = [b.proto.label for b in at.get("download_button")]
    assert len(labels) == 7 and any("MiB" in x for x in labels)
    at.file_uploader(key="labels_file").upload(
        "tags.csv", b"filename,labels\nscene_00040.png,circle|red object\nmissing.png,circle\n", "text/csv"
    )
    at.run()
    at.button(key="import_labels").click().run()
    assert not at.exception
    assert any("1 images labelled" in w.value for w in at.warning), [w.value for w in at.warning]
    assert any("line 3" in m.value and "unknown image" in m.value for m in at.markdown)
    with demo_studio.read() as s:
        who = set(s.scalars(select(Annotation.annotator).where(Annotation.source == "import")))
    assert who == {"lead"}
    # single positives as partial: the page warns; then the import is re-declared on the page
    at.file_uploader(key="labels_file").upload("single.csv", b"filename,labels\nscene_00041.png,circle\n", "text/csv")
    at.run()
    at.radio(key="labels_mode").set_value("partial").run()
    at.button(key="import_labels").click().run()
    assert not at.exception
    assert not any("no negative" in w.value for w in at.warning)  # the demo's reviews hold negatives of circle
    imports = list_imports(demo_studio)
    at.selectbox(key="redeclare_import").set_value(imports[0].submission_id).run()
    at.radio(key="redeclare_mode").set_value("complete").run()
    at.button(key="redeclare").click().run()
    assert not at.exception
    assert any("now absent" in m.value for m in at.success), [m.value for m in at.success]
    assert list_imports(demo_studio)[0].negatives > 0


def test_imported_images_are_scored_by_the_worker_and_never_vanish_from_review(demo_studio):
    from mumic_core.pipeline.runner import run_job
    from mumic_core.services.training import request_scoring_of_new_images
    from mumic_core.store.queue import QueueFilter, queue_count

    version = ensure_base_version(demo_studio)
    queue = QueueFilter(version_id=version.id, status="unreviewed")
    before = queue_count(demo_studio, queue)
    folder = demo_studio.settings.import_root / "new"
    folder.mkdir(parents=True)
    for k in range(3):
        PILImage.new("RGB", (40, 40), (k * 60, 20, 200)).save(folder / f"n{k}.png")
    at = signed_in_app(ROOT / "app_pages" / "import_export.py", "lead", "admin").run()
    at.selectbox(key="import_folder").set_value("new").run()
    next(b for b in at.button if b.label == "Import folder").click().run()
    assert not at.exception
    assert any("Scoring job" in i.value for i in at.info)
    assert unscored_count(demo_studio, version.id) == 3  # the web process did not score them itself
    review = signed_in_app(ROOT / "app_pages" / "review.py", "ann", "annotator").run()
    assert any("3 images wait for scores" in i.value for i in review.info)
    with demo_studio.read() as s:
        job_id = s.scalar(select(Job.id).where(Job.kind == "score").order_by(Job.id.desc()))
    assert run_job(demo_studio, job_id).status == "succeeded"
    assert unscored_count(demo_studio, version.id) == 0 and queue_count(demo_studio, queue) == before + 3
    assert request_scoring_of_new_images(demo_studio, run_here=True) is not None  # nothing left: a no-op job
    with demo_studio.read() as s:
        assert s.scalar(select(func.count()).select_from(Image)) == 63


def test_cli_import_scores_new_images_without_a_worker(studio, tmp_path):
    from click.testing import CliRunner

    from mumic_core.cli import main

    version = ensure_base_version(studio)
    add_class(studio, "cat")
    folder = tmp_path / "pics"
    folder.mkdir()
    for k in range(2):
        PILImage.new("RGB", (40, 40), (k * 90, 20, 200)).save(folder / f"p{k}.png")
    import_files(studio, [("first.png", png((9, 9, 9)))])
    score_collection(studio, version)
    result = CliRunner().invoke(main, ["import", str(folder)])
    assert result.exit_code == 0, result.output
    assert "scored the new images" in result.output
    assert unscored_count(studio, version.id) == 0


statement = st.tuples(st.integers(0, 3), st.integers(0, 2), st.booleans())  # (image, class, present)
step = st.one_of(
    st.tuples(
        st.just("label"),
        st.sampled_from(["ann", "bob", "=cmd"]),
        st.sampled_from(["review", "second_review"]),
        st.lists(statement, min_size=1, max_size=5),
    ),
    st.tuples(st.just("undo"), st.sampled_from(["ann", "bob", "=cmd"]), st.just(""), st.just([])),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=st.lists(step, max_size=10), fmt=st.sampled_from(["csv", "json"]))
def test_any_label_history_reads_back_exactly(tmp_path_factory, history, fmt):
    """Property: whatever people did (labels, corrections, second reviews, undos), an export read
    into a fresh store gives the same current labels, states, authors, sources and times."""
    from mumic_core.store.collection import record_labels, undo_last_submission

    tmp = tmp_path_factory.mktemp("roundtrip")
    names = ["a.png", "b/c.png", " d.png", "-e.png"]
    old, images, cls = store(tmp / "old", names, classes=("cat", "dog", "+tree"))
    image_ids, class_ids = [images[n] for n in names], list(cls.values())
    for action, who, source, said in history:
        if action == "undo":
            undo_last_submission(old, who)
            continue
        labels: dict[int, dict[int, bool]] = {}
        for i, c, present in said:
            labels.setdefault(image_ids[i], {})[class_ids[c]] = present
        record_labels(old, labels, who, source=source)
    new, _, _ = store(tmp / "new", names[::-1], classes=("cat", "dog", "+tree"))
    report = import_labels(new, export_labels(old, fmt).encode(), "importer")
    assert not report.errors
    assert current(new) == current(old)
    with old.read() as s:
        labelled = s.scalar(
            select(func.count(func.distinct(Annotation.image_id))).where(Annotation.is_current.is_(True))
        )
    assert reviewed(new) == labelled


def test_a_person_names_an_image_by_its_name_path_or_id(tmp_path):
    studio, ids, _ = store(tmp_path / "h", ["a/x_1.png", "b/x_1.png", "c/only%.png", "top.png"])
    assert find_image(studio, "top.png") == ids["top.png"]
    assert find_image(studio, "a/x_1.png") == ids["a/x_1.png"]
    assert find_image(studio, "x_1.png") is None  # two images have that name: no guess
    assert find_image(studio, "only%.png") == ids["c/only%.png"]
    assert find_image(studio, "x%1.png") is None and find_image(studio, "_1.png") is None  # no wildcards
    assert find_image(studio, f" {ids['top.png']} ") == ids["top.png"]
    assert find_image(studio, "99999") is None
