"""Importing a folder of good and bad files through the CLI, as a user would."""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path

from conftest import make_env
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def cli(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "mumic_core", *args],
        cwd=ROOT,
        env=make_env(home),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def huge_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def test_import_reports_each_bad_file_and_keeps_the_good_ones(home: Path, tmp_path: Path):
    src = tmp_path / "incoming"
    (src / "sub").mkdir(parents=True)
    Image.new("RGB", (40, 30), "red").save(src / "good.png")
    Image.new("RGB", (30, 40), "blue").save(src / "sub" / "good2.jpg", quality=90)
    (src / "zz_copy.png").write_bytes((src / "good.png").read_bytes())
    (src / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    jpg = (src / "sub" / "good2.jpg").read_bytes()
    (src / "truncated.jpg").write_bytes(jpg[: len(jpg) * 6 // 10])
    (src / "notes.txt").write_text("not an image at all")
    (src / "huge.png").write_bytes(huge_png(100_000, 100_000))

    proc = cli(home, "import", str(src))
    out = proc.stdout
    assert "Added 2 images; 1 duplicate skipped; 4 files rejected" in out
    lines = {line.split(":")[0].strip(): line for line in out.splitlines() if line.startswith("  ")}
    assert "corrupt" in lines["corrupt.jpg"] or "truncated" in lines["corrupt.jpg"]
    assert "truncated" in lines["truncated.jpg"]
    assert "not an image" in lines["notes.txt"]
    assert "100000 x 100000" in lines["huge.png"] and "pixel limit" in lines["huge.png"]
    assert "same content as good.png" in lines["zz_copy.png"]

    again = cli(home, "import", str(src))
    assert "Added 0 images; 3 duplicates skipped; 4 files rejected" in again.stdout


def test_labels_csv_rows_with_errors_are_reported_by_line(home: Path, tmp_path: Path):
    src = tmp_path / "imgs"
    src.mkdir()
    for i, colour in enumerate(["red", "green"]):
        Image.new("RGB", (32, 32), colour).save(src / f"img{i}.png")
    cli(home, "classes", "add", "red thing", "--prompt", "a red square")
    cli(home, "classes", "add", "green thing")
    labels = tmp_path / "labels.csv"
    labels.write_text("filename,labels\nimg0.png,red thing\nimg1.png,green thing|blue thing\nmissing.png,red thing\n")
    proc = cli(home, "import", str(src), "--labels", str(labels), "--complete")
    assert "labels: 1 images labelled (1 changed, 2 labels added); 2 rows refused" in proc.stdout
    assert "line 3: unknown class 'blue thing'" in proc.stdout
    assert "line 4: unknown image 'missing.png'" in proc.stdout
    exported = cli(home, "export", "labels", "--format", "csv").stdout
    assert "img0.png,red thing,positive," in exported and "img0.png,green thing,negative," in exported


def test_cli_errors_are_one_clear_line(home: Path):
    cli(home, "classes", "add", "Kite")
    proc = cli(home, "classes", "add", " kite ", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: a class named 'Kite' already exists"
    proc = cli(home, "models", "activate", "v0099", check=False)
    assert proc.returncode == 1 and proc.stderr.strip() == "error: no model version 'v0099'"
