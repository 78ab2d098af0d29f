"""Images and model versions kept in an object store (a local S3 server, moto) or, by default, on disk."""

from __future__ import annotations

import io
import json
import shutil
import socket
import uuid
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from mumic_core.config import load_settings
from mumic_core.pipeline.lifecycle import ensure_base_version
from mumic_core.pipeline.scoring import score_collection
from mumic_core.pipeline.training import TrainConfig, train
from mumic_core.services.demo import seed_demo
from mumic_core.store.auth import SYSTEM
from mumic_core.store.collection import image_items, import_files
from mumic_core.store.queue import image_views
from mumic_core.store.registry import export_model_zip, get_version, head_path, load_head
from mumic_core.store.storage import Storage, storage_for
from mumic_core.store.studio import open_studio


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint: str, home: Path, monkeypatch: pytest.MonkeyPatch):
    """An empty bucket on the local S3 server; MUMIC_STORAGE_URL points at a prefix in it.
    Returns (an s3fs filesystem on the server, "bucket/prefix")."""
    import s3fs

    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    options = {"client_kwargs": {"endpoint_url": s3_endpoint}}
    fs = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False, **options)
    bucket = f"mumic-{uuid.uuid4().hex[:12]}"
    fs.mkdir(bucket)
    monkeypatch.setenv("MUMIC_STORAGE_URL", f"s3://{bucket}/studio/")
    monkeypatch.setenv("MUMIC_STORAGE_OPTIONS", json.dumps(options))
    return fs, f"{bucket}/studio"


def _png(color: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (24, 16), color).save(buf, "PNG")
    return buf.getvalue()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_storage_round_trip_on_s3(s3, home: Path):
    fs, root = s3
    store = storage_for(load_settings(), "models")
    assert store.remote and store.cache_dir == home / "cache" / "storage" / "models"
    store.write_bytes("a/b.bin", b"hello")
    assert fs.cat_file(f"{root}/models/a/b.bin") == b"hello"
    assert store.exists("a/b.bin") and not store.exists("a/nope.bin")
    assert store.read_bytes("a/b.bin") == b"hello"
    path = store.local_path("a/b.bin")
    assert path == home / "cache" / "storage" / "models" / "a" / "b.bin" and path.read_bytes() == b"hello"
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temporary leftovers
    with pytest.raises(FileNotFoundError, match="a/nope.bin"):
        store.local_path("a/nope.bin")
    with pytest.raises(FileNotFoundError):
        store.read_bytes("a/nope.bin")

    src = home / "src"
    (src / "encoder").mkdir(parents=True)
    (src / "head.json").write_text("{}")
    (src / "encoder" / "w.bin").write_bytes(b"\0" * 10)
    assert store.upload_dir(src, "v0009") == 2
    assert sorted(fs.find(f"{root}/models/v0009")) == [
        f"{root}/models/v0009/encoder/w.bin",
        f"{root}/models/v0009/head.json",
    ]
    dest = home / "elsewhere" / "v0009"
    assert store.local_dir("v0009", dest=dest) == dest
    assert (dest / "head.json").read_text() == "{}" and (dest / "encoder" / "w.bin").read_bytes() == b"\0" * 10
    assert not [p for p in dest.parent.iterdir() if p.name.startswith(".")]
    assert store.local_dir("v0404") is None


