"""Evaluate model versions against ground truth (the paper's GAP@10, GAP and macro mAP)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sqlalchemy import select

from db.models import Image
from mumic_core.encoders.encoding import encode_images
from mumic_core.model.head import zero_shot_head
from mumic_core.model.metrics import evaluate
from mumic_core.pipeline.scoring import load_scorer, predict
from mumic_core.store.classes import active_classes, normalize_name
from mumic_core.store.csv_rows import read_csv_rows
from mumic_core.store.images import iter_image_files
from mumic_core.store.registry import VersionInfo
from mumic_core.store.studio import Studio


def read_truth_csv(path: Path) -> list[tuple[str, frozenset[str]]]:
    """``filename,labels`` rows (labels joined by '|'); a file with any bad row, or none, is
    refused whole: metrics over part of the truth would mislead."""
    try:
        parsed = read_csv_rows(path, ["filename", "labels"])
    except ValueError as exc:
        raise ValueError(f"{Path(path).name}: {exc}") from None
    if parsed.errors:
        raise ValueError(f"{Path(path).name}: {parsed.errors[0]}")
    if not parsed.rows:
        raise ValueError(f"{Path(path).name}: no images listed")
    return [(row["filename"], frozenset(n for n in row["labels"].split("|") if n.strip())) for _, row in parsed.rows]


def _truth_matrix(rows: list[tuple[str, frozenset[str]]], class_names: list[str]) -> np.ndarray:
    col = {normalize_name(n): k for k, n in enumerate(class_names)}
    unknown = sorted({lab for _, labels in rows for lab in labels if normalize_name(lab) not in col})
    if unknown:
        raise ValueError(f"truth names classes that are not defined: {', '.join(unknown[:10])}")
    truth = np.zeros((len(rows), len(class_names)), dtype=np.float32)
    for r, (_, labels) in enumerate(rows):
        for lab in labels:
            truth[r, col[normalize_name(lab)]] = 1.0
    return truth


def evaluate_stored(studio: Studio, version: VersionInfo, truth_csv: Path) -> dict:
    """Metrics of ``version`` on collection images listed in a ``filename,labels`` truth file."""
    rows = read_truth_csv(truth_csv)
    with studio.read() as s:
        ids = dict(s.execute(select(Image.original_name, Image.id)).all())
    missing = [name for name, _ in rows if name not in ids]
    if missing:
        raise ValueError(f"{len(missing)} images of {truth_csv} are not in the collection, e.g. {missing[0]}")
    classes = active_classes(studio)
    prob = predict(studio, load_scorer(studio, version), [ids[n] for n, _ in rows], classes)
    names = [c.name for c in classes]
    return evaluate(prob, _truth_matrix(rows, names), names)


def evaluate_folder(studio: Studio, version: VersionInfo, folder: Path, truth_csv: Path) -> dict:
    """Metrics on images outside the collection (nothing is stored)."""
    rows = read_truth_csv(truth_csv)
    files = {p.relative_to(folder).as_posix(): p for p in iter_image_files(folder)}
    missing = [name for name, _ in rows if name not in files]
    if missing:
        raise ValueError(f"{len(missing)} files of {truth_csv} are not in {folder}, e.g. {missing[0]}")
    scorer = load_scorer(studio, version)
    classes = active_classes(studio)
    names = [c.name for c in classes]
    emb = encode_images(scorer.encoder, [files[n] for n, _ in rows])
    text = scorer.text_embeddings([c.prompt_texts for c in classes])
    head = scorer.head or zero_shot_head(emb, text, 0.1)  # a base model never scored: made on these images
    sim = emb @ head.class_matrix(names, text).T
    return evaluate(head.probabilities(sim, names), _truth_matrix(rows, names), names)
