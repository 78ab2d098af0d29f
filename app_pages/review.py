"""Review: accept or fix the model's ranked suggestions, one image at a time or a page at a time."""

from __future__ import annotations

from dataclasses import replace
from uuid import uuid4

import streamlit as st
from streamlit_shortcuts import add_shortcuts

from app_pages.signin import signed_in_studio
from app_pages.ui import md, refuse, show_image
from mumic_core.errors import REFUSALS, StaleView, one_line
from mumic_core.model.active_learning import DEFAULT_WEIGHTS, STRATEGIES
from mumic_core.pipeline.label_errors import (
    INLINE_LABELLED_IMAGES,
    labelled_image_count,
    suspects_of_job,
    suspicious_labels,
)
from mumic_core.pipeline.planning import order_queue
from mumic_core.pipeline.queue import enqueue
from mumic_core.pipeline.scoring import unscored_count
from mumic_core.services.review import accept_above, submit, submit_many, undo
from mumic_core.store.classes import list_classes
from mumic_core.store.jobs import JobConflict, active_job, get_job, list_jobs
from mumic_core.store.leases import browser_seat, claim, leased_to_others, release
from mumic_core.store.queue import (
    PLAN_WINDOW,
    SORTS,
    STATUSES,
    QueueFilter,
    image_views,
    newest_image_id,
    queue_count,
    queue_page,
    submission_image_ids,
    thresholds_for,
)
from mumic_core.store.registry import describe, list_versions, load_head
from mumic_core.store.renditions import TILE, VIEW

s = signed_in_studio("review")
state = st.session_state
state.setdefault("offset", 0)
state.setdefault("flash", None)
# This browser (its tabs and reloads), for review leases; a fresh id when there is no cookie.
state.setdefault("holder", browser_seat(st.context.cookies.get("_streamlit_xsrf")) or uuid4().hex)

versions = [v for v in list_versions(s)]
active = next((v for v in versions if v.status == "active"), None)
classes = list_classes(s)
class_by_id = {c.id: c for c in classes}

STRATEGY_HELP = {
    "uncertainty": "some class's probability is near that class's decision threshold",
    "entropy": "the probabilities as a whole are undecided",
    "rare": "likely positives of classes with few human labels so far",
    "diversity": "unlike the images already labelled (k-centre greedy on the embeddings)",
    "random": "a random sample, unbiased",
}
assert set(STRATEGY_HELP) == set(STRATEGIES)


def open_suspects(found: list, source: str) -> None:
    """Put the suspected images in the review queue, each with its suspected labels."""
    state.suspects, state.suspect_classes = {}, {}
    for x in found:
        state.suspect_classes.setdefault(x.image_id, []).append(x.class_id)
        state.suspects.setdefault(x.image_id, []).append(
            f"**{md(x.class_name)}** is labelled {'present' if x.given else 'absent'}, "
            f"the model gives {x.probability:.0%}"
        )
    state.review_selection = tuple(state.suspects)
    state.selection_source = source


@st.fragment(run_every=2.0)
def watch_label_errors_job(job_id: int) -> None:
    """Progress of a background search for wrong labels; the page updates when it ends."""
    job = get_job(s, job_id)
    if job.status not in ("queued", "running"):
        st.rerun(scope="app")
    st.caption(f"Looking for likely wrong labels in the background (job {job.id}, {job.status}, {job.progress:.0%}).")


