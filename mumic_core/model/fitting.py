"""Fitting a head on frozen embeddings: arrays in, a :class:`Head` out.

The head is linear in the image embedding, one vector and one offset per class, started from and
pulled toward the class's centred prompt embedding (so a class with few labels stays close to
its zero-shot scores) by an L2 penalty whose strength is chosen per class by cross-validated
average precision. It is fitted to all labelled pairs at once with L-BFGS, with the configured
loss (which owns the temperature and offsets). The learned vector's length becomes the class's
temperature: the head's probability stays the tempered sigmoid of a cosine similarity.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from sklearn.metrics import average_precision_score

from mumic_core.errors import TrainingError
from mumic_core.model.head import Head, calibrate, positive_rate, text_center
from mumic_core.model.losses import LossConfig, TemperedLoss, create_loss

Progress = Callable[[str, float, dict], None]
PULL_GRID = (0.1, 1.0, 10.0, 100.0, 1000.0)  # candidate strengths of the pull toward the prompts (logit units)
FIT_ROWS = 8192  # images per slice of a per-pair loss's evaluation: a fit's memory stays flat as labels grow


@dataclass(frozen=True)
class HeadFit:
    """How a head is fitted: the loss, L-BFGS iterations per fit, the pull strengths tried per
    class, cross-validation folds (1: no search, the middle strength), a time limit."""

    loss: LossConfig = field(default_factory=LossConfig)
    steps: int = 100
    pulls: tuple[float, ...] = PULL_GRID
    folds: int = 3
    max_minutes: float | None = None
    seed: int = 0
    pull_sharing: float = 20.0  # how many positives a class needs before its own AP outweighs the mean's


def check_finite(loss: torch.Tensor, step: int) -> None:
    """TrainingError when the loss is no longer a number (nothing is kept of the run)."""
    if not torch.isfinite(loss):
        raise TrainingError(f"training diverged: loss is {loss.item()} at step {step}; no version was made")


@dataclass
class _Problem:
    """The arrays of one fit, as tensors."""

    emb: torch.Tensor
    prior: torch.Tensor  # (C, D) unit prompt embeddings minus their centre
    targets: torch.Tensor
    mask: torch.Tensor
    assumed: torch.Tensor
    scale: float = 1.0  # 1 / temperature: the pull is measured in logits

    def rows(self, index: np.ndarray) -> _Problem:
        i = torch.from_numpy(index)
        return _Problem(self.emb[i], self.prior, self.targets[i], self.mask[i], self.assumed[i], self.scale)


def _fit_once(
    problem: _Problem, loss: TemperedLoss, pull: torch.Tensor, steps: int, history: list[dict] | None = None
) -> torch.Tensor:
    """Class vectors (C, D) fitted with ``loss`` (whose offsets are fitted too), rounds of label
    adjustment in between when the loss has them."""
    vectors = torch.nn.Parameter(problem.prior.clone())
    targets, mask, assumed = problem.targets, problem.mask, problem.assumed
    n = max(len(problem.emb), 1)
    params = [vectors, *(p for p in loss.parameters() if p.requires_grad)]
    for round_ in range(loss.ROUNDS):
        opt = torch.optim.LBFGS(params, lr=1.0, max_iter=steps, history_size=20, line_search_fn="strong_wolfe")

        def closure(opt=opt, targets=targets, mask=mask, assumed=assumed, round_=round_) -> torch.Tensor:
            opt.zero_grad()
            drift = (vectors - problem.prior) * problem.scale
            value = 0.5 * (pull[:, None] * drift**2).sum() / n
            if loss.per_pair:  # summed a slice of images at a time, gradients accumulated
                value.backward()
                value = value.detach()
                for a in range(0, len(problem.emb), FIT_ROWS):
                    rows = slice(a, a + FIT_ROWS)
                    logits = loss.logits(problem.emb[rows] @ vectors.T)
                    part = loss.pair_sum(logits, targets[rows], mask[rows], assumed[rows]) / n
                    part.backward()
                    value = value + part.detach()
                check_finite(value, round_)  # before L-BFGS steps on a NaN
                return value
            logits = loss.logits(problem.emb @ vectors.T)
            value = value + loss.on_logits(logits, targets, mask, assumed) * mask.sum().clamp(min=1) / n
            check_finite(value, round_)
            value.backward()
            return value

        value = opt.step(closure)
        check_finite(value, round_)
        if history is not None:
            history.append({"step": round_, "loss": round(float(value.detach()), 5)})
        if round_ < loss.ROUNDS - 1:
            with torch.no_grad():
                targets, mask, assumed = loss.adjust(
                    loss.logits(problem.emb @ vectors.T), targets, mask, assumed, round_
                )
    return vectors.detach()


def _pick(score: np.ndarray, positives: np.ndarray, sharing: float) -> np.ndarray:
    """Per class, the index of the best pull by held-out AP (``score``: pulls x classes). A class
    with few positives has a noisy AP, so its score is shrunk toward the mean over classes:
    ``(n * own + sharing * mean) / (n + sharing)`` with ``n`` its positives (``sharing`` 0: each
    class on its own; very large: one pull for all). Ties go to the weakest pull."""
    if np.isinf(sharing):
        return np.full(score.shape[1], int(score.mean(axis=1).argmax()))
    n = positives[None, :].astype(np.float64)
    blended = (n * score + sharing * score.mean(axis=1, keepdims=True)) / np.clip(n + sharing, 1e-9, None)
    return blended.argmax(axis=0)


def _class_ap(scores: np.ndarray, targets: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Average precision per class over its labelled pairs (0 where it has no positive or negative)."""
    out = np.zeros(scores.shape[1])
    for c in range(scores.shape[1]):
        rows = mask[:, c] > 0
        y = targets[rows, c]
        if 0 < y.sum() < len(y):
            out[c] = average_precision_score(y, scores[rows, c])
    return out


