"""Training: request a retraining, follow it live, compare versions, activate or roll back."""

from __future__ import annotations

import plotly.express as px
import streamlit as st

from app_pages.signin import signed_in_studio
from app_pages.ui import refuse
from mumic_core.errors import MumicError
from mumic_core.model.losses import DEFAULT_LOSS, LOSS_NAMES, LOSSES
from mumic_core.services.training import (
    new_human_labels,
    request_activation,
    request_training,
)
from mumic_core.store.jobs import job_log, list_jobs, request_cancel
from mumic_core.store.registry import active_version, describe, list_versions
from mumic_core.store.reports import (
    METRICS,
    job_summary,
    metric_bars,
    per_class_ap,
    validation_metrics,
    version_rows,
)
from mumic_core.store.settings import get_setting, set_setting
from mumic_core.store.workers import live_workers

st.title("Training")
s = signed_in_studio("train")
active = active_version(s)
st.info(f"**Active model:** {describe(active)}" if active else "No model yet: run `make run` first.")
if not live_workers(s):
    st.warning(
        "No background worker is running: requested jobs wait until one starts "
        "(`make run` starts it, or `python -m huey.bin.huey_consumer mumic_core.pipeline.worker.huey`)."
    )

with st.form("train"):
    st.subheader("Train a new version")
    st.caption(
        f"{new_human_labels(s)} new human labels since the last training. Training uses every "
        "label: positives, negatives and assumed negatives (unknown pairs are left out of the loss), "
        "and the same held-out images for every version."
    )
    c1, c2, c3 = st.columns(3)
    mode = c1.selectbox(
        "Mode",
        ["head", "full"],
        help="head: class embeddings and calibration on frozen "
        "encoders (seconds to minutes); full: fine-tunes the encoders (slower).",
    )
    policy_options = ["if-better", "always", "never"]
    policy = c2.selectbox(
        "Activate the result",
        policy_options,
        index=policy_options.index(get_setting(s, "promotion_policy")),
        format_func={
            "if-better": "if not worse than the active version",
            "always": "always",
            "never": "never (keep as candidate)",
        }.get,
    )
    with c3:
        steps = st.number_input(
            "Steps (head mode)",
            min_value=1,
            value=None,
            step=50,
            placeholder="default: 100",
            help="L-BFGS iterations per fit of the head on the frozen embeddings; empty = the default.",
        )
        epochs = st.number_input(
            "Epochs (full mode)",
            min_value=1,
            value=None,
            step=1,
            placeholder="default: 30",
            help="Passes over the labelled images; empty = the default.",
        )
    with st.expander("Loss"):
        loss = st.selectbox(
            "Loss",
            LOSS_NAMES,
            index=LOSS_NAMES.index(DEFAULT_LOSS),
            format_func=lambda name: f"{name}: {LOSSES[name].SUMMARY}",
            help="The README's table of losses says what each does with assumed negatives.",
        )
    if st.form_submit_button("Start training", type="primary"):
        try:
            job_id = request_training(
                s,
                {
                    "mode": mode,
                    "activate": policy,
                    "loss": loss,
                    "steps": int(steps) if steps else None,
                    "epochs": int(epochs) if epochs else None,
                },
            )
            st.success(f"Training job {job_id} queued.")
        except MumicError as exc:
            refuse(exc)


