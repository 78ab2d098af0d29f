"""What the review-latency and scale benchmarks share: seeding a store (images, synthetic
predictions, reviews), timing helpers, the review service calls and the Review page's AppTest
round trips.

Import it after pointing ``MUMIC_*`` at the benchmark's store: settings are read on import.
"""

from __future__ import annotations

import os
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BUDGET_MS = 300.0
from PIL import Image as PILImage
from PIL import ImageDraw
from sqlalchemy import func, insert, text
from sqlalchemy.dialects import sqlite as sqlite_dialect

from db.models import Annotation, Image, Submission
from mumic_core.encoders.spec import EncoderSpec
from mumic_core.pipeline.scoring import refresh_statistics, replace_image_scores
from mumic_core.services.review import accept_above, submit, undo
from mumic_core.store import scores as scores_module
from mumic_core.store.auth import add_user, sign_in
from mumic_core.store.classes import add_class
from mumic_core.store.queue import QueueFilter, _queue_query, image_views, page_query, queue_count, queue_page
from mumic_core.store.registry import register_version
from mumic_core.store.scores import as_stored, write_class_scores
from mumic_core.store.studio import Studio

N_FILES = 20
UI_USER, UI_PASSWORD = "bench-ui", "correct horse battery"  # the AppTest's signed-in annotator
IMAGE_CHUNK = 20_000


# --------------------------------------------------------------------------- seeding


