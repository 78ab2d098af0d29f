"""The model lifecycle: retrain from human labels, then promote (re-score, then activate).

A candidate version becomes active only after the whole collection has been scored with it,
in one switch: until then the review queue keeps showing the active version's predictions, so
it never presents a mix of two versions. Re-scoring is resumable (image embeddings are cached
part by part), and a killed job leaves the active version as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields

from mumic_core.encoders.factory import resolve_base_spec
from mumic_core.pipeline.queue import enqueue
from mumic_core.pipeline.scoring import (
    drop_inactive_predictions,
    score_collection,
    score_new_images,
    unscored_count,
)
from mumic_core.pipeline.search import build_index, index_is_current, load_index
from mumic_core.pipeline.training import TrainConfig, train
from mumic_core.store.auth import requires
from mumic_core.store.collection import all_image_ids
from mumic_core.store.jobs import Report, fail_orphaned_jobs, log
from mumic_core.store.registry import (
    VersionInfo,
    activate,
    active_version,
    get_version,
    list_versions,
    next_version_name,
    register_version,
)
from mumic_core.store.reports import format_metric
from mumic_core.store.studio import Studio

Note = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


@requires("models")
def ensure_base_version(studio: Studio) -> VersionInfo:
    """The active version; on a new store, register the base model (pretrained or built-in)."""
    version = active_version(studio)
    if version is not None:
        return version
    spec = resolve_base_spec(studio.settings)
    return register_version(
        studio,
        "v0001" if not list_versions(studio) else next_version_name(studio),
        spec,
        spec.kind,
        spec.description,
        status="active",
    )


@requires("models")
def adopt_starter_model(studio: Studio) -> VersionInfo | None:
    """If the untrained built-in model is active and a starter model has been built, register the
    starter model and make it active (the caller re-scores). Returns the new version or None."""
    version = active_version(studio)
    if version is None or version.kind != "builtin-random" or studio.settings.model_explicit:
        return None
    spec = resolve_base_spec(studio.settings)
    if spec.kind != "starter":
        return None
    return register_version(studio, next_version_name(studio), spec, spec.kind, spec.description, status="active")


@requires("train")
def retrain(
    studio: Studio, params: dict, report: Report, note: Note = _quiet, remember: Callable[..., None] | None = None
) -> dict:
    """Train a candidate on top of the active version; promote it if the policy says so."""
    config = TrainConfig(**{k: v for k, v in params.items() if k in {f.name for f in fields(TrainConfig)}})
    parent = active_version(studio) or ensure_base_version(studio)
    note(f"training in {config.mode} mode with the {config.loss} loss, from {parent.name}")
    result = train(studio, config, parent, progress=report)
    name = result.version.name
    if remember:
        remember(candidate=name, promote=result.promote)
    fmt = lambda m: f"mAP {format_metric(m.get('map'))}, GAP@10 {format_metric(m.get('gap_at_10'))}"  # noqa: E731
    note(
        f"candidate {name}: {fmt(result.metrics)} on {result.metrics.get('n_images', '?')} held-out images; "
        f"{parent.name}: {fmt(result.parent_metrics)}"
    )
    if result.promote:
        outcome = f"activated (policy '{config.activate}')"
        note(f"policy '{config.activate}': promoting {name}")
        promote(studio, result.version, report, note)
    else:
        outcome = (
            "kept as a candidate: the policy is 'never'"
            if config.activate == "never"
            else f"kept as a candidate: held-out mAP {format_metric(result.metrics.get('map'))} is below "
            f"{parent.name}'s {format_metric(result.parent_metrics.get('map'))} (policy 'if better')"
        )
        note(f"policy '{config.activate}': {name} stays a candidate")
    return {
        "version": name,
        "activated": result.promote,
        "outcome": outcome,
        "val": {k: result.metrics.get(k) for k in ("gap_at_10", "gap", "map")},
        "parent_val": {k: result.parent_metrics.get(k) for k in ("gap_at_10", "gap", "map")},
    }


@requires("models")
def promote(studio: Studio, version: VersionInfo, report: Report | None = None, note: Note = _quiet) -> int:
    """Score every image with ``version``, then make it the active version. Returns predictions."""
    n = score_all(studio, version, report)
    if report:
        report("indexing", 0.0, {})
    # A head-mode version shares its parent's encoder, so its saved index (extended with new
    # images): an HNSW graph of 1M images takes minutes to build. Rebuilt when images were removed.
    # A current index is not loaded here (1.3 GB at 1M images): the web processes load it.
    if not index_is_current(studio, version) and len(load_index(studio, version)) != len(all_image_ids(studio)):
        build_index(studio, version)
    activate(studio, version.id)
    dropped = drop_inactive_predictions(studio, version.id)
    note(
        f"{version.name} is active; {n} predictions written, search index ready; "
        f"{dropped} predictions of inactive versions deleted (their metrics stay)"
    )
    return n


@requires("train")
def score_all(studio: Studio, version: VersionInfo, report: Report | None = None) -> int:
    """Score the collection with ``version`` (embeddings resume from the cache), reporting progress."""
    total = len(all_image_ids(studio))  # a count: nothing fetched from remote storage
    return score_collection(studio, version, progress=_counter(report, "re-scoring", total))


@requires("train")
def rescore(studio: Studio, params: dict, report: Report, note: Note = _quiet) -> dict:
    """Score job: one version (default the active one); with ``activate``, promote it after."""
    version = get_version(studio, params["version"]) if params.get("version") else ensure_base_version(studio)
    if params.get("new_images"):
        waiting = unscored_count(studio, version.id)
        note(f"scoring the {waiting} images {version.name} has not scored yet")
        n = score_new_images(studio, version, _counter(report, "scoring new images", waiting))
        return {"version": version.name, "predictions": n}
    note(f"scoring the collection with {version.name}")
    if params.get("activate"):
        n = promote(studio, version, report, note)
    else:
        n = score_all(studio, version, report)
    return {"version": version.name, "predictions": n}


def _counter(report: Report | None, phase: str, total: int) -> Callable[[int], None]:
    """A per-image progress callback that reports ``phase`` with a running count of ``total``."""
    done = [0]

    def count(k: int) -> None:
        done[0] += k
        if report:
            report(phase, min(1.0, done[0] / max(1, total)), {"images": done[0], "of": total})

    count(0)
    return count


@requires("train")
def resume_interrupted(studio: Studio) -> list[int]:
    """At worker start: fail the jobs of a dead worker, and queue again the scorings they left
    undone: a training's candidate that was to become active, an activation, and any other
    scoring (of newly imported images: else they would never reach Review); their image
    embeddings resume from the cache. Returns the ids of the jobs queued."""
    queued = []
    for job in fail_orphaned_jobs(studio):
        result, params = job.result or {}, job.params or {}
        if job.kind == "train" and result.get("promote") and result.get("candidate"):
            again = {"version": result["candidate"], "activate": True}
        elif job.kind == "score":
            again = {k: v for k, v in params.items() if k != "resumes_job"}
        else:
            continue
        new_id = enqueue(studio, "score", again | {"resumes_job": job.id})
        what = f"promotion of {again['version']}" if again.get("activate") else "scoring"
        log(studio, job.id, f"its {what} resumes as job {new_id}")
        queued.append(new_id)
    return queued
