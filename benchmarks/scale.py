"""Scale: a store of many images and classes, built from synthetic embeddings, and every review
interaction, a new class, a head-mode promotion, search, an export and the dashboard timed on it.

The store is made the way the product makes it, except for the encoding: image rows, classes and
~5 % reviewed images are inserted directly, and the embedding cache of a random 512-d encoder is
filled with clustered synthetic vectors. Everything after that is the product's own code: the
first version scores the collection through a promotion in a worker process (predictions, the
per-image summaries, the search index), a head-mode version is trained on the reviews and
promoted in another, and the review service calls and the Review page's AppTest round trips run
in this process (its peak memory stands for the web process's).

    .venv/bin/python benchmarks/scale.py [--images 1000000] [--classes 120] [--dim 512]
        [--database sqlite|postgres] [--home /tmp/mumic-bench-scale] [--repeats 20]
        [--out benchmarks/results/scale_<database>_<images/1000>k] [--smoke [DIR]]

``--database postgres`` needs ``MUMIC_TEST_DATABASE_URL`` (a server's maintenance database, as
``scripts/with_postgres.sh`` gives it); a database ``mumic_bench_scale`` is made afresh there.
Writes ``<out>.json`` and ``<out>.md``; ``benchmarks/results/scale.md`` is written from every
``scale_*.json`` present by ``--summarise``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._smoke import add_smoke_option, check_written, require, smoke_folder  # noqa: E402

SMOKE = {"images": 3_000, "classes": 12, "repeats": 3, "deep_offset": 1_000}
BENCH_DB = "mumic_bench_scale"
NEW_CLASS_BUDGET_S, PROMOTION_BUDGET_S, SEARCH_BUDGET_MS, MEMORY_BUDGET_GIB = 5.0, 120.0, 20.0, 4.0


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1_000_000)
    ap.add_argument("--classes", type=int, default=120)
    ap.add_argument("--dim", type=int, default=512, help="embedding dimension (ViT-B-32: 512)")
    ap.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--home", type=Path, default=Path("/tmp/mumic-bench-scale"))
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--reviewed", type=float, default=0.05, help="fraction of images already reviewed")
    ap.add_argument("--deep-offset", type=int, default=500_000, help="offset of the deep page change")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="result path without suffix")
    ap.add_argument("--skip-apptest", action="store_true")
    ap.add_argument("--keep", action="store_true", help="leave the PostgreSQL database in place afterwards")
    ap.add_argument("--summarise", action="store_true", help="write results/scale.md from the scale_*.json")
    ap.add_argument("--worker-step", choices=["promote", "train"], help=argparse.SUPPRESS)
    ap.add_argument("--version", help=argparse.SUPPRESS)
    add_smoke_option(ap)
    args = ap.parse_args()
    if args.smoke is not None:
        folder = smoke_folder(args.smoke, "scale")
        vars(args).update(SMOKE, home=folder / "home", out=folder / f"scale_{args.database}")
    args.out = args.out or ROOT / f"benchmarks/results/scale_{args.database}_{args.images // 1000}k"
    return args


ARGS = parse_args()


def database_url(args: argparse.Namespace) -> str:
    if args.database == "sqlite":
        return f"sqlite:///{args.home / 'mumic.db'}"
    server = os.environ.get("MUMIC_TEST_DATABASE_URL", "")
    if not server:
        sys.exit("--database postgres needs MUMIC_TEST_DATABASE_URL: run it under scripts/with_postgres.sh")
    return server.rsplit("/", 1)[0] + f"/{BENCH_DB}"


# Settings are read from the environment: point everything at the benchmark's store first.
if not ARGS.summarise:
    _server = os.environ.get("MUMIC_TEST_DATABASE_URL", "")
    for _k in [k for k in os.environ if k.startswith("MUMIC_")]:
        del os.environ[_k]
    if _server:
        os.environ["MUMIC_TEST_DATABASE_URL"] = _server
    os.environ["MUMIC_HOME"] = str(ARGS.home)
    os.environ["MUMIC_DATABASE_URL"] = database_url(ARGS)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_ENDPOINT", "http://127.0.0.1:9")
    os.chdir(ROOT)


def peak_rss_gib() -> float:
    """This process's peak resident memory since it started or since ``reset_peak_rss``."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 2**20, 3)  # KiB
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)


