"""The starter model in the product: zero-shot, then head- and full-mode training (issue 3).

Makes a collection of multi-label scenes composed of held-out drawings (never seen in
pretraining), loads the starter model through MUMIC_PRETRAINED=local-dir:... like any
checkpoint, labels half of the scenes with 25 % of the true labels missed, and evaluates on
the other half: zero-shot, head mode, full mode; plus the untrained model and chance.

    .venv/bin/python benchmarks/starter_transfer.py [--starter mumic_data/models/starter]
        [--corpus mumic_data/starter-corpus] [--scenes 600] [--home /tmp/mumic-bench-starter]
        [--results benchmarks/results] [--smoke [DIR]]

``--smoke``: 24 scenes, one full-mode epoch, and stand-ins for the starter model (random weights)
and its corpus (a few shapes in the drawings' folders), so it runs without ``make starter-model``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

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
from mumic_core.services.demo import missed_labels  # noqa: E402
from mumic_core.synthetic.scenes import write_labels_csv  # noqa: E402
from mumic_core.synthetic.starter_corpus import (  # noqa: E402
    category_prompts,  # noqa: E402
    held_out_scenes,
    load_held_out,
)


def cli(env: dict, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "mumic_core", *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    )
    return out.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--starter", type=Path, default=ROOT / "mumic_data/models/starter")
    ap.add_argument("--corpus", type=Path, default=ROOT / "mumic_data/starter-corpus")
    ap.add_argument("--scenes", type=int, default=600)
    ap.add_argument("--full-epochs", type=int, default=15)
    ap.add_argument("--home", type=Path, default=Path("/tmp/mumic-bench-starter"))
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results", help="folder of the results file")
    add_smoke_option(ap)
    args = ap.parse_args()
    if args.smoke is not None:
        folder = smoke_folder(args.smoke, "starter_transfer")
        args.scenes, args.full_epochs, args.home, args.results = 24, 1, folder / "home", folder
        args.starter, args.corpus = stand_in_model(folder / "starter"), stand_in_corpus(folder / "corpus")
    shutil.rmtree(args.home, ignore_errors=True)
    work = args.home / "source"
    held, root, font = load_held_out(args.corpus)
    rows = held_out_scenes(held, args.scenes, seed=21, out_dir=work, root=root, font=font)
    classes = sorted({c for _, labels in rows for c in labels})
    half = len(rows) // 2
    kept = missed_labels(rows[:half], miss_rate=0.25, seed=0)  # as the demo misses labels
    noisy = [(n, frozenset(k)) for (n, _), k in zip(rows[:half], kept)]
    write_labels_csv(noisy, args.home / "labels.csv")
    write_labels_csv(rows[half:], args.home / "holdout.csv")
    with open(args.home / "classes.csv", "w") as fh:
        fh.write(
            "name,prompt\n" + "".join(f"{c},{p}\n" for c, ps in zip(classes, category_prompts(classes)) for p in ps)
        )

    results = {}
    for label, pretrained in [("untrained", None), ("starter", f"local-dir:{args.starter.resolve()}")]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MUMIC_")}
        env["MUMIC_HOME"] = str(args.home / label)
        if pretrained:
            env["MUMIC_PRETRAINED"] = pretrained
        else:
            env["HF_ENDPOINT"] = "http://127.0.0.1:9"  # force the offline built-in model
        cli(env, "init", "--no-demo")
        cli(env, "classes", "import", str(args.home / "classes.csv"))
        cli(env, "import", str(work), "--labels", str(args.home / "labels.csv"), "--complete")
        cli(env, "score")
        timings = {}
        for mode, extra in [("head", []), ("full", ["--epochs", str(args.full_epochs)])]:
            t = time.monotonic()
            cli(env, "train", "--mode", mode, "--activate", "never", *extra)
            timings[mode] = round(time.monotonic() - t, 1)
        ev = json.loads(cli(env, "evaluate", "--truth", str(args.home / "holdout.csv"), "--json"))
        names = {"v0001": "zero-shot", "v0002": "head mode", "v0003": "full mode"}
        results[label] = {names[v]: {k: round(m[k], 4) for k in ("map", "gap_at_10", "gap")} for v, m in ev.items()}
        results[label]["train_seconds"] = timings
    truth = np.array([[c in labels for c in classes] for _, labels in rows[half:]], dtype=float)
    out = {
        "command": " ".join(["benchmarks/starter_transfer.py", *sys.argv[1:]]),
        "scenes": args.scenes,
        "classes": len(classes),
        "labelled": half,
        "evaluated": len(rows) - half,
        "chance_positive_rate": round(float(truth.mean()), 4),
        "results": results,
    }
    print(json.dumps(out, indent=1))
    path = args.results / "starter_transfer.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    check_written(path)
    for label in ("untrained", "starter"):
        require(results.get(label, {}), ["zero-shot", "head mode", "full mode", "train_seconds"], f"results[{label!r}]")


if __name__ == "__main__":
    main()
