"""Label states: human positive, human negative, assumed negative, unknown (issue 19)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from test_label_io import store

from mumic_core.cli import main
from mumic_core.pipeline.training import gather_labels
from mumic_core.services.review import accept_above, submit, undo
from mumic_core.services.training import new_human_labels
from mumic_core.store.classes import add_class, merge_classes
from mumic_core.store.collection import collection_counts, current_labels, record_labels
from mumic_core.store.label_io import export_labels, import_labels, list_imports, redeclare_import
from mumic_core.store.queue import QueueFilter, image_views, queue_page
from mumic_core.store.registry import active_version

POSITIVE, NEGATIVE, ASSUMED = (True, False), (False, False), (False, True)


def states(studio, image_id: int) -> dict[int, tuple[bool, bool]]:
    """class id -> (positive, assumed) of the image's current labels; absent = unknown."""
    return {c: (p, a) for i, c, p, a in current_labels(studio) if i == image_id}


def test_review_accept_writes_human_negatives_for_switched_off_suggestions_and_assumed_for_the_rest(demo_studio):
    version = active_version(demo_studio)
    [view] = image_views(
        demo_studio, queue_page(demo_studio, QueueFilter(version.id, status="unreviewed"), 0, 1), version.id
    )
    shown = [s.class_id for s in view.suggestions]
    start, counts = new_human_labels(demo_studio), collection_counts(demo_studio)
    submit(demo_studio, view, [shown[0]], [shown[1]], "ann")
    assert new_human_labels(demo_studio) == start + 2  # assumed negatives are not what a person said
    after = collection_counts(demo_studio)
    assert after["human"] == counts["human"] + 2
    assert after["annotations"] == counts["annotations"] + len(demo_studio_classes(demo_studio))
    got = states(demo_studio, view.image_id)
    active = {c.id for c in demo_studio_classes(demo_studio)}
    assert got[shown[0]] == POSITIVE and got[shown[1]] == NEGATIVE
    assert set(got) == active  # every active class is now judged
    assert all(got[c] == ASSUMED for c in active - {shown[0], shown[1]})
    # the page sees them, apart from human ones
    [again] = image_views(demo_studio, [view.image_id], version.id)
    assert again.assumed == frozenset(active - {shown[0], shown[1]})
    undo(demo_studio, "ann")
    assert states(demo_studio, view.image_id) == {}  # undo takes the assumed negatives back too


def demo_studio_classes(studio):
    from mumic_core.store.classes import active_classes

    return active_classes(studio)


def test_bulk_accept_writes_positives_and_assumed_negatives(demo_studio):
    version = active_version(demo_studio)
    ids = queue_page(demo_studio, QueueFilter(version.id, status="unreviewed"), 0, 3)
    views = image_views(demo_studio, ids, version.id, top_k=3)
    threshold = min(s.probability for v in views for s in v.suggestions)
    accept_above(demo_studio, views, threshold, "ann")
    for v in views:
        got = states(demo_studio, v.image_id)
        assert {c for c, st in got.items() if st == POSITIVE} == {s.class_id for s in v.suggestions}
        assert all(st == ASSUMED for c, st in got.items() if st != POSITIVE)
        assert len(got) == len(demo_studio_classes(demo_studio))


def test_an_assumed_negative_never_replaces_a_human_label_and_a_human_label_replaces_it(tmp_path):
    studio, images, classes = store(tmp_path / "h", ["a.png"])
    a, cat, dog, tree = images["a.png"], classes["cat"], classes["dog"], classes["tree"]
    record_labels(studio, {a: {dog: False}}, "lead")  # a human negative
    import_labels(studio, b"filename,labels\na.png,cat\n", "importer")  # tags: cat; dog, tree assumed
    assert states(studio, a) == {cat: POSITIVE, dog: NEGATIVE, tree: ASSUMED}
    record_labels(studio, {a: {tree: True}}, "lead")  # a person finds the missed label
    assert states(studio, a)[tree] == POSITIVE
    undo(studio, "lead")
    assert states(studio, a)[tree] == ASSUMED


