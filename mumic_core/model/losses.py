"""Multi-label losses as small modules that own the tempered sigmoid's temperature and offset
(the way open_clip's ``SigLipLoss`` owns ``logit_scale`` and ``logit_bias``).

Every loss takes similarities ``s`` (N, C), turns them into logits ``(s - b) / tau`` with its own
learnable temperature ``tau`` and offset ``b`` (``head.tempered_logits``, the same formula the
head uses at inference), and compares them with ``targets`` (N, C) in {0, 1}. An optional
``mask`` (N, C) in {0, 1} marks the pairs that count: 0 is a pair nobody labelled, left out of
the loss entirely (not a negative). An optional ``assumed`` (N, C) in {0, 1} marks the negatives
that are *assumed* (the image was labelled and this class was not named): usually absent, sometimes
a missed positive. The losses built for such labels treat them apart; the others take them as
negatives (AN, "assume negative"). Reduction: the mean over counted pairs.

Some losses also correct labels between rounds of fitting (:meth:`TemperedLoss.adjust`: SPLC
makes confident assumed negatives positives, LL-R drops the assumed negatives with the largest
loss, LL-Ct flips them).

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
    SUMMARY: ClassVar[str] = ""  # one line for people choosing a loss

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

    ROUNDS: ClassVar[int] = 1  # fits with label adjustments in between (see adjust)

    def forward(
        self, similarity: Tensor, targets: Tensor, mask: Tensor | None = None, assumed: Tensor | None = None
    ) -> Tensor:
        return self.on_logits(self.logits(similarity), targets.to(similarity.dtype), mask, assumed)

    def on_logits(
        self, logits: Tensor, targets: Tensor, mask: Tensor | None = None, assumed: Tensor | None = None
    ) -> Tensor:
        """The loss of given logits (the mean of :meth:`elementwise` over counted pairs)."""
        return masked_mean(self.elementwise(logits, targets.to(logits.dtype), _assumed(assumed, targets)), mask)

    def elementwise(self, logits: Tensor, targets: Tensor, assumed: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} defines forward() itself")

    @property
    def per_pair(self) -> bool:
        """Whether the loss is the mean of a term per counted pair (its :meth:`elementwise`), so
        that it can be summed over slices of the images (losses with a term over a whole row or
        class define :meth:`on_logits` themselves)."""
        return type(self).on_logits is TemperedLoss.on_logits

    def pair_sum(self, logits: Tensor, targets: Tensor, mask: Tensor, assumed: Tensor | None = None) -> Tensor:
        """The sum, over counted pairs, of :meth:`elementwise` (losses that are ``per_pair``)."""
        terms = self.elementwise(logits, targets.to(logits.dtype), _assumed(assumed, targets))
        return torch.where(mask.bool(), terms, torch.zeros_like(terms)).sum()

    def adjust(
        self, logits: Tensor, targets: Tensor, mask: Tensor, assumed: Tensor, round_: int
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Targets, mask and assumed marks for the next round of fitting, from this round's
        ``logits`` (no change by default)."""
        return targets, mask, assumed

    def head(self, names: list[str], class_embeddings: dict[str, np.ndarray] | None = None) -> Head:
        """The inference head of what this loss learned: its temperature and offsets."""
        offset = self.offset.detach().cpu().float()
        return Head(
            temperature=float(self.log_temperature.detach().exp()),
            offset=float(offset.mean()),
            class_embeddings=class_embeddings or {},
            offsets={n: float(offset[k]) for k, n in enumerate(names)} if offset.dim() else {},
        )


def _assumed(assumed: Tensor | None, targets: Tensor) -> Tensor:
    return torch.zeros_like(targets) if assumed is None else assumed.to(targets.dtype)


