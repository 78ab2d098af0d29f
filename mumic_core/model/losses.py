"""Multi-label losses for MuMIC.

Convention: the model computes a cosine similarity ``s`` in [-1, 1] between an
image and each class embedding, and a tempered sigmoid ``p = sigmoid((s - b) / tau)``.
All losses take ``logits = (s - b) / tau`` of shape (N, C), ``targets`` (N, C) in
{0, 1} and an optional ``mask`` (N, C) in {0, 1}; mask 0 marks an image-class pair
nobody labelled, which is excluded from the loss entirely (not a negative).
Reduction is the mean over unmasked entries: ``sum / max(mask.sum(), 1)``.
"""

from __future__ import annotations

import inspect
from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

LossFn = Callable[..., Tensor]

LOSS_NAMES = ("mumic", "bce", "softmax", "asl")


def tempered_logits(similarity: Tensor, temperature: float | Tensor, offset: float | Tensor) -> Tensor:
    """Return ``(similarity - offset) / temperature``; offset may be scalar or per-class (C,)."""
    return (similarity - offset) / temperature


def _masked_mean(loss: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of ``loss`` over entries where ``mask`` is 1 (all entries if mask is None)."""
    if mask is None:
        return loss.mean()
    keep = mask.bool()
    total = torch.where(keep, loss, torch.zeros_like(loss)).sum()
    return total / keep.sum().clamp(min=1)


def hardness_aware_bce(
    logits: Tensor,
    targets: Tensor,
    mask: Tensor | None = None,
    gamma_pos: float = 1.0,
    gamma_neg: float = 2.0,
    neg_margin: float = 0.05,
) -> Tensor:
    """MuMIC hardness-aware tempered-sigmoid BCE.

    Positives: ``-(1 - p)^gamma_pos * log(p)``.
    Negatives: with ``p_m = max(p - neg_margin, 0)``, ``-p_m^gamma_neg * log(1 - p_m)``;
    a negative with ``p <= neg_margin`` contributes exactly 0 (tolerates missed positives).
    Focusing weights are not detached. Use gammas of 0 or >= 1 (fractional gammas in
    (0, 1) have an infinite derivative at a zero base).
    """
    targets = targets.to(logits.dtype)
    log_p = F.logsigmoid(logits)
    one_minus_p = torch.sigmoid(-logits)
    pos = -one_minus_p.pow(gamma_pos) * log_p

    if neg_margin > 0:
        p_m = (torch.sigmoid(logits) - neg_margin).clamp(min=0.0)
        # 1 - p_m = min(1 - p + margin, 1), computed from sigmoid(-x) to avoid cancellation.
        log_q = torch.log((one_minus_p + neg_margin).clamp(min=1e-8, max=1.0))
    else:
        p_m = torch.sigmoid(logits)
        log_q = F.logsigmoid(-logits)
    neg = -p_m.pow(gamma_neg) * log_q

    loss = targets * pos + (1.0 - targets) * neg
    return _masked_mean(loss, mask)


def bce(logits: Tensor, targets: Tensor, mask: Tensor | None = None) -> Tensor:
    """Plain binary cross-entropy with logits, masked mean."""
    loss = F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="none")
    return _masked_mean(loss, mask)


def asl(
    logits: Tensor,
    targets: Tensor,
    mask: Tensor | None = None,
    gamma_pos: float = 0.0,
    gamma_neg: float = 4.0,
    clip: float = 0.05,
) -> Tensor:
    """Asymmetric Loss (Ridnik et al., 2021): the same form with ASL's defaults."""
    return hardness_aware_bce(logits, targets, mask, gamma_pos=gamma_pos, gamma_neg=gamma_neg, neg_margin=clip)


def softmax_ce(logits: Tensor, targets: Tensor, mask: Tensor | None = None) -> Tensor:
    """CLIP-style softmax cross-entropy over classes.

    Each row with at least one unmasked positive gets the target distribution of its
    positives normalised to sum 1; masked entries are excluded from the softmax.
    Rows without a positive are skipped; the result is the mean over contributing rows,
    or 0 (still attached to the graph) when none contributes.
    """
    targets = targets.to(logits.dtype)
    keep = torch.ones_like(logits, dtype=torch.bool) if mask is None else mask.bool()
    targets = torch.where(keep, targets, torch.zeros_like(targets))
    rows = targets.sum(dim=1) > 0
    if not bool(rows.any()):
        return logits.sum() * 0.0
    row_logits = torch.where(keep[rows], logits[rows], torch.full_like(logits[rows], float("-inf")))
    log_prob = torch.log_softmax(row_logits, dim=1)
    dist = targets[rows] / targets[rows].sum(dim=1, keepdim=True)
    terms = torch.where(dist > 0, dist * log_prob, torch.zeros_like(log_prob))
    return -terms.sum(dim=1).mean()


_LOSSES: dict[str, LossFn] = {
    "mumic": hardness_aware_bce,
    "bce": bce,
    "softmax": softmax_ce,
    "asl": asl,
}


def loss_fn(name: str, **params: float) -> LossFn:
    """Return ``f(logits, targets, mask=None)`` for a loss in ``LOSS_NAMES``.

    ``params`` are the loss's hyper-parameters (mumic: gamma_pos, gamma_neg, neg_margin;
    asl: gamma_pos, gamma_neg, clip; bce and softmax take none).
    """
    if name not in _LOSSES:
        raise ValueError(f"unknown loss {name!r}; expected one of {', '.join(LOSS_NAMES)}")
    fn = _LOSSES[name]
    allowed = list(inspect.signature(fn).parameters)[3:]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"loss {name!r} got unknown parameters {unknown}; allowed: {allowed}")
    return partial(fn, **params)


def init_temperature_offset(
    similarities: Tensor, positive_rate: float = 0.1, per_class: bool = False
) -> tuple[float, float | Tensor]:
    """Initialise (temperature, offset) from a sample of similarity scores.

    ``offset`` is the (1 - positive_rate) quantile of the scores (per column of an
    (N, C) tensor when ``per_class``), ``temperature`` their standard deviation
    (floored at 1e-3), so that ``(s - b) / tau`` is O(1) rather than saturated.
    """
    if not 0.0 < positive_rate < 1.0:
        raise ValueError(f"positive_rate must be in (0, 1), got {positive_rate}")
    sims = similarities.detach().float()
    temperature = max(float(sims.std()), 1e-3) if sims.numel() > 1 else 1.0
    q = 1.0 - positive_rate
    if per_class:
        if sims.dim() != 2:
            raise ValueError("per_class offsets need a 2-D (N, C) similarity tensor")
        return temperature, torch.quantile(sims, q, dim=0)
    return temperature, float(torch.quantile(sims.flatten(), q))
