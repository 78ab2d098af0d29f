"""Retraining timings (issue 5): head-mode retraining with many labelled images, full-mode
retraining on the demo collection, and re-scoring throughput against the raw open_clip forward
of the same model and batch size. Runs through the product's service layer, in this process.

    .venv/bin/python benchmarks/retraining.py [--labelled 10000] [--model-dir mumic_data/models/starter]

The model is the starter model when it exists (the regime of an offline install), else the
built-in one; results go to benchmarks/results/retraining.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def fresh_studio(home: Path, model_dir: Path | None, keep: bool = False):
    if not keep:
        shutil.rmtree(home, ignore_errors=True)
    for key in [k for k in os.environ if k.startswith("MUMIC_")]:
        del os.environ[key]
    os.environ["MUMIC_HOME"] = str(home)
    if model_dir:
        os.environ["MUMIC_PRETRAINED"] = f"local-dir:{model_dir.resolve()}"
    from mumic_core.config import load_settings
    from mumic_core.studio import open_studio

    return open_studio(load_settings())


def forward_rates(encoder, paths: list[Path], batch_size: int, repeats: int = 3) -> tuple[float, float]:
    """Median images/s over ``repeats`` runs of (open_clip's encode_image alone on tensors
    prepared in advance, the product's encode_images from files: decode + preprocess + forward)."""
    import statistics

    import torch

    from mumic_core.classifier import encode_images
    from mumic_core.images import load_rgb

    pixels = torch.stack([encoder.preprocess(load_rgb(p)) for p in paths])
    device = next(encoder.model.parameters()).device
    raw, product = [], []
    for _ in range(repeats):
        with torch.inference_mode():
            start = time.perf_counter()
            for k in range(0, len(pixels), batch_size):
                encoder.model.encode_image(pixels[k:k + batch_size].to(device))
            if device.type == "cuda":
                torch.cuda.synchronize()
            raw.append(len(pixels) / (time.perf_counter() - start))
        start = time.perf_counter()
        encode_images(encoder, paths, batch_size=batch_size)
        product.append(len(paths) / (time.perf_counter() - start))
    return statistics.median(raw), statistics.median(product)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labelled", type=int, default=10_000)
    ap.add_argument("--model-dir", type=Path, default=ROOT / "mumic_data" / "models" / "starter")
    ap.add_argument("--home", type=Path, default=Path("/tmp/mumic-bench-retrain"))
    ap.add_argument("--full-epochs", type=int, default=None)
    ap.add_argument("--parts", default="rescoring,head,full", help="which measurements to make")
    ap.add_argument("--reuse", action="store_true", help="keep the large collection of an earlier run "
                    "(its cached embeddings are dropped, so re-scoring is measured from cold again)")
    args = ap.parse_args()
    model_dir = args.model_dir if (args.model_dir / "open_clip_config.json").is_file() else None

    import torch

    from mumic_core.demo import seed_demo
    from mumic_core.registry import ensure_base_version
    from mumic_core.scoring import image_items, load_scorer, score_collection

    out: dict = {"command": " ".join(["benchmarks/retraining.py", *sys.argv[1:]]),
                 "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch threads "
                            f"{torch.get_num_threads()}, {'GPU ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'}"}

    parts = set(args.parts.split(","))
    results = ROOT / "benchmarks" / "results" / "retraining.json"
    if results.exists() and parts != {"rescoring", "head", "full"}:
        out = json.loads(results.read_text()) | {"machine": out["machine"]}
    # 1. A collection with `labelled` human-labelled images (half of it), scored from cold.
    reuse = args.reuse and (args.home / "large" / "mumic.db").exists()
    studio = fresh_studio(args.home / "large", model_dir, keep=reuse)
    base = ensure_base_version(studio)
    from mumic_core.model_factory import resolve_base_spec

    out["model"] = resolve_base_spec(studio.settings).description
    if reuse:
        shutil.rmtree(studio.settings.embedding_dir, ignore_errors=True)
    else:
        t = time.monotonic()
        seed_demo(studio, n_images=2 * args.labelled, seed=7, labelled_fraction=0.5)
        out["seed_seconds"] = round(time.monotonic() - t, 1)
    n_images = len(image_items(studio))
    t = time.monotonic()
    n_pred = score_collection(studio, base)
    cold = time.monotonic() - t
    t = time.monotonic()
    score_collection(studio, base)
    warm = time.monotonic() - t
    scorer = load_scorer(studio, base)
    sample = [p for _, p in image_items(studio)[:2048]]
    raw, embed = forward_rates(scorer.encoder, sample, batch_size=64)
    out["rescoring"] = {
        "images": n_images, "predictions": n_pred, "batch_size": 64,
        "pipeline_seconds": round(cold, 1), "pipeline_images_per_s": round(n_images / cold, 1),
        "of_which_store_seconds": round(warm, 1),
        "raw_open_clip_forward_images_per_s": round(raw, 1),
        "ratio_pipeline_to_raw_forward": round((n_images / cold) / raw, 3),
        "encode_images_images_per_s": round(embed, 1),
        "ratio_encode_images_to_raw_forward": round(embed / raw, 3),
        "note": "pipeline = decode + preprocess + forward + write predictions and per-image summaries, "
                "on the whole collection; store = the same run with embeddings already cached; the raw "
                "forward and encode_images rates are medians of 3 runs over the first 2048 images",
    }
    print(json.dumps(out["rescoring"]), flush=True)
    if "head" in parts:
        head_mode(studio, base, out)
    if "full" in parts:
        full_mode(args, model_dir, out)
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(out, indent=1))