class AnonPeak:
    """The peak of this process's anonymous resident memory (RssAnon: heap and arrays, not the
    page cache of mapped files such as the embeddings), sampled every 20 ms in a thread; the
    kernel keeps a peak (VmHWM) only of the total."""

    def __init__(self) -> None:
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                self.peak_kib = max(self.peak_kib, int(line.split()[1]))

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self._sample()

    def __enter__(self) -> AnonPeak:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def gib(self) -> float:
        return round(self.peak_kib / 2**20, 3)


def resident_files(top: int = 6) -> dict[str, float]:
    """GiB of this process's memory that is mapped files, by file (the largest ``top``; libraries
    summed as one), from /proc/self/smaps: what the rest of the peak, past RssAnon, is made of."""
    sizes: dict[str, int] = {}
    name = ""
    try:
        lines = Path("/proc/self/smaps").read_text().splitlines()
    except OSError:
        return {}
    for line in lines:
        head, _, rest = line.partition(" ")
        if "-" in head and not head.endswith(":"):  # a mapping's header: address range, perms, ..., path
            parts = line.split()
            name = parts[5] if len(parts) > 5 and parts[5].startswith("/") else ""
            if ".so" in name:
                name = "shared libraries"
            name = name.replace(str(ARGS.home), "<store>")
        elif head == "Rss:" and name:
            sizes[name] = sizes.get(name, 0) + int(rest.split()[0])
    biggest = sorted(sizes.items(), key=lambda kv: -kv[1])[:top]
    return {k: round(v / 2**20, 3) for k, v in biggest}


def reset_peak_rss() -> None:
    """Start the peak over (Linux: clear_refs 5), so the web process's peak leaves out seeding."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


# --------------------------------------------------------------------------- worker steps


def worker_step(args: argparse.Namespace) -> None:
    """Run in a child process, as a worker would: print one JSON line (seconds, peak memory)."""
    from mumic_core.config import load_settings
    from mumic_core.encoders.allocator import keep_freed_memory_for_batches
    from mumic_core.pipeline.lifecycle import promote
    from mumic_core.pipeline.training import TrainConfig, train
    from mumic_core.store.auth import SYSTEM
    from mumic_core.store.registry import active_version, get_version
    from mumic_core.store.studio import open_studio

    keep_freed_memory_for_batches()  # as the worker process does at start
    studio = open_studio(load_settings(), actor=SYSTEM)
    t0 = time.perf_counter()
    with AnonPeak() as anon:
        if args.worker_step == "promote":
            predictions = promote(studio, get_version(studio, args.version))
            out = {"predictions": predictions}
        else:
            result = train(studio, TrainConfig(mode="head", activate="never"), active_version(studio))
            out = {"version": result.version.name, "val_map": result.metrics.get("map")}
    out |= {"seconds": round(time.perf_counter() - t0, 2), "peak_rss_gib": peak_rss_gib(), "peak_anon_gib": anon.gib}
    print("RESULT " + json.dumps(out), flush=True)


def run_worker_step(args: argparse.Namespace, step: str, version: str | None = None) -> dict:
    cmd = [sys.executable, __file__, "--worker-step", step, "--database", args.database, "--home", str(args.home)]
    if version:
        cmd += ["--version", version]
    log = args.home / f"worker-{step}-{version or ''}.log"
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT, env=os.environ.copy())
    lines = log.read_text().splitlines()
    results = [ln for ln in lines if ln.startswith("RESULT ")]
    if proc.returncode or not results:
        sys.exit(f"worker step {step} failed (exit {proc.returncode}); last lines:\n" + "\n".join(lines[-20:]))
    return json.loads(results[-1].removeprefix("RESULT "))


# --------------------------------------------------------------------------- the store


def fresh_database(args: argparse.Namespace) -> None:
    shutil.rmtree(args.home, ignore_errors=True)
    args.home.mkdir(parents=True)
    if args.database == "postgres":
        from sqlalchemy import create_engine, text

        engine = create_engine(os.environ["MUMIC_TEST_DATABASE_URL"], isolation_level="AUTOCOMMIT")
        with engine.connect() as con:
            con.execute(text(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)"))
            con.execute(text(f"CREATE DATABASE {BENCH_DB}"))
        engine.dispose()


def database_bytes(studio) -> int:
    if studio.url.startswith("sqlite"):
        db = studio.settings.home / "mumic.db"
        return sum(p.stat().st_size for p in (db, db.with_name("mumic.db-wal")) if p.exists())
    from sqlalchemy import text

    with studio.read() as s:
        return int(s.scalar(text("SELECT pg_database_size(current_database())")))


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def synthetic_embeddings(cache_dir: Path, n: int, dim: int, rng: np.random.Generator) -> None:
    """Clustered unit vectors (1,000 centres) as the cache's one merged part, written in slices."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    centres = rng.standard_normal((1000, dim)).astype(np.float32)
    emb = np.lib.format.open_memmap(cache_dir / "part-000000-emb.npy", mode="w+", dtype=np.float32, shape=(n, dim))
    for start in range(0, n, 50_000):
        stop = min(n, start + 50_000)
        x = centres[rng.integers(0, 1000, stop - start)] + 1.5 * rng.standard_normal((stop - start, dim)).astype(
            np.float32
        )
        emb[start:stop] = x / np.linalg.norm(x, axis=1, keepdims=True)
    emb.flush()
    del emb
    np.save(cache_dir / "part-000000-ids.npy", np.arange(1, n + 1, dtype=np.int64))  # the commit mark


