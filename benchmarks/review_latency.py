"""Review latency at scale: every review interaction within 300 ms of server time.

Seeds a fresh store with 100k images and 20 classes (2M predictions of one active model
version, the per-image score summaries, and about 5 % of the images already reviewed, some of
them disputed), then times the review service calls and AppTest round trips of the Review page
(server time of ``AppTest.run()``: the script run(s) one interaction causes, no browser).

    .venv/bin/python benchmarks/review_latency.py [--images 100000] [--classes 20]
        [--home /tmp/mumic-bench-latency] [--repeats 30] [--out benchmarks/results/review_latency]
        [--smoke [DIR]]

Writes ``<out>.json`` (machine, sizes, seeding seconds, every row, query plans, command line)
and ``<out>.md`` (the table). Each operation gets one untimed warm-up call first; the AppTest
cold first run is reported on its own row. Times are medians / p95 / max over ``--repeats``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._smoke import add_smoke_option, check_written, require, smoke_folder  # noqa: E402

# --smoke: 2,000 images (40,000 predictions), 3 repeats; the same operations and round trips.
SMOKE = {"images": 2_000, "repeats": 3, "deep_offset": 1_000}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--classes", type=int, default=20)
    ap.add_argument("--home", type=Path, default=Path("/tmp/mumic-bench-latency"))
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--reviewed", type=float, default=0.05, help="fraction of images already reviewed")
    ap.add_argument("--deep-offset", type=int, default=50_000, help="offset of the deep page change")
    ap.add_argument(
        "--out",
        type=Path,
        default=ROOT / "benchmarks/results/review_latency",
        help="result path without suffix (.json and .md are written)",
    )
    ap.add_argument("--skip-apptest", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    add_smoke_option(ap)
    args = ap.parse_args()
    if args.smoke is not None:
        folder = smoke_folder(args.smoke, "review_latency")
        vars(args).update(SMOKE, home=folder / "home", out=folder / "review_latency")
    return args


ARGS = parse_args()
# Settings are read from the environment: point everything at a fresh home before importing.
for _k in [k for k in os.environ if k.startswith("MUMIC_")]:
    del os.environ[_k]
os.environ["MUMIC_HOME"] = str(ARGS.home)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_ENDPOINT", "http://127.0.0.1:9")
os.chdir(ROOT)

from benchmarks._review_bench import (  # noqa: E402
    BUDGET_MS,
    ROWS,
    OtherLoad,
    bench_apptest,
    bench_services,
    markdown,
    query_plans,
    seed,
)
from mumic_core.config import load_settings  # noqa: E402
from mumic_core.store.auth import SYSTEM  # noqa: E402
from mumic_core.store.studio import open_studio  # noqa: E402


def main() -> None:
    args = ARGS
    rng = np.random.default_rng(args.seed)
    shutil.rmtree(args.home, ignore_errors=True)
    studio = open_studio(load_settings(), actor=SYSTEM)
    print(f"seeding {args.images:,} images x {args.classes} classes into {args.home}", flush=True)
    info = seed(studio, args.images, args.classes, args.reviewed, rng)
    print(f"  seeded in {info['seconds']['total']:.1f} s: {info['seconds']}", flush=True)
    load_start = [round(x, 2) for x in os.getloadavg()]
    other = {}
    with OtherLoad() as load:
        filters = bench_services(studio, info, args.images, args.repeats, args.deep_offset)
    other["service"] = load.summary()
    if not args.skip_apptest:
        with OtherLoad() as load:
            bench_apptest(studio, args.repeats)
        other["apptest"] = load.summary()
    print(f"CPU cores used by other processes while measuring: {other}", flush=True)
    result = {
        "command": " ".join(
            [".venv/bin/python", *[Path(sys.argv[0]).resolve().relative_to(ROOT).as_posix()], *sys.argv[1:]]
        ),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "loadavg_start": load_start,
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
            "other_processes_cpu": other,
        },
        "sizes": {
            "images": args.images,
            "classes": args.classes,
            "predictions": info["predictions"],
            "reviewed_images": info["reviewed_images"],
            "disputed_images": info["disputed_images"],
            "annotations": info["annotations"],
            "repeats": args.repeats,
            "db_bytes": (args.home / "mumic.db").stat().st_size,
        },
        "seeding_seconds": info["seconds"],
        "budget_ms": BUDGET_MS,
        "notes": "one untimed warm-up per service operation; AppTest times are AppTest.run() wall time "
        "(script runs in-process); the store gets the same sampled ANALYZE as the app after scoring",
        "rows": ROWS,
        "over_budget": [r["operation"] for r in ROWS if r["over_budget"]],
        "query_plans": query_plans(studio, filters, args.deep_offset),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    check_written(args.out.with_suffix(".json"), args.out.with_suffix(".md"))
    require({r["group"] for r in ROWS}, ["service"] + ([] if args.skip_apptest else ["apptest"]), "the rows' groups")
    require(
        {r["operation"] for r in ROWS},
        ["image_views 1 image, top 9", "submit 1 image (9 decisions)", "undo that submission"]
        + ([] if args.skip_apptest else ["next image", "Grid: next page (number input +1)"]),
        "the rows",
    )
    if result["over_budget"]:
        print("over budget (p95 > 300 ms):\n  " + "\n  ".join(result["over_budget"]))


if __name__ == "__main__":
    main()
