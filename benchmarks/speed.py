"""How fast is the pipeline? (issue 7; extends issue 5's retraining timings)

All through the product's own code, with the machine stated in the results:

1. Scoring throughput: the product pipeline (``score_collection`` from cold: decode, preprocess,
   forward, store predictions and per-image summaries) against open_clip's raw ``encode_image``
   on tensors prepared in advance, same model and batch size. Two models: the starter model
   (96 px ModifiedResNet, what an offline install runs) and ViT-B-32 with random weights (the
   same computation as the LAION ViT-B-32 real users download). Goal: ratio >= 0.9.
2. Worker peak memory: the real worker process (huey consumer, as in the Procfile) re-scores a
   store of ``--images`` images with 20 classes from cold; its peak resident memory (VmHWM).
3. A new class over that store: ``add_class`` + ``score_classes`` (what the Classes page does),
   median of 5 classes. Goal: <= 2 s.
4. Head-mode retraining with 10k labelled images (``training.train``, head mode), and promotion.
   Goal: <= 30 s on CPU.
5. Full-mode retraining on the demo collection (400 images, 200 labelled).
6. Camera-sized photos: decoding and preprocessing a 4000 x 3000 JPEG the product's way
   (reduced-scale decoding) against a full decode, beside the model's forward.
7. Encoding alone (``encode_images``: decode, preprocess, forward; what a score job spends its
   time on) against the raw forward, decoding in the process itself and in the device's default
   pool of processes: 96 px scenes (PNG) and 640 x 480 photos (JPEG), starter model and ViT-B-32. On a GPU
   this is what tells whether decoding keeps the model busy.

    .venv/bin/python benchmarks/speed.py [--images 100000] [--labelled 10000]
        [--starter mumic_data/models/starter] [--parts throughput,worker,new_class,head,full,photos,encode]
        [--results benchmarks/results] [--smoke [DIR]]

On a machine with a GPU it runs unchanged (the product puts the model on cuda when torch sees
one). Writes benchmarks/results/speed.{json,md}. ``--smoke``: every part on 48 scenes (24
labelled; throughput on 16, ViT-B-32 on 4, one repeat), full mode on a 40-image demo for one
epoch, with a stand-in for the starter model (random weights).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"

from benchmarks._smoke import add_smoke_option, check_written, require, smoke_folder, stand_in_model  # noqa: E402

# What each part adds to the results.
PART_KEYS = {
    "throughput": "throughput",
    "worker": "worker_rescoring",
    "new_class": "new_class",
    "head": "head_mode",
    "full": "full_mode_demo",
    "photos": "photos",
    "encode": "encode",
}
SMOKE = {
    "images": 48,
    "labelled": 24,
    "throughput_images": 16,
    "vit_images": 4,
    "repeats": 1,
    "worker_runs": 1,
    "full_epochs": 1,
    "demo_images": 40,
    "photos": 2,
    "encode_photos": 4,
}


def fresh_studio(home: Path, model_dir: Path | None, keep: bool = False):
    """A studio in ``home`` (emptied unless ``keep``) whose base model is ``model_dir``."""
    if not keep:
        shutil.rmtree(home, ignore_errors=True)
    for key in [k for k in os.environ if k.startswith("MUMIC_")]:
        del os.environ[key]
    os.environ["MUMIC_HOME"] = str(home)
    if model_dir:
        os.environ["MUMIC_PRETRAINED"] = f"local-dir:{model_dir.resolve()}"
    from mumic_core.config import load_settings
    from mumic_core.store.auth import SYSTEM
    from mumic_core.store.studio import open_studio

    return open_studio(load_settings(), actor=SYSTEM)


def random_vit_dir(home: Path) -> Path:
    """ViT-B-32 with random weights under ``home`` (made once): the computation of the LAION
    ViT-B-32 real users run."""
    from mumic_core.encoders.factory import create_random_local_dir

    vit_dir = home / "vit-b-32-random"
    if not (vit_dir / "open_clip_config.json").exists():
        create_random_local_dir("ViT-B-32", vit_dir, seed=0)
    return vit_dir


def raw_forward_rate(encoder, paths: list[Path], batch_size: int, repeats: int = 3) -> float:
    """Median images/s of open_clip's encode_image alone, on tensors prepared in advance."""
    import torch

    from mumic_core.encoders.pixels import load_rgb

    pixels = torch.stack([encoder.preprocess(load_rgb(p)) for p in paths])
    return statistics.median(forward_rate(encoder, pixels, batch_size) for _ in range(repeats))