class MuMICLoss(TemperedLoss):
    """The MuMIC hardness-aware tempered-sigmoid BCE, for tags. Positives:
    ``-(1 - p)^gamma_pos log p``. Human negatives, with ``p_m = max(p - margin, 0)``:
    ``-p_m^gamma_neg log(1 - p_m)`` (a negative with ``p <= margin`` costs nothing). Assumed
    negatives (probably absent, possibly a missed tag) cost ``assumed_weight * (hill - p) p^2``:
    like a hard negative while the model is unsure, then less and less the surer it is that the
    class is present, so a missed tag that the model recognises stops pulling it back (the Hill
    loss's shape; the hardness weighting turned round for the labels that are most likely wrong
    when they are hard). The focusing weights are part of the gradient; use gammas of 0 or >= 1
    (a fractional gamma's derivative is infinite at 0)."""

    SUMMARY = "MuMIC: hardness-aware tempered-sigmoid BCE; an assumed negative counts less the surer the model is of it"

    PARAMS = {"gamma_pos": 1.0, "gamma_neg": 2.0, "margin": 0.0, "assumed_weight": 1.0, "hill": 1.5}

    def elementwise(self, logits: Tensor, targets: Tensor, assumed: Tensor) -> Tensor:
        gamma_pos, gamma_neg, margin = self.params["gamma_pos"], self.params["gamma_neg"], self.params["margin"]
        one_minus_p = torch.sigmoid(-logits)
        pos = -one_minus_p.pow(gamma_pos) * F.logsigmoid(logits)
        if margin > 0:
            p_m = (torch.sigmoid(logits) - margin).clamp(min=0.0)
            log_q = torch.log((one_minus_p + margin).clamp(min=1e-8, max=1.0))  # log(1 - p_m), no cancellation
        else:
            p_m, log_q = torch.sigmoid(logits), F.logsigmoid(-logits)
        neg = -p_m.pow(gamma_neg) * log_q
        p = torch.sigmoid(logits)
        hill = self.params["assumed_weight"] * (self.params["hill"] - p) * p.pow(2)
        return targets * pos + (1.0 - targets) * torch.where(assumed > 0, hill, neg)


class BCELoss(TemperedLoss):
    """Plain binary cross-entropy with logits; assumed negatives are negatives (AN)."""

    SUMMARY = "plain BCE; assumed negatives are negatives (AN)"

    def elementwise(self, logits: Tensor, targets: Tensor, assumed: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="none")


class WeightedANLoss(TemperedLoss):
    """BCE with the assumed negatives down-weighted by ``weight`` (WAN, Cole et al. 2021)."""

    SUMMARY = "BCE with assumed negatives down-weighted (WAN)"

    PARAMS = {"weight": 0.3}

    def elementwise(self, logits: Tensor, targets: Tensor, assumed: Tensor) -> Tensor:
        weight = 1.0 + assumed * (self.params["weight"] - 1.0)
        return weight * F.binary_cross_entropy_with_logits(logits, targets, reduction="none")


class HillLoss(TemperedLoss):
    """Hill loss (Zhang et al. 2021): assumed negatives cost ``(lambda - p) p^2``, a hill that
    falls again for negatives the model is sure are present (likely missed labels); positives and
    human negatives plain BCE."""

    SUMMARY = "Hill loss on assumed negatives: robust to missed labels"

    PARAMS = {"hill_lambda": 1.5}

    def elementwise(self, logits: Tensor, targets: Tensor, assumed: Tensor) -> Tensor:
        p = torch.sigmoid(logits)
        bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        hill = (self.params["hill_lambda"] - p) * p.pow(2)
        return torch.where((assumed > 0) & (targets == 0), hill, bce)


class SPLCLoss(BCELoss):
    """Self-paced label correction (Zhang et al. 2021): after each round, assumed negatives the
    model gives ``p > threshold`` become positives for the next round; BCE otherwise."""

    SUMMARY = "self-paced label correction: confident assumed negatives become positives"

    PARAMS = {"threshold": 0.6}
    ROUNDS = 3

    def adjust(self, logits, targets, mask, assumed, round_):
        flip = (assumed > 0) & (targets == 0) & (torch.sigmoid(logits) > self.params["threshold"])
        return torch.where(flip, torch.ones_like(targets), targets), mask, torch.where(flip, 0.0, assumed)


class LargeLossLoss(BCELoss):
    """Large-loss rejection (LL-R, Kim et al. 2022): after each round, the ``rate`` share (growing
    by round) of assumed negatives with the largest loss is left out of the next round."""

    SUMMARY = "large-loss rejection (LL-R): the assumed negatives with the largest loss are dropped"

    PARAMS = {"rate": 0.1}
    ROUNDS = 3

    def _largest(self, logits, targets, mask, assumed, round_) -> Tensor:
        candidates = (assumed > 0) & (targets == 0) & (mask > 0)
        k = int(self.params["rate"] * (round_ + 1) / self.ROUNDS * int(candidates.sum()))
        if k == 0:
            return torch.zeros_like(candidates)
        loss = torch.where(candidates, F.binary_cross_entropy_with_logits(logits, targets, reduction="none"), -1.0)
        cut = loss.flatten().topk(k).values[-1]
        return candidates & (loss >= cut)

    def adjust(self, logits, targets, mask, assumed, round_):
        return targets, torch.where(self._largest(logits, targets, mask, assumed, round_), 0.0, mask), assumed