def write_pngs(folder: Path, n: int, rng: np.random.Generator) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rels = []
    for k in range(n):
        im = PILImage.new("RGB", (96, 96), tuple(int(x) for x in rng.integers(0, 256, 3)))
        d = ImageDraw.Draw(im)
        x, y = (int(v) for v in rng.integers(10, 50, 2))
        d.ellipse([x, y, x + 36, y + 36], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        im.save(folder / f"{k:02d}.png")
        rels.append(f"bench/{k:02d}.png")
    return rels


def seed(studio: Studio, n_images: int, n_classes: int, reviewed_fraction: float, rng: np.random.Generator) -> dict:
    """A store of ``n_images`` with synthetic predictions of one active version and reviews."""
    t: dict[str, float] = {}
    t0 = time.perf_counter()
    classes = [add_class(studio, f"class {k:02d}", [f"a drawing of thing {k:02d}"]) for k in range(n_classes)]
    class_ids = [c.id for c in classes]
    version = register_version(
        studio,
        "v0001",
        EncoderSpec("mumic-tiny-rn", "", "builtin-random", "benchmark model"),
        "builtin-random",
        "benchmark model",
        status="active",
    )
    t["classes_version_files"] = time.perf_counter() - t0
    t["images"] = seed_images(studio, n_images, rng)
    t["predictions"], n_pred = seed_predictions(studio, version.id, class_ids, n_images, rng)
    reviews = seed_reviews(studio, class_ids, n_images, reviewed_fraction, rng)
    t["reviews"] = reviews.pop("seconds")
    t["checkpoint"] = checkpoint(studio)
    t["total"] = sum(t.values())
    return {
        "seconds": {k: round(v, 2) for k, v in t.items()},
        "version_id": version.id,
        "class_ids": class_ids,
        "predictions": n_pred,
        **reviews,
    }


def seed_images(studio: Studio, n_images: int, rng: np.random.Generator) -> float:
    """``n_images`` image rows (ids 1..n) over 20 small files; returns the seconds taken."""
    t0 = time.perf_counter()
    rels = write_pngs(studio.settings.image_dir / "bench", N_FILES, rng)
    now = datetime.now(UTC)
    with studio.write() as s:
        for start in range(0, n_images, IMAGE_CHUNK):
            rows = [
                {
                    "id": i + 1,
                    "sha256": f"{i:064x}",
                    "original_name": f"bench/img_{i:06d}.png",
                    "relpath": rels[i % N_FILES],
                    "width": 96,
                    "height": 96,
                    "format": "PNG",
                    "split": "val" if i % 5 == 0 else "train",
                    "review_count": 0,
                    "added_at": now,
                }
                for i in range(start, min(n_images, start + IMAGE_CHUNK))
            ]
            s.execute(insert(Image), rows)
    advance_sequences(studio, ["images"])
    return time.perf_counter() - t0


def seed_predictions(
    studio: Studio, version_id: int, class_ids: list[int], n_images: int, rng: np.random.Generator
) -> tuple[float, int]:
    """Synthetic probabilities, mostly low with a tail near 1 (Beta(0.4, 1.6), mean 0.2), like a
    sigmoid head's, stored as scoring stores them, with the per-image queue summaries; returns
    (seconds, image-class scores)."""
    t0 = time.perf_counter()
    ids = np.arange(1, n_images + 1)
    prob = rng.beta(0.4, 1.6, size=(n_images, len(class_ids))).astype(np.float32)
    with studio.write() as s:
        conn = s.connection()
        for start in range(0, len(class_ids), 10):  # a few classes' columns at a time
            part = slice(start, start + 10)
            write_class_scores(conn, version_id, ids, class_ids[part], as_stored(prob[:, part]))
        replace_image_scores(conn, version_id, ids, as_stored(prob))
        refresh_statistics(conn)
    return time.perf_counter() - t0, prob.size


def seed_reviews(
    studio: Studio, class_ids: list[int], n_images: int, reviewed_fraction: float, rng: np.random.Generator
) -> dict:
    """About ``reviewed_fraction`` of the images reviewed by "seed-a" (one positive, two negatives
    each); a tenth of those disputed: "seed-b" said the opposite about one class first and was
    superseded."""
    t0 = time.perf_counter()
    now = datetime.now(UTC)
    n_rev = int(round(n_images * reviewed_fraction))
    reviewed = np.sort(rng.choice(n_images, size=n_rev, replace=False)) + 1
    disputed = set(rng.choice(reviewed, size=max(1, n_rev // 10), replace=False).tolist()) if n_rev else set()
    subs, anns, counts = [], [], {}
    ann_id = 0
    for image_id in reviewed.tolist():
        picked = rng.choice(class_ids, size=min(3, len(class_ids)), replace=False).tolist()
        sid_a = len(subs) + 1
        if image_id in disputed:
            subs.append({"id": sid_a, "annotator": "seed-b", "created_at": now, "image_ids": [image_id]})
            ann_id += 1
            anns.append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "class_id": picked[0],
                    "positive": False,
                    "annotator": "seed-b",
                    "source": "review",
                    "is_current": False,
                    "supersedes_id": None,
                    "created_at": now,
                    "submission_id": sid_a,
                    "suggested_score": None,
                }
            )
            sid_a += 1
        subs.append({"id": sid_a, "annotator": "seed-a", "created_at": now, "image_ids": [image_id]})
        for j, c in enumerate(picked):
            ann_id += 1
            anns.append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "class_id": c,
                    "positive": j == 0,
                    "annotator": "seed-a",
                    "source": "review",
                    "is_current": True,
                    "supersedes_id": ann_id - 1 if (j == 0 and image_id in disputed) else None,
                    "created_at": now,
                    "submission_id": sid_a,
                    "suggested_score": None,
                }
            )
        counts[image_id] = 2 if image_id in disputed else 1
    with studio.write() as s:
        if subs:
            s.execute(insert(Submission), subs)
        for start in range(0, len(anns), IMAGE_CHUNK):
            s.execute(insert(Annotation), anns[start : start + IMAGE_CHUNK])
        for rc in (1, 2):
            ids = [i for i, c in counts.items() if c == rc]
            for start in range(0, len(ids), 10_000):
                s.execute(
                    text(
                        f"UPDATE images SET review_count = {rc}, reviewed_at = :now WHERE id IN "
                        f"({','.join(map(str, ids[start : start + 10_000]))})"
                    ),
                    {"now": now.isoformat()},
                )
    advance_sequences(studio, ["submissions", "annotations"])
    return {
        "seconds": time.perf_counter() - t0,
        "reviewed_images": n_rev,
        "disputed_images": len(disputed),
        "annotations": len(anns),
    }