@st.fragment(run_every=1.0)
def live_jobs() -> None:
    jobs = list_jobs(s, limit=8)
    running = [j for j in jobs if j.status in ("queued", "running")]
    # A job that ended since the last look (also one queued and done between two looks, as a
    # quick activation is): versions and the active model may have changed, so the whole page
    # is drawn again.
    statuses = {j.id: j.status for j in jobs}
    seen = st.session_state.get("job-statuses")
    st.session_state["job-statuses"] = statuses
    if seen is not None and any(
        status not in ("queued", "running") and seen.get(job_id) != status for job_id, status in statuses.items()
    ):
        st.rerun(scope="app")
    st.subheader("Jobs")
    if not jobs:
        st.caption("No jobs yet.")
    for job in running:
        j = job_summary(job)
        with st.container(border=True):
            head, cancel = st.columns([5, 1])
            head.markdown(f"**Job {j['id']} · {j['kind']} · {j['status']}** — {j['phase']}")
            if cancel.button("Cancel", key=f"cancel-{j['id']}"):
                request_cancel(s, j["id"])
                st.rerun(scope="fragment")
            st.progress(
                min(1.0, j["progress"]),
                text=" · ".join(
                    x
                    for x in (j["position"], f"about {j['time_left']} left in this phase" if j["time_left"] else "")
                    if x
                ),
            )
            lines = job_log(s, j["id"], limit=12)
            st.code("\n".join(f"{r.at:%H:%M:%S}  {r.message}" for r in lines) or "(no log yet)", language=None)
    finished = [job_summary(j) for j in jobs if j.status not in ("queued", "running")]
    if finished:
        st.dataframe(
            [
                {
                    "job": j["id"],
                    "kind": j["kind"],
                    "status": j["status"],
                    "version": j["result"].get("version") or j["result"].get("candidate", ""),
                    "outcome": j["result"].get("outcome") or j["error"] or "",
                }
                for j in finished
            ],
            hide_index=True,
            width="stretch",
        )


live_jobs()

st.subheader("Versions")
versions = list_versions(s)
rows = version_rows(versions)
number = st.column_config.NumberColumn(format="%.3f")
st.dataframe(
    rows,
    hide_index=True,
    width="stretch",
    column_order=[
        "version",
        "status",
        "kind",
        *METRICS,
        *(f"parent {m}" for m in METRICS),
        "held-out images",
        "created",
        "description",
    ],
    column_config={k: number for k in [*METRICS, *(f"parent {m}" for m in METRICS)]},
)
st.caption(
    "Metrics are on the held-out split of the human labels at training time; 'parent' is the "
    "version it was trained from, scored on the same images."
)

measured = validation_metrics(versions)
if measured:
    fig = px.bar(
        metric_bars(versions),
        x="version",
        y="value",
        color="metric",
        barmode="group",
        title="Validation metrics by version",
        range_y=[0, 1],
    )
    st.plotly_chart(fig, width="stretch")
    names = [v.name for v in versions if v.name in measured]
    pick = st.multiselect("Compare per class", names, default=names[-2:])
    if pick:
        fig = px.bar(
            per_class_ap(versions, pick),
            x="class",
            y="AP",
            color="version",
            barmode="group",
            title="Average precision per class (held-out labels)",
            range_y=[0, 1],
        )
        st.plotly_chart(fig, width="stretch")
else:
    st.caption("Charts appear once a version has been trained.")

with st.container(border=True):
    st.markdown("**Activate or roll back**")
    others = [v for v in versions if v.status != "active"]
    if others:
        c1, c2 = st.columns([3, 1])
        target = c1.selectbox("Version", [v.name for v in others][::-1], label_visibility="collapsed")
        if c2.button("Activate", help="The worker re-scores the collection with it, then switches."):
            try:
                st.success(
                    f"Job {request_activation(s, target)} queued: {target} becomes active once "
                    "it has scored every image."
                )
            except MumicError as exc:
                refuse(exc)
    else:
        st.caption("Only one version so far.")

with st.container(border=True):
    st.markdown("**Automatic retraining**")
    c1, c2, c3 = st.columns([2, 1, 1])
    n = c1.number_input(
        "Retrain after this many new human labels (0 = off)",
        min_value=0,
        step=50,
        value=int(get_setting(s, "auto_retrain_labels")),
    )
    auto_mode = c2.selectbox(
        "Mode", ["head", "full"], key="auto-mode", index=["head", "full"].index(get_setting(s, "auto_retrain_mode"))
    )
    if c3.button("Save"):
        set_setting(s, "auto_retrain_labels", int(n))
        set_setting(s, "auto_retrain_mode", auto_mode)
        set_setting(s, "promotion_policy", policy)
        st.success(
            "Saved."
            + (
                f" A {auto_mode}-mode training starts after {int(n)} new labels."
                if n
                else " Automatic retraining is off."
            )
        )
