"""Scale-out: huey on a real Redis server, several worker processes sharing jobs, and scoring
split into batches that every worker takes (resumable after a worker dies)."""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import time
from datetime import timedelta

import numpy as np
import pytest
from conftest import stored_scores
from sqlalchemy import func, select
from test_worker import start_worker, stop, wait_for

from db.models import EncodeBatch, Job, JobLog, utcnow
from mumic_core.encoders.cache import EmbeddingCache
from mumic_core.pipeline.encode_batches import plan_batches
from mumic_core.pipeline.lifecycle import ensure_base_version
from mumic_core.pipeline.scoring import load_scorer, score_collection
from mumic_core.store.collection import all_image_ids
from mumic_core.store.jobs import get_job
from mumic_core.store.workers import live_workers


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def redis_url(tmp_path):
    """A real Redis server on loopback, started for the test (Debian's redis-server)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server; .ci/run installs it)")
    port = _free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(timeout=10)


def _studio_on(studio, redis_url, monkeypatch, **env):
    """The test's studio with its queue on Redis (and any other settings), as workers will see it."""
    from mumic_core.config import load_settings
    from mumic_core.store.studio import Studio

    monkeypatch.setenv("MUMIC_QUEUE_URL", redis_url)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Studio(load_settings(), studio.actor)


def test_two_workers_on_redis_share_the_jobs_and_run_each_once(demo_studio, redis_url, monkeypatch):
    from mumic_core.pipeline.queue import queue_for
    from mumic_core.store.jobs import create_job

    studio = _studio_on(demo_studio, redis_url, monkeypatch)
    workers = [start_worker(studio.settings.home, MUMIC_QUEUE_URL=redis_url) for _ in range(2)]
    try:
        wait_for(lambda: len(live_workers(studio)) == 2, timeout=60)
        job_ids = [create_job(studio, "score") for _ in range(10)]
        queue = queue_for(studio.settings.queue)
        # Every message delivered twice (a job must still run once), pushed in one LPUSH while both
        # workers wait in BRPOP, so Redis hands each of them one: on a fast machine the first worker
        # could otherwise run them all before the second one polls again.
        messages = [queue.huey.serialize_task(queue.run_job.s(job_id)) for job_id in job_ids * 2]
        redis = queue.huey.storage.conn
        wait_for(lambda: sum("b" in client["flags"] for client in redis.client_list()) == 2, timeout=30)
        redis.lpush(queue.huey.storage.queue_key, *messages)
        wait_for(lambda: all(get_job(studio, j).status in ("succeeded", "failed") for j in job_ids), timeout=240)
        jobs = [get_job(studio, j) for j in job_ids]
        assert [j.status for j in jobs] == ["succeeded"] * 10, [j.error for j in jobs]
        with studio.read() as s:
            starts = s.execute(
                select(JobLog.job_id, func.count())
                .where(JobLog.job_id.in_(job_ids), JobLog.message.like("started by process%"))
                .group_by(JobLog.job_id)
            ).all()
        assert dict(starts) == {j: 1 for j in job_ids}  # each job ran exactly once
        pids = {w.pid for w in live_workers(studio)}
        assert {j.worker_pid for j in jobs} == pids and len(pids) == 2  # and both workers took some
    finally:
        logs = [stop(w) for w in workers]
    assert not any("Traceback" in log for log in logs), logs


def test_scoring_is_split_into_batches_that_both_workers_encode(studio, redis_url, monkeypatch):
    from mumic_core.pipeline.queue import enqueue
    from mumic_core.services.demo import seed_demo

    studio = _studio_on(studio, redis_url, monkeypatch, MUMIC_EMBEDDING_CHUNK="16")
    version = ensure_base_version(studio)
    seed_demo(studio, n_images=240, seed=5)
    env = {"MUMIC_QUEUE_URL": redis_url, "MUMIC_EMBEDDING_CHUNK": "16"}
    workers = [start_worker(studio.settings.home, **env) for _ in range(2)]
    try:
        wait_for(lambda: len(live_workers(studio)) == 2, timeout=60)
        job_id = enqueue(studio, "score")
        wait_for(lambda: get_job(studio, job_id).status in ("succeeded", "failed"), timeout=300)
        job = get_job(studio, job_id)
        assert job.status == "succeeded", job.error
        with studio.read() as s:
            batches = s.execute(select(EncodeBatch.holder, EncodeBatch.status, EncodeBatch.image_ids)).all()
        n_predictions = len(stored_scores(studio))
        assert {b.status for b in batches} == {"stored"} and len(batches) == 15
        assert sorted(i for b in batches for i in b.image_ids) == all_image_ids(studio).tolist()
        assert len({b.holder for b in batches}) == 2, batches  # both workers encoded batches
        assert n_predictions == 240 * len(ensure_classes(studio))
    finally:
        logs = [stop(w) for w in workers]
    assert not any("Traceback" in log for log in logs), logs
    # the embeddings the helper handed back equal the ones this process computes itself
    scorer = load_scorer(studio, version)
    cache = EmbeddingCache(studio.settings.embedding_dir, scorer.encoder.spec.key)
    ids, emb = cache.load()
    from mumic_core.encoders.encoding import encode_images
    from mumic_core.store.collection import image_items

    paths = dict(image_items(studio, ids[:40].tolist()))  # in id order; the cache is in the order batches came back
    again = encode_images(scorer.encoder, [paths[i] for i in ids[:40].tolist()])
    np.testing.assert_allclose(np.asarray(emb[:40]), again, atol=1e-5)


