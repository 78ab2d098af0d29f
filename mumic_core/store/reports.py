"""What the Training page shows about model versions and jobs, as plain rows."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from mumic_core.store.jobs import JobInfo, time_left
from mumic_core.store.registry import VersionInfo, describe

METRICS = {"GAP@10": "gap_at_10", "GAP": "gap", "mAP": "map"}


def format_metric(value: float | None, digits: int = 4) -> str:
    """A metric as people read it: ``0.4312``, or ``n/a`` when it is undefined (None or NaN, e.g.
    the mAP of a validation set without positives)."""
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:.{digits}f}"


def validation_metrics(versions: list[VersionInfo]) -> dict[str, dict]:
    """Each version's held-out metrics: its own from training, or, for a version that was never
    trained (the base model), those measured when its latest child was compared with it."""
    out = {v.name: v.metrics["val"] for v in versions if v.metrics.get("val")}
    by_id = {v.id: v for v in versions}
    for v in versions:  # oldest first: a later child overwrites an earlier one
        parent = by_id.get(v.parent_id)
        if parent is not None and not parent.metrics.get("val") and v.metrics.get("parent_val"):
            out[parent.name] = v.metrics["parent_val"]
    return out


def version_rows(versions: list[VersionInfo]) -> list[dict]:
    """One row per version: status, its validation metrics and those of its parent on the same images."""
    rows = []
    metrics = validation_metrics(versions)
    for v in versions:
        val, parent = metrics.get(v.name, {}), v.metrics.get("parent_val", {})
        row = {
            "version": v.name,
            "status": v.status,
            "kind": v.kind,
            "description": describe(v),
            "held-out images": val.get("n_images"),
            "parent": v.training_config.get("parent", ""),
            "created": v.created_at.strftime("%Y-%m-%d %H:%M"),
        }
        row |= {label: val.get(key) for label, key in METRICS.items()}
        row |= {f"parent {label}": parent.get(key) for label, key in METRICS.items()}
        rows.append(row)
    return rows


def metric_bars(versions: list[VersionInfo]) -> list[dict]:
    """Long-format rows (version, metric, value) for a grouped bar chart of versions with metrics."""
    metrics = validation_metrics(versions)
    return [
        {
            "version": v.name + (" (active)" if v.status == "active" else ""),
            "metric": label,
            "value": metrics[v.name][key],
        }
        for v in versions
        if v.name in metrics
        for label, key in METRICS.items()
        if metrics[v.name].get(key) is not None
    ]


def per_class_ap(versions: list[VersionInfo], chosen: list[str]) -> list[dict]:
    """Long-format rows (class, version, AP) of the chosen versions."""
    metrics = validation_metrics(versions)
    return [
        {"class": name, "version": v, "AP": ap}
        for v in chosen
        for name, ap in metrics.get(v, {}).get("per_class_ap", {}).items()
        if ap is not None
    ]


def job_summary(job: JobInfo, now: datetime | None = None) -> dict:
    """Phase, epoch/step, loss and time left of a job, ready to display."""
    d = job.details or {}
    left = time_left(job, now or datetime.now(UTC))
    parts = []
    if d.get("epoch"):
        parts.append(f"epoch {d['epoch']}/{d.get('epochs', '?')}")
    if d.get("step"):
        parts.append(f"step {d['step']}/{d.get('steps', '?')}")
    if d.get("images") is not None and d.get("of"):
        parts.append(f"{d['images']:,}/{d['of']:,} images")
    if d.get("loss") is not None:
        parts.append(f"loss {d['loss']:.4f}")
    return {
        "id": job.id,
        "kind": job.kind,
        "status": job.status,
        "phase": job.phase or "waiting for the worker",
        "progress": float(job.progress or 0.0),
        "position": ", ".join(parts),
        "time_left": _duration(left) if left is not None else "",
        "params": {k: v for k, v in (job.params or {}).items() if v not in (None, "", False)},
        "result": job.result or {},
        "error": (job.error or "").splitlines()[0] if job.error else "",
    }


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"
