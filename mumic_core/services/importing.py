"""Importing images: they are validated and stored, then the worker scores them with the active
version (they reach the Review queue once scored; Review says how many still wait)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mumic_core.errors import MumicError, one_line
from mumic_core.services.training import request_scoring_of_new_images
from mumic_core.store.auth import requires
from mumic_core.store.collection import import_files, import_folder
from mumic_core.store.images import ImportReport
from mumic_core.store.studio import Studio


@dataclass(frozen=True)
class ImportOutcome:
    """What an import did: the report file by file, and the scoring job of the new images (or
    why none could be queued: the images are stored either way)."""

    report: ImportReport
    scoring_job: int | None = None
    not_queued: str | None = None


def _then_score(studio: Studio, report: ImportReport) -> ImportOutcome:
    if not report.added:
        return ImportOutcome(report)
    try:
        return ImportOutcome(report, request_scoring_of_new_images(studio))
    except MumicError as exc:
        return ImportOutcome(report, None, one_line(exc))


@requires("import")
def import_uploads(studio: Studio, files: Iterable[tuple[str, bytes]]) -> ImportOutcome:
    """Import uploaded files (name, bytes), then queue the scoring of the new ones."""
    return _then_score(studio, import_files(studio, files))


@requires("import")
def import_server_folder(studio: Studio, folder: Path) -> ImportOutcome:
    """Import a folder below the import root, then queue the scoring of the new images."""
    return _then_score(studio, import_folder(studio, folder))
