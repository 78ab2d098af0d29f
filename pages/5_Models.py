"""Model versions with their validation metrics."""

from __future__ import annotations

import plotly.express as px
import streamlit as st

from mumic_core.registry import describe, list_versions
from mumic_core.studio import open_studio

st.title("Model versions")
s = open_studio(migrate=False)
versions = list_versions(s)
if not versions:
    st.write("No model versions yet.")
    st.stop()

rows = []
for v in versions:
    val = v.metrics.get("val", {})
    rows.append({"version": v.name, "status": v.status, "kind": v.kind, "description": describe(v),
                 "GAP@10": val.get("gap_at_10"), "GAP": val.get("gap"), "mAP": val.get("map"),
                 "created": v.created_at.strftime("%Y-%m-%d %H:%M")})
number = st.column_config.NumberColumn(format="%.3f")
st.dataframe(rows, hide_index=True, width="stretch", column_order=["version", "status", "GAP@10", "GAP", "mAP",
             "created", "description"], column_config={"GAP@10": number, "GAP": number, "mAP": number,
                                                       "description": st.column_config.TextColumn(width="large")})

trained = [r for r in rows if r["mAP"] is not None]
if trained:
    long = [{"version": r["version"], "metric": m, "value": r[m]} for r in trained for m in ("GAP@10", "GAP", "mAP")]
    fig = px.bar(long, x="version", y="value", color="metric", barmode="group",
                 title="Validation metrics (held-out split of the human labels)")
    st.plotly_chart(fig, width="stretch")
else:
    st.caption("Metrics appear once a version has been trained: `python -m mumic_core train`.")
