"""Class actions that need the model too: a new, edited or reactivated class gets its scores over
the whole collection at once (zero-shot from its prompts, one matrix product on cached embeddings)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from mumic_core.pipeline.scoring import score_classes
from mumic_core.store.auth import requires
from mumic_core.store.classes import (
    ClassInfo,
    add_class,
    list_classes,
    set_active,
    set_prompts,
)
from mumic_core.store.registry import active_version
from mumic_core.store.studio import Studio


@dataclass(frozen=True)
class Scored:
    """A class and its scores: how many images the active version scored, in how many seconds."""

    cls: ClassInfo
    images: int
    seconds: float


def _score(studio: Studio, cls: ClassInfo) -> Scored:
    version = active_version(studio)
    started = time.monotonic()
    n = score_classes(studio, version, [cls.id]) if version is not None and cls.active else 0
    return Scored(cls, n, time.monotonic() - started)


@requires("classes")
def add_scored_class(studio: Studio, name: str, prompts: Sequence[str] = (), description: str = "") -> Scored:
    """Add a class and score it over the collection with the active version."""
    return _score(studio, add_class(studio, name, prompts, description))


@requires("classes")
def edit_prompts(studio: Studio, class_id: int, prompts: Sequence[str], description: str | None = None) -> Scored:
    """Replace a class's prompts (and description) and score it again."""
    return _score(studio, set_prompts(studio, class_id, prompts, description))


@requires("classes")
def reactivate(studio: Studio, class_id: int) -> Scored:
    """Make an inactive class active again and score it with the active version."""
    set_active(studio, class_id, True)
    return _score(studio, next(c for c in list_classes(studio, active_only=False) if c.id == class_id))
