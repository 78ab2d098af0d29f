"""The class-sweep panel: a Streamlit v2 component (``sweep_panel.js``) that shows one page of
tiles for one class and keeps each tile's present/absent mark in the browser, so that clicks and
key presses are applied in order however fast they come; the page is sent whole when the person
saves it. The page (``class_sweep.py``) turns what it sends into calls to the review services.

Keys: arrows move the cursor; Space flips the tile under it and moves on; ``a`` marks it present
and ``x`` absent (and move on); Enter or Ctrl+Enter saves the page; Ctrl+Z undoes the last
submission."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import streamlit as st

from app_pages.ui import component_assets, inline_image, new_component_action
from mumic_core.store.renditions import Rendition

_COMPONENT = st.components.v2.component("mumic_sweep_panel", **component_assets("sweep_panel"))


@dataclass(frozen=True)
class SweepTile:
    """One image of a sweep page as the panel shows it."""

    id: int
    name: str  # the file name, shown under the tile
    prob: float  # the model's probability of the class
    on: bool  # marked present when the page opens
    src: str  # a data: URL of the display rendition, or "" when it cannot be shown
    problem: str  # why it cannot be shown


def sweep_tile(image_id: int, name: str, prob: float, on: bool, rendition: Rendition | None) -> SweepTile:
    """A tile with its rendition inlined (the panel draws the images itself)."""
    src, problem = inline_image(rendition)
    return SweepTile(image_id, name, round(prob, 4), on, src, problem)


def sweep_panel(
    token: str,
    class_name: str,
    tiles: Sequence[SweepTile],
    *,
    columns: int,
    ack: int,
    message: str,
    on_action: Callable[[], None],
) -> None:
    """Mount the panel for one page (a new ``token`` resets the marks to the tiles' ``on``).
    ``ack`` is the last action the page handled: keys pressed after a save wait until then."""
    _COMPONENT(
        key="sweep_panel",
        data={
            "token": token,
            "class_name": class_name,
            "tiles": [asdict(t) for t in tiles],
            "columns": columns,
            "ack": ack,
            "message": message,
        },
        on_action_change=on_action,
    )


def last_sweep_action() -> dict | None:
    """What the panel sent, once (None when nothing new):
    ``{"action": "save"|"undo", "seq", "token", "marks": {id: bool}}``."""
    return new_component_action("sweep_panel", "sweep_ack")
