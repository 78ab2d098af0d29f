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
CALIBRATION_IMAGES = 65_536  # a zero-shot head is calibrated on at most this many images


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


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.clip(np.linalg.norm(rows, axis=-1, keepdims=True), 1e-12, None)


@dataclass
class Head:
    """What a model version learned on top of its encoder.

    ``class_embeddings`` maps class names to learned embeddings (head mode); classes not in
    it score zero-shot: their prompts' text embedding minus ``text_center`` (the mean text
    embedding of the classes the head was made for, when set). Subtracting it from every
    zero-shot class is subtracting, from each image's similarities, the image's mean similarity to
    those classes: an image that resembles every prompt a little no longer outranks the others in
    each class (CLIP's softmax over the prompts does the same per image). The centre is kept with
    the head, so a class added later is scored against the same centre as the others.
    ``temperatures`` and ``offsets`` hold optional per-class values; other classes use the
    global ``temperature`` and ``offset``. ``thresholds`` are per-class decision thresholds
    tuned on validation data.
    """

    temperature: float
    offset: float
    class_embeddings: dict[str, np.ndarray] = field(default_factory=dict)
    offsets: dict[str, float] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    temperatures: dict[str, float] = field(default_factory=dict)
    text_center: np.ndarray | None = None

    def to_dict(self) -> dict:
        """A JSON-ready dict (small: C x D floats)."""
        return {
            "temperature": self.temperature,
            "offset": self.offset,
            "class_embeddings": {k: v.astype(float).round(7).tolist() for k, v in self.class_embeddings.items()},
            "offsets": self.offsets,
            "thresholds": self.thresholds,
            "temperatures": self.temperatures,
            "text_center": None if self.text_center is None else self.text_center.astype(float).round(7).tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> Head:
        """The head of :meth:`to_dict`; KeyError/TypeError/ValueError when ``data`` is not one."""
        center = data.get("text_center")
        return cls(
            temperature=float(data["temperature"]),
            offset=float(data["offset"]),
            class_embeddings={
                str(k): np.asarray(v, dtype=np.float32) for k, v in dict(data["class_embeddings"]).items()
            },
            offsets={str(k): float(v) for k, v in dict(data.get("offsets", {})).items()},
            thresholds={str(k): float(v) for k, v in dict(data.get("thresholds", {})).items()},
            temperatures={str(k): float(v) for k, v in dict(data.get("temperatures", {})).items()},
            text_center=None if center is None else np.asarray(center, dtype=np.float32),
        )

    def class_matrix(self, names: Sequence[str], text_embeddings: np.ndarray) -> np.ndarray:
        """(C, D): learned embeddings where present (unit length), centred text embeddings otherwise."""
        if not len(names):
            return np.zeros((0, np.asarray(text_embeddings).shape[-1]), dtype=np.float32)
        zero_shot = _unit(text_embeddings)
        if self.text_center is not None:
            zero_shot = zero_shot - self.text_center[None, :]
        rows = [
            _unit(self.class_embeddings[n]) if n in self.class_embeddings else zero_shot[i] for i, n in enumerate(names)
        ]
        return np.stack(rows).astype(np.float32)

    def offset_vector(self, names: Sequence[str]) -> np.ndarray:
        return np.array([self.offsets.get(n, self.offset) for n in names], dtype=np.float32)

    def temperature_vector(self, names: Sequence[str]) -> np.ndarray:
        return np.array([self.temperatures.get(n, self.temperature) for n in names], dtype=np.float32)

    def probabilities(self, similarity: np.ndarray, names: Sequence[str]) -> np.ndarray:
        """Tempered sigmoid of (N, C) similarities."""
        return sigmoid(
            tempered_logits(similarity, self.temperature_vector(names)[None, :], self.offset_vector(names)[None, :])
        )


def text_center(text_embeddings: np.ndarray) -> np.ndarray | None:
    """The mean of unit text embeddings (None for fewer than two classes: nothing to centre on)."""
    text = np.asarray(text_embeddings, dtype=np.float32)
    return _unit(text).mean(axis=0) if len(text) > 1 else None


def zero_shot_head(
    image_embeddings: np.ndarray,
    text_embeddings: np.ndarray,
    rate: float = DEFAULT_POSITIVE_RATE,
    max_images: int = CALIBRATION_IMAGES,
) -> Head:
    """The head of a version without training: centred on these classes' text embeddings, one
    temperature and offset calibrated on the images' similarities, so that about ``rate`` of the
    pairs come out positive. Beyond ``max_images`` images, calibrated on an even stride of them:
    the quantile of millions of pairs is as good, and 1M x 120 pairs would take 3 GiB to sort."""
    head = Head(1.0, 0.0, text_center=text_center(text_embeddings))
    if not len(image_embeddings) or not len(text_embeddings):
        return head
    step = -(-len(image_embeddings) // max_images)
    sim = (
        np.ascontiguousarray(image_embeddings[::step], dtype=np.float32)
        @ head.class_matrix([str(k) for k in range(len(text_embeddings))], text_embeddings).T
    )
    head.temperature, head.offset = (float(v) for v in calibrate(sim, positive_rate=rate))
    return head
