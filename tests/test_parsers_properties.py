"""Property-based tests (Hypothesis) of the CSV readers and importers: whatever the bytes, a
file either is refused as a whole for its header, or every line ends up a row or a numbered
error, and nothing outside the file's statements is recorded."""

from __future__ import annotations

import csv
import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mumic_core.store.csv_rows import MAX_FIELD, from_cell, read_csv_rows

field = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=30)


def to_csv(rows: list[list[str]]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    return buf.getvalue().encode()


@given(st.lists(st.tuples(field, field), max_size=20))
def test_well_formed_rows_round_trip(rows):
    data = to_csv([["filename", "labels"], *map(list, rows)])
    parsed = read_csv_rows(data, ["filename", "labels"])
    kept = [(r["filename"], r["labels"]) for _, r in parsed.rows]
    expected = [
        (from_cell(a), from_cell(b))
        for a, b in rows  # values as written (a name may start with a space)
        if (a.strip() or b.strip()) and "\x00" not in a + b
    ]
    assert kept == expected
    assert all("NUL" in e for e in parsed.errors)


@given(st.binary(max_size=400))
def test_any_bytes_after_a_header_never_raise(tail):
    parsed = read_csv_rows(b"filename,labels\n" + tail, ["filename", "labels"])
    for error in parsed.errors:
        assert error.startswith("line ") and int(error.split()[1].rstrip(":")) >= 2
    for line, row in parsed.rows:
        assert line >= 2 and set(row) == {"filename", "labels"}
        assert all(len(v) <= MAX_FIELD and "\x00" not in v for v in row.values())


@given(st.binary(max_size=200))
def test_a_file_is_refused_whole_only_for_its_header(data):
    try:
        read_csv_rows(data, ["name"], ["prompt"])
    except ValueError as exc:
        assert "header" in str(exc) or "unknown column" in str(exc)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["scene_00000.png", "scene_00001.png", "missing.png", "", "x"]),
            st.lists(st.sampled_from(["circle", "square", "unicorn", "CIRCLE ", ""]), max_size=3),
        ),
        max_size=8,
    )
)
def test_label_import_records_only_known_statements(demo_studio, tmp_path_factory, rows):
    from sqlalchemy import func, select

    from db.models import Annotation, LabelClass
    from mumic_core.store.label_io import import_labels

    path = tmp_path_factory.mktemp("csv") / "labels.csv"
    path.write_bytes(to_csv([["filename", "labels"], *[[f, "|".join(ls)] for f, ls in rows]]))
    with demo_studio.read() as s:
        before = s.scalar(select(func.count(Annotation.id)))
        known = {c.normalized_name for c in s.scalars(select(LabelClass))}
    report = import_labels(demo_studio, path, "csv-import")
    good = [r for r in rows if r[0].startswith("scene") and all(n.strip().lower() in known for n in r[1] if n.strip())]
    bad = [r for r in rows if (r[0].strip() or "|".join(r[1]).strip()) and r not in good]
    assert report.images_labelled == len({f for f, names in good if any(n.strip() for n in names)})
    assert len(report.errors) == len(bad)
    with demo_studio.read() as s:
        new_rows = (
            s.execute(
                select(Annotation.annotator, LabelClass.normalized_name)
                .join(LabelClass, LabelClass.id == Annotation.class_id)
                .where(Annotation.id > before)
            ).all()
            if before
            else []
        )
    assert all(who == "csv-import" and name in known for who, name in new_rows)
