"""``python -m mumic_core``: the command-line interface."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from tqdm import tqdm

from mumic_core.errors import MumicError
from mumic_core.store.auth import SYSTEM
from mumic_core.store.reports import format_metric
from mumic_core.store.storage import write_file_atomically
from mumic_core.store.studio import Studio, open_studio


class _Errors(click.Group):
    """Known failures become one clear line and exit status 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (MumicError, OSError, KeyError, ValueError) as exc:
            click.echo(f"error: {_one_line(exc)}", err=True)
            sys.exit(1)


def _one_line(exc: Exception) -> str:
    """The failure as one line; an OSError (a full disk, a denied permission, a missing file)
    names the file and the reason."""
    if isinstance(exc, OSError) and exc.strerror:
        files = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
        return f"{files}: {exc.strerror}" if files else exc.strerror
    message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
    return " ".join(line.strip() for line in str(message).splitlines() if line.strip())


def _studio() -> Studio:
    """The store, acting as the system: whoever can run this can read the database file."""
    return open_studio(actor=SYSTEM)


def _progress_bar(desc: str):
    """A tqdm bar and the progress callback that drives it: phase, %, time, then epoch/step/loss."""
    bar = tqdm(total=100, desc=desc, unit="%",
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}")

    def report(phase: str, fraction: float, info: dict) -> None:
        bar.set_description_str(phase)  # set_description would append a second ': '
        bar.n = round(100 * fraction)
        parts = [f"epoch {info['epoch']}/{info['epochs']}" if "epochs" in info and "epoch" in info else "",
                 f"step {info['step']}" if "step" in info else "",
                 f"{info['img/s']:.0f} img/s" if "img/s" in info else "",
                 f"loss {info['loss']:.4f}" if "loss" in info else ""]
        bar.set_postfix_str(", ".join(p for p in parts if p))  # tqdm puts ", " before it
        bar.refresh()

    return bar, report


@click.group(cls=_Errors)
def main() -> None:
    """MuMIC Studio: multi-label image labelling with CLIP suggestions."""


@main.command()
@click.option("--demo/--no-demo", default=True, help="Seed the demo collection when the store is empty.")
def init(demo: bool) -> None:
    """Create or migrate the database, register the base model, seed the demo, score."""
    from mumic_core.pipeline.lifecycle import adopt_starter_model, ensure_base_version
    from mumic_core.pipeline.scoring import score_collection
    from mumic_core.services.demo import is_empty, seed_demo
    from mumic_core.store.registry import describe

    studio = _studio()
    version = adopt_starter_model(studio) or ensure_base_version(studio)
    click.echo(f"model: {describe(version)}")
    if demo and is_empty(studio):
        summary = seed_demo(studio)
        click.echo(f"demo: {summary.images} images, {summary.labelled} pre-labelled "
                   f"({summary.missed_labels} labels missed on purpose)")
    from sqlalchemy import func, select

    from db.models import Prediction

    with studio.read() as s:
        scored = s.scalar(select(func.count()).select_from(Prediction)
                          .where(Prediction.model_version_id == version.id)) or 0
    if not scored:
        with tqdm(desc=f"scoring with {version.name}", unit="img") as bar:
            n = score_collection(studio, version, progress=bar.update)
        click.echo(f"scored: {n} image-class pairs with {version.name}")
    _announce_first_admin(studio)


def _announce_first_admin(studio: Studio) -> None:
    from mumic_core.store.auth import ensure_first_admin

    password = ensure_first_admin(studio)
    if password:
        click.secho(f"\nFirst start: an admin account was created.\n  username: admin\n  password: {password}\n"
                    "It is shown only this once. Change it: python -m mumic_core users passwd admin\n"
                    "Add people: python -m mumic_core users add NAME --role annotator\n", fg="yellow")


@main.command()
@click.option("--images", "n_images", default=400, show_default=True)
@click.option("--seed", default=7, show_default=True)
def demo(n_images: int, seed: int) -> None:
    """Generate the demo collection (classes, images, truth, noisy pre-labels)."""
    from mumic_core.services.demo import is_empty, seed_demo

    studio = _studio()
    if not is_empty(studio):
        raise ValueError("the collection is not empty; use a fresh MUMIC_HOME for the demo")
    s = seed_demo(studio, n_images=n_images, seed=seed)
    click.echo(f"demo: {s.images} images, {s.labelled} pre-labelled ({s.missed_labels} labels missed); "
               f"held-out truth in {s.holdout_csv}")


