"""Retraining and the model lifecycle: jobs in the database, a real worker process, promotion
after a full re-score, cancellation, one training at a time, and kill -9 at the worst moments."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import diverging_loss
from sqlalchemy import func, select, update
from test_worker import start_worker, stop, wait_for

from db.models import Annotation, AuditEvent, Image, ImageScore, Job, LabelClass, ModelVersion
from mumic_core.cli import main
from mumic_core.encoders.cache import EmbeddingCache
from mumic_core.encoders.factory import create_random_local_dir
from mumic_core.encoders.spec import EncoderSpec
from mumic_core.errors import TrainingError
from mumic_core.model import fitting
from mumic_core.pipeline import lifecycle
from mumic_core.pipeline.runner import run_job
from mumic_core.services import training as training_service
from mumic_core.services.review import submit
from mumic_core.services.training import maybe_auto_retrain, new_human_labels, request_activation, request_training
from mumic_core.store.auth import Actor
from mumic_core.store.jobs import (
    JobConflict,
    create_job,
    get_job,
    job_log,
    list_jobs,
    progress_reporter,
    request_cancel,
)
from mumic_core.store.queue import QueueFilter, image_views, queue_page
from mumic_core.store.registry import active_version, encoder_spec, list_versions, register_version
from mumic_core.store.scores import score_matrix, scores_of_images
from mumic_core.store.settings import set_setting


def prediction_count(studio, version_id: int) -> int:
    """The image-class scores the version has stored."""
    with studio.read() as s:
        _, prob = score_matrix(s, version_id, s.scalars(select(LabelClass.id)).all())
    return int((~np.isnan(prob)).sum())


def test_request_to_worker_to_candidate_to_promotion_to_review_queue(demo_studio):
    """Must-show 1: service-layer request -> worker process trains -> candidate -> promotion ->
    the review queue shows the new version's suggestions."""
    studio = demo_studio
    base = active_version(studio)
    proc = start_worker(studio.settings.home)
    try:
        job_id = request_training(studio, {"mode": "head", "epochs": 60, "activate": "always"})
        wait_for(lambda: get_job(studio, job_id).status not in ("queued", "running"), timeout=180)
    finally:
        out = stop(proc)
    job = get_job(studio, job_id)
    assert job.status == "succeeded", (job.error, out)
    assert job.worker_pid != os.getpid() and job.result["activated"] is True
    assert job.result["outcome"].startswith("activated")
    new = active_version(studio)
    assert new.name == job.result["version"] != base.name and new.kind == "head"
    assert new.metrics["val"]["map"] is not None and "per_class_ap" in new.metrics["val"]
    assert prediction_count(studio, new.id) == 60 * 20
    # Only the active version's predictions are kept; the retired one keeps its metrics, and
    # activating it again re-scores the collection with it.
    assert prediction_count(studio, base.id) == 0
    # The review queue now serves the new version's suggestions.
    image_id = queue_page(studio, QueueFilter(new.id), 0, 1)[0]
    view = image_views(studio, [image_id], new.id)[0]
    with studio.read() as s:
        class_ids = s.scalars(select(LabelClass.id)).all()
        stored = dict(zip(class_ids, scores_of_images(s, new.id, [image_id], class_ids)[0].tolist()))
    assert view.suggestions and all(abs(stored[x.class_id] - x.probability) < 1e-6 for x in view.suggestions)
    # The Training page compares both: the base model through the comparison made at training.
    from mumic_core.store.reports import per_class_ap, validation_metrics

    measured = validation_metrics(list_versions(studio))
    assert measured[base.name] == new.metrics["parent_val"] and measured[new.name] == new.metrics["val"]
    assert {r["version"] for r in per_class_ap(list_versions(studio), [base.name, new.name])} == {base.name, new.name}
    messages = [r.message for r in job_log(studio, job_id)]
    assert any("candidate" in m for m in messages) and any("is active" in m for m in messages)
    assert any(m.startswith("training") for m in messages) and "Traceback" not in out


def test_one_training_at_a_time(demo_studio):
    studio = demo_studio
    first = request_training(studio, {"mode": "head"})
    with pytest.raises(JobConflict, match=f"already queued or running \\(job {first}"):
        request_training(studio, {"mode": "full"})
    with pytest.raises(JobConflict):
        create_job(studio, "train", {})  # the database refuses it too, not only the service
    assert request_cancel(studio, first) == "cancelled"
    second = request_training(studio, {"mode": "head"})
    assert second != first and get_job(studio, second).status == "queued"
    assert create_job(studio, "score") > second  # other kinds are not exclusive


