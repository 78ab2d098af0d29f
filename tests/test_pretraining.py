from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest

from mumic_core.config import load_settings
from mumic_core.encoders.factory import load_encoder, resolve_base_spec
from mumic_core.encoders.pretraining import (
    PretrainConfig,
    lr_scale,
    pick_captions,
    pretrain,
    read_captions,
    run_fraction,
)
from mumic_core.encoders.spec import WEIGHTS_NAME
from mumic_core.errors import MumicError
from mumic_core.synthetic.scenes import generate_collection


def captioned_folder(tmp_path: Path, n: int = 8) -> Path:
    rows = generate_collection(n, seed=5, out_dir=tmp_path / "imgs", size=64)
    csv_path = tmp_path / "captions.csv"
    with open(csv_path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["filename", "caption"])
        for name, labels in rows:
            w.writerow([f"imgs/{name}", "a picture with " + " and ".join(sorted(labels))])
            w.writerow([f"imgs/{name}", f"{name} " + ", ".join(sorted(labels))])
    return csv_path


def test_pretraining_learns_and_saves_a_loadable_local_dir(home: Path, tmp_path: Path, monkeypatch):
    csv_path = captioned_folder(tmp_path)
    out = tmp_path / "pretrained"
    result = pretrain(
        csv_path,
        out,
        PretrainConfig(model="mumic-tiny-rn", minutes=5, max_steps=40, batch_size=8, lr=1e-3, label="test model"),
    )
    assert result.steps == 40 and result.images_seen == 320 and result.images_per_second > 0
    losses = [r["loss"] for r in result.losses]
    assert losses[-1] < 0.7 * losses[0], losses  # contrastive loss really goes down
    assert (out / "open_clip_config.json").is_file() and (out / WEIGHTS_NAME).is_file()
    info = json.loads((out / "pretrain_info.json").read_text())
    assert info["config"]["model"] == "mumic-tiny-rn" and info["steps"] == 40
    assert not list(tmp_path.glob(".pretrained*"))  # the random-init scratch folder is gone

    # Loaded through MUMIC_PRETRAINED=local-dir:..., the same path as any checkpoint.
    monkeypatch.setenv("MUMIC_PRETRAINED", f"local-dir:{out}")
    spec = resolve_base_spec(load_settings())
    assert spec.architecture == f"local-dir:{out.resolve()}" and "test model" in spec.description
    enc = load_encoder(spec)
    from safetensors.torch import load_file

    saved = load_file(str(out / WEIGHTS_NAME))
    loaded = enc.model.state_dict()
    assert all(np.allclose(saved[k].numpy(), loaded[k].numpy()) for k in list(saved)[:20])


def test_pretraining_continues_from_a_checkpoint(home: Path, tmp_path: Path):
    csv_path = captioned_folder(tmp_path)
    first = tmp_path / "first"
    pretrain(csv_path, first, PretrainConfig(model="mumic-tiny-rn", max_steps=5, batch_size=8))
    second = tmp_path / "second"
    r = pretrain(csv_path, second, PretrainConfig(model=f"local-dir:{first}", max_steps=5, batch_size=8))
    assert r.steps == 5 and (second / WEIGHTS_NAME).is_file()
    assert json.loads((second / "pretrain_info.json").read_text())["config"]["model"] == f"local-dir:{first}"


def test_bad_caption_files_are_refused(tmp_path: Path):
    bad = tmp_path / "bad.csv"
    bad.write_text("file,text\na.png,hello\n")
    with pytest.raises(MumicError, match="expected a header"):
        read_captions(bad)
    missing = tmp_path / "missing.csv"
    missing.write_text("filename,caption\nnope.png,hello\nnope2.png,hi\n")
    with pytest.raises(MumicError, match="do not exist"):
        read_captions(missing)


def test_schedule_follows_the_step_limit_when_it_ends_the_run_first():
    # A step limit far inside a long time budget still warms up, peaks and decays (a bug once
    # kept such runs in warm-up at 1% of the learning rate).
    budget = 3600.0
    assert run_fraction(1.0, budget, 0, 100) == pytest.approx(1 / 3600)
    assert run_fraction(1.0, budget, 50, 100) == 0.5 and run_fraction(1.0, budget, 99, 100) == 0.99
    assert run_fraction(1800.0, budget, 5, None) == 0.5
    peak = [lr_scale(run_fraction(1.0, budget, s, 100), 0.03) for s in range(100)]
    assert peak[0] == 0.01 and max(peak) == pytest.approx(1.0, abs=0.01) and peak[-1] < 0.02
    assert peak.index(max(peak)) <= 4


def test_a_shared_caption_is_used_once_per_batch():
    captions = [["a bird", "a robin"], ["a bird", "a crow"], ["a bird"], ["a bird", "a wren"]]
    for seed in range(20):
        assert len(set(pick_captions([0, 1, 3], captions, random.Random(seed)))) == 3
    assert pick_captions([2, 2], captions, random.Random(0)) == ["a bird", "a bird"]  # no other caption
    assert pick_captions([0, 1], [["x"], ["x"]], random.Random(0), unique=False) == ["x", "x"]
