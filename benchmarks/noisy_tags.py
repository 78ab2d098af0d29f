"""Learning from the labels people really give: incomplete, noisy, positive-only tags (issue 19).

Two data sources that differ in look, each from the starter model (``make starter-model``):
- ``drawings``: ``synthetic.drawing_scenes``, 35 long-tailed classes (drawing categories and
  shapes); training pictures use the drawings the starter saw in pretraining, test pictures only
  its held-out drawings;
- ``shapes``: the demo's scenes (``synthetic.scenes``), 20 classes of shapes, colours and
  backgrounds.

Tags (training labels only; the test truth is clean): a share of each image's true labels missed
(0, 25, 50, 75 %), plus spurious tags on 2 % of the absent pairs of each class; or single-positive
(one true label per image). They go in through the product's own path: the training pictures
are imported into a store whose base model is the starter (``MUMIC_PRETRAINED=local-dir:``), the
tags as a ``filename,labels`` CSV by ``label_io.import_labels`` (the default way: unlisted
classes are assumed negatives; single-positive also as ``partial``: unlisted classes unknown),
then ``pipeline.training.train`` (head mode) makes a version whose head scores the test pictures.

Runs per source, setting and seed: zero-shot as the product scores it (its centred zero-shot
head) and by CLIP's protocol (softmax over the class prompts per image), a scikit-learn logistic
regression probe on the same frozen embeddings (C by 3-fold CV per class, unlisted tags as absent),
and the head with each loss (``--losses``). A seed changes the pictures drawn, the label noise,
and the head's cross-validation folds. Reported: test mAP, mean ± sd over seeds.

    .venv/bin/python benchmarks/noisy_tags.py [--seeds 3] [--train 3000] [--test 1000]
        [--settings 0,0.25,0.5,0.75,sp] [--losses bce,mumic,wan,hill,splc] [--smoke [DIR]]

Writes benchmarks/results/noisy_tags.{json,md}. ``--smoke``: 48 training and 24 test scenes, one
seed, a random-weight stand-in for the starter model and its corpus.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.model_selection import KFold

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
from mumic_core.config import load_settings  # noqa: E402
from mumic_core.encoders.encoding import encode_images  # noqa: E402
from mumic_core.model.losses import DEFAULT_LOSS  # noqa: E402
from mumic_core.pipeline.lifecycle import ensure_base_version  # noqa: E402
from mumic_core.pipeline.scoring import load_scorer, score_collection  # noqa: E402
from mumic_core.pipeline.training import TrainConfig, train  # noqa: E402
from mumic_core.services.review import undo  # noqa: E402
from mumic_core.store.auth import SYSTEM  # noqa: E402
from mumic_core.store.classes import active_classes, add_class  # noqa: E402
from mumic_core.store.collection import import_folder  # noqa: E402
from mumic_core.store.label_io import import_labels  # noqa: E402
from mumic_core.store.registry import load_head  # noqa: E402
from mumic_core.store.studio import open_studio  # noqa: E402
from mumic_core.synthetic.drawing_scenes import held_out_scene_splits  # noqa: E402
from mumic_core.synthetic.scenes import DEMO_CLASSES, generate_collection  # noqa: E402

RESULTS = ROOT / "benchmarks/results"
SPURIOUS = 0.02
IMPORTER = "tags"


# ---------------------------------------------------------------- data
def drawings(folder: Path, corpus: Path, n_train: int, n_test: int, seed: int) -> dict:
    """Drawing scenes of one seed: training pictures from pretraining drawings, test pictures
    from held-out drawings."""
    classes, rows = held_out_scene_splits(
        corpus, folder, {"train": n_train, "test": n_test}, {"train": 1000 * seed, "test": 1000 * seed + 1}
    )
    out = {"classes": list(classes.names), "prompts": classes.prompts()}
    for split, split_rows in rows.items():
        out[split] = [(folder / split / name, set(labels)) for name, labels in split_rows]
    return out


def shapes(folder: Path, n_train: int, n_test: int, seed: int) -> dict:
    """The demo's shape scenes of one seed."""
    out = {"classes": [c.name for c in DEMO_CLASSES], "prompts": [list(c.prompts) for c in DEMO_CLASSES]}
    for split, n, offset in (("train", n_train, 0), ("test", n_test, 1)):
        rows = generate_collection(n, 1000 * seed + offset, folder / split)
        out[split] = [(folder / split / name, set(labels)) for name, labels in rows]
    return out


def truth_matrix(rows: list[tuple[Path, set[str]]], classes: list[str]) -> np.ndarray:
    return np.array([[c in labels for c in classes] for _, labels in rows], dtype=np.float32)


def tags(truth: np.ndarray, setting: str, rng: np.random.Generator) -> np.ndarray:
    """Training tags: missed labels plus spurious ones, or one true label per image ("sp")."""
    if setting == "sp":
        out = np.zeros_like(truth)
        for i, row in enumerate(truth):
            if row.any():
                out[i, rng.choice(np.flatnonzero(row))] = 1
        return out
    out = truth * (rng.random(truth.shape) >= float(setting))
    return np.maximum(out, (truth == 0) & (rng.random(truth.shape) < SPURIOUS)).astype(np.float32)


