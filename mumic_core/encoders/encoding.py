"""The multimodal classifier: classes are text embeddings, scores are cosine similarities.

Each class is the normalised mean of its prompts' normalised text embeddings (prompt
ensemble). An image-class score is the cosine similarity ``s``; its probability is the
tempered sigmoid ``p = sigmoid((s - b) / tau)``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms import Compose

from mumic_core.encoders.factory import Encoder
from mumic_core.encoders.pixels import load_rgb

Progress = Callable[[int], None]


def encode_prompts(encoder: Encoder, prompts_per_class: Sequence[Sequence[str]], grad: bool = False) -> Tensor:
    """(C, D) normalised class embeddings from each class's prompts."""
    flat = [p for prompts in prompts_per_class for p in prompts]
    if not flat:
        return torch.zeros((0, encoder.model_cfg["embed_dim"]))
    device = next(encoder.model.parameters()).device
    tokens = encoder.tokenizer(flat).to(device)
    with torch.set_grad_enabled(grad):
        emb = F.normalize(encode_text(encoder.model, tokens).float(), dim=-1)
    out, start = [], 0
    for prompts in prompts_per_class:
        out.append(emb[start : start + len(prompts)].mean(0))
        start += len(prompts)
    return F.normalize(torch.stack(out), dim=-1)


def encode_text(model: torch.nn.Module, tokens: Tensor) -> Tensor:
    """``model.encode_text(tokens)``, computed over the prompts' real length only.

    open_clip pads every prompt to the context length (32 to 77 tokens) and pools at the end
    token under a causal mask, so the padding after the longest prompt's end token changes
    nothing but costs most of the text tower's time: short class prompts run 3 to 4 times
    faster trimmed (full mode encodes every prompt at every step). Models of another text
    design (no causal mask, other pooling) use their own ``encode_text``."""
    mask = getattr(model, "attn_mask", None)
    if (
        getattr(model, "text_pool_type", None) != "argmax"
        or not isinstance(mask, Tensor)
        or not hasattr(model, "token_embedding")
        or tokens.ndim != 2
        or not len(tokens)
    ):
        return model.encode_text(tokens)
    length = int(tokens.argmax(dim=-1).max()) + 1
    tokens = tokens[:, :length]
    cast = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast) + model.positional_embedding[:length].to(cast)
    x = model.ln_final(model.transformer(x, attn_mask=mask[:length, :length]))
    x = x[torch.arange(len(x), device=x.device), tokens.argmax(dim=-1)]
    projection = model.text_projection
    if projection is None:
        return x
    return projection(x) if isinstance(projection, torch.nn.Linear) else x @ projection


def split_preprocess(preprocess) -> tuple[Callable | None, Callable | None]:
    """Split open_clip's eval transform at its to-tensor step into (per-image PIL steps,
    per-batch tensor steps), or (None, None) when it has no such step. Converting and
    normalising a whole batch at once is what makes decoding keep up with a small model."""
    steps = getattr(preprocess, "transforms", None)
    names = [type(t).__name__ for t in steps or ()]
    if not steps or sum(n in ("ToTensor", "MaybeToTensor") for n in names) != 1:
        return None, None
    cut = next(k for k, n in enumerate(names) if n in ("ToTensor", "MaybeToTensor"))
    if not all(n == "Normalize" for n in names[cut + 1 :]):
        return None, None
    return Compose(steps[:cut]), Compose(steps[cut + 1 :])


def _pixels(encoder: Encoder, paths: Sequence[Path]) -> Tensor:
    """A preprocessed batch, the same tensor as stacking ``encoder.preprocess`` of each image.

    A large JPEG is decoded at the smallest of 1/2, 1/4 or 1/8 scale that still covers the
    model's input on its short side (several times faster than a full decode of a photo, and
    the model sees the same resized picture to within rounding)."""
    per_image, per_batch = split_preprocess(encoder.preprocess)
    load = functools.partial(load_rgb, min_side=encoder.image_size)
    if per_image is None:
        return torch.stack([encoder.preprocess(load(p)) for p in paths])
    arrays = [np.asarray(per_image(load(p)), dtype=np.uint8) for p in paths]
    if len({a.shape for a in arrays}) != 1 or arrays[0].ndim != 3:  # a transform without a fixed size
        return torch.stack([encoder.preprocess(load(p)) for p in paths])
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