class LargeLossCorrectionLoss(LargeLossLoss):
    """Large-loss correction (LL-Ct, Kim et al. 2022): as LL-R, but those assumed negatives become
    positives instead of being left out."""

    SUMMARY = "large-loss correction (LL-Ct): those assumed negatives become positives"

    def adjust(self, logits, targets, mask, assumed, round_):
        big = self._largest(logits, targets, mask, assumed, round_)
        return torch.where(big, torch.ones_like(targets), targets), mask, torch.where(big, 0.0, assumed)


class ASLLoss(TemperedLoss):
    """Asymmetric loss (Ridnik et al., ICCV 2021): asymmetric focusing (``gamma_pos``,
    ``gamma_neg``) with the focusing weights held out of the gradient, as in the authors' code,
    and probability shifting of negatives by ``clip``."""

    SUMMARY = "asymmetric loss (ASL)"

    PARAMS = {"gamma_pos": 0.0, "gamma_neg": 4.0, "clip": 0.05}

    def elementwise(self, logits: Tensor, targets: Tensor, assumed: Tensor) -> Tensor:
        p = torch.sigmoid(logits)
        q = (1.0 - p + self.params["clip"]).clamp(max=1.0)  # 1 - shifted p
        with torch.no_grad():
            weight = torch.where(
                targets > 0, (1.0 - p).pow(self.params["gamma_pos"]), (1.0 - q).pow(self.params["gamma_neg"])
            )
        return -weight * (targets * torch.log(p.clamp(min=1e-8)) + (1.0 - targets) * torch.log(q.clamp(min=1e-8)))


class EPRLoss(TemperedLoss):
    """Expected positive regularisation (Cole et al. 2021), for single-positive labels: BCE on the
    positives and human negatives only, assumed negatives left out, plus ``weight`` times the
    squared gap between each image's expected number of positives (the sum of its probabilities)
    and ``positives_per_image``."""

    SUMMARY = "expected-positive regularisation, for one listed label per image"

    PARAMS = {"positives_per_image": 2.0, "weight": 1.0}

    def on_logits(self, logits, targets, mask=None, assumed=None):
        targets = targets.to(logits.dtype)
        assumed = _assumed(assumed, targets)
        counted = torch.ones_like(targets) if mask is None else mask.to(targets.dtype)
        known = counted * (1.0 - assumed)
        bce = masked_mean(F.binary_cross_entropy_with_logits(logits, targets, reduction="none"), known)
        expected = torch.sigmoid(logits).sum(dim=1)
        gap = (expected - self.params["positives_per_image"]) / logits.shape[1]
        return bce + self.params["weight"] * gap.pow(2).mean()


class SoftmaxLoss(TemperedLoss):
    """CLIP-style softmax cross-entropy over the classes. A row with at least one counted positive
    gets its positives, normalised to sum 1, as the target distribution; pairs not counted are
    left out of the softmax. Rows without a positive are skipped (0, still in the graph, if none)."""

    SUMMARY = "CLIP-style softmax over the classes"

    def on_logits(self, logits: Tensor, targets: Tensor, mask: Tensor | None = None, assumed=None) -> Tensor:
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


LOSSES: dict[str, type[TemperedLoss]] = {
    "mumic": MuMICLoss,
    "bce": BCELoss,
    "wan": WeightedANLoss,
    "hill": HillLoss,
    "splc": SPLCLoss,
    "llr": LargeLossLoss,
    "llct": LargeLossCorrectionLoss,
    "epr": EPRLoss,
    "asl": ASLLoss,
    "softmax": SoftmaxLoss,
}
LOSS_NAMES = tuple(LOSSES)
DEFAULT_LOSS = "mumic"  # chosen by benchmarks/quality.py (benchmarks/RESULTS.md)


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
