"""Active learning and label-error detection, simulated with an oracle (issue 6).

A long-tailed collection (80 classes: the demo's 20 plus the 60 colour-shape pairs, shapes and
colours drawn with Zipf weights) is split into an unlabelled pool and a test set with complete
ground truth. Starting from the starter model's zero-shot suggestions, each strategy picks B
images per round as the Review page does (the 2,000 unlabelled images with a probability
closest to 0.5, re-ordered by ``mumic_core.model.active_learning.select_batch``); the baseline, "random",
picks uniformly from the whole unlabelled pool. The oracle labels every class of the picked
images, a head is trained on all labels so far (``mumic_core.model.fitting.fit_head``, the product's
head mode) and scored on the test set.

Then 20 % label errors (as many flipped labelled pairs as 20 % of the positive labels: half
true positives marked absent, half true negatives marked present) are injected into a labelled
set, and the product's detector (``label_errors.cross_validated_probabilities`` + cleanlab's
ranking, ``rank_suspects``) is scored by precision and recall of its top-k suspicious labels.

    .venv/bin/python benchmarks/active_learning.py [--starter mumic_data/models/starter]
        [--pool 6000] [--test 3000] [--rounds 16] [--batch 50] [--seeds 3] [--smoke [DIR]]

Writes benchmarks/results/active_learning.{json,md,png}. ``--smoke``: pool 200, test 100, 2 rounds
of 20 images, 1 seed, heads of 30 steps, and a stand-in for the starter model (random weights).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._smoke import add_smoke_option, check_written, require, smoke_folder, stand_in_model  # noqa: E402
from mumic_core.encoders.encoding import encode_images, encode_prompts  # noqa: E402
from mumic_core.encoders.factory import load_encoder  # noqa: E402
from mumic_core.encoders.spec import EncoderSpec  # noqa: E402
from mumic_core.model.active_learning import POOL, select_batch  # noqa: E402
from mumic_core.model.fitting import fit_head  # noqa: E402
from mumic_core.model.head import zero_shot_head  # noqa: E402
from mumic_core.model.label_quality import cross_validated_probabilities, rank_suspects  # noqa: E402
from mumic_core.model.metrics import gap_at_k, mean_average_precision, tune_thresholds  # noqa: E402
from mumic_core.pipeline.training import TrainConfig  # noqa: E402
from mumic_core.synthetic.scenes import LONG_TAIL_CLASSES, generate_collection, zipf_weights  # noqa: E402

STRATEGIES = {
    "random": {},  # the baseline: uniform over the whole unlabelled pool
    "uncertainty": {"uncertainty": 1.0},
    "entropy": {"entropy": 1.0},
    "rare": {"rare": 1.0},
    "diversity": {"diversity": 1.0},
    "uncertainty+rare": {"uncertainty": 1.0, "rare": 1.0},  # the Review page's default
    "uncertainty+rare+diversity": {"uncertainty": 1.0, "rare": 1.0, "diversity": 1.0},
}
RESULTS = ROOT / "benchmarks/results"


def collection(home: Path, n: int, size: int) -> tuple[list[Path], np.ndarray]:
    """The long-tailed scenes (generated once, then reused) and their (N, C) ground truth."""
    folder = home / f"scenes-{n}-{size}"
    names = [c.name for c in LONG_TAIL_CLASSES]
    truth_file = folder / "truth.npy"
    if not truth_file.exists():
        rows = generate_collection(
            n,
            seed=123,
            out_dir=folder,
            size=size,
            classes=LONG_TAIL_CLASSES,
            shape_p=zipf_weights(10),
            colour_p=zipf_weights(6),
        )
        truth = np.array([[c in labels for c in names] for _, labels in rows], dtype=np.float32)
        np.save(truth_file, truth)
    return [folder / f"scene_{i:05d}.png" for i in range(n)], np.load(truth_file)


def embeddings(home: Path, starter: Path, paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """Image embeddings (cached per weights) and the classes' prompt embeddings, by the starter model."""
    spec = EncoderSpec(f"local-dir:{starter.resolve()}", "", "starter", "starter model")
    encoder = load_encoder(spec, device="cpu")
    cache = home / f"emb-{spec.key}-{len(paths)}.npy"
    if not cache.exists():
        t = time.monotonic()
        np.save(cache, encode_images(encoder, paths, batch_size=128))
        print(f"encoded {len(paths)} images in {time.monotonic() - t:.0f} s", flush=True)
    text = encode_prompts(encoder, [c.prompts for c in LONG_TAIL_CLASSES]).numpy()
    return np.load(cache), text


