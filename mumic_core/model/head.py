"""The tempered-sigmoid head: what a model version learned on top of its encoder.

An image-class score is a similarity ``s`` between the image's embedding and the class's (the
cosine similarity for zero-shot classes); its probability is the tempered sigmoid
``p = sigmoid((s - b) / tau)`` with temperature ``tau`` and offset ``b`` (global, or per class).
:func:`tempered_logits` is that formula, once, for NumPy arrays and torch tensors alike: the
training losses (``losses.TemperedLoss``) and the head at inference both use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

Array = TypeVar("Array")  # np.ndarray or torch.Tensor
DEFAULT_POSITIVE_RATE = 0.15
RATE_RANGE = (0.02, 0.5)  # positive rates used to calibrate are clipped to this range


def tempered_logits(similarity: Array, temperature: float | Array, offset: float | Array) -> Array:
    """``(similarity - offset) / temperature``; ``offset`` may be a scalar or per class (C,)."""
    return (similarity - offset) / temperature


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """The logistic function, without overflow warnings for large logits."""
    return (1.0 / (1.0 + np.exp(-np.clip(logits, -60, 60)))).astype(np.float32)


def positive_rate(targets: np.ndarray, mask: np.ndarray | None = None, default: float = DEFAULT_POSITIVE_RATE) -> float:
    """The share of labelled pairs that are positive, clipped to ``RATE_RANGE`` (``default``
    when nothing is labelled): the prior the calibration starts from."""
    labelled = (
        np.asarray(targets, dtype=np.float64)[np.asarray(mask, dtype=bool)]
        if mask is not None
        else np.asarray(targets, dtype=np.float64).ravel()
    )
    return float(np.clip(labelled.mean(), *RATE_RANGE)) if labelled.size else default


def calibrate(
    similarity: np.ndarray, positive_rate: float = 0.1, per_class: bool = False
) -> tuple[float, float | np.ndarray]:
    """(temperature, offset) from a sample of similarities: the offset is their
    (1 - positive_rate) quantile (per column of an (N, C) array when ``per_class``), the
    temperature their standard deviation (at least 1e-3), so that the tempered logits are O(1)."""
    if not 0.0 < positive_rate < 1.0:
        raise ValueError(f"positive_rate must be in (0, 1), got {positive_rate}")
    sims = np.asarray(similarity, dtype=np.float64)
    temperature = max(float(sims.std(ddof=1)), 1e-3) if sims.size > 1 else 1.0
    q = 1.0 - positive_rate
    if per_class:
        if sims.ndim != 2:
            raise ValueError("per_class offsets need a 2-D (N, C) similarity array")
        return temperature, np.quantile(sims, q, axis=0).astype(np.float32)
    return temperature, float(np.quantile(sims, q)) if sims.size else 0.0


@dataclass
class Head:
    """What a model version learned on top of its encoder.

    ``class_embeddings`` maps class names to learned embeddings (head mode); classes not in
    it use their prompts' text embedding (zero-shot). ``offsets`` holds optional per-class
    offsets; other classes use the global ``offset``. ``thresholds`` are per-class decision
    thresholds tuned on the validation split.
    """

    temperature: float
    offset: float
    class_embeddings: dict[str, np.ndarray] = field(default_factory=dict)
    offsets: dict[str, float] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """A JSON-ready dict (small: C x D floats)."""
        return {
            "temperature": self.temperature,
            "offset": self.offset,
            "class_embeddings": {k: v.astype(float).round(7).tolist() for k, v in self.class_embeddings.items()},
            "offsets": self.offsets,
            "thresholds": self.thresholds,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Head:
        """The head of :meth:`to_dict`; KeyError/TypeError/ValueError when ``data`` is not one."""
        return cls(
            temperature=float(data["temperature"]),
            offset=float(data["offset"]),
            class_embeddings={
                str(k): np.asarray(v, dtype=np.float32) for k, v in dict(data["class_embeddings"]).items()
            },
            offsets={str(k): float(v) for k, v in dict(data.get("offsets", {})).items()},
            thresholds={str(k): float(v) for k, v in dict(data.get("thresholds", {})).items()},
        )

    def class_matrix(self, names: Sequence[str], text_embeddings: np.ndarray) -> np.ndarray:
        """(C, D): learned embeddings where present, text embeddings otherwise."""
        rows = [self.class_embeddings.get(n, text_embeddings[i]) for i, n in enumerate(names)]
        mat = np.stack(rows).astype(np.float32) if rows else text_embeddings.astype(np.float32)
        return mat / np.clip(np.linalg.norm(mat, axis=1, keepdims=True), 1e-12, None)

    def offset_vector(self, names: Sequence[str]) -> np.ndarray:
        return np.array([self.offsets.get(n, self.offset) for n in names], dtype=np.float32)

    def probabilities(self, similarity: np.ndarray, names: Sequence[str]) -> np.ndarray:
        """Tempered sigmoid of (N, C) similarities."""
        return sigmoid(tempered_logits(similarity, self.temperature, self.offset_vector(names)[None, :]))


def zero_shot_head(similarity: np.ndarray, rate: float = DEFAULT_POSITIVE_RATE) -> Head:
    """The head of a version without training: one temperature and offset calibrated on its own
    similarities, so that about ``rate`` of the pairs come out positive."""
    if not similarity.size:
        return Head(1.0, 0.0)
    temperature, offset = calibrate(similarity, positive_rate=rate)
    return Head(float(temperature), float(offset))
