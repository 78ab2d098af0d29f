"""Numbers for the Dashboard page: progress, label distribution, model history, corrections."""

from __future__ import annotations

from sklearn.metrics import cohen_kappa_score
from sqlalchemy import case, func, select
from sqlalchemy.orm import aliased

from db.models import Annotation, LabelClass, Submission
from mumic_core.store.registry import list_versions
from mumic_core.store.studio import Studio


def model_history(studio: Studio) -> list[dict]:
    """One row per trained version and metric (validation split), in creation order."""
    rows = []
    for v in list_versions(studio):
        val = v.metrics.get("val") or {}
        for key, label in (("gap_at_10", "GAP@10"), ("gap", "GAP"), ("map", "mAP")):
            if val.get(key) is not None:
                rows.append(
                    {"version": v.name, "created": v.created_at, "status": v.status, "metric": label, "value": val[key]}
                )
    return rows


def per_class_ap(studio: Studio) -> list[dict]:
    """Per-class validation AP of the newest trained version, next to its parent's."""
    trained = [v for v in list_versions(studio) if (v.metrics.get("val") or {}).get("per_class_ap")]
    if not trained:
        return []
    v = trained[-1]
    parent = v.metrics.get("parent_val", {}).get("per_class_ap", {})
    return [
        {"class": name, f"AP {v.name}": ap, "AP parent": parent.get(name)}
        for name, ap in sorted(v.metrics["val"]["per_class_ap"].items())
    ]


def correction_rates(studio: Studio, threshold: float = 0.5) -> list[dict]:
    """Per class: how often a reviewer's label differed from what the model proposed
    (proposed = probability at or above ``threshold`` when the image was shown); undone reviews
    are left out."""
    changed = case(
        ((Annotation.positive.is_(True)) & (Annotation.suggested_score < threshold), 1),
        ((Annotation.positive.is_(False)) & (Annotation.suggested_score >= threshold), 1),
        else_=0,
    )
    with studio.read() as s:
        rows = s.execute(
            select(LabelClass.name, func.count(Annotation.id), func.sum(changed))
            .join(LabelClass, LabelClass.id == Annotation.class_id)
            .join(Submission, Submission.id == Annotation.submission_id)
            .where(
                Annotation.suggested_score.is_not(None),
                Annotation.source == "review",
                Annotation.assumed.is_(False),  # what the reviewer said, not what Accept assumed
                Submission.undone_at.is_(None),  # an undone review said nothing
            )
            .group_by(LabelClass.name)
            .order_by(LabelClass.name)
        ).all()
    return [
        {
            "class": n,
            "reviewed labels": int(total),
            "changed": int(ch or 0),
            "change rate": (ch or 0) / total if total else None,
        }
        for n, total, ch in rows
    ]


def annotator_agreement(studio: Studio) -> list[dict]:
    """Per class, how often a second reviewer agreed with the first annotator: the pairs (a
    second-review label and the other person's label it superseded), percent agreement and
    Cohen's kappa (scikit-learn; empty when both said the same thing every time)."""
    second, first = aliased(Annotation), aliased(Annotation)
    with studio.read() as s:
        rows = s.execute(
            select(LabelClass.name, first.positive, second.positive)
            .join(first, first.id == second.supersedes_id)
            .join(LabelClass, LabelClass.id == second.class_id)
            .where(second.source == "second_review", first.annotator != second.annotator)
        ).all()
    pairs: dict[str, list[tuple[bool, bool]]] = {}
    for name, a, b in rows:
        pairs.setdefault(name, []).append((bool(a), bool(b)))
    out = []
    for name, p in sorted(pairs.items()):
        a, b = [x for x, _ in p], [y for _, y in p]
        kappa = float(cohen_kappa_score(a, b, labels=[False, True])) if len(set(a) | set(b)) > 1 else None
        out.append(
            {
                "class": name,
                "pairs": len(p),
                "agreement": sum(x == y for x, y in p) / len(p),
                "Cohen's kappa": None if kappa is None or kappa != kappa else round(kappa, 3),
            }
        )
    return out
