"""Import images and labels; export labels and the active model."""

from __future__ import annotations

import io
import json
from pathlib import Path

import streamlit as st

from app_pages.signin import signed_in_studio
from app_pages.ui import isolate, md, refuse
from mumic_core.services.importing import (
    ImportOutcome,
    import_server_folder,
    import_uploads,
)
from mumic_core.store.auth import PermissionDenied
from mumic_core.store.classes import active_classes
from mumic_core.store.collection import importable_folders
from mumic_core.store.feeds import signed_file_url
from mumic_core.store.fiftyone_io import export_fiftyone
from mumic_core.store.label_io import TAG_MODES, export_labels, import_labels, list_imports, redeclare_import
from mumic_core.store.label_studio import export_tasks, labeling_config
from mumic_core.store.registry import active_version, export_model_zip

s = signed_in_studio("import")
st.title("Import and export")


def report_import(outcome: ImportOutcome) -> None:
    """The outcome, file by file, and the scoring job that brings the new images to Review."""
    report = outcome.report
    (st.success if report.added else st.warning)(report.summary())
    for name, reason in report.rejected + report.duplicates:  # as report.lines(), each part isolated
        st.write(f"- {md(name)}: {md(reason)}")
    if outcome.not_queued:
        st.error(md(f"The new images were stored but not queued for scoring: {outcome.not_queued}"))
    elif outcome.scoring_job is not None:
        st.info(
            f"Scoring job {outcome.scoring_job} queued: the new images reach the Review queue once the "
            "worker has scored them (see the Jobs page)."
        )


st.subheader("Upload images")
uploads = st.file_uploader("Drop images here (many at once)", accept_multiple_files=True, key="uploads")
if uploads and st.button("Import the uploaded files", type="primary"):
    with st.spinner("Checking and storing images…"):
        report_import(import_uploads(s, [(f.name, f.getvalue()) for f in uploads]))

st.subheader("Import a folder on the server")
folders = importable_folders(s)
folder = st.selectbox(
    "Folder in the import folder",
    folders,
    index=None,
    key="import_folder",
    format_func=isolate,
    placeholder="choose a folder" if folders else "no folders yet",
)
st.caption(
    "Put folders of images in the server's import folder (`incoming/` in the data folder, or "
    "MUMIC_IMPORT_ROOT) to import them here. The command line imports any folder: "
    "`python -m mumic_core import FOLDER`."
)
if st.button("Import folder", disabled=not folder):
    try:
        with st.spinner("Importing…"):
            outcome = import_server_folder(s, Path(folder))
    except (FileNotFoundError, NotADirectoryError, PermissionDenied) as exc:
        refuse(exc)
    else:
        report_import(outcome)

st.subheader("Import labels")
labels = st.file_uploader(
    "Labels: CSV (filename,labels with labels joined by |), a CSV or JSON export of this product, or a Label Studio "
    "JSON export",
    type=["csv", "json"],
    key="labels_file",
)
mode = st.radio(
    "Classes a row does not list are",
    list(TAG_MODES),
    format_func={
        "assumed": "assumed absent (tags: the default)",
        "partial": "unknown (partial labels)",
        "complete": "absent (every row is a full judgement)",
    }.get,
    horizontal=True,
    key="labels_mode",
    help="; ".join(f"{k}: {v}" for k, v in TAG_MODES.items())
    + ". Only a filename,labels CSV leaves classes out; an export says each label's state.",
)
if labels and st.button("Import labels", key="import_labels"):
    try:
        result = import_labels(s, labels.getvalue(), s.actor.username, mode=mode)
    except ValueError as exc:
        refuse(exc, f"{labels.name}: ")
    else:
        (st.success if not result.errors else st.warning)(result.summary())
        if result.warning():
            st.warning(md(result.warning()))
        for err in result.errors[:200]:
            st.write(f"- {md(err)}")
        if len(result.errors) > 200:
            st.write(f"- … and {len(result.errors) - 200} more")

