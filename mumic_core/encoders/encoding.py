"""The multimodal classifier: classes are text embeddings, scores are cosine similarities.

Each class is the normalised mean of its prompts' normalised text embeddings (prompt
ensemble). An image-class score is the cosine similarity ``s``; its probability is the
tempered sigmoid ``p = sigmoid((s - b) / tau)``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mumic_core.store.images import load_rgb
from mumic_core.encoders.factory import Encoder

Progress = Callable[[int], None]


def encode_prompts(encoder: Encoder, prompts_per_class: Sequence[Sequence[str]], grad: bool = False) -> Tensor:
    """(C, D) normalised class embeddings from each class's prompts."""
    flat = [p for prompts in prompts_per_class for p in prompts]
    if not flat:
        return torch.zeros((0, encoder.model_cfg["embed_dim"]))
    device = next(encoder.model.parameters()).device
    tokens = encoder.tokenizer(flat).to(device)
    with torch.set_grad_enabled(grad):
        emb = F.normalize(encoder.model.encode_text(tokens).float(), dim=-1)
    out, start = [], 0
    for prompts in prompts_per_class:
        out.append(emb[start : start + len(prompts)].mean(0))
        start += len(prompts)
    return F.normalize(torch.stack(out), dim=-1)


def split_preprocess(preprocess) -> tuple[Callable | None, Callable | None]:
    """Split open_clip's eval transform at its to-tensor step into (per-image PIL steps,
    per-batch tensor steps), or (None, None) when it has no such step. Converting and
    normalising a whole batch at once is what makes decoding keep up with a small model."""
    from torchvision.transforms import Compose

    steps = getattr(preprocess, "transforms", None)
    names = [type(t).__name__ for t in steps or ()]
    if not steps or sum(n in ("ToTensor", "MaybeToTensor") for n in names) != 1:
        return None, None
    cut = next(k for k, n in enumerate(names) if n in ("ToTensor", "MaybeToTensor"))
    if not all(n == "Normalize" for n in names[cut + 1:]):
        return None, None
    return Compose(steps[:cut]), Compose(steps[cut + 1:])


def _pixels(encoder: Encoder, paths: Sequence[Path]) -> Tensor:
    """A preprocessed batch, the same tensor as stacking ``encoder.preprocess`` of each image."""
    per_image, per_batch = split_preprocess(encoder.preprocess)
    if per_image is None:
        return torch.stack([encoder.preprocess(load_rgb(p)) for p in paths])
    arrays = [np.asarray(per_image(load_rgb(p)), dtype=np.uint8) for p in paths]
    if len({a.shape for a in arrays}) != 1 or arrays[0].ndim != 3:  # a transform without a fixed size
        return torch.stack([encoder.preprocess(load_rgb(p)) for p in paths])
    batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255)
    return per_batch(batch).contiguous()


def encode_images(
    encoder: Encoder,
    paths: Sequence[Path],
    batch_size: int = 64,
    progress: Progress | None = None,
) -> np.ndarray:
    """(N, D) float32 normalised image embeddings, computed in batches without gradients.

    On a GPU the next batch is decoded in a background thread while the model runs on the
    current one (Pillow and torch release the GIL). On a CPU decoding runs between batches: a
    decode thread there only competes with the forward's own threads (measured: 0.80 of the raw
    forward's speed with the thread, 0.97 without, benchmarks/speed.py)."""
    device = next(encoder.model.parameters()).device
    out = np.zeros((len(paths), encoder.model_cfg["embed_dim"]), dtype=np.float32)
    starts = list(range(0, len(paths), batch_size))
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mumic-decode") as pool:
        def decode(start: int):
            batch = paths[start : start + batch_size]
            return pool.submit(_pixels, encoder, batch) if device.type != "cpu" else _Ready(_pixels(encoder, batch))

        pending = decode(0) if starts else None
        for k, start in enumerate(starts):
            pixels = pending.result()
            if k + 1 < len(starts):
                pending = decode(starts[k + 1])
            with torch.inference_mode():
                emb = F.normalize(encoder.model.encode_image(pixels.to(device)).float(), dim=-1)
            out[start : start + len(pixels)] = emb.cpu().numpy()
            if progress:
                progress(len(pixels))
    return out


@dataclass
class _Ready:
    """A result computed at once, with a future's ``result()``."""

    value: Tensor

    def result(self) -> Tensor:
        return self.value


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

    def save(self, path: Path) -> None:
        """Write atomically as JSON (small: C x D floats)."""
        payload = {
            "temperature": self.temperature,
            "offset": self.offset,
            "class_embeddings": {k: v.astype(float).round(7).tolist() for k, v in self.class_embeddings.items()},
            "offsets": self.offsets,
            "thresholds": self.thresholds,
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Head:
        data = json.loads(Path(path).read_text())
        return cls(
            temperature=data["temperature"],
            offset=data["offset"],
            class_embeddings={k: np.asarray(v, dtype=np.float32) for k, v in data["class_embeddings"].items()},
            offsets=data.get("offsets", {}),
            thresholds=data.get("thresholds", {}),
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
        z = (similarity - self.offset_vector(names)[None, :]) / self.temperature
        return (1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))).astype(np.float32)