def test_images_and_trained_versions_live_in_the_object_store(s3, home: Path):
    fs, root = s3
    studio = open_studio(load_settings(), actor=SYSTEM)
    base = ensure_base_version(studio)
    summary = seed_demo(studio, n_images=60, seed=3)
    assert summary.images == 60
    stored = fs.find(f"{root}/images")
    assert len(stored) == 60 and all(f.endswith(".png") for f in stored)
    assert _files(home / "images") == []  # nothing written locally
    assert _files(home / "cache") == []  # and nothing cached yet: import does not read back

    # A duplicate is still found (the store is content-addressed), and nothing is re-uploaded.
    report = import_files(studio, [("again.png", _png("red")), ("again2.png", _png("red"))])
    assert len(report.added) == 1 and len(report.duplicates) == 1
    assert len(fs.find(f"{root}/images")) == 61

    assert score_collection(studio, base) == 61 * 20  # images fetched into the read-through cache
    assert len(_files(home / "cache" / "storage" / "images")) == 61
    items = image_items(studio)
    assert all(p.is_file() and p.is_relative_to(home / "cache" / "storage" / "images") for _, p in items)
    view = image_views(studio, [items[0][0]], base.id)[0]
    assert view.path == items[0][1]

    result = train(studio, TrainConfig(mode="head", steps=30), base)
    name = result.version.name
    assert fs.exists(f"{root}/models/{name}/head.json")
    trained = (home / "models" / name / "head.json").read_bytes()
    assert fs.cat_file(f"{root}/models/{name}/head.json") == trained

    # Another machine: no local model folder, no cached images, no embeddings.
    shutil.rmtree(home / "models" / name)
    shutil.rmtree(home / "cache")
    shutil.rmtree(home / "embeddings")
    version = get_version(studio, name)
    head = load_head(studio, version)  # read back from S3
    assert head is not None and (home / "models" / name / "head.json").read_bytes() == trained
    assert set(head.thresholds) == set(result.version.training_config["classes"])
    assert score_collection(studio, version) == 61 * 20
    assert len(_files(home / "cache" / "storage" / "images")) == 61
    assert _files(home / "images") == []

    shutil.rmtree(home / "models" / name)
    with zipfile.ZipFile(io.BytesIO(export_model_zip(studio, version))) as zf:
        assert zf.read("head.json") == trained


def test_a_missing_remote_image_is_reported(s3, home: Path):
    studio = open_studio(load_settings(), actor=SYSTEM)
    import_files(studio, [("a.png", _png("blue"))])
    store = studio.store
    (key,) = [f.removeprefix(f"{s3[1]}/images/") for f in s3[0].find(f"{s3[1]}/images")]
    assert store.open(key).read_bytes() == _png("blue")
    s3[0].rm(f"{s3[1]}/images/{key}")
    assert store.open(key).is_file()  # cached copies stay valid: stored content never changes
    shutil.rmtree(home / "cache")
    with pytest.raises(FileNotFoundError, match="image not in store"):
        store.open(key)
    with pytest.raises(ValueError):
        store.open("../x.png")


def test_local_default_keeps_files_under_home(home: Path):
    settings = load_settings()
    assert settings.storage_url == "" and settings.storage_options == {}
    studio = open_studio(settings, actor=SYSTEM)
    report = import_files(studio, [("a.png", _png("red")), ("b.png", _png("green"))])
    assert len(report.added) == 2
    files = _files(home / "images")
    assert len(files) == 2 and all(len(p.relative_to(home / "images").parts) == 2 for p in files)
    assert sorted(p for _, p in image_items(studio)) == files
    store = storage_for(settings, "models")
    assert not store.remote and store.local_root == home / "models"
    assert not (home / "cache").exists()
    version = ensure_base_version(studio)
    assert head_path(studio, version) == home / "models" / version.name / "head.json"


def test_a_local_storage_url_is_used_in_place(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    shared = tmp_path / "shared"
    monkeypatch.setenv("MUMIC_STORAGE_URL", f"file://{shared}")
    studio = open_studio(load_settings(), actor=SYSTEM)
    import_files(studio, [("a.png", _png("red"))])
    (stored,) = _files(shared / "images")
    assert [p for _, p in image_items(studio)] == [stored] and _files(home / "images") == []
    models = storage_for(studio.settings, "models")
    assert not models.remote
    (home / "models" / "v0007").mkdir(parents=True)
    (home / "models" / "v0007" / "head.json").write_text("{}")
    assert models.upload_dir(home / "models" / "v0007", "v0007") == 1
    assert (shared / "models" / "v0007" / "head.json").read_text() == "{}"
    assert models.local_dir("v0007") == shared / "models" / "v0007"
    elsewhere = models.local_dir("v0007", dest=tmp_path / "copy" / "v0007")
    assert elsewhere == tmp_path / "copy" / "v0007" and (elsewhere / "head.json").read_text() == "{}"


def test_storage_settings_are_checked(home: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MUMIC_STORAGE_URL", "memory://bucket/x")
    monkeypatch.setenv("MUMIC_STORAGE_OPTIONS", "[1]")
    with pytest.raises(ValueError, match="JSON object"):
        load_settings()
    monkeypatch.setenv("MUMIC_STORAGE_OPTIONS", "{")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_settings()
    with pytest.raises(ValueError, match="cache"):
        Storage("memory://bucket/x")
