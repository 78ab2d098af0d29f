"""Setting a store up: the schema, the base model (or the starter model once built), the demo
collection on an empty store, scores for every image, and the first admin account."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mumic_core.encoders.factory import load_encoder
from mumic_core.pipeline.lifecycle import adopt_starter_model, ensure_base_version
from mumic_core.pipeline.scoring import score_collection, score_new_images, unscored_count
from mumic_core.services.demo import DemoSummary, is_empty, seed_demo
from mumic_core.services.training import request_training
from mumic_core.store.auth import ensure_first_admin, requires
from mumic_core.store.collection import collection_counts
from mumic_core.store.registry import VersionInfo, encoder_spec
from mumic_core.store.studio import Studio

FIRST_MODEL = "first model from the demo's pre-labels"  # the reason of the training job set_up queues


@dataclass(frozen=True)
class SetUp:
    """What setting up did: the active version, the demo (if seeded), the image-class pairs scored
    now, the first admin's password when the account was made now (shown once), and the training
    job queued to make a first useful model (when the only model is untrained)."""

    version: VersionInfo
    demo: DemoSummary | None
    scored: int
    admin_password: str | None
    first_model_job: int | None = None


@requires("models")
def set_up(
    studio: Studio, demo: bool = True, progress: Callable[[int], None] | None = None, first_model: bool = True
) -> SetUp:
    """Bring a store to a usable state; safe to run again (it then does only what is missing).
    ``first_model``: when the demo is seeded now and the only model is untrained, queue training
    on the demo's pre-labels (a worker runs it)."""
    version = adopt_starter_model(studio) or ensure_base_version(studio)
    summary = seed_demo(studio) if demo and is_empty(studio) else None
    scored = 0
    waiting = unscored_count(studio, version.id)
    if waiting:
        everything = waiting == collection_counts(studio)["images"]
        scored = (score_collection if everything else score_new_images)(studio, version, progress)
    elif not collection_counts(studio)["images"]:
        load_encoder(encoder_spec(studio, version))  # nothing to score: still fail fast on weights that do not load
    job = None
    if first_model and summary is not None and summary.labelled and version.kind == "builtin-random":
        # Offline with no pretrained weights, every demo image would get the same suggestions from
        # random weights: the worker first fine-tunes on the demo's own pre-labels (about two
        # minutes on a CPU; holdout mAP 0.29 -> 0.51), and the result becomes active if better.
        job = request_training(studio, {"mode": "full", "activate": "if-better", "reason": FIRST_MODEL})
    return SetUp(version, summary, scored, ensure_first_admin(studio), job)
