"""The scoring pipeline's fast paths give the same numbers as the plain ones."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_env
from PIL import UnidentifiedImageError

from mumic_core.encoders.encoding import (
    _keeps_input_size_images,
    _pixels,
    encode_images,
    encode_text,
    split_preprocess,
)
from mumic_core.encoders.factory import load_encoder, resolve_base_spec
from mumic_core.encoders.pixels import load_rgb
from mumic_core.pipeline import scoring
from mumic_core.synthetic.scenes import generate_collection

ROOT = Path(__file__).resolve().parents[1]


def test_batched_preprocessing_equals_open_clip_transform(studio, tmp_path: Path):
    rows = generate_collection(6, seed=3, out_dir=tmp_path, size=80)  # not the model's size: resized
    paths = [tmp_path / name for name, _ in rows]
    encoder = load_encoder(resolve_base_spec(studio.settings))
    per_image, per_batch = split_preprocess(encoder.preprocess)
    assert per_image is not None and per_batch is not None
    expected = torch.stack([encoder.preprocess(load_rgb(p)) for p in paths])
    assert torch.equal(_pixels(encoder, paths), expected)
    with torch.inference_mode():
        direct = torch.nn.functional.normalize(encoder.model.encode_image(expected).float(), dim=-1).numpy()
    np.testing.assert_allclose(encode_images(encoder, paths, batch_size=4), direct, atol=1e-5)
    # decoded by a pool of processes (a GPU's default): the same images in the same order
    np.testing.assert_allclose(encode_images(encoder, paths, batch_size=1, decode_workers=3), direct, atol=1e-5)


def test_images_at_the_models_size_skip_the_per_image_steps_with_the_same_pixels(studio, tmp_path: Path):
    encoder = load_encoder(resolve_base_spec(studio.settings))
    size = encoder.image_size
    rows = generate_collection(3, seed=4, out_dir=tmp_path / "at", size=size)
    rows += generate_collection(2, seed=5, out_dir=tmp_path / "off", size=size + 16)
    paths = [tmp_path / "at" / n for n, _ in rows[:3]] + [tmp_path / "off" / n for n, _ in rows[3:]]
    expected = torch.stack([encoder.preprocess(load_rgb(p)) for p in paths])
    per_image, _ = split_preprocess(encoder.preprocess)
    assert _keeps_input_size_images(per_image, size)
    assert torch.equal(_pixels(encoder, paths), expected)


def test_a_per_image_step_that_changes_input_size_images_is_not_skipped():
    from torchvision.transforms import CenterCrop, Compose, Resize

    assert _keeps_input_size_images(Compose([Resize(32), CenterCrop(32)]), 32)
    assert not _keeps_input_size_images(Compose([Resize(40), CenterCrop(32)]), 32)  # resamples first
    assert not _keeps_input_size_images(lambda im: im.rotate(90), 32)
    assert not _keeps_input_size_images(lambda im: 1 / 0, 32)  # fails: the general path


def test_batch_processes_keep_freed_memory_where_glibc_allows():
    from mumic_core.encoders.allocator import keep_freed_memory_for_batches

    if not sys.platform.startswith("linux"):
        pytest.skip("glibc's mallopt only")
    assert keep_freed_memory_for_batches() and keep_freed_memory_for_batches()  # and again: a no-op


_THREAD_FAULTS = """
import resource, sys, threading
{setup}
import numpy as np
faults = []
def batches():  # blocks of a forward's sizes, allocated and freed again and again
    for k in range(40):
        if k == 20:
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)
        blocks = [np.ones(2**20 * mib // 8) for mib in (6, 12, 20, 3, 9, 25)]
        del blocks
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)
stop = threading.Event()
def other():  # the consumer's other threads (scheduler, heartbeat), started first
    kept = np.ones(2**16)
    stop.wait()
others = [threading.Thread(target=other) for _ in range(3)]
for t in others:
    t.start()
thread = threading.Thread(target=batches)
thread.start()
thread.join()
stop.set()
print(faults[1] - faults[0])
"""


@pytest.mark.parametrize(
    "setup",
    [
        "from mumic_core.encoders.allocator import keep_freed_memory_for_batches; keep_freed_memory_for_batches()",
        "import mumic_core.pipeline.worker",  # what huey's consumer imports before it starts its worker threads
    ],
)
def test_a_thread_started_after_the_allocator_setting_reuses_freed_memory(setup, tmp_path):
    """The worker runs jobs in a thread: its batches must not fault their memory in again each time
    (a thread's own glibc arena unmaps its heaps as they empty; 15k faults in these 20 rounds)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("glibc's mallopt only")
    script = _THREAD_FAULTS.format(setup=setup)
    env = make_env(tmp_path)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert int(out.stdout) < 1000


def test_text_trimmed_to_the_prompts_length_equals_open_clips_encode_text(studio):
    encoder = load_encoder(resolve_base_spec(studio.settings))
    tokens = encoder.tokenizer(["a red circle", "a photo of a small blue square on a plain background", "x"])
    assert int(tokens.argmax(dim=-1).max()) + 1 < tokens.shape[1]  # there is padding to trim
    encoder.model.eval()
    with torch.no_grad():
        expected = encoder.model.encode_text(tokens)
        trimmed = encode_text(encoder.model, tokens)
    torch.testing.assert_close(trimmed, expected, atol=1e-5, rtol=1e-5)
    encoder.model.train()  # and with gradients, as full mode runs it
    trimmed = encode_text(encoder.model, tokens)
    trimmed.sum().backward()
    assert encoder.model.token_embedding.weight.grad is not None


def test_a_transform_it_cannot_split_is_applied_per_image():
    assert split_preprocess(lambda im: im) == (None, None)


def test_class_text_embeddings_are_computed_once_per_model(studio, monkeypatch):
    from mumic_core.pipeline.lifecycle import ensure_base_version

    scorer = scoring.load_scorer(studio, ensure_base_version(studio))
    first = scorer.text_embeddings([["a red circle"], ["a blue square", "a blue box"]])
    calls = []
    real = scoring.encode_prompts
    monkeypatch.setattr(scoring, "encode_prompts", lambda enc, prompts: calls.append(prompts) or real(enc, prompts))
    again = scorer.text_embeddings([["a blue square", "a blue box"], ["a green star"], ["a red circle"]])
    assert calls == [[("a green star",)]]  # only the new class went through the text tower
    np.testing.assert_array_equal(again[0], first[1])
    np.testing.assert_array_equal(again[2], first[0])
    assert scorer.text_embeddings([]).shape == (0, first.shape[1])


def test_a_large_jpeg_is_decoded_reduced_and_embeds_as_decoded_in_full(studio, tmp_path: Path):
    from PIL import Image, ImageDraw

    yy, xx = np.mgrid[0:1200, 0:1600]
    photo = np.stack([xx * 255 // 1600, yy * 255 // 1200, (xx + yy) * 255 // 2800], -1).astype(np.uint8)
    img = Image.fromarray(photo)
    ImageDraw.Draw(img).ellipse((500, 300, 1100, 900), fill=(200, 30, 40))
    path = tmp_path / "photo.jpg"
    img.save(path, quality=92)
    encoder = load_encoder(resolve_base_spec(studio.settings))
    reduced = load_rgb(path, min_side=encoder.image_size)
    assert encoder.image_size <= min(reduced.size) < 1200 / 2  # 1/4 or 1/8 of the file's scale
    full = torch.stack([encoder.preprocess(load_rgb(path))])
    fast = _pixels(encoder, [path])
    assert fast.shape == full.shape and (fast - full).abs().mean() < 0.05  # normalised units
    with torch.inference_mode():
        a, b = (torch.nn.functional.normalize(encoder.model.encode_image(x).float(), dim=-1) for x in (full, fast))
    assert float((a * b).sum()) > 0.995


def test_a_corrupt_file_among_many_raises_its_own_error(studio, tmp_path: Path):
    rows = generate_collection(4, seed=5, out_dir=tmp_path, size=64)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    encoder = load_encoder(resolve_base_spec(studio.settings))
    paths = [tmp_path / name for name, _ in rows]
    with pytest.raises(UnidentifiedImageError, match="bad.png"):  # found while the batch before it is encoded
        encode_images(encoder, [*paths, bad, *paths], batch_size=2)


def test_decoding_processes_do_not_run_the_main_script_again(studio, tmp_path: Path, monkeypatch):
    """Under Streamlit (and AppTest) ``__main__`` is a page script; a decoding process must not
    run it again (a spawned one would, and die signed out)."""
    rows = generate_collection(6, seed=4, out_dir=tmp_path, size=64)  # more than 4 batches: the pool decodes
    paths = [tmp_path / name for name, _ in rows]
    page = tmp_path / "page.py"
    page.write_text("raise SystemExit('the page ran again in a decoding process')\n")
    main = types.ModuleType("__main__")
    main.__file__ = str(page)
    monkeypatch.setitem(sys.modules, "__main__", main)
    encoder = load_encoder(resolve_base_spec(studio.settings))
    expected = encode_images(encoder, paths, batch_size=1)
    np.testing.assert_allclose(encode_images(encoder, paths, batch_size=1, decode_workers=2), expected, atol=1e-5)


def test_cpu_streams_embed_with_the_model_as_it_is_now(studio, tmp_path: Path):
    """A CPU stream runs the model it inherited when it was forked: a model changed since (a
    fine-tuned encoder) gets new processes, whose embeddings match this process's own."""
    rows = generate_collection(10, seed=6, out_dir=tmp_path, size=64)
    paths = [tmp_path / name for name, _ in rows]
    encoder = load_encoder(resolve_base_spec(studio.settings))
    before = encode_images(encoder, paths, batch_size=1, decode_workers=2)
    np.testing.assert_allclose(before, encode_images(encoder, paths), atol=1e-5)  # 10 images: in this process
    with torch.no_grad():
        for p in encoder.model.visual.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    after = encode_images(encoder, paths, batch_size=1, decode_workers=2)
    np.testing.assert_allclose(after, encode_images(encoder, paths), atol=1e-5)
    assert np.abs(after - before).max() > 0.01
    encoder.model.train()  # batch norm on each batch's own statistics: the streams must follow
    here = encode_images(encoder, paths, batch_size=1, decode_workers=1)
    assert np.abs(here - after).max() > 0.01
    np.testing.assert_allclose(encode_images(encoder, paths, batch_size=1, decode_workers=2), here, atol=1e-5)
    encoder.model.eval()


def test_a_killed_cpu_stream_fails_the_call_and_the_next_one_gets_new_processes(studio, tmp_path: Path):
    import os
    import signal
    from concurrent.futures.process import BrokenProcessPool

    from mumic_core.encoders import encoding

    rows = generate_collection(10, seed=7, out_dir=tmp_path, size=64)
    paths = [tmp_path / name for name, _ in rows]
    encoder = load_encoder(resolve_base_spec(studio.settings))
    expected = encode_images(encoder, paths, batch_size=1, decode_workers=2)
    ((pool, _),) = encoding._pools.values()
    for process in list(pool._processes.values()):
        os.kill(process.pid, signal.SIGKILL)
    with pytest.raises(BrokenProcessPool):
        encode_images(encoder, paths, batch_size=1, decode_workers=2)
    np.testing.assert_allclose(encode_images(encoder, paths, batch_size=1, decode_workers=2), expected, atol=1e-6)


_KILLED_PARENT = """
import os, sys, time
from pathlib import Path
from mumic_core.config import load_settings
from mumic_core.encoders import encoding
from mumic_core.encoders.factory import load_encoder, resolve_base_spec
encoder = load_encoder(resolve_base_spec(load_settings()))
paths = sorted(Path(sys.argv[1]).glob("*.png"))
encoding.encode_images(encoder, paths, batch_size=1, decode_workers=2)
(pool, _), = encoding._pools.values()
print(" ".join(str(p.pid) for p in pool._processes.values()), flush=True)
time.sleep(600)
"""


def test_the_pools_processes_end_when_their_worker_is_killed(studio, tmp_path: Path):
    import signal
    import time

    generate_collection(10, seed=8, out_dir=tmp_path / "images", size=64)
    parent = subprocess.Popen(
        [sys.executable, "-c", _KILLED_PARENT, str(tmp_path / "images")],
        cwd=ROOT,
        env=make_env(tmp_path),
        stdout=subprocess.PIPE,
        text=True,
    )
    children = [int(pid) for pid in parent.stdout.readline().split()]
    assert len(children) == 2 and all(Path(f"/proc/{pid}").exists() for pid in children)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(Path(f"/proc/{pid}").exists() for pid in children)


def _resident_file_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1])
    raise AssertionError("no RssFile in /proc/self/status")


def test_a_pass_over_a_mapped_cache_does_not_stay_resident(tmp_path: Path):
    """in_slices gives every row once, in order, and unmaps each slice of a memory-mapped cache
    after use: a pass over 1M embeddings no longer adds 1.9 GiB to the process's memory; nor does
    a read of rows spread over it."""
    from mumic_core.encoders.cache import EmbeddingCache, in_slices

    if not sys.platform.startswith("linux"):
        pytest.skip("Linux madvise only")
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((60_000, 256)).astype(np.float32)  # 58 MiB
    cache = EmbeddingCache(tmp_path, "k")
    cache.add(np.arange(1, 60_001), emb)
    _, mapped = cache.load()
    before = _resident_file_kib()
    rows = [(start, block.copy()) for start, block in in_slices(mapped, rows=8_192)]
    grown = _resident_file_kib() - before
    assert [s for s, _ in rows] == list(range(0, 60_000, 8_192))
    np.testing.assert_array_equal(np.concatenate([b for _, b in rows]), emb)
    assert grown < 16 * 1024, f"{grown} KiB of the mapped cache stayed resident"
    before = _resident_file_kib()  # rows spread over the file, copied out: the mapping is dropped too
    _, picked = cache.ensure(lambda: None, np.arange(1, 60_001, 40), lambda missing: [])
    np.testing.assert_array_equal(picked, emb[::40])
    assert _resident_file_kib() - before < 8 * 1024
    _ = float(np.asarray(mapped).sum())  # the plain pass, for contrast: all of it stays
    assert _resident_file_kib() - before > 50 * 1024
    in_memory = list(in_slices(emb, rows=50_000))  # an array in memory: the same slices, untouched
    assert [len(b) for _, b in in_memory] == [50_000, 10_000]
