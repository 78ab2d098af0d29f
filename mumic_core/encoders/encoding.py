"""The multimodal classifier: classes are text embeddings, scores are cosine similarities.

Each class is the normalised mean of its prompts' normalised text embeddings (prompt
ensemble). An image-class score is the cosine similarity ``s``; its probability is the
tempered sigmoid ``p = sigmoid((s - b) / tau)``.
"""

from __future__ import annotations

import functools
import itertools
import multiprocessing
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image as PILImage
from torch import Tensor
from torchvision.transforms import Compose
from torchvision.transforms import functional as TF

from mumic_core.encoders.factory import Encoder
from mumic_core.encoders.pixels import load_rgb, rgb_array

Progress = Callable[[int], None]
_BATCHES_AHEAD = 4  # decoded ahead of a GPU's forward
# The pool of decoding processes or CPU streams (``_pool``), by (processes, model id, model state),
# with a weak reference to its model: one pool at a time.
_pools: dict[tuple[int, int, tuple[int, int]], tuple[ProcessPoolExecutor, weakref.ref | None]] = {}
_pools_lock = threading.Lock()
_child_encoder: Encoder | None = None  # in a CPU stream's process: the model it runs


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


def _pixels(encoder: Encoder, paths: Sequence[Path], mapper: Callable = map) -> Tensor:
    """A preprocessed batch, the same tensor as stacking ``encoder.preprocess`` of each image;
    ``mapper`` (``map`` or a pool's) decodes the images.

    A large JPEG is decoded at the smallest of 1/2, 1/4 or 1/8 scale that still covers the
    model's input on its short side (several times faster than a full decode of a photo, and
    the model sees the same resized picture to within rounding). An image already at the
    model's input size skips the per-image steps when they leave such an image unchanged, and
    the batch becomes floats in one pass: with a small model these steps took a third of the
    decoding time."""
    per_image, per_batch = split_preprocess(encoder.preprocess)
    if per_image is None:
        return torch.stack(
            list(mapper(functools.partial(_preprocessed, encoder.preprocess, encoder.image_size), paths))
        )
    size = encoder.image_size
    unchanged = (size, size) if _keeps_input_size_images(per_image, size) else None
    arrays = list(mapper(functools.partial(_decoded, per_image, size, unchanged), paths))
    if len({a.shape for a in arrays}) != 1 or arrays[0].ndim != 3:  # a transform without a fixed size
        return torch.stack([_preprocessed(encoder.preprocess, encoder.image_size, p) for p in paths])
    pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    batch = torch.empty(pixels.shape, dtype=torch.float32).copy_(pixels).div_(255)  # (B, 3, H, W), contiguous
    for step in per_batch.transforms:  # Normalize steps (split_preprocess), in place: no copy of the batch
        TF.normalize(batch, step.mean, step.std, inplace=True)
    return batch


def _keeps_input_size_images(per_image: Callable, size: int) -> bool:
    """Whether the per-image steps return a ``size`` x ``size`` RGB image unchanged (the
    usual resize and centre crop do), tried on one image of noise."""
    noise = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    try:
        out = np.asarray(per_image(PILImage.fromarray(noise)))
    except Exception:  # a step that needs something else: take the general path
        return False
    return out.shape == noise.shape and bool((out == noise).all())


def _decoded(per_image: Callable, min_side: int, unchanged: tuple[int, int] | None, path: Path) -> np.ndarray:
    """One image through the per-image steps, as (H, W, 3) uint8 (module level: a decoding
    process runs it); an image of size ``unchanged`` needs none of them."""
    return rgb_array(path, min_side, then=per_image, ready_size=unchanged)


def _preprocessed(preprocess: Callable, min_side: int, path: Path) -> Tensor:
    return preprocess(load_rgb(path, min_side=min_side))


def default_decode_workers(device: torch.device) -> int:
    """Processes that decode images for a model on ``device``. On a GPU every core but one, up
    to 16, so that decoding keeps up with the model: a ViT-B-32 forward on an H200 takes 3,000
    images/s, decoding in one process reached 0.26 of it on 640 x 480 JPEGs, a pool of 15
    processes 0.59 (benchmarks/results/gpu_h200). On a CPU one per torch thread, each of them
    also running the model on its own batches with one thread: on 2 cores two single-thread
    forwards side by side ran 2 to 11 % faster than one forward on two threads, and each
    process's decoding overlaps the other's forward (benchmarks/results/speed.md)."""
    if device.type == "cpu":
        return torch.get_num_threads()
    return max(1, min(16, (os.cpu_count() or 1) - 1))


def _pool(workers: int, encoder: Encoder | None = None) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes kept for the life of this process (a job encodes its
    images 1,024 at a time; starting processes for each would cost more than they save), one
    pool at a time: decoding processes, or with ``encoder`` CPU streams that run that model
    as it is now (a model changed since, or another one, gets a new pool). Forked, as torch's
    DataLoader forks its workers: a spawned process would first run this process's main
    script again (under Streamlit, a page) and load the model again. One torch thread each."""
    model = encoder.model if encoder is not None else None
    key = (workers, id(model), _model_state(model))
    with _pools_lock:
        pool, ref = _pools.get(key, (None, None))
        if pool is None or (ref is not None and ref() is not model):  # the id of a model freed since
            _drop_pools()
            context = multiprocessing.get_context("fork")
            pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_in_child, initargs=(encoder,))
            _pools[key] = (pool, weakref.ref(model) if model is not None else None)
        return pool


def _model_state(model: torch.nn.Module | None) -> tuple[int, int]:
    """(in-place changes to its parameters and buffers, modules in training mode): changes when
    ``model`` is trained in place or switched between training and evaluation mode."""
    if model is None:
        return 0, 0
    changes = sum(t._version for t in itertools.chain(model.parameters(), model.buffers()))
    return changes, sum(m.training for m in model.modules())


def _in_child(encoder: Encoder | None) -> None:
    """A pool process's start: one torch thread, the model it runs (inherited, not copied), and
    a watch that ends this process when its parent is gone (a worker killed mid-job would leave
    its pool's processes waiting for work forever, holding their memory)."""
    global _child_encoder
    torch.set_num_threads(1)
    _child_encoder = encoder
    parent = os.getppid()
    threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True, name="mumic-parent-watch").start()


