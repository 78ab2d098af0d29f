from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import make_env

from mumic_core.synthetic.scenes import generate_collection, write_labels_csv

ROOT = Path(__file__).resolve().parents[1]


def run(home: Path, *args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "mumic_core", *args],
        cwd=ROOT,
        env=make_env(home),
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout


def test_evaluate_holdout_and_external_folder(demo_studio, tmp_path: Path):
    home = demo_studio.settings.home
    table = run(home, "evaluate")
    assert "v0001    builtin-random  active" in table and "(30 images)" in table
    held = json.loads(run(home, "evaluate", "--json"))["v0001"]
    assert held["n_images"] == 30 and 0 < held["map"] < 1 and 0 < held["gap_at_10"] < 1

    folder = tmp_path / "external"
    rows = generate_collection(12, seed=99, out_dir=folder, size=96)
    write_labels_csv(rows, tmp_path / "truth.csv")
    ext = json.loads(run(home, "evaluate", "--images", str(folder), "--truth", str(tmp_path / "truth.csv"), "--json"))[
        "v0001"
    ]
    assert ext["n_images"] == 12 and ext["n_positives"] == sum(len(labels) for _, labels in rows)


def test_evaluate_refuses_truth_with_unknown_classes(demo_studio, tmp_path: Path):
    truth = tmp_path / "truth.csv"
    truth.write_text("filename,labels\nscene_00040.png,circle|unicorn\n")
    proc = subprocess.run(
        [sys.executable, "-m", "mumic_core", "evaluate", "--truth", str(truth)],
        cwd=ROOT,
        env=make_env(demo_studio.settings.home),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: truth names classes that are not defined: unicorn"
