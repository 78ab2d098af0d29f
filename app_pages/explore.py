"""Explore: search by text or by example, near-duplicates, and a map of the embeddings;
chosen images go to the review queue."""

from __future__ import annotations

import plotly.express as px
import streamlit as st

from app_pages.signin import signed_in_studio
from app_pages.ui import md, refuse, show_image, watch_job
from mumic_core.pipeline.queue import enqueue
from mumic_core.pipeline.search import (
    INLINE_DUPLICATE_IMAGES,
    embedding_map,
    near_duplicate_groups,
    search_text,
    similar_images,
)
from mumic_core.store.classes import list_classes
from mumic_core.store.collection import current_labels, find_image, image_count
from mumic_core.store.jobs import JobConflict, list_jobs
from mumic_core.store.queue import image_views
from mumic_core.store.registry import active_version, describe
from mumic_core.store.renditions import TILE

st.title("Explore")
s = signed_in_studio("review")
version = active_version(s)
if version is None:
    st.error("No model yet: run `make run` first.")
    st.stop()
st.caption(f"Embeddings of {describe(version)}")


@st.cache_data(ttl=300, show_spinner="Projecting the embeddings…")
def cached_map(version_id: int):
    """The PCA map of the active version (tabs all run on every interaction: compute it once)."""
    return embedding_map(s, version)


def send_to_review(ids: list[int]) -> None:
    st.session_state["review_selection"] = tuple(ids)
    st.session_state["selection_source"] = "the Explore page"
    st.session_state["suspects"] = {}
    st.switch_page("app_pages/review.py")


def gallery(hits: list[tuple[int, float]], key: str, first_is_query: bool = False) -> None:
    if not hits:
        st.caption("Nothing found.")
        return
    st.caption("Most similar first; the number is how similar the embeddings are (images: cosine, 1 = identical).")
    views = {v.image_id: v for v in image_views(s, [i for i, _ in hits], None, display=TILE)}
    cols = st.columns(6)
    for k, (image_id, sim) in enumerate(hits):
        name = views[image_id].name
        name = name if len(name) <= 28 else "…" + name[-27:]
        caption = f"{name} (the image itself)" if first_is_query and k == 0 else f"{name} · {sim:.2f}"
        show_image(cols[k % 6], views[image_id].display, caption=caption)
    if st.button(f"Review these {len(hits)} images", key=f"send-{key}"):
        send_to_review([i for i, _ in hits])


def chosen_images(event, points: list[dict]) -> list[int]:
    """The images inside a box or lasso on the map. A selected point carries its trace's data: the
    image id in ``customdata`` (a list, or a dict keyed by position, as Streamlit passes it on),
    else its x and y, looked up among the plotted points."""
    by_xy = {(round(p["x"], 6), round(p["y"], 6)): p["image"] for p in points}
    out: list[int] = []
    for point in event.selection.points if event and event.selection else []:
        data = point.get("customdata")
        if isinstance(data, dict):
            data = [data[k] for k in sorted(data, key=str)]
        if isinstance(data, (list, tuple)) and data:
            out.append(int(data[0]))
        elif "x" in point and "y" in point and (round(point["x"], 6), round(point["y"], 6)) in by_xy:
            out.append(int(by_xy[(round(point["x"], 6), round(point["y"], 6))]))
    return list(dict.fromkeys(out))


def show_groups(groups: list[list[int]], counted: int | None = None) -> None:
    """The largest groups, a row of up to 12 images each."""
    if not groups:
        st.caption("No near-duplicates found.")
        return
    total = counted if counted is not None else len(groups)
    shown = min(len(groups), 20)
    st.caption(f"{total:,} groups of nearly identical images" + (f"; the {shown} largest:" if total > shown else ":"))
    for n, group in enumerate(groups[:20]):
        gallery([(i, 1.0) for i in group[:12]], f"dup-{n}")


def near_duplicates_panel() -> None:
    """Find near-duplicates: at once for small collections, as a worker job for large ones; the
    last finished job's groups for the active version are shown when there are any."""
    job = next(iter(list_jobs(s, limit=1, kind="near_duplicates")), None)
    running = job is not None and job.status in ("queued", "running")
    if st.button("Find near-duplicates", disabled=running):
        if image_count(s) <= INLINE_DUPLICATE_IMAGES:
            with st.spinner("Comparing every image with its nearest neighbours…"):
                st.session_state["dup_groups"] = (version.id, near_duplicate_groups(s, version))
        else:
            try:
                enqueue(s, "near_duplicates", {"version_id": version.id})
            except JobConflict as exc:
                refuse(exc)
                return
            st.session_state.pop("dup_groups", None)
            st.rerun()
    inline = st.session_state.get("dup_groups")
    if inline is not None and inline[0] == version.id:
        show_groups(inline[1])
    elif running:
        watch_job(s, job.id, "Looking for near-duplicates")
    elif job is not None and job.status == "failed":
        st.caption(f"The last search for near-duplicates failed (job {job.id}): {(job.error or '').splitlines()[0]}")
    elif job is not None and job.status == "succeeded" and job.result.get("version_id") == version.id:
        when = job.finished_at.strftime("%Y-%m-%d %H:%M") if job.finished_at else ""
        st.caption(f"Found by job {job.id} ({when} UTC); images imported since are not in it.")
        show_groups(job.result.get("groups", []), job.result.get("group_count"))


text_tab, similar_tab, dup_tab, map_tab = st.tabs(["Text search", "Similar images", "Near-duplicates", "Map"])
with text_tab:
    query = st.text_input("Describe what you are looking for", placeholder="a red circle on stripes")
    if query:
        gallery(search_text(s, version, query, k=24), "text")
with similar_tab:
    wanted = st.text_input(
        "Image: its file name (as on the Review page) or its id", placeholder="e.g. img_0012.png", key="similar_to"
    )
    if wanted.strip():
        image_id = find_image(s, wanted)
        if image_id is None:
            st.warning(f"No image is named {md(wanted.strip())} (nor has that id).")
        else:
            try:
                gallery([(image_id, 1.0)] + similar_images(s, version, image_id, k=17), "similar", True)
            except KeyError as exc:
                refuse(exc)
with dup_tab:
    near_duplicates_panel()
with map_tab:
    classes = list_classes(s)
    colour = st.selectbox(
        "Colour by the human label of",
        [None] + [c.id for c in classes],
        format_func=lambda c: "nothing" if c is None else next(x.name for x in classes if x.id == c),
    )
    ids, xy = cached_map(version.id)
    labels = {}
    if colour is not None:
        labels = {
            i: ("present" if p else "assumed absent" if a else "absent")
            for i, c, p, a in current_labels(s)
            if c == colour
        }
    points = [
        {"x": float(x), "y": float(y), "image": i, "label": labels.get(i, "unknown")} for i, (x, y) in zip(ids, xy)
    ]
    fig = px.scatter(
        points,
        x="x",
        y="y",
        color="label" if colour is not None else None,
        custom_data=["image"],
        hover_data=["image"],
        title="Image embeddings (PCA)",
        color_discrete_map={"present": "#2e7d32", "absent": "#c62828", "unlabelled": "#b0bec5"},
    )
    fig.update_traces(marker={"size": 6})
    event = st.plotly_chart(fig, width="stretch", on_select="rerun", selection_mode=("box", "lasso"), key="map")
    chosen = chosen_images(event, points)
    st.caption("Draw a box or lasso around points to choose images.")
    if chosen and st.button(f"Review the {len(chosen)} chosen images"):
        send_to_review(chosen)
