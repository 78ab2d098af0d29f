"""The starter recipe's corpus and the starter model's place in model resolution, on a small
stand-in for the Debian stamps folder (the real recipe runs with `make starter-model`)."""

from __future__ import annotations

import csv
from pathlib import Path

from PIL import Image, ImageDraw

from mumic_core.config import load_settings
from mumic_core.encoders.factory import create_random_local_dir, resolve_base_spec
from mumic_core.encoders.spec import STARTER_LABEL, starter_dir
from mumic_core.encoders.starter import zero_shot_scenes
from mumic_core.pipeline.lifecycle import adopt_starter_model, ensure_base_version
from mumic_core.store.registry import active_version
from mumic_core.synthetic.starter_corpus import (
    Drawing,
    build_corpus,
    captions_for,
    emoji_category,
    emoji_subgroups,
    eval_category,
    held_out_scenes,
    load_held_out,
    split_held_out,
)


def fake_stamps(root: Path) -> None:
    shapes = {
        "animals/birds": "ellipse",
        "food/fruit/cartoon": "rectangle",
        "clothes/hats": "polygon",
        "clothes": "ellipse",
        "symbols/music": "rectangle",
    }
    for k, (folder, shape) in enumerate(shapes.items()):
        for i in range(5):
            d = root / folder
            d.mkdir(parents=True, exist_ok=True)
            im = Image.new("RGBA", (80, 60), (0, 0, 0, 0))
            draw = ImageDraw.Draw(im)
            colour = (40 * k, 200 - 30 * i, 90, 255)
            if shape == "polygon":
                draw.polygon([(5, 55), (40, 5), (75, 55)], fill=colour)
            else:
                getattr(draw, shape)((5 + i, 5, 75, 55 - i), fill=colour)
            im.save(d / f"thing{i}-{k}.png")
            (d / f"thing{i}-{k}.txt").write_text(f"A thing number {i}.\nfr.utf8=Une chose.\n")


def test_eval_categories_use_the_longest_folder_prefix():
    assert eval_category("clothes/hats") == "hat"
    assert eval_category("clothes/armor/cartoon") == "piece of clothing"
    assert eval_category("animals/mammals/cats") == "mammal"
    assert eval_category("symbols/music") is None


def test_emoji_join_evaluation_classes_through_their_unicode_subgroup(tmp_path: Path):
    test_file = tmp_path / "emoji-test.txt"
    test_file.write_text(
        "# subgroup: animal-bird\n1F426 ; fully-qualified # bird\n"
        "# subgroup: transport-ground\n1F68C ; fully-qualified # bus\n"
        "1F6A5 ; fully-qualified # horizontal traffic light\n"
        "# subgroup: clothing\n1F3A9 ; fully-qualified # top hat\n"
        "1F468 200D 1F373 ; fully-qualified # a sequence, ignored\n"
    )
    groups = emoji_subgroups(test_file)
    assert groups == {
        0x1F426: "animal-bird",
        0x1F68C: "transport-ground",
        0x1F6A5: "transport-ground",
        0x1F3A9: "clothing",
    }
    assert emoji_category("animal-bird", "dove") == "bird" and emoji_category("clothing", "top hat") == "hat"
    assert emoji_category("clothing", "t-shirt") == "piece of clothing"
    assert emoji_category("transport-ground", "bus") == "vehicle"
    assert emoji_category("transport-ground", "horizontal traffic light") is None
    assert emoji_category("face-smiling", "grinning face") is None and emoji_subgroups(tmp_path / "no") == {}
    dove = Drawing("emoji/U+1F54A", "dove", "", "emoji", "bird")
    assert "an emoji of a bird" in captions_for(dove)
    # Emoji train: only Tux Paint drawings are held out, so the test pictures stay the same.
    stamps = [Drawing(f"animals/birds/b{i}.png", f"b{i}", "", "animals/birds", "bird") for i in range(8)]
    train, held = split_held_out(stamps + [dove] * 1)
    assert dove in train and len(held) == 2 and all(d.folder != "emoji" for d in held)


