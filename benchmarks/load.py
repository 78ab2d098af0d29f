"""Many annotators at once: throughput, latency, and not one label lost or duplicated (issue 8).

1. ``--annotators`` real processes (default 20) review for ``--minutes`` (default 10) through
   the service layer against one SQLite store: each signs in, takes the next unreviewed image
   the queue leases to it, reads its suggestions, and submits a decision; now and then it
   undoes its last submission. Each process logs every submission the store acknowledged.
2. ``--browsers`` real Chromium browsers (default 3, Playwright) against ``streamlit run``:
   each signs in as its own annotator and accepts images for ``--browser-seconds``.

Then the store is checked against the logs: every acknowledged submission is there with the
labels sent (none lost), no image was reviewed by two people (leases), and no (image, class)
has two current labels (none duplicated). Writes benchmarks/results/load.{json,md}.

    .venv/bin/python benchmarks/load.py [--annotators 20] [--minutes 10] [--images 3000] [--browsers 3]
        [--results benchmarks/results] [--smoke [DIR]]

``--smoke``: 2 annotators for 15 s on 60 images, then 1 browser for 10 s.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from benchmarks._smoke import add_smoke_option, check_written, require, smoke_folder  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
PASSWORD = "correct horse battery"
OFFLINE = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "1"}
SMOKE = {"annotators": 2, "minutes": 0.25, "images": 60, "browsers": 1, "browser_seconds": 10.0}
# The Review page's line "Image N of M · name · W×H": it changes when the next image is shown.
IMAGE_HEADER = (
    "() => [...document.querySelectorAll(\"[data-testid='stMarkdownContainer']\")]"
    ".map(e => e.innerText).find(t => t.startsWith('Image ')) || ''"
)


def make_store(home: Path, n_images: int, n_users: int) -> None:
    for key in [k for k in os.environ if k.startswith("MUMIC_")]:
        del os.environ[key]
    os.environ.update({"MUMIC_HOME": str(home), **OFFLINE})
    from mumic_core.config import load_settings
    from mumic_core.pipeline.lifecycle import ensure_base_version
    from mumic_core.pipeline.scoring import score_collection
    from mumic_core.services.demo import seed_demo
    from mumic_core.store.auth import SYSTEM, add_user
    from mumic_core.store.studio import open_studio

    studio = open_studio(load_settings(), actor=SYSTEM)
    base = ensure_base_version(studio)
    seed_demo(studio, n_images=n_images, labelled_fraction=0.0)
    score_collection(studio, base)
    for k in range(n_users):
        add_user(studio, f"ann{k:02d}", PASSWORD)


def annotator(k: int, home: str, seconds: float, log_path: str) -> None:
    """One person: sign in, lease, look, decide, submit; sometimes undo, for ``seconds`` once
    signed in (starting a process is not counted). Logs every ack."""
    os.environ.update({"MUMIC_HOME": home, **OFFLINE})
    from mumic_core.config import load_settings
    from mumic_core.errors import StaleView
    from mumic_core.services.review import submit, undo
    from mumic_core.store.auth import actor_for_token, sign_in
    from mumic_core.store.leases import claim
    from mumic_core.store.queue import QueueFilter, image_views, queue_page
    from mumic_core.store.registry import active_version
    from mumic_core.store.studio import open_studio

    rng = random.Random(k)
    name = f"ann{k:02d}"
    store = open_studio(load_settings(), migrate=False)
    me = store.as_actor(actor_for_token(store, sign_in(store, name, PASSWORD)))
    version = active_version(me).id
    holder = f"load-{k}"
    queue = QueueFilter(version_id=version, status="unreviewed", skip_leased_by_others=holder)
    events: list[dict] = []
    deadline = time.time() + seconds
    while time.time() < deadline:
        t0 = time.perf_counter()
        ids = claim(me, holder, name, queue_page(me, queue, 0, 5), want=1, unreviewed_only=True)
        if not ids:
            break  # nothing left to review
        [view] = image_views(me, ids, version)
        t1 = time.perf_counter()
        time.sleep(rng.uniform(0.5, 2.0))  # looking at the image
        present = {s.class_id for s in view.suggestions[:9] if s.probability >= 0.5 or rng.random() < 0.1}
        absent = {s.class_id for s in view.suggestions[:9]} - present
        t2 = time.perf_counter()
        try:
            sid = submit(me, view, present, absent, name)
        except StaleView as exc:
            events.append({"kind": "stale", "image": ids[0], "error": str(exc)})
            continue
        t3 = time.perf_counter()
        events.append(
            {
                "kind": "submit",
                "submission": sid,
                "image": ids[0],
                "present": sorted(present),
                "absent": sorted(absent),
                "load_s": t1 - t0,
                "submit_s": t3 - t2,
                "at": time.time(),
            }
        )
        if rng.random() < 0.05:
            t4 = time.perf_counter()
            undone = undo(me, name)
            events.append({"kind": "undo", "submission": undone, "undo_s": time.perf_counter() - t4})
    Path(log_path).write_text(json.dumps(events))


def verify(home: Path, logs: list[list[dict]]) -> dict:
    """Lost, duplicated and double-reviewed counts, from the store against the logs."""
    os.environ.update({"MUMIC_HOME": str(home), **OFFLINE})
    from sqlalchemy import func, select

    from db.models import Annotation
    from mumic_core.config import load_settings
    from mumic_core.store.studio import open_studio

    studio = open_studio(load_settings(), migrate=False)
    undone = {e["submission"] for log in logs for e in log if e["kind"] == "undo" and e["submission"]}
    acked = [e for log in logs for e in log if e["kind"] == "submit"]
    with studio.read() as s:
        rows = s.execute(
            select(
                Annotation.submission_id,
                Annotation.image_id,
                Annotation.class_id,
                Annotation.positive,
                Annotation.annotator,
            ).where(Annotation.source == "review", Annotation.assumed.is_(False))  # what people sent
        ).all()
        duplicated = s.execute(
            select(Annotation.image_id, Annotation.class_id)
            .where(Annotation.is_current.is_(True))
            .group_by(Annotation.image_id, Annotation.class_id)
            .having(func.count() > 1)
        ).all()
    by_submission: dict[int, dict[tuple[int, int], bool]] = {}
    reviewers: dict[int, set[str]] = {}
    for sid, image, cls, positive, who in rows:
        by_submission.setdefault(sid, {})[(image, cls)] = positive
        if sid not in undone:  # an undone review puts the image back in the queue for anyone
            reviewers.setdefault(image, set()).add(who)
    lost = 0  # images start unlabelled and are leased to one person: every statement adds a row
    for e in acked:
        sent = {(e["image"], c): True for c in e["present"]} | {(e["image"], c): False for c in e["absent"]}
        if sent and by_submission.get(e["submission"]) != sent:
            lost += 1
    double = sum(1 for who in reviewers.values() if len(who) > 1)
    return {
        "acknowledged_submissions": len(acked),
        "undone": len(undone),
        "lost": lost,
        "duplicated_current_labels": len(duplicated),
        "images_reviewed_by_two": double,
        "stale_refusals": sum(1 for log in logs for e in log if e["kind"] == "stale"),
    }


def percentile(xs: list[float], q: float) -> float:
    return statistics.quantiles(xs, n=100)[q - 1] if len(xs) >= 2 else (xs[0] if xs else float("nan"))


def service_load(args, home: Path, out: dict) -> None:
    seconds = args.minutes * 60  # each annotator's working time, after its process has started
    logs = [str(home / f"log-{k}.json") for k in range(args.annotators)]
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=annotator, args=(k, str(home), seconds, logs[k])) for k in range(args.annotators)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    events = [json.loads(Path(p).read_text()) if Path(p).exists() else [] for p in logs]
    crashed = sum(1 for p in procs if p.exitcode != 0)
    subs = [e for log in events for e in log if e["kind"] == "submit"]
    load, submit_s = [e["load_s"] for e in subs], [e["submit_s"] for e in subs]
    out["service"] = {
        "annotators": args.annotators,
        "seconds": round(seconds, 1),
        "crashed_processes": crashed,
        "submissions_per_s": round(len(subs) / seconds, 2),
        "labels_per_s": round(sum(len(e["present"]) + len(e["absent"]) for e in subs) / seconds, 1),
        "next_image_ms_p50": round(1000 * statistics.median(load), 1) if load else None,
        "next_image_ms_p95": round(1000 * percentile(load, 95), 1) if load else None,
        "submit_ms_p50": round(1000 * statistics.median(submit_s), 1) if submit_s else None,
        "submit_ms_p95": round(1000 * percentile(submit_s, 95), 1) if submit_s else None,
        **verify(home, events),
    }
    print(out["service"], flush=True)


def browser_load(args, home: Path, out: dict) -> None:
    """Real browsers, each its own annotator, accepting images with Ctrl+Enter."""
    from playwright.sync_api import sync_playwright
    from test_browser import ARGS, CHROMIUM, serve, settle, sign_in

    counts = [0] * args.browsers
    waits: list[float] = []
    with serve(home) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        pages = []
        for k in range(args.browsers):
            page = browser.new_context(viewport={"width": 1300, "height": 900}).new_page()
            sign_in(page, url, home, f"web{k}", "annotator")
            page.goto(f"{url}/review")
            try:
                page.wait_for_selector("[data-testid='stImage']", timeout=60000)
            except Exception:
                page.screenshot(path=str(home.parent / f"review_failed_{k}.png"), full_page=True)
                raise
            settle(page)
            pages.append(page)
        deadline = time.monotonic() + args.browser_seconds
        while time.monotonic() < deadline:  # round robin: three people clicking in turn
            for k, page in enumerate(pages):
                before = page.evaluate(IMAGE_HEADER)
                t = time.perf_counter()
                page.locator("[data-testid='stImage']").first.click()
                page.keyboard.press("Control+Enter")
                page.wait_for_function(
                    f"b => {{ const h = ({IMAGE_HEADER})(); return h && h !== b; }}", arg=before, timeout=30000
                )
                waits.append(time.perf_counter() - t)
                counts[k] += 1
                settle(page, 100)
        browser.close()
    out["browsers"] = {
        "browsers": args.browsers,
        "seconds": args.browser_seconds,
        "accepted": counts,
        "next_image_ms_p50": round(1000 * statistics.median(waits), 1),
        "next_image_ms_p95": round(1000 * percentile(waits, 95), 1),
    }
    out["browsers"].update(
        {k: v for k, v in verify(home, []).items() if k in ("duplicated_current_labels", "images_reviewed_by_two")}
    )
    print(out["browsers"], flush=True)


def markdown(out: dict) -> str:
    lines = ["# Load", "", f"Machine: {out['machine']}. Command: `{out['command']}`.", ""]
    if "service" in out:
        s = out["service"]
        lines += [
            "## Annotators through the service layer (real processes, one SQLite store)",
            "",
            "| annotators | seconds | submissions/s | labels/s | next image p50 / p95 ms | submit p50 / p95 ms "
            "| acknowledged | lost | duplicated | reviewed by two | stale refusals | crashed |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
            f"| {s['annotators']} | {s['seconds']} | {s['submissions_per_s']} | {s['labels_per_s']} | "
            f"{s['next_image_ms_p50']} / {s['next_image_ms_p95']} | {s['submit_ms_p50']} / {s['submit_ms_p95']} | "
            f"{s['acknowledged_submissions']} | **{s['lost']}** | **{s['duplicated_current_labels']}** | "
            f"**{s['images_reviewed_by_two']}** | {s['stale_refusals']} | {s['crashed_processes']} |",
            "",
            "Each annotator looks at an image for 0.5-2 s before deciding; 5 % of submissions are undone. "
            "An undone image goes back to the queue, where someone else may review it: that is not counted "
            "as reviewed by two.",
        ]
    if "browsers" in out:
        b = out["browsers"]
        lines += [
            "",
            "## Real browsers (Chromium via Playwright, `streamlit run`)",
            "",
            f"{b['browsers']} browsers, {b['seconds']} s, accepted {b['accepted']} images; time from "
            f"Ctrl+Enter to the next image: p50 {b['next_image_ms_p50']} ms, p95 {b['next_image_ms_p95']} ms; "
            f"duplicated labels {b['duplicated_current_labels']}, images reviewed by two "
            f"{b['images_reviewed_by_two']}.",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--annotators", type=int, default=20)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--images", type=int, default=3000)
    ap.add_argument("--browsers", type=int, default=3)
    ap.add_argument("--browser-seconds", type=float, default=60.0)
    ap.add_argument("--home", type=Path, default=None, help="default: a temporary folder")
    ap.add_argument("--results", type=Path, default=RESULTS, help="folder of load.{json,md}")
    add_smoke_option(ap)
    args = ap.parse_args()
    if args.smoke is not None:
        folder = smoke_folder(args.smoke, "load")
        vars(args).update(SMOKE, home=folder / "home", results=folder)
    home = args.home or Path(tempfile.mkdtemp(prefix="mumic-load-"))
    shutil.rmtree(home, ignore_errors=True)
    t = time.time()
    make_store(home, args.images, args.annotators)
    print(f"store of {args.images} images ready in {time.time() - t:.0f} s", flush=True)
    out = {
        "command": " ".join(["python benchmarks/load.py", *sys.argv[1:]]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
    }
    if args.annotators:
        service_load(args, home, out)
    if args.browsers:
        browser_load(args, home, out)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "load.json").write_text(json.dumps(out, indent=1))
    (args.results / "load.md").write_text(markdown(out))
    check_written(args.results / "load.json", args.results / "load.md")
    require(out, (["service"] if args.annotators else []) + (["browsers"] if args.browsers else []), "the load results")
    if args.annotators:
        require(out["service"], ["lost", "duplicated_current_labels", "images_reviewed_by_two"], "the service row")
        if out["service"]["crashed_processes"] or not out["service"]["acknowledged_submissions"]:
            raise SystemExit(f"the annotator processes did not work: {out['service']}")
    if args.home is None:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
