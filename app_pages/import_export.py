"""Import images and labels; export labels and the active model."""

from __future__ import annotations

import tempfile
from pathlib import Path

import streamlit as st

from mumic_core.auth import PermissionDenied
from mumic_core.collection import export_labels, import_files, import_folder, import_labels_csv
from mumic_core.registry import active_version, export_model_zip
from mumic_core.scoring import score_collection
from app_pages.signin import signed_in_studio

s = signed_in_studio("import")
st.title("Import and export")


def report_import(report) -> None:
    (st.success if report.added else st.warning)(report.summary())
    for line in report.lines():
        st.write(f"- {line}")


st.subheader("Upload images")
uploads = st.file_uploader("Drop images here (many at once)", accept_multiple_files=True, key="uploads")
if uploads and st.button("Import the uploaded files", type="primary"):
    with st.spinner("Checking and storing images…"):
        report = import_files(s, [(f.name, f.getvalue()) for f in uploads])
    report_import(report)
    version = active_version(s)
    if report.added and version:
        with st.spinner("Scoring the new images…"):
            score_collection(s, version)

st.subheader("Import a folder on the server")
root = s.settings.import_root
st.caption(f"Folders below `{root}` (MUMIC_IMPORT_ROOT). The command line imports any folder: "
           "`python -m mumic_core import FOLDER`.")
folder = st.text_input("Folder path", placeholder=str(root / "photos"))
if st.button("Import folder", disabled=not folder):
    try:
        with st.spinner("Importing…"):
            report = import_folder(s, Path(folder).expanduser())
        report_import(report)
        version = active_version(s)
        if report.added and version:
            score_collection(s, version)
    except (FileNotFoundError, NotADirectoryError, PermissionDenied) as exc:
        st.error(str(exc))

st.subheader("Import labels")
labels = st.file_uploader("Labels CSV: filename,labels (labels joined by |)", type=["csv"], key="labels_csv")
complete = st.checkbox("Listed labels are complete (other classes are absent)")
if labels and st.button("Import labels"):
    with tempfile.NamedTemporaryFile(suffix=".csv") as tmp:
        tmp.write(labels.getvalue())
        tmp.flush()
        try:
            result = import_labels_csv(s, Path(tmp.name), st.session_s.actor.username,
                                       complete=complete)
        except ValueError as exc:
            st.error(str(exc))
        else:
            st.success(f"{result.images_labelled} images labelled; {len(result.errors)} rows rejected")
            for err in result.errors:
                st.write(f"- {err}")

st.subheader("Export")
c1, c2, c3, c4 = st.columns(4)
c1.download_button("Labels CSV", export_labels(s, "csv"), "labels.csv", "text/csv")
c2.download_button("Labels JSON", export_labels(s, "json"), "labels.json", "application/json")
c3.download_button("COCO-style JSON", export_labels(s, "coco"), "labels_coco.json", "application/json")
version = active_version(s)
if version:
    c4.download_button(f"Model {version.name} (.zip)", lambda: export_model_zip(s, version),
                       f"mumic-{version.name}.zip", "application/zip")