def head_mode(studio, base, out: dict) -> None:
    from mumic_core.lifecycle import promote
    from mumic_core.training import TrainConfig, train

    t = time.monotonic()
    result = train(studio, TrainConfig(mode="head", activate="always"), base)
    t_train = time.monotonic() - t
    t = time.monotonic()
    promote(studio, result.version)
    t_promote = time.monotonic() - t
    out["head_mode"] = {"labelled_images": result.metrics["n_train_images"] + result.metrics["n_val_images"],
                        "train_seconds": round(t_train, 1), "promote_seconds": round(t_promote, 1),
                        "val_map_before": round(result.parent_metrics["map"], 4),
                        "val_map_after": round(result.metrics["map"], 4)}
    print(json.dumps(out["head_mode"]), flush=True)


def full_mode(args, model_dir: Path | None, out: dict) -> None:
    """Full mode on the demo collection (400 images, 200 labelled)."""
    from mumic_core.demo import seed_demo
    from mumic_core.lifecycle import promote
    from mumic_core.registry import active_version, ensure_base_version
    from mumic_core.scoring import score_collection
    from mumic_core.training import TrainConfig, train

    studio = fresh_studio(args.home / "demo", model_dir)
    base = ensure_base_version(studio)
    seed_demo(studio)
    score_collection(studio, base)
    t = time.monotonic()
    result = train(studio, TrainConfig(mode="full", epochs=args.full_epochs, activate="always"), base)
    t_train = time.monotonic() - t
    t = time.monotonic()
    promote(studio, result.version)
    t_promote = time.monotonic() - t
    assert active_version(studio).id == result.version.id
    out["full_mode_demo"] = {"labelled_images": result.metrics["n_train_images"] + result.metrics["n_val_images"],
                             "epochs": result.version.training_config["epochs"] or 30,
                             "train_seconds": round(t_train, 1), "promote_seconds": round(t_promote, 1),
                             "val_map_before": round(result.parent_metrics["map"], 4),
                             "val_map_after": round(result.metrics["map"], 4)}
    print(json.dumps(out["full_mode_demo"]), flush=True)


if __name__ == "__main__":
    main()
