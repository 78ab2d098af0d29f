"""Commands on the collection: set-up, the demo, importing images and labels, classes, exports."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import click
from tqdm import tqdm

from mumic_core.cli.common import progress_bar, system_studio
from mumic_core.pipeline.runner import run_job
from mumic_core.pipeline.scoring import score_classes
from mumic_core.services.demo import is_empty, seed_demo
from mumic_core.services.setup import set_up
from mumic_core.services.training import (
    request_scoring_of_new_images,
)
from mumic_core.store.classes import add_class, import_class_csv, list_classes
from mumic_core.store.collection import default_annotator, import_folder
from mumic_core.store.fiftyone_io import export_fiftyone, import_fiftyone
from mumic_core.store.label_io import TAG_MODES, export_labels, import_labels, list_imports, redeclare_import
from mumic_core.store.registry import (
    active_version,
    describe,
)
from mumic_core.store.storage import write_file_atomically
from mumic_core.store.studio import Studio
from mumic_core.store.workers import live_workers


@click.command()
@click.option("--demo/--no-demo", default=True, help="Seed the demo collection when the store is empty.")
@click.option(
    "--first-model/--no-first-model",
    default=True,
    help="When the demo is seeded and the only model is untrained, queue training on the demo's pre-labels.",
)
def init(demo: bool, first_model: bool) -> None:
    """Create or migrate the database, register the base model, seed the demo, score."""
    with tqdm(desc="scoring", unit="img") as bar:
        done = set_up(system_studio(), demo, progress=bar.update, first_model=first_model)
    click.echo(f"model: {describe(done.version)}")
    if done.demo:
        click.echo(
            f"demo: {done.demo.images} images, {done.demo.labelled} pre-labelled "
            f"({done.demo.missed_labels} labels missed on purpose)"
        )
    if done.scored:
        click.echo(f"scored: {done.scored} image-class pairs with {done.version.name}")
    if done.first_model_job:
        click.echo(
            f"first model: job {done.first_model_job} fine-tunes the untrained model on the demo's pre-labels "
            "(about two minutes once the worker runs); its suggestions replace the untrained ones when done"
        )
    if done.admin_password:
        click.secho(
            f"\nFirst start: an admin account was created.\n  username: admin\n  password: {done.admin_password}\n"
            "It is shown only this once. Change it: python -m mumic_core users passwd admin\n"
            "Add people: python -m mumic_core users add NAME --role annotator\n",
            fg="yellow",
        )


@click.command()
@click.option("--images", "n_images", default=400, show_default=True)
@click.option("--seed", default=7, show_default=True)
def demo(n_images: int, seed: int) -> None:
    """Generate the demo collection (classes, images, truth, noisy pre-labels)."""
    studio = system_studio()
    if not is_empty(studio):
        raise ValueError("the collection is not empty; use a fresh MUMIC_HOME for the demo")
    s = seed_demo(studio, n_images=n_images, seed=seed)
    click.echo(
        f"demo: {s.images} images, {s.labelled} pre-labelled ({s.missed_labels} labels missed); "
        f"held-out truth in {s.holdout_csv}"
    )


@click.command("import")
@click.argument("folder", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--labels",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A labels file: filename,labels CSV (labels joined by '|'), or a CSV/JSON export.",
)
@click.option(
    "--assumed",
    "mode",
    flag_value="assumed",
    default=True,
    help="(default) Classes a tag row does not list become assumed negatives.",
)
@click.option("--partial", "mode", flag_value="partial", help="Classes a tag row does not list stay unknown.")
@click.option("--complete", "mode", flag_value="complete", help="Classes a tag row does not list become negatives.")
@click.option("--annotator", default=None, help="Who the labels come from (default: your user name).")
@click.option(
    "--score/--no-score",
    default=True,
    show_default=True,
    help="Score the new images with the active model (by a running worker, else here).",
)
def import_(folder: Path | None, labels: Path | None, mode: str, annotator: str | None, score: bool) -> None:
    """Import every image below FOLDER (bad files are named with their reason) and/or a labels file."""
    if folder is None and labels is None:
        raise click.UsageError("give a FOLDER of images, --labels FILE, or both")
    studio = system_studio()
    report = None
    if folder is not None:
        with tqdm(desc="importing", unit="file") as bar:
            report = import_folder(studio, folder, progress=bar.update)
        click.echo(report.summary())
        for line in report.lines():
            click.echo(f"  {line}")
        if report.added and score:
            _score_new_images(studio)
        if report.stopped:
            click.echo(
                f"error: import stopped: {report.stopped}; free space and import again (what was imported is skipped)",
                err=True,
            )
            sys.exit(1)
    if labels:
        lr = import_labels(studio, labels, annotator or default_annotator(), mode=mode)
        click.echo(f"labels: {lr.summary()}")
        if lr.warning():
            click.echo(f"warning: {lr.warning()}", err=True)
        for err in lr.errors:
            click.echo(f"  {err}")
    if report is not None and report.rejected and not (report.added or report.duplicates):
        sys.exit(2)  # nothing in the folder was an image


def _score_new_images(studio: Studio) -> None:
    """Queue the new images' scoring for a running worker, or score them here when none runs."""
    if live_workers(studio):
        click.echo(f"queued scoring job {request_scoring_of_new_images(studio)} for the running worker")
        return
    job_id = request_scoring_of_new_images(studio, run_here=True)
    if job_id is None:
        return
    bar, report = progress_bar("scoring new images")
    try:
        job = run_job(studio, job_id, extra_progress=report)
    finally:
        bar.close()
    click.echo(
        f"scored the new images with {job.result.get('version')}: {job.result.get('predictions', 0)} predictions"
    )