def ensure_classes(studio):
    from mumic_core.store.classes import active_classes

    return active_classes(studio)


def test_batches_of_a_dead_worker_and_finished_batches_are_taken_up(studio, monkeypatch):
    """Resume: a batch held by a worker that stopped beating is claimed again; a batch a helper
    finished before the job died is stored, not encoded again."""
    from mumic_core.services.demo import seed_demo

    monkeypatch.setenv("MUMIC_EMBEDDING_CHUNK", "16")
    monkeypatch.setenv("MUMIC_BATCH_STALE_SECONDS", "30")
    from mumic_core.config import load_settings
    from mumic_core.store.studio import Studio

    studio = Studio(load_settings(), studio.actor)
    version = ensure_base_version(studio)
    seed_demo(studio, n_images=64, seed=2)
    scorer = load_scorer(studio, version)
    key = scorer.encoder.spec.key
    ids = all_image_ids(studio).tolist()
    assert plan_batches(studio, version.id, key, ids, 16) == 4
    marker = np.full((16, scorer.encoder.model_cfg["embed_dim"]), 0.25, dtype=np.float32)
    buf = io.BytesIO()
    np.save(buf, marker)
    with studio.write() as s:
        rows = list(s.scalars(select(EncodeBatch).order_by(EncodeBatch.id)))
        rows[0].status, rows[0].holder, rows[0].heartbeat_at = "running", "elsewhere:1", utcnow() - timedelta(minutes=5)
        rows[1].status, rows[1].holder, rows[1].embeddings = "done", "elsewhere:2", buf.getvalue()
        rows[2].status, rows[2].holder, rows[2].heartbeat_at = "running", "alive:3", utcnow() + timedelta(seconds=2)
        rows[2].heartbeat_at = utcnow()
    # the batch of the live holder is finished by it (here: this test, after a moment)
    import threading

    from mumic_core.pipeline.encode_batches import work_on_batches

    def live_holder() -> None:
        time.sleep(1.0)
        with studio.write() as s:
            s.get(EncodeBatch, rows[2].id).heartbeat_at = utcnow() - timedelta(minutes=5)
        work_on_batches(studio, key)

    helper = threading.Thread(target=live_holder)
    helper.start()
    score_collection(studio, version)
    helper.join()
    with studio.read() as s:
        after = {b.id: (b.status, b.attempts) for b in s.scalars(select(EncodeBatch))}
    assert all(status == "stored" for status, _ in after.values()), after
    assert after[rows[0].id][1] == 1  # the dead worker's batch: claimed again, once
    assert after[rows[1].id][1] == 0  # the finished batch: stored as it was, not encoded again
    cache_ids, emb = EmbeddingCache(studio.settings.embedding_dir, key).load()
    assert sorted(cache_ids.tolist()) == ids
    finished = np.isin(cache_ids, ids[16:32])
    np.testing.assert_allclose(np.asarray(emb)[finished], 0.25)  # the helper's result, as handed back
    assert len(stored_scores(studio)) == 64 * len(ensure_classes(studio))