def test_cancel_a_running_training(demo_studio):
    studio = demo_studio
    versions_before = len(list_versions(studio))
    job_id = create_job(studio, "train", {"mode": "full", "epochs": 200, "batch_size": 8})
    thread = threading.Thread(target=run_job, args=(studio, job_id), daemon=True)
    thread.start()
    wait_for(lambda: get_job(studio, job_id).phase == "training", timeout=120)
    assert request_cancel(studio, job_id) == "running"
    thread.join(timeout=60)
    job = get_job(studio, job_id)
    assert job.status == "cancelled" and "cancelled during training" in job.error
    assert job.exclusive_key is None and len(list_versions(studio)) == versions_before
    assert job.details.get("epoch") and job.details.get("loss") is not None  # live numbers were there


def test_progress_reporter_records_phase_numbers_and_log(studio):
    from mumic_core.store.jobs import time_left

    job_id = create_job(studio, "score")
    with studio.write() as s:
        s.get(Job, job_id).status = "running"
    report = progress_reporter(studio, job_id, min_interval=0.0)
    report("training", 0.25, {"epoch": 1, "epochs": 4, "step": 5, "steps": 20, "loss": 0.5})
    report("training", 0.5, {"epoch": 2, "epochs": 4, "step": 10, "steps": 20, "loss": 0.4})
    job = get_job(studio, job_id)
    assert job.phase == "training" and job.progress == 0.5 and job.details["epoch"] == 2
    started = datetime.fromisoformat(job.details["phase_started"])
    assert time_left(job, started + timedelta(seconds=4)) == pytest.approx(4.0)  # half done in 4 s
    assert time_left(job, started + timedelta(seconds=1)) is None  # too early to tell
    messages = [r.message for r in job_log(studio, job_id)]
    assert "training" in messages and any("epoch 1 done" in m for m in messages)


def test_diverging_training_job_fails_with_the_reason_and_makes_no_version(demo_studio, monkeypatch):
    studio = demo_studio
    monkeypatch.setattr(fitting, "create_loss", diverging_loss)
    before = len(list_versions(studio))
    job_id = create_job(studio, "train", {"mode": "head"})
    with pytest.raises(TrainingError):
        run_job(studio, job_id)
    job = get_job(studio, job_id)
    assert job.status == "failed" and "diverged" in job.error and job.exclusive_key is None
    assert len(list_versions(studio)) == before and active_version(studio).name == "v0001"


def test_automatic_retraining_after_n_new_human_labels(demo_studio):
    studio = demo_studio
    set_setting(studio, "auto_retrain_labels", 6)
    version = active_version(studio)
    ids = queue_page(studio, QueueFilter(version.id), 0, 3)
    views = image_views(studio, ids, version.id)
    start = new_human_labels(studio)
    for view in views[:2]:  # 2 images x 2 labels = 4 new labels: not yet
        submit(studio, view, [view.suggestions[0].class_id], [view.suggestions[1].class_id], "ann")
    assert new_human_labels(studio) == start + 4
    with studio.read() as s:
        assert s.scalar(select(func.count()).select_from(Job).where(Job.kind == "train")) == 0
    submit(studio, views[2], [views[2].suggestions[0].class_id], [views[2].suggestions[1].class_id], "ann")
    with studio.read() as s:
        jobs = list(s.scalars(select(Job).where(Job.kind == "train")))
    assert len(jobs) == 1 and jobs[0].params["mode"] == "head" and "automatic" in jobs[0].params["reason"]
    assert new_human_labels(studio) == 0  # counted from this request on
    assert maybe_auto_retrain(studio) is None  # one is already queued


