"""Background jobs run by the worker process."""

from __future__ import annotations

import streamlit as st

from app_pages.signin import signed_in_studio
from mumic_core.pipeline.queue import enqueue
from mumic_core.store.jobs import list_jobs

st.title("Jobs")
s = signed_in_studio("train")

if st.button("Re-score the collection with the active model"):
    job_id = enqueue(s, "score")
    st.success(f"Job {job_id} queued; the worker picks it up within a second or two.")


@st.fragment(run_every=2)
def job_table() -> None:
    jobs = list_jobs(s, limit=30)
    if not jobs:
        st.write("No jobs yet.")
        return
    st.dataframe(
        [
            {
                "id": j.id,
                "kind": j.kind,
                "status": j.status,
                "phase": j.phase,
                "progress": f"{j.progress:.0%}",
                "error": (j.error or "").splitlines()[0] if j.error else "",
                "created": j.created_at.strftime("%H:%M:%S") if j.created_at else "",
            }
            for j in jobs
        ],
        hide_index=True,
        width="stretch",
    )


job_table()
