"""The command line as people use it: bad input and failing disks give one line `error: ...`, exit 1."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

from click.testing import CliRunner, Result
from PIL import Image as PILImage
from sqlalchemy import func, select

from db.models import Image, Job
from mumic_core.cli import main
from mumic_core.config import load_settings
from mumic_core.encoders import factory as mf


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input)


def assert_one_line_error(result: Result, *needles: str) -> str:
    """Exit 1 and a single `error: ...` line on stderr, holding every needle; no traceback."""
    assert result.exit_code == 1, (result.exit_code, result.output, result.exception)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def test_adding_a_class_to_a_store_without_images_scores_nothing_and_works(home: Path):
    assert run("init", "--no-demo").exit_code == 0
    result = run("classes", "add", "cat", "--prompt", "a photo of a cat")
    assert result.exit_code == 0, (result.output, result.exception)
    assert "added class 'cat'" in result.stdout and "zero-shot scores for 0 images" in result.stdout
    listed = run("classes", "list")
    assert "cat" in listed.stdout


def test_bad_training_settings_are_refused_before_any_job_is_made(demo_studio):
    assert_one_line_error(run("train", "--lr", "-1"), "learning rate")
    assert_one_line_error(run("train", "--epochs", "0"), "epochs")
    assert_one_line_error(run("train", "--epochs", "-5", "--queue"), "epochs")
    with demo_studio.read() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 0


def test_evaluating_on_truth_without_positives_prints_n_a(demo_studio, tmp_path: Path):
    with demo_studio.read() as s:
        names = s.scalars(select(Image.original_name).limit(3)).all()
    truth = tmp_path / "truth.csv"
    truth.write_text("filename,labels\n" + "".join(f"{n},\n" for n in names))
    result = run("evaluate", "--truth", str(truth), "--model", "v0001")
    assert result.exit_code == 0, (result.output, result.exception)
    assert result.stdout.splitlines()[-1].split()[-3:] == ["0.0000", "0.0000", "n/a"]


def test_truncated_weights_are_one_line(home: Path, tmp_path: Path, monkeypatch):
    mf.resolve_base_spec(load_settings())  # makes the built-in model's local-dir
    folder = tmp_path / "model"
    shutil.copytree(mf.builtin_dir(load_settings()), folder)
    weights = folder / mf.WEIGHTS_NAME
    weights.write_bytes(weights.read_bytes()[:1000])
    monkeypatch.setenv("MUMIC_PRETRAINED", f"local-dir:{folder}")
    assert_one_line_error(run("init", "--no-demo"), "weights file is truncated or corrupt", str(folder))


def test_a_full_disk_during_export_is_one_line_and_keeps_the_old_file(demo_studio, tmp_path: Path, monkeypatch):
    out = tmp_path / "exports" / "labels.csv"
    out.parent.mkdir()
    out.write_text("yesterday's export\n")

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", disk_full)
    assert_one_line_error(run("export", "labels", "--out", str(out)), f"error: {out}: No space left on device")
    assert out.read_text() == "yesterday's export\n" and [p.name for p in out.parent.iterdir()] == ["labels.csv"]
    monkeypatch.undo()

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(out.parent))

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    assert_one_line_error(run("export", "labels", "--out", str(out)), f"error: {out}: Permission denied")
    monkeypatch.undo()
    assert run("export", "labels", "--out", str(out)).exit_code == 0
    assert out.read_text() == run("export", "labels").stdout != "yesterday's export\n"
    assert_one_line_error(
        run("export", "labels", "--out", str(tmp_path / "nowhere" / "x.csv")),
        f"{tmp_path / 'nowhere' / 'x.csv'}: No such file or directory",
    )


def test_a_store_that_cannot_be_opened_is_one_line(tmp_path: Path, monkeypatch, home: Path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    monkeypatch.setenv("MUMIC_HOME", str(not_a_folder))
    assert_one_line_error(run("classes", "list"), f"{not_a_folder}: Not a directory")
    monkeypatch.setenv("MUMIC_HOME", str(tmp_path / "home2"))
    (tmp_path / "home2").mkdir()
    (tmp_path / "home2" / "mumic.db").write_bytes(b"not a database " * 100)
    monkeypatch.setenv("MUMIC_DATABASE_URL", f"sqlite:///{tmp_path / 'home2' / 'mumic.db'}")
    assert_one_line_error(run("classes", "list"), "cannot open the database", "not a database")


def test_a_bad_truth_file_for_evaluate_names_the_file_and_the_problem(demo_studio, tmp_path: Path):
    wrong_header = tmp_path / "wrong.csv"
    wrong_header.write_text("a,b\nx,y\n")
    assert_one_line_error(run("evaluate", "--truth", str(wrong_header)), "wrong.csv", "filename, labels")
    bad_row = tmp_path / "bad.csv"
    bad_row.write_bytes(b"filename,labels\n\xff\xfe.png,circle\n")
    assert_one_line_error(run("evaluate", "--truth", str(bad_row)), "bad.csv", "line 2", "not UTF-8")
    empty = tmp_path / "empty.csv"
    empty.write_text("filename,labels\n")
    assert_one_line_error(run("evaluate", "--truth", str(empty)), "empty.csv", "no images")


def test_bad_pretraining_settings_are_one_line_and_save_nothing(home: Path, tmp_path: Path):
    for i in range(4):
        PILImage.new("RGB", (32, 32), (60 * i, 0, 0)).save(tmp_path / f"{i}.png")
    captions = tmp_path / "captions.csv"
    captions.write_text("filename,caption\n" + "".join(f"{i}.png,a red thing {i}\n" for i in range(4)))
    out = tmp_path / "out"
    for args, needle in (
        (["--batch-size", "0"], "batch size"),
        (["--minutes", "-1"], "minutes"),
        (["--lr", "-1"], "learning rate"),
        (["--max-steps", "0"], "steps"),
        (["--model", "no-such-architecture"], "unknown architecture 'no-such-architecture'"),
    ):
        result = run("pretrain", "--captions", str(captions), "--out", str(out), "--max-steps", "1", *args)
        line = assert_one_line_error(result, needle)
        assert len(line) < 300, line
        assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_setting_that_is_not_a_number_is_named(home: Path, monkeypatch):
    monkeypatch.setenv("MUMIC_EMBEDDING_CHUNK", "lots")
    assert_one_line_error(run("classes", "list"), "MUMIC_EMBEDDING_CHUNK", "'lots'")
    monkeypatch.setenv("MUMIC_EMBEDDING_CHUNK", "64")
    monkeypatch.setenv("MUMIC_OFFLINE_PROBE_SECONDS", "nan")
    assert_one_line_error(run("classes", "list"), "MUMIC_OFFLINE_PROBE_SECONDS")
