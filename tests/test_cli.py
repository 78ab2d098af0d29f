"""The command line as people use it: bad input and failing disks give one line `error: ...`, exit 1."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner, Result

from mumic_core.cli import main


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
    from sqlalchemy import func, select

    from db.models import Job

    assert_one_line_error(run("train", "--lr", "-1"), "learning rate")
    assert_one_line_error(run("train", "--epochs", "0"), "epochs")
    assert_one_line_error(run("train", "--epochs", "-5", "--queue"), "epochs")
    with demo_studio.read() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 0


def test_evaluating_on_truth_without_positives_prints_n_a(demo_studio, tmp_path: Path):
    from sqlalchemy import select

    from db.models import Image

    with demo_studio.read() as s:
        names = s.scalars(select(Image.original_name).limit(3)).all()
    truth = tmp_path / "truth.csv"
    truth.write_text("filename,labels\n" + "".join(f"{n},\n" for n in names))
    result = run("evaluate", "--truth", str(truth), "--model", "v0001")
    assert result.exit_code == 0, (result.output, result.exception)
    assert result.stdout.splitlines()[-1].split()[-3:] == ["0.0000", "0.0000", "n/a"]