def advance_sequences(studio: Studio, tables: list[str]) -> None:
    """PostgreSQL: move the id sequences past the ids inserted explicitly (else the product's
    next row of that table would take id 1 again)."""
    if studio.url.startswith("postgresql"):
        with studio.write() as s:
            for table in tables:
                s.execute(
                    text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
                )


def checkpoint(studio: Studio) -> float:
    """Settle the store after bulk writes, as a long-running one would have done by itself:
    SQLite folds its WAL back into the database file; PostgreSQL vacuums and analyses (else its
    autovacuum, woken by the bulk deletes of a promotion, takes a core while we measure)."""
    t0 = time.perf_counter()
    if studio.url.startswith("sqlite"):
        with sqlite3.connect(studio.settings.home / "mumic.db") as con:
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    elif studio.url.startswith("postgresql"):
        from sqlalchemy import create_engine, text

        engine = create_engine(studio.url, isolation_level="AUTOCOMMIT")
        with engine.connect() as con:
            con.execute(text("VACUUM (ANALYZE)"))
        engine.dispose()
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- machine load


class OtherLoad:
    """CPU cores used by other processes while we measure (/proc/stat busy time minus our own),
    sampled every 0.5 s, so that a run on a shared machine says how shared it was."""

    def __init__(self) -> None:
        import threading

        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _busy_s() -> float | None:
        try:
            with open("/proc/stat") as fh:
                v = [int(x) for x in fh.readline().split()[1:]]
        except OSError:
            return None
        return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait

    def _run(self) -> None:
        prev = (time.perf_counter(), self._busy_s(), sum(os.times()[:2]))
        while not self._stop.wait(0.5):
            now = (time.perf_counter(), self._busy_s(), sum(os.times()[:2]))
            if now[1] is not None and prev[1] is not None:
                self.samples.append(max(0.0, (now[1] - prev[1]) - (now[2] - prev[2])) / (now[0] - prev[0]))
            prev = now

    def __enter__(self) -> OtherLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict:
        x = np.array(self.samples or [0.0])
        return {
            "mean_cores": round(float(x.mean()), 2),
            "p95_cores": round(float(np.percentile(x, 95)), 2),
            "max_cores": round(float(x.max()), 2),
            "seconds": len(self.samples) / 2,
        }


# --------------------------------------------------------------------------- timing

ROWS: list[dict] = []


def record(group: str, op: str, samples_s: list[float], note: str = "") -> dict:
    ms = np.array(samples_s) * 1000.0
    row = {
        "group": group,
        "operation": op,
        "n": len(ms),
        "median_ms": round(float(np.median(ms)), 1),
        "p95_ms": round(float(np.percentile(ms, 95)), 1),
        "max_ms": round(float(ms.max()), 1),
        "samples_ms": [round(float(x), 1) for x in ms],
    }
    row["over_budget"] = group != "server start" and row["p95_ms"] > BUDGET_MS  # not an interaction
    if note:
        row["note"] = note
    ROWS.append(row)
    flag = "  OVER 300 ms" if row["over_budget"] else ""
    print(
        f"  {op:<58} n={row['n']:<3} median {row['median_ms']:>8.1f}  p95 {row['p95_ms']:>8.1f}  "
        f"max {row['max_ms']:>8.1f} ms{flag}",
        flush=True,
    )
    return row


