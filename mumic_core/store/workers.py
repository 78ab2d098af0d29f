"""Worker processes, on this machine or others: registered in the database with a heartbeat.

Pages tell from it whether any worker runs; jobs and encode batches tell from it whether the
process that holds them is still alive when it ran on another machine.
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass
from datetime import timedelta

import psutil
from sqlalchemy import delete, select

from db.models import Worker, utcnow
from mumic_core.store.auth import requires
from mumic_core.store.studio import Studio

HEARTBEAT_SECONDS = 15.0
ALIVE_SECONDS = 60.0  # a worker whose heartbeat is older than this is taken for gone


def this_process() -> str:
    """The name of this process among workers: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Heartbeat:
    """A registered worker's heartbeat thread."""

    _stopped: threading.Event
    _thread: threading.Thread

    def stop(self, timeout: float = 30.0) -> None:
        """End the heartbeat, waiting for a beat in progress: one that had already found the row
        gone would otherwise write it back after ``unregister`` removed it."""
        self._stopped.set()
        self._thread.join(timeout)


@requires("train")
def register(studio: Studio, queue: str, device: str = "cpu") -> Heartbeat:
    """Record this process as a worker (computing on ``device``, in words) and keep its heartbeat
    until ``Heartbeat.stop``."""
    name, now = this_process(), utcnow()
    with studio.write() as s:
        s.merge(
            Worker(
                name=name,
                host=socket.gethostname(),
                pid=os.getpid(),
                device=device,
                queue=queue,
                started_at=now,
                heartbeat_at=now,
            )
        )
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            try:
                with studio.write() as s:
                    worker = s.get(Worker, name)
                    if worker is None:  # removed by someone who thought it dead: come back
                        s.add(
                            Worker(
                                name=name,
                                host=socket.gethostname(),
                                pid=os.getpid(),
                                device="?",
                                queue=queue,
                                started_at=utcnow(),
                                heartbeat_at=utcnow(),
                            )
                        )
                    else:
                        worker.heartbeat_at = utcnow()
            except Exception:  # noqa: BLE001 - a missed beat is retried; the worker must not die of it
                continue

    thread = threading.Thread(target=beat, name="mumic-heartbeat", daemon=True)
    thread.start()
    return Heartbeat(stop, thread)


@requires("train")
def unregister(studio: Studio) -> None:
    """Remove this process from the workers (at a clean shutdown)."""
    with studio.write() as s:
        s.execute(delete(Worker).where(Worker.name == this_process()))


def live_workers(studio: Studio) -> list[Worker]:
    """Workers whose heartbeat is recent, on any machine, oldest first."""
    since = utcnow() - timedelta(seconds=ALIVE_SECONDS)
    with studio.read() as s:
        return list(s.scalars(select(Worker).where(Worker.heartbeat_at >= since).order_by(Worker.started_at)))


def is_alive(studio: Studio, host: str | None, pid: int | None) -> bool:
    """Whether the process host:pid runs: asked of the OS on this machine, of the heartbeat elsewhere."""
    if pid is None:
        return False
    if host in (None, socket.gethostname()):
        return psutil.pid_exists(pid) and pid != os.getpid()
    return any(w.name == f"{host}:{pid}" for w in live_workers(studio))


@requires("train")
def forget_gone(studio: Studio, after: timedelta = timedelta(days=1)) -> int:
    """Remove workers not heard from for ``after`` (killed ones never unregister); returns how many."""
    with studio.write() as s:
        return s.execute(delete(Worker).where(Worker.heartbeat_at < utcnow() - after)).rowcount