def metrics(prob: np.ndarray, truth: np.ndarray) -> dict:
    return {"map": float(mean_average_precision(prob, truth)), "gap_at_10": float(gap_at_k(prob, truth, 10))}


def run(
    strategy: str,
    seed: int,
    emb: np.ndarray,
    text: np.ndarray,
    truth: np.ndarray,
    pool: np.ndarray,
    test: np.ndarray,
    rounds: int,
    batch: int,
    head_steps: int | None = None,
) -> list[dict]:
    """One simulated labelling campaign: the test metrics after each round (``head_steps``: the
    head's training steps, None for the product's default)."""
    names = [c.name for c in LONG_TAIL_CLASSES]
    head = zero_shot_head(emb[pool], text, 0.1)  # zero-shot, made as the product does before any label
    sim = emb @ head.class_matrix(names, text).T
    thresholds = np.full(len(names), 0.5)
    labelled: list[int] = []
    curve = [{"labels": 0, **metrics(head.probabilities(sim[test], names), truth[test])}]
    rng = np.random.default_rng(seed)
    for _ in range(rounds):
        left = np.setdiff1d(pool, labelled)
        prob = head.probabilities(emb[left] @ head.class_matrix(names, text).T, names)
        positives = truth[labelled].sum(axis=0) if labelled else np.zeros(len(names))
        if strategy == "random":
            picked = rng.choice(len(left), batch, replace=False)
        else:  # as order_queue: the POOL most uncertain (a probability nearest 0.5), re-ordered
            near = np.argsort(np.abs(prob - 0.5).min(axis=1), kind="stable")[:POOL]
            order = select_batch(
                prob[near],
                thresholds,
                batch,
                STRATEGIES[strategy],
                emb[left[near]],
                emb[labelled] if labelled else None,
                positives,
                seed=int(rng.integers(1 << 31)),
            )
            picked = near[order]
        labelled += [int(left[k]) for k in picked]
        y = truth[labelled]
        head, _ = fit_head(
            emb[labelled],
            text,
            y,
            np.ones_like(y),
            names,
            TrainConfig(mode="head", seed=seed, steps=head_steps).head_fit(),
        )
        cls = head.class_matrix(names, text)
        thresholds = tune_thresholds(head.probabilities(emb[labelled] @ cls.T, names), y)
        curve.append({"labels": len(labelled), **metrics(head.probabilities(emb[test] @ cls.T, names), truth[test])})
    return curve


def labels_to_reach(labels: np.ndarray, values: np.ndarray, target: float) -> float | None:
    """Labelled images at which a mean curve first reaches ``target`` (linear between rounds)."""
    for k in range(len(values)):
        if values[k] >= target:
            if k == 0:
                return float(labels[0])
            x0, x1, y0, y1 = labels[k - 1], labels[k], values[k - 1], values[k]
            return float(x0 + (target - y0) / (y1 - y0) * (x1 - x0))
    return None


