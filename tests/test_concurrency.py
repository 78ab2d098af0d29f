"""Two processes annotate the same images at once: no update is lost."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import make_env
from sqlalchemy import func, select

from db.models import Annotation, Image
from mumic_core.store.classes import add_class
from mumic_core.store.collection import import_files
from mumic_core.synthetic.scenes import generate_collection

WORKER = textwrap.dedent("""
    import sys
    from mumic_core.store.auth import SYSTEM
    from mumic_core.store.collection import annotate
    from mumic_core.store.studio import open_studio
    who, rounds, image_ids, class_ids = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    images = [int(x) for x in image_ids.split(",")]
    classes = [int(x) for x in class_ids.split(",")]
    studio = open_studio(migrate=False, actor=SYSTEM)
    print("ready", flush=True)
    sys.stdin.readline()  # start together
    for r in range(rounds):
        for image in images:
            # Each round flips every label, so every call must write a row that supersedes
            # the row the other process may just have written.
            annotate(studio, image, {c: (r + (who == "b")) % 2 == 0 for c in classes}, who)
""")


def test_two_processes_annotate_without_losing_updates(studio, tmp_path: Path):
    rows = generate_collection(3, seed=2, out_dir=tmp_path / "src", size=48)
    import_files(studio, [(n, tmp_path / "src" / n) for n, _ in rows])
    classes = [add_class(studio, f"class {i}").id for i in range(4)]
    with studio.read() as s:
        images = list(s.scalars(select(Image.id)))
    script = tmp_path / "annotate_worker.py"
    script.write_text(WORKER)
    rounds = 25
    env = make_env(studio.settings.home)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), who, str(rounds), ",".join(map(str, images)), ",".join(map(str, classes))],
            env=env,
            cwd=Path(__file__).parents[1],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for who in ("a", "b")
    ]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err

    calls = 2 * rounds * len(images)
    with studio.read() as s:
        review_counts = list(s.scalars(select(Image.review_count)))
        total_rows = s.scalar(select(func.count(Annotation.id)))
        current = s.execute(
            select(Annotation.image_id, Annotation.class_id, func.count())
            .where(Annotation.is_current.is_(True))
            .group_by(Annotation.image_id, Annotation.class_id)
        ).all()
        superseded = list(s.scalars(select(Annotation.supersedes_id).where(Annotation.supersedes_id.is_not(None))))
        per_annotator = dict(s.execute(select(Annotation.annotator, func.count()).group_by(Annotation.annotator)).all())
    # Every read-modify-write of the counter landed.
    assert sum(review_counts) == calls
    assert review_counts == [2 * rounds] * len(images)
    # Exactly one current statement per pair, and each older row is superseded exactly once:
    # the history of each pair is one unbroken chain.
    assert len(current) == len(images) * len(classes) and all(n == 1 for *_, n in current)
    assert len(superseded) == len(set(superseded)) == total_rows - len(images) * len(classes)
    # Both processes' writes are there (a change is recorded only when it differs from the current one).
    assert per_annotator["a"] > 0 and per_annotator["b"] > 0
    assert total_rows <= calls * len(classes)
