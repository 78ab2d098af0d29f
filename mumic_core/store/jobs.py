"""Jobs: long work recorded in the database and run by the worker (or inline by the CLI).

The database row is the truth about a job (huey results vanish once read): any process can
see its status, phase, live numbers and log, and ask it to stop. A job of an exclusive kind
(training) holds a unique key while queued or running, so two never run at once on one store.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from db.models import Job, JobLog, utcnow
from mumic_core.errors import MumicError
from mumic_core.store.auth import audit, require, requires
from mumic_core.store.studio import Studio
from mumic_core.store.workers import is_alive

JOB_KINDS = ("score", "train", "label_errors", "near_duplicates")
# kind -> key that only one queued/running job may hold
EXCLUSIVE_KINDS = {"train": "train", "label_errors": "label_errors", "near_duplicates": "near_duplicates"}
JOB_PERMISSIONS = {"score": "train", "train": "train", "label_errors": "review", "near_duplicates": "review"}
ACTIVE_STATES = ("queued", "running")
running_here: set[int] = set()  # jobs this process is running now (pipeline.runner keeps it)
Report = Callable[[str, float, dict], None]


@dataclass(frozen=True)
class JobInfo:
    """A job as pages and callers see it (not a database row)."""

    id: int
    kind: str
    status: str  # queued | running | succeeded | failed | cancelled
    phase: str
    progress: float
    params: dict
    result: dict
    error: str | None
    details: dict
    cancel_requested: bool
    exclusive_key: str | None  # held while a job that must not run twice at once is queued or running
    worker_pid: int | None
    worker_host: str | None
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, row: Job) -> JobInfo:
        return cls(
            row.id,
            row.kind,
            row.status,
            row.phase or "",
            float(row.progress or 0.0),
            dict(row.params or {}),
            dict(row.result or {}),
            row.error,
            dict(row.details or {}),
            bool(row.cancel_requested),
            row.exclusive_key,
            row.worker_pid,
            row.worker_host,
            row.created_at,
            row.started_at,
            row.finished_at,
        )


@dataclass(frozen=True)
class LogLine:
    at: datetime
    message: str


class JobConflict(MumicError):
    """A job of this kind is already queued or running."""


class JobCancelled(MumicError):
    """Someone asked the job to stop; it stopped at a safe point."""


@requires("review")
def create_job(studio: Studio, kind: str, params: dict | None = None) -> int:
    """Record a queued job; raises JobConflict when an exclusive job of this kind is active.
    Each kind needs its own permission (JOB_PERMISSIONS), at least review."""
    if kind not in JOB_KINDS:
        raise ValueError(f"unknown job kind {kind!r}")
    require(studio, JOB_PERMISSIONS[kind])
    key = EXCLUSIVE_KINDS.get(kind)
    try:
        with studio.write() as s:
            job = Job(kind=kind, params=params or {}, status="queued", exclusive_key=key)
            s.add(job)
            audit(s, studio, "queue_job", kind=kind, params=params or {})
            s.flush()
            s.add(
                JobLog(job_id=job.id, message=f"queued {kind} job" + (f" with {_fmt_params(params)}" if params else ""))
            )
            job_id = job.id
    except IntegrityError:
        other = active_job(studio, kind)
        since = f", {other.status} since {_hhmm(other.started_at or other.created_at)}" if other else ""
        raise JobConflict(
            f"a {kind} job is already queued or running (job {other.id if other else '?'}{since}); "
            "wait for it to finish or cancel it first"
        ) from None
    return job_id


def active_job(studio: Studio, kind: str) -> JobInfo | None:
    """The queued or running job of ``kind``, oldest first."""
    with studio.read() as s:
        row = s.scalar(select(Job).where(Job.kind == kind, Job.status.in_(ACTIVE_STATES)).order_by(Job.id))
    return JobInfo.of(row) if row is not None else None


def get_job(studio: Studio, job_id: int) -> JobInfo:
    """One job; KeyError when there is none with that id."""
    with studio.read() as s:
        job = s.get(Job, job_id)
    if job is None:
        raise KeyError(f"no job {job_id}")
    return JobInfo.of(job)


def list_jobs(studio: Studio, limit: int = 20, kind: str | None = None) -> list[JobInfo]:
    """The newest jobs (of one kind), newest first."""
    with studio.read() as s:
        q = select(Job).order_by(Job.id.desc()).limit(limit)
        return [JobInfo.of(row) for row in s.scalars(q.where(Job.kind == kind) if kind else q)]


def count_jobs(studio: Studio, kind: str | None = None) -> int:
    """How many jobs there are (of one kind)."""
    with studio.read() as s:
        q = select(func.count()).select_from(Job)
        return int(s.scalar(q.where(Job.kind == kind) if kind else q) or 0)


@requires("train")
def log(studio: Studio, job_id: int, message: str) -> None:
    """Append a line to the job's log."""
    with studio.write() as s:
        s.add(JobLog(job_id=job_id, message=message))


def job_log(studio: Studio, job_id: int, limit: int = 100) -> list[LogLine]:
    """The job's last ``limit`` log lines, oldest first."""
    with studio.read() as s:
        rows = list(s.scalars(select(JobLog).where(JobLog.job_id == job_id).order_by(JobLog.id.desc()).limit(limit)))
    return [LogLine(r.at, r.message) for r in rows[::-1]]