@main.command("import")
@click.argument("folder", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--labels", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A labels file: filename,labels CSV (labels joined by '|'), or a CSV/JSON export.")
@click.option("--complete", is_flag=True, help="Listed labels are complete: other classes are negatives.")
@click.option("--annotator", default=None, help="Who the labels come from (default: your user name).")
@click.option("--score/--no-score", default=True, show_default=True,
              help="Score the new images with the active model (by a running worker, else here).")
def import_(folder: Path | None, labels: Path | None, complete: bool, annotator: str | None, score: bool) -> None:
    """Import every image below FOLDER (bad files are named with their reason) and/or a labels file."""
    from mumic_core.store.collection import default_annotator, import_folder
    from mumic_core.store.label_io import import_labels

    if folder is None and labels is None:
        raise click.UsageError("give a FOLDER of images, --labels FILE, or both")
    studio = _studio()
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
            click.echo(f"error: import stopped: {report.stopped}; free space and import again (what was "
                       "imported is skipped)", err=True)
            sys.exit(1)
    if labels:
        lr = import_labels(studio, labels, annotator or default_annotator(), complete=complete)
        click.echo(f"labels: {lr.summary()}")
        for err in lr.errors:
            click.echo(f"  {err}")
    if report is not None and report.rejected and not (report.added or report.duplicates):
        sys.exit(2)  # nothing in the folder was an image


def _score_new_images(studio: Studio) -> None:
    """Queue the new images' scoring for a running worker, or score them here when none runs."""
    from mumic_core.pipeline.runner import run_job
    from mumic_core.services.training import request_scoring_of_new_images
    from mumic_core.store.workers import live_workers

    if live_workers(studio):
        click.echo(f"queued scoring job {request_scoring_of_new_images(studio)} for the running worker")
        return
    job_id = request_scoring_of_new_images(studio, run_here=True)
    if job_id is None:
        return
    bar, report = _progress_bar("scoring new images")
    try:
        job = run_job(studio, job_id, extra_progress=report)
    finally:
        bar.close()
    click.echo(f"scored the new images with {job.result.get('version')}: {job.result.get('predictions', 0)} "
               "predictions")


@main.group()
def classes() -> None:
    """Define and list classes."""


@classes.command("add")
@click.argument("name")
@click.option("--prompt", "prompts", multiple=True, help="Text prompt (repeatable).")
@click.option("--description", default="")
def classes_add(name: str, prompts: tuple[str, ...], description: str) -> None:
    """Add a class and score it zero-shot over the collection."""
    from mumic_core.pipeline.scoring import score_classes
    from mumic_core.store.classes import add_class
    from mumic_core.store.registry import active_version

    studio = _studio()
    cls = add_class(studio, name, prompts, description)
    click.echo(f"added class '{cls.name}' with prompts: {'; '.join(cls.prompt_texts)}")
    version = active_version(studio)
    if version is not None:
        n = score_classes(studio, version, [cls.id])
        click.echo(f"zero-shot scores for {n} images with {version.name}")


@classes.command("list")
def classes_list() -> None:
    """List active classes with their prompts."""
    from mumic_core.store.classes import list_classes

    for c in list_classes(_studio()):
        click.echo(f"{c.id:4d}  {c.name:28s} {' | '.join(c.prompt_texts)}")


