"""Commands on models: scoring, training, evaluation, versions."""

from __future__ import annotations

import json
from pathlib import Path

import click
from tqdm import tqdm

from mumic_core.cli.common import progress_bar, system_studio
from mumic_core.model.losses import DEFAULT_LOSS, LOSS_NAMES
from mumic_core.pipeline.evaluation import evaluate_folder, evaluate_stored
from mumic_core.pipeline.lifecycle import (
    ensure_base_version,
    promote,
)
from mumic_core.pipeline.runner import run_job
from mumic_core.pipeline.scoring import score_collection
from mumic_core.services.training import (
    request_training,
    training_params,
)
from mumic_core.store.jobs import create_job
from mumic_core.store.registry import (
    describe,
    get_version,
    list_versions,
)
from mumic_core.store.reports import format_metric


@click.command()
@click.option("--model", "model_name", default=None, help="Version name (default: the active one).")
def score(model_name: str | None) -> None:
    """Score every image against every active class and store the predictions."""
    studio = system_studio()
    version = get_version(studio, model_name) if model_name else ensure_base_version(studio)
    bar = tqdm(desc=f"scoring with {version.name}", unit="img")
    n = score_collection(studio, version, progress=bar.update)
    bar.close()
    click.echo(f"stored {n} predictions for {version.name}")


def _loss_params(pairs: tuple[str, ...]) -> dict[str, float]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise click.BadParameter(f"{pair!r} is not NAME=NUMBER", param_hint="--loss-param") from None
        if not sep or not name.strip():
            raise click.BadParameter(f"{pair!r} is not NAME=NUMBER", param_hint="--loss-param")
    return out


@click.command()
@click.option(
    "--loss",
    type=click.Choice(LOSS_NAMES),
    default=DEFAULT_LOSS,
    show_default=True,
    help="The training loss (README: the table of losses).",
)
@click.option(
    "--loss-param",
    "loss_params",
    multiple=True,
    metavar="NAME=VALUE",
    help="A parameter of the loss over its default, e.g. --loss-param weight=0.5 (repeatable).",
)
@click.option("--mode", type=click.Choice(["head", "full"]), default="head", show_default=True)
@click.option("--steps", type=int, default=None, help="Head mode: L-BFGS iterations per fit (default 100).")
@click.option("--epochs", type=int, default=None, help="Full mode: passes over the labelled images (default 30).")
@click.option("--lr", type=float, default=None)
@click.option(
    "--per-class-offset/--global-offset",
    default=True,
    show_default=True,
    help="One learned offset per class, or one for all classes.",
)
@click.option("--unfreeze", type=click.Choice(["all", "last"]), default="all", show_default=True)
@click.option(
    "--activate",
    "activate_policy",
    type=click.Choice(["if-better", "always", "never"]),
    default="if-better",
    show_default=True,
)
@click.option("--seed", default=0, show_default=True)
@click.option("--queue", is_flag=True, help="Hand the job to the background worker instead of running here.")
def train(loss, loss_params, mode, steps, epochs, lr, per_class_offset, unfreeze, activate_policy, seed, queue) -> None:
    """Train a new model version from the labels (candidate; promoted by --activate)."""
    params = {
        "loss": loss,
        "loss_params": _loss_params(loss_params),
        "mode": mode,
        "steps": steps,
        "epochs": epochs,
        "lr": lr,
        "per_class_offset": per_class_offset,
        "unfreeze": unfreeze,
        "activate": activate_policy,
        "seed": seed,
    }
    studio = system_studio()
    if queue:
        click.echo(f"queued job {request_training(studio, params)}; follow it on the Training page")
        return
    job_id = create_job(studio, "train", training_params(studio, params))
    bar, report = progress_bar("training")
    try:
        job = run_job(studio, job_id, extra_progress=report)
    finally:
        bar.close()
    if job.status != "succeeded":
        raise click.ClickException(f"job {job.id} {job.status}: {job.error or ''}")
    r = job.result
    fmt = lambda m: " ".join(f"{k}={format_metric(v)}" for k, v in m.items())  # noqa: E731
    click.echo(
        f"{r['version']}: validation {fmt(r['val'])} (was {fmt(r['parent_val'])}); "
        f"{'activated and re-scored' if r['activated'] else 'kept as candidate'}"
    )


@click.command()
@click.option("--images", "images_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--truth", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--model", "model_name", default=None, help="One version (default: every version).")
@click.option("--json", "as_json", is_flag=True)
def evaluate(images_dir: Path | None, truth: Path | None, model_name: str | None, as_json: bool) -> None:
    """Evaluate versions on ground truth (default: the demo's held-out truth)."""
    studio = system_studio()
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
        click.echo(
            f"{name:8s} {m['kind']:15s} {m['status']:9s} "
            + " ".join(f"{format_metric(m[k]):>7s}" for k in ("gap_at_10", "gap", "map"))
        )


@click.group()
def models() -> None:
    """List and activate model versions."""


@models.command("list")
def models_list() -> None:
    for v in list_versions(system_studio()):
        m = v.metrics.get("val", {})
        extra = f"  val mAP {format_metric(m.get('map'))} GAP@10 {format_metric(m.get('gap_at_10'))}" if m else ""
        click.echo(f"{v.status:9s} {describe(v)}{extra}")


@models.command("activate")
@click.argument("name")
def models_activate(name: str) -> None:
    """Re-score the collection with a version, then make it active (also to roll back)."""
    studio = system_studio()
    version = get_version(studio, name)
    bar, report = progress_bar("re-scoring")
    try:
        n = promote(studio, version, report)
    finally:
        bar.close()
    click.echo(f"{version.name} is active; {n} predictions stored")
