"""Every public service function that changes something checks the role first.

The walk below finds every public function of ``mumic_core`` whose first parameter is the
studio. Each must either carry the mark of ``auth.requires`` (which checks the role before
the body runs) or be named here as reading only; a new changing function without a mark
fails this test. Each marked function is then called with an annotator's studio and with an
anonymous one, and must refuse with PermissionDenied and leave the store as it was.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import pkgutil
from collections.abc import Callable

import pytest
from conftest import stored_scores
from sqlalchemy import select, text

import mumic_core
from db.models import Base, ModelVersion, ReviewLease
from mumic_core.store.auth import PERMISSIONS, Actor, PermissionDenied

ANNOTATOR = Actor("ann", "annotator")

# Reads, and caches derived from stored data (embeddings, search indexes, encode batches, local
# copies of remote files): whoever may read may cause those to be filled.
READ_ONLY = {
    "store.collection.human_positives_per_class",
    "store.api_tokens.list_tokens",
    "store.feeds.ids_by_sha256",
    "store.feeds.image_record",
    "store.feeds.image_signature",
    "store.feeds.labels_changed_since",
    "store.feeds.prediction_rows",
    "store.feeds.signature_valid",
    "store.feeds.signed_file_url",
    "store.feeds.signing_key",
    "store.label_io.export_rows",
    "store.snapshot.collection_snapshot",
    "pipeline.planning.order_queue",
    "pipeline.planning.candidate_probabilities",
    "store.classes.list_classes",
    "store.collection.class_counts",
    "store.collection.collection_counts",
    "store.collection.current_labels",
    "store.collection.importable_folders",
    "store.collection.image_ids_by_name",
    "store.collection.find_image",
    "store.collection.image_count",
    "store.collection.last_submission_id",
    "store.collection.human_labels_since",
    "store.dashboard.annotator_agreement",
    "store.dashboard.correction_rates",
    "store.dashboard.model_history",
    "store.dashboard.per_class_ap",
    "services.demo.is_empty",
    "pipeline.encode_batches.claim_batch",
    "pipeline.encode_batches.encode_in_parallel",
    "pipeline.encode_batches.plan_batches",
    "pipeline.encode_batches.release_dead_claims",
    "pipeline.encode_batches.work_on_batches",
    "pipeline.evaluation.evaluate_folder",
    "pipeline.evaluation.evaluate_stored",
    "store.jobs.active_job",
    "store.jobs.count_jobs",
    "store.jobs.get_job",
    "store.jobs.job_log",
    "store.jobs.list_jobs",
    "pipeline.label_errors.labelled_image_count",
    "pipeline.label_errors.out_of_sample_probabilities",
    "pipeline.label_errors.run_label_errors_job",
    "pipeline.label_errors.suspicious_labels",
    "store.label_io.classes_without_negatives",
    "store.leases.leased_to_others",
    "services.training.new_human_labels",
    "services.training.training_params",
    "store.registry.active_version",
    "store.registry.encoder_spec",
    "store.registry.get_version",
    "store.registry.head_path",
    "store.registry.list_versions",
    "store.registry.load_head",
    "store.registry.next_version_name",
    "store.queue.image_names",
    "store.queue.image_views",
    "store.queue.newest_image_id",
    "store.queue.queue_count",
    "store.queue.queue_page",
    "store.queue.submission_decisions",
    "store.queue.submission_image_ids",
    "store.queue.sweep_candidates",
    "store.queue.sweep_remaining",
    "store.queue.top_images_for_class",
    "store.classes.active_classes",
    "store.collection.all_image_ids",
    "pipeline.scoring.image_embeddings",
    "store.collection.image_items",
    "pipeline.scoring.load_scorer",
    "pipeline.scoring.observed_positive_rate",
    "pipeline.scoring.predict",
    "pipeline.scoring.rank_images_for_prompts",
    "pipeline.scoring.top_predictions",
    "pipeline.scoring.unscored_count",
    "pipeline.scoring.unscored_image_ids",
    "store.renditions.renditions",
    "pipeline.search.build_index",
    "pipeline.search.embedding_map",
    "pipeline.search.index_dir",
    "pipeline.search.index_is_current",
    "pipeline.search.load_index",
    "pipeline.search.near_duplicate_groups",
    "pipeline.search.run_near_duplicates_job",
    "pipeline.search.search_text",
    "pipeline.search.similar_images",
    "store.settings.get_setting",
    "pipeline.training.gather_labels",
    "pipeline.queue.ask_for_help",
    "store.workers.is_alive",
    "store.workers.live_workers",
}
# Signing in and out establish who acts, and the first admin is made on a store without
# accounts; the checks themselves take the studio too.
WITHOUT_ACCOUNT = {
    "store.api_tokens.actor_for_api_token",
    "store.auth.actor_for_token",
    "store.auth.cookie_code",
    "store.auth.ensure_first_admin",
    "store.auth.redeem_cookie_code",
    "store.auth.sign_in",
    "store.auth.sign_out",
    "store.auth.require",
    "store.auth.require_self",
}


def service_functions() -> dict[str, Callable]:
    """``module.function`` -> function, for every public function of mumic_core whose first
    parameter is ``studio`` (the HTTP API aside: like the pages, it calls these)."""
    found = {}
    for info in pkgutil.walk_packages(mumic_core.__path__, "mumic_core."):
        if info.ispkg or info.name.rsplit(".", 1)[-1].startswith("_") or info.name.startswith("mumic_core.api."):
            continue
        module = importlib.import_module(info.name)
        short = info.name.removeprefix("mumic_core.")
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if fn.__module__ == module.__name__ and not name.startswith("_"):
                params = list(inspect.signature(fn).parameters)
                if params[:1] == ["studio"]:
                    found[f"{short}.{name}"] = fn
    return found


def test_every_service_function_is_marked_or_reads_only(
    home,
):  # importing mumic_core.pipeline.worker makes folders there
    functions = service_functions()
    unmarked = sorted(
        n for n, fn in functions.items() if not hasattr(fn, "requires") and n not in READ_ONLY | WITHOUT_ACCOUNT
    )
    assert not unmarked, f"mark these with @auth.requires(...) or list them as reading only: {unmarked}"
    marked_yet_listed = sorted(n for n, fn in functions.items() if hasattr(fn, "requires") and n in READ_ONLY)
    assert not marked_yet_listed
    stale = sorted((READ_ONLY | WITHOUT_ACCOUNT) - set(functions))
    assert not stale, f"listed here but gone: {stale}"
    assert {fn.requires for fn in functions.values() if hasattr(fn, "requires")} <= set(PERMISSIONS["admin"])


def store_fingerprint(studio) -> str:
    """A digest of every row of every table and of every file under MUMIC_HOME (the SQLite
    database itself aside)."""
    digest = hashlib.sha256()
    with studio.read() as s:
        for table in Base.metadata.sorted_tables:
            for row in s.execute(text(f"SELECT * FROM {table.name} ORDER BY 1")):
                digest.update(repr(tuple(row)).encode())
    home = studio.settings.home
    for path in sorted(home.rglob("*")):
        if path.is_file() and not path.name.startswith("mumic.db"):
            digest.update(f"{path.relative_to(home)}:{path.stat().st_size}:{path.stat().st_mtime_ns}".encode())
    return digest.hexdigest()


def call_with_placeholders(fn: Callable, studio, acting_as: str | None) -> None:
    """Call ``fn`` with ``studio`` and a placeholder for every other argument (the check comes
    first, so the placeholders are never used); the person acted for is someone else."""
    params = list(inspect.signature(fn).parameters.values())[1:]
    args = {
        p.name: ("someone-else" if p.name == acting_as else None)
        for p in params
        if p.default is inspect.Parameter.empty and p.kind is not p.VAR_KEYWORD
    }
    if acting_as:
        args[acting_as] = "someone-else"
    fn(studio, **args)


def test_every_changing_function_refuses_annotators_and_strangers_before_changing_anything(demo_studio):
    annotator = demo_studio.as_actor(ANNOTATOR)
    anonymous = demo_studio.as_actor(None)
    before = store_fingerprint(demo_studio)
    checked = []
    for name, fn in sorted(service_functions().items()):
        if not hasattr(fn, "requires"):
            continue
        with pytest.raises(PermissionDenied, match="sign in first"):
            call_with_placeholders(fn, anonymous, fn.acting_as)
        if not ANNOTATOR.may(fn.requires) or fn.acting_as:
            with pytest.raises(PermissionDenied, match=r"annotator and may not|cannot act as"):
                call_with_placeholders(fn, annotator, fn.acting_as)
        checked.append(name)
    assert store_fingerprint(demo_studio) == before
    assert {
        "store.registry.register_version",
        "pipeline.scoring.score_classes",
        "store.leases.release",
        "store.leases.claim",
        "store.collection.record_labels",
        "store.jobs.create_job",
    } <= set(checked)


def test_an_annotator_cannot_create_model_versions_or_write_scores(demo_studio):
    """The three functions the review found unchecked: an annotator's studio created a model
    version, and could overwrite the stored scores."""
    from mumic_core.pipeline.scoring import score_classes
    from mumic_core.store.registry import active_version, register_version

    ann = demo_studio.as_actor(ANNOTATOR)
    version = active_version(demo_studio)
    with demo_studio.read() as s:
        versions = s.scalar(select(ModelVersion.id).order_by(ModelVersion.id.desc()).limit(1))
        scores = stored_scores(demo_studio)
    with pytest.raises(PermissionDenied, match="annotator and may not"):
        register_version(ann, "v9999", None, "head", "planted by an annotator")
    with pytest.raises(PermissionDenied, match="annotator and may not"):
        score_classes(ann, version, [1])
    with demo_studio.read() as s:
        assert s.scalar(select(ModelVersion.id).order_by(ModelVersion.id.desc()).limit(1)) == versions
    assert stored_scores(demo_studio) == scores


def test_annotators_claim_and_release_only_their_own_leases(demo_studio):
    from mumic_core.store.leases import claim, leased_to_others, release

    ann, bob = demo_studio.as_actor(ANNOTATOR), demo_studio.as_actor(Actor("bob", "annotator"))
    assert claim(bob, "tab-b", "bob", [1, 2]) == [1, 2]
    with pytest.raises(PermissionDenied, match="cannot act as 'bob'"):
        claim(ann, "tab-b", "bob", [3])
    release(ann, "tab-b")  # bob's tab: nothing of ann's to end there
    assert leased_to_others(ann, "tab-a") == {1: "bob", 2: "bob"}
    assert claim(ann, "tab-a", "ann", [2, 3]) == [3]
    release(ann, "tab-a")
    release(bob, "tab-b", [1])
    with demo_studio.read() as s:
        assert s.execute(select(ReviewLease.image_id, ReviewLease.annotator)).all() == [(2, "bob")]
    with pytest.raises(PermissionDenied, match="sign in first"):
        release(demo_studio.as_actor(None), "tab-b")
