"""The worker is a real huey consumer process; the job's truth is in the database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import make_env, stored_scores

from db.models import Job, ScoreBlock
from mumic_core.pipeline.lifecycle import ensure_base_version
from mumic_core.store.jobs import create_job, get_job
from mumic_core.store.workers import live_workers

ROOT = Path(__file__).resolve().parents[1]


def start_worker(home: Path, **env: str) -> subprocess.Popen:
    """The worker as the Procfile starts it, in its own process group (so kill -9 takes it all)."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "huey.bin.huey_consumer",
            "mumic_core.pipeline.worker.huey",
            "--workers",
            "1",
            "--max-delay",
            "0.5",
        ],
        cwd=ROOT,
        env=make_env(home, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen) -> str:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    return out


def wait_for(predicate, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError("timed out")


def test_queued_job_runs_in_the_worker_process(demo_studio):
    studio = demo_studio
    version = ensure_base_version(studio)
    with studio.write() as s:
        s.query(ScoreBlock).delete()
    # enqueue the way the app does: a job row plus a huey message, in another process's queue
    from mumic_core.pipeline.queue import enqueue

    proc = start_worker(studio.settings.home)
    try:
        job_id = enqueue(studio, "score")
        wait_for(lambda: get_job(studio, job_id).status in ("succeeded", "failed"))
        job = get_job(studio, job_id)
        assert job.status == "succeeded", job.error
        assert job.worker_pid not in (None, os.getpid())
        assert [w.pid for w in live_workers(studio)] == [job.worker_pid]
        assert job.result == {"version": version.name, "predictions": 60 * 20}
        assert len(stored_scores(studio)) == 60 * 20
    finally:
        log = stop(proc)
    assert "Traceback" not in log, log
    doubled = [line for line in log.splitlines() if line.startswith("INFO:huey")]  # a second, plain handler
    assert not doubled, doubled[:3]


def test_worker_start_marks_jobs_of_a_dead_worker_failed(studio):
    job_id = create_job(studio, "score")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with studio.write() as s:
        job = s.get(Job, job_id)
        job.status, job.worker_pid = "running", dead.pid
    proc = start_worker(studio.settings.home)
    try:
        wait_for(lambda: get_job(studio, job_id).status == "failed", timeout=60)
    finally:
        stop(proc)
    assert f"the worker (pid {dead.pid}) stopped as this job started" in get_job(studio, job_id).error


def test_a_worker_stopped_by_sigterm_leaves_the_live_workers_at_once(studio):
    """honcho stops the worker with SIGTERM, which ends huey's consumer without its shutdown hooks
    while the worker thread sleeps between polls of the queue; it must not stay listed as live
    (jobs would ask it for help) until its heartbeat ages out."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "huey.bin.huey_consumer", "mumic_core.pipeline.worker.huey", "--max-delay", "10"],
        cwd=ROOT,
        env=make_env(studio.settings.home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: proc.pid in {w.pid for w in live_workers(studio)})
        time.sleep(3)  # the worker thread backs off to sleeping seconds between polls
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    finally:
        proc.kill()
    assert live_workers(studio) == []


def test_a_worker_leaves_the_live_workers_when_atexit_overtakes_its_shutdown_hook(studio):
    """On SIGTERM the worker thread's shutdown hook and atexit both run ``_shutdown``. The first
    version let atexit return while the hook was still unregistering; the interpreter then killed
    the daemon worker thread mid-write and the stopped worker stayed listed (it happened in CI).
    Here the hook's unregistering is slowed, and atexit's call comes while it runs."""
    script = """
import threading, time
import mumic_core.pipeline.worker as worker
unregister = worker.unregister
worker.unregister = lambda studio: (time.sleep(0.5), unregister(studio))
worker._startup()
threading.Thread(target=worker._shutdown, daemon=True).start()  # the worker thread's hook
time.sleep(0.1)
worker._shutdown()  # atexit, while the hook still unregisters
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=make_env(studio.settings.home), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert live_workers(studio) == []
