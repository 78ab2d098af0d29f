"""MuMIC Studio: navigation and the home page (what is in the collection, which model suggests)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import streamlit as st

from app_pages.signin import PAGE_PERMISSIONS, is_signed_in, sign_out_button, signed_in_studio
from app_pages.ui import CALLBACK_MS, show_error
from mumic_core.pipeline.scoring import load_scorer
from mumic_core.services.setup import FIRST_MODEL
from mumic_core.store.auth import ensure_first_admin
from mumic_core.store.collection import class_counts, collection_counts
from mumic_core.store.jobs import list_jobs
from mumic_core.store.registry import active_version, describe
from mumic_core.store.studio import open_studio
from mumic_core.store.workers import live_workers


@st.cache_resource
def studio():
    """The store (migrated once per server); on a store without accounts, the first admin's
    password is printed to the server's console, once."""
    store = open_studio()
    password = ensure_first_admin(store)
    if password:
        print(
            f"\nFirst start: an admin account was created.\n  username: admin\n  password: {password}\n"
            "It is shown only this once. Change it: python -m mumic_core users passwd admin\n",
            flush=True,
        )
    return store


@st.cache_resource
def warm_up_model() -> threading.Thread:
    """Load the active model in the background once per server, so that the first zero-shot
    request (a new class) does not pay for importing torch and reading weights."""

    def load() -> None:
        version = active_version(studio())
        if version is not None:
            try:
                load_scorer(studio(), version)
            except Exception:  # noqa: BLE001 - a page that needs the model reports the error itself
                pass

    thread = threading.Thread(target=load, name="mumic-warm-up", daemon=True)
    thread.start()
    return thread


def first_model_job():
    """The training job `init` queued on the demo's pre-labels (when the only model was untrained), if any."""
    return next((j for j in list_jobs(me, limit=50, kind="train") if j.params.get("reason") == FIRST_MODEL), None)


@st.fragment(run_every=3.0)
def first_model_progress() -> None:
    """The first model's training, followed until it ends; then the whole page is drawn again."""
    job = first_model_job()
    if job is None or job.status not in ("queued", "running"):
        st.rerun(scope="app")
    st.progress(
        min(1.0, job.progress),
        text=f"Training a first model on the demo's pre-labels (job {job.id}, {job.status}, "
        f"{job.phase or 'waiting'}): the suggestions switch to it when it is done, in about two minutes "
        "once the worker runs.",
    )


def first_model_note(version) -> None:
    """While the first model trains: its progress (polled); once it is active: that the
    suggestions now come from it."""
    job = first_model_job()
    if job is None:
        return
    if job.status in ("queued", "running"):
        first_model_progress()
    elif job.status == "succeeded" and version is not None and version.kind != "builtin-random":
        st.success(f"Suggestions now come from {version.name}, fine-tuned on the demo's pre-labels (job {job.id}).")
    elif job.status == "failed":
        st.caption(f"Training a first model on the demo's pre-labels failed (job {job.id}); see the Jobs page.")


def home() -> None:
    s = me  # signed in above, before the navigation runs this page
    st.title("MuMIC Studio")
    st.caption("Multi-label image labelling: a CLIP model proposes labels, people accept or fix them.")

    version = active_version(s)
    if version is None:
        st.error("No model is registered yet. Run `make run` (or `python -m mumic_core init`).")
    elif version.kind == "builtin-random":
        st.warning(
            f"**Model in use:** {describe(version)}. Train on your labels "
            "on the Training page or configure pretrained CLIP weights (see README)."
        )
    else:
        st.info(f"**Model in use:** {describe(version)}")
    first_model_note(version)

    counts = collection_counts(s)
    cols = st.columns(4)
    cols[0].metric("Images", counts["images"])
    cols[1].metric("Reviewed images", f"{counts['reviewed']} / {counts['images']}")
    cols[2].metric("Active classes", counts["classes"])
    cols[3].metric(
        "Human labels",
        counts["human"],
        help=f"plus {counts['annotations'] - counts['human']} assumed negatives (classes not named on labelled images)",
    )

    st.subheader("Classes")
    rows = class_counts(s, version.id if version else None)
    if rows:
        st.dataframe(rows, hide_index=True, width="stretch")
    else:
        st.write("No classes yet: add them with `python -m mumic_core classes add NAME --prompt ...`.")

    st.subheader("Recent jobs")
    workers = live_workers(s)
    if workers:
        st.caption(
            f"Background workers: {len(workers)} running — "
            + ", ".join(f"{w.name} ({w.device})" for w in workers)
            + "."
        )
    else:
        st.caption("Background workers: none running — queued jobs wait until one starts (`make run` starts one).")
    jobs = list_jobs(s, limit=5)
    if jobs:
        st.dataframe(
            [
                {
                    "id": j.id,
                    "kind": j.kind,
                    "status": j.status,
                    "phase": j.phase,
                    "progress": f"{j.progress:.0%}",
                    "created": j.created_at.strftime("%Y-%m-%d %H:%M:%S") if j.created_at else "",
                }
                for j in jobs
            ],
            hide_index=True,
            width="stretch",
        )
    else:
        st.write("No jobs yet.")


st.set_page_config(page_title="MuMIC Studio", page_icon=":material/label:", layout="wide")
PAGES = [
    ("review", "Review", ":material/fact_check:"),
    ("classes", "Classes", ":material/label:"),
    ("dashboard", "Dashboard", ":material/monitoring:"),
    ("import_export", "Import / export", ":material/swap_vert:"),
    ("explore", "Explore", ":material/travel_explore:"),
    ("training", "Training", ":material/model_training:"),
    ("jobs", "Jobs", ":material/settings:"),
    ("accounts", "Accounts", ":material/group:"),
    ("api_tokens", "API tokens", ":material/key:"),
]


# The error boundary of every page: an error no page handled is logged with its traceback on the
# server and shown as one line (st.stop and st.rerun are BaseExceptions: they pass through).
def pages(may=lambda permission: True) -> list:
    return [st.Page(home, title="Home", icon=":material/home:", default=True)] + [
        st.Page(f"app_pages/{name}.py", url_path=name, title=title, icon=icon)
        for name, title, icon in PAGES
        if may(PAGE_PERMISSIONS[name])
    ]


def log_run(run_log: Path, page: str, server_ms: float) -> None:
    """One line per script run (time, page, server milliseconds) when MUMIC_RUN_LOG is set: what
    each interaction costs the server (benchmarks/annotator_speed.py reads it). No Streamlit call
    here: it runs after st.stop() and st.rerun(), where one would raise again."""
    with run_log.open("a", encoding="utf-8") as f:
        f.write(f"{time.time():.3f}\t{page}\t{server_ms:.1f}\n")


# The widget callbacks of this run have already run (before the script): their time is added.
started, page_name, callbacks_ms = time.perf_counter(), "signin", st.session_state.pop(CALLBACK_MS, 0.0)
run_log: Path | None = None
try:
    run_log = studio().settings.run_log
    warm_up_model()
    if not is_signed_in():  # no menu beside the sign-in form; the address (a deep link) is kept
        st.navigation(pages(), position="hidden")
    me = signed_in_studio()  # the sign-in form, until someone signs in
    sign_out_button(me)
    page = st.navigation(pages(me.actor.may))
    page_name = page.url_path or "home"
    page.run()
except Exception as exc:  # noqa: BLE001 - see above
    show_error(exc)
finally:
    if run_log is not None:
        log_run(run_log, page_name, callbacks_ms + 1000 * (time.perf_counter() - started))