MODE_WORDS = {"assumed": "assumed absent", "partial": "unknown", "complete": "absent"}
imports = [i for i in list_imports(s) if not i.undone]
if imports:
    with st.expander(f"Earlier label imports ({len(imports)})"):
        st.dataframe(
            [
                {
                    "import": i.submission_id,
                    "by": i.annotator,
                    "at": i.at.strftime("%Y-%m-%d %H:%M"),
                    "images": i.images,
                    "present": i.positives,
                    "absent": i.negatives,
                    "assumed absent": i.assumed_negatives,
                }
                for i in imports
            ],
            hide_index=True,
        )
        c1, c2 = st.columns([1, 2])
        chosen = c1.selectbox("Import", [i.submission_id for i in imports], key="redeclare_import")
        new_mode = c2.radio(
            "The classes its rows did not list are",
            list(TAG_MODES),
            format_func=MODE_WORDS.get,
            horizontal=True,
            key="redeclare_mode",
        )
        if st.button("Re-declare", key="redeclare"):
            try:
                changed = redeclare_import(s, int(chosen), new_mode)
            except (ValueError, PermissionDenied) as exc:
                refuse(exc)
            else:
                st.success(
                    f"Import {chosen}: the classes its rows left out are now {MODE_WORDS[new_mode]} "
                    f"({sum(changed.values())} labels changed). Labels people gave since stand."
                )


def fiftyone_zip(studio) -> bytes:
    buf = io.BytesIO()
    export_fiftyone(studio, buf)
    return buf.getvalue()


st.subheader("Export")
c1, c2, c3, c4 = st.columns(4)
# Made when clicked (a deferred download), without a rerun: a rerun would register the button's file
# again and could drop the one the click is fetching, leaving the button spinning.
c1.download_button("Labels CSV", lambda: export_labels(s, "csv"), "labels.csv", "text/csv", on_click="ignore")
c2.download_button(
    "Labels JSON", lambda: export_labels(s, "json"), "labels.json", "application/json", on_click="ignore"
)
c3.download_button(
    "COCO-style JSON", lambda: export_labels(s, "coco"), "labels_coco.json", "application/json", on_click="ignore"
)
version = active_version(s)
if version:
    ready = st.session_state.get("model_zip")
    if ready is None or ready[0] != version.name:
        if c4.button(f"Model {version.name} (.zip)", key="prepare_model", help="Zips the encoder and head first"):
            with st.spinner(f"Zipping model {version.name} (its encoder weights and head)…"):
                st.session_state["model_zip"] = ready = (version.name, export_model_zip(s, version))
    if ready is not None and ready[0] == version.name:
        c4.download_button(
            f"Download model {version.name} ({len(ready[1]) / 2**20:.1f} MiB)",
            ready[1],
            f"mumic-{version.name}.zip",
            "application/zip",
            type="primary",
            on_click=lambda: st.session_state.pop("model_zip", None),  # not kept in memory once downloaded
            key="download_model",
        )
st.caption(
    "CSV and JSON exports hold every current label of the active classes (present or absent, who said "
    "it, how and when) and read back exactly; the COCO-style file holds the present ones only."
)
api = s.settings.api_url
c1, c2, c3, _ = st.columns(4)
c1.download_button(
    "Label Studio tasks",
    lambda: json.dumps(export_tasks(s, lambda i: signed_file_url(s, api, i))),
    "mumic-label-studio-tasks.json",
    "application/json",
    on_click="ignore",
    help="Every image as a task with the active model's suggestions as predictions",
)
c2.download_button(
    "Label Studio config",
    lambda: labeling_config([c.name for c in active_classes(s)]),
    "mumic-label-studio-config.xml",
    "application/xml",
    on_click="ignore",
    help="The labelling config of a multi-label project over the active classes",
)
c3.download_button(
    "FiftyOne dataset (.zip)",
    lambda: fiftyone_zip(s),
    "mumic-fiftyone.zip",
    "application/zip",
    on_click="ignore",
    help="The images, people's labels and the model's scores as a FiftyOne image classification dataset",
)
st.caption(
    f"Label Studio tasks show images from the HTTP API at {md(api)} (`MUMIC_API_URL`). Label Studio's and "
    "FiftyOne's exports import back here as labels files (JSON) or with `labels fiftyone-import`; "
    "see the README's Label Studio and FiftyOne sections."
)
