"""The background worker: ``python -m huey.bin.huey_consumer mumic_core.pipeline.worker.huey``.

This module only wires huey: it builds the queue of this machine's settings and connects its
tasks to the code that does the work. The queue is SQLite under MUMIC_HOME by default, or Redis
with ``MUMIC_QUEUE_URL=redis://...``, so that several worker processes, on this machine or
others, share the jobs. A job runs once whichever worker gets it (its claim is a row lock in the
database), and a scoring job hands out batches of images to every live worker
(``encode_batches``).
"""

from __future__ import annotations

from mumic_core.encoders.allocator import keep_freed_memory_for_batches

# First, before the imports below start native threads (numpy's BLAS, torch's) that take arenas
# of their own, which huey's worker threads would then share (allocator.py).
keep_freed_memory_for_batches()

import atexit
import logging
import threading

from mumic_core.config import load_settings
from mumic_core.encoders.factory import device_name
from mumic_core.pipeline.encode_batches import release_dead_claims, work_on_batches
from mumic_core.pipeline.lifecycle import resume_interrupted
from mumic_core.pipeline.queue import REDIS_SCHEMES, handle, queue_for
from mumic_core.pipeline.runner import run_job
from mumic_core.store.auth import SYSTEM
from mumic_core.store.studio import Studio, open_studio
from mumic_core.store.workers import forget_gone, register, unregister

log = logging.getLogger("mumic.worker")
settings = load_settings()
settings.ensure_dirs()
huey = queue_for(settings.queue).huey
_heartbeat = None
_shutdown_lock = threading.Lock()


def _system() -> Studio:
    return Studio(settings, SYSTEM)  # jobs were authorised when they were queued


def look_after_workers() -> None:
    """At start and every minute, in every worker: put back the encode batches of workers that
    stopped (on any machine), fail their jobs and queue again the work they left undone."""
    studio = _system()
    release_dead_claims(studio)
    resumed = resume_interrupted(studio)
    if resumed:
        log.warning("queued job(s) %s to finish what a stopped worker left undone", resumed)
    forget_gone(studio)


handle("run_job", lambda job_id: run_job(_system(), job_id))
handle("encode_batches", lambda encoder_key: work_on_batches(_system(), encoder_key))
handle("look_after_workers", look_after_workers)


def _one_line_per_message() -> None:
    """Give the root logger the consumer's handler. Libraries that log through the root logger
    (open_clip's ``logging.info``) would otherwise install a plain handler on first use, and
    every line of the ``huey`` logger would be printed twice."""
    huey_log, root = logging.getLogger("huey"), logging.getLogger()
    if huey_log.handlers and not root.handlers:
        for handler in huey_log.handlers:
            root.addHandler(handler)
        huey_log.propagate = False


@huey.on_startup()
def _startup() -> None:
    global _heartbeat
    _one_line_per_message()
    atexit.register(_shutdown)  # SIGTERM (honcho's stop) ends the consumer without its shutdown hooks
    _heartbeat = register(
        open_studio(settings, actor=SYSTEM),
        "redis" if settings.queue.startswith(REDIS_SCHEMES) else "sqlite",
        device_name(),
    )
    look_after_workers()


@huey.on_shutdown()
def _shutdown() -> None:
    """Leave the live workers at once (not when the heartbeat ages out), so that no job waits for
    this one's help and the Home page does not list it. Both the worker thread's shutdown hook
    and atexit call it; the later one waits until the first has finished, as the interpreter
    kills the (daemon) worker thread once atexit returns, mid-write if still writing."""
    global _heartbeat
    with _shutdown_lock:
        if _heartbeat is not None:
            _heartbeat.stop()
            unregister(_system())
            _heartbeat = None