@click.group()
def classes() -> None:
    """Define and list classes."""


@classes.command("add")
@click.argument("name")
@click.option("--prompt", "prompts", multiple=True, help="Text prompt (repeatable).")
@click.option("--description", default="")
def classes_add(name: str, prompts: tuple[str, ...], description: str) -> None:
    """Add a class and score it zero-shot over the collection."""
    studio = system_studio()
    cls = add_class(studio, name, prompts, description)
    click.echo(f"added class '{cls.name}' with prompts: {'; '.join(cls.prompt_texts)}")
    version = active_version(studio)
    if version is not None:
        n = score_classes(studio, version, [cls.id])
        click.echo(f"zero-shot scores for {n} images with {version.name}")


@classes.command("list")
def classes_list() -> None:
    """List active classes with their prompts."""
    for c in list_classes(system_studio()):
        click.echo(f"{c.id:4d}  {c.name:28s} {' | '.join(c.prompt_texts)}")


@classes.command("import")
@click.argument("csv_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def classes_import(csv_path: Path) -> None:
    """Add classes from a name,prompt CSV (one prompt per row; names may repeat)."""
    added, refused = import_class_csv(system_studio(), csv_path)
    click.echo(f"added {len(added)} classes; {len(refused)} refused")
    for line in refused:
        click.echo(f"  {line}")


@click.command()
@click.argument("what", type=click.Choice(["labels"]))
@click.option("--format", "fmt", type=click.Choice(["csv", "json", "coco"]), default="csv", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def export(what: str, fmt: str, out: Path | None) -> None:
    """Export the current human labels."""
    text = export_labels(system_studio(), fmt)
    if out:
        write_file_atomically(out, text.encode("utf-8"))
        click.echo(f"wrote {out}")
    else:
        click.echo(text, nl=False)


@click.group()
def labels() -> None:
    """Earlier label imports and what the classes they left out mean; FiftyOne datasets out and in."""


@labels.command("imports")
def labels_imports() -> None:
    """List the label imports (newest first) with the current labels each still holds."""
    rows = list_imports(system_studio())
    if not rows:
        click.echo("no label imports yet")
    for r in rows:
        click.echo(
            f"{r.submission_id:6d}  {r.at:%Y-%m-%d %H:%M}  {r.annotator:20s} {r.images} images: "
            f"{r.positives} positive, {r.negatives} negative, {r.assumed_negatives} assumed negative"
            + (" (undone)" if r.undone else "")
        )


@labels.command("declare")
@click.argument("submission", type=int)
@click.argument("mode", type=click.Choice(list(TAG_MODES)))
def labels_declare(submission: int, mode: str) -> None:
    """Re-declare an earlier import: the classes its rows left out are assumed negatives (assumed),
    unknown (partial) or negatives (complete). SUBMISSION is a number from `labels imports`."""
    counts = redeclare_import(system_studio(), submission, mode)
    click.echo(", ".join(f"{n} {what.replace('_', ' ')}" for what, n in counts.items()))


@labels.command("fiftyone-export")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
def labels_fiftyone_export(out: Path) -> None:
    """Write the collection to OUT (a .zip) as a FiftyOne image classification dataset: the
    images, the human labels (labels.json) and the active model's suggestions with their scores
    (predictions.json); README.txt inside says how to load both fields."""
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".tmp-", suffix=".zip")
    try:
        with os.fdopen(fd, "wb") as fh:
            n = export_fiftyone(system_studio(), fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    click.echo(f"wrote {out}: {n} images")


@labels.command("fiftyone-import")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--assumed",
    "mode",
    flag_value="assumed",
    default=True,
    help="(default) Classes a sample does not list become assumed negatives (a person's labels stand).",
)
@click.option("--partial", "mode", flag_value="partial", help="Classes a sample does not list stay unknown.")
@click.option(
    "--complete",
    "mode",
    flag_value="complete",
    help="Classes a sample does not list become negatives (takes back classes removed in FiftyOne).",
)
@click.option("--annotator", default=None, help="Who the labels come from (default: your user name).")
def labels_fiftyone_import(path: Path, mode: str, annotator: str | None) -> None:
    """Import the labels of a FiftyOne image classification dataset: PATH is its folder, a zip of
    it, or its labels.json (e.g. written by dataset.export(..., label_field="ground_truth"))."""
    report = import_fiftyone(system_studio(), path, annotator or default_annotator(), mode=mode)
    click.echo(f"labels: {report.summary()}")
    if report.warning():
        click.echo(f"warning: {report.warning()}", err=True)
    for err in report.errors:
        click.echo(f"  {err}")
