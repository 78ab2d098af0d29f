"""Running a recorded job in this process: claim it, run the code of its kind with live progress,
record the outcome. The worker runs the jobs huey hands it; the CLI runs its own jobs here too."""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable

from mumic_core.errors import one_line
from mumic_core.pipeline.label_errors import run_label_errors_job
from mumic_core.pipeline.lifecycle import rescore, retrain
from mumic_core.pipeline.search import run_near_duplicates_job
from mumic_core.store.auth import requires
from mumic_core.store.jobs import (
    JobCancelled,
    JobInfo,
    Report,
    claim,
    finish,
    get_job,
    log,
    progress_reporter,
    running_here,
    set_result,
)
from mumic_core.store.studio import Studio

Note = Callable[[str], None]


@requires("train")
def run_job(studio: Studio, job_id: int, extra_progress: Report | None = None) -> JobInfo:
    """Execute a queued job in this process and record its outcome."""
    if not claim(studio, job_id):
        return get_job(studio, job_id)
    running_here.add(job_id)
    try:
        return _run_claimed(studio, job_id, extra_progress)
    finally:
        running_here.discard(job_id)


def _run_claimed(studio: Studio, job_id: int, extra_progress: Report | None) -> JobInfo:
    job = get_job(studio, job_id)
    db_report = progress_reporter(studio, job_id)
    log(studio, job_id, f"started by process {os.getpid()}")

    def report(phase: str, fraction: float, info: dict) -> None:
        db_report(phase, fraction, info)
        if extra_progress:
            extra_progress(phase, fraction, info)

    try:
        result = _dispatch(studio, job_id, job.kind, job.params, report)
    except JobCancelled as exc:
        log(studio, job_id, str(exc))
        finish(studio, job_id, "cancelled", error=str(exc))
        return get_job(studio, job_id)
    except Exception as exc:  # noqa: BLE001 - every failure is recorded on the job
        # Pages show the first line and the log: one line without server paths; the rest is for the CLI.
        log(studio, job_id, f"failed: {one_line(exc)}")
        finish(studio, job_id, "failed", error=f"{one_line(exc)}\n{traceback.format_exc(limit=5)}")
        raise
    log(studio, job_id, "finished")
    finish(studio, job_id, "succeeded", result=result)
    return get_job(studio, job_id)


def _dispatch(studio: Studio, job_id: int, kind: str, params: dict, report: Report) -> dict:
    """The code of each kind of job."""
    note: Note = lambda msg: log(studio, job_id, msg)  # noqa: E731
    if kind == "score":
        return rescore(studio, params, report, note=note)
    if kind == "train":
        return retrain(studio, params, report, note=note, remember=lambda **kw: set_result(studio, job_id, **kw))
    if kind == "label_errors":
        return run_label_errors_job(studio, params, report)
    if kind == "near_duplicates":
        return run_near_duplicates_job(studio, params, report)
    raise ValueError(f"unknown job kind {kind!r}")