def raw_forward_rate_plain_process(model_dir: Path, paths: list[Path], batch_size: int) -> float:
    """``raw_forward_rate`` in a fresh Python process with glibc's default allocator settings,
    as a plain script would run open_clip (this process keeps freed memory as a worker does)."""
    code = (
        "import json, sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]);"
        "from benchmarks.speed import raw_forward_rate;"
        "from mumic_core.encoders.factory import load_encoder;"
        "from mumic_core.encoders.spec import EncoderSpec;"
        "enc = load_encoder(EncoderSpec('local-dir:' + sys.argv[2], '', 'starter', ''));"
        "paths = [Path(p) for p in json.loads(Path(sys.argv[3]).read_text())];"
        "print(raw_forward_rate(enc, paths, int(sys.argv[4])))"
    )
    with tempfile.NamedTemporaryFile("w", suffix=".json") as listing:
        listing.write(json.dumps([str(p) for p in paths]))
        listing.flush()
        cmd = [sys.executable, "-c", code, str(ROOT), str(model_dir.resolve()), listing.name, str(batch_size)]
        return float(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.split()[-1])


def raw_forward_streams_rate(encoder, paths: list[Path], batch_size: int, streams: int, repeats: int = 3) -> float:
    """``raw_forward_rate`` as a CPU worker runs the model (``encode_images``): the batches shared
    among ``streams`` forked processes of one torch thread each, running at once, timed from
    their common start to the last one's end (median of ``repeats``)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import torch

    from mumic_core.encoders.pixels import load_rgb

    pixels = torch.stack([encoder.preprocess(load_rgb(p)) for p in paths])
    context = multiprocessing.get_context("fork")
    start = context.Barrier(streams)
    with ProcessPoolExecutor(
        streams, mp_context=context, initializer=_stream_start, initargs=(encoder, pixels, start)
    ) as pool:
        rates = []
        for _ in range(repeats):
            spans = list(pool.map(_stream_span, range(streams), [streams] * streams, [batch_size] * streams))
            rates.append(len(pixels) / (max(end for _, end in spans) - min(begin for begin, _ in spans)))
    return statistics.median(rates)


_stream: dict = {}  # in a process of raw_forward_streams_rate: the model, the pixels, the start barrier


def _stream_start(encoder, pixels, start) -> None:
    import torch

    torch.set_num_threads(1)
    _stream.update(encoder=encoder, pixels=pixels, start=start)


def _stream_span(k: int, streams: int, batch_size: int) -> tuple[float, float]:
    """Stream ``k``'s share of the batches: (start, end) wall-clock times, after a first batch
    to warm up and a wait for the other streams."""
    import torch

    model, pixels = _stream["encoder"].model, _stream["pixels"]
    with torch.inference_mode():
        model.encode_image(pixels[:batch_size])
        _stream["start"].wait()
        begin = time.time()
        for b in range(k * batch_size, len(pixels), streams * batch_size):
            model.encode_image(pixels[b : b + batch_size])
        return begin, time.time()


def forward_rate(encoder, pixels, batch_size: int) -> float:
    """Images/s of open_clip's encode_image on ``pixels`` (a CPU tensor, moved batch by batch)."""
    import torch

    device = next(encoder.model.parameters()).device
    with torch.inference_mode():
        start = time.perf_counter()
        for k in range(0, len(pixels), batch_size):
            encoder.model.encode_image(pixels[k : k + batch_size].to(device))
        if device.type == "cuda":
            torch.cuda.synchronize()
        return len(pixels) / (time.perf_counter() - start)


