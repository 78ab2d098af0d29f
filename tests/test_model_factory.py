from __future__ import annotations

import socket
import time
from pathlib import Path

import numpy as np
import pytest

from mumic_core.config import load_settings
from mumic_core.encoders import factory as mf
from mumic_core.errors import ModelUnavailable
from mumic_core.synthetic.scenes import generate_collection


def test_offline_default_falls_back_to_the_untrained_builtin_model_quickly(home: Path):
    settings = load_settings()
    assert not settings.model_explicit and settings.model == "ViT-B-32"
    start = time.monotonic()
    spec = mf.resolve_base_spec(settings)
    assert time.monotonic() - start < 5
    assert spec.kind == "builtin-random" and spec.is_untrained
    assert "untrained" in spec.description and "random weights" in spec.description
    assert (mf.builtin_dir(settings) / mf.WEIGHTS_NAME).is_file()


def test_probe_gives_up_within_its_timeout_when_the_network_hangs(monkeypatch):
    def hang(*args, **kwargs):
        time.sleep(3)
        raise OSError("no route")

    monkeypatch.setattr(socket, "create_connection", hang)
    start = time.monotonic()
    assert mf.host_reachable("huggingface.co", timeout=1.0) is False
    assert time.monotonic() - start < 2.0


def test_explicitly_configured_weights_fail_fast_with_a_clear_message(home: Path, monkeypatch):
    monkeypatch.setenv("MUMIC_PRETRAINED", "laion2b_s34b_b79k")
    start = time.monotonic()
    with pytest.raises(ModelUnavailable, match="unreachable .*offline"):
        mf.resolve_base_spec(load_settings())
    assert time.monotonic() - start < 5


def test_unknown_tag_is_refused(home: Path, monkeypatch):
    monkeypatch.setenv("MUMIC_PRETRAINED", "no-such-tag")
    with pytest.raises(ModelUnavailable):
        mf.resolve_base_spec(load_settings())


def _embed(spec: mf.EncoderSpec, paths):
    from mumic_core.encoders.encoding import encode_images, encode_prompts

    enc = mf.load_encoder(spec)
    return encode_images(enc, paths), encode_prompts(enc, [["a red circle"], ["a blue square", "a square"]]).numpy()


def test_local_dir_and_checkpoint_file_load_the_same_weights(home: Path, tmp_path: Path, monkeypatch):
    paths = [tmp_path / n for n, _ in generate_collection(3, seed=0, out_dir=tmp_path, size=64)]
    base = mf.resolve_base_spec(load_settings())
    img_a, txt_a = _embed(base, paths)
    assert img_a.shape == (3, 128) and np.allclose(np.linalg.norm(img_a, axis=1), 1, atol=1e-5)
    assert txt_a.shape == (2, 128)

    folder = mf.builtin_dir(load_settings())
    monkeypatch.setenv("MUMIC_MODEL", f"local-dir:{folder}")
    spec = mf.resolve_base_spec(load_settings())
    assert spec.kind == "pretrained" and spec.architecture == f"local-dir:{folder}"
    img_b, txt_b = _embed(spec, paths)
    np.testing.assert_allclose(img_a, img_b, atol=1e-5)

    monkeypatch.setenv("MUMIC_MODEL", "mumic-tiny-rn")
    monkeypatch.setenv("MUMIC_PRETRAINED", str(folder / mf.WEIGHTS_NAME))
    spec = mf.resolve_base_spec(load_settings())
    img_c, txt_c = _embed(spec, paths)
    np.testing.assert_allclose(img_a, img_c, atol=1e-5)
    np.testing.assert_allclose(txt_a, txt_c, atol=1e-5)


def test_missing_local_dir_is_a_clear_error(home: Path, monkeypatch, tmp_path):
    monkeypatch.setenv("MUMIC_MODEL", f"local-dir:{tmp_path / 'nothing'}")
    with pytest.raises(ModelUnavailable, match="no open_clip_config.json"):
        mf.resolve_base_spec(load_settings())


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_truncated_weights_are_a_clear_model_unavailable(home: Path, tmp_path: Path, monkeypatch):
    """A half-copied local-dir model or checkpoint file: one clear reason, not a SafetensorError."""
    import shutil

    import torch

    mf.resolve_base_spec(load_settings())  # makes the built-in model's local-dir
    folder = tmp_path / "model"
    shutil.copytree(mf.builtin_dir(load_settings()), folder)
    _truncate(folder / mf.WEIGHTS_NAME)
    monkeypatch.setenv("MUMIC_PRETRAINED", f"local-dir:{folder}")
    spec = mf.resolve_base_spec(load_settings())
    with pytest.raises(ModelUnavailable, match="weights file is truncated or corrupt"):
        mf.load_encoder(spec)

    checkpoint = tmp_path / "model.pt"
    torch.save({"a": torch.zeros(1000)}, checkpoint)
    _truncate(checkpoint)
    monkeypatch.setenv("MUMIC_MODEL", "mumic-tiny-rn")
    monkeypatch.setenv("MUMIC_PRETRAINED", str(checkpoint))
    with pytest.raises(ModelUnavailable, match="weights file is truncated or corrupt"):
        mf.load_encoder(mf.resolve_base_spec(load_settings()))