@classes.command("import")
@click.argument("csv_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def classes_import(csv_path: Path) -> None:
    """Add classes from a name,prompt CSV (one prompt per row; names may repeat)."""
    from mumic_core.store.classes import import_class_csv

    added, refused = import_class_csv(_studio(), csv_path)
    click.echo(f"added {len(added)} classes; {len(refused)} refused")
    for line in refused:
        click.echo(f"  {line}")


@main.command()
@click.option("--model", "model_name", default=None, help="Version name (default: the active one).")
def score(model_name: str | None) -> None:
    """Score every image against every active class and store the predictions."""
    from mumic_core.pipeline.lifecycle import ensure_base_version
    from mumic_core.pipeline.scoring import score_collection
    from mumic_core.store.registry import get_version

    studio = _studio()
    version = get_version(studio, model_name) if model_name else ensure_base_version(studio)
    bar = tqdm(desc=f"scoring with {version.name}", unit="img")
    n = score_collection(studio, version, progress=bar.update)
    bar.close()
    click.echo(f"stored {n} predictions for {version.name}")


@main.command()
@click.option("--loss", type=click.Choice(["mumic", "bce", "softmax", "asl"]), default="mumic", show_default=True)
@click.option("--mode", type=click.Choice(["head", "full"]), default="head", show_default=True)
@click.option("--epochs", type=int, default=None, help="Epochs (full) or steps (head).")
@click.option("--lr", type=float, default=None)
@click.option("--per-class-offset/--global-offset", default=True, show_default=True,
              help="One learned offset per class, or one for all classes.")
@click.option("--unfreeze", type=click.Choice(["all", "last"]), default="all", show_default=True)
@click.option("--activate", "activate_policy", type=click.Choice(["if-better", "always", "never"]),
              default="if-better", show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--queue", is_flag=True, help="Hand the job to the background worker instead of running here.")
def train(loss, mode, epochs, lr, per_class_offset, unfreeze, activate_policy, seed, queue) -> None:
    """Train a new model version from the human labels (candidate; promoted by --activate)."""
    from mumic_core.pipeline.runner import run_job
    from mumic_core.services.training import request_training, training_params
    from mumic_core.store.jobs import create_job

    params = {"loss": loss, "mode": mode, "epochs": epochs, "lr": lr, "per_class_offset": per_class_offset,
              "unfreeze": unfreeze, "activate": activate_policy, "seed": seed}
    studio = _studio()
    if queue:
        click.echo(f"queued job {request_training(studio, params)}; follow it on the Training page")
        return
    job_id = create_job(studio, "train", training_params(studio, params))
    bar, report = _progress_bar("training")
    try:
        job = run_job(studio, job_id, extra_progress=report)
    finally:
        bar.close()
    if job.status != "succeeded":
        raise click.ClickException(f"job {job.id} {job.status}: {job.error or ''}")
    r = job.result
    fmt = lambda m: " ".join(f"{k}={format_metric(v)}" for k, v in m.items())  # noqa: E731
    click.echo(f"{r['version']}: validation {fmt(r['val'])} (was {fmt(r['parent_val'])}); "
               f"{'activated and re-scored' if r['activated'] else 'kept as candidate'}")


@main.command()
@click.option("--images", "images_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--truth", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--model", "model_name", default=None, help="One version (default: every version).")
@click.option("--json", "as_json", is_flag=True)
def evaluate(images_dir: Path | None, truth: Path | None, model_name: str | None, as_json: bool) -> None:
    """Evaluate versions on ground truth (default: the demo's held-out truth)."""
    from mumic_core.pipeline.evaluation import evaluate_folder, evaluate_stored
    from mumic_core.store.registry import get_version, list_versions

    studio = _studio()
    if truth is None:
        truth = studio.settings.demo_dir / "holdout.csv"
        if images_dir or not truth.exists():
            raise ValueError("give --truth CSV (and --images DIR for images outside the collection)")
    versions = [get_version(studio, model_name)] if model_name else list_versions(studio)
    results = {}
    for v in versions:
        m = evaluate_folder(studio, v, images_dir, truth) if images_dir else evaluate_stored(studio, v, truth)
        results[v.name] = {"kind": v.kind, "status": v.status, **m}
    if as_json:
        click.echo(json.dumps(results, indent=1))
        return
    click.echo(f"truth: {truth} ({next(iter(results.values()))['n_images']} images)")
    click.echo(f"{'version':8s} {'kind':15s} {'status':9s} {'GAP@10':>7s} {'GAP':>7s} {'mAP':>7s}")
    for name, m in results.items():
        click.echo(f"{name:8s} {m['kind']:15s} {m['status']:9s} "
                   + " ".join(f"{format_metric(m[k]):>7s}" for k in ("gap_at_10", "gap", "map")))


@main.command()
@click.argument("what", type=click.Choice(["labels"]))
@click.option("--format", "fmt", type=click.Choice(["csv", "json", "coco"]), default="csv", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def export(what: str, fmt: str, out: Path | None) -> None:
    """Export the current human labels."""
    from mumic_core.store.label_io import export_labels

    text = export_labels(_studio(), fmt)
    if out:
        write_file_atomically(out, text.encode("utf-8"))
        click.echo(f"wrote {out}")
    else:
        click.echo(text, nl=False)


@main.command()
@click.option("--captions", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="filename,caption CSV (filenames relative to it; a file may have several captions).")
@click.option("--model", default=None, help="Architecture to start from random weights (default: "
              "the starter architecture), or local-dir:DIR to continue from a pretrained model.")
@click.option("--pretrained", default="", help="Checkpoint file to continue from (with an architecture name).")
@click.option("--minutes", default=30.0, show_default=True, help="Time budget.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (default: $MUMIC_HOME/models/pretrained).")
@click.option("--batch-size", default=128, show_default=True)
@click.option("--lr", default=5e-4, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--max-steps", type=int, default=None, help="Stop after this many steps if the time budget "
              "lasts longer (quick runs, comparisons at equal steps).")
@click.option("--label", default="", help="How the model is named in the UI.")
def pretrain(captions, model, pretrained, minutes, out, batch_size, lr, seed, max_steps, label) -> None:
    """Contrastive (CLIP-style) pretraining on captioned images; saves an open_clip local-dir."""
    from mumic_core.config import load_settings
    from mumic_core.encoders.pretraining import PretrainConfig
    from mumic_core.encoders.pretraining import pretrain as run_pretrain
    from mumic_core.encoders.spec import STARTER_ARCH

    out = out or load_settings().model_dir / "pretrained"
    config = PretrainConfig(model=model or STARTER_ARCH, pretrained=pretrained, minutes=minutes,
                            batch_size=batch_size, lr=lr, seed=seed, label=label,
                            max_steps=max_steps)
    bar, report = _progress_bar("pretraining")
    try:
        result = run_pretrain(captions, out, config, progress=lambda f, info: report("pretraining", f, info))
    finally:
        bar.close()
    click.echo(f"saved {result.out_dir}: {result.steps} steps, {result.images_seen} images in {result.seconds:.0f} s "
               f"({result.images_per_second:.1f} images/s), final loss {result.final_loss:.3f}; "
               f"use it with MUMIC_PRETRAINED=local-dir:{result.out_dir}")


@main.group()
def starter() -> None:
    """The starter model recipe (see `make starter-model`)."""


@starter.command("corpus")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--composites", default=4000, show_default=True)
def starter_corpus(out: Path | None, composites: int) -> None:
    """Build the caption corpus from Tux Paint stamps and emoji (held-out drawings kept aside)."""
    from mumic_core.config import load_settings
    from mumic_core.encoders.spec import corpus_dir
    from mumic_core.synthetic.starter_corpus import build_corpus

    out = out or corpus_dir(load_settings())
    summary = build_corpus(out, composites=composites)
    click.echo(f"corpus in {out}: " + ", ".join(f"{k} {v}" for k, v in summary.items()))


@starter.command("evaluate")
@click.option("--model", "model_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Model folder (default: the starter model).")
@click.option("--corpus", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--json", "as_json", is_flag=True)
def starter_evaluate(model_dir: Path | None, corpus: Path | None, as_json: bool) -> None:
    """Zero-shot metrics on scenes of held-out drawings: the model vs an untrained one, and chance."""
    import tempfile

    from mumic_core.config import load_settings
    from mumic_core.encoders.factory import create_random_local_dir
    from mumic_core.encoders.spec import (
        CONFIG_NAME,
        EncoderSpec,
        corpus_dir,
        starter_dir,
    )
    from mumic_core.encoders.starter import zero_shot_scenes

    settings = load_settings()
    model_dir = (model_dir or starter_dir(settings)).resolve()
    if not (model_dir / CONFIG_NAME).is_file():
        raise FileNotFoundError(f"no model in {model_dir}: run `make starter-model` first")
    corpus = corpus or corpus_dir(settings)
    trained = zero_shot_scenes(EncoderSpec(f"local-dir:{model_dir}", "", "starter", ""), corpus)
    with tempfile.TemporaryDirectory() as tmp:
        create_random_local_dir(f"local-dir:{model_dir}", Path(tmp) / "random")
        untrained = zero_shot_scenes(EncoderSpec(f"local-dir:{Path(tmp) / 'random'}", "", "builtin-random", ""),
                                     corpus)
    rows = {"starter": trained, "untrained (same architecture)": untrained}
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    chance = trained["shuffled_chance"]
    click.echo(f"{trained['n_images']} scenes of held-out drawings, {trained['n_classes']} classes; "
               f"chance (positive rate) {trained['chance_positive_rate']:.4f}")
    click.echo(f"{'chance (scores shuffled)':30s} mAP {format_metric(chance['map']['mean'])} "
               f"(99th pct {format_metric(chance['map']['p99'])})  GAP@10 {format_metric(chance['gap_at_10']['mean'])} "
               f"(99th pct {format_metric(chance['gap_at_10']['p99'])})")
    for name, m in rows.items():
        click.echo(f"{name:30s} mAP {format_metric(m['map'])}  GAP@10 {format_metric(m['gap_at_10'])}  "
                   f"GAP {format_metric(m['gap'])}")


@main.group()
def models() -> None:
    """List and activate model versions."""


@models.command("list")
def models_list() -> None:
    from mumic_core.store.registry import describe, list_versions

    for v in list_versions(_studio()):
        m = v.metrics.get("val", {})
        extra = f"  val mAP {format_metric(m.get('map'))} GAP@10 {format_metric(m.get('gap_at_10'))}" if m else ""
        click.echo(f"{v.status:9s} {describe(v)}{extra}")


@models.command("activate")
@click.argument("name")
def models_activate(name: str) -> None:
    """Re-score the collection with a version, then make it active (also to roll back)."""
    from mumic_core.pipeline.lifecycle import promote
    from mumic_core.store.registry import get_version

    studio = _studio()
    version = get_version(studio, name)
    bar, report = _progress_bar("re-scoring")
    try:
        n = promote(studio, version, report)
    finally:
        bar.close()
    click.echo(f"{version.name} is active; {n} predictions stored")


@main.group()
def users() -> None:
    """Accounts: admins do everything, annotators review."""


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    return click.prompt("password", hide_input=True, confirmation_prompt=True)


@users.command("add")
@click.argument("username")
@click.option("--role", type=click.Choice(["admin", "annotator"]), default="annotator", show_default=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
def users_add(username: str, role: str, password_stdin: bool) -> None:
    """Create an account (the password is asked for, never taken as an argument)."""
    from mumic_core.store.auth import add_user

    user = add_user(_studio(), username, _read_password(password_stdin), role)
    click.echo(f"added {user.role} {user.username}")


@users.command("list")
def users_list() -> None:
    from mumic_core.store.auth import list_users

    for u in list_users(_studio()):
        click.echo(f"{u.username:20s} {u.role:10s} {'active' if u.active else 'disabled'}")


@users.command("disable")
@click.argument("username")
def users_disable(username: str) -> None:
    """Disable an account and sign out its sessions (its labels stay)."""
    from mumic_core.store.auth import set_active

    set_active(_studio(), username, False)
    click.echo(f"disabled {username}")


@users.command("enable")
@click.argument("username")
def users_enable(username: str) -> None:
    from mumic_core.store.auth import set_active

    set_active(_studio(), username, True)
    click.echo(f"enabled {username}")


@users.command("passwd")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
def users_passwd(username: str, password_stdin: bool) -> None:
    """Set a new password (signs out the account's sessions)."""
    from mumic_core.store.auth import set_password

    set_password(_studio(), username, _read_password(password_stdin))
    click.echo(f"password of {username} changed")


@main.command("backup")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
def backup_cmd(out: Path) -> None:
    """Write the store (database, images, models) to the tar file OUT, while the app runs."""
    from mumic_core.store.backup import backup

    manifest = backup(_studio(), out)
    click.echo(f"backup {out}: {sum(manifest['rows'].values())} rows, "
               f"{sum(manifest['files'].values())} files")


@main.command("restore")
@click.argument("archive", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def restore_cmd(archive: Path) -> None:
    """Unpack a backup into MUMIC_HOME (which must be empty), then bring its schema up to date."""
    from mumic_core.config import load_settings
    from mumic_core.store.backup import restore

    settings = load_settings()
    manifest = restore(archive, settings.home)
    open_studio(settings, actor=SYSTEM)
    click.echo(f"restored {archive} into {settings.home} (backup of {manifest['created']})")