def tags_csv(names: list[str], labels: np.ndarray, classes: list[str]) -> bytes:
    """The ``filename,labels`` CSV a user would import (rows without a tag are left out)."""
    lines = ["filename,labels"]
    lines += [f"{n},{'|'.join(c for c, on in zip(classes, row) if on)}" for n, row in zip(names, labels) if row.any()]
    return ("\n".join(lines) + "\n").encode()


# ---------------------------------------------------------------- metrics and baselines
def mean_ap(scores: np.ndarray, truth: np.ndarray) -> float:
    return float(
        np.mean(
            [average_precision_score(truth[:, c], scores[:, c]) for c in range(truth.shape[1]) if truth[:, c].any()]
        )
    )


def clip_protocol(emb: np.ndarray, text: np.ndarray, logit_scale: float) -> np.ndarray:
    """CLIP's zero-shot protocol: softmax over the classes' prompt embeddings, per image."""
    unit = text / np.linalg.norm(text, axis=1, keepdims=True)
    z = logit_scale * emb @ unit.T
    z = z - z.max(axis=1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)


def logistic_probe(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, seed: int, grid=(0.1, 1.0, 10.0)) -> np.ndarray:
    """One scikit-learn logistic regression per class, C by 3-fold CV on AP."""
    out = np.zeros((len(x_test), y.shape[1]))
    folds = list(KFold(3, shuffle=True, random_state=seed).split(x))
    for c in range(y.shape[1]):
        col = y[:, c]
        if col.sum() < 2 or col.sum() > len(col) - 2:
            out[:, c] = col.mean()
            continue
        best, best_c = -1.0, 1.0
        for value in grid:
            aps = [
                average_precision_score(
                    col[va], LogisticRegression(C=value, max_iter=300).fit(x[tr], col[tr]).decision_function(x[va])
                )
                for tr, va in folds
                if 0 < col[tr].sum() < len(tr) and col[va].any()
            ]
            if aps and np.mean(aps) > best:
                best, best_c = float(np.mean(aps)), value
        out[:, c] = LogisticRegression(C=best_c, max_iter=500).fit(x, col).decision_function(x_test)
    return out


# ---------------------------------------------------------------- one source and seed
def scored_store(data: dict, work: Path, starter: Path):
    """(studio, base version) of a new store under ``work`` whose base model is the starter, with
    the source's classes and its training pictures (``work/images``) imported and scored (the base
    version's zero-shot head is made here)."""
    os.environ["MUMIC_PRETRAINED"] = f"local-dir:{starter}"
    studio = open_studio(
        load_settings({"MUMIC_HOME": str(work / "home"), "MUMIC_PRETRAINED": f"local-dir:{starter}"}), actor=SYSTEM
    )
    for c, prompts in zip(data["classes"], data["prompts"]):
        add_class(studio, c, list(prompts))
    base = ensure_base_version(studio)
    import_folder(studio, work / "images")
    score_collection(studio, base)
    return studio, base


def run_source(name: str, data: dict, work: Path, starter: Path, args, seed: int) -> list[dict]:
    """Every setting and method on one source and seed: one store, tags imported per setting
    (the previous setting's import undone first)."""
    studio, base = scored_store(data, work, starter)
    classes = data["classes"]
    scorer = load_scorer(studio, base)
    names = [c.name for c in active_classes(studio)]
    test_paths = [p for p, _ in data["test"]]
    test_truth = truth_matrix(data["test"], classes)
    test_emb = encode_images(scorer.encoder, test_paths)
    train_emb = encode_images(scorer.encoder, [p for p, _ in data["train"]])
    text = scorer.text_embeddings([list(p) for p in data["prompts"]])
    logit_scale = float(scorer.encoder.model.logit_scale.detach().exp())
    zs = scorer.head.probabilities(test_emb @ scorer.head.class_matrix(names, text).T, names)
    rows = [
        {
            "source": name,
            "seed": seed,
            "setting": "any",
            "method": "zero-shot (product)",
            "map": mean_ap(zs, test_truth),
        },
        {
            "source": name,
            "seed": seed,
            "setting": "any",
            "method": "zero-shot (CLIP softmax protocol)",
            "map": mean_ap(clip_protocol(test_emb, text, logit_scale), test_truth),
        },
    ]
    truth = truth_matrix(data["train"], classes)
    files = [p.name for p, _ in data["train"]]
    rng = np.random.default_rng(seed)
    for setting in args.settings:
        y = tags(truth, setting, rng)
        modes = ("assumed", "partial") if setting == "sp" else ("assumed",)
        if setting in args.probe_settings:
            t = time.monotonic()
            probe = logistic_probe(train_emb, y, test_emb, seed)
            rows.append(_row(name, seed, setting, "logistic regression probe", mean_ap(probe, test_truth), t))
        for mode in modes:
            report = import_labels(studio, tags_csv(files, y, classes), IMPORTER, mode=mode)
            label = setting if mode == "assumed" else f"{setting}, imported as partial"
            losses = args.losses if setting == "sp" else [x for x in args.losses if x != "epr"]
            if mode == "partial":  # the comparison that matters there: the default loss and EPR
                losses = [x for x in losses if x in (DEFAULT_LOSS, "bce", "epr")]
            for loss in losses:
                if setting != "0.5" and loss in args.only_at_half:
                    continue
                t = time.monotonic()
                result = train(studio, TrainConfig(mode="head", loss=loss, seed=seed, activate="never"), base)
                head = load_head(studio, result.version)
                prob = head.probabilities(test_emb @ head.class_matrix(names, text).T, names)
                rows.append(_row(name, seed, label, f"head, {loss}", mean_ap(prob, test_truth), t))
                done = rows[-1]
                print(f"{name} seed {seed} {label:28s} head {loss:6s} mAP {done['map']:.4f} ({done['seconds']} s)")
            undo(studio, IMPORTER)  # the next setting starts from an unlabelled store
            assert report.images_labelled > 0
    return rows