def suspicious_labels_panel() -> None:
    """Find likely wrong labels: at once for small collections, as a worker job for large ones."""
    job = next(iter(list_jobs(s, limit=1, kind="label_errors")), None)
    running = job is not None and job.status in ("queued", "running")
    if st.button(
        "Find likely wrong labels",
        key="suspicious",
        disabled=running,
        help="Cross-validated predictions and cleanlab rank the human labels that disagree most with "
        "the model; confirm or fix each here.",
    ):
        if labelled_image_count(s) <= INLINE_LABELLED_IMAGES:
            try:
                with st.spinner("Cross-validating on the human labels…"):
                    open_suspects(suspicious_labels(s, version, limit=100), "suspicious labels")
            except ValueError as exc:
                refuse(exc)
            return
        try:
            job_id = enqueue(s, "label_errors", {"version_id": version.id, "limit": 200})
        except JobConflict as exc:
            refuse(exc)
            return
        state.flash = f"Looking for likely wrong labels in the background (job {job_id})."
        st.rerun()
    if running:
        watch_label_errors_job(job.id)
    elif job is not None and job.status == "failed":
        st.caption(f"The last search for wrong labels failed (job {job.id}): {(job.error or '').splitlines()[0]}")
    elif job is not None and job.status == "succeeded" and state.get("suspects_job") != job.id:
        found = suspects_of_job(job.result)
        when = job.finished_at.strftime("%H:%M") if job.finished_at else ""
        if not found:
            st.caption(f"No likely wrong labels found ({when}, job {job.id}).")
        elif st.button(f"Review {len(found)} likely wrong labels (found {when}, job {job.id})", key="suspects_job_btn"):
            state.suspects_job = job.id
            open_suspects(found, f"suspicious labels (job {job.id})")
            st.rerun()


with st.sidebar:
    mode = st.radio("Mode", ["One image", "Grid"], horizontal=True, key="mode")
    st.subheader("Queue")
    status = st.selectbox("Status", STATUSES, index=1, key="status")
    cls_choice = st.selectbox(
        "Class",
        [None] + [c.id for c in classes],
        key="class_filter",
        format_func=lambda i: "any class" if i is None else class_by_id[i].name,
    )
    lo, hi = st.slider(
        "Confidence",
        0.0,
        1.0,
        (0.0, 1.0),
        0.05,
        key="conf",
        help="Of the chosen class, or of each image's top suggestion.",
    )
    sort = st.selectbox(
        "Order",
        ("active learning",) + SORTS,
        key="sort",
        help="active learning: the images whose labels would teach the model most, by the "
        "strategies below; priority: most uncertain suggestion first",
    )
    weights: dict[str, float] = {}
    if sort == "active learning":
        with st.expander("Strategy weights"):
            for name, tip in STRATEGY_HELP.items():
                w = st.slider(name, 0.0, 1.0, DEFAULT_WEIGHTS.get(name, 0.0), 0.25, key=f"w_{name}", help=tip)
                if w > 0:
                    weights[name] = w
        st.caption(
            "Mix: "
            + (" · ".join(f"{k} {v:g}" for k, v in weights.items()) or "no strategy weighted; most uncertain first")
        )
    version = (
        st.selectbox(
            "Model version",
            versions,
            index=versions.index(active) if active else 0,
            format_func=lambda v: f"{v.name} ({v.status})",
            key="version",
        )
        if versions
        else None
    )
    blind = st.toggle(
        "Blind (hide suggestions)", key="blind", help="Label without seeing the model's proposals, to avoid anchoring."
    )
    if version is not None:
        suspicious_labels_panel()

if version is None:
    st.error("No model version yet: run `make run` or `python -m mumic_core init`.")
    st.stop()

selection = state.get("review_selection")
if selection:
    left, right = st.columns([4, 1])
    source = state.get("selection_source", "the Explore page")
    left.info(f"Reviewing the {len(selection)} images chosen from {source} (whatever their status).")
    if right.button("Show the whole queue"):
        state.review_selection, state.selection_source, state.suspects, state.suspect_classes = None, None, {}, {}
        st.rerun()
filt = QueueFilter(
    version_id=version.id,
    class_id=cls_choice,
    min_score=lo,
    max_score=hi,
    status="all" if selection else status,
    sort="priority" if sort == "active learning" else sort,
    image_ids=tuple(selection) if selection else None,
    reviewer=s.actor.username,
)
second_review = status == "second review" and not selection
filter_key = (version.id, cls_choice, lo, hi, status, sort, selection)
if state.get("filter_key") != filter_key:
    state.filter_key, state.offset = filter_key, 0

if version.kind == "builtin-random":
    st.warning(f"Suggestions by {describe(version)}", icon=":material/warning:")
