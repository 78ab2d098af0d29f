"""Full mode against head mode once there are thousands of labels, and its time against a plain
PyTorch fine-tuning loop of the same model (issue 19, must-show 4).

Data and tags as ``noisy_tags.py``: drawing scenes (or the demo's shapes), training tags with
50 % of the true labels missed and 2 % spurious, imported the default way (unlisted classes are
assumed negatives) into a store whose base model is the starter; clean test pictures outside it.
Per seed, with the product's own ``pipeline.training.train``:

- ``head``: head mode, the default loss;
- ``full``: full mode, the default loss, ``--epochs`` passes at batch 32 (the fine-tuned encoder,
  then the head fitted on its embeddings), timed from the call to the registered version;
- ``plain loop``: the textbook fine-tuning of the same model: its image tower and a linear layer
  (started from the classes' prompt embeddings), BCE with every unlisted tag taken as absent,
  AdamW at full mode's learning rate with the same schedule, epochs, batch, augmentation and data
  loading; timed around its loop. Its test mAP is reported as a baseline too.

A seed changes the pictures, the label noise, the initialisation of the plain loop's layer, the
data order and the head's cross-validation folds. Reported: test mAP, seconds, and the time ratio
full / plain loop, mean ± sd over seeds.

    .venv/bin/python benchmarks/full_mode.py [--seeds 3] [--train 3000] [--test 800] [--epochs 5]
        [--sources drawings] [--smoke [DIR]]

Writes benchmarks/results/full_mode.{json,md}.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._smoke import (  # noqa: E402
    add_smoke_option,
    check_written,
    require,
    smoke_folder,
    stand_in_corpus,
    stand_in_model,
)
from benchmarks.noisy_tags import (  # noqa: E402
    drawings,
    mean_ap,
    scored_store,
    shapes,
    tags,
    tags_csv,
    truth_matrix,
)
from mumic_core.encoders.encoding import encode_images, encode_prompts  # noqa: E402
from mumic_core.encoders.finetune import FullFit, _LabelledImages, default_full_lr  # noqa: E402
from mumic_core.pipeline.scoring import load_scorer  # noqa: E402
from mumic_core.pipeline.training import TrainConfig, gather_labels, train  # noqa: E402
from mumic_core.store.classes import active_classes  # noqa: E402
from mumic_core.store.label_io import import_labels  # noqa: E402

RESULTS = ROOT / "benchmarks/results"
MISSED = "0.5"


def plain_loop(encoder, paths, labels, text: np.ndarray, epochs: int, batch: int, seed: int) -> tuple[object, float]:
    """The textbook loop: image tower + linear layer, BCE, AdamW, one-cycle schedule. Returns
    (a function from paths to test scores, seconds of the loop)."""
    torch.manual_seed(seed)
    encoder = copy.copy(encoder)  # the loaded base encoder is shared: train a copy
    encoder.model = model = copy.deepcopy(encoder.model)
    layer = torch.nn.Linear(text.shape[1], text.shape[0])
    with torch.no_grad():  # started from the prompts, scaled as CLIP's logits
        layer.weight.copy_(torch.from_numpy(text) * float(model.logit_scale.exp()))
        layer.bias.zero_()
    zeros = np.zeros_like(labels)
    data = _LabelledImages(list(paths), labels, np.ones_like(labels), zeros, encoder.train_preprocess)
    loader = torch.utils.data.DataLoader(
        data, batch_size=batch, shuffle=True, num_workers=0, generator=torch.Generator().manual_seed(seed)
    )
    lr = default_full_lr(encoder)
    opt = torch.optim.AdamW(
        [
            {"params": model.visual.parameters(), "lr": lr, "weight_decay": 0.05},
            {"params": layer.parameters(), "lr": 1e-2, "weight_decay": 0.0},
        ]
    )
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[lr, 1e-2], total_steps=epochs * len(loader), pct_start=0.1)
    model.train()
    started = time.monotonic()
    for _ in range(epochs):
        for pixels, y, _, _ in loader:
            logits = layer(F.normalize(model.encode_image(pixels), dim=-1))
            loss = F.binary_cross_entropy_with_logits(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    seconds = time.monotonic() - started
    model.eval()

    def score(test_paths) -> np.ndarray:
        with torch.no_grad():
            return layer(torch.from_numpy(encode_images(encoder, test_paths))).numpy()

    return score, seconds


def run_source(name: str, data: dict, work: Path, starter: Path, args, seed: int) -> list[dict]:
    studio, base = scored_store(data, work, starter)
    classes = data["classes"]
    names = [c.name for c in active_classes(studio)]
    prompts = [list(p) for p in data["prompts"]]
    test_paths = [p for p, _ in data["test"]]
    test_truth = truth_matrix(data["test"], classes)
    y = tags(truth_matrix(data["train"], classes), MISSED, np.random.default_rng(seed))
    report = import_labels(studio, tags_csv([p.name for p, _ in data["train"]], y, classes), "tags")
    assert report.images_labelled > 0
    labelled = gather_labels(studio)
    n_train = len(labelled.subset("train"))
    rows = []

    def scored(version) -> float:
        scorer = load_scorer(studio, version)
        emb = encode_images(scorer.encoder, test_paths)
        cls = scorer.head.class_matrix(names, scorer.text_embeddings(prompts))
        return mean_ap(scorer.head.probabilities(emb @ cls.T, names), test_truth)

    for mode in ("head", "full"):
        config = TrainConfig(mode=mode, seed=seed, activate="never", epochs=args.epochs if mode == "full" else None)
        t = time.monotonic()
        result = train(studio, config, base)
        seconds = time.monotonic() - t
        extra = {}
        if mode == "full":
            extra = {k: v for h in result.history for k, v in h.items() if k.endswith("_val_map")}
        rows.append(
            {"source": name, "seed": seed, "method": mode, "map": scored(result.version), "seconds": seconds}
            | {"n_labelled": len(labelled.image_ids), "n_train_split": n_train}
            | extra
        )
        print(f"{name} seed {seed} {mode}: mAP {rows[-1]['map']:.4f} in {seconds:.0f} s {extra}", flush=True)

    # The plain loop sees the training split's images with their tags, unlisted = absent.
    encoder = load_scorer(studio, base).encoder
    train_rows = labelled.subset("train")
    text = encode_prompts(encoder, prompts).numpy()
    targets = labelled.targets[train_rows] * labelled.mask[train_rows]
    score, seconds = plain_loop(
        encoder, [labelled.paths[r] for r in train_rows], targets, text, args.epochs, FullFit().batch_size, seed
    )
    rows.append(
        {"source": name, "seed": seed, "method": "plain loop", "map": mean_ap(score(test_paths), test_truth)}
        | {"seconds": seconds, "n_labelled": len(labelled.image_ids), "n_train_split": n_train}
    )
    print(f"{name} seed {seed} plain loop: mAP {rows[-1]['map']:.4f} in {seconds:.0f} s", flush=True)
    return rows


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    for source in dict.fromkeys(r["source"] for r in rows):
        mine = [r for r in rows if r["source"] == source]
        by = {m: [r for r in mine if r["method"] == m] for m in ("head", "full", "plain loop")}
        seeds = sorted({r["seed"] for r in mine})
        ratio = [
            next(r["seconds"] for r in by["full"] if r["seed"] == s)
            / next(r["seconds"] for r in by["plain loop"] if r["seed"] == s)
            for s in seeds
            if any(r["seed"] == s for r in by["plain loop"]) and any(r["seed"] == s for r in by["full"])
        ]
        gain = [
            next(r["map"] for r in by["full"] if r["seed"] == s) - next(r["map"] for r in by["head"] if r["seed"] == s)
            for s in seeds
            if any(r["seed"] == s for r in by["full"]) and any(r["seed"] == s for r in by["head"])
        ]
        for method, group in by.items():
            if group:
                m, sd = _mean_sd([r["map"] for r in group])
                sec, sec_sd = _mean_sd([r["seconds"] for r in group])
                out.append(
                    {"source": source, "method": method, "map": m, "map_sd": sd, "seconds": sec, "seconds_sd": sec_sd}
                    | {"seeds": len(group), "n_labelled": group[0]["n_labelled"]}
                )
        if gain:
            m, sd = _mean_sd(gain)
            out.append({"source": source, "method": "full - head (mAP)", "map": m, "map_sd": sd, "seeds": len(gain)})
        if ratio:
            m, sd = _mean_sd(ratio)
            out.append({"source": source, "method": "time full / plain loop", "ratio": m, "ratio_sd": sd})
    return out


def markdown(result: dict) -> str:
    lines = [
        "# Full mode against head mode and a plain fine-tuning loop",
        "",
        f"Machine: {result['machine']}. Command: `{result['command']}`. {result['minutes']} min in all. "
        f"Tags: {int(float(MISSED) * 100)} % of true labels missed, 2 % spurious, imported the default way. "
        f"Full mode and the plain loop: {result['epochs']} epochs at batch 32. Test mAP on clean labels, "
        f"mean ± sd over {result['seeds']} seeds.",
        "",
        "| source | method | labelled images | test mAP | seconds |",
        "|---|---|---|---|---|",
    ]
    for r in result["summary"]:
        if "ratio" in r:
            lines.append(f"| {r['source']} | **{r['method']}** | | | **{r['ratio']:.2f} ± {r['ratio_sd']:.2f}** |")
        elif "seconds" not in r:
            lines.append(f"| {r['source']} | **{r['method']}** | | **{r['map']:+.4f} ± {r['map_sd']:.4f}** | |")
        else:
            lines.append(
                f"| {r['source']} | {r['method']} | {r['n_labelled']} | {r['map']:.4f} ± {r['map_sd']:.4f} "
                f"| {r['seconds']:.0f} ± {r['seconds_sd']:.0f} |"
            )
    lines += [
        "",
        "Full mode's time is the whole `train` call (fine-tuning, the head fitted on the fine-tuned embeddings, "
        "validation, saving the encoder); the plain loop's is its training loop alone.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--starter", type=Path, default=ROOT / "mumic_data/models/starter")
    ap.add_argument("--corpus", type=Path, default=ROOT / "mumic_data/starter-corpus")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--train", type=int, default=3000)
    ap.add_argument("--test", type=int, default=800)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--sources", default="drawings")
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--results", type=Path, default=RESULTS)
    add_smoke_option(ap)
    args = ap.parse_args()
    if args.smoke is not None:
        folder = smoke_folder(args.smoke, "full_mode")
        args.starter, args.corpus = stand_in_model(folder / "starter"), stand_in_corpus(folder / "corpus")
        args.seeds, args.train, args.test, args.epochs, args.results = 1, 48, 24, 1, folder / "results"
        args.work = folder / "work"
    torch.set_num_threads(os.cpu_count() or 1)
    work = args.work or Path(tempfile.mkdtemp(prefix="mumic-full-mode-"))
    rows: list[dict] = []
    started = time.monotonic()
    for seed in range(args.seeds):
        for source in args.sources.split(","):
            folder = work / f"{source}-{seed}"
            data = (
                drawings(folder / "images", args.corpus, args.train, args.test, seed)
                if source == "drawings"
                else shapes(folder / "images", args.train, args.test, seed)
            )
            (folder / "images" / "test").rename(folder / "test")
            data["test"] = [(folder / "test" / p.name, labels) for p, labels in data["test"]]
            rows += run_source(source, data, folder, args.starter, args, seed)
            result = {
                "command": "benchmarks/full_mode.py " + " ".join(sys.argv[1:]),
                "machine": f"{platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads",
                "epochs": args.epochs,
                "seeds": seed + 1,
                "minutes": round((time.monotonic() - started) / 60, 1),
                "runs": rows,
                "summary": summarise(rows),
            }
            args.results.mkdir(parents=True, exist_ok=True)
            (args.results / "full_mode.json").write_text(json.dumps(result, indent=1))
            (args.results / "full_mode.md").write_text(markdown(result))
    require(result["summary"][0], ["source", "method", "map", "map_sd"], "the summary")
    check_written(args.results / "full_mode.json", args.results / "full_mode.md")
    print((args.results / "full_mode.md").read_text())


if __name__ == "__main__":
    main()
