"""Multi-label losses as small modules that own the tempered sigmoid's temperature and offset
(the way open_clip's ``SigLipLoss`` owns ``logit_scale`` and ``logit_bias``).

Every loss takes similarities ``s`` (N, C), turns them into logits ``(s - b) / tau`` with its own
learnable temperature ``tau`` and offset ``b`` (``head.tempered_logits``, the same formula the
head uses at inference), and compares them with ``targets`` (N, C) in {0, 1}. An optional
``mask`` (N, C) in {0, 1} marks the pairs that count: 0 is a pair nobody labelled, left out of
the loss entirely (not a negative). Reduction: the mean over counted pairs.

Build one with :func:`create_loss` from a :class:`LossConfig`; each loss declares its own
hyper-parameters and their defaults (``PARAMS``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mumic_core.model.head import Head, tempered_logits


@dataclass(frozen=True)
class LossConfig:
    """Which loss, its hyper-parameters (over the loss's own defaults), and what it learns."""

    name: str = "mumic"
    params: dict[str, float] = field(default_factory=dict)
    per_class_offset: bool = True  # one offset per class, or one for all
    learn_temperature: bool = True
    learn_offset: bool = True


def masked_mean(loss: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of ``loss`` over entries where ``mask`` is 1 (all entries if mask is None)."""
    if mask is None:
        return loss.mean()
    keep = mask.bool()
    return torch.where(keep, loss, torch.zeros_like(loss)).sum() / keep.sum().clamp(min=1)


class TemperedLoss(nn.Module):
    """A loss on tempered-sigmoid logits that owns the temperature (as its log) and the offset."""

    PARAMS: ClassVar[dict[str, float]] = {}

    def __init__(
        self,
        n_classes: int,
        temperature: float,
        offset: float | np.ndarray | Tensor,
        per_class_offset: bool = True,
        learn_temperature: bool = True,
        learn_offset: bool = True,
        **params: float,
    ) -> None:
        super().__init__()
        unknown = sorted(set(params) - set(self.PARAMS))
        if unknown:
            raise ValueError(
                f"the {self.name} loss has no parameter {', '.join(unknown)}; "
                f"its parameters: {', '.join(self.PARAMS) or 'none'}"
            )
        self.params = {**self.PARAMS, **params}
        self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature)), requires_grad=learn_temperature)
        b = torch.as_tensor(offset, dtype=torch.float32)
        b = b.mean() if b.dim() and not per_class_offset else b
        self.offset = nn.Parameter(
            b.expand(n_classes).clone() if per_class_offset else b.reshape(()), requires_grad=learn_offset
        )

    @property
    def name(self) -> str:
        return next(k for k, v in LOSSES.items() if v is type(self))

    def logits(self, similarity: Tensor) -> Tensor:
        return tempered_logits(similarity, self.log_temperature.exp(), self.offset)

    def forward(self, similarity: Tensor, targets: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.on_logits(self.logits(similarity), targets.to(similarity.dtype), mask)

    def on_logits(self, logits: Tensor, targets: Tensor, mask: Tensor | None = None) -> Tensor:
        """The loss of given logits (the mean of :meth:`elementwise` over counted pairs)."""
        return masked_mean(self.elementwise(logits, targets.to(logits.dtype)), mask)

    def elementwise(self, logits: Tensor, targets: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} defines forward() itself")

    def head(self, names: list[str], class_embeddings: dict[str, np.ndarray] | None = None) -> Head:
        """The inference head of what this loss learned: its temperature and offsets."""
        offset = self.offset.detach().cpu().float()
        return Head(
            temperature=float(self.log_temperature.detach().exp()),
            offset=float(offset.mean()),
            class_embeddings=class_embeddings or {},
            offsets={n: float(offset[k]) for k, n in enumerate(names)} if offset.dim() else {},
        )


class MuMICLoss(TemperedLoss):
    """The MuMIC hardness-aware tempered-sigmoid BCE. Positives: ``-(1 - p)^gamma_pos log p``.
    Negatives, with ``p_m = max(p - margin, 0)``: ``-p_m^gamma_neg log(1 - p_m)`` (a negative with
    ``p <= margin`` costs nothing: it tolerates missed positives). The focusing weights are part
    of the gradient; use gammas of 0 or >= 1 (a fractional gamma's derivative is infinite at 0)."""

    PARAMS = {"gamma_pos": 1.0, "gamma_neg": 2.0, "margin": 0.0}

    def elementwise(self, logits: Tensor, targets: Tensor) -> Tensor:
        gamma_pos, gamma_neg, margin = self.params["gamma_pos"], self.params["gamma_neg"], self.params["margin"]
        one_minus_p = torch.sigmoid(-logits)
        pos = -one_minus_p.pow(gamma_pos) * F.logsigmoid(logits)
        if margin > 0:
            p_m = (torch.sigmoid(logits) - margin).clamp(min=0.0)
            log_q = torch.log((one_minus_p + margin).clamp(min=1e-8, max=1.0))  # log(1 - p_m), no cancellation
        else:
            p_m, log_q = torch.sigmoid(logits), F.logsigmoid(-logits)
        return targets * pos + (1.0 - targets) * (-p_m.pow(gamma_neg) * log_q)


class BCELoss(TemperedLoss):
    """Plain binary cross-entropy with logits."""

    def elementwise(self, logits: Tensor, targets: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="none")


class ASLLoss(TemperedLoss):
    """Asymmetric loss (Ridnik et al., ICCV 2021): asymmetric focusing (``gamma_pos``,
    ``gamma_neg``) with the focusing weights held out of the gradient, as in the authors' code,
    and probability shifting of negatives by ``clip``."""

    PARAMS = {"gamma_pos": 0.0, "gamma_neg": 4.0, "clip": 0.05}

    def elementwise(self, logits: Tensor, targets: Tensor) -> Tensor:
        p = torch.sigmoid(logits)
        q = (1.0 - p + self.params["clip"]).clamp(max=1.0)  # 1 - shifted p
        with torch.no_grad():
            weight = torch.where(
                targets > 0, (1.0 - p).pow(self.params["gamma_pos"]), (1.0 - q).pow(self.params["gamma_neg"])
            )
        return -weight * (targets * torch.log(p.clamp(min=1e-8)) + (1.0 - targets) * torch.log(q.clamp(min=1e-8)))


class SoftmaxLoss(TemperedLoss):
    """CLIP-style softmax cross-entropy over the classes. A row with at least one counted positive
    gets its positives, normalised to sum 1, as the target distribution; pairs not counted are
    left out of the softmax. Rows without a positive are skipped (0, still in the graph, if none)."""

    def on_logits(self, logits: Tensor, targets: Tensor, mask: Tensor | None = None) -> Tensor:
        targets = targets.to(logits.dtype)
        keep = torch.ones_like(logits, dtype=torch.bool) if mask is None else mask.bool()
        targets = torch.where(keep, targets, torch.zeros_like(targets))
        rows = targets.sum(dim=1) > 0
        if not bool(rows.any()):
            return logits.sum() * 0.0
        row_logits = torch.where(keep[rows], logits[rows], torch.full_like(logits[rows], float("-inf")))
        log_prob = torch.log_softmax(row_logits, dim=1)
        dist = targets[rows] / targets[rows].sum(dim=1, keepdim=True)
        return -torch.where(dist > 0, dist * log_prob, torch.zeros_like(log_prob)).sum(dim=1).mean()


LOSSES: dict[str, type[TemperedLoss]] = {"mumic": MuMICLoss, "bce": BCELoss, "asl": ASLLoss, "softmax": SoftmaxLoss}
LOSS_NAMES = tuple(LOSSES)


def create_loss(
    config: LossConfig, n_classes: int, temperature: float, offset: float | np.ndarray | Tensor
) -> TemperedLoss:
    """The loss ``config`` names, starting from the given temperature and offset."""
    if config.name not in LOSSES:
        raise ValueError(f"unknown loss {config.name!r}; use one of {', '.join(LOSS_NAMES)}")
    return LOSSES[config.name](
        n_classes,
        temperature,
        offset,
        per_class_offset=config.per_class_offset,
        learn_temperature=config.learn_temperature,
        learn_offset=config.learn_offset,
        **config.params,
    )