else:
    st.caption(f"Suggestions by {describe(version)}")
if waiting := unscored_count(s, version.id):
    scoring = active_job(s, "score")
    st.info(
        f"{waiting} image{'s wait' if waiting > 1 else ' waits'} for scores by {version.name} and "
        f"{'are' if waiting > 1 else 'is'} not in this queue yet: "
        + (
            f"scoring job {scoring.id} is {scoring.status}."
            if scoring
            else "no scoring job is queued; an admin can start one on the Jobs page."
        ),
        icon=":material/hourglass:",
    )
if state.flash:
    st.toast(state.flash)
    state.flash = None
if state.get("error"):
    st.error(state.error)
    state.error = None

planned = sort == "active learning" and bool(weights)
# Images open in other review sessions are skipped (see mumic_core/store/leases.py).
busy = leased_to_others(s, state.holder)
if planned:
    # Plan once per filter and weights (and again when images are imported); then each run
    # checks only the images about to be shown and drops those that have left the queue
    # (reviewed here or by someone else). An undo puts its images back (see do_undo).
    # Plans are kept per filter (the last 8), so switching back to a queue does not plan again.
    plan_key, newest = (filter_key, tuple(sorted(weights.items()))), newest_image_id(s)
    plans = state.setdefault("plans", {})
    if plan_key not in plans or not plans[plan_key][0] or newest > plans[plan_key][1]:
        plans[plan_key] = (order_queue(s, filt, weights), newest)
        while len(plans) > 8:
            plans.pop(next(iter(plans)))
    state.plan = plans[plan_key][0]
    visible_plan = [i for i in state.plan if i not in busy]
    window = visible_plan[state.offset : state.offset + PLAN_WINDOW]
    gone = set(window) - set(queue_page(s, replace(filt, image_ids=tuple(window)), 0, len(window)))
    if gone:
        state.plan = [i for i in state.plan if i not in gone]
        plans[plan_key] = (state.plan, newest)
        visible_plan = [i for i in visible_plan if i not in gone]
    total = len(visible_plan)
else:
    total = queue_count(s, replace(filt, skip_leased_by_others=state.holder))


def page_ids(offset: int, n: int) -> list[int]:
    """One page of the queue, in active-learning order when that is chosen; no image another
    session holds."""
    if planned:
        return visible_plan[offset : offset + n]
    return queue_page(s, replace(filt, skip_leased_by_others=state.holder), offset, n)


head = load_head(s, version)
thresholds = thresholds_for(head.thresholds if head else None, [c.name for c in classes])


def advance_after_submit() -> None:
    if status != "unreviewed":  # otherwise the reviewed image leaves the queue by itself
        state.offset += 1


def do_undo() -> None:
    sid = undo(s, s.actor.username)
    state.flash = f"Undid submission {sid}." if sid else "Nothing of yours to undo."
    if sid and state.get("plan"):  # the undone images are back in the queue: show them next
        back = submission_image_ids(s, sid)
        state.plan[state.offset : state.offset] = [i for i in back if i not in set(state.plan)]


if busy:
    others = sorted(set(busy.values()) - {s.actor.username})
    where = (
        f"open for {', '.join(others)}" + (" and in your other tabs" if s.actor.username in busy.values() else "")
        if others
        else "open in your other tabs or windows"
    )
    st.caption(
        f"{len(busy)} image{'s are' if len(busy) > 1 else ' is'} {where}, so skipped here; "
        "each is free again once reviewed, left, or after 10 minutes."
    )
if total == 0:
    release(s, state.holder)
    st.info("Nothing in this queue. Change the filters, or all images here are reviewed.")
    if st.button("Undo my last submission", key="undo_empty"):
        do_undo()
        st.rerun()
    st.stop()

