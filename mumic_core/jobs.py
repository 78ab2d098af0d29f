"""Jobs: long work recorded in the database and run by the worker (or inline by the CLI).

The database row is the truth about a job (huey results vanish once read): any process can
see its status, phase and progress.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable

import psutil
from sqlalchemy import select, update

from db.models import Job, utcnow

from .studio import Studio

JOB_KINDS = ("score", "train")


def create_job(studio: Studio, kind: str, params: dict | None = None) -> int:
    if kind not in JOB_KINDS:
        raise ValueError(f"unknown job kind {kind!r}")
    with studio.write() as s:
        job = Job(kind=kind, params=params or {}, status="queued")
        s.add(job)
        s.flush()
        return job.id


def get_job(studio: Studio, job_id: int) -> Job:
    with studio.read() as s:
        job = s.get(Job, job_id)
    if job is None:
        raise KeyError(f"no job {job_id}")
    return job


def list_jobs(studio: Studio, limit: int = 20) -> list[Job]:
    with studio.read() as s:
        return list(s.scalars(select(Job).order_by(Job.id.desc()).limit(limit)))


def _claim(studio: Studio, job_id: int) -> bool:
    """Atomically move a queued job to running; False if someone else has it."""
    with studio.write() as s:
        res = s.execute(
            update(Job).where(Job.id == job_id, Job.status == "queued")
            .values(status="running", started_at=utcnow(), heartbeat_at=utcnow(), worker_pid=os.getpid())
        )
        return res.rowcount == 1


def _finish(studio: Studio, job_id: int, status: str, result: dict | None = None, error: str | None = None) -> None:
    with studio.write() as s:
        s.execute(update(Job).where(Job.id == job_id).values(
            status=status, result=result or {}, error=error, finished_at=utcnow(),
            progress=1.0 if status == "succeeded" else Job.progress))


def progress_reporter(studio: Studio, job_id: int, min_interval: float = 1.0) -> Callable[[str, float, dict], None]:
    """A callback that writes phase and progress to the job row, at most once per interval."""
    last = [0.0]

    def report(phase: str, fraction: float, info: dict) -> None:
        now = time.monotonic()
        if now - last[0] < min_interval and fraction < 1.0:
            return
        last[0] = now
        detail = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in info.items())
        with studio.write() as s:
            s.execute(update(Job).where(Job.id == job_id).values(
                phase=f"{phase}: {detail}" if detail else phase, progress=float(fraction), heartbeat_at=utcnow()))

    return report


def run_job(studio: Studio, job_id: int, extra_progress: Callable[[str, float, dict], None] | None = None) -> Job:
    """Execute a queued job in this process and record its outcome."""
    if not _claim(studio, job_id):
        return get_job(studio, job_id)
    job = get_job(studio, job_id)
    db_report = progress_reporter(studio, job_id)

    def report(phase: str, fraction: float, info: dict) -> None:
        db_report(phase, fraction, info)
        if extra_progress:
            extra_progress(phase, fraction, info)

    try:
        result = _dispatch(studio, job.kind, job.params, report)
    except Exception as exc:  # noqa: BLE001 - every failure is recorded on the job
        _finish(studio, job_id, "failed", error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}")
        raise
    _finish(studio, job_id, "succeeded", result=result)
    return get_job(studio, job_id)


def _dispatch(studio: Studio, kind: str, params: dict, report) -> dict:
    from .registry import active_version, ensure_base_version, get_version
    from .scoring import score_collection

    if kind == "score":
        version = get_version(studio, params["version"]) if params.get("version") else ensure_base_version(studio)
        report("scoring", 0.0, {})
        n = score_collection(studio, version)
        return {"version": version.name, "predictions": n}
    if kind == "train":
        from .training import TrainConfig, train

        parent = active_version(studio) or ensure_base_version(studio)
        result = train(studio, TrainConfig(**params), parent, progress=report)
        if result.activated:
            report("re-scoring", 1.0, {})
            score_collection(studio, result.version)
        return {"version": result.version.name, "activated": result.activated,
                "val": {k: result.metrics.get(k) for k in ("gap_at_10", "gap", "map")},
                "parent_val": {k: result.parent_metrics.get(k) for k in ("gap_at_10", "gap", "map")}}
    raise ValueError(f"unknown job kind {kind!r}")


def _pid_file(studio: Studio):
    return studio.settings.home / "worker.pid"


def record_worker_started(studio: Studio) -> None:
    """Called by the worker at start: lets pages tell whether a worker is running."""
    _pid_file(studio).write_text(str(os.getpid()))


def running_worker_pid(studio: Studio) -> int | None:
    """The pid of a live worker of this MUMIC_HOME, or None."""
    try:
        pid = int(_pid_file(studio).read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        alive = psutil.Process(pid).is_running() and "huey" in " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return None
    return pid if alive else None


def fail_orphaned_jobs(studio: Studio) -> int:
    """Mark running jobs whose worker process is gone as failed (e.g. after kill -9)."""
    n = 0
    with studio.write() as s:
        for job in s.scalars(select(Job).where(Job.status == "running")):
            if job.worker_pid is None or not psutil.pid_exists(job.worker_pid) or job.worker_pid == os.getpid():
                job.status, job.error, job.finished_at = "failed", "worker stopped while running this job", utcnow()
                n += 1
    return n
