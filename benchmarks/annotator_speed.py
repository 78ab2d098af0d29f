"""Annotator speed and trust: a scripted annotator in Chromium reviews with the keyboard in each
mode of the Review page, knowing the truth, and every label saved is checked against what it meant.

For each seed: a fresh demo store (``--images`` generated scenes of 20 classes, the first half
pre-labelled with missed tags, as ``make run`` makes it; the seed changes the drawing of the
scenes, the labels missed, the head's fit and so the order of the queue), a head trained on the
pre-labels and made active, then one browser session (Playwright, Debian's chromium) that
reviews about ``--per-mode`` images in each mode, keys ``--gap-ms`` apart:

* **one image**: for each image, the key of every class whose toggle differs from the truth,
  then Ctrl+Enter; a decision is one image (all its classes);
* **grid**: for each tile whose proposal differs from the truth, into its field, Backspace the
  classes if one is wrong, type each missing class until the type-ahead highlights it and Enter,
  Esc; then Ctrl+Enter accepts the page; a decision is one image;
* **class sweep** (the first class, most likely first): a per tile (present) or x (absent),
  then Enter saves the page; a decision is one image for one class.

Reported per mode (mean ± sd over seeds): decisions per minute and labels settled per minute
(image–class pairs), the server time per decision (the page runs it caused, from the server's
own MUMIC_RUN_LOG), and the labels lost (meant, not saved) and extra (saved, not meant).

    .venv/bin/python benchmarks/annotator_speed.py [--seeds 3] [--images 800] [--per-mode 100]
        [--gap-ms 50] [--results benchmarks/results] [--smoke [DIR]]

Writes ``annotator_speed.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from benchmarks._smoke import add_smoke_option, check_written, require, smoke_folder  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
OFFLINE = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "1"}
MODES = ("one image", "grid", "class sweep")
SMOKE = {"seeds": 1, "images": 80, "per_mode": 8}


def make_store(home: Path, n_images: int, seed: int) -> dict[str, frozenset[str]]:
    """The demo store of one seed with an active head trained on its pre-labels; returns the truth."""
    for key in [k for k in os.environ if k.startswith("MUMIC_")]:
        del os.environ[key]
    os.environ.update({"MUMIC_HOME": str(home), **OFFLINE})
    import torch

    from mumic_core.config import load_settings
    from mumic_core.pipeline.lifecycle import ensure_base_version
    from mumic_core.pipeline.scoring import score_collection
    from mumic_core.pipeline.training import TrainConfig, train
    from mumic_core.services.demo import seed_demo
    from mumic_core.store.auth import SYSTEM
    from mumic_core.store.studio import open_studio
    from mumic_core.synthetic.scenes import read_labels_csv

    torch.manual_seed(seed)
    studio = open_studio(load_settings(), actor=SYSTEM)
    base = ensure_base_version(studio)
    demo = seed_demo(studio, n_images=n_images, seed=seed)
    score_collection(studio, base)
    train(studio, TrainConfig(activate="always", seed=seed), base)
    return dict(read_labels_csv(demo.truth_csv))


def human_labels(home: Path, sources: tuple[str, ...]) -> dict[str, dict[str, bool]]:
    """file name -> class name -> positive, of the current human labels from ``sources``."""
    from sqlalchemy import select

    from db.models import Annotation, Image, LabelClass
    from mumic_core.config import load_settings
    from mumic_core.store.auth import SYSTEM
    from mumic_core.store.studio import open_studio

    studio = open_studio(load_settings({"MUMIC_HOME": str(home), **OFFLINE}), migrate=False, actor=SYSTEM)
    with studio.read() as s:
        rows = s.execute(
            select(Image.original_name, LabelClass.name, Annotation.positive)
            .join(Image, Image.id == Annotation.image_id)
            .join(LabelClass, LabelClass.id == Annotation.class_id)
            .where(Annotation.is_current.is_(True), Annotation.assumed.is_(False), Annotation.source.in_(sources))
        ).all()
    out: dict[str, dict[str, bool]] = {}
    for name, cls, positive in rows:
        out.setdefault(name, {})[cls] = positive
    return out


def press(page, key: str, gap_ms: int) -> None:
    page.keyboard.press(key)
    page.wait_for_timeout(gap_ms)


def review_one_image(page, truth, n: int, gap_ms: int) -> list[str]:
    """Ctrl+Enter after the keys of the toggles that differ from the truth; the names reviewed."""
    from test_review_keys import current_image, token, wait_for_next

    done = []
    page.locator("[data-testid='stImage']").first.click()  # keys go to the page, not a sidebar widget
    for _ in range(n):
        name, shown = current_image(page), token(page)
        for b in page.locator("button.toggle").all():
            on = b.get_attribute("aria-pressed") == "true"
            if on != (b.locator(".name").inner_text() in truth[name]):
                press(page, b.locator(".key").inner_text(), gap_ms)
        press(page, "Control+Enter", gap_ms)
        wait_for_next(page, name, shown)
        done.append(name)
    return done


def review_grid(page, truth, n: int, gap_ms: int) -> list[str]:
    """Fix the tiles whose classes differ from the truth, then Ctrl+Enter; the names reviewed."""
    from test_browser import settle

    done: list[str] = []
    page.get_by_text("Grid", exact=True).click()
    page.wait_for_selector(".grid .tile")
    settle(page, 500)
    while len(done) < n and page.locator(".grid .tile").count():
        shown = page.locator(".grid").get_attribute("data-token")
        tiles = page.locator(".grid .tile").all()
        names = []
        for tile in tiles:
            name = tile.locator(".name").inner_text()
            names.append(name)
            chips = [c.inner_text().rsplit("\n", 1)[0].rstrip("\u00d7").strip() for c in tile.locator(".chip").all()]
            want = truth[name]
            if set(chips) == want:
                continue
            tile.locator("input.add").focus()
            if not set(chips) <= want:  # a wrong class: Backspace them all, as a person would
                for _ in chips:
                    press(page, "Backspace", gap_ms)
                chips = []
            for cls in sorted(want - set(chips)):
                # type until the type-ahead highlights the class (a person reads it), then Enter
                for ch in cls:
                    page.keyboard.type(ch)
                    page.wait_for_timeout(gap_ms)
                    if tile.locator(".option.first").inner_text() == cls:
                        break
                press(page, "Enter", gap_ms)
            press(page, "Escape", gap_ms)
        press(page, "Control+Enter", gap_ms)
        page.locator(f".grid[data-pending='0']:not([data-token='{shown}'])").or_(
            page.get_by_text("Nothing in this queue")
        ).first.wait_for(timeout=30000)
        done.extend(names)
    return done


def review_sweep(page, truth, n: int, gap_ms: int) -> tuple[str, list[str]]:
    """a or x on every tile, Enter per page; (class swept, the names judged)."""
    from test_browser import settle

    done: list[str] = []
    page.get_by_text("Class sweep", exact=True).click()
    page.wait_for_selector(".tile")
    settle(page, 500)
    cls = page.locator(".sweep").get_attribute("data-class")
    while len(done) < n and page.locator(".tile").count():
        shown = page.locator(".sweep").get_attribute("data-token")
        names = page.locator(".tile .name").all_inner_texts()  # one read: the page may be re-drawn meanwhile
        for name in names:
            press(page, "a" if cls in truth[name] else "x", gap_ms)
        press(page, "Enter", gap_ms)
        page.locator(f".sweep[data-pending='0']:not([data-token='{shown}'])").or_(
            page.get_by_text("Every scored image has a human label")
        ).first.wait_for(timeout=30000)
        done.extend(names)
    return cls, done


def review(page, mode: str, truth, args, n_classes: int) -> tuple[list[str], int, str]:
    """Review in one mode: (the file names decided, labels per decision, the class swept or "")."""
    if mode == "one image":
        return review_one_image(page, truth, args.per_mode, args.gap_ms), n_classes, ""
    if mode == "grid":
        return review_grid(page, truth, args.per_mode, args.gap_ms), n_classes, ""
    cls, names = review_sweep(page, truth, args.per_mode, args.gap_ms)
    return names, 1, cls


def check(mode: str, names, truth, before, after, cls: str) -> tuple[int, int, list]:
    """Labels lost (meant, not saved) and extra (saved, not meant) on the images decided, with
    examples (file, class, meant, saved). One image: every class as the truth. Grid: the truth's
    classes present, and a class said absent must not be one of them (the others are assumed absent,
    not said). Sweep: the class swept, as the truth."""
    lost = extra = 0
    wrong = []
    for name in names:
        saved = {c: v for c, v in after.get(name, {}).items() if before.get(name, {}).get(c) != v}
        if mode == "class sweep":
            meant = {cls: cls in truth[name]}
        elif mode == "one image":
            meant = {c: c in truth[name] for c in saved.keys() | truth[name]}
        else:
            said_absent = {c: False for c, v in saved.items() if not v and c not in truth[name]}
            meant = {c: True for c in truth[name]} | said_absent
        for c in meant.keys() | saved.keys():
            if c not in saved:
                lost += 1
            elif meant.get(c) != saved[c]:
                extra += 1
            else:
                continue
            wrong.append([name, c, meant.get(c), saved.get(c)])
    return lost, extra, wrong


def server_ms(run_log: Path, start: float, end: float) -> float:
    """Server milliseconds of the page runs logged between two wall-clock times."""
    total = 0.0
    for line in run_log.read_text().splitlines():
        t, _, ms = line.split("\t")
        if start <= float(t) <= end + 1.0:
            total += float(ms)
    return total


def one_seed(args, seed: int, home: Path) -> dict:
    from playwright.sync_api import sync_playwright
    from test_browser import ARGS, CHROMIUM, serve, settle, sign_in

    shutil.rmtree(home, ignore_errors=True)
    t = time.time()
    truth = make_store(home, args.images, seed)
    print(f"seed {seed}: store of {args.images} images ready in {time.time() - t:.0f} s", flush=True)
    n_classes = len({c for labels in truth.values() for c in labels})
    run_log = home / "runs.tsv"
    rows: dict[str, dict] = {}
    with serve(home, MUMIC_RUN_LOG=str(run_log)) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        sign_in(page, url, home, "ann", "annotator")
        page.goto(f"{url}/review")
        page.wait_for_selector("button.toggle", timeout=120000)
        settle(page, 1000)
        for mode in MODES:
            before = human_labels(home, ("review", "sweep"))
            start = time.time()
            try:
                names, per_decision, cls = review(page, mode, truth, args, n_classes)
            except Exception:
                page.screenshot(path=str(home / "failed.png"), full_page=True)
                print(f"failed in {mode}: the page is in {home / 'failed.png'}, the server's log in {home}", flush=True)
                raise
            seconds = time.time() - start
            after = human_labels(home, ("review", "sweep"))
            lost, extra, wrong = check(mode, names, truth, before, after, cls)
            rows[mode] = {
                "decisions": len(names),
                "seconds": round(seconds, 1),
                "decisions_per_minute": round(60 * len(names) / seconds, 1),
                "labels_per_minute": round(60 * len(names) * per_decision / seconds, 1),
                "server_ms_per_decision": round(server_ms(run_log, start, time.time()) / len(names), 1),
                "lost": lost,
                "extra": extra,
                "wrong_examples": wrong[:10],
            }
            print(f"seed {seed} {mode}: {rows[mode]}", flush=True)
        page.screenshot(path=str(home / "last.png"))
        browser.close()
    return rows


def summary(per_seed: list[dict]) -> dict:
    out = {}
    for mode in MODES:
        out[mode] = {}
        for key in [k for k, v in per_seed[0][mode].items() if isinstance(v, int | float)]:
            values = [r[mode][key] for r in per_seed]
            out[mode][key] = {
                "mean": round(statistics.mean(values), 2),
                "sd": round(statistics.stdev(values), 2) if len(values) > 1 else 0.0,
                "sum": sum(values),
            }
    ratios = [r["class sweep"]["decisions_per_minute"] / r["one image"]["decisions_per_minute"] for r in per_seed]
    out["sweep_over_one_image"] = {
        "mean": round(statistics.mean(ratios), 2),
        "sd": round(statistics.stdev(ratios), 2) if len(ratios) > 1 else 0.0,
    }
    return out


def markdown(out: dict) -> str:
    s = out["summary"]
    lines = [
        "# Annotator speed and trust",
        "",
        f"`{out['command']}`",
        "",
        f"{out['machine']}. {out['seeds']} seeds; each a fresh demo store of {out['images']} scenes "
        f"(20 classes; the first half pre-labelled with missed tags), an active head trained on those "
        f"pre-labels over the built-in untrained encoder (offline), and one Chromium session that reviews "
        f"about {out['per_mode']} images per mode with keys {out['gap_ms']} ms apart, knowing the truth. "
        "Mean ± sd over seeds; lost and extra labels are summed over seeds.",
        "",
        "| mode | decision | decisions / min | labels / min | server ms / decision | lost | extra |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    unit = {"one image": "an image, all classes", "grid": "an image, all classes", "class sweep": "an image, one class"}
    for mode in MODES:
        r = s[mode]
        lines.append(
            f"| {mode} | {unit[mode]} | {r['decisions_per_minute']['mean']} ± {r['decisions_per_minute']['sd']} "
            f"| {r['labels_per_minute']['mean']} ± {r['labels_per_minute']['sd']} "
            f"| {r['server_ms_per_decision']['mean']} ± {r['server_ms_per_decision']['sd']} "
            f"| {r['lost']['sum']} | {r['extra']['sum']} |"
        )
    ratio = s["sweep_over_one_image"]
    lines += [
        "",
        f"Class sweep ÷ one image, decisions per minute: **{ratio['mean']} ± {ratio['sd']}** (bar: ≥ 2). "
        "Labels per minute tell the other side: an image decision settles every class at once, a sweep "
        "decision one.",
        "",
        "Server time per decision: the page runs the decisions caused (MUMIC_RUN_LOG), their widget "
        "callbacks included, divided by the decisions; what the browser waited on.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--images", type=int, default=800, help="scenes per store (half of them pre-labelled)")
    ap.add_argument("--per-mode", type=int, default=100, help="images reviewed in each mode")
    ap.add_argument("--gap-ms", type=int, default=50, help="pause after each key press")
    ap.add_argument("--home", type=Path, default=None, help="default: a temporary folder")
    ap.add_argument("--results", type=Path, default=RESULTS, help="folder of annotator_speed.{json,md}")
    add_smoke_option(ap)
    args = ap.parse_args()
    if args.smoke is not None:
        folder = smoke_folder(args.smoke, "annotator_speed")
        vars(args).update(SMOKE, home=folder / "home", results=folder)
    home = args.home or Path(tempfile.mkdtemp(prefix="mumic-annotator-speed-"))
    per_seed = [one_seed(args, seed, home / f"seed{seed}") for seed in range(args.seeds)]
    out = {
        "command": " ".join(["python benchmarks/annotator_speed.py", *sys.argv[1:]]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.python_version()}",
        "seeds": args.seeds,
        "images": args.images,
        "per_mode": args.per_mode,
        "gap_ms": args.gap_ms,
        "per_seed": per_seed,
        "summary": summary(per_seed),
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "annotator_speed.json").write_text(json.dumps(out, indent=1))
    (args.results / "annotator_speed.md").write_text(markdown(out))
    check_written(args.results / "annotator_speed.json", args.results / "annotator_speed.md")
    require(out["summary"], MODES, "the summary")
    if args.home is None:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