@requires("train")
def request_cancel(studio: Studio, job_id: int) -> str:
    """Ask a job to stop. A queued job is cancelled at once; a running one stops at its next
    progress report (within seconds) and keeps nothing half-made. Returns the new status."""
    with studio.write() as s:
        job = s.get(Job, job_id)
        if job is None:
            raise KeyError(f"no job {job_id}")
        if job.status == "queued":
            job.status, job.finished_at, job.exclusive_key = "cancelled", utcnow(), None
        elif job.status == "running":
            job.cancel_requested = True
        status = job.status
    log(studio, job_id, "cancelled before it started" if status == "cancelled" else "cancel requested")
    return status


@requires("train")
def fail_unqueued(studio: Studio, job_id: int, reason: str) -> None:
    """A job that could not be handed to the queue: failed at once, with the reason."""
    finish(studio, job_id, "failed", error=reason)
    log(studio, job_id, f"failed: {reason}")


def time_left(job: JobInfo, now: datetime | None = None) -> float | None:
    """Seconds left in the job's current phase, from that phase's rate so far (None if unknown)."""
    started = job.details.get("phase_started") if job.details else None
    frac = job.progress or 0.0
    if job.status != "running" or not started or frac <= 0.0:
        return None
    elapsed = ((now or datetime.now(UTC)) - datetime.fromisoformat(started)).total_seconds()
    return max(0.0, elapsed * (1 - frac) / frac) if elapsed >= 2.0 else None


@requires("train")
def progress_reporter(studio: Studio, job_id: int, min_interval: float = 1.0) -> Report:
    """A callback that writes phase, progress and live numbers to the job row (at most once per
    interval), logs phase changes and epochs, and raises JobCancelled when a stop was asked."""
    state = {"last": 0.0, "phase": None, "phase_started": None, "epoch": None}

    def report(phase: str, fraction: float, info: dict) -> None:
        now = time.monotonic()
        new_phase = phase != state["phase"]
        new_epoch = info.get("epoch") not in (None, state["epoch"])
        if not (new_phase or new_epoch) and now - state["last"] < min_interval and fraction < 1.0:
            return
        if new_phase:
            state["phase"], state["phase_started"] = phase, utcnow().isoformat()
            log(studio, job_id, phase)
        if new_epoch and state["epoch"] is not None and "loss" in info:
            log(studio, job_id, f"epoch {state['epoch']} done, last loss {info['loss']:.4f}")
        state["epoch"] = info.get("epoch", state["epoch"])
        state["last"] = now
        details = {k: (round(v, 5) if isinstance(v, float) else v) for k, v in info.items()}
        details["phase_started"] = state["phase_started"]
        with studio.write() as s:
            s.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(phase=phase[:100], progress=float(fraction), details=details, heartbeat_at=utcnow())
            )
            cancel = s.scalar(select(Job.cancel_requested).where(Job.id == job_id))
        if cancel:
            raise JobCancelled(f"cancelled during {phase}")

    return report


@requires("train")
def claim(studio: Studio, job_id: int) -> bool:
    """Atomically move a queued job to running; False if someone else has it or it was cancelled.
    On PostgreSQL the row is taken with FOR UPDATE SKIP LOCKED: a worker racing for it moves on."""
    with studio.write() as s:
        job = s.scalar(select(Job).where(Job.id == job_id, Job.status == "queued").with_for_update(skip_locked=True))
        if job is None:
            return False
        job.status, job.started_at, job.heartbeat_at = "running", utcnow(), utcnow()
        job.worker_pid, job.worker_host = os.getpid(), socket.gethostname()
        return True


@requires("train")
def set_result(studio: Studio, job_id: int, **values) -> None:
    """Merge values into the job's result while it runs (e.g. the candidate it made)."""
    with studio.write() as s:
        job = s.get(Job, job_id)
        job.result = {**(job.result or {}), **values}


@requires("train")
def finish(studio: Studio, job_id: int, status: str, result: dict | None = None, error: str | None = None) -> None:
    with studio.write() as s:
        job = s.get(Job, job_id)
        job.status, job.error, job.finished_at, job.exclusive_key = status, error, utcnow(), None
        job.result = {**(job.result or {}), **(result or {})}
        if status == "succeeded":
            job.progress = 1.0


@requires("train")
def fail_orphaned_jobs(studio: Studio) -> list[JobInfo]:
    """Mark running jobs whose worker process is gone as failed (e.g. after kill -9); returns them.
    A worker on this machine is looked up by pid; one on another machine by its heartbeat."""
    with studio.read() as s:
        running = list(s.scalars(select(Job).where(Job.status == "running")))
    gone = [j.id for j in running if j.id not in running_here and not is_alive(studio, j.worker_host, j.worker_pid)]
    failed = []
    with studio.write() as s:  # another worker checking at the same moment skips what this one takes
        for job in s.scalars(
            select(Job).where(Job.id.in_(gone), Job.status == "running").with_for_update(skip_locked=True)
        ):
            job.status, job.finished_at, job.exclusive_key = "failed", utcnow(), None
            when = f"during this job's '{job.phase}' phase" if job.phase else "as this job started"
            job.error = (
                f"the worker (pid {job.worker_pid}) stopped {when}; nothing it was making was "
                f"activated (it ran on {job.worker_host or 'an unknown host'})"
            )
            failed.append(JobInfo.of(job))
    for job in failed:
        log(studio, job.id, job.error)
    return failed


def _hhmm(when: datetime | None) -> str:
    return when.strftime("%H:%M") if when else "?"


def _fmt_params(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items() if v not in (None, False, ""))
