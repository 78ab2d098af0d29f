"""The one-image review panel: a Streamlit v2 component (``review_panel.js``) that keeps the
person's decision in the browser, applies key presses in order however fast they come, and sends
the whole decision when they submit. The page (``review.py``) turns what it sends into calls to
the review services.

Every class has a key: ``1``-``9``, ``0``, then ``a``-``z``, in the order the panel lists the
classes (suspected labels first, then most likely present first; by name when suggestions are
hidden)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

import streamlit as st

from app_pages.ui import component_assets, new_component_action
from mumic_core.store.classes import ClassInfo
from mumic_core.store.queue import ImageView

KEYS = "1234567890abcdefghijklmnopqrstuvwxyz"
SHOWN = 20  # classes listed before "Show all"; the others keep their keys and the add-label field finds them
_COMPONENT = st.components.v2.component("mumic_review_panel", **component_assets("review_panel"))


@dataclass(frozen=True)
class PanelItem:
    """One class as the panel lists it."""

    id: int
    name: str
    key: str  # "" past the 36th class
    prob: float | None  # None when suggestions are hidden
    on: bool  # filled when the panel opens
    note: str  # what is already said: "said present", "assumed absent", "suspected", ...


def panel_items(
    view: ImageView,
    classes: Sequence[ClassInfo],
    blind: bool,
    suspected: Mapping[int, float] | None = None,
    restore: set[int] | None = None,
) -> list[PanelItem]:
    """Every active class of ``view`` in the panel's order, filled as the person would expect
    (``suspected``: class id -> the held-out model's probability of a suspected label):
    what a person said stands, otherwise the model's proposal (nothing when blind); ``restore``
    (an undone decision's present classes) wins over both."""
    suggestion = {sg.class_id: sg for sg in view.suggestions}
    suspected = suspected or {}

    def rank(c: ClassInfo) -> tuple:
        first = 0 if c.id in suspected else 1
        if blind:
            return (first, c.name.casefold())
        sg = suggestion.get(c.id)
        return (first, -(sg.probability if sg else -1.0), c.name.casefold())

    items = []
    for k, c in enumerate(sorted(classes, key=rank)):
        sg = suggestion.get(c.id)
        said = view.labels.get(c.id) if c.id not in view.assumed else None
        if restore is not None:
            on = c.id in restore
        elif said is not None:
            on = said
        else:
            on = bool(sg and sg.proposed) and not blind
        notes = []
        if c.id in suspected:
            notes.append(f"suspected: held-out {suspected[c.id]:.0%}")
        if c.id in view.assumed:
            notes.append("assumed absent")
        elif said is not None:
            notes.append("said present" if said else "said absent")
        items.append(
            PanelItem(
                c.id,
                c.name,
                KEYS[k] if k < len(KEYS) else "",
                None if blind or sg is None else round(float(sg.probability), 4),
                on,
                ", ".join(notes),
            )
        )
    return items


def review_panel(
    token: str,
    items: Sequence[PanelItem],
    *,
    blind: bool,
    can_prev: bool,
    can_redo: bool,
    ack: int,
    message: str,
    on_action: Callable[[], None],
) -> None:
    """Mount the panel for one image (``token`` names this image and what is known of it: a new
    token resets the panel's toggles). ``ack`` is the last action the page handled: keys pressed
    after it was sent wait until then. ``on_action`` runs before the next script run; it reads
    :func:`last_action`."""
    _COMPONENT(
        key="review_panel",
        data={
            "token": token,
            "items": [asdict(i) for i in items],
            "visible": min(len(items), SHOWN),
            "blind": blind,
            "can_prev": can_prev,
            "can_redo": can_redo,
            "ack": ack,
            "message": message,
        },
        on_action_change=on_action,
    )


def last_action() -> dict | None:
    """What the panel sent, once (None when nothing new):
    ``{"action", "seq", "token", "present", "shown"}``."""
    return new_component_action("review_panel", "panel_ack")