def scenes(folder: Path, n: int) -> list[tuple[str, frozenset[str]]]:
    """``n`` generated long-tailed 96 px scenes in ``folder`` (made once, in one process per
    core, each with its own seed) and their labels."""
    from mumic_core.synthetic.scenes import read_labels_csv, write_labels_csv

    labels = folder / "labels.csv"
    if not labels.exists():
        t = time.monotonic()
        parts = max(1, min(os.cpu_count() or 1, n // 1000))
        bounds = [n * k // parts for k in range(parts + 1)]
        with ProcessPoolExecutor(parts) as pool:
            shares = [(folder, lo, hi - lo, 99_000 + k) for k, (lo, hi) in enumerate(zip(bounds, bounds[1:]))]
            chunks = pool.map(scene_part, shares)
            rows = [row for chunk in chunks for row in chunk]
        write_labels_csv(rows, labels)
        print(f"generated {n} scenes in {time.monotonic() - t:.0f} s", flush=True)
    return read_labels_csv(labels)[:n]


def scene_part(part: tuple[Path, int, int, int]) -> list[tuple[str, frozenset[str]]]:
    """One process's share of ``scenes``: (folder, first index, count, seed)."""
    from mumic_core.synthetic.scenes import LONG_TAIL_CLASSES, generate_collection, zipf_weights

    folder, first, count, seed = part
    return generate_collection(
        count,
        seed=seed,
        out_dir=folder,
        size=96,
        classes=LONG_TAIL_CLASSES,
        shape_p=zipf_weights(10),
        colour_p=zipf_weights(6),
        first_index=first,
    )


def demo_classes(studio) -> None:
    from mumic_core.store.classes import add_class
    from mumic_core.synthetic.scenes import DEMO_CLASSES

    for spec in DEMO_CLASSES:
        add_class(studio, spec.name, spec.prompts, spec.description)


def throughput(args, out: dict) -> None:
    """Pipeline vs raw forward for the starter model and a randomly initialised ViT-B-32, in
    this process with a worker's allocator settings (both sides)."""
    from mumic_core.encoders.allocator import keep_freed_memory_for_batches

    keep_freed_memory_for_batches()
    from mumic_core.pipeline.lifecycle import ensure_base_version
    from mumic_core.pipeline.scoring import load_scorer, score_collection
    from mumic_core.store.collection import image_items, import_folder

    vit_dir = random_vit_dir(args.home)
    rows = scenes(args.home / "scenes", args.images)
    out["throughput"] = {}
    models = (
        ("starter model (mumic-small-rn96, 96 px)", args.starter, args.throughput_images),
        ("ViT-B-32, random weights (224 px)", vit_dir, args.vit_images),
    )
    for k, (label, model_dir, n) in enumerate(models):
        with tempfile.TemporaryDirectory() as tmp:
            for name, _ in rows[:n]:
                os.link(args.home / "scenes" / name, Path(tmp) / name)
            studio = fresh_studio(args.home / f"throughput-{k}", model_dir)  # one store per model
            demo_classes(studio)
            import_folder(studio, Path(tmp))
        base = ensure_base_version(studio)
        t = time.monotonic()
        scorer = load_scorer(studio, base)  # a job loads its model once; timed apart from the throughput
        load = time.monotonic() - t
        paths = [p for _, p in image_items(studio)]
        pipeline, raw = [], []
        for _ in range(args.repeats):  # alternated: drift on a shared machine hits both alike
            shutil.rmtree(studio.settings.embedding_dir / scorer.encoder.spec.key, ignore_errors=True)
            t = time.perf_counter()
            score_collection(studio, base)
            pipeline.append(n / (time.perf_counter() - t))
            raw.append(raw_forward_rate(scorer.encoder, paths, args.batch_size, repeats=1))
        ratios = [p / r for p, r in zip(pipeline, raw)]
        out["throughput"][label] = {
            "images": n,
            "batch_size": args.batch_size,
            "model_load_seconds": round(load, 2),
            "repeats": args.repeats,
            "pipeline_images_per_s": round(statistics.median(pipeline), 1),
            "raw_forward_images_per_s": round(statistics.median(raw), 1),
            "ratio": round(statistics.median(ratios), 3),
            "ratio_each": [round(x, 3) for x in ratios],
        }
        print(label, out["throughput"][label], flush=True)


def peak_memory_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def big_store(args, out: dict):
    """The ``--images`` store, scored from cold by a real worker process; its peak memory."""
    import torch

    from mumic_core.encoders.allocator import keep_freed_memory_for_batches
    from mumic_core.encoders.encoding import default_decode_workers
    from mumic_core.encoders.factory import read_label
    from mumic_core.pipeline.lifecycle import ensure_base_version
    from mumic_core.pipeline.scoring import load_scorer
    from mumic_core.store.collection import image_items, import_folder
    from mumic_core.store.registry import active_version

    home = args.home / "big"
    rows = scenes(args.home / "scenes", args.images)
    studio = fresh_studio(home, args.starter)
    demo_classes(studio)
    t = time.monotonic()
    report = import_folder(studio, args.home / "scenes")
    out["store"] = {"images": len(report.added), "classes": 20, "import_seconds": round(time.monotonic() - t, 1)}
    print(out["store"], flush=True)
    ensure_base_version(studio)
    encoder = load_scorer(studio, active_version(studio)).encoder
    sample = [p for _, p in image_items(studio)][: min(len(rows), 2048)]
    raw_plain = raw_forward_rate_plain_process(args.starter, sample, args.batch_size)
    keep_freed_memory_for_batches()  # the raw forward under the worker's allocator settings: the strict baseline
    env = {**os.environ, "MUMIC_HOME": str(home), "MUMIC_PRETRAINED": f"local-dir:{args.starter.resolve()}"}
    streams = default_decode_workers(torch.device("cpu"))  # how the worker runs the model on this machine
    seconds, raws, stream_raws, peaks, stream_peaks = [], [], [], [], []
    for k in range(args.worker_runs):  # each from cold: a new worker process, no cached embeddings
        if k:
            shutil.rmtree(studio.settings.embedding_dir / encoder.spec.key, ignore_errors=True)
        raw_before = raw_forward_rate(encoder, sample, args.batch_size)  # same model and batch, no worker running
        streams_before = raw_forward_streams_rate(encoder, sample, args.batch_size, streams)
        run_seconds, peak, stream_peak = worker_job(studio, env)
        raw_after = raw_forward_rate(encoder, sample, args.batch_size)  # drift: both sides, worker gone
        streams_after = raw_forward_streams_rate(encoder, sample, args.batch_size, streams)
        seconds.append(run_seconds)
        raws.append((raw_before + raw_after) / 2)
        stream_raws.append((streams_before + streams_after) / 2)
        peaks.append(peak)
        stream_peaks.append(stream_peak)
        print(
            f"worker run {k + 1}: {len(rows) / run_seconds:.1f} img/s, raw {raws[-1]:.1f}, "
            f"raw in {streams} streams {stream_raws[-1]:.1f}",
            flush=True,
        )
    ratios = [len(rows) / s / r for s, r in zip(seconds, raws)]
    stream_ratios = [len(rows) / s / r for s, r in zip(seconds, stream_raws)]
    out["worker_rescoring"] = {
        "model": read_label(args.starter),
        "images": len(rows),
        "batch_size": args.batch_size,
        "runs": len(seconds),
        "seconds": round(statistics.mean(seconds), 1),
        "images_per_s": round(len(rows) / statistics.mean(seconds), 1),
        "raw_forward_images_per_s": round(statistics.mean(raws), 1),
        "ratio": round(statistics.mean(ratios), 3),
        "ratio_sd": round(statistics.stdev(ratios), 3) if len(ratios) > 1 else None,
        "ratio_each": [round(r, 3) for r in ratios],
        "raw_forward_plain_process_images_per_s": round(raw_plain, 1),
        "ratio_to_plain_process": round(len(rows) / statistics.mean(seconds) / raw_plain, 3),
        "cpu_streams": streams,
        "raw_forward_streams_images_per_s": round(statistics.mean(stream_raws), 1),
        "ratio_to_streams": round(statistics.mean(stream_ratios), 3),
        "ratio_to_streams_sd": round(statistics.stdev(stream_ratios), 3) if len(stream_ratios) > 1 else None,
        "ratio_to_streams_each": [round(r, 3) for r in stream_ratios],
        "peak_rss_mib": round(max(peaks) / 1024, 1),
        "stream_process_peak_rss_mib": round(max(stream_peaks) / 1024, 1),
        "note": "huey consumer as in the Procfile; VmHWM of its process, and the largest of its encoding "
        "processes' (they share the model's pages with it), after the job",
    }
    print(out["worker_rescoring"], flush=True)
    return studio, rows


def worker_job(studio, env: dict) -> tuple[float, int, int]:
    """Start a huey worker as the Procfile does, run one score job of the whole collection on it,
    stop it: (seconds from queued to done by the job's own clock, the worker's peak KiB, the
    largest peak KiB of its encoding processes)."""
    import psutil

    from mumic_core.pipeline.queue import enqueue
    from mumic_core.store.jobs import get_job
    from mumic_core.store.workers import live_workers

    worker = subprocess.Popen(
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
            "1",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        # Timed from this worker's start: a worker stopped before may still count as live a while.
        while worker.pid not in {w.pid for w in live_workers(studio)} and time.monotonic() < deadline:
            time.sleep(0.5)
        job_id = enqueue(studio, "score", {})
        while get_job(studio, job_id).status in ("queued", "running"):
            time.sleep(1)
        job = get_job(studio, job_id)
        peak = peak_memory_kib(worker.pid)
        children = psutil.Process(worker.pid).children(recursive=True)
        stream_peak = max((peak_memory_kib(c.pid) for c in children), default=0)
    finally:
        worker.terminate()
        worker.wait(30)
    if job.status != "succeeded":
        sys.exit(f"the score job {job.status}: {job.error}")
    return (job.finished_at - job.created_at).total_seconds(), peak, stream_peak


def new_class(studio, out: dict) -> None:
    from mumic_core.pipeline.scoring import score_classes
    from mumic_core.store.classes import add_class
    from mumic_core.store.registry import active_version

    version = active_version(studio)
    times = []
    for name in ("teal blob", "tiny dot", "big shape", "pale square", "dark star"):
        t = time.monotonic()
        cls = add_class(studio, name, [f"a picture of a {name}"])
        n = score_classes(studio, version, [cls.id])
        times.append(time.monotonic() - t)
    out["new_class"] = {
        "images": n,
        "seconds_median": round(statistics.median(times), 2),
        "seconds_each": [round(x, 2) for x in times],
        "goal_seconds": 2.0,
    }
    print(out["new_class"], flush=True)


def head_retrain(studio, rows, n_labelled: int, out: dict) -> None:
    from mumic_core.pipeline.lifecycle import promote
    from mumic_core.pipeline.training import TrainConfig, train
    from mumic_core.store.label_io import import_labels
    from mumic_core.store.registry import active_version
    from mumic_core.synthetic.scenes import DEMO_CLASSES, write_labels_csv

    names = {c.name for c in DEMO_CLASSES}
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "labels.csv"
        write_labels_csv([(f, labels & names) for f, labels in rows[:n_labelled]], csv)
        import_labels(studio, csv, annotator="bench", mode="complete")
    t = time.monotonic()
    result = train(studio, TrainConfig(mode="head", activate="always"), active_version(studio))
    t_train = time.monotonic() - t
    t = time.monotonic()
    promote(studio, result.version)
    out["head_mode"] = {
        "labelled_images": result.metrics["n_train_images"] + result.metrics["n_val_images"],
        "train_seconds": round(t_train, 1),
        "promote_seconds": round(time.monotonic() - t, 1),
        "goal_train_seconds": 30.0,
        "val_map_before": round(result.parent_metrics["map"], 4),
        "val_map_after": round(result.metrics["map"], 4),
        "note": "promote = re-score every image with the new head and activate it",
    }
    print(out["head_mode"], flush=True)


def photos(args, out: dict) -> None:
    """Camera-sized JPEGs (4000 x 3000, noisy, so entropy decoding costs what a photo's does):
    per image, the product's decode and preprocess (reduced-scale JPEG decoding) against open_clip's
    transform on a full decode, and the raw forward of ViT-B-32; how far the embeddings move."""
    import numpy as np
    import torch
    from PIL import Image

    from mumic_core.encoders.encoding import _pixels
    from mumic_core.encoders.factory import EncoderSpec, load_encoder
    from mumic_core.encoders.pixels import load_rgb

    vit_dir = random_vit_dir(args.home)
    encoder = load_encoder(EncoderSpec(f"local-dir:{vit_dir.resolve()}", "", "", ""))
    folder, rng = args.home / "photos", np.random.default_rng(7)
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:3000, 0:4000]
    paths = []
    for k in range(args.photos):
        shade = np.stack([xx * 255 // 4000, yy * 255 // 3000, (xx + yy) * 255 // 7000], -1) + rng.integers(-24, 24, 3)
        pixels = np.clip(shade + rng.integers(-20, 20, shade.shape), 0, 255).astype(np.uint8)
        paths.append(folder / f"photo-{k}.jpg")
        Image.fromarray(pixels).save(paths[-1], quality=90)
    t = time.perf_counter()
    full = torch.stack([encoder.preprocess(load_rgb(p)) for p in paths])
    full_ms = (time.perf_counter() - t) / len(paths) * 1000
    t = time.perf_counter()
    reduced = _pixels(encoder, paths)
    reduced_ms = (time.perf_counter() - t) / len(paths) * 1000
    with torch.inference_mode():
        t = time.perf_counter()
        a = torch.nn.functional.normalize(encoder.model.encode_image(full).float(), dim=-1)
        forward_ms = (time.perf_counter() - t) / len(paths) * 1000
        b = torch.nn.functional.normalize(encoder.model.encode_image(reduced).float(), dim=-1)
    out["photos"] = {
        "photos": len(paths),
        "size": "4000 x 3000 JPEG, quality 90",
        "model": "ViT-B-32, random weights (224 px)",
        "full_decode_preprocess_ms": round(full_ms, 1),
        "reduced_decode_preprocess_ms": round(reduced_ms, 1),
        "forward_ms": round(forward_ms, 1),
        "min_embedding_cosine": round(float((a * b).sum(-1).min()), 5),
    }
    print(out["photos"], flush=True)


def web_photos(folder: Path, n: int) -> list[Path]:
    """``n`` noisy 640 x 480 JPEGs (quality 90) in ``folder`` (made once): a web-sized photo's
    decoding cost."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"web-{k:05d}.jpg" for k in range(n)]
    rng = np.random.default_rng(11)
    yy, xx = np.mgrid[0:480, 0:640]
    for path in paths:
        if not path.exists():
            shade = np.stack([xx * 255 // 640, yy * 255 // 480, (xx + yy) * 255 // 1120], -1) + rng.integers(-60, 60, 3)
            pixels = np.clip(shade + rng.integers(-20, 20, shade.shape), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(path, quality=90)
    return paths


def encode(args, out: dict) -> None:
    """``encode_images`` against the raw forward, per model, image kind and decoding processes."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from mumic_core.encoders.encoding import _pixels, default_decode_workers, encode_images
    from mumic_core.encoders.factory import EncoderSpec, load_encoder

    rows = scenes(args.home / "scenes", args.throughput_images)
    image_sets = {
        "96 px scenes (PNG)": [args.home / "scenes" / name for name, _ in rows],
        "640 x 480 photos (JPEG q90)": web_photos(args.home / "web-photos", args.encode_photos),
    }
    models = (
        ("starter model (mumic-small-rn96, 96 px)", args.starter, None),
        ("ViT-B-32, random weights (224 px)", random_vit_dir(args.home), args.vit_images),
    )
    results = []
    for label, model_dir, limit in models:
        encoder = load_encoder(EncoderSpec(f"local-dir:{Path(model_dir).resolve()}", "", "", ""))
        device = next(encoder.model.parameters()).device
        pool = default_decode_workers(device)
        for kind, paths in image_sets.items():
            paths = paths[:limit] if limit else paths
            with ThreadPoolExecutor(os.cpu_count()) as decoders:  # the same tensors, prepared once
                pixels = _pixels(encoder, paths, decoders.map)
            for workers in sorted({1, pool, 4 if device.type != "cpu" else 2}):
                # warm-up: the model's first batches and the decoding processes' start
                encode_images(encoder, paths[: args.batch_size * 8], batch_size=args.batch_size, decode_workers=workers)
                pipeline, raw = [], []
                for _ in range(args.repeats):  # alternated: drift hits both alike
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    t = time.perf_counter()
                    encode_images(encoder, paths, batch_size=args.batch_size, decode_workers=workers)
                    pipeline.append(len(paths) / (time.perf_counter() - t))
                    raw.append(forward_rate(encoder, pixels, args.batch_size))
                ratios = [a / b for a, b in zip(pipeline, raw)]
                results.append(
                    {
                        "model": label,
                        "images": f"{len(paths)} {kind}",
                        "batch_size": args.batch_size,
                        "decode_processes": workers,
                        "default": workers == pool,
                        "encode_images_per_s": round(statistics.median(pipeline), 1),
                        "raw_forward_images_per_s": round(statistics.median(raw), 1),
                        "ratio": round(statistics.median(ratios), 3),
                        "ratio_each": [round(x, 3) for x in ratios],
                    }
                )
                print(results[-1], flush=True)
    out["encode"] = results


def full_mode(args, out: dict) -> None:
    """Full mode on the demo collection (``--demo-images``, half of them labelled)."""
    from mumic_core.pipeline.lifecycle import ensure_base_version, promote
    from mumic_core.pipeline.scoring import score_collection
    from mumic_core.pipeline.training import TrainConfig, train
    from mumic_core.services.demo import seed_demo

    studio = fresh_studio(args.home / "demo", args.starter)
    base = ensure_base_version(studio)
    seed_demo(studio, n_images=args.demo_images)
    score_collection(studio, base)
    t = time.monotonic()
    result = train(studio, TrainConfig(mode="full", epochs=args.full_epochs, activate="always"), base)
    t_train = time.monotonic() - t
    t = time.monotonic()
    promote(studio, result.version)
    out["full_mode_demo"] = {
        "labelled_images": result.metrics["n_train_images"] + result.metrics["n_val_images"],
        "epochs": result.version.training_config["epochs"] or 30,
        "train_seconds": round(t_train, 1),
        "promote_seconds": round(time.monotonic() - t, 1),
        "val_map_before": round(result.parent_metrics["map"], 4),
        "val_map_after": round(result.metrics["map"], 4),
    }
    print(out["full_mode_demo"], flush=True)


def markdown(out: dict) -> str:
    commands = " and ".join(f"`{c}`" for c in out["commands"])
    lines = [
        "# Speed",
        "",
        f"Machine: {out['machine']}. Commands: {commands} (a later run of some parts replaces those parts only).",
        "",
    ]
    if "throughput" in out:
        lines += [
            "## Scoring throughput (goal: pipeline / raw forward >= 0.9)",
            "",
            "Pipeline = `score_collection` with an empty embedding cache and the model loaded (decode, "
            "preprocess, forward, store); raw = `encode_image` on tensors prepared in advance. The two "
            "alternate; the ratio is the median of the pairs' ratios.",
            "",
            "| model | images | batch | pipeline img/s | raw forward img/s | ratio (each pair) |",
            "|---|---|---|---|---|---|",
        ]
        for label, r in out["throughput"].items():
            lines.append(
                f"| {label} | {r['images']} | {r['batch_size']} | {r['pipeline_images_per_s']} | "
                f"{r['raw_forward_images_per_s']} | **{r['ratio']}** ({r['ratio_each']}) |"
            )
        lines.append("")
    if "worker_rescoring" in out:
        w = out["worker_rescoring"]
        mean = " (mean)" if w.get("runs", 1) > 1 else ""
        lines += [
            "## Worker re-scoring the store",
            "",
            f"{w['images']} images, 20 classes, from cold (decode, embed, store): {w['seconds']} s{mean} "
            f"({w['images_per_s']} img/s); peak resident memory of the worker process **{w['peak_rss_mib']} MiB**.",
            "",
        ]
        if "ratio" in w:
            runs = w.get("runs", 1)
            each = f" ± {w['ratio_sd']} (sd over {runs} runs, each from cold in a new worker: {w['ratio_each']})"
            lines += [
                f"Model: {w['model']}. One huey worker, job queued to succeeded, against open_clip's raw "
                f"`encode_image` of the same model and batch ({w['batch_size']}) on up to 2048 of the "
                f"store's images prepared in advance, measured (median of 3) before the worker starts "
                f"and after it stops "
                f"(mean {w['raw_forward_images_per_s']} img/s): ratio **{w['ratio']}**"
                f"{each if runs > 1 else ''} (goal >= 0.9).",
                "",
            ]
        if "ratio_to_plain_process" in w:
            lines += [
                "Both the worker and that raw forward run with the allocator settings workers use "
                "(`mumic_core/encoders/allocator.py`: freed memory kept for the next batch). The same raw "
                "forward in a plain Python process with glibc's defaults, measured before: "
                f"{w['raw_forward_plain_process_images_per_s']} img/s, to which the worker's ratio is "
                f"{w['ratio_to_plain_process']}.",
                "",
            ]
        if "ratio_to_streams" in w:
            runs = w.get("runs", 1)
            each = f" ± {w['ratio_to_streams_sd']} (sd over {runs} runs: {w['ratio_to_streams_each']})"
            lines += [
                f"On a CPU the worker runs the model in {w['cpu_streams']} processes of one torch thread "
                "each, every one decoding and embedding its own batches (`encode_images`). The raw forward "
                "run the same way (the same batches shared among as many single-thread processes, all at "
                f"once), measured beside the one above: {w['raw_forward_streams_images_per_s']} img/s, to "
                f"which the worker's ratio is **{w['ratio_to_streams']}**{each if runs > 1 else ''}. "
                f"Largest peak resident memory of those processes: {w['stream_process_peak_rss_mib']} MiB "
                "(the model's pages are shared with the worker's).",
                "",
            ]
    if "new_class" in out:
        c = out["new_class"]
        lines += [
            "## A new class over the store (goal <= 2 s)",
            "",
            f"add_class + score_classes over {c['images']} images: median **{c['seconds_median']} s** "
            f"(each: {c['seconds_each']}).",
            "",
        ]
    if "head_mode" in out:
        h = out["head_mode"]
        lines += [
            "## Head-mode retraining (goal <= 30 s)",
            "",
            f"{h['labelled_images']} labelled images: training {h['train_seconds']} s (validation mAP "
            f"{h['val_map_before']} -> {h['val_map_after']}); promotion (re-score + activate) "
            f"{h['promote_seconds']} s.",
            "",
        ]
    if "photos" in out:
        f = out["photos"]
        lines += [
            "## Camera-sized photos",
            "",
            f"{f['photos']} {f['size']} files, {f['model']}, per image: open_clip's transform on a full decode "
            f"{f['full_decode_preprocess_ms']} ms; the product's reduced-scale JPEG decode and preprocess "
            f"**{f['reduced_decode_preprocess_ms']} ms**; the forward {f['forward_ms']} ms. Embeddings of the two "
            f"inputs: cosine >= {f['min_embedding_cosine']}. On a CPU a worker spends most of its time decoding "
            "photos; a GPU worker needs several decoding processes to keep its model busy (`--parts encode`).",
            "",
        ]
    if "encode" in out:
        lines += [
            "## Encoding: decode, preprocess and forward against the raw forward (goal >= 0.9)",
            "",
            "`encode_images` (what a score job spends its time on; storing took 1% of a 10,000-image job "
            "on the CPU) against `encode_image` on tensors prepared in advance, same model and batch, "
            "alternated; the ratio is the median of the pairs'. **default** marks the device's default "
            "number of decoding processes (1: decoding in the process itself).",
            "",
            "| model | images | batch | decoding processes | encode img/s | raw forward img/s | ratio (each pair) |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in out["encode"]:
            processes = f"**{r['decode_processes']}** (default)" if r["default"] else str(r["decode_processes"])
            lines.append(
                f"| {r['model']} | {r['images']} | {r['batch_size']} | {processes} | {r['encode_images_per_s']} "
                f"| {r['raw_forward_images_per_s']} | **{r['ratio']}** ({r['ratio_each']}) |"
            )
        lines.append("")
    if "full_mode_demo" in out:
        f = out["full_mode_demo"]
        lines += [
            "## Full-mode retraining on the demo",
            "",
            f"{f['labelled_images']} labelled images, {f['epochs']} epochs: {f['train_seconds']} s "
            f"(validation mAP {f['val_map_before']} -> {f['val_map_after']}); promotion {f['promote_seconds']} s.",
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--labelled", type=int, default=10_000)
    ap.add_argument(
        "--starter",
        type=Path,
        default=ROOT / "mumic_data" / "models" / "starter",
        help="the starter model's folder, or `random`: its architecture with random weights (same speed)",
    )
    ap.add_argument("--home", type=Path, default=Path("/tmp/mumic-bench-speed"))
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--worker-runs", type=int, default=1, help="worker: score jobs from cold, each in a new worker")
    ap.add_argument("--throughput-images", type=int, default=4096)
    ap.add_argument("--vit-images", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3, help="throughput: pipeline/raw pairs, median ratio")
    ap.add_argument("--full-epochs", type=int, default=None)
    ap.add_argument("--demo-images", type=int, default=400, help="full mode: the demo's size")
    ap.add_argument("--photos", type=int, default=32, help="photos: camera-sized JPEGs to time")
    ap.add_argument("--encode-photos", type=int, default=1024, help="encode: 640 x 480 JPEGs to encode")
    ap.add_argument("--parts", default=",".join(PART_KEYS))
    ap.add_argument("--results", type=Path, default=RESULTS, help="folder of speed.{json,md}")
    add_smoke_option(ap)
    args = ap.parse_args()
    if args.smoke is not None:
        folder = smoke_folder(args.smoke, "speed")
        vars(args).update(SMOKE, starter=stand_in_model(folder / "starter"), home=folder / "home", results=folder)
    if str(args.starter) == "random":  # the starter's computation without building it
        args.starter = stand_in_model(args.home / "starter-random-weights")
    if not (args.starter / "open_clip_config.json").is_file():
        sys.exit(f"no starter model in {args.starter}: run `make starter-model` first (or pass --starter random)")
    args.home.mkdir(parents=True, exist_ok=True)
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    machine = f"{platform.machine()}, {os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}, {gpu}"
    command = " ".join(["python benchmarks/speed.py", *sys.argv[1:]])
    previous = json.loads((args.results / "speed.json").read_text()) if (args.results / "speed.json").exists() else {}
    out: dict = previous if previous.get("machine") == machine and "commands" in previous else {}
    out.update(machine=machine, commands=[c for c in out.get("commands", []) if c != command] + [command])
    parts = set(args.parts.split(","))
    if "throughput" in parts:
        throughput(args, out)
    if parts & {"worker", "new_class", "head"}:
        studio, rows = big_store(args, out)
        if "new_class" in parts:
            new_class(studio, out)
        if "head" in parts:
            head_retrain(studio, rows, args.labelled, out)
    if "full" in parts:
        full_mode(args, out)
    if "photos" in parts:
        photos(args, out)
    if "encode" in parts:
        encode(args, out)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "speed.json").write_text(json.dumps(out, indent=1))
    (args.results / "speed.md").write_text(markdown(out))
    check_written(args.results / "speed.json", args.results / "speed.md")
    require(out, [PART_KEYS[p] for p in parts], "the speed results")


if __name__ == "__main__":
    main()
