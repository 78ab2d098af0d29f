from __future__ import annotations

import numpy as np
from PIL import Image

from mumic_core.synthetic.drawing_scenes import SHAPE_NAMES, generate_scenes, long_tailed_classes
from mumic_core.synthetic.starter_corpus import Drawing


def _sprite(d: Drawing) -> Image.Image:
    colour = {"bird": (200, 30, 30, 255), "fruit": (30, 200, 30, 255)}[d.category]
    return Image.new("RGBA", (40, 30), colour)


def test_classes_are_long_tailed_and_prompted():
    classes = long_tailed_classes(["bird", "fruit"], seed=3)
    assert set(classes.names) == {"bird", "fruit", *SHAPE_NAMES}
    p = classes.probabilities
    assert np.isclose(p.sum(), 1) and p[0] > 5 * p[-1]
    prompts = dict(zip(classes.names, classes.prompts()))
    assert "a drawing of a bird" in prompts["bird"] and "an arrow shape" in prompts["arrow"]


def test_scenes_label_what_they_draw(tmp_path):
    drawings = {
        "bird": [Drawing("b1", "robin", "", "animals/birds", "bird")],
        "fruit": [Drawing("f1", "apple", "", "food/fruit", "fruit")],
    }
    classes = long_tailed_classes(["bird", "fruit", "fish"], seed=0)  # fish: no drawings, never drawn
    rows = generate_scenes(60, 5, tmp_path, classes, drawings, _sprite, size=64)
    again = generate_scenes(60, 5, tmp_path / "again", classes, drawings, _sprite, size=64)
    assert rows == again  # deterministic per seed
    sizes = [len(labels) for _, labels in rows]
    assert min(sizes) == 1 and max(sizes) == 4
    assert not any("fish" in labels for _, labels in rows)
    for name, labels in rows:
        pixels = np.asarray(Image.open(tmp_path / name).convert("RGB")).reshape(-1, 3)
        has_red = bool(((pixels == (200, 30, 30)).all(axis=1)).any())
        assert has_red == ("bird" in labels), name  # the bird sprite is visible exactly when labelled
