"""Review: accept or fix the model's ranked suggestions, one image at a time or a page at a time."""

from __future__ import annotations

import time
from dataclasses import replace
from uuid import uuid4

import streamlit as st

from app_pages.class_sweep import class_sweep
from app_pages.grid_panel import grid_panel, grid_tile, last_grid_action
from app_pages.review_panel import SHOWN, last_action, panel_items, review_panel
from app_pages.signin import signed_in_studio
from app_pages.ui import md, refuse, show_image, timed_callback, watch_job
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
from mumic_core.services.review import redo, submit, submit_many, undo
from mumic_core.store.classes import list_classes
from mumic_core.store.jobs import JobConflict, active_job, list_jobs
from mumic_core.store.leases import browser_seat, claim, leased_to_others, release
from mumic_core.store.queue import (
    PLAN_WINDOW,
    SORTS,
    STATUSES,
    QueueFilter,
    image_names,
    image_views,
    newest_image_id,
    queue_count,
    queue_page,
    submission_decisions,
    submission_image_ids,
    thresholds_for,
)
from mumic_core.store.registry import describe, list_versions, load_head
from mumic_core.store.renditions import TILE, VIEW

s = signed_in_studio("review")
state = st.session_state
state.setdefault("offset", 0)
state.setdefault("review_started", time.time())  # this browser session's pace counts from here
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
        state.suspect_classes.setdefault(x.image_id, {})[x.class_id] = x.probability
        state.suspects.setdefault(x.image_id, []).append(
            f"**{md(x.class_name)}** is labelled {'present' if x.given else 'absent'}, "
            f"the held-out model gives {x.probability:.0%}"
        )
    state.review_selection = tuple(state.suspects)
    state.selection_source = source


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
        watch_job(s, job.id, "Looking for likely wrong labels")
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
    mode = st.radio(
        "Mode",
        ["One image", "Grid", "Class sweep"],
        horizontal=True,
        key="mode",
        help="One image: every class of one picture. Grid: a page of pictures with their top suggestions. "
        "Class sweep: one class over many pictures, present or absent with a click.",
    )
    st.subheader("Queue")
    sweeping = mode == "Class sweep"
    if sweeping:
        st.caption("A class sweep has its own queue: the images nobody has judged for its class.")
    status = st.selectbox("Status", STATUSES, index=1, key="status", disabled=sweeping)
    cls_choice = st.selectbox(
        "Class",
        [None] + [c.id for c in classes],
        key="class_filter",
        format_func=lambda i: "any class" if i is None else class_by_id[i].name,
        placeholder="any class",
        disabled=sweeping,
    )
    lo, hi = st.slider(
        "Confidence",
        0.0,
        1.0,
        (0.0, 1.0),
        0.05,
        key="conf",
        help="Of the chosen class, or of each image's top suggestion.",
        disabled=sweeping,
    )
    sort = st.selectbox(
        "Order",
        ("active learning",) + SORTS,
        key="sort",
        help="active learning: the images whose labels would teach the model most, by the "
        "strategies below; priority: most uncertain suggestion first",
        disabled=sweeping,
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


def count_reviewed(n: int) -> None:
    """This browser session's pace: when each batch of reviewed images was saved."""
    state.setdefault("reviewed_at", []).append((time.time(), n))


def progress_line(remaining: int) -> str:
    """This session's count, decisions per hour, what remains, and the time left at that pace."""
    done = state.get("reviewed_at", [])
    n = sum(k for _, k in done)
    if not n:
        return f"{remaining} {'image' if remaining == 1 else 'images'} left in this queue."
    started = state.get("review_started", done[0][0])
    hours = max(time.time() - started, 30.0) / 3600
    rate = n / hours
    left = remaining / rate if rate else 0
    eta = f"{left * 60:.0f} min" if left < 1 else f"{left:.1f} h"
    did = f"{n} image" if n == 1 else f"{n} images"
    return f"This session: {did}, {rate:.0f} per hour · {remaining} left in this queue · about {eta} at this pace."


if mode == "Class sweep":  # its own queue: the images nobody has judged for the chosen class
    release(s, state.holder)
    class_sweep(s, version, classes, count_reviewed)
    st.stop()

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
    """Undo this person's last submission; its images come back first, with what was decided."""
    sid = undo(s, s.actor.username)
    if not sid:
        state.flash = "Nothing of yours to undo."
        return
    decided = submission_decisions(s, sid)
    back = sorted(decided)
    for image_id, (pos, _) in decided.items():
        state.setdefault("restore", {})[image_id] = set(pos)
    state.setdefault("redo", []).append(sid)
    state.flash = f"Undid submission {sid} ({describe_images(back)}): its decision is back on screen."
    if back and mode == "One image":
        state.show_first = back[0]
    if back and state.get("plan"):  # the undone images are back in the queue: show them next
        state.plan[state.offset : state.offset] = [i for i in back if i not in set(state.plan)]


def do_redo() -> None:
    """Say again what the last undone submission said."""
    if not state.get("redo"):
        state.flash = "Nothing to redo."
        return
    undone = state.redo.pop()
    try:
        sid = redo(s, undone, version.id, s.actor.username)
    except (StaleView, ValueError) as exc:
        state.error = md(one_line(exc, REFUSALS))
        return
    for image_id in submission_image_ids(s, sid):
        state.get("restore", {}).pop(image_id, None)
    state.flash = f"Redid submission {undone} as {sid} ({describe_images(submission_image_ids(s, sid))})."


def describe_images(image_ids: list[int]) -> str:
    names = image_names(s, image_ids[:3])
    shown = ", ".join(md(names.get(i, str(i))) for i in image_ids[:3])
    return shown + (f" and {len(image_ids) - 3} more" if len(image_ids) > 3 else "")


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
    candidates = page_ids(state.offset, 5)
    if (first := state.get("show_first")) is not None:  # an undone image comes back first
        candidates = [first] + [i for i in candidates if i != first]
        state.show_first = None
    ids = claim(
        s,
        state.holder,
        s.actor.username,
        candidates,
        want=1,
        unreviewed_only=status == "unreviewed" and not selection and first is None,
    )
    if not ids:  # another session took these images a moment ago
        st.rerun()
    [view] = image_views(
        s,
        ids,
        version.id,
        top_k=len(classes),
        thresholds=thresholds,
        also=state.get("suspect_classes"),
        display=VIEW,
    )
    st.markdown(
        f"**Image {state.offset + 1} of {total}** · {md(view.name)} · {view.width}×{view.height}"
        + (f" · reviewed {view.review_count}×" if view.review_count else "")
    )
    st.caption(progress_line(total))
    if lines := state.get("suspects", {}).get(view.image_id):
        st.warning(
            "Suspicious: a model that never saw this image (cross-validated) disagrees with "
            + ("this label: " if len(lines) == 1 else "these labels: ")
            + "; ".join(lines)
            + ". The suspected toggles come first and show both numbers: the active version's own "
            "probability (trained on the label) and the held-out one.",
            icon=":material/report:",
        )
    left, right = st.columns([3, 2], gap="large")
    show_image(left, view.display)
    restore = state.setdefault("restore", {}).get(view.image_id)
    items = panel_items(view, classes, blind, state.get("suspect_classes", {}).get(view.image_id, {}), restore)
    state.setdefault("panel_nonce", 0)
    state.setdefault("panel_ack", 0)
    token = f"{view.image_id}:{version.id}:{blind}:{state.panel_nonce}"
    names = {i.id: i.name for i in items}

    @timed_callback
    def on_action() -> None:
        """What the panel sent, before the script runs again (a key press or a click)."""
        sent = last_action()
        if not sent:
            return
        if sent.get("token") != token:  # sent for an image no longer shown: nothing happens
            return
        action = sent.get("action")
        if action in ("accept", "reject"):
            shown = {int(c) for c in sent.get("shown", []) if int(c) in names}
            pos = {int(c) for c in sent.get("present", []) if int(c) in names} if action == "accept" else set()
            neg = shown - pos
            try:
                sid = submit(s, view, pos, neg, s.actor.username, second_review)
            except StaleView as exc:  # show the labels now stored
                state.error = f"Not saved: {md(view.name)} was {md(exc)}"
                state.panel_nonce += 1
                return
            except ValueError as exc:
                state.error = md(one_line(exc, REFUSALS))
                return
            state.restore.pop(view.image_id, None)
            state.redo = []
            present = ", ".join(md(names[c]) for c in sorted(pos, key=lambda c: names[c].casefold())) or "nothing"
            state.flash = (
                f"Saved {md(view.name)}: {present} present; {len(neg)} absent, "
                f"{len(names) - len(pos) - len(neg)} assumed absent (submission {sid})."
            )
            state.panel_nonce += 1
            count_reviewed(1)
            advance_after_submit()
        elif action in ("prev", "next"):
            state.offset = min(max(0, state.offset + (1 if action == "next" else -1)), total - 1)
            state.panel_nonce += 1
        elif action == "undo":
            do_undo()
            state.panel_nonce += 1
        elif action == "redo":
            do_redo()
            state.panel_nonce += 1

    with right:
        review_panel(
            token,
            items,
            blind=blind,
            can_prev=state.offset > 0,
            can_redo=bool(state.get("redo")),
            ack=state.panel_ack,
            message=f"Keys: 1–9, 0, a–z toggle · / add a label · Ctrl+Enter accept · Shift+Enter reject all "
            f"· ← → move · Ctrl+Z undo · Ctrl+Shift+Z redo. Accept saves the listed classes left empty as absent"
            f"{' and the hidden ones as assumed absent' if len(items) > SHOWN else ''}.",
            on_action=on_action,
        )
else:
    c1, c2, c3 = st.columns([1, 2, 2])
    per_page = c1.selectbox("Per page", [8, 12, 24], index=1, key="per_page")
    t = c2.slider("Threshold t", 0.05, 0.95, 0.5, 0.05, key="grid_t")
    st.caption(progress_line(total))
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
    by_view = {v.image_id: v for v in views}
    active = {c.id for c in classes}
    tiles = [grid_tile(v, active, t, blind) for v in views]
    state.setdefault("grid_nonce", 0)
    state.setdefault("grid_ack", 0)
    # The token names the page, not the threshold: a threshold change keeps the tiles fixed by hand.
    grid_token = f"{','.join(str(v.image_id) for v in views)}:{version.id}:{blind}:{state.grid_nonce}"

    @timed_callback
    def on_grid_action() -> None:
        """What the grid sent (accept, save or undo), before the script runs again."""
        sent = last_grid_action()
        if not sent:
            return
        state.grid_nonce += 1
        if sent.get("token") != grid_token:  # sent for a page no longer shown: nothing happens
            return
        action = sent.get("action")
        if action == "undo":
            do_undo()
            return
        fixes: dict[int, tuple[set[int], set[int]]] = {}
        touched: set[int] = set()
        for key, tile in (sent.get("tiles") or {}).items():
            view = by_view.get(int(key))
            if view is None:
                continue
            chosen = {int(c) for c in tile.get("chosen", []) if int(c) in active}
            fixes[view.image_id] = (chosen, {sg.class_id for sg in view.suggestions} - chosen)
            if tile.get("touched"):
                touched.add(view.image_id)
        if action == "accept":
            # Untouched tiles: their proposals present, the rest assumed absent; tiles fixed by hand:
            # what they show (the suggestions left out said absent).
            decisions = {i: (pos, set()) for i, (pos, _) in fixes.items() if i not in touched and pos}
            decisions |= {i: fixes[i] for i in touched}
        else:
            decisions = fixes
        if not decisions:
            state.flash = "Nothing to save on this page."
            return
        try:
            sid = submit_many(s, decisions, views, s.actor.username, second_review)
        except StaleView as exc:
            state.error = f"Not saved: images were {md(exc)}"
            return
        except ValueError as exc:
            state.error = md(one_line(exc, REFUSALS))
            return
        kept = f"; {len(touched)} as fixed by hand" if action == "accept" else ""
        state.flash = f"Saved {len(decisions)} images (submission {sid}){kept}."
        count_reviewed(len(decisions))

    grid_panel(
        grid_token,
        tiles,
        classes,
        threshold=t,
        blind=blind,
        ack=state.grid_ack,
        message="Keys: Tab moves from tile to tile · type a class and Enter adds it · Backspace in an empty "
        "field removes the last · Esc leaves the field · Ctrl+Enter accepts the page · Ctrl+Shift+Enter "
        "saves it as shown.",
        on_action=on_grid_action,
    )
