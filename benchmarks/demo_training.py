"""Does one training visibly improve the demo's suggestions? (issue 2, must-show 2)

Builds the demo collection in a fresh MUMIC_HOME, trains one version, evaluates every version on
the demo's held-out truth and writes the table to benchmarks/results/demo_training.json.

    .venv/bin/python benchmarks/demo_training.py [--mode full] [--epochs 30] [--home /tmp/bench]
        [--results benchmarks/results] [--smoke [DIR]]

``--smoke``: the same commands with one epoch of training.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._smoke import add_smoke_option, check_written, require, smoke_folder  # noqa: E402


def cli(home: Path, *args: str) -> str:
    env = {"MUMIC_HOME": str(home), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-m", "mumic_core", *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    )
    return out.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", default="full", choices=["head", "full"])
    ap.add_argument("--epochs", type=int, default=None, help="full mode's epochs, or head mode's steps")
    ap.add_argument("--home", type=Path, default=Path("/tmp/mumic-bench-demo"))
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results", help="folder of the results file")
    add_smoke_option(ap)
    args = ap.parse_args()
    if args.smoke is not None:
        folder = smoke_folder(args.smoke, "demo_training")
        args.epochs, args.home, args.results = 1, folder / "home", folder
    shutil.rmtree(args.home, ignore_errors=True)
    timings = {}
    t = time.monotonic()
    cli(args.home, "init", "--no-first-model")  # this script trains itself
    timings["init_seconds"] = round(time.monotonic() - t, 1)
    t = time.monotonic()
    train_args = ["train", "--mode", args.mode, "--activate", "always"]
    if args.epochs:
        train_args += ["--epochs" if args.mode == "full" else "--steps", str(args.epochs)]
    print(cli(args.home, *train_args).strip().splitlines()[-1])
    timings["train_seconds"] = round(time.monotonic() - t, 1)
    results = json.loads(cli(args.home, "evaluate", "--json"))
    table = {
        name: {k: round(m[k], 4) for k in ("gap_at_10", "gap", "map")} | {"kind": m["kind"]}
        for name, m in results.items()
    }
    for name, row in table.items():
        print(f"{name}  {row['kind']:15s} GAP@10 {row['gap_at_10']:.4f}  GAP {row['gap']:.4f}  mAP {row['map']:.4f}")
    out = {
        "command": " ".join(["benchmarks/demo_training.py", *sys.argv[1:]]),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, {__import__('os').cpu_count()} cores",
        "mode": args.mode,
        "timings": timings,
        "holdout_metrics": table,
    }
    path = args.results / f"demo_training_{args.mode}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    check_written(path)
    require(table, ["v0001", "v0002"], "the held-out metrics (the base version and the trained one)")


if __name__ == "__main__":
    main()