def test_import_modes_and_the_state_in_exports_read_back_exactly(tmp_path):
    studio, images, classes = store(tmp_path / "h", ["a.png", "b.png", "c.png"])
    tags = b"filename,labels\na.png,cat\n"
    report = import_labels(studio, tags, "lead")
    assert (report.labels_added, report.assumed_added) == (1, 2)
    assert "2 assumed negatives" in report.summary()
    import_labels(studio, b"filename,labels\nb.png,dog\n", "lead", mode="partial")
    import_labels(studio, b"filename,labels\nc.png,tree\n", "lead", mode="complete")
    cat, dog, tree = classes["cat"], classes["dog"], classes["tree"]
    assert states(studio, images["a.png"]) == {cat: POSITIVE, dog: ASSUMED, tree: ASSUMED}
    assert states(studio, images["b.png"]) == {dog: POSITIVE}
    assert states(studio, images["c.png"]) == {tree: POSITIVE, cat: NEGATIVE, dog: NEGATIVE}
    csv_text = export_labels(studio, "csv")
    assert csv_text.count(",assumed_negative,") == 2 and csv_text.count(",negative,") == 2
    doc = json.loads(export_labels(studio, "json"))
    assert sorted(x["state"] for im in doc["images"] for x in im["labels"]) == sorted(
        ["positive"] * 3 + ["assumed_negative"] * 2 + ["negative"] * 2
    )
    for fmt in ("csv", "json"):
        fresh, _, _ = store(tmp_path / f"fresh-{fmt}", ["a.png", "b.png", "c.png"])
        import_labels(fresh, export_labels(studio, fmt).encode(), "other")
        assert sorted(map(tuple, current_labels(fresh))) == sorted(map(tuple, current_labels(studio)))
        assert import_labels(fresh, export_labels(studio, fmt).encode(), "other").labels_added == 0


def test_an_import_that_leaves_a_class_without_negatives_says_so(tmp_path):
    studio, images, classes = store(tmp_path / "h", ["a.png", "b.png", "c.png"])
    single = b"filename,labels\na.png,cat\nb.png,dog\n"
    report = import_labels(studio, single, "lead", mode="partial")  # single positives, the rest unknown
    assert report.without_negatives == ["cat", "dog"]
    assert "2 classes have positive labels but no negative" in report.warning()
    (tmp_path / "tree.csv").write_text("filename,labels\nc.png,tree\n")
    result = CliRunner().invoke(
        main, ["import", "--labels", str(tmp_path / "tree.csv"), "--partial"], env={"MUMIC_HOME": str(tmp_path / "h")}
    )
    assert result.exit_code == 0 and "warning: 3 classes have positive labels" in result.output, result.output
    sid = list_imports(studio)[-1].submission_id
    redeclare_import(studio, sid, "assumed")  # the first import's unlisted classes: assumed absent
    again = import_labels(studio, b"filename,labels\nc.png,tree\n", "lead", mode="partial")
    assert again.without_negatives == [] and again.warning() is None


def test_two_tag_rows_for_one_image_do_not_contradict_through_their_assumptions(tmp_path):
    studio, images, classes = store(tmp_path / "h", ["a.png"])
    report = import_labels(studio, b"filename,labels\na.png,cat\na.png,dog\n", "lead")
    assert not report.errors
    assert states(studio, images["a.png"]) == {
        classes["cat"]: POSITIVE,
        classes["dog"]: POSITIVE,
        classes["tree"]: ASSUMED,
    }


def test_a_class_added_later_is_unknown_on_earlier_images_and_training_sees_the_states(tmp_path):
    studio, images, classes = store(tmp_path / "h", ["a.png", "b.png"])
    import_labels(studio, b"filename,labels\na.png,cat\n", "lead")
    bird = add_class(studio, "bird").id
    assert bird not in states(studio, images["a.png"])
    labels = gather_labels(studio)
    row = labels.image_ids.index(images["a.png"])
    col = {c.id: k for k, c in enumerate(labels.classes)}
    assert labels.mask[row, col[bird]] == 0  # unknown: out of the loss
    assert labels.assumed[row, col[classes["dog"]]] == 1 and labels.targets[row, col[classes["dog"]]] == 0
    assert labels.assumed[row, col[classes["cat"]]] == 0 and labels.targets[row, col[classes["cat"]]] == 1