def _exit_when_orphaned(parent: int, every: float = 1.0) -> None:
    while os.getppid() == parent:
        time.sleep(every)
    os._exit(1)


def _drop_pools() -> None:
    for pool, _ in _pools.values():
        pool.shutdown(wait=False, cancel_futures=True)
    _pools.clear()


def _embedded(paths: Sequence[Path]) -> np.ndarray:
    """A CPU stream's work: one batch decoded and embedded by the model this process inherited."""
    pixels = _pixels(_child_encoder, paths)
    with torch.inference_mode():
        return F.normalize(_child_encoder.model.encode_image(pixels).float(), dim=-1).numpy()


def encode_images(
    encoder: Encoder,
    paths: Sequence[Path],
    batch_size: int = 64,
    progress: Progress | None = None,
    decode_workers: int | None = None,
) -> np.ndarray:
    """(N, D) float32 normalised image embeddings, computed in batches without gradients.

    On a GPU the next batches are decoded while the model runs on the current one, their images
    spread over ``decode_workers`` processes (default: ``default_decode_workers``). On a CPU
    with several torch threads, ``decode_workers`` processes each decode and embed whole batches
    with one thread. A few images, or one thread: this thread decodes and embeds each batch in
    turn (decoding in a second thread beside the forward only competes with its threads: torch's
    OpenMP threads spin-wait for a while after each forward). Measured: benchmarks/speed.py."""
    device = next(encoder.model.parameters()).device
    workers = decode_workers or default_decode_workers(device)
    pooled = workers > 1 and len(paths) > batch_size * _BATCHES_AHEAD  # a few images: not worth the processes
    out = np.zeros((len(paths), encoder.model_cfg["embed_dim"]), dtype=np.float32)
    starts = list(range(0, len(paths), batch_size))
    try:
        if device.type == "cpu" and pooled:
            _encode_in_streams(_pool(workers, encoder), workers, paths, starts, batch_size, out, progress)
        else:
            mapper: Callable = map
            if pooled:
                mapper = functools.partial(_pool(workers).map, chunksize=max(1, batch_size // workers))
            _encode_here(encoder, device, paths, starts, batch_size, mapper, out, progress)
    except BrokenProcessPool:  # a pool process died (killed, out of memory): a new pool next time
        with _pools_lock:
            _drop_pools()
        raise
    return out


def _encode_in_streams(
    pool: ProcessPoolExecutor,
    workers: int,
    paths: Sequence[Path],
    starts: list[int],
    batch_size: int,
    out: np.ndarray,
    progress: Progress | None,
) -> None:
    """Every batch to the pool's CPU streams, a few ahead of the one awaited (in order)."""
    ahead = _BATCHES_AHEAD * workers
    pending = deque(pool.submit(_embedded, paths[start : start + batch_size]) for start in starts[:ahead])
    try:
        for k, start in enumerate(starts):
            emb = pending.popleft().result()
            if k + ahead < len(starts):
                pending.append(pool.submit(_embedded, paths[starts[k + ahead] : starts[k + ahead] + batch_size]))
            out[start : start + len(emb)] = emb
            if progress:
                progress(len(emb))
    finally:
        for future in pending:
            future.cancel()


def _encode_here(
    encoder: Encoder,
    device: torch.device,
    paths: Sequence[Path],
    starts: list[int],
    batch_size: int,
    mapper: Callable,
    out: np.ndarray,
    progress: Progress | None,
) -> None:
    """The model in this process; on a GPU the next batches are decoded while it runs."""
    ahead = 1 if device.type == "cpu" else _BATCHES_AHEAD
    with ThreadPoolExecutor(max_workers=ahead, thread_name_prefix="mumic-decode") as prefetch:

        def decode(start: int) -> Future | _Ready:
            batch = paths[start : start + batch_size]
            if device.type == "cpu":
                return _Ready(_pixels(encoder, batch, mapper))
            return prefetch.submit(_pixels, encoder, batch, mapper)

        pending = deque(decode(start) for start in starts[:ahead])
        try:
            for k, start in enumerate(starts):
                pixels = pending.popleft().result()
                if k + ahead < len(starts):
                    pending.append(decode(starts[k + ahead]))
                if device.type == "cuda":
                    pixels = pixels.pin_memory()
                with torch.inference_mode():
                    emb = encoder.model.encode_image(pixels.to(device, non_blocking=True))
                    out[start : start + len(pixels)] = F.normalize(emb.float(), dim=-1).cpu().numpy()
                if progress:
                    progress(len(pixels))
        finally:
            for future in pending:
                future.cancel()


@dataclass
class _Ready:
    """A result computed at once, with a future's ``result()``."""

    value: Tensor

    def result(self) -> Tensor:
        return self.value

    def cancel(self) -> bool:
        return False  # already computed