def test_corpus_captions_held_out_split_and_scenes(tmp_path: Path):
    root = tmp_path / "stamps"
    fake_stamps(root)
    out = tmp_path / "corpus"
    summary = build_corpus(out, composites=10, root=root, font=tmp_path / "no-font.ttf")
    assert summary["drawings"] == 25 and summary["emoji"] == 0
    # bird, fruit, hat, clothing have 5 drawings each: one of each is kept out; music trains fully.
    held, held_root, _ = load_held_out(out)
    assert summary["held_out_drawings"] == 4 == len(held) and held_root == root
    assert {d.category for d in held} == {"bird", "fruit", "hat", "piece of clothing"}
    with open(out / "captions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    captions = {r["caption"] for r in rows}
    assert "A thing number 0." in captions  # the English description line
    assert any(c.endswith("a kind of bird") for c in captions)
    assert any(" and " in c for c in captions)  # composites name all their drawings
    # ... and also each drawing alone, by name and by class (true but incomplete captions)
    multi = [r for r in rows if r["filename"].startswith("images/multi_")]
    by_picture: dict[str, set[str]] = {}
    for r in multi:
        by_picture.setdefault(r["filename"], set()).add(r["caption"])
    for caps in by_picture.values():
        full = next(c for c in caps if c.startswith("a drawing of ") and " and " in c and "thing" in c)
        names = full.removeprefix("a drawing of ").replace(" and ", ", ").split(", ")
        assert {f"a drawing of {n}" for n in names} <= caps
    assert any(c in ("a drawing of a bird", "a drawing of a hat") for caps in by_picture.values() for c in caps)
    held_keys = {d.key for d in held}
    assert not any(k.split("/")[-1].split(".")[0] in c for k in held_keys for c in captions if "thing" in k)
    assert len({r["filename"] for r in rows}) == summary["pictures"] == 21 * 2 + 10

    scenes = held_out_scenes(held, 12, seed=1, out_dir=tmp_path / "scenes", root=root, font=tmp_path / "x")
    assert len(scenes) == 12 and all(1 <= len(labels) <= 3 for _, labels in scenes)
    assert Image.open(tmp_path / "scenes" / scenes[0][0]).size == (128, 128)


def test_zero_shot_evaluation_reports_chance(home: Path, tmp_path: Path):
    root = tmp_path / "stamps"
    fake_stamps(root)
    build_corpus(tmp_path / "corpus", composites=4, root=root, font=tmp_path / "none.ttf")
    model = tmp_path / "model"
    create_random_local_dir("mumic-tiny-rn", model)
    from mumic_core.encoders.spec import EncoderSpec

    m = zero_shot_scenes(EncoderSpec(f"local-dir:{model}", "", "x", ""), tmp_path / "corpus", n_scenes=40)
    assert m["n_images"] == 40 and m["n_classes"] == 4
    assert 0.25 <= m["chance_positive_rate"] <= 0.75 and 0 < m["map"] <= 1
    assert 0 < m["shuffled_chance"]["map"]["mean"] <= m["shuffled_chance"]["map"]["p99"] <= 1


def test_starter_model_is_the_offline_default_and_replaces_the_untrained_one(studio):
    settings = load_settings()
    assert ensure_base_version(studio).kind == "builtin-random"
    create_random_local_dir("mumic-tiny-rn", starter_dir(settings))
    spec = resolve_base_spec(settings)
    assert spec.kind == "starter" and spec.description == STARTER_LABEL and "not CLIP" in STARTER_LABEL
    adopted = adopt_starter_model(studio)
    assert adopted is not None and active_version(studio).id == adopted.id and adopted.kind == "starter"
    assert adopt_starter_model(studio) is None  # only ever replaces the untrained model
