"""Starter-recipe sweep: which pretraining choices give the best zero-shot starter model for
the same budget of steps?

Each variant pretrains for a fixed number of steps (chosen to match what 2 CPU cores do in the
recipe's time), then is scored zero-shot on the same 600 scenes of held-out drawings as
``python -m mumic_core starter evaluate``. Variants run in parallel processes on whatever device
is present; a lent GPU turns hours of CPU sweeping into minutes, and the chosen recipe is then
run for real on the CPU by ``make starter-model``.

    # here (where the Debian drawings are installed): pack the drawings as sprites
    python benchmarks/starter_sweep.py pack sweep/pack
    # anywhere (no Debian packages needed): run variants, write results to OUT
    python benchmarks/starter_sweep.py run sweep/pack OUT --variants '[{"name": "base"}, ...]'
    # both at smoke size: a pack of stand-in drawings (a few shapes in the drawings' folders),
    # one variant of 2 steps on a corpus of 8 composites, scored on 24 scenes
    python benchmarks/starter_sweep.py --smoke [DIR]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image  # noqa: E402

from benchmarks._smoke import add_smoke_option, check_written, require, smoke_folder, stand_in_stamps  # noqa: E402
from mumic_core.synthetic.starter_corpus import (  # noqa: E402
    EMOJI_FONT,
    TUXPAINT_DIR,
    Drawing,
    all_drawings,
    load_sprite,
    split_held_out,
)

DEFAULTS = {
    "model": "mumic-small-rn96",
    "lr": 5e-4,
    "batch": 128,
    "steps": 700,
    "unique": True,
    "variants": 2,
    "composites": 4000,
    "seed": 0,
    "pack": "",
    "eval_scenes": 600,
}
SMOKE_VARIANT = {"name": "smoke", "batch": 8, "steps": 2, "variants": 1, "composites": 8, "eval_scenes": 24}


def pack(out: Path, root: Path = TUXPAINT_DIR, font: Path = EMOJI_FONT) -> None:
    """Every drawing as an RGBA sprite PNG plus its metadata (no Debian packages needed to read)."""
    (out / "sprites").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, d in enumerate(all_drawings(root, font)):
        name = f"sprites/{i:05d}.png"
        load_sprite(d, root, font).save(out / name)
        rows.append({**asdict(d), "sprite": name})
    (out / "drawings.json").write_text(json.dumps(rows))
    print(f"packed {len(rows)} drawings into {out}")


def load_pack(pack_dir: Path) -> tuple[list[Drawing], dict[str, Image.Image]]:
    rows = json.loads((pack_dir / "drawings.json").read_text())
    drawings = [Drawing(**{k: v for k, v in r.items() if k != "sprite"}) for r in rows]
    sprites = {}
    for r in rows:
        with Image.open(pack_dir / r["sprite"]) as im:
            sprites[r["key"]] = im.convert("RGBA")
    return drawings, sprites


def corpus_key(v: dict) -> str:
    return f"corpus-{Path(v['pack']).name}-v{v['variants']}-c{v['composites']}"


def make_corpus(args: tuple) -> str:
    _, work, v = args
    from mumic_core.synthetic.starter_corpus import build_corpus

    out = Path(work) / corpus_key(v)
    if not (out / "captions.csv").exists():
        drawings, sprites = load_pack(Path(v["pack"]))
        build_corpus(out, variants=v["variants"], composites=v["composites"], sprites=sprites, drawings=drawings)
    return str(out)


def run_variant(args: tuple) -> dict:
    _, work, out_dir, v = args
    import torch

    torch.set_num_threads(2)
    from mumic_core.encoders.pretraining import PretrainConfig, pretrain
    from mumic_core.encoders.spec import EncoderSpec
    from mumic_core.encoders.starter import zero_shot_held_out

    drawings, sprites = load_pack(Path(v["pack"]))
    _, held = split_held_out(drawings, seed=0)
    out = Path(work) / f"model-{v['name']}"
    t0 = time.monotonic()
    config = PretrainConfig(
        model=v["model"],
        minutes=1e6,
        batch_size=v["batch"],
        lr=v["lr"],
        seed=v["seed"],
        max_steps=v["steps"],
        unique_captions=v["unique"],
    )
    result = pretrain(Path(work) / corpus_key(v) / "captions.csv", out, config)
    with tempfile.TemporaryDirectory() as tmp:
        zs = zero_shot_held_out(
            EncoderSpec(f"local-dir:{out}", "", "starter", ""), held, Path(tmp), v["eval_scenes"], sprites=sprites
        )
    row = {
        **v,
        "seconds": round(time.monotonic() - t0, 1),
        "final_loss": result.final_loss,
        "map": round(zs["map"], 4),
        "gap_at_10": round(zs["gap_at_10"], 4),
        "gap": round(zs["gap"], 4),
        "chance": round(zs["chance_positive_rate"], 4),
        "device": str(torch.cuda.get_device_name(0)) if torch.cuda.is_available() else "cpu",
    }
    print(json.dumps(row), flush=True)
    with open(Path(out_dir) / "rows.jsonl", "a") as fh:
        fh.write(json.dumps(row) + "\n")
    return row


def run(pack_dir: Path, out: Path, variants: list[dict], processes: int, work: Path | None = None) -> list[dict]:
    """Pretrain and score each variant; corpora and models go to ``work`` (default: a new temporary folder)."""
    variants = [{**DEFAULTS, "pack": str(pack_dir), **v} for v in variants]
    out.mkdir(parents=True, exist_ok=True)
    work = work or Path(tempfile.mkdtemp(prefix="sweep-"))
    work.mkdir(parents=True, exist_ok=True)
    ctx = mp.get_context("spawn")
    corpora = {corpus_key(v): v for v in variants}
    with ctx.Pool(min(processes, len(corpora))) as pool:
        pool.map(make_corpus, [(str(pack_dir), str(work), v) for v in corpora.values()])
    print(f"corpora ready: {sorted(corpora)}", flush=True)
    with ctx.Pool(min(processes, len(variants))) as pool:
        rows = pool.map(run_variant, [(str(pack_dir), str(work), str(out), v) for v in variants])
    (out / "starter_sweep.json").write_text(json.dumps(rows, indent=1))
    check_written(out / "starter_sweep.json")
    for r in rows:
        require(r, ["name", "seconds", "final_loss", "map", "gap_at_10", "gap", "chance"], f"the row of {r['name']}")
    for r in sorted(rows, key=lambda r: -r["map"]):
        print(
            f"{r['name']:<24} mAP {r['map']:.4f}  GAP@10 {r['gap_at_10']:.4f}  loss {r['final_loss']:.3f}  "
            f"{r['seconds']:.0f}s"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_smoke_option(parser)
    sub = parser.add_subparsers(dest="cmd")
    p = sub.add_parser("pack")
    p.add_argument("out", type=Path)
    r = sub.add_parser("run")
    r.add_argument("pack", type=Path)
    r.add_argument("out", type=Path)
    r.add_argument("--variants", default='[{"name": "default"}]', help="JSON list of overrides of DEFAULTS")
    r.add_argument("--processes", type=int, default=max(1, mp.cpu_count() // 2))
    args = parser.parse_args()
    if args.smoke is not None:
        folder = smoke_folder(args.smoke, "starter_sweep")
        pack(folder / "pack", root=stand_in_stamps(folder / "stamps"), font=folder / "no-emoji-font.ttf")
        run(folder / "pack", folder / "out", [SMOKE_VARIANT], processes=1, work=folder / "work")
    elif args.cmd == "pack":
        pack(args.out)
    elif args.cmd == "run":
        run(args.pack, args.out, json.loads(args.variants), args.processes)
    else:
        parser.error("give a command (pack or run), or --smoke")


if __name__ == "__main__":
    main()
