"""Dashboard: progress, label distribution, model quality over versions, per-class AP, corrections."""

from __future__ import annotations

import plotly.express as px
import streamlit as st

from app_pages.signin import signed_in_studio
from mumic_core.store.collection import class_counts, collection_counts
from mumic_core.store.dashboard import (
    annotator_agreement,
    correction_rates,
    model_history,
    per_class_ap,
)
from mumic_core.store.registry import active_version

s = signed_in_studio("review")
st.title("Dashboard")
counts = collection_counts(s)
done = counts["reviewed"] / counts["images"] if counts["images"] else 0.0
st.progress(done, text=f"Reviewed {counts['reviewed']} of {counts['images']} images ({done:.0%})")

version = active_version(s)
rows = class_counts(s, version.id if version else None)
if rows:
    long = [
        {"class": r["class"], "kind": k, "images": r[k]}
        for r in rows
        for k in ("human +", "human −", next(key for key in r if key.startswith("predicted")))
    ]
    fig = px.bar(long, x="class", y="images", color="kind", barmode="group", title="Label distribution")
    st.plotly_chart(fig, width="stretch")

history = model_history(s)
if history:
    fig = px.line(
        history,
        x="version",
        y="value",
        color="metric",
        markers=True,
        hover_data=["created", "status"],
        title="Model versions: validation GAP@10, GAP and mAP, oldest first",
    )
    fig.update_xaxes(type="category")
    fig.update_yaxes(range=[0, 1])
    st.plotly_chart(fig, width="stretch")
else:
    st.info("No trained model version yet: validation metrics appear after the first training.")

left, right = st.columns(2)
with left:
    st.subheader("Per-class AP")
    ap = per_class_ap(s)
    if ap:
        st.dataframe(
            ap,
            hide_index=True,
            width="stretch",
            column_config={k: st.column_config.NumberColumn(format="%.3f") for k in ap[0] if k != "class"},
        )
    else:
        st.caption("Appears after the first training.")
with right:
    st.subheader("How often reviewers changed the suggestion")
    rates = correction_rates(s)
    if rates:
        st.dataframe(
            rates,
            hide_index=True,
            width="stretch",
            column_config={"change rate": st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1)},
        )
    else:
        st.caption("Appears once labels are submitted on the Review page.")

st.subheader("Agreement between annotators")
agreement = annotator_agreement(s)
if agreement:
    st.dataframe(
        agreement,
        hide_index=True,
        width="stretch",
        column_config={"agreement": st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1)},
    )
    st.caption(
        "Second reviews against the first annotator's label of the same image and class. Cohen's kappa "
        "discounts the agreement expected by chance; it is left empty when both always said the same."
    )
else:
    st.caption(
        "Appears after second reviews: on the Review page choose the status *second review* to check "
        "images someone else labelled."
    )
