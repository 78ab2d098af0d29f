"""Scoring a large collection with 1 and with 2 worker processes (issue 9).

The store of ``benchmarks/speed.py`` (``--images`` generated 96 px scenes, 20 classes) is scored
from cold (no cached embeddings) by a score job, as the Training page or ``models activate``
queue it, with N huey workers on a Redis queue (a redis-server started here). The job splits the
images into encode batches (``MUMIC_EMBEDDING_CHUNK``) that every worker takes; then the job's
worker writes the predictions. Each worker gets ``cores / N`` torch threads (``OMP_NUM_THREADS``),
so the runs use the same cores. Reported: wall time of the job, time until every batch was
encoded, images/s, and the batches each worker encoded.

    .venv/bin/python benchmarks/scale_out.py [--images 100000] [--workers 1,2] [--pin]
        [--results benchmarks/results] [--smoke [DIR]]

Writes benchmarks/results/scale_out.{json,md}. ``--smoke``: 48 scenes in batches of 16, 1 and 2
workers, with a stand-in for the starter model (random weights).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
RESULTS = ROOT / "benchmarks" / "results"

from speed import demo_classes, fresh_studio, scenes  # noqa: E402

from benchmarks._smoke import add_smoke_option, check_written, require, smoke_folder, stand_in_model  # noqa: E402

SMOKE_EMBEDDING_CHUNK = "16"  # so that the smoke run's 48 images make batches for both workers


def start_redis(folder: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    return proc, f"redis://127.0.0.1:{port}/0"


def run(studio, n_workers: int, env: dict, cores: int, pin: bool = False) -> dict:
    from sqlalchemy import delete, func, select

    from db.models import EncodeBatch, ImageScore, ScoreBlock
    from mumic_core.pipeline.lifecycle import ensure_base_version
    from mumic_core.pipeline.queue import enqueue
    from mumic_core.pipeline.scoring import load_scorer
    from mumic_core.store.jobs import get_job
    from mumic_core.store.workers import live_workers

    version = ensure_base_version(studio)
    key = load_scorer(studio, version).encoder.spec.key
    shutil.rmtree(studio.settings.embedding_dir / key, ignore_errors=True)  # from cold
    with studio.write() as s:
        s.execute(delete(ScoreBlock))
        s.execute(delete(ImageScore))
        s.execute(delete(EncodeBatch))
    threads = 1 if pin else max(1, cores // n_workers)
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "huey.bin.huey_consumer",
                "mumic_core.pipeline.worker.huey",
                "--workers",
                "1",
                "--worker-type",
                "thread",
                "--max-delay",
                "0.5",
            ],
            cwd=ROOT,
            env=env | {"OMP_NUM_THREADS": str(threads)},
            preexec_fn=(lambda k=k: os.sched_setaffinity(0, {k})) if pin else None,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for k in range(n_workers)
    ]
    try:
        while len(live_workers(studio)) < n_workers:
            time.sleep(0.5)
        t = time.monotonic()
        job_id = enqueue(studio, "score", {})
        encoded = None
        while get_job(studio, job_id).status in ("queued", "running"):
            if encoded is None:
                with studio.read() as s:
                    n = s.scalar(select(func.count()).select_from(EncodeBatch))
                    left = s.scalar(select(func.count()).select_from(EncodeBatch).where(EncodeBatch.status != "stored"))
                if n and not left:
                    encoded = time.monotonic() - t
            time.sleep(1)
        seconds = time.monotonic() - t
        job = get_job(studio, job_id)
        with studio.read() as s:
            holders = Counter(s.scalars(select(EncodeBatch.holder)))
            images = s.scalar(select(func.count()).select_from(ImageScore))
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(60)
    if job.status != "succeeded":
        sys.exit(f"the score job {job.status}: {job.error}")
    result = {
        "workers": n_workers,
        "torch_threads_each": threads,
        "cores_each": "1 (pinned)" if pin else "shared",
        "images": images,
        "seconds": round(seconds, 1),
        "encode_seconds": round(encoded or seconds, 1),
        "images_per_s": round(images / seconds, 1),
        "batches_by_worker": sorted(holders.values(), reverse=True),
    }
    print(result, flush=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--starter", type=Path, default=ROOT / "mumic_data" / "models" / "starter")
    ap.add_argument("--home", type=Path, default=Path("/tmp/mumic-bench-speed"))
    ap.add_argument(
        "--pin", action="store_true", help="worker k runs on core k alone: N workers stand for N one-core machines"
    )
    ap.add_argument("--results", type=Path, default=RESULTS, help="folder of scale_out.{json,md}")
    add_smoke_option(ap)
    args = ap.parse_args()
    if args.smoke is not None:
        folder = smoke_folder(args.smoke, "scale_out")
        args.images, args.home, args.results = 48, folder / "home", folder
        args.starter = stand_in_model(folder / "starter")
    if not (args.starter / "open_clip_config.json").is_file():
        sys.exit(f"no starter model in {args.starter}: run `make starter-model` first")
    from mumic_core.store.collection import import_folder

    home = args.home / f"scale-out-{args.images}"
    rows = scenes(args.home / "scenes", args.images)
    fresh = not (home / "mumic.db").exists()
    studio = fresh_studio(home, args.starter, keep=True)
    if fresh:
        demo_classes(studio)
        import_folder(studio, args.home / "scenes")
    redis, url = start_redis(home)
    os.environ["MUMIC_QUEUE_URL"] = url
    if args.smoke is not None:
        os.environ["MUMIC_EMBEDDING_CHUNK"] = SMOKE_EMBEDDING_CHUNK
    from mumic_core.config import load_settings
    from mumic_core.store.studio import Studio

    studio = Studio(load_settings(), studio.actor)
    cores = os.cpu_count() or 1
    env = {
        **os.environ,
        "MUMIC_HOME": str(home),
        "MUMIC_PRETRAINED": f"local-dir:{args.starter.resolve()}",
        "MUMIC_QUEUE_URL": url,
    }
    try:
        runs = [run(studio, int(n), env, cores, args.pin) for n in args.workers.split(",")]
    finally:
        redis.terminate()
    import torch

    base = runs[0]["seconds"]
    for r in runs:
        r["speed_up"] = round(base / r["seconds"], 2)
    machine = (
        f"{platform.machine()}, {cores} CPU cores, "
        f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'}"
    )
    saved = args.results / "scale_out.json"
    previous = json.loads(saved.read_text()) if saved.exists() else {}
    out = previous if previous.get("machine") == machine and previous.get("images") == len(rows) else {}
    out.update(
        machine=machine,
        model="starter model (mumic-small-rn96, 96 px)",
        store="SQLite; queue: Redis",
        images=len(rows),
        classes=20,
        embedding_chunk=studio.settings.embedding_chunk,
    )
    out["pinned" if args.pin else "shared"] = {
        "command": " ".join(["python benchmarks/scale_out.py", *sys.argv[1:]]),
        "runs": runs,
    }
    args.results.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(out, indent=1))
    (args.results / "scale_out.md").write_text(markdown(out))
    check_written(saved, args.results / "scale_out.md")
    for r in runs:
        require(r, ["workers", "seconds", "images_per_s", "speed_up", "batches_by_worker"], "a run's row")
        if r["images"] != len(rows):
            raise SystemExit(f"malformed result: {r['workers']} worker(s) scored {r['images']} of {len(rows)} images")


def markdown(out: dict) -> str:
    lines = [
        f"# Scoring {out['images']:,} images with 1 and with more workers",
        "",
        f"Machine: {out['machine']}. Model: {out['model']}. {out['store']}. {out['classes']} classes. "
        f"Batches of {out['embedding_chunk']} images. From cold (no cached embeddings): the job splits "
        "the images into batches that every worker encodes, then its own worker writes the predictions.",
        "",
    ]
    titles = {
        "shared": "Workers sharing the machine's cores (each gets cores / N torch threads)",
        "pinned": "Each worker alone on one core (N workers stand for N one-core machines)",
    }
    for part in ("shared", "pinned"):
        if part not in out:
            continue
        lines += [
            f"## {titles[part]}",
            "",
            f"`{out[part]['command']}`",
            "",
            "| workers | torch threads each | job (s) | encoding done (s) | images/s | speed-up | batches per worker |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in out[part]["runs"]:
            lines.append(
                f"| {r['workers']} | {r['torch_threads_each']} | {r['seconds']} | {r['encode_seconds']} | "
                f"{r['images_per_s']} | **{r['speed_up']}** | {', '.join(map(str, r['batches_by_worker']))} |"
            )
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
