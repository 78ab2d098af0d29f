"""Commands that make encoders: contrastive pretraining and the starter model's recipe."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import click

from mumic_core.cli.common import progress_bar
from mumic_core.config import load_settings
from mumic_core.encoders.factory import create_random_local_dir
from mumic_core.encoders.pretraining import PretrainConfig
from mumic_core.encoders.pretraining import pretrain as run_pretrain
from mumic_core.encoders.spec import (
    CONFIG_NAME,
    STARTER_ARCH,
    EncoderSpec,
    corpus_dir,
    starter_dir,
)
from mumic_core.encoders.starter import zero_shot_scenes
from mumic_core.store.reports import format_metric
from mumic_core.synthetic.starter_corpus import build_corpus


@click.command()
@click.option(
    "--captions",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="filename,caption CSV (filenames relative to it; a file may have several captions).",
)
@click.option(
    "--model",
    default=None,
    help="Architecture to start from random weights (default: "
    "the starter architecture), or local-dir:DIR to continue from a pretrained model.",
)
@click.option("--pretrained", default="", help="Checkpoint file to continue from (with an architecture name).")
@click.option("--minutes", default=30.0, show_default=True, help="Time budget.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Output folder (default: $MUMIC_HOME/models/pretrained).",
)
@click.option("--batch-size", default=128, show_default=True)
@click.option("--lr", default=5e-4, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--max-steps",
    type=int,
    default=None,
    help="Stop after this many steps if the time budget lasts longer (quick runs, comparisons at equal steps).",
)
@click.option("--label", default="", help="How the model is named in the UI.")
def pretrain(captions, model, pretrained, minutes, out, batch_size, lr, seed, max_steps, label) -> None:
    """Contrastive (CLIP-style) pretraining on captioned images; saves an open_clip local-dir."""
    out = out or load_settings().model_dir / "pretrained"
    config = PretrainConfig(
        model=model or STARTER_ARCH,
        pretrained=pretrained,
        minutes=minutes,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        label=label,
        max_steps=max_steps,
    )
    bar, report = progress_bar("pretraining")
    try:
        result = run_pretrain(captions, out, config, progress=lambda f, info: report("pretraining", f, info))
    finally:
        bar.close()
    click.echo(
        f"saved {result.out_dir}: {result.steps} steps, {result.images_seen} images in {result.seconds:.0f} s "
        f"({result.images_per_second:.1f} images/s), final loss {result.final_loss:.3f}; "
        f"use it with MUMIC_PRETRAINED=local-dir:{result.out_dir}"
    )


@click.group()
def starter() -> None:
    """The starter model recipe (see `make starter-model`)."""


@starter.command("corpus")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--composites", default=4000, show_default=True)
def starter_corpus(out: Path | None, composites: int) -> None:
    """Build the caption corpus from Tux Paint stamps and emoji (held-out drawings kept aside)."""
    out = out or corpus_dir(load_settings())
    summary = build_corpus(out, composites=composites)
    click.echo(f"corpus in {out}: " + ", ".join(f"{k} {v}" for k, v in summary.items()))


@starter.command("evaluate")
@click.option(
    "--model",
    "model_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Model folder (default: the starter model).",
)
@click.option("--corpus", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--json", "as_json", is_flag=True)
def starter_evaluate(model_dir: Path | None, corpus: Path | None, as_json: bool) -> None:
    """Zero-shot metrics on scenes of held-out drawings: the model vs an untrained one, and chance."""
    settings = load_settings()
    model_dir = (model_dir or starter_dir(settings)).resolve()
    if not (model_dir / CONFIG_NAME).is_file():
        raise FileNotFoundError(f"no model in {model_dir}: run `make starter-model` first")
    corpus = corpus or corpus_dir(settings)
    trained = zero_shot_scenes(EncoderSpec(f"local-dir:{model_dir}", "", "starter", ""), corpus)
    with tempfile.TemporaryDirectory() as tmp:
        create_random_local_dir(f"local-dir:{model_dir}", Path(tmp) / "random")
        untrained = zero_shot_scenes(EncoderSpec(f"local-dir:{Path(tmp) / 'random'}", "", "builtin-random", ""), corpus)
    rows = {"starter": trained, "untrained (same architecture)": untrained}
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    chance = trained["shuffled_chance"]
    click.echo(
        f"{trained['n_images']} scenes of held-out drawings, {trained['n_classes']} classes; "
        f"chance (positive rate) {trained['chance_positive_rate']:.4f}"
    )
    click.echo(
        f"{'chance (scores shuffled)':30s} mAP {format_metric(chance['map']['mean'])} "
        f"(99th pct {format_metric(chance['map']['p99'])})  GAP@10 {format_metric(chance['gap_at_10']['mean'])} "
        f"(99th pct {format_metric(chance['gap_at_10']['p99'])})"
    )
    for name, m in rows.items():
        click.echo(
            f"{name:30s} mAP {format_metric(m['map'])}  GAP@10 {format_metric(m['gap_at_10'])}  "
            f"GAP {format_metric(m['gap'])}"
        )
