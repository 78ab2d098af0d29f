"""Training a model version from human labels, with the MuMIC loss or a baseline.

Two modes: ``head`` (encoders frozen, cached image embeddings; learns class embeddings,
temperature and offset) and ``full`` (fine-tunes the image and text encoders, or their last
blocks, with class embeddings computed by the text encoder from the prompts at every step, then
fits the head as head mode does on the fine-tuned embeddings). Unknown image-class pairs are
left out of the loss. Every run becomes a model version.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from sqlalchemy import select

from db.models import Image
from mumic_core.encoders.encoding import encode_images, encode_prompts
from mumic_core.encoders.factory import Encoder, save_local_dir
from mumic_core.encoders.finetune import FullFit, fit_full
from mumic_core.encoders.spec import EncoderSpec
from mumic_core.errors import TrainingError
from mumic_core.model.fitting import HeadFit, fit_head
from mumic_core.model.head import Head
from mumic_core.model.losses import DEFAULT_LOSS, LOSS_NAMES, LOSSES, LossConfig
from mumic_core.model.metrics import evaluate, tune_thresholds
from mumic_core.pipeline.scoring import Scorer, image_embeddings, load_scorer, predict
from mumic_core.store.auth import requires
from mumic_core.store.classes import ClassInfo, active_classes
from mumic_core.store.collection import current_labels, image_items
from mumic_core.store.registry import (
    VersionInfo,
    next_version_name,
    publish_version_folder,
    register_version,
    save_head,
)
from mumic_core.store.studio import Studio

ProgressFn = Callable[[str, float, dict], None]


@dataclass
class TrainConfig:
    mode: str = "head"
    loss: str = DEFAULT_LOSS
    steps: int | None = None  # head mode: L-BFGS iterations per fit (default 100)
    epochs: int | None = None  # full mode: passes over the labelled images (default 30)
    lr: float | None = None  # full mode's learning rate (head mode needs none)
    batch_size: int = 32
    loss_params: dict[str, float] = field(default_factory=dict)  # over the loss's own defaults (PARAMS)
    # Per-class offsets: the default chosen in benchmarks/RESULTS.md (same mAP, higher GAP).
    per_class_offset: bool = True
    learn_temperature: bool = True
    learn_offset: bool = True
    unfreeze: str = "all"  # full mode: all | last
    seed: int = 0
    max_minutes: float | None = None
    activate: str = "if-better"  # if-better | always | never

    def validate(self) -> None:
        if self.mode not in ("head", "full"):
            raise TrainingError(f"unknown mode {self.mode!r}; use head or full")
        if self.loss not in LOSS_NAMES:
            raise TrainingError(f"unknown loss {self.loss!r}; use one of {', '.join(LOSS_NAMES)}")
        if not isinstance(self.loss_params, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in self.loss_params.values()
        ):
            raise TrainingError("loss parameters must be names with numbers")
        unknown = sorted(set(self.loss_params) - set(LOSSES[self.loss].PARAMS))
        if unknown:
            known = ", ".join(LOSSES[self.loss].PARAMS) or "none"
            raise TrainingError(f"the {self.loss} loss has no parameter {', '.join(unknown)}; its parameters: {known}")
        if self.unfreeze not in ("all", "last"):
            raise TrainingError("unfreeze must be 'all' or 'last'")
        if self.activate not in ("if-better", "always", "never"):
            raise TrainingError(f"unknown activation policy {self.activate!r}; use if-better, always or never")
        for name in ("steps", "epochs", "batch_size"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise TrainingError(f"{name} must be a whole number of at least 1, not {value!r}")
        for name, label in (("lr", "the learning rate"), ("max_minutes", "the time limit in minutes")):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise TrainingError(f"{label} must be a positive number, not {value!r}")

    def loss_config(self) -> LossConfig:
        """The loss, its parameters (over its own defaults) and what it learns."""
        return LossConfig(
            self.loss, dict(self.loss_params), self.per_class_offset, self.learn_temperature, self.learn_offset
        )

    def head_fit(self) -> HeadFit:
        return HeadFit(self.loss_config(), steps=self.steps or 100, max_minutes=self.max_minutes, seed=self.seed)

    def full_fit(self) -> FullFit:
        return FullFit(
            self.loss_config(),
            epochs=self.epochs or 30,
            batch_size=self.batch_size,
            lr=self.lr,
            unfreeze=self.unfreeze,
            seed=self.seed,
            max_minutes=self.max_minutes,
        )


@dataclass
class LabelSet:
    """Labels as dense arrays: targets, a mask of the known pairs (human labels and assumed
    negatives; 0 = unknown), and the assumed negatives."""

    image_ids: list[int]
    paths: list[Path]
    splits: list[str]
    classes: list[ClassInfo]
    targets: np.ndarray
    mask: np.ndarray
    assumed: np.ndarray

    def subset(self, split: str) -> np.ndarray:
        return np.array([i for i, s in enumerate(self.splits) if s == split], dtype=np.int64)


@dataclass
class TrainResult:
    version: VersionInfo  # registered as a candidate; promotion (re-score, activate) is the caller's
    promote: bool  # the activation policy says it should become active
    metrics: dict
    parent_metrics: dict
    history: list[dict] = field(default_factory=list)


def gather_labels(studio: Studio) -> LabelSet:
    """All images with at least one current label, over the active classes."""
    classes = active_classes(studio)
    col = {c.id: k for k, c in enumerate(classes)}
    labels = [(i, c, p, a) for i, c, p, a in current_labels(studio) if c in col]
    ids = sorted({i for i, _, _, _ in labels})
    row = {i: k for k, i in enumerate(ids)}
    targets = np.zeros((len(ids), len(classes)), dtype=np.float32)
    mask = np.zeros_like(targets)
    assumed = np.zeros_like(targets)
    for i, c, p, a in labels:
        targets[row[i], col[c]] = float(p)
        mask[row[i], col[c]] = 1.0
        assumed[row[i], col[c]] = float(a)
    with studio.read() as s:
        split = dict(s.execute(select(Image.id, Image.split).where(Image.id.in_(ids))).all()) if ids else {}
    items = dict(image_items(studio, ids))
    return LabelSet(ids, [items[i] for i in ids], [split[i] for i in ids], classes, targets, mask, assumed)


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _metrics(prob: np.ndarray, labels: LabelSet, rows: np.ndarray, f1: bool) -> dict:
    """Validation metrics of ``prob`` (already the rows' probabilities) on the known pairs:
    unknown pairs are left out, never counted as negatives; F1 is cross-fitted."""
    return evaluate(prob, labels.targets[rows], [c.name for c in labels.classes], f1=f1, mask=labels.mask[rows])


@requires("train")
def train(studio: Studio, config: TrainConfig, parent: VersionInfo, progress: ProgressFn | None = None) -> TrainResult:
    """Train a candidate version on top of ``parent`` and decide, by the activation policy,
    whether it should become active (see ``lifecycle.promote``)."""
    config.validate()
    _seed(config.seed)
    labels = gather_labels(studio)
    train_rows, val_rows = labels.subset("train"), labels.subset("val")
    if len(train_rows) < 2 or not labels.mask[train_rows].any():
        raise TrainingError("not enough labelled images to train (need at least 2 in the training split)")
    if len(val_rows) == 0:
        val_rows = train_rows  # tiny collections: report training-set metrics, said in the config
    report = progress or (lambda phase, frac, info: None)
    scorer = load_scorer(studio, parent)
    ids = labels.image_ids
    done = [0]

    def embedded(k: int) -> None:
        done[0] += k
        report("embedding", done[0] / len(ids), {"images": done[0], "of": len(ids)})

    report("embedding", 0.0, {"images": 0, "of": len(ids)})
    parent_prob = predict(studio, scorer, ids, labels.classes, progress=embedded)
    parent_metrics = _metrics(parent_prob[val_rows], labels, val_rows, False)

    name = next_version_name(studio)
    out_dir = studio.settings.model_dir / name
    started = time.monotonic()
    if config.mode == "head":
        head, history = _train_head(studio, scorer, labels, train_rows, config, report, started)
        spec = scorer.encoder.spec
        probs = _head_probs(studio, scorer, head, labels)
    else:
        prompts, names = [c.prompt_texts for c in labels.classes], [c.name for c in labels.classes]
        tuned_head, history, encoder = fit_full(
            scorer.encoder,
            [labels.paths[r] for r in train_rows],
            labels.targets[train_rows],
            labels.mask[train_rows],
            prompts,
            names,
            config.full_fit(),
            report,
            started,
            labels.assumed[train_rows],
        )
        head, probs = _refit_head(encoder, tuned_head, labels, train_rows, val_rows, config, report, history)
        save_local_dir(
            encoder.model, encoder.model_cfg, out_dir / "encoder", label=f"{name}: fine-tuned from {parent.name}"
        )
        spec = EncoderSpec(f"local-dir:{out_dir / 'encoder'}", "", "fine-tuned", "")
    thresholds = tune_thresholds(probs[val_rows], labels.targets[val_rows], labels.mask[val_rows])
    head.thresholds = {c.name: float(t) for c, t in zip(labels.classes, thresholds)}
    metrics = _metrics(probs[val_rows], labels, val_rows, True)
    metrics.update(
        {
            "n_train_images": int(len(train_rows)),
            "n_val_images": int(len(val_rows)),
            "seconds": round(time.monotonic() - started, 1),
        }
    )
    save_head(studio, name, head)

    base_kind = parent.training_config.get("base_kind", parent.kind)
    cfg = asdict(config) | {
        "parent": parent.name,
        "base_kind": base_kind,
        "classes": [c.name for c in labels.classes],
        "val_is_train": bool(len(labels.subset("val")) == 0),
    }
    description = f"{config.mode} mode, {config.loss} loss, from {parent.name}"
    publish_version_folder(studio, name)  # complete before it is registered
    version = register_version(
        studio,
        name,
        spec,
        config.mode,
        description,
        parent_id=parent.id,
        training_config=cfg,
        metrics={"val": metrics, "parent_val": parent_metrics, "history": history[-50:]},
    )
    better = _not_worse(metrics, parent_metrics)
    promote = config.activate == "always" or (config.activate == "if-better" and better)
    return TrainResult(version, promote, metrics, parent_metrics, history)


def _not_worse(new: dict, old: dict) -> bool:
    a, b = new.get("map"), old.get("map")
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return False
    return b is None or (isinstance(b, float) and math.isnan(b)) or a >= b


def _head_probs(studio: Studio, scorer: Scorer, head: Head, labels: LabelSet) -> np.ndarray:
    trained = replace(scorer, head=head)
    return predict(studio, trained, labels.image_ids, labels.classes)


def _refit_head(
    encoder: Encoder,
    tuned_head: Head,
    labels: LabelSet,
    train_rows: np.ndarray,
    val_rows: np.ndarray,
    config: TrainConfig,
    report: ProgressFn,
    history: list[dict],
) -> tuple[Head, np.ndarray]:
    """Full mode's last step: the head fitted as in head mode (pull toward the prompts chosen by
    cross-validation, L-BFGS) on the fine-tuned encoder's embeddings, in place of the head the
    fine-tuning loss learned by SGD alongside the encoder (``tuned_head``). Returns it and the
    probabilities of every labelled image; ``history`` gets both heads' validation mAP."""
    names = [c.name for c in labels.classes]
    emb = encode_images(encoder, labels.paths)
    text = encode_prompts(encoder, [c.prompt_texts for c in labels.classes]).cpu().numpy()
    head, _ = fit_head(
        emb[train_rows],
        text,
        labels.targets[train_rows],
        labels.mask[train_rows],
        names,
        config.head_fit(),
        lambda phase, frac, info: report(f"fitting the head: {phase}", frac, info),
        None,
        labels.assumed[train_rows],
    )
    probs = head.probabilities(emb @ head.class_matrix(names, text).T, names)
    tuned = tuned_head.probabilities(emb @ tuned_head.class_matrix(names, text).T, names)
    history.append(
        {
            "refit_head_val_map": _metrics(probs[val_rows], labels, val_rows, False).get("map"),
            "fine_tuning_head_val_map": _metrics(tuned[val_rows], labels, val_rows, False).get("map"),
        }
    )
    return head, probs


def _train_head(
    studio: Studio, scorer: Scorer, labels: LabelSet, rows: np.ndarray, config: TrainConfig, report, started: float
) -> tuple[Head, list[dict]]:
    emb = image_embeddings(studio, scorer, [labels.image_ids[r] for r in rows])
    text = scorer.text_embeddings([c.prompt_texts for c in labels.classes])
    return fit_head(
        emb,
        text,
        labels.targets[rows],
        labels.mask[rows],
        [c.name for c in labels.classes],
        config.head_fit(),
        report,
        started,
        labels.assumed[rows],
    )
