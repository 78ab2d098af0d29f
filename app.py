"""MuMIC Studio: navigation and the home page (what is in the collection, which model suggests)."""

from __future__ import annotations

import threading

import streamlit as st

from mumic_core.collection import class_counts, collection_counts
from mumic_core.jobs import list_jobs, running_worker_pid
from mumic_core.registry import active_version, describe
from mumic_core.studio import open_studio


@st.cache_resource
def studio():
    return open_studio()


@st.cache_resource
def warm_up_model() -> threading.Thread:
    """Load the active model in the background once per server, so that the first zero-shot
    request (a new class) does not pay for importing torch and reading weights."""

    def load() -> None:
        from mumic_core.scoring import load_scorer

        version = active_version(studio())
        if version is not None:
            try:
                load_scorer(studio(), version)
            except Exception:  # noqa: BLE001 - a page that needs the model reports the error itself
                pass

    thread = threading.Thread(target=load, name="mumic-warm-up", daemon=True)
    thread.start()
    return thread


def home() -> None:
    s = studio()
    st.title("MuMIC Studio")
    st.caption("Multi-label image labelling: a CLIP model proposes labels, people accept or fix them.")

    version = active_version(s)
    if version is None:
        st.error("No model is registered yet. Run `make run` (or `python -m mumic_core init`).")
    elif version.kind == "builtin-random":
        st.warning(f"**Model in use:** {describe(version)}. Train on your labels "
                   "on the Training page or configure pretrained CLIP weights (see README).")
    else:
        st.info(f"**Model in use:** {describe(version)}")

    counts = collection_counts(s)
    cols = st.columns(4)
    cols[0].metric("Images", counts["images"])
    cols[1].metric("Reviewed images", f"{counts['reviewed']} / {counts['images']}")
    cols[2].metric("Active classes", counts["classes"])
    cols[3].metric("Human labels", counts["annotations"])

    st.subheader("Classes")
    rows = class_counts(s, version.id if version else None)
    if rows:
        st.dataframe(rows, hide_index=True, width="stretch")
    else:
        st.write("No classes yet: add them with `python -m mumic_core classes add NAME --prompt ...`.")

    st.subheader("Recent jobs")
    pid = running_worker_pid(s)
    if pid:
        st.caption(f"Background worker: running (pid {pid}).")
    else:
        st.caption("Background worker: not running — queued jobs wait until it starts (`make run` starts it).")
    jobs = list_jobs(s, limit=5)
    if jobs:
        st.dataframe(
            [{"id": j.id, "kind": j.kind, "status": j.status, "phase": j.phase, "progress": f"{j.progress:.0%}",
              "created": j.created_at.strftime("%Y-%m-%d %H:%M:%S") if j.created_at else ""} for j in jobs],
            hide_index=True, width="stretch",
        )
    else:
        st.write("No jobs yet.")


st.set_page_config(page_title="MuMIC Studio", page_icon=":material/label:", layout="wide")
warm_up_model()
st.navigation([
    st.Page(home, title="Home", icon=":material/home:", default=True),
    st.Page("app_pages/review.py", url_path="review", title="Review", icon=":material/fact_check:"),
    st.Page("app_pages/classes.py", url_path="classes", title="Classes", icon=":material/label:"),
    st.Page("app_pages/dashboard.py", url_path="dashboard", title="Dashboard", icon=":material/monitoring:"),
    st.Page("app_pages/import_export.py", url_path="import_export", title="Import / export", icon=":material/swap_vert:"),
    st.Page("app_pages/explore.py", url_path="explore", title="Explore", icon=":material/travel_explore:"),
    st.Page("app_pages/training.py", url_path="training", title="Training", icon=":material/model_training:"),
    st.Page("app_pages/jobs.py", url_path="jobs", title="Jobs", icon=":material/settings:"),
]).run()
