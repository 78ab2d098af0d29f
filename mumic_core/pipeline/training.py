"""Training a model version from human labels, with the MuMIC loss or a baseline.

Two modes: ``head`` (encoders frozen, cached image embeddings; learns class embeddings,
temperature and offset) and ``full`` (fine-tunes the image and text encoders, or their last
blocks, with class embeddings computed by the text encoder from the prompts at every step).
Unlabelled image-class pairs are masked out of the loss. Every run becomes a model version.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from db.models import LabelClass, ModelVersion

from mumic_core.store.auth import requires
from mumic_core.encoders.encoding import Head, encode_prompts
from mumic_core.store.collection import current_labels
from mumic_core.errors import TrainingError
from mumic_core.store.images import load_rgb
from mumic_core.model.losses import LOSS_NAMES, init_temperature_offset, loss_fn
from mumic_core.model.metrics import evaluate, tune_thresholds
from mumic_core.encoders.factory import Encoder, load_encoder, save_local_dir
from mumic_core.store.registry import encoder_spec, head_path, next_version_name, publish_version_folder, register_version
from mumic_core.pipeline.scoring import Scorer, active_classes, image_embeddings, image_items, load_scorer, predict
from mumic_core.store.studio import Studio

ProgressFn = Callable[[str, float, dict], None]


@dataclass
class TrainConfig:
    mode: str = "head"
    loss: str = "mumic"
    epochs: int | None = None  # default: 300 steps (head), 30 epochs (full)
    lr: float | None = None
    batch_size: int = 32
    # Defaults chosen in benchmarks/RESULTS.md: per-class offsets (same mAP, higher GAP) and no
    # negative margin (same mAP at 0-40 % missed labels, better calibrated probabilities).
    per_class_offset: bool = True
    learn_temperature: bool = True
    learn_offset: bool = True
    gamma_pos: float = 1.0
    gamma_neg: float = 2.0
    neg_margin: float = 0.0
    unfreeze: str = "all"  # full mode: all | last
    seed: int = 0
    max_minutes: float | None = None
    activate: str = "if-better"  # if-better | always | never

    def validate(self) -> None:
        if self.mode not in ("head", "full"):
            raise TrainingError(f"unknown mode {self.mode!r}; use head or full")
        if self.loss not in LOSS_NAMES:
            raise TrainingError(f"unknown loss {self.loss!r}; use one of {', '.join(LOSS_NAMES)}")
        if self.unfreeze not in ("all", "last"):
            raise TrainingError("unfreeze must be 'all' or 'last'")
        if self.activate not in ("if-better", "always", "never"):
            raise TrainingError(f"unknown activation policy {self.activate!r}; use if-better, always or never")
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise TrainingError(f"{name} must be a whole number of at least 1, not {value!r}")
        for name, label in (("lr", "the learning rate"), ("max_minutes", "the time limit in minutes")):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise TrainingError(f"{label} must be a positive number, not {value!r}")

    def loss_params(self) -> dict:
        if self.loss == "mumic":
            return {"gamma_pos": self.gamma_pos, "gamma_neg": self.gamma_neg, "neg_margin": self.neg_margin}
        return {}


@dataclass
class LabelSet:
    """Human labels as dense arrays: targets and a mask of labelled pairs."""

    image_ids: list[int]
    paths: list[Path]
    splits: list[str]
    classes: list[LabelClass]
    targets: np.ndarray
    mask: np.ndarray

    def subset(self, split: str) -> np.ndarray:
        return np.array([i for i, s in enumerate(self.splits) if s == split], dtype=np.int64)


@dataclass
class TrainResult:
    version: ModelVersion  # registered as a candidate; promotion (re-score, activate) is the caller's
    promote: bool  # the activation policy says it should become active
    metrics: dict
    parent_metrics: dict
    history: list[dict] = field(default_factory=list)


def gather_labels(studio: Studio) -> LabelSet:
    """All images with at least one current human label, over the active classes."""
    from sqlalchemy import select

    from db.models import Image

    classes = active_classes(studio)
    col = {c.id: k for k, c in enumerate(classes)}
    labels = [(i, c, p) for i, c, p in current_labels(studio) if c in col]
    ids = sorted({i for i, _, _ in labels})
    row = {i: k for k, i in enumerate(ids)}
    targets = np.zeros((len(ids), len(classes)), dtype=np.float32)
    mask = np.zeros_like(targets)
    for i, c, p in labels:
        targets[row[i], col[c]] = float(p)
        mask[row[i], col[c]] = 1.0
    with studio.read() as s:
        split = dict(s.execute(select(Image.id, Image.split).where(Image.id.in_(ids))).all()) if ids else {}
    items = dict(image_items(studio, ids))
    return LabelSet(ids, [items[i] for i in ids], [split[i] for i in ids], classes, targets, mask)


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class _Calibration(nn.Module):
    """Learnable temperature (as log) and offset (global or per class)."""

    def __init__(self, temperature: float, offset: float | torch.Tensor, n_classes: int, per_class: bool,
                 learn_temperature: bool, learn_offset: bool = True) -> None:
        super().__init__()
        self.log_tau = nn.Parameter(torch.tensor(math.log(temperature)), requires_grad=learn_temperature)
        b = torch.as_tensor(offset, dtype=torch.float32)
        self.offset = nn.Parameter(b.expand(n_classes).clone() if per_class else b.reshape(()),
                                   requires_grad=learn_offset)

    def forward(self, sim: torch.Tensor) -> torch.Tensor:
        return (sim - self.offset) / self.log_tau.exp()


def _check_finite(loss: torch.Tensor, step: int) -> None:
    if not torch.isfinite(loss):
        raise TrainingError(f"training diverged: loss is {loss.item()} at step {step}; no version was made")


def _metrics(prob: np.ndarray, labels: LabelSet, rows: np.ndarray, thresholds: np.ndarray | None) -> dict:
    """Validation metrics of ``prob`` (already the rows' probabilities); unlabelled pairs count as absent."""
    truth = labels.targets[rows] * labels.mask[rows]
    return evaluate(prob, truth, [c.name for c in labels.classes], thresholds=thresholds)


@requires("train")
def train(studio: Studio, config: TrainConfig, parent: ModelVersion,
          progress: ProgressFn | None = None) -> TrainResult:
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
    _, parent_prob = predict(studio, scorer, ids, labels.classes, progress=embedded)
    parent_metrics = _metrics(parent_prob[val_rows], labels, val_rows, None)

    name = next_version_name(studio)
    out_dir = studio.settings.model_dir / name
    started = time.monotonic()
    if config.mode == "head":
        head, history = _train_head(studio, scorer, labels, train_rows, config, report, started)
        spec = scorer.encoder.spec
        probs = _head_probs(studio, scorer, head, labels)
    else:
        head, history, encoder = fit_full(scorer.encoder, [labels.paths[r] for r in train_rows],
                                          labels.targets[train_rows], labels.mask[train_rows],
                                          [c.prompt_texts for c in labels.classes],
                                          [c.name for c in labels.classes], config, report, started)
        save_local_dir(encoder.model, encoder.model_cfg, out_dir / "encoder",
                       label=f"{name}: fine-tuned from {parent.name}")
        from mumic_core.encoders.factory import EncoderSpec

        spec = EncoderSpec(f"local-dir:{out_dir / 'encoder'}", "", "fine-tuned", "")
        probs = _full_probs(encoder, head, labels)
    thresholds = tune_thresholds(probs[val_rows], labels.targets[val_rows] * labels.mask[val_rows])
    head.thresholds = {c.name: float(t) for c, t in zip(labels.classes, thresholds)}
    metrics = _metrics(probs[val_rows], labels, val_rows, thresholds)
    metrics.update({"n_train_images": int(len(train_rows)), "n_val_images": int(len(val_rows)),
                    "seconds": round(time.monotonic() - started, 1)})
    out_dir.mkdir(parents=True, exist_ok=True)
    head.save(out_dir / "head.json")

    base_kind = parent.training_config.get("base_kind", parent.kind)
    cfg = asdict(config) | {"parent": parent.name, "base_kind": base_kind,
                            "classes": [c.name for c in labels.classes],
                            "val_is_train": bool(len(labels.subset("val")) == 0)}
    description = f"{config.mode} mode, {config.loss} loss, from {parent.name}"
    publish_version_folder(studio, name)  # complete before it is registered
    version = register_version(studio, name, spec, config.mode, description, parent_id=parent.id,
                               training_config=cfg, metrics={"val": metrics, "parent_val": parent_metrics,
                                                             "history": history[-50:]})
    better = _not_worse(metrics, parent_metrics)
    promote = config.activate == "always" or (config.activate == "if-better" and better)
    return TrainResult(version, promote, metrics, parent_metrics, history)


def _not_worse(new: dict, old: dict) -> bool:
    a, b = new.get("map"), old.get("map")
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return False
    return b is None or (isinstance(b, float) and math.isnan(b)) or a >= b


def _head_probs(studio: Studio, scorer: Scorer, head: Head, labels: LabelSet) -> np.ndarray:
    trained = Scorer(scorer.version, scorer.encoder, head)
    return predict(studio, trained, labels.image_ids, labels.classes)[1]


def _train_head(studio: Studio, scorer: Scorer, labels: LabelSet, rows: np.ndarray, config: TrainConfig,
                report, started: float) -> tuple[Head, list[dict]]:
    emb = image_embeddings(studio, scorer, [labels.image_ids[r] for r in rows])
    text = scorer.text_embeddings([c.prompt_texts for c in labels.classes])
    return fit_head(emb, text, labels.targets[rows], labels.mask[rows], [c.name for c in labels.classes],
                    config, report, started)


def fit_head(emb: np.ndarray, text: np.ndarray, targets: np.ndarray, mask: np.ndarray, names: Sequence[str],
             config: TrainConfig, report: ProgressFn | None = None,
             started: float | None = None) -> tuple[Head, list[dict]]:
    """Head mode on arrays: class embeddings (initialised from the prompts' ``text`` embeddings),
    temperature and offset fitted to the images' frozen embeddings ``emb`` with the configured
    loss; pairs where ``mask`` is 0 are left out of the loss."""
    report = report or (lambda phase, frac, info: None)
    started = time.monotonic() if started is None else started
    emb_t = torch.from_numpy(np.asarray(emb, dtype=np.float32))
    text_t = torch.from_numpy(np.asarray(text, dtype=np.float32))
    targets_t = torch.from_numpy(np.asarray(targets, dtype=np.float32))
    mask_t = torch.from_numpy(np.asarray(mask, dtype=np.float32))
    sim0 = emb_t @ text_t.T
    rate = float(np.clip(targets_t[mask_t.bool()].mean().item(), 0.02, 0.5)) if mask_t.any() else 0.1
    tau, b = init_temperature_offset(sim0, positive_rate=rate, per_class=config.per_class_offset)
    class_emb = nn.Parameter(text_t.clone())
    calib = _Calibration(tau, b, len(names), config.per_class_offset, config.learn_temperature,
                         config.learn_offset)
    opt = torch.optim.AdamW([{"params": [class_emb], "weight_decay": 0.0},
                             {"params": calib.parameters(), "weight_decay": 0.0}], lr=config.lr or 5e-3)
    lossf = loss_fn(config.loss, **config.loss_params())
    steps = config.epochs or 300
    history = []
    for step in range(steps):
        logits = calib(emb_t @ F.normalize(class_emb, dim=-1).T)
        loss = lossf(logits, targets_t, mask_t)
        _check_finite(loss, step)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 20 == 0 or step == steps - 1:
            history.append({"step": step, "loss": round(loss.item(), 5)})
            report("training", (step + 1) / steps, {"step": step + 1, "steps": steps, "loss": loss.item()})
        if config.max_minutes and time.monotonic() - started > 60 * config.max_minutes:
            break
    final = F.normalize(class_emb.detach(), dim=-1).numpy()
    labelled = mask_t.sum(dim=0).numpy() > 0
    offset = calib.offset.detach()
    return Head(
        temperature=float(calib.log_tau.detach().exp()),
        offset=float(offset.mean()),
        # Classes without labels keep scoring zero-shot from their (possibly edited) prompts.
        class_embeddings={n: final[k] for k, n in enumerate(names) if labelled[k]},
        offsets={n: float(offset[k]) for k, n in enumerate(names)} if config.per_class_offset else {},
    ), history


class _LabelledImages(torch.utils.data.Dataset):
    def __init__(self, paths: Sequence[Path], targets: np.ndarray, mask: np.ndarray, transform) -> None:
        self.paths, self.targets, self.mask, self.transform = paths, targets, mask, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, k: int):
        return self.transform(load_rgb(self.paths[k])), self.targets[k], self.mask[k]


