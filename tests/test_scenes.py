"""Tests for the self-generated demo collection in mumic_core.synthetic.scenes."""

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mumic_core.synthetic.scenes import (
    BACKGROUND_NAMES,
    COLOUR_NAMES,
    DEMO_CLASSES,
    SHAPE_NAMES,
    generate_collection,
    generate_scene,
    read_labels_csv,
    write_labels_csv,
)

KNOWN = {c.name for c in DEMO_CLASSES}
# Hue band (centre, tolerance in degrees) that pixels of each object colour fall into.
HUE_BANDS = {
    "red object": (0, 12),
    "orange object": (28, 8),
    "yellow object": (52, 9),
    "green object": (125, 25),
    "blue object": (220, 20),
    "purple object": (280, 18),
}


@pytest.fixture(scope="module")
def scenes():
    rng = np.random.default_rng(1234)
    return [generate_scene(rng) for _ in range(300)]


def colour_pixels(image, colour: str) -> int:
    """Number of saturated, reasonably bright pixels whose hue lies in colour's band."""
    hsv = np.asarray(image.convert("HSV")).astype(np.float64)
    hue, sat, val = hsv[..., 0] * 360 / 256, hsv[..., 1], hsv[..., 2]
    centre, tol = HUE_BANDS[colour]
    distance = np.abs((hue - centre + 180) % 360 - 180)
    return int(((distance <= tol) & (sat > 150) & (val > 100)).sum())


def test_class_catalogue():
    names = [c.name for c in DEMO_CLASSES]
    assert len(names) == len(set(names)) == 20
    assert len(SHAPE_NAMES) == 10 and len(COLOUR_NAMES) == 6 and len(BACKGROUND_NAMES) == 4
    for spec in DEMO_CLASSES:
        assert spec.name == spec.name.lower()
        assert 2 <= len(spec.prompts) <= 3 and spec.description


def test_collection_is_deterministic(tmp_path: Path):
    a = generate_collection(6, seed=5, out_dir=tmp_path / "a")
    b = generate_collection(6, seed=5, out_dir=tmp_path / "b")
    generate_collection(6, seed=6, out_dir=tmp_path / "c")  # another seed: other pictures
    assert [name for name, _ in a] == [f"scene_{i:05d}.png" for i in range(6)]
    assert a == b
    assert all((tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes() for n, _ in a)
    assert any((tmp_path / "a" / n).read_bytes() != (tmp_path / "c" / n).read_bytes() for n, _ in a)


def test_jpeg_format(tmp_path: Path):
    rows = generate_collection(2, seed=0, out_dir=tmp_path, fmt="jpg")
    assert [n for n, _ in rows] == ["scene_00000.jpg", "scene_00001.jpg"]
    assert (tmp_path / "scene_00001.jpg").read_bytes()[:2] == b"\xff\xd8"
    with pytest.raises(ValueError):
        generate_collection(1, seed=0, out_dir=tmp_path, fmt="tiff")


def test_scene_structure(scenes):
    for scene in scenes:
        assert scene.image.mode == "RGB" and scene.image.size == (128, 128)
        assert scene.labels <= KNOWN
        assert 1 <= len(scene.labels & SHAPE_NAMES) <= 4
        assert 1 <= len(scene.labels & COLOUR_NAMES) <= 4
        assert len(scene.labels & BACKGROUND_NAMES) == 1


def test_every_class_appears(scenes):
    counts = Counter(label for scene in scenes for label in scene.labels)
    assert all(counts[name] >= 5 for name in KNOWN), counts
    assert Counter(len(s.labels & SHAPE_NAMES) for s in scenes).keys() >= {1, 2, 3}


def test_colour_labels_match_pixels(scenes):
    for scene in scenes[:150]:
        for colour in HUE_BANDS:
            count = colour_pixels(scene.image, colour)
            if colour in scene.labels:
                assert count >= 50, (colour, count, scene.labels)
            else:
                assert count < 40, (colour, count, scene.labels)


def test_background_is_muted(scenes):
    plain = [s for s in scenes if "plain background" in s.labels and len(s.labels & SHAPE_NAMES) == 1]
    assert plain
    for scene in plain:
        hsv = np.asarray(scene.image.convert("HSV"))
        # Most of the picture is background: low saturation, high brightness.
        assert np.median(hsv[..., 1]) < 80 and np.median(hsv[..., 2]) > 190


def test_class_subset():
    rng = np.random.default_rng(0)
    subset = [c for c in DEMO_CLASSES if c.name in {"circle", "star", "red object", "dotted background"}]
    for _ in range(40):
        labels = generate_scene(rng, size=64, classes=subset, max_objects=2).labels
        assert labels & SHAPE_NAMES <= {"circle", "star"} and labels & SHAPE_NAMES
        assert labels & COLOUR_NAMES <= {"red object"}
        assert labels & BACKGROUND_NAMES == {"dotted background"}
    shapes_only = [c for c in DEMO_CLASSES if c.name in SHAPE_NAMES]
    for _ in range(20):
        scene = generate_scene(rng, classes=shapes_only, max_objects=1)
        assert len(scene.labels) == 1 and scene.labels <= SHAPE_NAMES


def test_invalid_classes():
    rng = np.random.default_rng(0)
    no_shapes = [c for c in DEMO_CLASSES if c.name not in SHAPE_NAMES]
    with pytest.raises(ValueError):
        generate_scene(rng, classes=no_shapes)
    with pytest.raises(ValueError):
        generate_scene(rng, max_objects=0)


def test_labels_csv_round_trip(tmp_path: Path):
    rows = generate_collection(5, seed=3, out_dir=tmp_path / "img")
    rows.append(("empty.png", frozenset()))
    path = tmp_path / "labels.csv"
    write_labels_csv(rows, path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "filename,labels"
    assert lines[1] == f"{rows[0][0]},{'|'.join(sorted(rows[0][1]))}"
    assert read_labels_csv(path) == rows


def test_long_tailed_classes_label_colour_shape_pairs_consistently():
    from mumic_core.synthetic.scenes import LONG_TAIL_CLASSES, SHAPE_CLASSES, zipf_weights

    rng = np.random.default_rng(0)
    counts = {c.name: 0 for c in LONG_TAIL_CLASSES}
    for _ in range(400):
        scene = generate_scene(
            rng, size=32, classes=LONG_TAIL_CLASSES, shape_p=zipf_weights(10), colour_p=zipf_weights(6)
        )
        for label in scene.labels:
            counts[label] += 1
            colour, _, shape = label.partition(" ")
            if shape in {c.name for c in SHAPE_CLASSES}:  # "red circle" implies "red object" and "circle"
                assert f"{colour} object" in scene.labels and shape in scene.labels
    assert len(LONG_TAIL_CLASSES) == 80
    assert counts["circle"] > 5 * counts["crescent"] > 0  # Zipf: the first shape is far more common
    assert counts["red circle"] > 20 * max(1, counts["orange crescent"])
