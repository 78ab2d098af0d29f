"""Fitting a head on frozen embeddings: arrays in, a :class:`Head` out."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mumic_core.errors import TrainingError
from mumic_core.model.head import Head, calibrate, positive_rate
from mumic_core.model.losses import LossConfig, create_loss

Progress = Callable[[str, float, dict], None]


@dataclass(frozen=True)
class HeadFit:
    """How a head is fitted: the loss, full-batch AdamW steps and learning rate, a time limit."""

    loss: LossConfig = field(default_factory=LossConfig)
    steps: int = 300
    lr: float = 5e-3
    max_minutes: float | None = None


def check_finite(loss: torch.Tensor, step: int) -> None:
    """TrainingError when the loss is no longer a number (nothing is kept of the run)."""
    if not torch.isfinite(loss):
        raise TrainingError(f"training diverged: loss is {loss.item()} at step {step}; no version was made")


def fit_head(
    emb: np.ndarray,
    text: np.ndarray,
    targets: np.ndarray,
    mask: np.ndarray,
    names: Sequence[str],
    fit: HeadFit = HeadFit(),
    progress: Progress | None = None,
    started: float | None = None,
) -> tuple[Head, list[dict]]:
    """Class embeddings (starting from the prompts' ``text`` embeddings), temperature and offset
    fitted to frozen image embeddings ``emb`` with the configured loss; pairs where ``mask`` is 0
    are left out of the loss. Classes without any labelled pair keep scoring zero-shot.
    Returns the head and the loss history."""
    report = progress or (lambda phase, frac, info: None)
    started = time.monotonic() if started is None else started
    emb_t = torch.from_numpy(np.asarray(emb, dtype=np.float32))
    text_t = torch.from_numpy(np.asarray(text, dtype=np.float32))
    targets_t = torch.from_numpy(np.asarray(targets, dtype=np.float32))
    mask_t = torch.from_numpy(np.asarray(mask, dtype=np.float32))
    sim0 = (emb_t @ text_t.T).numpy()
    tau, b = calibrate(
        sim0, positive_rate=positive_rate(targets, mask > 0, default=0.1), per_class=fit.loss.per_class_offset
    )
    class_emb = nn.Parameter(text_t.clone())
    loss_module = create_loss(fit.loss, len(names), tau, b)
    opt = torch.optim.AdamW(
        [{"params": [class_emb], "weight_decay": 0.0}, {"params": loss_module.parameters(), "weight_decay": 0.0}],
        lr=fit.lr,
    )
    history = []
    for step in range(fit.steps):
        loss = loss_module(emb_t @ F.normalize(class_emb, dim=-1).T, targets_t, mask_t)
        check_finite(loss, step)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 20 == 0 or step == fit.steps - 1:
            history.append({"step": step, "loss": round(loss.item(), 5)})
            report("training", (step + 1) / fit.steps, {"step": step + 1, "steps": fit.steps, "loss": loss.item()})
        if fit.max_minutes and time.monotonic() - started > 60 * fit.max_minutes:
            break
    final = F.normalize(class_emb.detach(), dim=-1).numpy()
    labelled = mask_t.sum(dim=0).numpy() > 0
    return loss_module.head(list(names), {n: final[k] for k, n in enumerate(names) if labelled[k]}), history