def _row(source: str, seed: int, setting: str, method: str, value: float, started: float) -> dict:
    return {
        "source": source,
        "seed": seed,
        "setting": setting,
        "method": method,
        "map": value,
        "seconds": round(time.monotonic() - started, 1),
    }


# ---------------------------------------------------------------- summary
def summarise(rows: list[dict]) -> list[dict]:
    """Mean and sd over seeds of each (source, setting, method)."""
    groups: dict[tuple, list[float]] = {}
    for r in rows:
        groups.setdefault((r["source"], r["setting"], r["method"]), []).append(r["map"])
    return [
        {
            "source": s,
            "setting": st,
            "method": m,
            "mean": round(float(np.mean(v)), 4),
            "sd": round(float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, 4),
            "seeds": len(v),
        }
        for (s, st, m), v in groups.items()
    ]


def markdown(result: dict) -> str:
    lines = [
        "# Learning from noisy, incomplete tags",
        "",
        f"Machine: {result['machine']}. Command: `{result['command']}`. Test mAP on clean labels, mean ± sd over "
        f"{result['seeds']} seeds (a seed draws other pictures, other label noise and other CV folds).",
        "",
    ]
    summary = result["summary"]
    for source in dict.fromkeys(r["source"] for r in summary):
        lines += [f"## {source}", "", "| setting | method | test mAP |", "|---|---|---|"]
        for r in summary:
            if r["source"] == source:
                lines.append(f"| {r['setting']} | {r['method']} | {r['mean']:.4f} ± {r['sd']:.4f} |")
        lines.append("")
    return "\n".join(lines)


def write(args, rows: list[dict], seeds_done: int, started: float) -> dict:
    result = {
        "command": "benchmarks/noisy_tags.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "seeds": seeds_done,
        "minutes": round((time.monotonic() - started) / 60, 1),
        "runs": rows,
        "summary": summarise(rows),
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "noisy_tags.json").write_text(json.dumps(result, indent=1))
    (args.results / "noisy_tags.md").write_text(markdown(result))
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--starter", type=Path, default=ROOT / "mumic_data/models/starter")
    ap.add_argument("--corpus", type=Path, default=ROOT / "mumic_data/starter-corpus")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--train", type=int, default=3000)
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--sources", default="drawings,shapes")
    ap.add_argument("--settings", default="0,0.25,0.5,0.75,sp")
    ap.add_argument("--losses", default="bce,mumic,wan,hill,splc,epr")
    ap.add_argument("--only-at-half", default="llr,llct", help="losses run at 50 %% missed only (slow)")
    ap.add_argument("--probe-settings", default="0.5,sp", help="settings with the logistic-regression probe (slow)")
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--results", type=Path, default=RESULTS)
    add_smoke_option(ap)
    args = ap.parse_args()
    if args.smoke is not None:
        folder = smoke_folder(args.smoke, "noisy_tags")
        args.starter, args.corpus = stand_in_model(folder / "starter"), stand_in_corpus(folder / "corpus")
        args.seeds, args.train, args.test, args.results = 1, 48, 24, folder / "results"
        args.work = folder / "work"
        args.settings, args.losses, args.only_at_half, args.probe_settings = "0.5,sp", "bce,epr", "", "0.5"
    args.settings = args.settings.split(",")
    args.losses = [x for x in (args.losses + "," + args.only_at_half).split(",") if x]
    args.only_at_half = [x for x in args.only_at_half.split(",") if x]
    args.probe_settings = args.probe_settings.split(",")
    work = args.work or Path(tempfile.mkdtemp(prefix="mumic-noisy-tags-"))
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
            for split in ("test",):  # the test pictures stay outside the store
                target = folder / "test"
                (folder / "images" / split).rename(target)
                data[split] = [(target / p.name, labels) for p, labels in data[split]]
            rows += run_source(source, data, folder, args.starter, args, seed)
            result = write(args, rows, seed + 1, started)  # after each source and seed: a long run keeps its part
    require(result["summary"][0], ["source", "setting", "method", "mean", "sd"], "the summary")
    out_json, out_md = args.results / "noisy_tags.json", args.results / "noisy_tags.md"
    check_written(out_json, out_md)
    print(out_md.read_text())


if __name__ == "__main__":
    main()