def label_error_detection(
    emb: np.ndarray, text: np.ndarray, truth: np.ndarray, rows: np.ndarray, rate: float, seed: int
) -> dict:
    """Flip labelled pairs (``rate`` x the positive labels), rank suspects, score the top k."""
    rng = np.random.default_rng(seed)
    names = [c.name for c in LONG_TAIL_CLASSES]
    clean = truth[rows]
    noisy = clean.copy()
    n_err = int(round(rate * clean.sum()))
    pos, neg = np.argwhere(clean > 0), np.argwhere(clean == 0)
    flips = np.concatenate(
        [
            pos[rng.choice(len(pos), n_err // 2, replace=False)],
            neg[rng.choice(len(neg), n_err - n_err // 2, replace=False)],
        ]
    )
    noisy[flips[:, 0], flips[:, 1]] = 1 - noisy[flips[:, 0], flips[:, 1]]
    wrong = {(int(r), int(c)) for r, c in flips}
    t = time.monotonic()
    probs = cross_validated_probabilities(emb[rows], text, noisy, np.ones_like(noisy), names, folds=5, seed=seed)
    ranked = [(r, c) for r, c, _ in rank_suspects(noisy, np.ones_like(noisy), probs)]
    seconds = time.monotonic() - t
    out = {
        "labelled_images": int(len(rows)),
        "labelled_pairs": int(noisy.size),
        "positive_labels": int(clean.sum()),
        "injected_errors": n_err,
        "chance_precision": round(n_err / noisy.size, 4),
        "suspects_ranked": len(ranked),
        "seconds": round(seconds, 1),
        "top_k": {},
    }
    for k in (n_err // 2, n_err, 2 * n_err):
        top = ranked[:k]
        hits = sum(p in wrong for p in top)
        out["top_k"][str(k)] = {"precision": round(hits / max(1, len(top)), 3), "recall": round(hits / n_err, 3)}
    return out


def plot(curves: dict, path: Path, target: float) -> None:
    """Mean test mAP per strategy against labelled images, with the seeds' range as a band."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative

    fig = go.Figure()
    for k, (name, runs) in enumerate(curves.items()):
        x = [p["labels"] for p in runs[0]]
        y = np.array([[p["map"] for p in r] for r in runs])
        colour = "black" if name == "random" else qualitative.Plotly[k % len(qualitative.Plotly)]
        fig.add_scatter(
            x=x + x[::-1],
            y=list(y.max(0)) + list(y.min(0)[::-1]),
            fill="toself",
            opacity=0.12,
            line={"width": 0, "color": colour},
            hoverinfo="skip",
            showlegend=False,
        )
        fig.add_scatter(
            x=x,
            y=y.mean(0),
            name=name,
            mode="lines+markers",
            marker={"size": 4},
            line={"width": 3 if name == "random" else 2, "color": colour},
        )
    fig.add_hline(y=target, line_dash="dot", line_color="grey")
    fig.update_layout(
        title=f"Active learning on 80 long-tailed classes (mean and range of {len(runs)} seeds)",
        xaxis_title="labelled images (every class of each image labelled)",
        yaxis_title="test macro mAP",
        template="plotly_white",
    )
    fig.write_image(path, width=1000, height=600)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--starter", type=Path, default=ROOT / "mumic_data/models/starter")
    ap.add_argument("--home", type=Path, default=Path("/tmp/mumic-bench-al"))
    ap.add_argument("--pool", type=int, default=6000)
    ap.add_argument("--test", type=int, default=3000)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--rounds", type=int, default=16)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--error-rate", type=float, default=0.2)
    ap.add_argument("--head-steps", type=int, default=None, help="head training steps (default: the product's)")
    ap.add_argument("--out", type=Path, default=RESULTS / "active_learning")
    ap.add_argument("--plot-only", action="store_true", help="redraw the figure from <out>.json")
    add_smoke_option(ap)
    args = ap.parse_args()
    if args.smoke is not None:
        folder = smoke_folder(args.smoke, "active_learning")
        args.pool, args.test, args.rounds, args.batch, args.seeds, args.head_steps = 200, 100, 2, 20, 1, 30
        args.starter, args.home = stand_in_model(folder / "starter"), folder / "home"
        args.out = folder / "active_learning"
    if args.plot_only:
        saved = json.loads(args.out.with_suffix(".json").read_text())
        plot(saved["curves"], args.out.with_suffix(".png"), saved["random_final_map"])
        return
    if not (args.starter / "open_clip_config.json").is_file():
        sys.exit(f"no starter model in {args.starter}: build it with `make starter-model` (about 37 minutes)")
    args.home.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    paths, truth = collection(args.home, args.pool + args.test, args.size)
    emb, text = embeddings(args.home, args.starter, paths)
    # Each seed splits the collection into pool and test differently, so the deterministic
    # strategies vary across seeds too.
    splits = [np.split(np.random.default_rng(seed).permutation(len(paths)), [args.pool]) for seed in range(args.seeds)]

    curves: dict[str, list[list[dict]]] = {}
    for name in STRATEGIES:
        t = time.monotonic()
        curves[name] = [
            run(name, seed, emb, text, truth, pool, test, args.rounds, args.batch, args.head_steps)
            for seed, (pool, test) in enumerate(splits)
        ]
        final = np.mean([c[-1]["map"] for c in curves[name]])
        print(f"{name:18s} final mAP {final:.4f}  ({time.monotonic() - t:.0f} s)", flush=True)

    x = np.array([p["labels"] for p in curves["random"][0]])
    mean = {n: np.mean([[p["map"] for p in r] for r in runs], axis=0) for n, runs in curves.items()}
    target = float(mean["random"][-1])
    table = {
        n: {
            "zero_shot_map": round(float(mean[n][0]), 4),
            "final_map": round(float(mean[n][-1]), 4),
            "final_map_per_seed": [round(r[-1]["map"], 4) for r in curves[n]],
            "final_gap_at_10": round(float(np.mean([r[-1]["gap_at_10"] for r in curves[n]])), 4),
            "labels_to_reach_random_final": labels_to_reach(x, mean[n], target),
        }
        for n in curves
    }

    errors = [
        label_error_detection(emb, text, truth, pool[: args.rounds * args.batch], args.error_rate, seed)
        for seed, (pool, _) in enumerate(splits)
    ]
    test_truth = truth[splits[0][1]]
    result = {
        "command": "python benchmarks/active_learning.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} CPU cores",
        "classes": len(LONG_TAIL_CLASSES),
        "pool_images": args.pool,
        "test_images": args.test,
        "rounds": args.rounds,
        "batch": args.batch,
        "seeds": args.seeds,
        "test_positives_per_class": {
            "max": int(test_truth.sum(0).max()),
            "median": float(np.median(test_truth.sum(0))),
            "min": int(test_truth.sum(0).min()),
        },
        "random_final_map": round(target, 4),
        "strategies": table,
        "curves": {
            n: [[{k: round(v, 4) if isinstance(v, float) else v for k, v in p.items()} for p in r] for r in runs]
            for n, runs in curves.items()
        },
        "label_errors": errors,
        "seconds": round(time.monotonic() - started),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    plot(curves, args.out.with_suffix(".png"), target)
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    check_written(*(args.out.with_suffix(s) for s in (".json", ".md", ".png")))
    require(result["strategies"], STRATEGIES, "the strategies table")
    for errors in result["label_errors"]:
        require(errors, ["injected_errors", "top_k"], "the label-error rows")


def markdown(r: dict) -> str:
    lines = [
        f"# Active learning, {r['classes']} long-tailed classes",
        "",
        f"`{r['command']}` ({r['machine']}, {r['seconds']} s). Pool {r['pool_images']} images, test "
        f"{r['test_images']} (seed 0's positives per class: max {r['test_positives_per_class']['max']}, median "
        f"{r['test_positives_per_class']['median']:.0f}, min {r['test_positives_per_class']['min']}); "
        f"{r['rounds']} rounds of {r['batch']} images, head retrained each round, {r['seeds']} seeds.",
        "",
        "| strategy | zero-shot mAP | mAP after " + str(r["rounds"] * r["batch"]) + " images (mean) | per seed "
        "| GAP@10 | images to reach random's final mAP |",
        "|---|---|---|---|---|---|",
    ]
    for n, t in r["strategies"].items():
        reach = t["labels_to_reach_random_final"]
        lines.append(
            f"| {n} | {t['zero_shot_map']:.4f} | {t['final_map']:.4f} | "
            f"{', '.join(f'{v:.3f}' for v in t['final_map_per_seed'])} | {t['final_gap_at_10']:.4f} | "
            f"{'not reached' if reach is None else f'{reach:.0f}'} |"
        )
    lines += [
        "",
        "## Label errors (20 % injected)",
        "",
        "Precision of a random pick of labelled pairs: "
        + ", ".join(f"{e['chance_precision']:.3f}" for e in r["label_errors"])
        + " (seeds 0, 1, …).",
        "",
        "| seed | labelled images | injected errors | top-k | precision | recall |",
        "|---|---|---|---|---|---|",
    ]
    for s, e in enumerate(r["label_errors"]):
        for k, v in e["top_k"].items():
            lines.append(
                f"| {s} | {e['labelled_images']} | {e['injected_errors']} | {k} | {v['precision']:.3f} | "
                f"{v['recall']:.3f} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