if mode == "One image":
    state.offset = min(state.offset, total - 1)
    ids = claim(
        s,
        state.holder,
        s.actor.username,
        page_ids(state.offset, 5),
        want=1,
        unreviewed_only=status == "unreviewed" and not selection,
    )
    if not ids:  # another session took these images a moment ago
        st.rerun()
    [view] = image_views(
        s, ids, version.id, top_k=9, thresholds=thresholds, also=state.get("suspect_classes"), display=VIEW
    )
    st.markdown(
        f"**Image {state.offset + 1} of {total}** · {md(view.name)} · {view.width}×{view.height}"
        + (f" · reviewed {view.review_count}×" if view.review_count else "")
    )
    if lines := state.get("suspects", {}).get(view.image_id):
        st.warning(
            "Suspicious: a model that never saw this image disagrees with "
            + ("this label: " if len(lines) == 1 else "these labels: ")
            + "; ".join(lines)
            + ".",
            icon=":material/report:",
        )
    left, right = st.columns([3, 2], gap="large")
    show_image(left, view.display)
    key = f"dec_{view.image_id}"
    if key not in state:
        state[key] = {
            sg.class_id: sg.proposed if sg.class_id in view.assumed else view.labels.get(sg.class_id, sg.proposed)
            for sg in view.suggestions
        }

    def toggle(class_id: int) -> None:
        state[key][class_id] = not state[key][class_id]

    def decisions_now() -> dict[int, bool]:
        """What the person has said about this image so far (read from the widgets' state)."""
        if blind:
            picked = set(state.get(f"blind_{view.image_id}", []))
            if state.get(f"abs_{view.image_id}", True):
                return {c.id: c.id in picked for c in classes}
            return {c: True for c in picked}
        out = dict(state[key])
        out.update({c: True for c in state.get(f"add_{view.image_id}", [])})
        return out

    # Actions run as callbacks, before the script reruns: one run per key press or click.
    def on_submit(reject: bool) -> None:
        decisions = decisions_now()
        if reject:
            decisions = {c: False for c in state[key]} if not blind else {c: False for c in decisions}
        pos = {c for c, v in decisions.items() if v}
        neg = {c for c, v in decisions.items() if not v}
        try:
            sid = submit(s, view, pos, neg, s.actor.username, second_review)
        except StaleView as exc:  # reload this image's toggles from the labels now stored
            state.error = f"Not saved: {md(view.name)} was {md(exc)}"
            state.pop(key, None)
            state.pop(f"add_{view.image_id}", None)
            return
        except ValueError as exc:
            state.error = md(one_line(exc, REFUSALS))
            return
        state.flash = f"Saved {len(pos)} present, {len(neg)} absent (submission {sid})."
        advance_after_submit()

    def on_move(step: int) -> None:
        state.offset = min(max(0, state.offset + step), total - 1)

    with right:
        if not blind:
            st.markdown("**Suggestions**, most confident first · keys `1`–`9` toggle")
            st.caption(
                "Filled = present. A label starts filled when its probability reaches the class's decision "
                "threshold (tuned on the validation split; 50 % before any training) or a person said so. "
                "Accept saves the unfilled ones as absent and every class not shown as *assumed absent*."
            )
            for k, sug in enumerate(view.suggestions, start=1):
                present = state[key][sug.class_id]
                said = (
                    " · assumed absent"
                    if sug.class_id in view.assumed
                    else {True: " · said present", False: " · said absent"}.get(view.labels.get(sug.class_id), "")
                )
                st.button(
                    f"{k}. {md(sug.name)} — {sug.probability:.0%}{said}",
                    key=f"t{k}",
                    width="stretch",
                    type="primary" if present else "secondary",
                    on_click=toggle,
                    args=(sug.class_id,),
                    icon=":material/check_box:" if present else ":material/check_box_outline_blank:",
                )
            st.multiselect(
                "Add a missing label",
                [c.id for c in classes if c.id not in state[key]],
                key=f"add_{view.image_id}",
                format_func=lambda i: class_by_id[i].name,
                placeholder="type to search classes",
            )
        else:
            st.multiselect(
                "Classes present",
                [c.id for c in classes],
                key=f"blind_{view.image_id}",
                default=[c for c, p in view.labels.items() if p and c in class_by_id],
                format_func=lambda i: class_by_id[i].name,
            )
            st.checkbox(
                "All other classes are absent",
                value=True,
                key=f"abs_{view.image_id}",
                help="Checked: every class not picked is saved as absent. Unchecked: as assumed absent "
                "(probably absent, but a missed label is possible).",
            )
        b1, b2 = st.columns(2)
        b1.button(
            "Accept",
            type="primary",
            key="accept",
            width="stretch",
            help="ctrl+enter",
            on_click=on_submit,
            args=(False,),
        )
        b2.button(
            "Reject all",
            key="reject",
            width="stretch",
            help="shift+enter: every suggestion absent",
            on_click=on_submit,
            args=(True,),
        )
        b3, b4, b5 = st.columns(3)
        b3.button("← Previous", key="prev", width="stretch", disabled=state.offset == 0, on_click=on_move, args=(-1,))
        b4.button("Next →", key="next", width="stretch", on_click=on_move, args=(1,))
        b5.button("Undo", key="undo", width="stretch", help="ctrl+z: undo your last submission", on_click=do_undo)
    # The same shortcut set on every run: the component then stays mounted and keeps listening.
    add_shortcuts(
        accept="ctrl+enter",
        reject="shift+enter",
        prev="arrowleft",
        next="arrowright",
        undo="ctrl+z",
        **{f"t{k}": str(k) for k in range(1, 10)},
    )
