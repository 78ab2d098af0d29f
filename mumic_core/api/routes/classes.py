"""Classes: list, add with prompts (scored at once over the collection, zero-shot), edit."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from mumic_core.api.deps import MAX_PAGE, Caller, Id, Limit, Offset, page_of, permitted
from mumic_core.api.schemas import ClassCreate, ClassEdit, ClassOut, ClassResult, Page
from mumic_core.services.classes import Scored, add_scored_class, edit_prompts, reactivate
from mumic_core.store.classes import ClassInfo, list_classes, rename_class, set_active
from mumic_core.store.studio import Studio

router = APIRouter(prefix="/classes", tags=["classes"])


def _out(c: ClassInfo) -> ClassOut:
    return ClassOut(id=c.id, name=c.name, description=c.description, active=c.active, prompts=c.prompt_texts)


def _result(scored: Scored) -> ClassResult:
    return ClassResult(cls=_out(scored.cls), scored_images=scored.images, seconds=round(scored.seconds, 3))


def _get(studio: Studio, class_id: int) -> ClassInfo:
    found = next((c for c in list_classes(studio, active_only=False) if c.id == class_id), None)
    if found is None:
        raise KeyError(f"no class with id {class_id}")
    return found


@router.get("")
def get_classes(
    studio: Caller,
    offset: Offset = 0,
    limit: Limit = MAX_PAGE,
    include_inactive: Annotated[bool, Query(description="Also merged or deactivated ones.")] = False,
) -> Page[ClassOut]:
    """The classes (active ones by default), in the order they were made."""
    return Page[ClassOut](
        **page_of([_out(c) for c in list_classes(studio, active_only=not include_inactive)], offset, limit)
    )


@router.post("", status_code=201)
def create_class(studio: Annotated[Studio, Depends(permitted("classes"))], body: ClassCreate) -> ClassResult:
    """Add a class from its name and prompts; the active version scores it over every image at
    once (zero-shot), so its suggestions are ranked when this returns."""
    return _result(add_scored_class(studio, body.name, body.prompts, body.description))


@router.patch("/{class_id}")
def edit_class(studio: Annotated[Studio, Depends(permitted("classes"))], class_id: Id, body: ClassEdit) -> ClassResult:
    """Rename, replace prompts or description (the class is scored again), or (de)activate."""
    cls = _get(studio, class_id)
    scored = Scored(cls, 0, 0.0)
    if body.name is not None and body.name != cls.name:
        cls = rename_class(studio, class_id, body.name)
        scored = Scored(cls, 0, 0.0)
    if body.active is False and cls.active:
        set_active(studio, class_id, False)
        scored = Scored(_get(studio, class_id), 0, 0.0)
    elif body.active is True and not cls.active:
        scored = reactivate(studio, class_id)
    if body.prompts is not None or body.description is not None:
        prompts = body.prompts if body.prompts is not None else cls.prompt_texts
        scored = edit_prompts(studio, class_id, prompts, body.description)
    return _result(scored)
