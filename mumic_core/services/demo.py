"""The demo collection: generated scenes, ground truth kept aside, part pre-labelled with noise."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mumic_core.errors import ClassError
from mumic_core.store.auth import requires
from mumic_core.store.classes import active_classes, add_class
from mumic_core.store.collection import annotate, collection_counts, image_ids_by_name, import_folder
from mumic_core.store.studio import Studio
from mumic_core.synthetic.scenes import (
    DEMO_CLASSES,
    generate_collection,
    write_labels_csv,
)

DEMO_ANNOTATOR = "demo-import"


@dataclass
class DemoSummary:
    images: int
    labelled: int
    missed_labels: int
    truth_csv: Path
    holdout_csv: Path


@requires("import")
def seed_demo(
    studio: Studio, n_images: int = 400, seed: int = 7, labelled_fraction: float = 0.5, miss_rate: float = 0.25
) -> DemoSummary:
    """Generate the demo: classes, images, truth files, and noisy labels on a part of it.

    The first ``labelled_fraction`` of the images get human-style labels in which each true
    label is missed with probability ``miss_rate`` (the rest of the classes are marked absent,
    so a missed label becomes a false negative, as with real annotators). The other images keep
    no labels; their truth is the held-out evaluation set (``demo/holdout.csv``).
    """
    for spec in DEMO_CLASSES:
        try:
            add_class(studio, spec.name, spec.prompts, spec.description)
        except ClassError:
            pass  # already defined (demo re-run)
    demo_dir = studio.settings.demo_dir
    demo_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mumic-demo-") as tmp:
        rows = generate_collection(n_images, seed=seed, out_dir=Path(tmp))
        report = import_folder(studio, Path(tmp))
    truth_csv, holdout_csv = demo_dir / "truth.csv", demo_dir / "holdout.csv"
    n_labelled = int(round(labelled_fraction * len(rows)))
    write_labels_csv(rows, truth_csv)
    write_labels_csv(rows[n_labelled:], holdout_csv)

    ids = image_ids_by_name(studio)
    class_ids = {c.name: c.id for c in active_classes(studio)}
    missed = 0
    for (name, labels), kept in zip(rows[:n_labelled], missed_labels(rows[:n_labelled], miss_rate, seed + 1)):
        missed += len(labels) - len(kept)
        annotate(
            studio, ids[name], {cid: (cname in kept) for cname, cid in class_ids.items()}, DEMO_ANNOTATOR, source="demo"
        )
    return DemoSummary(len(report.added), n_labelled, missed, truth_csv, holdout_csv)


def missed_labels(rows: Sequence[tuple[str, frozenset[str]]], miss_rate: float, seed: int) -> list[set[str]]:
    """The labels an annotator keeps of each image's true ones, each missed with probability
    ``miss_rate``: the same for a seed in every process (labels are drawn in sorted order, not in
    a set's order, which changes with Python's string hashing)."""
    rng = np.random.default_rng(seed)
    return [{lab for lab in sorted(labels) if rng.random() >= miss_rate} for _, labels in rows]


def is_empty(studio: Studio) -> bool:
    """No image in the store yet."""
    return collection_counts(studio)["images"] == 0
