"""The background worker: ``python -m huey.bin.huey_consumer mumic_core.pipeline.worker.huey``.

Huey delivers job ids; the job itself lives in the database. The queue is SQLite under
MUMIC_HOME by default, or Redis with ``MUMIC_QUEUE_URL=redis://...``, so that several worker
processes, on this machine or others, share the jobs. A job runs once whichever worker gets
it (its claim is a row lock in the database), and a scoring job hands out batches of images to
every live worker (``encode_batches.py``).
"""

from __future__ import annotations

import functools
import logging

from huey import RedisHuey, SqliteHuey, crontab

from mumic_core.store.auth import SYSTEM, requires
from mumic_core.config import load_settings, without_password
from mumic_core.store.jobs import create_job, run_job
from mumic_core.store.studio import Studio, open_studio

log = logging.getLogger("mumic.worker")
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def _run_job(job_id: int) -> None:
    run_job(Studio(_settings, SYSTEM), job_id)  # the job was authorised when it was queued


def _encode_batches(encoder_key: str) -> None:
    from mumic_core.pipeline.encode_batches import work_on_batches

    work_on_batches(Studio(_settings, SYSTEM), encoder_key)


def _look_after_workers() -> None:
    """At start and every minute, in every worker: put back the encode batches of workers that
    stopped (on any machine), fail their jobs and queue again the promotions they left undone."""
    from mumic_core.pipeline.encode_batches import release_dead_claims
    from mumic_core.pipeline.lifecycle import resume_interrupted
    from mumic_core.store.workers import forget_gone

    studio = Studio(_settings, SYSTEM)
    release_dead_claims(studio)
    resumed = resume_interrupted(studio)
    if resumed:
        log.warning("queued job(s) %s to finish promotions a stopped worker left undone", resumed)
    forget_gone(studio)


@functools.cache
def queue_for(queue: str):
    """(huey instance, run-job task, encode-batches task) for a Redis URL or a SQLite queue file."""
    if queue.startswith(REDIS_SCHEMES):
        instance = RedisHuey("mumic", url=queue)
    else:
        instance = SqliteHuey("mumic", filename=queue)
    instance.periodic_task(crontab(minute="*"), name="look_after_workers")(_look_after_workers)
    return (instance, instance.task(name="run_job")(_run_job),
            instance.task(name="encode_batches")(_encode_batches))


_settings = load_settings()
_settings.ensure_dirs()
huey, run_job_task, encode_batches_task = queue_for(_settings.queue)
_heartbeat = None


@huey.on_startup()
def _startup() -> None:
    global _heartbeat
    from mumic_core.store.workers import register

    studio = open_studio(_settings, actor=SYSTEM)
    _heartbeat = register(studio, "redis" if _settings.queue.startswith(REDIS_SCHEMES) else "sqlite")
    _look_after_workers()


@huey.on_shutdown()
def _shutdown() -> None:
    from mumic_core.store.workers import unregister

    if _heartbeat is not None:
        _heartbeat.set()
        unregister(Studio(_settings, SYSTEM))


@requires("review")
def enqueue(studio: Studio, kind: str, params: dict | None = None) -> int:
    """Record a job and hand it to the workers of the studio's queue; returns the job id."""
    job_id = create_job(studio, kind, params)
    try:
        queue_for(studio.settings.queue)[1](job_id)
    except Exception as exc:  # noqa: BLE001 - the queue server is down or unreachable
        from mumic_core.errors import ServiceUnavailable
        from mumic_core.store.jobs import fail_unqueued

        reason = f"the job queue {without_password(studio.settings.queue)} cannot be reached ({type(exc).__name__}: {exc})"
        fail_unqueued(studio.as_actor(SYSTEM), job_id, reason)  # the caller was allowed to queue it
        raise ServiceUnavailable(f"{reason}; job {job_id} was not queued") from None
    return job_id


def ask_for_help(studio: Studio, encoder_key: str, helpers: int) -> None:
    """Ask up to ``helpers`` other workers to take encode batches of ``encoder_key``."""
    task = queue_for(studio.settings.queue)[2]
    for _ in range(helpers):
        task(encoder_key)