def make_encoder(folder: Path, dim: int) -> None:
    """A random open_clip model with the tiny built-in towers and a ``dim``-wide embedding."""
    from mumic_core.encoders.factory import create_random_local_dir
    from mumic_core.encoders.spec import CONFIG_NAME

    cfg = json.loads((ROOT / "mumic_core/encoders/model_configs/mumic-tiny-rn.json").read_text())
    cfg["embed_dim"] = dim
    arch = folder.with_name(folder.name + "-config")
    arch.mkdir(parents=True, exist_ok=True)
    (arch / CONFIG_NAME).write_text(json.dumps({"model_cfg": cfg}))
    create_random_local_dir(f"local-dir:{arch}", folder, seed=0)


# --------------------------------------------------------------------------- main


def main() -> None:
    args = ARGS
    if args.worker_step:
        worker_step(args)
        return
    rng = np.random.default_rng(args.seed)
    fresh_database(args)

    from benchmarks import _review_bench as bench
    from mumic_core.config import load_settings
    from mumic_core.encoders.spec import EncoderSpec
    from mumic_core.pipeline.search import search_text, similar_images
    from mumic_core.services.classes import add_scored_class
    from mumic_core.store.auth import SYSTEM
    from mumic_core.store.classes import add_class
    from mumic_core.store.collection import class_counts, collection_counts
    from mumic_core.store.dashboard import annotator_agreement, correction_rates, model_history
    from mumic_core.store.label_io import export_labels
    from mumic_core.store.queue import QueueFilter, queue_page
    from mumic_core.store.registry import active_version, encoder_spec, register_version
    from mumic_core.store.studio import open_studio

    studio = open_studio(load_settings(), actor=SYSTEM)
    seconds: dict[str, float] = {}
    print(f"building {args.images:,} images x {args.classes} classes ({args.database}) in {args.home}", flush=True)
    t0 = time.perf_counter()
    classes = [add_class(studio, f"class {k:03d}", [f"a photo of thing {k:03d}"]) for k in range(args.classes)]
    class_ids = [c.id for c in classes]
    make_encoder(args.home / "encoder", args.dim)
    base = register_version(
        studio,
        "v0001",
        EncoderSpec(f"local-dir:{args.home / 'encoder'}", "", "pretrained", f"random {args.dim}-d encoder"),
        "pretrained",
        "scale benchmark encoder",
    )
    seconds["classes_encoder"] = time.perf_counter() - t0
    seconds["images"] = bench.seed_images(studio, args.images, rng)
    t0 = time.perf_counter()
    synthetic_embeddings(studio.settings.embedding_dir / encoder_spec(studio, base).key, args.images, args.dim, rng)
    seconds["embeddings"] = time.perf_counter() - t0
    reviews = bench.seed_reviews(studio, class_ids, args.images, args.reviewed, rng)
    seconds["reviews"] = reviews.pop("seconds")
    seconds = {k: round(v, 1) for k, v in seconds.items()}
    print(f"  seeded: {seconds}", flush=True)

    steps: dict[str, dict] = {}
    size_before = database_bytes(studio)
    print("first version: scoring every image, summaries, search index (worker process)", flush=True)
    steps["first promotion (zero-shot v0001)"] = run_worker_step(args, "promote", base.name)
    bench.checkpoint(studio)
    size_scored = database_bytes(studio)
    print(f"  {steps['first promotion (zero-shot v0001)']}", flush=True)
    print("head-mode training on the reviews (worker process)", flush=True)
    trained = run_worker_step(args, "train")
    steps["head-mode training"] = trained
    print(f"  {trained}", flush=True)
    print(f"head-mode promotion of {trained['version']} (worker process)", flush=True)
    steps["head-mode promotion"] = run_worker_step(args, "promote", trained["version"])
    print(f"  {steps['head-mode promotion']}", flush=True)
    bench.checkpoint(studio)
    size_promoted = database_bytes(studio)
    # A second retrain and promotion: what the store grows by once it holds one version's rows
    # and the space the previous version's left (SQLite's free pages, PostgreSQL's dead rows).
    again = run_worker_step(args, "train")
    steps["second head-mode promotion"] = run_worker_step(args, "promote", again["version"])
    print(f"  second promotion: {steps['second head-mode promotion']}", flush=True)
    bench.checkpoint(studio)
    size_again = database_bytes(studio)
    version = active_version(studio)
    info = {"version_id": version.id, "class_ids": class_ids}

    other = {}
    reset_peak_rss()  # what follows is what a web process does; the seeding above is not
    web_anon = AnonPeak().__enter__()
    web_start = {"rss_gib": peak_rss_gib(), "anon_gib": web_anon.gib}  # what seeding left in this process
    with bench.OtherLoad() as load:
        bench.bench_services(studio, info, args.images, args.repeats, args.deep_offset)
        print("new class, search, export, dashboard", flush=True)
        t0 = time.perf_counter()
        scored = add_scored_class(studio, "new thing", ["a photo of a new thing"])
        ranked = queue_page(studio, QueueFilter(version.id, class_id=scored.cls.id, status="all"), 0, 12)
        new_class_s = time.perf_counter() - t0
        assert len(ranked) == 12, ranked
        bench.record(
            "class", f"new class: scored over {scored.images:,} images and its first page ranked", [new_class_s]
        )
        image_id = int(ranked[0])
        bench.record(
            "search", "similar images: first call (loads the index)", [_once(similar_images, studio, version, image_id)]
        )
        bench.record(
            "search",
            "similar images (k = 24)",
            bench.timed(lambda: similar_images(studio, version, image_id), args.repeats * 3),
        )
        bench.record(
            "search",
            "text search (k = 24)",
            bench.timed(lambda: search_text(studio, version, "a photo of thing 007"), args.repeats * 3),
        )
        bench.record(
            "export", "labels export, CSV (every labelled image)", bench.timed(lambda: export_labels(studio, "csv"), 3)
        )
        for name, fn in (
            ("collection counts", lambda: collection_counts(studio)),
            ("class counts (predicted positives per class)", lambda: class_counts(studio, version.id)),
            ("correction rates", lambda: correction_rates(studio)),
            ("annotator agreement", lambda: annotator_agreement(studio)),
            ("model history", lambda: model_history(studio)),
        ):
            bench.record("dashboard", f"dashboard: {name}", bench.timed(fn, max(3, args.repeats // 4)))
    other["service"] = load.summary()
    if not args.skip_apptest:
        with bench.OtherLoad() as load:
            bench.bench_apptest(studio, args.repeats)
        other["apptest"] = load.summary()

    promotions = {k: v for k, v in steps.items() if "promotion" in k}
    result = {
        "command": " ".join([".venv/bin/python", "benchmarks/scale.py", *sys.argv[1:]]),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "database": args.database,
            "other_processes_cpu": other,
        },
        "sizes": {
            "images": args.images,
            "classes": args.classes,
            "dim": args.dim,
            "reviewed_images": reviews["reviewed_images"],
            "annotations": reviews["annotations"],
            "repeats": args.repeats,
        },
        "seeding_seconds": seconds,
        "worker_steps": steps,
        "storage_bytes": {
            "database_before_scoring": size_before,
            "database_after_first_version": size_scored,
            "database_after_head_promotion": size_promoted,
            "database_after_second_head_promotion": size_again,
            "growth_per_promotion": size_again - size_promoted,
            "embedding_cache": folder_bytes(studio.settings.embedding_dir),
            "search_index": folder_bytes(studio.settings.home / "index"),
        },
        "peak_rss_gib": {
            "web (this process: service calls, AppTest, search)": peak_rss_gib(),
            **{f"worker: {k}": v["peak_rss_gib"] for k, v in steps.items()},
        },
        "web_process_at_start": web_start,
        "web_resident_files_at_end": resident_files(),
        "peak_anon_gib": {
            "web (this process: service calls, AppTest, search)": web_anon.gib,
            **{f"worker: {k}": v["peak_anon_gib"] for k, v in steps.items()},
        },
        "budgets": {
            "interaction_p95_ms": bench.BUDGET_MS,
            "new_class_s": NEW_CLASS_BUDGET_S,
            "promotion_s": PROMOTION_BUDGET_S,
            "search_p95_ms": SEARCH_BUDGET_MS,
            "memory_gib": MEMORY_BUDGET_GIB,
        },
        "promotion_seconds": {k: v["seconds"] for k, v in promotions.items()},
        "rows": bench.ROWS,
        "over_budget": over_budget(bench.ROWS),
    }
    web_anon.__exit__(None, None, None)
    result["peak_anon_gib"]["web (this process: service calls, AppTest, search)"] = web_anon.gib
    result["peak_rss_over_budget"] = [k for k, v in result["peak_rss_gib"].items() if v > MEMORY_BUDGET_GIB]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown([result]))
    print(markdown([result]))
    check_written(args.out.with_suffix(".json"), args.out.with_suffix(".md"))
    require({r["group"] for r in bench.ROWS}, ["service", "class", "search", "export", "dashboard"], "the rows' groups")
    if args.database == "postgres" and not args.keep:
        from sqlalchemy import create_engine, text

        studio_engine = create_engine(os.environ["MUMIC_TEST_DATABASE_URL"], isolation_level="AUTOCOMMIT")
        with studio_engine.connect() as con:
            con.execute(text(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)"))


def _once(fn, *a) -> float:
    t0 = time.perf_counter()
    fn(*a)
    return time.perf_counter() - t0


def over_budget(rows: list[dict]) -> list[str]:
    """Rows over their budget: interactions 300 ms p95, search 20 ms p95, a new class 5 s."""
    out = []
    for r in rows:
        if r["group"] == "search" and "first call" not in r["operation"]:
            limit = SEARCH_BUDGET_MS
        elif r["group"] == "class":
            limit = NEW_CLASS_BUDGET_S * 1000
        elif r["group"] in ("service", "apptest"):
            limit = 300.0
        else:
            continue
        if r["p95_ms"] > limit:
            out.append(f"{r['operation']} ({r['group']}): p95 {r['p95_ms']:,.0f} ms > {limit:,.0f} ms")
    return out


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


def markdown(results: list[dict]) -> str:
    """One table per run (database, size): rows, worker steps, storage and memory."""
    lines = ["# Scale", "", "Written by `benchmarks/scale.py` (see its docstring); one section per run.", ""]
    for r in results:
        z, st = r["sizes"], r["storage_bytes"]
        lines += [
            f"## {z['images']:,} images x {z['classes']} classes, {r['machine']['database']} ({r['when']})",
            "",
            f"`{r['command']}` on {r['machine']['platform']}, {r['machine']['cpu_count']} CPUs. "
            f"{z['reviewed_images']:,} images reviewed ({z['annotations']:,} labels); embeddings {z['dim']}-d; "
            f"other processes' CPU while measuring: {r['machine']['other_processes_cpu']}.",
            "",
            "| worker step | seconds | peak memory | |",
            "|---|---:|---:|---|",
        ]
        for name, step in r["worker_steps"].items():
            flag = "**over 2 min**" if "head-mode promotion" in name and step["seconds"] > PROMOTION_BUDGET_S else ""
            anon = f" (anonymous {step['peak_anon_gib']:.2f})" if "peak_anon_gib" in step else ""
            lines.append(f"| {name} | {step['seconds']:,.1f} | {step['peak_rss_gib']:.2f} GiB{anon} | {flag} |")
        lines += [
            "",
            f"Storage: database {_gib(st['database_after_first_version'])} after the first version, "
            f"{_gib(st['database_after_head_promotion'])} after a head-mode promotion, "
            f"{_gib(st.get('database_after_second_head_promotion', 0))} after a second one "
            f"(growth per promotion {_gib(st['growth_per_promotion'])}); "
            f"embedding cache {_gib(st['embedding_cache'])}; "
            f"search index {_gib(st['search_index'])}. Peak memory: "
            + "; ".join(f"{k} {v:.2f} GiB" for k, v in r["peak_rss_gib"].items())
            + ". Of it anonymous memory (RssAnon, sampled every 20 ms; the rest is page cache of mapped "
            "files, which the kernel can drop): "
            + (
                "; ".join(f"{k} {v:.2f} GiB" for k, v in r["peak_anon_gib"].items())
                if "peak_anon_gib" in r
                else "not measured in this run"
            )
            + "."
            + (
                f" The web process held {r['web_process_at_start']['rss_gib']:.2f} GiB "
                f"({r['web_process_at_start']['anon_gib']:.2f} anonymous) before its part began, left by "
                "seeding the store in the same process."
                if "web_process_at_start" in r
                else ""
            )
            + (
                " Mapped files resident in the web process at its end: "
                + "; ".join(f"{k} {v:.2f} GiB" for k, v in r["web_resident_files_at_end"].items() if v >= 0.01)
                + "."
                if r.get("web_resident_files_at_end")
                else ""
            ),
            "",
            "| operation | n | median ms | p95 ms | max ms |",
            "|---|---:|---:|---:|---:|",
        ]
        for row in r["rows"]:
            ms = " | ".join(f"{row[k]:,.1f}" for k in ("median_ms", "p95_ms", "max_ms"))
            lines.append(f"| {row['operation']} | {row['n']} | {ms} |")
        lines += ["", "Over budget:" if r["over_budget"] else "Nothing over budget.", ""]
        lines += [f"- {x}" for x in r["over_budget"]] + [""]
    return "\n".join(lines)


def summarise() -> None:
    found = sorted((ROOT / "benchmarks/results").glob("scale_*.json"))
    runs = [json.loads(p.read_text()) for p in found if p.stem.split("_")[1] in ("sqlite", "postgres")]
    runs.sort(key=lambda r: (r["sizes"]["images"], r.get("machine", {}).get("database", ""), r.get("when", "")))
    text = markdown(runs)
    speed = ROOT / "benchmarks/results/speed.json"
    worker = json.loads(speed.read_text()).get("worker_rescoring", {}) if speed.exists() else {}
    if "ratio" in worker:  # measured by speed.py, which needs real images and a real encoder
        text += (
            "\n## Cold re-scoring by one worker (from `speed.json`)\n\n"
            f"{worker['images']:,} images from cold (decode, encode, store) by one huey worker with "
            f"{worker['model']}: {worker['images_per_s']} images/s, **{worker['ratio']}**"
            + (f" ± {worker['ratio_sd']} (mean ± sd of {worker['runs']} runs)" if worker.get("ratio_sd") else "")
            + " of the raw open_clip forward of the same model and batch measured in the same run (goal >= 0.9)"
            + (
                f"; {worker['ratio_to_streams']} ± {worker['ratio_to_streams_sd']} of that forward run as the "
                f"worker runs it ({worker['cpu_streams']} single-thread processes at once)"
                if worker.get("ratio_to_streams_sd")
                else ""
            )
            + ". Command and method: `speed.md`.\n"
        )
    gpu_path = ROOT / "benchmarks/results/gpu_h200/speed.json"
    gpu = json.loads(gpu_path.read_text()) if gpu_path.exists() else {}
    rows = gpu.get("encode", [])
    if rows:  # speed.py --parts encode, run on a lent GPU machine
        text += (
            f"\nOn a GPU ({gpu['machine']}; `gpu_h200/speed.md`), encoding alone "
            "(decode, preprocess, forward) against the raw forward, with the default decoding processes:\n\n"
        )
        text += "".join(
            f"- {r['model']}, {r['images']}: {r['encode_images_per_s']} images/s, **{r['ratio']}**\n"
            for r in rows
            if r["default"]
        )
    (ROOT / "benchmarks/results/scale.md").write_text(text)
    print(f"wrote benchmarks/results/scale.md from {len(runs)} runs")


if __name__ == "__main__":
    summarise() if ARGS.summarise else main()
