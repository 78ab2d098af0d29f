"""What the Training page shows about model versions and jobs, as plain rows."""

from __future__ import annotations

from datetime import datetime, timezone

from db.models import Job, ModelVersion

from .jobs import time_left
from .registry import describe

METRICS = {"GAP@10": "gap_at_10", "GAP": "gap", "mAP": "map"}


def version_rows(versions: list[ModelVersion]) -> list[dict]:
    """One row per version: status, its validation metrics and those of its parent on the same images."""
    rows = []
    for v in versions:
        val, parent = v.metrics.get("val", {}), v.metrics.get("parent_val", {})
        row = {"version": v.name, "status": v.status, "kind": v.kind, "description": describe(v),
               "held-out images": val.get("n_images"), "parent": v.training_config.get("parent", ""),
               "created": v.created_at.strftime("%Y-%m-%d %H:%M")}
        row |= {label: val.get(key) for label, key in METRICS.items()}
        row |= {f"parent {label}": parent.get(key) for label, key in METRICS.items()}
        rows.append(row)
    return rows


def metric_bars(versions: list[ModelVersion]) -> list[dict]:
    """Long-format rows (version, metric, value) for a grouped bar chart of trained versions."""
    return [{"version": v.name + (" (active)" if v.status == "active" else ""), "metric": label,
             "value": v.metrics["val"][key]}
            for v in versions if v.metrics.get("val")
            for label, key in METRICS.items() if v.metrics["val"].get(key) is not None]


def per_class_ap(versions: list[ModelVersion]) -> list[dict]:
    """Long-format rows (class, version, AP) for the classes each version was validated on."""
    return [{"class": name, "version": v.name, "AP": ap}
            for v in versions for name, ap in v.metrics.get("val", {}).get("per_class_ap", {}).items()
            if ap is not None]


def job_summary(job: Job, now: datetime | None = None) -> dict:
    """Phase, epoch/step, loss and time left of a job, ready to display."""
    d = job.details or {}
    left = time_left(job, now or datetime.now(timezone.utc))
    parts = []
    if d.get("epoch"):
        parts.append(f"epoch {d['epoch']}/{d.get('epochs', '?')}")
    if d.get("step"):
        parts.append(f"step {d['step']}/{d.get('steps', '?')}")
    if d.get("images") is not None and d.get("of"):
        parts.append(f"{d['images']:,}/{d['of']:,} images")
    if d.get("loss") is not None:
        parts.append(f"loss {d['loss']:.4f}")
    return {"id": job.id, "kind": job.kind, "status": job.status, "phase": job.phase or "waiting for the worker",
            "progress": float(job.progress or 0.0), "position": ", ".join(parts),
            "time_left": _duration(left) if left is not None else "",
            "params": {k: v for k, v in (job.params or {}).items() if v not in (None, "", False)},
            "result": job.result or {}, "error": (job.error or "").splitlines()[0] if job.error else ""}


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"
