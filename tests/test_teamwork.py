"""Working together: stale views are refused, second reviews, agreement between annotators."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from db.models import Annotation
from mumic_core.errors import StaleView
from mumic_core.services.review import submit
from mumic_core.store.auth import Actor
from mumic_core.store.dashboard import annotator_agreement
from mumic_core.store.queue import QueueFilter, image_views, queue_count, queue_page
from mumic_core.store.registry import active_version


def as_user(studio, name):
    return studio.as_actor(Actor(name, "annotator"))


def test_a_submission_on_a_stale_view_is_refused_and_names_who_changed_it(demo_studio):
    version = active_version(demo_studio).id
    ann, bob = as_user(demo_studio, "ann"), as_user(demo_studio, "bob")
    image = queue_page(demo_studio, QueueFilter(version_id=version, status="unreviewed"))[0]
    seen_by_ann = image_views(ann, [image], version)[0]
    cls = seen_by_ann.suggestions[0].class_id
    submit(bob, image_views(bob, [image], version)[0], {cls}, set(), "bob")
    with pytest.raises(StaleView, match="by bob at"):
        submit(ann, seen_by_ann, set(), {cls}, "ann")
    with demo_studio.read() as s:
        assert (
            s.scalar(select(Annotation.annotator).where(Annotation.image_id == image, Annotation.is_current.is_(True)))
            == "bob"
        )
    fresh = image_views(ann, [image], version)[0]  # reloaded: bob's label is visible, ann decides again
    assert {c: v for c, v in fresh.labels.items() if c not in fresh.assumed} == {cls: True}
    assert fresh.assumed and all(fresh.labels[c] is False for c in fresh.assumed)  # bob's Accept assumed the rest
    submit(ann, fresh, set(), {cls}, "ann")
    again = image_views(ann, [image], version)[0]
    submit(ann, again, {cls}, set(), "ann")
    submit(ann, again, set(), {cls}, "ann")  # stale only by ann's own change: hers to overwrite
    with demo_studio.read() as s:
        rows = s.execute(
            select(Annotation.annotator, Annotation.positive, Annotation.is_current)
            .where(Annotation.image_id == image)
            .order_by(Annotation.id)
        ).all()
    assert [tuple(r) for r in rows][-1] == ("ann", False, True)


def test_second_review_confirms_or_changes_and_feeds_agreement(demo_studio):
    version = active_version(demo_studio).id
    ann, bob = as_user(demo_studio, "ann"), as_user(demo_studio, "bob")
    images = queue_page(demo_studio, QueueFilter(version_id=version, status="unreviewed"), 0, 6)
    views = image_views(ann, images, version)
    classes = [v.suggestions[0].class_id for v in views]
    for v, c in zip(views, classes):
        submit(ann, v, {c}, set(), "ann")
    second = QueueFilter(version_id=version, status="second review", reviewer="bob")
    assert set(queue_page(bob, second, 0, 100)) >= set(images)
    assert queue_count(ann, QueueFilter(version_id=version, status="second review", reviewer="ann")) < queue_count(
        bob, second
    )  # nobody second-reviews their own labels
    for k, (image, c) in enumerate(zip(images, classes)):
        v = image_views(bob, [image], version)[0]
        agree = k < 4  # bob confirms four, changes two
        submit(bob, v, {c} if agree else set(), set() if agree else {c}, "bob", second_review=True)
    assert not set(queue_page(bob, second, 0, 100)) & set(images)  # checked images leave the queue
    table = annotator_agreement(demo_studio)
    assert sum(r["pairs"] for r in table) == 6
    assert sum(r["agreement"] * r["pairs"] for r in table) == pytest.approx(4)
    with demo_studio.read() as s:
        confirmations = s.scalar(
            select(Annotation.id).where(Annotation.source == "second_review", Annotation.positive.is_(True)).limit(1)
        )
    assert confirmations is not None  # a confirmation is recorded, not skipped as "no change"


def test_kappa_is_cohens_from_scikit_learn(demo_studio):
    from sklearn.metrics import cohen_kappa_score

    version = active_version(demo_studio).id
    ann, bob = as_user(demo_studio, "ann"), as_user(demo_studio, "bob")
    images = queue_page(demo_studio, QueueFilter(version_id=version, status="unreviewed"), 0, 8)
    cls = image_views(ann, images[:1], version)[0].suggestions[0].class_id
    first = [True, True, False, False, True, False, True, False]
    second = [True, False, False, False, True, True, True, False]
    for image, a, b in zip(images, first, second):
        submit(ann, image_views(ann, [image], version)[0], {cls} if a else set(), set() if a else {cls}, "ann")
        submit(
            bob,
            image_views(bob, [image], version)[0],
            {cls} if b else set(),
            set() if b else {cls},
            "bob",
            second_review=True,
        )
    [row] = [r for r in annotator_agreement(demo_studio) if r["pairs"] == 8]
    assert row["Cohen's kappa"] == round(cohen_kappa_score(first, second), 3)
    assert row["agreement"] == pytest.approx(6 / 8)


@pytest.mark.sqlite_only
def test_backup_and_restore_round_trip(demo_studio, tmp_path, monkeypatch):
    """A restored store equals the original: every table's rows and every image and model file."""
    import hashlib
    import sqlite3

    from click.testing import CliRunner

    from mumic_core.cli import main
    from mumic_core.store.backup import BackupError, backup, restore

    def snapshot(home):
        con = sqlite3.connect(home / "mumic.db")
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        rows = {t: sorted(map(repr, con.execute(f'SELECT * FROM "{t}"').fetchall())) for t in tables}
        con.close()
        files = {
            str(p.relative_to(home)): hashlib.sha256(p.read_bytes()).hexdigest()
            for f in ("images", "models")
            for p in sorted((home / f).rglob("*"))
            if p.is_file()
        }
        return rows, files

    submit(
        as_user(demo_studio, "ann"), image_views(demo_studio, [1], active_version(demo_studio).id)[0], {1}, {2}, "ann"
    )
    archive = tmp_path / "store.tar"
    manifest = backup(demo_studio, archive)
    assert manifest["rows"]["annotations"] > 0 and manifest["files"]["images"] == 60
    with pytest.raises(BackupError, match="exists"):
        backup(demo_studio, archive)
    home = demo_studio.settings.home
    restored = tmp_path / "restored"
    monkeypatch.setenv("MUMIC_HOME", str(restored))
    result = CliRunner().invoke(main, ["restore", str(archive)])
    assert result.exit_code == 0, result.output
    assert snapshot(restored) == snapshot(home)
    with pytest.raises(BackupError, match="already holds a store"):
        restore(archive, restored)
    bogus = tmp_path / "bogus.tar"
    import tarfile

    with tarfile.open(bogus, "w") as tar:
        tar.add(archive, "../escape.tar")
    with pytest.raises(BackupError, match="not a MuMIC Studio backup"):
        restore(bogus, tmp_path / "empty")


def test_backup_of_a_database_server_is_refused_with_what_to_use(studio, tmp_path, monkeypatch):
    from dataclasses import replace

    from mumic_core.store.backup import BackupError, backup

    server = replace(studio, settings=replace(studio.settings, database_url="postgresql+psycopg://u@db/mumic"))
    with pytest.raises(BackupError, match="pg_dump"):
        backup(server, tmp_path / "out.tar")
    assert not (tmp_path / "out.tar").exists()