def test_an_admin_redeclares_an_earlier_import_without_reimporting(tmp_path):
    studio, images, classes = store(tmp_path / "h", ["a.png", "b.png"])
    sid = import_labels(studio, b"filename,labels\na.png,cat\nb.png,dog\n", "lead").submission_id
    add_class(studio, "bird")  # after the import: stays unknown whatever the import is declared
    a = images["a.png"]
    [info] = list_imports(studio)
    assert (info.submission_id, info.positives, info.assumed_negatives) == (sid, 2, 4)
    assert redeclare_import(studio, sid, "partial") == {"made_unknown": 4, "assumed_negatives": 0, "negatives": 0}
    assert states(studio, a) == {classes["cat"]: POSITIVE}
    redeclare_import(studio, sid, "complete")
    assert states(studio, a) == {classes["cat"]: POSITIVE, classes["dog"]: NEGATIVE, classes["tree"]: NEGATIVE}
    redeclare_import(studio, sid, "assumed")
    assert states(studio, a) == {classes["cat"]: POSITIVE, classes["dog"]: ASSUMED, classes["tree"]: ASSUMED}
    record_labels(studio, {a: {classes["tree"]: True}}, "ann")  # a later human label stands
    redeclare_import(studio, sid, "complete")
    assert states(studio, a)[classes["tree"]] == POSITIVE
    with pytest.raises(ValueError, match="not a labels import"):
        redeclare_import(studio, 999, "partial")
    result = CliRunner().invoke(main, ["labels", "imports"], env={"MUMIC_HOME": str(tmp_path / "h")})
    assert result.exit_code == 0 and f"{sid:6d}" in result.output, result.output
    result = CliRunner().invoke(
        main, ["labels", "declare", str(sid), "partial"], env={"MUMIC_HOME": str(tmp_path / "h")}
    )
    assert result.exit_code == 0 and "made unknown" in result.output, result.output


def test_a_merge_carries_assumed_negatives_as_assumed(tmp_path):
    studio, images, classes = store(tmp_path / "h", ["a.png", "b.png"])
    import_labels(studio, b"filename,labels\na.png,cat\nb.png,dog\n", "lead")
    merge_classes(studio, classes["dog"], classes["tree"], "lead")  # tree was assumed on both
    assert states(studio, images["a.png"])[classes["tree"]] == ASSUMED  # dog assumed on a: still assumed
    assert states(studio, images["b.png"])[classes["tree"]] == POSITIVE


def test_migration_0010_makes_absent_pairs_of_labelled_images_assumed_negatives(tmp_path):
    from alembic import command

    from db.migrate import alembic_config
    from db.session import get_engine

    url = f"sqlite:///{tmp_path / 'old.db'}"
    command.upgrade(alembic_config(url), "0009")
    engine = get_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO classes (id, name, normalized_name, description, active, created_at) VALUES "
            "(1, 'a', 'a', '', 1, '2026-01-01'), (2, 'b', 'b', '', 1, '2026-01-01'), (3, 'c', 'c', '', 0, '2026-01-01')"
        )
        conn.exec_driver_sql(
            "INSERT INTO images (id, sha256, original_name, relpath, width, height, format, split, added_at) VALUES "
            "(1, 'x', 'x.png', 'x.png', 1, 1, 'PNG', 'train', '2026-01-01'), "
            "(2, 'y', 'y.png', 'y.png', 1, 1, 'PNG', 'train', '2026-01-01')"
        )
        conn.exec_driver_sql(
            "INSERT INTO annotations (image_id, class_id, positive, annotator, source, is_current, created_at) "
            "VALUES (1, 1, 1, 'lead', 'import', 1, '2026-01-01')"
        )
    engine.dispose()
    command.upgrade(alembic_config(url), "head")
    engine = get_engine(url)
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT image_id, class_id, positive, assumed, source FROM annotations WHERE is_current ORDER BY class_id"
        ).all()
        [annotator] = conn.exec_driver_sql("SELECT annotator FROM submissions").scalars().all()
    # image 1: class 2 assumed (class 3 is inactive: unknown); image 2 was never labelled: unknown
    assert [tuple(r) for r in rows] == [(1, 1, 1, 0, "import"), (1, 2, 0, 1, "migration")]
    assert annotator == "migration"
    command.downgrade(alembic_config(url), "0009")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM annotations").scalar() == 1
