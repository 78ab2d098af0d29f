"""Class sweep (a mode of the Review page): one class at a time over many images, each tile
present or absent with one key or click; a page is saved as one submission of human labels for
that class only. The fastest way to check a new zero-shot class over a large collection."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import streamlit as st

from app_pages.sweep_panel import last_sweep_action, sweep_panel, sweep_tile
from app_pages.ui import md, timed_callback
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
KEYS_HELP = "Keys: arrows move · Space flips · a present · x absent · Enter saves the page · Ctrl+Z undo."


def class_sweep(
    s: Studio, version: VersionInfo, classes: list[ClassInfo], count_reviewed: Callable[[int], None]
) -> None:
    """Lay out one page of a class sweep; save it (or undo) when the panel asks."""
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
    state.setdefault("sweep_nonce", 0)
    state.setdefault("sweep_ack", 0)
    ids = [i for i, _ in candidates]
    page = hashlib.sha1(repr((class_id, order, ids)).encode()).hexdigest()[:12]
    token = f"{page}:{state.sweep_nonce}"

    @timed_callback
    def on_action() -> None:
        """What the panel sent (a save or an undo), before the script runs again."""
        sent = last_sweep_action()
        if not sent:
            return
        state.sweep_nonce += 1
        if sent.get("token") != token:  # sent for a page no longer shown: nothing happens
            return
        if sent.get("action") == "undo":
            try:
                sid = undo(s, s.actor.username)
            except ValueError as exc:
                state.error = md(one_line(exc, REFUSALS))
            else:
                state.flash = f"Undid submission {sid}." if sid else "Nothing of yours to undo."
            return
        shown = set(ids)
        marks = {int(i): bool(v) for i, v in (sent.get("marks") or {}).items() if int(i) in shown}
        try:
            sid = submit_sweep(s, class_id, marks, s.actor.username)
        except ValueError as exc:
            state.error = md(one_line(exc, REFUSALS))
            return
        count_reviewed(len(marks))
        n_present = sum(marks.values())
        state.flash = (
            f"Saved {md(name)}: {n_present} present, {len(marks) - n_present} absent (submission {sid}); "
            f"{max(remaining - len(marks), 0)} images left to judge for it."
        )

    if not candidates:
        st.info(f"Every scored image has a human label for {md(name)}.")
        return
    st.markdown(
        f"**Is there a {md(name)}?** Filled tiles are present; each starts from the model (present from "
        f"{threshold:.0%}). Saving records present or absent for {md(name)} only."
    )
    views = {v.image_id: v for v in image_views(s, ids, None, top_k=0, display=TILE)}
    tiles = [sweep_tile(i, views[i].name, p, p >= threshold, views[i].display) for i, p in candidates]
    sweep_panel(
        token,
        name,
        tiles,
        columns=COLUMNS,
        ack=state.sweep_ack,
        message=f"{KEYS_HELP} {remaining} images not yet judged for {name}.",
        on_action=on_action,
    )