def _set_trainable(model: nn.Module, unfreeze: str) -> list[nn.Parameter]:
    """All parameters, or only the last blocks and projections of both towers."""
    if unfreeze == "all":
        return [p for p in model.parameters()]
    last_res = len(model.transformer.resblocks) - 1
    keys = ("visual.attnpool", "visual.layer4", "visual.ln_post", "visual.proj", "ln_final",
            "text_projection", f"transformer.resblocks.{last_res}.")
    vis = getattr(model.visual, "transformer", None)
    if vis is not None:
        keys += (f"visual.transformer.resblocks.{len(vis.resblocks) - 1}.",)
    params = []
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith(keys)
        if p.requires_grad:
            params.append(p)
    return params


def _train_mode(model: nn.Module) -> None:
    """Train mode, except batch-norm layers whose weights are frozen: their running statistics
    stay as they are (otherwise 'frozen' blocks would still drift)."""
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not any(
                p.requires_grad for p in module.parameters(recurse=False)):
            module.eval()


SMALL_MODEL_PARAMETERS = 50_000_000


def default_full_lr(encoder: Encoder) -> float:
    """Full-mode learning rate when none is configured: 1e-3 from random weights; 3e-4 for small
    pretrained models such as the starter (20M parameters; the best of 1e-5, 1e-4, 3e-4 and 1e-3
    in benchmarks/quality.py); 1e-5, the usual rate for fine-tuning CLIP, for CLIP-size models."""
    if encoder.spec.kind == "builtin-random":
        return 1e-3
    n_parameters = sum(p.numel() for p in encoder.model.parameters())
    return 3e-4 if n_parameters < SMALL_MODEL_PARAMETERS else 1e-5