else:
    c1, c2, c3 = st.columns([1, 2, 2])
    per_page = c1.selectbox("Per page", [8, 12, 24], index=1, key="per_page")
    t = c2.slider("Threshold t", 0.05, 0.95, 0.5, 0.05, key="grid_t")
    pages = max(1, -(-total // per_page))
    page = c3.number_input(f"Page (of {pages})", 1, pages, min(pages, state.offset // per_page + 1), key="grid_page")
    state.offset = (page - 1) * per_page
    views = image_views(
        s,
        claim(
            s,
            state.holder,
            s.actor.username,
            page_ids(state.offset, per_page),
            unreviewed_only=status == "unreviewed" and not selection,
        ),
        version.id,
        top_k=3,
        thresholds=thresholds,
        display=TILE,
    )
    fixes: dict[int, tuple[set[int], set[int]]] = {}
    cols = st.columns(4)
    for k, view in enumerate(views):
        with cols[k % 4]:
            show_image(st, view.display)
            if blind:
                options = [c.id for c in classes]
                default = [c for c, p in view.labels.items() if p and c in class_by_id]
                top = []
            else:
                top = [sg for sg in view.suggestions]
                st.caption(" · ".join(f"{md(sg.name)} {sg.probability:.0%}" for sg in top))
                options = [c.id for c in classes]
                default = [sg.class_id for sg in top if sg.probability >= t]
                default += [c for c, p in view.labels.items() if p and c in class_by_id and c not in default]
            chosen = st.multiselect(
                "Present",
                options,
                default=default,
                key=f"g_{view.image_id}_{t}",
                format_func=lambda i: class_by_id[i].name,
                label_visibility="collapsed",
            )
            st.caption(  # the box is narrow: say in full what it holds
                "Present: " + (", ".join(md(class_by_id[c].name) for c in chosen) if chosen else "nothing")
            )
            fixes[view.image_id] = (set(chosen), {sg.class_id for sg in top} - set(chosen))
    b1, b2, b3 = st.columns(3)
    try:
        if b1.button(f"Accept every suggestion ≥ {t:.2f} on this page", type="primary", disabled=blind):
            n = accept_above(s, views, t, s.actor.username, second_review)
            state.flash = f"Accepted {n} suggestions on {len(views)} images."
            st.rerun()
        if b2.button("Save this page as shown"):
            sid = submit_many(s, fixes, views, s.actor.username, second_review)
            state.flash = f"Saved {len(fixes)} images (submission {sid})."
            st.rerun()
    except StaleView as exc:
        state.error = f"Not saved: images were {md(exc)}"
        for image_id in exc.image_ids:
            state.pop(f"g_{image_id}_{t}", None)
        st.rerun()
    if b3.button("Undo my last submission"):
        do_undo()
        st.rerun()