def fit_head(
    emb: np.ndarray,
    text: np.ndarray,
    targets: np.ndarray,
    mask: np.ndarray,
    names: Sequence[str],
    fit: HeadFit = HeadFit(),
    progress: Progress | None = None,
    started: float | None = None,
    assumed: np.ndarray | None = None,
) -> tuple[Head, list[dict]]:
    """A head fitted to frozen image embeddings ``emb`` (N, D) and the classes' prompt embeddings
    ``text`` (C, D): ``targets`` in {0, 1}, ``mask`` 1 where the pair is labelled (0: unknown,
    left out), ``assumed`` 1 where a negative is assumed. Classes without any labelled pair keep
    scoring zero-shot. Returns the head and a short history of the fit."""
    report = progress or (lambda phase, frac, info: None)
    started = time.monotonic() if started is None else started
    n_classes = len(names)
    assumed = np.zeros_like(targets) if assumed is None else assumed
    center = text_center(text)
    unit = text / np.clip(np.linalg.norm(text, axis=1, keepdims=True), 1e-12, None)
    prior = unit - center[None, :] if center is not None else unit
    arrays = (emb, prior, targets, mask, assumed)
    problem = _Problem(*(torch.from_numpy(np.asarray(a, dtype=np.float32)) for a in arrays))
    temperature, offset = calibrate(
        np.asarray(emb, dtype=np.float32) @ prior.T,
        positive_rate=positive_rate(targets, mask > 0, default=0.1),
        per_class=fit.loss.per_class_offset,
    )

    problem.scale = 1.0 / temperature
    fixed_temperature = replace(fit.loss, learn_temperature=False)  # the vectors' lengths carry it

    def new_loss() -> TemperedLoss:
        return create_loss(fixed_temperature, n_classes, temperature, offset)

    pulls = np.asarray(fit.pulls, dtype=np.float32)
    chosen = np.full(n_classes, pulls[len(pulls) // 2], dtype=np.float32)
    labelled = np.asarray(mask).sum(axis=0) > 0
    if fit.folds > 1 and len(pulls) > 1 and len(emb) >= 2 * fit.folds:
        part = np.random.default_rng(fit.seed).permutation(len(emb)) % fit.folds
        score = np.zeros((len(pulls), n_classes))
        total = len(pulls) * fit.folds
        for g, pull in enumerate(pulls):
            for k in range(fit.folds):
                train, held = np.flatnonzero(part != k), np.flatnonzero(part == k)
                loss = new_loss()
                vectors = _fit_once(problem.rows(train), loss, torch.full((n_classes,), float(pull)), fit.steps)
                with torch.no_grad():
                    held_scores = loss.logits(problem.emb[held] @ vectors.T).numpy()
                score[g] += _class_ap(held_scores, np.asarray(targets)[held], np.asarray(mask)[held])
                done = g * fit.folds + k + 1
                report("choosing the pull toward the prompts", done / (total + 1), {"step": done, "steps": total + 1})
                if fit.max_minutes and time.monotonic() - started > 60 * fit.max_minutes:
                    break
        chosen = pulls[_pick(score / fit.folds, np.asarray(targets).sum(axis=0), fit.pull_sharing)]
    history: list[dict] = []
    loss = new_loss()
    vectors = _fit_once(problem, loss, torch.from_numpy(chosen), fit.steps, history)
    report("training", 1.0, {"step": 1, "steps": 1, "loss": history[-1]["loss"] if history else None})
    for h in history:
        h["pulls"] = {n: float(p) for n, p in zip(names, chosen) if labelled[names.index(n)]}
    return _to_head(loss, vectors.numpy(), list(names), labelled, center), history


def _to_head(
    loss: TemperedLoss, vectors: np.ndarray, names: list[str], labelled: np.ndarray, center: np.ndarray | None
) -> Head:
    """The loss's temperature and offsets with each learned vector's length folded in:
    ``(e . v - b) / tau == (e . v/|v| - b/|v|) / (tau/|v|)``."""
    head = loss.head(names)
    lengths = np.clip(np.linalg.norm(vectors, axis=1), 1e-12, None)
    offsets = head.offset_vector(names)
    for k, name in enumerate(names):
        if labelled[k]:
            head.class_embeddings[name] = (vectors[k] / lengths[k]).astype(np.float32)
            head.temperatures[name] = float(head.temperature / lengths[k])
            head.offsets[name] = float(offsets[k] / lengths[k])
    head.text_center = center
    return head