def fit_full(base: Encoder, paths: Sequence[Path], targets: np.ndarray, mask: np.ndarray,
             prompts: Sequence[Sequence[str]], names: Sequence[str], config: TrainConfig,
             report: ProgressFn | None = None, started: float | None = None) -> tuple[Head, list[dict], Encoder]:
    """Full mode on arrays: fine-tunes a copy of ``base`` (all of it, or its last blocks) with
    class embeddings computed from ``prompts`` by the text encoder at every step; pairs where
    ``mask`` is 0 are left out of the loss. Returns the head, the loss history and the encoder."""
    report = report or (lambda phase, frac, info: None)
    started = time.monotonic() if started is None else started
    encoder = copy.copy(base)
    encoder.model = copy.deepcopy(base.model)
    data = _LabelledImages(list(paths), np.asarray(targets, dtype=np.float32), np.asarray(mask, dtype=np.float32),
                           base.train_preprocess)
    loader = torch.utils.data.DataLoader(data, batch_size=config.batch_size, shuffle=True, num_workers=0,
                                         generator=torch.Generator().manual_seed(config.seed))
    device = next(encoder.model.parameters()).device
    with torch.no_grad():
        encoder.model.eval()
        sample = torch.stack([base.preprocess(load_rgb(p)) for p in data.paths[:256]]).to(device)
        sim0 = F.normalize(encoder.model.encode_image(sample).float(), dim=-1) @ encode_prompts(encoder, prompts).T
    rate = float(np.clip(data.targets[data.mask > 0].mean(), 0.02, 0.5)) if (data.mask > 0).any() else 0.1
    tau, b = init_temperature_offset(sim0.cpu(), positive_rate=rate, per_class=config.per_class_offset)
    calib = _Calibration(tau, b, len(names), config.per_class_offset, config.learn_temperature,
                         config.learn_offset).to(device)
    lr = config.lr or default_full_lr(base)
    trainable = _set_trainable(encoder.model, config.unfreeze)
    _train_mode(encoder.model)
    opt = torch.optim.AdamW([
        {"params": trainable, "lr": lr, "weight_decay": 0.05},
        {"params": calib.parameters(), "lr": 1e-2, "weight_decay": 0.0},
    ])
    epochs = config.epochs or 30
    total = epochs * len(loader)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[lr, 1e-2], total_steps=total, pct_start=0.1)
    lossf = loss_fn(config.loss, **config.loss_params())
    history, step = [], 0
    for epoch in range(epochs):
        running = []
        for pixels, batch_targets, batch_mask in loader:
            img = F.normalize(encoder.model.encode_image(pixels.to(device)).float(), dim=-1)
            cls = encode_prompts(encoder, prompts, grad=True)
            loss = lossf(calib(img @ cls.T), batch_targets.to(device), batch_mask.to(device))
            _check_finite(loss, step)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            running.append(loss.item())
            report("training", step / total, {"epoch": epoch + 1, "epochs": epochs, "step": step,
                                              "steps": total, "loss": loss.item()})
        history.append({"epoch": epoch + 1, "loss": round(float(np.mean(running)), 5)})
        if config.max_minutes and time.monotonic() - started > 60 * config.max_minutes:
            break
    encoder.model.eval()
    offset = calib.offset.detach().cpu()
    head = Head(temperature=float(calib.log_tau.detach().exp()), offset=float(offset.mean()),
                offsets={n: float(offset[k]) for k, n in enumerate(names)} if config.per_class_offset else {})
    return head, history, encoder


def _full_probs(encoder: Encoder, head: Head, labels: LabelSet) -> np.ndarray:
    from mumic_core.encoders.encoding import encode_images

    emb = encode_images(encoder, labels.paths)
    cls = encode_prompts(encoder, [c.prompt_texts for c in labels.classes]).cpu().numpy()
    return head.probabilities(emb @ cls.T, [c.name for c in labels.classes])
