"""The review grid: a Streamlit v2 component (``grid_panel.js``) that shows a page of tiles, each
with its file name, the model's top suggestions and the classes chosen for it, and keeps every
tile's choice in the browser: typing and removing classes cost no server round trip, so nothing
typed is lost to a rerun, and a tile fixed by hand keeps its fix when the threshold moves. The
page is sent whole on Accept or Save. The page (``review.py``) turns it into review submissions.

Keys in a tile's field: type, Enter adds the highlighted class (an exact prefix first);
Backspace in the empty field removes the last class; Tab and Shift+Tab move between tiles; Esc
leaves the field. Anywhere: Ctrl+Enter accepts the page, Ctrl+Shift+Enter saves it as shown."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import streamlit as st

from app_pages.ui import component_assets, inline_image, new_component_action
from mumic_core.store.classes import ClassInfo
from mumic_core.store.queue import ImageView

_COMPONENT = st.components.v2.component("mumic_grid_panel", **component_assets("grid_panel"))


@dataclass(frozen=True)
class GridTile:
    """One image of a grid page as the panel shows it."""

    id: int
    name: str
    src: str  # a data: URL of the display rendition, or ""
    problem: str  # why the image cannot be shown
    top: list[tuple[int, str, float]]  # the model's top suggestions: (class id, name, probability)
    chosen: list[int]  # what the tile holds as the page opens: proposals at the threshold + said present


def grid_tile(view: ImageView, classes: set[int], threshold: float, blind: bool) -> GridTile:
    """A tile: its proposals at ``threshold`` (none when blind) plus what a person said present."""
    src, problem = inline_image(view.display)
    top = [] if blind else [(sg.class_id, sg.name, round(float(sg.probability), 4)) for sg in view.suggestions]
    said = [c for c, p in view.labels.items() if p and c in classes and c not in view.assumed]
    proposed = [c for c, _, p in top if p >= threshold]
    return GridTile(view.image_id, view.name, src, problem, top, proposed + [c for c in said if c not in proposed])


def grid_panel(
    token: str,
    tiles: Sequence[GridTile],
    classes: Sequence[ClassInfo],
    *,
    threshold: float,
    blind: bool,
    ack: int,
    message: str,
    on_action: Callable[[], None],
) -> None:
    """Mount the panel for one page (a new ``token`` starts the tiles over; the same token with
    new ``chosen`` moves the untouched tiles only)."""
    _COMPONENT(
        key="grid_panel",
        data={
            "token": token,
            "tiles": [asdict(t) for t in tiles],
            "classes": [{"id": c.id, "name": c.name} for c in classes],
            "threshold": threshold,
            "blind": blind,
            "ack": ack,
            "message": message,
        },
        on_action_change=on_action,
    )


def last_grid_action() -> dict | None:
    """What the panel sent, once (None when nothing new): ``{"action": "accept"|"save"|"undo", "seq",
    "token", "tiles": {id: {"chosen": [class ids], "touched": bool}}}``."""
    return new_component_action("grid_panel", "grid_ack")