def test_a_job_on_another_machine_fails_only_once_its_worker_stops_beating(studio):
    from db.models import Job, Worker
    from mumic_core.store.jobs import create_job, fail_orphaned_jobs

    live_id, dead_id = create_job(studio, "score"), create_job(studio, "score")
    with studio.write() as s:
        for job_id, host in ((live_id, "gpu-box"), (dead_id, "cpu-box")):
            job = s.get(Job, job_id)
            job.status, job.worker_host, job.worker_pid = "running", host, 4242
        s.add(
            Worker(
                name="gpu-box:4242",
                host="gpu-box",
                pid=4242,
                device="cuda: H100",
                queue="redis",
                started_at=utcnow(),
                heartbeat_at=utcnow(),
            )
        )
        s.add(
            Worker(
                name="cpu-box:4242",
                host="cpu-box",
                pid=4242,
                device="cpu",
                queue="redis",
                started_at=utcnow(),
                heartbeat_at=utcnow() - timedelta(minutes=5),
            )
        )
    assert [j.id for j in fail_orphaned_jobs(studio)] == [dead_id]
    assert get_job(studio, live_id).status == "running"
    assert "ran on cpu-box" in get_job(studio, dead_id).error
    assert fail_orphaned_jobs(studio) == []  # failed once, not again


def test_unreachable_database_or_queue_is_a_clear_error_and_loses_nothing(studio, monkeypatch):
    from mumic_core.config import load_settings
    from mumic_core.errors import ServiceUnavailable
    from mumic_core.pipeline.queue import enqueue
    from mumic_core.store.studio import Studio, open_studio

    monkeypatch.setenv("MUMIC_DATABASE_URL", f"postgresql+psycopg://mumic:secret@127.0.0.1:{_free_port()}/mumic")
    with pytest.raises(ServiceUnavailable, match=r"cannot reach the database .*mumic:\*\*\*@") as err:
        open_studio(load_settings())
    assert "secret" not in str(err.value)
    monkeypatch.setenv("MUMIC_DATABASE_URL", studio.url)
    monkeypatch.setenv("MUMIC_QUEUE_URL", f"redis://:secret@127.0.0.1:{_free_port()}/0")
    down = Studio(load_settings(), studio.actor)
    with pytest.raises(ServiceUnavailable, match="job queue .* cannot be reached") as err:
        enqueue(down, "score")
    assert "secret" not in str(err.value)
    with down.read() as s:  # the job is recorded as failed with the reason, not left queued forever
        job = s.scalar(select(Job))
    assert job.status == "failed" and "cannot be reached" in job.error


def test_batches_of_workers_that_are_gone_are_put_back_at_once(studio):
    from db.models import Worker
    from mumic_core.pipeline.encode_batches import release_dead_claims

    version = ensure_base_version(studio)
    dead = subprocess.Popen(["true"])
    dead.wait()
    here = socket.gethostname()
    holders = {
        f"{here}:{dead.pid}": "pending",  # this machine, process gone
        f"{here}:{os.getppid()}": "running",  # this machine, process alive
        "gpu-box:7": "running",  # another machine, heartbeat fresh
        "cpu-box:7": "pending",
    }  # another machine, heartbeat stopped
    with studio.write() as s:
        s.add(Worker(name="gpu-box:7", host="gpu-box", pid=7, started_at=utcnow(), heartbeat_at=utcnow()))
        s.add(
            Worker(
                name="cpu-box:7",
                host="cpu-box",
                pid=7,
                started_at=utcnow(),
                heartbeat_at=utcnow() - timedelta(minutes=3),
            )
        )
        for k, holder in enumerate(holders):
            s.add(
                EncodeBatch(
                    encoder_key="k",
                    version_id=version.id,
                    image_ids=[k],
                    status="running",
                    holder=holder,
                    heartbeat_at=utcnow(),
                )
            )
    assert release_dead_claims(studio) == 2
    with studio.read() as s:
        after = {b.image_ids[0]: b.status for b in s.scalars(select(EncodeBatch))}
    assert after == {k: status for k, status in enumerate(holders.values())}


def test_concurrent_first_saves_of_a_setting_all_succeed(studio):
    """On PostgreSQL two sessions may both find no row and insert; the later save becomes an update."""
    import threading

    from mumic_core.store.settings import get_setting, set_setting

    for key, values in (
        ("auto_retrain_labels", list(range(10, 18))),
        ("promotion_policy", ["always", "never"] * 4),
        ("auto_retrain_mode", ["head", "full"] * 4),
    ):
        barrier, errors = threading.Barrier(len(values)), []

        def save(value, key=key, barrier=barrier, errors=errors) -> None:
            barrier.wait()
            try:
                set_setting(studio, key, value)
            except Exception as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(exc)

        threads = [threading.Thread(target=save, args=(v,)) for v in values]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [] and get_setting(studio, key) in values
