"""Class sweep (a mode of the Review page): one class at a time over many images, each tile
present or absent with one click; a page is saved as one submission of human labels for that
class only. The fastest way to check a new zero-shot class over a large collection."""

from __future__ import annotations

import streamlit as st

from app_pages.ui import md, refuse, show_image
from mumic_core.errors import REFUSALS, one_line
from mumic_core.services.review import submit_sweep, undo
from mumic_core.store.classes import ClassInfo
from mumic_core.store.queue import (
    DEFAULT_THRESHOLD,
    SWEEP_ORDERS,
    image_views,
    sweep_candidates,
    sweep_remaining,
)
from mumic_core.store.registry import VersionInfo, load_head
from mumic_core.store.renditions import TILE
from mumic_core.store.studio import Studio

COLUMNS = 6


def class_sweep(s: Studio, version: VersionInfo, classes: list[ClassInfo], count_reviewed) -> None:
    """Lay out one page of a class sweep and save it when asked."""
    state = st.session_state
    by_id = {c.id: c for c in classes}
    if not classes:
        st.info("No classes yet: add one on the Classes page.")
        return
    c1, c2, c3 = st.columns([2, 2, 1])
    class_id = c1.selectbox("Class", list(by_id), key="sweep_class", format_func=lambda i: by_id[i].name)
    order = c2.radio("Order", SWEEP_ORDERS, horizontal=True, key="sweep_order")
    per_page = c3.selectbox("Per page", [12, 24, 36], index=1, key="sweep_per_page")
    head = load_head(s, version)
    name = by_id[class_id].name
    threshold = float((head.thresholds if head else {}).get(name, DEFAULT_THRESHOLD))
    remaining = sweep_remaining(s, version.id, class_id)
    candidates = sweep_candidates(s, version.id, class_id, order, threshold, per_page)
    if not candidates:
        st.info(f"Every scored image has a human label for {md(name)}.")
        return
    st.markdown(
        f"**Is there a {md(name)}?** Click a tile to flip it; filled = present. It starts from the model "
        f"(present from {threshold:.0%}). Saving records present or absent for {md(name)} only."
    )
    b1, b2, _ = st.columns([2, 1, 2])  # above the tiles: in the window as the page opens; filled below
    views = {v.image_id: v for v in image_views(s, [i for i, _ in candidates], None, top_k=0, display=TILE)}
    page_key = (class_id, tuple(i for i, _ in candidates))
    if state.get("sweep_page") != page_key:  # a new page: tiles start from the model
        state.sweep_page = page_key
        state.sweep_marks = {i: p >= threshold for i, p in candidates}
    marks: dict[int, bool] = state.sweep_marks

    def flip(image_id: int) -> None:
        marks[image_id] = not marks[image_id]

    cols = st.columns(COLUMNS)
    for k, (image_id, p) in enumerate(candidates):
        with cols[k % COLUMNS]:
            show_image(st, views[image_id].display)
            present = marks[image_id]
            st.button(
                f"{'present' if present else 'absent'} · {p:.0%}",
                key=f"sw_{image_id}",
                type="primary" if present else "secondary",
                icon=":material/check_box:" if present else ":material/check_box_outline_blank:",
                width="stretch",
                on_click=flip,
                args=(image_id,),
                help=views[image_id].name,
            )
    n_present = sum(marks.values())
    if b1.button(
        f"Save page: {n_present} present, {len(marks) - n_present} absent",
        type="primary",
        key="sweep_save",
        width="stretch",
    ):
        try:
            sid = submit_sweep(s, class_id, dict(marks), s.actor.username)
        except ValueError as exc:
            refuse(exc)
            return
        count_reviewed(len(marks))
        state.flash = (
            f"Saved {name}: {n_present} present, {len(marks) - n_present} absent (submission {sid}); "
            f"{max(remaining - len(marks), 0)} images left to judge for it."
        )
        state.sweep_page = None
        st.rerun()
    if b2.button("Undo my last submission", key="sweep_undo", width="stretch"):
        try:
            sid = undo(s, s.actor.username)
        except ValueError as exc:
            state.error = md(one_line(exc, REFUSALS))
        else:
            state.flash = f"Undid submission {sid}." if sid else "Nothing of yours to undo."
        state.sweep_page = None
        st.rerun()
    st.caption(f"{remaining} images not yet judged for {md(name)}.")