def timed(fn, repeats: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def sql_of(q) -> str:
    return str(q.compile(dialect=sqlite_dialect.dialect(), compile_kwargs={"literal_binds": True}))


def query_plans(studio: Studio, filters: dict[str, QueueFilter], deep: int) -> dict:
    """EXPLAIN QUERY PLAN of each queue query, as the app issues it."""
    plans = {}
    con = sqlite3.connect(studio.settings.home / "mumic.db")
    try:
        for name, f in filters.items():
            if f.class_id is not None:  # read from the class's stored column, not by SQL
                continue
            cq, _, _, _ = _queue_query(f, [func.count(Image.id)])
            pq = page_query(f)
            for kind, q in (("count", cq), ("page", pq.offset(deep).limit(1))):
                sql = sql_of(q)
                plan = [r[3] for r in con.execute("EXPLAIN QUERY PLAN " + sql)]
                plans[f"{kind} {name}"] = {"sql": sql, "plan": plan}
    finally:
        con.close()
    return plans


def bench_services(studio: Studio, info: dict, n_images: int, repeats: int, deep: int) -> dict[str, QueueFilter]:
    vid = info["version_id"]
    cls = info["class_ids"][min(3, len(info["class_ids"]) - 1)]
    filters = {
        "unreviewed/priority (default)": QueueFilter(vid),
        "all/confidence": QueueFilter(vid, status="all", sort="confidence"),
        "class 03 in [0.8, 1.0], unreviewed/priority": QueueFilter(vid, class_id=cls, min_score=0.8, max_score=1.0),
        "reviewed/priority": QueueFilter(vid, status="reviewed"),
        "disputed/priority": QueueFilter(vid, status="disputed"),
    }
    print("service calls", flush=True)
    for name, f in filters.items():
        n = queue_count(studio, f)
        record("service", f"queue_count [{name}] ({n:,} images)", timed(lambda f=f: queue_count(studio, f), repeats))
        record(
            "service", f"queue_page offset 0, 1 image [{name}]", timed(lambda f=f: queue_page(studio, f, 0, 1), repeats)
        )
        record(
            "service",
            f"queue_count + queue_page [{name}]",
            timed(lambda f=f: (queue_count(studio, f), queue_page(studio, f, 0, 1)), repeats),
        )
    default = filters["unreviewed/priority (default)"]
    total = queue_count(studio, default)
    off = min(deep, max(0, total - 12))
    for key in [k for k in scores_module._kept if k[2].startswith("order:")]:
        del scores_module._kept[key]  # as after new scores: the queue order is read again
    record(
        "service",
        f"page change: first deep page (offset {off:,}, 12 images) after the scores changed (reads the queue order)",
        timed(lambda: queue_page(studio, default, off, 12), 1, warmup=0),
    )
    record(
        "service",
        f"page change: queue_page offset {off:,}, 1 image [unreviewed/priority]",
        timed(lambda: queue_page(studio, default, off, 1), repeats),
    )
    record(
        "service",
        f"page change: queue_page offset {off:,}, 12 images [unreviewed/priority]",
        timed(lambda: queue_page(studio, default, off, 12), repeats),
    )
    allc = filters["all/confidence"]
    off_all = min(deep, max(0, n_images - 12))
    record(
        "service",
        f"page change: queue_page offset {off_all:,}, 12 images [all/confidence]",
        timed(lambda: queue_page(studio, allc, off_all, 12), repeats),
    )
    one = queue_page(studio, default, 0, 1)
    grid = queue_page(studio, default, off, 12)
    record("service", "image_views 1 image, top 9", timed(lambda: image_views(studio, one, vid, top_k=9), repeats))
    record("service", "image_views 12 images, top 3", timed(lambda: image_views(studio, grid, vid, top_k=3), repeats))

    # Submit + undo: a different unreviewed image each time (spread through the queue).
    step = max(1, (total - 1) // (repeats + 2))
    ids = [queue_page(studio, default, k * step, 1)[0] for k in range(repeats + 1)]
    sub_t, undo_t = [], []
    for k, image_id in enumerate(ids):
        [view] = image_views(studio, [image_id], vid, top_k=9)
        pos = {sg.class_id for sg in view.suggestions if sg.proposed}
        neg = {sg.class_id for sg in view.suggestions if not sg.proposed}
        t0 = time.perf_counter()
        submit(studio, view, pos, neg, "bench")
        t1 = time.perf_counter()
        assert undo(studio, "bench") is not None
        t2 = time.perf_counter()
        if k:  # the first pair is the warm-up
            sub_t.append(t1 - t0)
            undo_t.append(t2 - t1)
    record("service", "submit 1 image (9 decisions)", sub_t)
    record("service", "undo that submission", undo_t)

    acc_t, acc_undo_t = [], []
    step12 = max(12, (total - 12) // (repeats + 2))
    for k in range(repeats + 1):
        views = image_views(studio, queue_page(studio, default, k * step12, 12), vid, top_k=3)
        t0 = time.perf_counter()
        n_acc = accept_above(studio, views, 0.5, "bench")
        t1 = time.perf_counter()
        if n_acc:
            assert undo(studio, "bench") is not None
        t2 = time.perf_counter()
        if k:
            acc_t.append(t1 - t0)
            if n_acc:
                acc_undo_t.append(t2 - t1)
    record("service", "accept_above 0.5 on a 12-image page", acc_t)
    if acc_undo_t:
        record("service", "undo that page", acc_undo_t)

    from mumic_core.model.active_learning import DEFAULT_WEIGHTS
    from mumic_core.pipeline.planning import order_queue
    from mumic_core.store.leases import claim, leased_to_others, release

    mix = " + ".join(DEFAULT_WEIGHTS)
    record(
        "service",
        f"active-learning plan: order_queue [{mix}] over the 2,000 most uncertain",
        timed(lambda: order_queue(studio, default, DEFAULT_WEIGHTS), max(5, repeats // 3)),
        note="once per filter change; the plan is kept across submits",
    )
    window = queue_page(studio, default, 0, 5)
    record(
        "service",
        "claim a lease on 1 image (write)",
        timed(lambda: claim(studio, "bench-a", "bench", window, 1), repeats),
    )
    record(
        "service", "claim a 12-image grid page (write)", timed(lambda: claim(studio, "bench-a", "bench", grid), repeats)
    )
    record("service", "leased_to_others", timed(lambda: leased_to_others(studio, "bench-b"), repeats))
    release(studio, "bench-a")
    return filters


def bench_apptest(studio: Studio, repeats: int) -> None:
    from streamlit.testing.v1 import AppTest

    print("AppTest round trips (server time of AppTest.run())", flush=True)
    # Signed in as an annotator, as tests/conftest.py's signed_in_app does (the token in the tab's
    # session state): without it the page shows the sign-in form and nothing else.
    add_user(studio, UI_USER, UI_PASSWORD, "annotator")
    at = AppTest.from_file(str(ROOT / "app_pages/review.py"), default_timeout=120)
    at.session_state["auth_token"] = sign_in(studio, UI_USER, UI_PASSWORD)
    # A server scans the installed packages for components when it starts (streamlit's Runtime
    # does it in its constructor), before any browser connects; AppTest would scan in its first
    # run. Scanned here as a server would, and timed apart.
    from streamlit.components.v2.component_manager import BidiComponentManager

    t0 = time.perf_counter()
    at._bidi_component_manager = BidiComponentManager()
    at._bidi_component_manager.discover_and_register_components(start_file_watching=False)
    record(
        "server start",
        "Streamlit's component discovery (at server start)",
        [time.perf_counter() - t0],
        note="once per server process, before any browser connects",
    )
    from app_pages.warm_start import warm_start  # serve.py does it at start, too

    t0 = time.perf_counter()
    warm_start()
    record(
        "server start",
        "serve.py's warm start: imports of what the pages use, Streamlit's start check",
        [time.perf_counter() - t0],
        note="once per server process, before any browser connects",
    )

    def run(action) -> float:
        t0 = time.perf_counter()
        action()
        dt = time.perf_counter() - t0
        if at.exception:
            raise RuntimeError(f"Review page raised: {[e.value for e in at.exception]}")
        return dt

    record(
        "apptest",
        "first run (cold: imports, first queries)",
        [run(at.run)],
        note="once per server process / browser session, not an interaction",
    )
    if not any(e.proto.component_name == "mumic_review_panel" for e in at.get("bidi_component")):
        raise RuntimeError("the Review page did not show an image to review (signed out, or an empty queue?)")

    def first_visit() -> None:  # another browser session: plans its own active-learning queue
        other = AppTest.from_file(str(ROOT / "app_pages/review.py"), default_timeout=120)
        other.session_state["auth_token"] = at.session_state["auth_token"]
        # As above: a server has scanned for components when it started; a new AppTest would scan
        # again (0.4 s): the new session gets the registry the first one made.
        other._bidi_component_manager = at._bidi_component_manager
        other.run()
        if other.exception:
            raise RuntimeError(f"Review page raised: {[e.value for e in other.exception]}")

    record(
        "apptest",
        "first visit of a new browser session (its active-learning queue planned)",
        [run(first_visit) for _ in range(repeats)],
    )
    record("apptest", "plain rerun (no change)", [run(at.run) for _ in range(repeats)])

    def next_image() -> None:  # what the panel's → asks the server for
        at.session_state["offset"] = at.session_state["offset"] + 1
        at.run()

    record("apptest", "next image", [run(next_image) for _ in range(repeats)])
    # Toggles, the add-label field and the order of key presses live in the browser (the review
    # panel, app_pages/review_panel.js): no server round trip. Accept and Undo are timed at the
    # service level above; tests/test_review_keys.py drives them in a browser.

    by_status: dict[str, list[float]] = {}
    for _ in range(repeats):
        for value in ("all", "reviewed", "disputed", "unreviewed"):
            by_status.setdefault(value, []).append(
                run(lambda value=value: at.selectbox(key="status").set_value(value).run())
            )
    for value, samples in by_status.items():
        record("apptest", f"status selectbox -> {value}", samples)

    to_grid, grid_page, to_one = [], [], []
    for _ in range(repeats):
        to_grid.append(run(lambda: at.radio(key="mode").set_value("Grid").run()))
        grid_page.append(run(lambda: at.number_input(key="grid_page").increment().run()))
        to_one.append(run(lambda: at.radio(key="mode").set_value("One image").run()))
    record("apptest", "switch to Grid mode (12 images)", to_grid)
    record("apptest", "Grid: next page (number input +1)", grid_page)
    record("apptest", "switch back to One image", to_one)


# --------------------------------------------------------------------------- output


def markdown(result: dict) -> str:
    m, z = result["machine"], result["sizes"]
    lines = [
        "# Review latency",
        "",
        f"`{result['command']}`",
        "",
        f"{z['images']:,} images, {z['classes']} classes, {z['predictions']:,} predictions, "
        f"{z['reviewed_images']:,} reviewed ({z['disputed_images']:,} disputed). "
        f"Seeding: {result['seeding_seconds']['total']:.1f} s. Budget: {BUDGET_MS:.0f} ms (p95).",
        "",
        f"Machine: {m['platform']}, {m['cpu_count']} CPUs, Python {m['python']}, SQLite {m['sqlite']}; "
        f"load average at start {m['loadavg_start']}; CPU cores used by other processes while measuring "
        f"(mean / p95): "
        + ", ".join(f"{k} {v['mean_cores']} / {v['p95_cores']}" for k, v in m["other_processes_cpu"].items())
        + ".",
        "",
        "| operation | n | median ms | p95 ms | max ms | |",
        "|---|---:|---:|---:|---:|---|",
    ]
    group = None
    for r in result["rows"]:
        if r["group"] != group:
            group = r["group"]
            title = {
                "service": "Service calls",
                "server start": "Once per server process, before any browser connects (not an interaction)",
            }.get(group, "AppTest round trips (server time of `run()`)")
            lines.append(f"| **{title}** | | | | | |")
        lines.append(
            f"| {r['operation']} | {r['n']} | {r['median_ms']:.1f} | {r['p95_ms']:.1f} | "
            f"{r['max_ms']:.1f} | {'**over 300 ms**' if r['over_budget'] else ''} |"
        )
    return "\n".join(lines) + "\n"
