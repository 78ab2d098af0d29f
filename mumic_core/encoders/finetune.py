"""Full mode: fine-tuning an encoder (both towers, or their last blocks) on labelled image files,
with class embeddings computed by the text encoder from the prompts at every step."""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mumic_core.encoders.encoding import encode_prompts
from mumic_core.encoders.factory import Encoder
from mumic_core.encoders.pixels import load_rgb
from mumic_core.model.fitting import check_finite
from mumic_core.model.head import Head, calibrate, positive_rate
from mumic_core.model.losses import LossConfig, create_loss

Progress = Callable[[str, float, dict], None]


@dataclass(frozen=True)
class FullFit:
    """How an encoder is fine-tuned: the loss, epochs, batch size, learning rate (None: by model
    size, :func:`default_full_lr`), which blocks learn, the data order's seed, a time limit."""

    loss: LossConfig = field(default_factory=LossConfig)
    epochs: int = 30
    batch_size: int = 32
    lr: float | None = None
    unfreeze: str = "all"  # all | last
    seed: int = 0
    max_minutes: float | None = None


class _LabelledImages(torch.utils.data.Dataset):
    def __init__(
        self, paths: Sequence[Path], targets: np.ndarray, mask: np.ndarray, assumed: np.ndarray, transform
    ) -> None:
        self.paths, self.targets, self.mask, self.assumed, self.transform = paths, targets, mask, assumed, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, k: int):
        return self.transform(load_rgb(self.paths[k])), self.targets[k], self.mask[k], self.assumed[k]


def _set_trainable(model: nn.Module, unfreeze: str) -> list[nn.Parameter]:
    """All parameters, or only the last blocks and projections of both towers."""
    if unfreeze == "all":
        return [p for p in model.parameters()]
    last_res = len(model.transformer.resblocks) - 1
    keys = (
        "visual.attnpool",
        "visual.layer4",
        "visual.ln_post",
        "visual.proj",
        "ln_final",
        "text_projection",
        f"transformer.resblocks.{last_res}.",
    )
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
            p.requires_grad for p in module.parameters(recurse=False)
        ):
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


def fit_full(
    base: Encoder,
    paths: Sequence[Path],
    targets: np.ndarray,
    mask: np.ndarray,
    prompts: Sequence[Sequence[str]],
    names: Sequence[str],
    fit: FullFit = FullFit(),
    report: Progress | None = None,
    started: float | None = None,
    assumed: np.ndarray | None = None,
) -> tuple[Head, list[dict], Encoder]:
    """Full mode on arrays: fine-tunes a copy of ``base`` (all of it, or its last blocks) with
    class embeddings computed from ``prompts`` by the text encoder at every step; pairs where
    ``mask`` is 0 are left out of the loss, ``assumed`` marks assumed negatives (losses that
    correct labels between rounds act here as their base loss). Returns the head, the loss
    history and the encoder."""
    report = report or (lambda phase, frac, info: None)
    started = time.monotonic() if started is None else started
    encoder = copy.copy(base)
    encoder.model = copy.deepcopy(base.model)
    targets = np.asarray(targets, dtype=np.float32)
    assumed = np.zeros_like(targets) if assumed is None else np.asarray(assumed, dtype=np.float32)
    data = _LabelledImages(list(paths), targets, np.asarray(mask, dtype=np.float32), assumed, base.train_preprocess)
    device = next(encoder.model.parameters()).device
    on_gpu = device.type == "cuda"
    loader = torch.utils.data.DataLoader(
        data,
        batch_size=fit.batch_size,
        shuffle=True,
        # On a GPU, decoding in worker processes keeps it fed; on a CPU they only compete with the
        # model's own threads, so decoding runs in the loop.
        num_workers=min(4, (os.cpu_count() or 1) - 1) if on_gpu else 0,
        pin_memory=on_gpu,
        generator=torch.Generator().manual_seed(fit.seed),
    )
    with torch.no_grad():
        encoder.model.eval()
        sample = torch.stack([base.preprocess(load_rgb(p)) for p in data.paths[:256]]).to(device)
        sim0 = F.normalize(encoder.model.encode_image(sample).float(), dim=-1) @ encode_prompts(encoder, prompts).T
    tau, b = calibrate(
        sim0.cpu().numpy(),
        positive_rate=positive_rate(data.targets, data.mask > 0, default=0.1),
        per_class=fit.loss.per_class_offset,
    )
    loss_module = create_loss(fit.loss, len(names), tau, b).to(device)
    lr = fit.lr or default_full_lr(base)
    trainable = _set_trainable(encoder.model, fit.unfreeze)
    _train_mode(encoder.model)
    opt = torch.optim.AdamW(
        [
            {"params": trainable, "lr": lr, "weight_decay": 0.05},
            {"params": loss_module.parameters(), "lr": 1e-2, "weight_decay": 0.0},
        ]
    )
    epochs = fit.epochs
    total = epochs * len(loader)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[lr, 1e-2], total_steps=total, pct_start=0.1)
    history, step = [], 0
    encoder.model.to(memory_format=torch.channels_last)  # faster convolutions; a no-op for a ViT
    for epoch in range(epochs):
        running = []
        for pixels, batch_targets, batch_mask, batch_assumed in loader:
            with _mixed_precision(device):
                pixels = pixels.to(device, memory_format=torch.channels_last, non_blocking=True)
                img = F.normalize(encoder.model.encode_image(pixels).float(), dim=-1)
                cls = encode_prompts(encoder, prompts, grad=True)
            loss = loss_module(img @ cls.T, batch_targets.to(device), batch_mask.to(device), batch_assumed.to(device))
            check_finite(loss, step)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            running.append(loss.item())
            report(
                "training",
                step / total,
                {"epoch": epoch + 1, "epochs": epochs, "step": step, "steps": total, "loss": loss.item()},
            )
        history.append({"epoch": epoch + 1, "loss": round(float(np.mean(running)), 5)})
        if fit.max_minutes and time.monotonic() - started > 60 * fit.max_minutes:
            break
    encoder.model.eval()
    encoder.model.to(memory_format=torch.contiguous_format)
    head = loss_module.head(list(names))
    return head, history, encoder


def _mixed_precision(device: torch.device):
    """bfloat16 autocast on a GPU (the towers' matrix products; the loss stays float32); on a CPU
    full precision, which measured faster there than bfloat16 without matrix units."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
