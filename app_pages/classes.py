"""Classes: counts, add with zero-shot suggestions at once, edit prompts, rename, deactivate, merge."""

from __future__ import annotations

import streamlit as st

from app_pages.signin import signed_in_studio
from app_pages.ui import isolate, md, refuse, show_image
from mumic_core.errors import MumicError
from mumic_core.pipeline.scoring import rank_images_for_prompts
from mumic_core.services.classes import add_scored_class, edit_prompts, reactivate
from mumic_core.store.classes import (
    list_classes,
    merge_classes,
    rename_class,
    set_active,
)
from mumic_core.store.collection import class_counts
from mumic_core.store.queue import image_views, top_images_for_class
from mumic_core.store.registry import active_version
from mumic_core.store.renditions import TILE

s = signed_in_studio("classes")
st.title("Classes")
version = active_version(s)
state = st.session_state


def show_preview(ranked: list[tuple[int, float]], caption: str) -> None:
    st.caption(caption)
    views = {v.image_id: v for v in image_views(s, [i for i, _ in ranked], None, display=TILE)}
    cols = st.columns(6)
    for k, (image_id, p) in enumerate(ranked):
        show_image(cols[k % 6], views[image_id].display, caption=f"{p:.0%}")


def prompts_from(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


with st.expander("Add a class", expanded=not list_classes(s), icon=":material/add:"):
    with st.form("add_class", clear_on_submit=False):
        name = st.text_input("Name", max_chars=80)
        prompts = st.text_area("Prompts, one per line", placeholder="a photo of a ...\na drawing of a ...")
        description = st.text_input("Description (optional)")
        submitted = st.form_submit_button("Add class", type="primary")
    if submitted:
        try:
            added = add_scored_class(s, name, prompts_from(prompts), description)
        except MumicError as exc:
            refuse(exc)
        else:
            state.new_class = (added.cls.id, added.images, added.seconds)
            st.success(f"Added “{md(added.cls.name)}”.")
    if state.get("new_class") and version is not None:
        cid, n, secs = state.new_class
        cls = next((c for c in list_classes(s) if c.id == cid), None)
        if cls is not None:
            ranked = top_images_for_class(s, version.id, cid, k=12)
            show_preview(
                ranked,
                f"Zero-shot suggestions for “{md(cls.name)}” over {n} images, scored in {secs:.2f} s: "
                "the images that score highest",
            )

st.subheader("All classes")
rows = class_counts(s, version.id if version else None, include_inactive=True)
st.dataframe(rows, hide_index=True, width="stretch")
if any(r["status"] == "inactive" for r in rows):
    st.caption(
        "Inactive classes (deactivated, or merged into another) keep their labels here; they are not "
        "suggested, trained or exported until reactivated."
    )

classes = list_classes(s, active_only=False)
if not classes:
    st.stop()
by_id = {c.id: c for c in classes}
st.subheader("Edit a class")
cid = st.selectbox(
    "Class",
    [c.id for c in classes],
    key="edit_class",
    format_func=lambda i: isolate(by_id[i].name) + ("" if by_id[i].active else " (inactive)"),
)
cls = by_id[cid]
tab_prompts, tab_rename, tab_merge = st.tabs(["Prompts", "Rename / deactivate", "Merge"])
with tab_prompts:
    text = st.text_area("Prompts, one per line", "\n".join(cls.prompt_texts), key=f"prompts_{cid}")
    desc = st.text_input("Description", cls.description, key=f"desc_{cid}")
    c1, c2 = st.columns(2)
    if c1.button("Preview these prompts", disabled=version is None):
        ranked = rank_images_for_prompts(s, version, prompts_from(text), k=12)
        show_preview(ranked, "Images these prompts would score highest (zero-shot, nothing saved yet)")
    if c2.button("Save prompts and re-score", type="primary", disabled=not cls.active):
        try:
            edited = edit_prompts(s, cid, prompts_from(text), desc)
            st.success(f"Saved; {edited.images} images re-scored for “{md(cls.name)}”.")
        except MumicError as exc:
            refuse(exc)
with tab_rename:
    new_name = st.text_input("New name", cls.name, key=f"rename_{cid}", max_chars=80)
    c1, c2 = st.columns(2)
    if c1.button("Rename"):
        try:
            rename_class(s, cid, new_name)
            st.rerun()
        except MumicError as exc:
            refuse(exc)
    if cls.active and c2.button("Deactivate", help="Hidden from suggestions and training; its labels are kept."):
        set_active(s, cid, False)
        st.rerun()
    if not cls.active and c2.button("Reactivate"):
        reactivate(s, cid)
        st.rerun()
with tab_merge:
    targets = [c.id for c in classes if c.id != cid and c.active]
    target = st.selectbox("Merge into", targets, format_func=lambda i: by_id[i].name, key=f"merge_{cid}")
    st.caption(
        f"Every image labelled “{md(cls.name)}” gets the target's label; “{md(cls.name)}” is then deactivated. "
        "History is kept."
    )
    if st.button("Merge", disabled=target is None):
        try:
            n = merge_classes(s, cid, target, s.actor.username)
            st.success(f"Merged: {n} labels recorded on “{md(by_id[target].name)}”.")
        except MumicError as exc:
            refuse(exc)