def test_embedding_cache_resumes_after_a_crash(studio, tmp_path: Path, monkeypatch):
    from mumic_core.encoders import cache as embeddings
    from mumic_core.encoders.factory import load_encoder, resolve_base_spec
    from mumic_core.synthetic.scenes import generate_collection

    rows = generate_collection(10, seed=1, out_dir=tmp_path / "imgs", size=64)
    items = [(k + 1, tmp_path / "imgs" / name) for k, (name, _) in enumerate(rows)]
    ids = [i for i, _ in items]
    locate = lambda missing: [(i, p) for i, p in items if i in set(missing)]  # noqa: E731
    enc = load_encoder(resolve_base_spec(studio.settings))
    cache = EmbeddingCache(tmp_path / "cache", "k", chunk=4)
    real, calls = embeddings.encode_images, []

    def dies_on_third_chunk(encoder, paths, **kw):
        calls.append(len(paths))
        if len(calls) == 3:
            raise KeyboardInterrupt("killed")
        return real(encoder, paths, **kw)

    monkeypatch.setattr(embeddings, "encode_images", dies_on_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        cache.ensure(lambda: enc, ids, locate)
    assert len(cache.load()[0]) == 8  # two finished parts survived
    calls.clear()
    ids, emb = cache.ensure(lambda: enc, ids, locate)
    assert calls == [2] and ids.tolist() == list(range(1, 11))  # only the missing two were encoded
    assert np.allclose(emb, real(enc, [p for _, p in items]), atol=1e-5)
    assert len([p for p in cache.dir.iterdir() if p.name.endswith("-ids.npy")]) == 1  # merged


def _start_big_collection(studio, n: int) -> None:
    from mumic_core.pipeline.lifecycle import ensure_base_version
    from mumic_core.pipeline.scoring import score_collection
    from mumic_core.services.demo import seed_demo

    version = ensure_base_version(studio)
    seed_demo(studio, n_images=n, seed=4)
    score_collection(studio, version)


@pytest.mark.timeout(600)
def test_kill_9_during_training_and_during_rescoring(studio, tmp_path: Path):
    """Must-show 2: kill -9 of a real worker while it trains, and while it re-scores for an
    activation; no half-made model becomes active, predictions never mix versions, and the
    restarted worker fails the job with its reason and resumes the promotion."""
    _start_big_collection(studio, 300)
    home = studio.settings.home
    base = active_version(studio)
    base_predictions = prediction_count(studio, base.id)

    # 1. During training (full mode, long enough to catch).
    proc = start_worker(home)
    job_id = request_training(studio, {"mode": "full", "epochs": 100, "activate": "always"})
    wait_for(lambda: get_job(studio, job_id).phase == "training", timeout=240)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert get_job(studio, job_id).status == "running"  # nobody has noticed yet
    assert active_version(studio).id == base.id and len(list_versions(studio)) == 1
    assert prediction_count(studio, base.id) == base_predictions

    # 2. During the re-score of an activation: a version with another encoder must score every
    # image before it becomes active. Small embedding parts make the resume visible.
    other_dir = home / "models" / "other-encoder"
    create_random_local_dir("mumic-small-rn96", other_dir, seed=5)
    other = register_version(
        studio,
        "v0002",
        EncoderSpec(f"local-dir:{other_dir}", "", "pretrained", "other"),
        "pretrained",
        "another encoder",
    )
    cache_dir = home / "embeddings" / encoder_spec(studio, other).key
    proc = start_worker(home, MUMIC_EMBEDDING_CHUNK="32")
    try:
        wait_for(lambda: get_job(studio, job_id).status == "failed", timeout=60)  # job 1 is failed at start
        assert "stopped during this job's 'training' phase" in get_job(studio, job_id).error
        assert get_job(studio, job_id).exclusive_key is None
        act = request_activation(studio, other.name)
        wait_for(lambda: cache_dir.is_dir() and len(list(cache_dir.glob("part-*-ids.npy"))) >= 2, timeout=240)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    done_before_restart = len(EmbeddingCache(home / "embeddings", cache_dir.name).load()[0])
    assert 64 <= done_before_restart < 300, done_before_restart
    assert get_job(studio, act).status == "running" and active_version(studio).id == base.id
    assert prediction_count(studio, other.id) == 0  # nothing of the new version is presented

    proc = start_worker(home, MUMIC_EMBEDDING_CHUNK="32")
    try:
        wait_for(lambda: active_version(studio).id == other.id, timeout=240)
    finally:
        out = stop(proc)
    failed = get_job(studio, act)
    assert failed.status == "failed" and "re-scoring" in failed.error
    with studio.read() as s:
        resumed = s.scalar(select(Job).where(Job.kind == "score").order_by(Job.id.desc()))
    assert resumed.status == "succeeded" and resumed.params["resumes_job"] == act
    assert prediction_count(studio, other.id) == 300 * 20 and prediction_count(studio, base.id) == 0
    with studio.read() as s:
        statuses = dict(s.execute(select(ModelVersion.name, ModelVersion.status)).all())
    assert statuses == {"v0001": "retired", "v0002": "active"}
    assert "Traceback" not in out, out


def test_a_promotion_keeps_only_the_active_versions_predictions_and_a_roll_back_rescores(demo_studio):
    """The store holds one version's predictions whatever the number of promotions: the
    database does not grow per promotion, and rolling back re-scores from cached embeddings."""
    studio = demo_studio
    base = active_version(studio)
    with studio.read() as s:
        images = s.scalar(select(func.count()).select_from(Image))
    new = register_version(studio, "v0002", encoder_spec(studio, base), "pretrained", "same encoder, zero-shot")
    lifecycle.promote(studio, new)
    assert (prediction_count(studio, new.id), prediction_count(studio, base.id)) == (images * 20, 0)
    with studio.read() as s:
        summaries = dict(
            s.execute(select(ImageScore.model_version_id, func.count()).group_by(ImageScore.model_version_id)).all()
        )
    assert summaries == {new.id: images}
    lifecycle.promote(studio, base)  # roll back
    assert active_version(studio).id == base.id
    assert (prediction_count(studio, base.id), prediction_count(studio, new.id)) == (images * 20, 0)
    assert [v.metrics for v in list_versions(studio) if v.id == base.id] == [base.metrics]  # what was measured stays


def test_embedding_cache_names_ids_it_cannot_find(studio, tmp_path: Path):
    from mumic_core.encoders.factory import load_encoder, resolve_base_spec

    cache = EmbeddingCache(tmp_path / "cache", "k")
    with pytest.raises(KeyError, match="999"):
        cache.ensure(lambda: load_encoder(resolve_base_spec(studio.settings)), [999], lambda missing: [])


def _review_as(studio, annotator: str, n_images: int) -> None:
    """``annotator`` (signed in, an annotator) reviews ``n_images`` images: 2 labels each."""
    version = active_version(studio)
    views = image_views(
        studio, queue_page(studio, QueueFilter(version.id, status="unreviewed"), 0, n_images), version.id
    )
    for view in views:
        submit(studio, view, [view.suggestions[0].class_id], [view.suggestions[1].class_id], annotator)


def test_an_annotators_submit_past_the_threshold_queues_training_as_the_system(demo_studio):
    """Automatic retraining is the system's doing: the annotator whose submit crossed the
    threshold may not train, and must not get an error for labels that were saved."""
    set_setting(demo_studio, "auto_retrain_labels", 4)
    ann = demo_studio.as_actor(Actor("ann", "annotator"))
    _review_as(ann, "ann", 1)
    assert new_human_labels(demo_studio) == 2
    _review_as(ann, "ann", 1)  # the 4th label: a training is queued, and the submit succeeds
    with demo_studio.read() as s:
        [job] = s.scalars(select(Job).where(Job.kind == "train"))
        [event] = s.scalars(select(AuditEvent).where(AuditEvent.action == "queue_job"))
    assert job.status == "queued" and job.params["reason"].startswith("automatic")
    assert event.actor == "system" and event.details["params"]["reason"].startswith("automatic")
    assert "ann" in event.details["params"]["reason"]  # whose submit crossed the threshold
    assert new_human_labels(demo_studio) == 0


def test_a_failure_to_queue_the_automatic_retraining_never_fails_the_submit(demo_studio, caplog, monkeypatch):
    set_setting(demo_studio, "auto_retrain_labels", 2)
    queue_down = replace(demo_studio.settings, queue_url="redis://127.0.0.1:9/0")  # nothing listens there
    ann = replace(demo_studio, settings=queue_down).as_actor(Actor("ann", "annotator"))
    _review_as(ann, "ann", 1)  # labels saved; the queue cannot be reached: logged, not raised
    assert any(
        "automatic retraining was not queued" in r.message and "cannot be reached" in r.message for r in caplog.records
    )
    with demo_studio.read() as s:
        said = select(func.count()).select_from(Annotation).where(Annotation.annotator == "ann")
        assert s.scalar(said.where(Annotation.assumed.is_(False))) == 2  # and the rest assumed absent
        [job] = s.scalars(select(Job).where(Job.kind == "train"))
    assert job.status == "failed"  # recorded as not queued, so it is not retried at every submit
    set_setting(demo_studio, "auto_retrain_labels", 1)
    running = create_job(demo_studio, "train", {"mode": "head"})
    monkeypatch.setattr(training_service, "active_job", lambda studio, kind: None)  # another submit queued one just now
    _review_as(demo_studio.as_actor(Actor("ann", "annotator")), "ann", 1)  # JobConflict: logged, no error
    assert any("already queued or running" in r.message for r in caplog.records)
    with demo_studio.read() as s:
        assert s.scalars(select(Job.id).where(Job.kind == "train", Job.status == "queued")).all() == [running]


def test_undone_labels_do_not_count_toward_retraining_or_the_dashboard(demo_studio):
    """Found in a walk through the app: after Accept then Undo, the Training page still counted the
    labels and the Dashboard still showed them as reviews."""
    from mumic_core.services.review import undo
    from mumic_core.store.dashboard import correction_rates

    before = sum(r["reviewed labels"] for r in correction_rates(demo_studio))
    _review_as(demo_studio.as_actor(Actor("ann", "annotator")), "ann", 2)
    assert new_human_labels(demo_studio) == 4
    assert sum(r["reviewed labels"] for r in correction_rates(demo_studio)) == before + 4
    undo(demo_studio.as_actor(Actor("ann", "annotator")), "ann")
    undo(demo_studio.as_actor(Actor("ann", "annotator")), "ann")
    assert new_human_labels(demo_studio) == 0
    assert sum(r["reviewed labels"] for r in correction_rates(demo_studio)) == before


def test_cli_train_counts_new_labels_from_its_own_training(demo_studio):
    """The command line's inline training records the labels it trained on, like a queued one."""
    _review_as(demo_studio.as_actor(Actor("ann", "annotator")), "ann", 2)
    assert new_human_labels(demo_studio) == 4
    result = CliRunner().invoke(main, ["train", "--steps", "5", "--activate", "never"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert new_human_labels(demo_studio) == 0


def test_retraining_when_validation_has_no_positives(demo_studio):
    """mAP is undefined without positives: the training finishes, says 'n/a', and leaves no
    half-state (a registered version with a failed job)."""
    with demo_studio.write() as s:
        val = s.scalars(select(Image.id).where(Image.split == "val")).all()
        labelled = s.execute(
            update(Annotation)
            .where(Annotation.image_id.in_(val), Annotation.is_current.is_(True))
            .values(positive=False)
        ).rowcount
    assert labelled > 0
    result = CliRunner().invoke(main, ["train", "--steps", "20", "--activate", "always"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "map=n/a" in result.stdout and "activated" in result.stdout
    [job] = list_jobs(demo_studio, kind="train")
    assert job.status == "succeeded" and job.exclusive_key is None and job.result["val"]["map"] is None
    assert active_version(demo_studio).name == job.result["version"] == "v0002"
    assert any("mAP n/a" in r.message for r in job_log(demo_studio, job.id))
    listed = CliRunner().invoke(main, ["models", "list"])
    assert listed.exit_code == 0 and "val mAP n/a" in listed.stdout, listed.output


def test_a_scoring_of_new_images_cut_off_by_a_dead_worker_is_queued_again(demo_studio):
    """kill -9 of the worker while it scores newly imported images: at the next start the job is
    failed and the scoring queued again, so the new images still reach Review."""
    studio = demo_studio
    version = active_version(studio)
    job_id = create_job(studio, "score", {"version": version.name, "new_images": True})
    dead = subprocess.Popen(["true"])
    dead.wait()
    with studio.write() as s:
        s.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(status="running", phase="scoring", worker_pid=dead.pid, worker_host=os.uname().nodename)
        )
    queued = lifecycle.resume_interrupted(studio)
    assert get_job(studio, job_id).status == "failed"
    assert len(queued) == 1
    again = get_job(studio, queued[0])
    assert again.kind == "score" and again.params == {
        "version": version.name,
        "new_images": True,
        "resumes_job": job_id,
    }
