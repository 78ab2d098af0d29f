"""The starter model's zero-shot evaluation on scenes of held-out drawings (where it lives and how it
is loaded: ``factory``)."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mumic_core.encoders.encoding import encode_images, encode_prompts
from mumic_core.encoders.factory import Encoder, load_encoder
from mumic_core.encoders.spec import EncoderSpec
from mumic_core.model.metrics import (
    evaluate,
    gap_at_k,
    mean_average_precision,
    shuffled_chance,
)
from mumic_core.synthetic.starter_corpus import (
    EVAL_CATEGORIES,
    Drawing,
    category_prompts,
    held_out_scenes,
    load_held_out,
)


def zero_shot_scenes(spec: EncoderSpec, corpus: Path, n_scenes: int = 600, seed: int = 11) -> dict:
    """Zero-shot metrics on multi-label pictures composed of held-out drawings.

    Classes are the evaluation categories present among the held-out drawings; each class is
    its prompt ensemble. Returns the metrics plus chance: the positive rate, and what mAP and
    GAP@10 are with each class's scores shuffled among the scenes (mean and 99th percentile).
    """
    held, root, font = load_held_out(corpus)
    with tempfile.TemporaryDirectory() as tmp:
        return zero_shot_held_out(spec, held, Path(tmp), n_scenes, seed, root=root, font=font)


def embed_held_out_scenes(
    enc: Encoder, held: Sequence[Drawing], work: Path, n_scenes: int = 600, seed: int = 11, **scene_kw
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(image embeddings, truth, classes) of multi-label scenes of held-out drawings, written to
    ``work``; classes are the evaluation categories present among the drawings."""
    classes = sorted({d.category for d in held if d.category in EVAL_CATEGORIES})
    rows = held_out_scenes(held, n_scenes, seed, work, **scene_kw)
    emb = encode_images(enc, [work / name for name, _ in rows])
    truth = np.array([[c in labels for c in classes] for _, labels in rows], dtype=np.float32)
    return emb, truth, classes


def zero_shot_held_out(
    spec: EncoderSpec, held: Sequence[Drawing], work: Path, n_scenes: int = 600, seed: int = 11, **scene_kw
) -> dict:
    """``zero_shot_scenes`` on given held-out drawings; scenes are written to ``work``."""
    enc = load_encoder(spec)
    emb, truth, classes = embed_held_out_scenes(enc, held, work, n_scenes, seed, **scene_kw)
    text = encode_prompts(enc, category_prompts(classes)).cpu().numpy()
    scores = emb @ text.T
    metrics = evaluate(scores, truth, classes)
    metrics["chance_positive_rate"] = float(truth.mean())
    metrics["shuffled_chance"] = {
        "map": shuffled_chance(scores, truth, mean_average_precision),
        "gap_at_10": shuffled_chance(scores, truth, gap_at_k),
    }
    return metrics
