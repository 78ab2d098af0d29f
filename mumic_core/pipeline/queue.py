"""The one place that hands work to the workers: huey on SQLite (``$MUMIC_HOME/queue.db``) or on
Redis (``MUMIC_QUEUE_URL``). Importing this module does nothing; the huey instance of a queue is
made when first needed.

Huey carries only job ids and encoder keys; the job itself lives in the database
(``store.jobs``). The task bodies run in worker processes, where ``pipeline.worker`` connects
them to the code that does the work (:func:`handle`); here they only route by name.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from huey import Huey, RedisHuey, SqliteHuey, crontab
from huey.api import TaskWrapper

from mumic_core.config import without_password
from mumic_core.errors import ServiceUnavailable
from mumic_core.store.auth import SYSTEM, requires
from mumic_core.store.jobs import create_job, fail_unqueued
from mumic_core.store.studio import Studio

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
_handlers: dict[str, Callable[..., None]] = {}


def handle(name: str, handler: Callable[..., None]) -> None:
    """Make ``handler`` run the task called ``name`` (run_job, encode_batches, or the periodic
    look_after_workers) in this process: the worker module does this for each at import."""
    _handlers[name] = handler


def _run(name: str, *args: object) -> None:
    if name not in _handlers:
        raise RuntimeError(f"no handler for the {name!r} task in this process (is it a worker?)")
    _handlers[name](*args)


def _run_job(job_id: int) -> None:
    _run("run_job", job_id)


def _encode_batches(encoder_key: str) -> None:
    _run("encode_batches", encoder_key)


def _look_after_workers() -> None:
    _run("look_after_workers")


@dataclass(frozen=True)
class Queue:
    """A huey instance and the product's tasks on it (calling a task enqueues it)."""

    huey: Huey
    run_job: TaskWrapper
    encode_batches: TaskWrapper


@functools.cache
def queue_for(url: str) -> Queue:
    """The queue of a Redis URL or a SQLite queue file."""
    huey = RedisHuey("mumic", url=url) if url.startswith(REDIS_SCHEMES) else SqliteHuey("mumic", filename=url)
    huey.periodic_task(crontab(minute="*"), name="look_after_workers")(_look_after_workers)
    return Queue(huey, huey.task(name="run_job")(_run_job), huey.task(name="encode_batches")(_encode_batches))


@requires("review")
def enqueue(studio: Studio, kind: str, params: dict | None = None) -> int:
    """Record a job and hand it to the workers of the studio's queue; returns the job id. The
    job's own permission is checked when it is recorded (``store.jobs.create_job``)."""
    job_id = create_job(studio, kind, params)
    try:
        queue_for(studio.settings.queue).run_job(job_id)
    except Exception as exc:  # noqa: BLE001 - the queue server is down or unreachable
        reason = (
            f"the job queue {without_password(studio.settings.queue)} cannot be reached ({type(exc).__name__}: {exc})"
        )
        fail_unqueued(studio.as_actor(SYSTEM), job_id, reason)  # the caller was allowed to queue it
        raise ServiceUnavailable(f"{reason}; job {job_id} was not queued") from None
    return job_id


def ask_for_help(studio: Studio, encoder_key: str, helpers: int) -> None:
    """Ask up to ``helpers`` other workers to take encode batches of ``encoder_key``."""
    task = queue_for(studio.settings.queue).encode_batches
    for _ in range(helpers):
        task(encoder_key)
